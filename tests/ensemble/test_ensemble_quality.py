"""On the quickstart's synthetic market, ensembles of real trained members beat their best member
on the untouched test block and get within reach of the oracle.

Members are trained in process with the real loop (no Ray: the search is tested elsewhere),
ranked by validation Sharpe as the ensemble command ranks trials, fused on the validation block
only, and scored once on the test block. One set of members is a coin flip: which member
validates best, and how it then does on test, swings with the seeds (best members from 0.31 to
2.35 test Sharpe over four seeded sets, their ensembles from 1.92 to 2.64). So the claim is
checked on average over three seeded sets, as a user sees it over repeated searches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quantray.config import DataConfig, LossWeights, ModelConfig, OptimConfig, SplitConfig, TrainConfig
from quantray.data.pipeline import Prepared, prepare
from quantray.ensemble.build import backtest_on_test, fit_ensemble
from quantray.ensemble.fusion import FusionConfig
from quantray.train.checkpoint import load_checkpoint
from quantray.train.loop import InProcessSession, directory_reporter, fit

MARKET = DataConfig(  # the quickstart's market (search_spaces/quickstart.yaml)
    source="synthetic:days=2500,signal=2", lookback=32, horizon=5, cost_bps=2.0,
    splits=SplitConfig(val_fraction=0.2, test_fraction=0.2, embargo=5),
)
MEMBERS = [
    ("transformer", {"d_model": 16, "n_heads": 4, "revin": False}),
    ("transformer", {"d_model": 16, "n_heads": 4}),
    ("cnn_lstm", {"d_model": 16}),
]
MEMBER_SETS = (0, 10, 20)  # seed offsets of the three member sets
REACH = 0.5  # "within reach": at least this fraction of the oracle's test Sharpe


def train_members(prepared: Prepared, root: Path, seed_offset: int) -> list:
    members = []
    for i, (family, arch) in enumerate(MEMBERS):
        config = TrainConfig(data=MARKET, model=ModelConfig(family=family, arch=arch),
                             loss=LossWeights(sharpe=1.0, direction=0.2, volatility=0.05, volume=0.0, regime=0.0),
                             optim=OptimConfig(lr=2e-3, epochs=10, batch_dates=64), seed=seed_offset + i)
        directory = root / f"member_{seed_offset + i}"
        fit(config, prepared, InProcessSession(prepared, config, report=directory_reporter(directory)))
        members.append(load_checkpoint(directory / "best"))
    return sorted(members, key=lambda m: m.metrics["val_sharpe"], reverse=True)  # best first


@pytest.mark.slow
def test_ensembles_beat_their_best_member_and_reach_the_oracle(tmp_path: Path) -> None:
    prepared = prepare(MARKET)
    runs = []
    for offset in MEMBER_SETS:
        members = train_members(prepared, tmp_path, offset)
        ensemble = fit_ensemble(members, tuple(str(m.path) for m in members), prepared, "concat", FusionConfig())
        result, _ = backtest_on_test(ensemble, prepared)
        runs.append({name: s.metrics["sharpe"] for name, s in result.strategies.items()})
    ensemble, best_member = (float(np.mean([run[key] for run in runs])) for key in ("ensemble", "best_member"))
    oracle = runs[0]["oracle"]  # the same test block every time
    print(f"test Sharpe over {len(runs)} member sets: ensemble {ensemble:.2f}, best member {best_member:.2f}, "
          f"oracle {oracle:.2f}; per set {[round(run['ensemble'], 2) for run in runs]}")
    assert ensemble >= best_member
    assert oracle > 0 and ensemble >= REACH * oracle
