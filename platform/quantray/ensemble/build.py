"""`build_ensemble`: from a finished search to a registered, backtested ensemble.

1. load the search's trials, keep those that share the best trial's data recipe, select the
   top-k by validation Sharpe without near-duplicates;
2. freeze them and fit the fusion on the validation block only;
3. touch the test block once: backtest with costs against equal weight, time-series momentum,
   the best single member and (synthetic data) the oracle; PSR, DSR with N = trials tried,
   PBO by CSCV over every trial's validation returns;
4. save the artifact, metrics.json and the report under `out`, log an MLflow run
   `ensemble-<method>` in the experiment and register the model.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from quantray.config import to_dict
from quantray.errors import BadInput

if TYPE_CHECKING:
    from quantray.data.features import Scaler
    from quantray.data.panel import Panel
    from quantray.data.pipeline import Prepared
    from quantray.data.windows import Windows
    from quantray.ensemble.artifact import Ensemble
    from quantray.ensemble.fusion import FusionConfig
    from quantray.evaluate.backtest import BacktestResult
    from quantray.train.checkpoint import Member
    from quantray.tune.results import TrialRecord

DEFAULT_OUT = Path(".quantray") / "ensembles"
MAIN = "ensemble"
PBO_SPLITS = 16


@dataclass
class EnsembleResult:
    experiment: str
    method: str
    model_uri: str  # models:/NAME/VERSION
    name: str
    version: str
    out: Path  # holds ensemble/, metrics.json, backtest.json, report/
    members: tuple[str, ...]  # trial ids, best first
    val_sharpe: float
    test_sharpe: float
    baselines: dict[str, float]  # baseline -> test Sharpe (net of costs, annualized)
    oracle_ratio: float | None  # ensemble / oracle test Sharpe (synthetic data only)
    metrics: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """What the CLI prints."""
        rows = [
            f"ensemble      {self.method} of {len(self.members)} member(s): {', '.join(self.members)}",
            f"validation    net Sharpe {self.val_sharpe:.2f} (the fusion was fit on this block)",
            f"test          net Sharpe {self.test_sharpe:.2f}  "
            + "  ".join(f"{name} {value:.2f}" for name, value in self.baselines.items()),
        ]
        overfit = f"DSR {self.metrics['dsr']:.3f}  PSR {self.metrics['psr']:.3f}  PBO {self.metrics['pbo']:.3f}"
        if self.oracle_ratio is not None:
            overfit = f"oracle ratio {self.oracle_ratio:.2f}  " + overfit
        rows += [f"overfitting   {overfit}", f"output        {self.out}", f"model         {self.model_uri}"]
        return rows


def default_out(experiment: str) -> Path:
    return DEFAULT_OUT / experiment


def build_ensemble(
    experiment: str,
    *,
    storage: Path,
    top_k: int = 5,
    method: str = "concat",
    tracking_uri: str | None = None,
    out: Path | None = None,
    name: str | None = None,
    max_corr: float = 0.95,
    fusion: "FusionConfig | None" = None,
) -> EnsembleResult:
    """Select, fuse, backtest and register the ensemble of `experiment`'s trials.

    The registered model is `name` (default: the experiment name), a new version each call.
    """
    from quantray.data.pipeline import prepare
    from quantray.ensemble.fusion import METHODS, FusionConfig
    from quantray.registry.store import register_ensemble
    from quantray.train.checkpoint import load_checkpoint
    from quantray.tune.results import load_trials

    if method not in METHODS:
        raise BadInput(f"--method: unknown fusion method '{method}' (expected one of: {', '.join(METHODS)})")
    if top_k < 1:
        raise BadInput(f"--top-k: must be at least 1, got {top_k}")
    fusion = fusion or FusionConfig()
    out = Path(out) if out is not None else default_out(experiment)

    storage = Path(storage).resolve()  # Ray reads a relative path as a URI without a scheme
    trials = load_trials(experiment, storage)
    selected, returns = choose_members(trials.records, top_k, max_corr, where=f"experiment '{experiment}' "
                                       f"({trials.n_tried} tried, under {storage})")
    members = [load_checkpoint(r.checkpoint) for r in selected]
    prepared = prepare(members[0].config.data)
    check_shapes(members, prepared.asset_names, prepared.feature_names)

    ensemble = fit_ensemble(members, tuple(r.trial_id for r in selected), prepared, method, fusion)
    result, attention = backtest_on_test(ensemble, prepared)  # the only look at the test block
    metrics = summary_metrics(result, validation_matrix(returns, len(members[0].val_returns)), trials.n_tried)
    metrics.update(val_sharpe=ensemble.val_sharpe, n_members=float(len(members)), top_k=float(top_k))

    save_ensemble_outputs(out, ensemble, result, metrics)
    headline = {key: metrics[key] for key in ("dsr", "psr", "pbo", "n_trials", "val_sharpe", "oracle_ratio")
                if key in metrics}
    report = write_ensemble_report(result, out / "report", ensemble, headline,
                                   title=f"{experiment}: {method} ensemble",
                                   trial_history=[r.val_sharpe for r in trials.records], attention=attention)
    version = register_ensemble(
        out / "ensemble",
        name=name or experiment,
        metrics=metrics,
        config={"experiment": experiment, "method": method, "top_k": top_k, "max_corr": max_corr,
                "members": ",".join(ensemble.member_ids), "data": to_dict(ensemble.data),
                "fusion": fusion.to_dict()},
        report_dir=report.parent,
        tracking_uri=tracking_uri,
        experiment=experiment,
        run_name=f"ensemble-{method}",
    )
    sharpes = {n: s.metrics["sharpe"] for n, s in result.strategies.items()}
    return EnsembleResult(
        experiment=experiment,
        method=method,
        model_uri=f"models:/{version.name}/{version.version}",
        name=version.name,
        version=str(version.version),
        out=out,
        members=ensemble.member_ids,
        val_sharpe=ensemble.val_sharpe,
        test_sharpe=sharpes[MAIN],
        baselines={n: v for n, v in sharpes.items() if n != MAIN},
        oracle_ratio=metrics.get("oracle_ratio"),
        metrics=metrics,
    )


def choose_members(records: Sequence["TrialRecord"], top_k: int, max_corr: float, *, where: str
                   ) -> tuple[list["TrialRecord"], dict[str, np.ndarray]]:
    """The selected trials (best first) and the validation returns of every trial that shares the
    best trial's data recipe (members must see the same windows)."""
    from quantray.ensemble.select import load_val_returns, select_members, usable

    candidates = [r for r in records if usable(r)]
    if not candidates:
        raise BadInput(f"{where}: no trial finished an epoch with a checkpoint")
    recipe = data_recipe(max(candidates, key=lambda r: r.val_sharpe))
    compatible = [r for r in candidates if data_recipe(r) == recipe]
    returns = load_val_returns(compatible)
    selected = select_members(compatible, top_k, max_corr, returns)
    if not selected:
        raise BadInput(f"{where}: no checkpoint holds val_returns.npy")
    return selected, returns


