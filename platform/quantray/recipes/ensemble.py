"""The ensemble recipe: a finished search -> selected, fused, backtested ensemble -> registered.

Building and backtesting need no MLflow (`build_ensemble`); registration is its own step
(`register`), so an ensemble can be judged before anything is written to a registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from quantray.config import to_dict
from quantray.data.pipeline import prepare
from quantray.ensemble.artifact import Ensemble
from quantray.ensemble.build import (
    MAIN,
    backtest_on_test,
    check_pipelines,
    choose_members,
    fit_ensemble,
    save_ensemble_outputs,
    summary_metrics,
    validation_matrix,
    write_ensemble_report,
)
from quantray.ensemble.fusion import METHODS, FusionConfig
from quantray.errors import BadInput
from quantray.evaluate.backtest import BacktestResult
from quantray.registry.store import register_ensemble
from quantray.train.checkpoint import load_checkpoint
from quantray.tune.results import load_trials
from quantray.recipes.options import EnsembleOptions
from quantray.workspace import ensembles_dir, tune_storage


@dataclass
class BuiltEnsemble:
    """An ensemble built, backtested once on the test block and saved; not yet registered."""

    experiment: str
    ensemble: Ensemble
    result: BacktestResult
    metrics: dict[str, float]
    out: Path  # holds ensemble/, metrics.json, backtest.json, report/


@dataclass
class EnsembleResult:
    experiment: str
    method: str
    model_uri: str  # models:/NAME/VERSION
    name: str
    version: str
    out: Path
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


def run_ensemble(experiment: str, options: EnsembleOptions = EnsembleOptions(),
                 fusion: FusionConfig = FusionConfig()) -> EnsembleResult:
    """Build the ensemble of `experiment`'s best trials, then register it in MLflow."""
    built = build_ensemble(experiment, options, fusion)
    return register(built, options, fusion)


def build_ensemble(experiment: str, options: EnsembleOptions = EnsembleOptions(),
                   fusion: FusionConfig = FusionConfig()) -> BuiltEnsemble:
    """Select, fuse on the validation block, backtest once on the test block, save the outputs."""
    storage = (options.storage or tune_storage()).resolve()  # Ray reads a relative path as a URI
    trials = load_trials(experiment, storage)
    selected, returns = choose_members(trials.records, options.top_k, options.max_corr,
                                       where=f"experiment '{experiment}' ({trials.n_tried} tried, under {storage})")
    members = [load_checkpoint(r.checkpoint) for r in selected]
    prepared, fold = prepare(members[0].config.data), members[0].config.data.fold
    check_pipelines(members, prepared.pipeline(fold))

    ensemble = fit_ensemble(members, tuple(r.trial_id for r in selected), prepared, options.method, fusion, fold)
    result, attention = backtest_on_test(ensemble, prepared, fold)  # the only look at the test block
    metrics = summary_metrics(result, validation_matrix(returns, len(members[0].val_returns)), trials.n_compared)
    metrics.update(val_sharpe=ensemble.val_sharpe, n_members=float(len(members)), top_k=float(options.top_k))

    out = options.out or ensembles_dir() / experiment
    save_ensemble_outputs(out, ensemble, result, metrics)
    headline = {key: metrics[key] for key in ("dsr", "psr", "pbo", "n_trials", "val_sharpe", "oracle_ratio")
                if key in metrics}
    write_ensemble_report(result, out / "report", ensemble, headline, title=f"{experiment}: {options.method} ensemble",
                          trial_history=[r.val_sharpe for r in trials.records], attention=attention)
    return BuiltEnsemble(experiment, ensemble, result, metrics, out)


def register(built: BuiltEnsemble, options: EnsembleOptions, fusion: FusionConfig) -> EnsembleResult:
    """Log the built ensemble's run (metrics, config, report) and register its model in MLflow."""
    ensemble = built.ensemble
    version = register_ensemble(
        built.out / "ensemble",
        name=options.name or built.experiment,
        metrics=built.metrics,
        config={"experiment": built.experiment, "method": options.method, "top_k": options.top_k,
                "max_corr": options.max_corr, "members": ",".join(ensemble.member_ids),
                "data": to_dict(ensemble.pipeline.config), "fusion": fusion.to_dict()},
        report_dir=built.out / "report",
        tracking_uri=options.tracking_uri,
        experiment=built.experiment,
        run_name=f"ensemble-{options.method}",
    )
    sharpes = {n: s.metrics["sharpe"] for n, s in built.result.strategies.items()}
    return EnsembleResult(
        experiment=built.experiment,
        method=options.method,
        model_uri=f"models:/{version.name}/{version.version}",
        name=version.name,
        version=str(version.version),
        out=built.out,
        members=ensemble.member_ids,
        val_sharpe=ensemble.val_sharpe,
        test_sharpe=sharpes[MAIN],
        baselines={n: v for n, v in sharpes.items() if n != MAIN},
        oracle_ratio=built.metrics.get("oracle_ratio"),
        metrics=built.metrics,
    )
