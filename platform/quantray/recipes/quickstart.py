"""The quickstart recipe: the whole job on the embedded default.

tune (search_spaces/quickstart.yaml) -> ensemble of the best trials -> backtest and report on the
untouched test block -> promote to the `champion` alias when the gates pass. Local Ray, the
MLflow store under ./.quantray/, and the synthetic market unless `data` names another source.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from quantray.errors import BadInput
from quantray.recipes.console import Console, libraries_logging_to, new_log_path
from quantray.recipes.ensemble import EnsembleOptions, EnsembleResult, run_ensemble
from quantray.recipes.tune import TuneOptions, TuneSummary, run_tune, with_absolute_paths
from quantray.recipes.options import QUICKSTART_SPACE, QuickstartOptions
from quantray.registry.store import PromotionResult, promote
from quantray.workspace import tracking_uri, tune_storage

@dataclass
class QuickstartResult:
    tune: TuneSummary
    ensemble: EnsembleResult | None  # None when no trial finished an epoch
    promotion: PromotionResult | None


def default_space() -> Path:
    """search_spaces/quickstart.yaml in the working directory, else in the source checkout."""
    here = Path("search_spaces") / QUICKSTART_SPACE
    if here.is_file():
        return here
    checkout = Path(__file__).resolve().parents[3] / "search_spaces" / QUICKSTART_SPACE
    if checkout.is_file():
        return checkout
    raise BadInput(f"--space: no {here} here; pass --space PATH to a search-space file")


def run_quickstart(options: QuickstartOptions = QuickstartOptions(), tune: TuneOptions = TuneOptions(),
                   ensemble: EnsembleOptions = EnsembleOptions(), console: Console | None = None) -> QuickstartResult:
    """Tune, ensemble the best trials, promote when the gates pass, reporting each stage on `console`.

    Without a console, Ray's, Tune's and MLflow's output goes to a log file under the workspace
    (its path printed first) and quantray's lines to the terminal.
    """
    if console is None:
        log = new_log_path("quickstart")
        print(f"log           {log}  (Ray, Tune and MLflow output; failed trials' tracebacks)", flush=True)
        with libraries_logging_to(log) as console:
            return run_quickstart(options, tune, ensemble, console)
    say = console.say
    tune = with_absolute_paths(tune)
    uri = tracking_uri(tune.tracking_uri)
    storage = (tune.storage or tune_storage()).resolve()
    tune = dataclasses.replace(tune, tracking_uri=uri, storage=storage)
    ensemble = dataclasses.replace(ensemble, tracking_uri=uri, storage=storage)

    say("== 1/3 tune")
    summary = run_tune(options.space or default_space(), tune, console)
    say("\n".join(summary.lines()))
    if summary.best_trial is None:
        return QuickstartResult(summary, None, None)

    say(f"\n== 2/3 ensemble ({ensemble.method}, top {ensemble.top_k}) and backtest on the test block")
    result = run_ensemble(summary.experiment, ensemble)
    say("\n".join(result.lines()))
    say(f"report        {result.out / 'report' / 'report.html'}")

    say("\n== 3/3 promote")
    promotion = promote(result.model_uri, tracking_uri=uri)
    say(("promoted      " if promotion.promoted else "not promoted  ") + promotion.line())
    say(f"\nMLflow        {uri}   (mlflow ui --backend-store-uri {uri})")
    return QuickstartResult(summary, result, promotion)