def fit_ensemble(members: Sequence["Member"], member_ids: tuple[str, ...], prepared: "Prepared", method: str,
                 fusion: "FusionConfig") -> "Ensemble":
    """Fit the fusion on the validation block and measure it there (in-sample for the fusion)."""
    from quantray.ensemble.artifact import Ensemble
    from quantray.ensemble.fusion import block_labels, fit_fusion
    from quantray.evaluate.metrics import net_returns, sharpe_ratio

    cost = prepared.config.cost_bps
    val = prepared.windows("val")
    model = fit_fusion(members, val, method, cost_bps=cost, config=fusion)
    labels = block_labels(val)
    return Ensemble(
        model=model,
        data=prepared.config,
        asset_names=tuple(prepared.asset_names),
        feature_names=tuple(prepared.feature_names),
        member_ids=member_ids,
        val_sharpe=sharpe_ratio(net_returns(model.run(val).positions, labels["next_return"], labels["mask"], cost)),
        scaler=training_scaler(prepared),
    )


def backtest_on_test(ensemble: "Ensemble", prepared: "Prepared") -> tuple["BacktestResult", np.ndarray | None]:
    """The ensemble and its best member on the test block against the baselines, and the best
    member's mean cross-asset attention there (None for families without it)."""
    from quantray.train.inference import run_model

    test = prepared.windows("test")
    best_member = run_model(ensemble.model.members[0].model, test, attention=True)
    result = backtest_block(
        {MAIN: ensemble.model.run(test).positions, "best_member": best_member.positions},
        test, prepared.labels.next_return, prepared.panel, cost_bps=ensemble.data.cost_bps,
    )
    return result, best_member.attention


def save_ensemble_outputs(out: Path, ensemble: "Ensemble", result: "BacktestResult", metrics: dict[str, float]) -> None:
    from quantray.ensemble.artifact import save_ensemble

    save_ensemble(out / "ensemble", ensemble)
    write_json(out / "metrics.json", metrics)
    write_json(out / "backtest.json", result.to_dict())


def data_recipe(record: "TrialRecord") -> dict[str, Any]:
    """The trial's DataConfig as stored in its checkpoint (members must share it)."""
    return json.loads((Path(record.checkpoint) / "config.json").read_text())["config"]["data"]


