"""On the quickstart's synthetic market (fixed seeds), an ensemble of real trained members beats
its best member on the untouched test block and gets within reach of the oracle.

Members are trained in process with the real loop (no Ray: the search is tested elsewhere),
ranked by validation Sharpe as the ensemble command ranks trials, fused on the validation block
only, and scored once on the test block."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantray.config import DataConfig, LossWeights, ModelConfig, OptimConfig, SplitConfig, TrainConfig
from quantray.data.pipeline import prepare
from quantray.ensemble.build import backtest_on_test, fit_ensemble
from quantray.ensemble.fusion import FusionConfig
from quantray.train.checkpoint import load_checkpoint
from quantray.train.loop import InProcessSession, directory_reporter, fit

MARKET = DataConfig(  # the quickstart's market (search_spaces/quickstart.yaml)
    source="synthetic:days=2500,signal=2", lookback=32, horizon=5, cost_bps=2.0,
    splits=SplitConfig(val_fraction=0.2, test_fraction=0.2, embargo=5),
)
MEMBERS = [
    ("transformer", {"d_model": 16, "n_heads": 4, "revin": False}, 0),
    ("transformer", {"d_model": 16, "n_heads": 4}, 1),
    ("cnn_lstm", {"d_model": 16}, 2),
]
REACH = 0.5  # "within reach": at least this fraction of the oracle's test Sharpe


@pytest.mark.slow
def test_ensemble_beats_its_best_member_and_reaches_the_oracle(tmp_path: Path) -> None:
    prepared = prepare(MARKET)
    members = []
    for family, arch, seed in MEMBERS:
        config = TrainConfig(data=MARKET, model=ModelConfig(family=family, arch=arch),
                             loss=LossWeights(sharpe=1.0, direction=0.2, volatility=0.05, volume=0.0, regime=0.0),
                             optim=OptimConfig(lr=2e-3, epochs=10, batch_dates=64), seed=seed)
        directory = tmp_path / f"member_{seed}"
        fit(config, prepared, InProcessSession(prepared, config, report=directory_reporter(directory, lambda m: None)))
        members.append(load_checkpoint(directory / "best"))
    members.sort(key=lambda m: m.metrics["val_sharpe"], reverse=True)

    ensemble = fit_ensemble(members, tuple(str(m.path) for m in members), prepared, "concat", FusionConfig())
    result, _ = backtest_on_test(ensemble, prepared)
    sharpe = {name: strategy.metrics["sharpe"] for name, strategy in result.strategies.items()}
    print(sharpe)
    assert sharpe["ensemble"] >= sharpe["best_member"]
    assert sharpe["oracle"] > 0 and sharpe["ensemble"] >= REACH * sharpe["oracle"]
