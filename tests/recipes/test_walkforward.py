"""Walk-forward, black box: the test blocks tile, baselines share the dates, DSR counts what was
compared, the same command gives the same numbers, and nothing a fold chose moves when the data
at or after its test start changes."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quantray.data.panel import Panel
from quantray.data.sources import load_panel
from quantray.recipes.console import Console
from quantray.recipes.options import WalkForwardOptions
from quantray.recipes.walkforward import MAIN, WalkForwardResult, run_walkforward
from quantray.registry.pyfunc import panel_frame

SPACE = """
name: wf
seed: 5
data:
  source: "{source}"
  lookback: 12
  horizon: 3
  cost_bps: 2.0
  features: {{names: [log_return, range, mean_return, volatility], windows: [5, 10], norm_window: 60}}
  splits: {{val_fraction: 0.15, embargo: 2}}
  risk: {{model: one_factor, halflife: 10}}  # the risk model's moments are causal too
model:
  family: transformer
  arch: {{d_model: {{choice: [8, 12]}}, n_heads: 2, cross_layers: 1, dropout: 0.0}}
loss: {{sharpe: 1.0, direction: {{float: [0.0, 0.3]}}, volatility: 0.0, volume: 0.0, regime: 0.0}}
optim: {{lr: {{float: [0.002, 0.01], log: true}}, batch_dates: 32, epochs: 2}}
budget: {{trials: 2, concurrency: 2}}
walkforward: {{folds: 3, mode: refit, test_fraction: 0.15, top_k: 2}}
"""
FOLDS, TRIALS, TOP_K = 3, 2, 2
CHANGED_FOLD = 1  # chronological: the data at and after this fold's test start is changed


def chosen(config: dict) -> dict:
    """What a search chooses in a configuration (its data section names the source file)."""
    return {key: config[key] for key in ("model", "loss", "optim", "seed")}


def write_source(panel: Panel, path: Path) -> str:
    panel_frame(panel).to_parquet(path)
    return f"parquet:{path}"


def walkforward(root: Path, source: str, name: str) -> WalkForwardResult:
    space = root / f"{name}.yaml"
    space.write_text(SPACE.format(source=source))
    return run_walkforward(space, WalkForwardOptions(experiment=name, storage=root / "tune", out=root / name,
                                                     tracking_uri=f"sqlite:///{root / 'mlflow.db'}", no_register=True),
                           console=Console(io.StringIO()))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import ray

    root = tmp_path_factory.mktemp("walkforward")
    panel = load_panel("synthetic:seed=4,assets=3,days=700,signal=2")
    base = write_source(panel, root / "base.parquet")
    # the dashboard: the refits' task names are read through Ray's state API
    context = ray.init(num_cpus=2, include_dashboard=True, log_to_driver=False)
    try:
        first = walkforward(root, base, "first")
        # this Ray's own dashboard: another Ray on the machine would make the state API's auto-detection fail
        refit_tasks = task_names(f"http://{context.dashboard_url}", "_refit_one", expected=(FOLDS - 1) * TOP_K)
        again = walkforward(root, base, "again")
        # change every price at and after fold CHANGED_FOLD's test start (and drop some rows entirely)
        start = first.folds[CHANGED_FOLD].test_dates[0]
        values, mask = panel.values.copy(), panel.mask.copy()
        values[start:] *= np.exp(np.random.default_rng(0).normal(0, 0.05, values[start:].shape[:2]))[..., None]
        mask[start + 5: start + 15, 0] = False
        values[~mask] = np.nan
        changed = Panel(panel.dates, panel.assets, panel.fields, values, mask)
        perturbed = walkforward(root, write_source(changed, root / "changed.parquet"), "changed")
    finally:
        ray.shutdown()
    return {"first": first, "again": again, "changed": perturbed, "refit_tasks": refit_tasks}


def task_names(dashboard: str, function: str, expected: int) -> list[str]:
    """The names of the finished Ray tasks running `function`, from the state API at `dashboard`
    (task events reach it within seconds: polled for at most 30)."""
    from ray.util.state import list_tasks

    deadline, names = time.monotonic() + 30, []
    while time.monotonic() < deadline:
        names = [t.name for t in list_tasks(dashboard, filters=[("func_or_class_name", "=", function)], limit=1000,
                                            raise_on_missing_output=False) if t.state == "FINISHED"]
        if len(names) >= expected:
            break
        time.sleep(1)
    return sorted(names)


@pytest.mark.slow
def test_test_blocks_tile_and_every_strategy_trades_the_same_dates(runs) -> None:
    result = runs["first"]
    stitched = np.concatenate([fold.test_dates for fold in result.folds])
    assert len(result.folds) == FOLDS and np.array_equal(stitched, np.arange(stitched[0], stitched[-1] + 1))
    assert [f.split_fold for f in result.folds] == [2, 1, 0]  # the earliest test block first
    lengths = {len(s.net_returns) for s in result.result.strategies.values()}
    assert lengths == {len(stitched)} and len(result.result.dates) == len(stitched)
    # (the data is a parquet file written from the synthetic market: no oracle travels with it)
    assert set(result.result.strategies) == {MAIN, "best_member", "ridge", "equal_weight", "volatility_targeted",
                                             "time_series_momentum"}
    assert [row["n_dates"] for row in result.fold_rows] == [len(f.test_dates) for f in result.folds]
    assert (result.out / "report" / "report.html").exists() and (result.out / "report" / "fold_sharpe.png").exists()


@pytest.mark.slow
def test_each_refit_is_named_on_the_dashboard_by_its_trial_and_fold(runs) -> None:
    first = runs["first"]
    want = sorted(f"refit {tid} fold {fold} (first)" for fold in range(1, FOLDS) for tid in first.folds[fold].configs)
    assert len(want) == (FOLDS - 1) * TOP_K and runs["refit_tasks"] == want


@pytest.mark.slow
def test_dsr_counts_every_trial_and_refit(runs) -> None:
    metrics = runs["first"].metrics
    # fold 0 searches TRIALS configurations; the later folds refit TOP_K each; each run's epoch was
    # chosen on its early-stopping block, so each run is one model compared on validation
    assert metrics["n_trials"] == TRIALS + (FOLDS - 1) * TOP_K
    assert 0.0 <= metrics["dsr"] <= metrics["psr"] <= 1.0


@pytest.mark.slow
def test_the_same_command_gives_the_same_numbers(runs) -> None:
    first, again = runs["first"], runs["again"]
    for name, strategy in first.result.strategies.items():
        np.testing.assert_array_equal(again.result.strategies[name].net_returns, strategy.net_returns)
    for a, b in zip(first.folds, again.folds):
        assert [chosen(a.configs[m]) for m in a.member_ids] == [chosen(b.configs[m]) for m in b.member_ids]
        assert a.fusion_weights == b.fusion_weights


@pytest.mark.slow
def test_nothing_a_fold_chose_moves_when_its_future_changes(runs) -> None:
    first, changed = runs["first"], runs["changed"]
    for a, b in zip(first.folds[:CHANGED_FOLD + 1], changed.folds[:CHANGED_FOLD + 1]):
        # configurations tried, members, fusion weights and validation score: all chosen before the test start
        assert sorted(str(chosen(c)) for c in a.configs.values()) == sorted(str(chosen(c)) for c in b.configs.values())
        assert [chosen(a.configs[m]) for m in a.member_ids] == [chosen(b.configs[m]) for m in b.member_ids]
        assert a.fusion_weights == b.fusion_weights and a.val_sharpe == b.val_sharpe
    # positions before the changed test block: the earlier folds' test blocks, bit for bit
    for a, b in zip(first.folds[:CHANGED_FOLD], changed.folds[:CHANGED_FOLD]):
        np.testing.assert_array_equal(a.positions[MAIN], b.positions[MAIN])
    # the change itself is visible after it (the test is not vacuous)
    assert not np.array_equal(first.folds[-1].positions[MAIN], changed.folds[-1].positions[MAIN])
