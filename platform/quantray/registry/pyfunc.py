"""The ensemble as an MLflow pyfunc model: long OHLCV rows in, one position per (date, asset) out.

Input: a DataFrame of rows `date` (ISO string), `asset` (string), `open`, `high`, `low`, `close`
and optionally `volume` (floats). Output: `date`, `asset`, `position` and, with the parameter
`embeddings=True`, the fused embedding as `emb_0 .. emb_{E-1}`. Every date of the input gets a
row; positions are 0 until an asset has `lookback` dates of features.

The model is logged as code (MLflow's models-from-code): the model holds `model_code.py`, which
names `QuantrayEnsembleModel` of the installed `quantray` package, and the ensemble directory as an
artifact; loading runs that file and unpickles no Python object. Whoever loads the model needs
quantray installed: `quantray==<version>` is recorded in
the model's requirements, but quantray is not on PyPI, so serve with `--env-manager local` in an
environment (or image) that has it installed. See docs/registry.md.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from quantray.data.panel import Panel, panel_from_long_frame
from quantray.ensemble.artifact import Prediction, load_ensemble

if TYPE_CHECKING:
    from mlflow.models import ModelSignature
    from mlflow.models.model import ModelInfo

ENSEMBLE_ARTIFACT = "ensemble"
MODEL_CODE = Path(__file__).with_name("model_code.py")  # what MLflow runs to build the model on load
INPUT_COLUMNS: tuple[tuple[str, str, bool], ...] = (  # name, MLflow type, required
    ("date", "string", True),
    ("asset", "string", True),
    ("open", "double", False),
    ("high", "double", False),
    ("low", "double", False),
    ("close", "double", True),
    ("volume", "double", False),
)
# what the model needs at load time, pinned to what it was logged with
REQUIREMENTS: tuple[str, ...] = ("quantray", "torch", "numpy", "pandas", "mlflow", "PyWavelets", "torch-geometric")


class QuantrayEnsembleModel(mlflow.pyfunc.PythonModel):
    """Loads the ensemble directory logged as artifact `ensemble` and predicts positions."""

    def load_context(self, context: Any) -> None:

        self.ensemble = load_ensemble(Path(context.artifacts[ENSEMBLE_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:

        panel = panel_from_long_frame(model_input, origin="model input")
        prediction = self.ensemble.predict(panel, embeddings=bool((params or {}).get("embeddings", False)))
        return prediction_frame(prediction)


def panel_frame(panel: Panel) -> pd.DataFrame:
    """A Panel as the model's input: one row per traded (date, asset), dates as ISO strings."""
    t, a = np.nonzero(panel.mask)
    frame = pd.DataFrame({
        "date": np.datetime_as_string(panel.dates[t]),  # days, or seconds for intraday bars
        "asset": np.asarray(panel.assets, dtype=object)[a],
    })
    for c, name in enumerate(panel.fields):
        frame[name] = panel.values[t, a, c].astype(np.float64)
    return frame


def prediction_frame(prediction: Prediction) -> pd.DataFrame:
    """Long rows (date, asset, position[, emb_i]) in date-major order."""
    n_dates, n_assets = prediction.positions.shape
    frame = pd.DataFrame({
        "date": np.repeat(np.datetime_as_string(prediction.dates), n_assets),
        "asset": np.tile(np.asarray(prediction.assets, dtype=object), n_dates),
        "position": prediction.positions.reshape(-1).astype(np.float64),
    })
    if prediction.embeddings is not None:
        flat = prediction.embeddings.reshape(n_dates * n_assets, -1).astype(np.float64)
        frame = pd.concat([frame, pd.DataFrame(flat, columns=[f"emb_{i}" for i in range(flat.shape[1])])], axis=1)
    return frame


def signature() -> "ModelSignature":
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(kind, name, required=required) for name, kind, required in INPUT_COLUMNS]),
        outputs=Schema([ColSpec("string", "date"), ColSpec("string", "asset"), ColSpec("double", "position")]),
        params=ParamSchema([ParamSpec("embeddings", "boolean", False)]),
    )


def pip_requirements() -> list[str]:
    """`package==version` for what the model imports, as installed now (quantray itself included).

    Local version labels are dropped (torch `2.13.0+cpu` -> `2.13.0`): the index decides the build.
    """
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]


def log_pyfunc(ensemble_dir: Path, name: str, *, registered_model_name: str | None) -> "ModelInfo":
    """Log the ensemble directory as a pyfunc model in the active run (and register it)."""
    import warnings

    with warnings.catch_warnings():
        # MLflow nags about type hints and input examples; the explicit signature covers both
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(MODEL_CODE),
            artifacts={ENSEMBLE_ARTIFACT: str(ensemble_dir)},
            signature=signature(),
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
        )
