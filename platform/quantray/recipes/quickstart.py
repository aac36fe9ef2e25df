"""The quickstart recipe: the whole job on the embedded default.

A walk-forward of search_spaces/quickstart.yaml (refit mode: one search on the first fold, then
each later fold refits its best configurations, re-selects and re-fuses on its own validation
block and trades its test block once) -> the stitched out-of-sample record against the baselines
-> the last fold's ensemble registered and promoted to `champion` when the gates pass on that
record. Local Ray, the MLflow store under ./.quantray/, and the synthetic market unless `data`
names another source.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from quantray.data.sources import absolute_source
from quantray.errors import BadInput
from quantray.recipes.console import Console, quiet_console
from quantray.recipes.options import QUICKSTART_SPACE, QuickstartOptions, WalkForwardOptions
from quantray.recipes.walkforward import WalkForwardResult, run_walkforward
from quantray.registry.store import PromotionResult, promote
from quantray.workspace import tracking_uri, tune_storage


@dataclass
class QuickstartResult:
    walkforward: WalkForwardResult
    promotion: PromotionResult


def default_space() -> Path:
    """search_spaces/quickstart.yaml in the working directory, else in the source checkout."""
    here = Path("search_spaces") / QUICKSTART_SPACE
    if here.is_file():
        return here
    checkout = Path(__file__).resolve().parents[3] / "search_spaces" / QUICKSTART_SPACE
    if checkout.is_file():
        return checkout
    raise BadInput(f"--space: no {here} here; pass --space PATH to a search-space file")


def run_quickstart(options: QuickstartOptions = QuickstartOptions(),
                   walkforward: WalkForwardOptions = WalkForwardOptions(),
                   console: Console | None = None) -> QuickstartResult:
    """Walk-forward, register the last fold's ensemble, promote it when the gates pass on the
    stitched record; each stage reported on `console`.

    Without a console, Ray's, Tune's and MLflow's output goes to a log file under the workspace
    (its path printed first) and quantray's lines to the terminal.
    """
    if console is None:
        with quiet_console("quickstart") as console:
            return run_quickstart(options, walkforward, console)
    uri = tracking_uri(walkforward.tracking_uri)
    walkforward = dataclasses.replace(
        walkforward, tracking_uri=uri, storage=(walkforward.storage or tune_storage()).resolve(),
        data=absolute_source(walkforward.data) if walkforward.data else None, no_register=False)

    console.say("== 1/2 walk-forward: search, ensemble and backtest, fold by fold, judged out of sample")
    outcome = run_walkforward(options.space or default_space(), walkforward, console=console)
    console.say("\n".join(outcome.lines()))

    console.say("\n== 2/2 promote the last fold's ensemble, judged on the stitched record")
    promotion = promote(outcome.model_uri, tracking_uri=uri)
    console.say(("promoted      " if promotion.promoted else "not promoted  ") + promotion.line())
    console.say(f"\nMLflow        {uri}   (mlflow ui --backend-store-uri {uri})")
    return QuickstartResult(outcome, promotion)