def check_shapes(members: Sequence["Member"], assets: Sequence[str], features: Sequence[str]) -> None:
    for member in members:
        if tuple(member.shape.asset_names) != tuple(assets) or tuple(member.shape.feature_names) != tuple(features):
            raise BadInput(f"{member.path}: trained on assets {', '.join(member.shape.asset_names)} with "
                           f"{member.shape.n_features} features; the data source now gives "
                           f"{', '.join(assets)} with {len(features)}")


def training_scaler(prepared: "Prepared") -> "Scaler | None":
    """The train_* scaler the pipeline fit on fold 0's training dates (None for rolling/none)."""
    from quantray.data.features import fit_scaler

    normalization = prepared.config.features.normalization
    if not normalization.startswith("train_"):
        return None
    return fit_scaler(prepared.raw_features, prepared.splits[0].train, normalization.removeprefix("train_"),
                      prepared.config.features.clip)


def backtest_block(strategies: dict[str, np.ndarray], windows: "Windows", next_return: np.ndarray,
                   panel: "Panel", *, cost_bps: float) -> "BacktestResult":
    """Backtest `strategies` (positions [n, A] on `windows`' dates; the first is the main one)
    with the baselines: equal weight, time-series momentum and, on synthetic data, the oracle."""
    from quantray.ensemble.fusion import block_labels
    from quantray.evaluate.backtest import equal_weight, run_backtest, time_series_momentum

    labels = block_labels(windows)
    dates_idx = windows.dates_idx
    everything = dict(strategies)
    everything["equal_weight"] = equal_weight(labels["mask"])
    everything["time_series_momentum"] = time_series_momentum(next_return, dates_idx)
    if panel.oracle is not None:
        everything["oracle"] = panel.oracle.positions[dates_idx]
    return run_backtest(everything, labels["next_return"], labels["mask"], cost_bps=cost_bps,
                        dates=panel.dates[dates_idx], main=next(iter(strategies)))


def validation_matrix(returns: dict[str, np.ndarray], length: int) -> np.ndarray:
    """Validation returns [Tv, N] of every trial with a checkpoint on the members' validation block."""
    columns = [r for r in returns.values() if len(r) == length]
    return np.nan_to_num(np.stack(columns, axis=1), nan=0.0, posinf=0.0, neginf=0.0)


def summary_metrics(result: "BacktestResult", trial_matrix: np.ndarray, n_tried: int) -> dict[str, float]:
    """Test metrics of every strategy, and PSR/DSR/PBO of the main one."""
    from quantray.evaluate.overfitting import deflated_sharpe_ratio, probabilistic_sharpe_ratio, sharpe_variance

    main = result.strategies[result.main]
    metrics = {f"test_{key}": float(value) for key, value in main.metrics.items()}
    for name in result.baselines:
        metrics[f"{name}_test_sharpe"] = float(result.strategies[name].metrics["sharpe"])
    # "x% of the oracle" only means something when the oracle itself made money on this block;
    # a ratio of two negative Sharpes would read as a success.
    if "oracle" in result.strategies and metrics["oracle_test_sharpe"] > 0.0:
        metrics["oracle_ratio"] = metrics["test_sharpe"] / metrics["oracle_test_sharpe"]
    variance = sharpe_variance(trial_matrix.T)
    metrics["n_trials"] = float(n_tried)
    metrics["trials_sharpe_variance"] = variance
    metrics["psr"] = probabilistic_sharpe_ratio(main.net_returns)
    metrics["dsr"] = deflated_sharpe_ratio(main.net_returns, max(n_tried, 1), variance)
    metrics["pbo"] = pbo(trial_matrix)
    return metrics


def pbo(trial_matrix: np.ndarray) -> float:
    """PBO by CSCV over [Tv, N]; NaN when there are fewer than 2 trials or 16 dates to split."""
    from quantray.evaluate.overfitting import probability_of_backtest_overfitting

    n_dates, n_trials = trial_matrix.shape
    if n_trials < 2 or n_dates < PBO_SPLITS:
        return math.nan
    return probability_of_backtest_overfitting(trial_matrix, n_splits=PBO_SPLITS).pbo


def write_ensemble_report(result: "BacktestResult", out_dir: Path, ensemble: "Ensemble",
                          headline: dict[str, float], *, title: str, trial_history: Sequence[float] | None = None,
                          attention: np.ndarray | None = None) -> Path:
    """The backtest report with the ensemble's member weights (and the search, attention when given)."""
    from quantray.evaluate.report import write_report

    return write_report(
        result, out_dir, title=title,
        trial_history=trial_history,
        ensemble_weights={f"{i}: {tid}": float(w) for i, (tid, w) in
                          enumerate(zip(ensemble.member_ids, ensemble.model.weights))},
        attention=attention,
        asset_names=ensemble.asset_names,
        extra_metrics=headline,
    )


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write JSON atomically (NaN kept as NaN: Python's json reads it back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
