"""Request bodies -> panels, validated before anything is computed or stored.

Every problem is a `BadInput` whose one line names the field; the server answers it with a 400.
Rows are validated by `panel_from_long_frame`, the same code every data source goes through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from quantray.data.panel import FIELDS, Panel, panel_from_long_frame
from quantray.errors import BadInput

BAR_COLUMNS: tuple[str, ...] = ("date", "asset", *FIELDS)  # a bar is a full OHLCV row


@dataclass(frozen=True)
class PredictRequest:
    panel: Panel
    embeddings: bool


def rows_frame(body: Any, origin: str) -> pd.DataFrame:
    """`{"rows": [{date, asset, open, ...}, ...]}` -> a DataFrame of those records."""
    if not isinstance(body, dict):
        raise BadInput(f"{origin}: body: expected a JSON object with 'rows', got {type(body).__name__}")
    unknown = sorted(set(body) - {"rows", "embeddings"})
    if unknown:
        raise BadInput(f"{origin}: key '{unknown[0]}': unknown (expected rows, embeddings)")
    rows = body.get("rows")
    if not isinstance(rows, list) or not rows:
        raise BadInput(f"{origin}: key 'rows': expected a non-empty list of records")
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise BadInput(f"{origin}: row {i}: expected an object, got {type(row).__name__}")
    return pd.DataFrame.from_records(rows)


def check_assets(panel: Panel, known: tuple[str, ...], origin: str) -> None:
    unknown = [a for a in panel.assets if a not in known]
    if unknown:
        raise BadInput(f"{origin}: column 'asset': unknown asset '{unknown[0]}' (the model trades {', '.join(known)})")


def parse_predict(body: Any, assets: tuple[str, ...]) -> PredictRequest:
    """`/predict`: rows in the pyfunc's input schema, every asset one the model trades."""
    embeddings = body.get("embeddings", False) if isinstance(body, dict) else False
    if not isinstance(embeddings, bool):
        raise BadInput(f"predict: key 'embeddings': expected true or false, got {embeddings!r}")
    panel = panel_from_long_frame(rows_frame(body, "predict"), origin="predict")
    check_assets(panel, assets, "predict")
    return PredictRequest(panel, embeddings)


def parse_bar(body: Any, assets: tuple[str, ...]) -> Panel:
    """`/bars`: one date, full OHLCV rows, assets the model trades (an asset may skip a day)."""
    frame = rows_frame(body, "bars")
    for column in BAR_COLUMNS:
        if column not in frame.columns:
            raise BadInput(f"bars: missing column '{column}' (a bar has {', '.join(BAR_COLUMNS)})")
    panel = panel_from_long_frame(frame[list(BAR_COLUMNS)], origin="bars")
    check_assets(panel, assets, "bars")
    if panel.n_dates != 1:
        raise BadInput(f"bars: column 'date': one date per request, got {panel.n_dates} "
                       f"({np.datetime_as_string(panel.dates[0])} .. {np.datetime_as_string(panel.dates[-1])})")
    return panel
