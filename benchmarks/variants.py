"""One option at a time, on the synthetic market: share of the oracle and training cost (a
benchmark, not a test).

A fixed transformer trains with the real loop (no Ray) on a single split of the planted-signal
market; each variant changes one option of it:

    ffn      gelu | swiglu | kan            the feed-forward kind (about equal parameter count)
    news     off | on                       the synthetic news stream + news cross-attention
    pretrain off | on                       3 epochs of NT-Xent contrastive pretraining first

For every market seed and training seed it prints the test block's net Sharpe, the oracle's on the
same dates and costs, their ratio, the chosen epoch and the seconds per training epoch; then the
mean per variant. A fixed configuration, not a search: the question is what one option changes
at equal everything else, and the training seeds show how much of a difference is noise.

    python benchmarks/variants.py [--groups ffn,news,pretrain] [--markets 0,1] [--seeds 0,1]
                                  [--days 2500] [--epochs 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

BASE_ARCH = {"d_model": 32, "n_heads": 4, "cross_layers": 1, "dropout": 0.1, "revin": False}
# the default features less those measuring the level of volatility (range, volatility, wavelet)
NO_VOLATILITY_LEVELS = ["log_return", "intraday_return", "overnight_return", "mean_return", "momentum", "volume_z",
                        "return_x_volume", "rsi", "macd"]
GROUPS = {
    "ffn": {"ffn=gelu": {"arch": {"ffn": "gelu"}}, "ffn=swiglu": {"arch": {"ffn": "swiglu"}},
            "ffn=kan": {"arch": {"ffn": "kan"}}},
    "news": {"news off": {}, "news on": {"arch": {"news_attention": True},
                                          "news": {"source": "synthetic:seed=0,informed=0.3"}}},
    "neutral": {"neutral off": {}, "neutral on": {"arch": {"market_neutral": True}}},
    "features": {"all features": {"arch": {"market_neutral": True}},
                 "no vol levels": {"arch": {"market_neutral": True},
                                   "features": {"names": NO_VOLATILITY_LEVELS}}},
    "risk": {"risk none": {}, "risk one_factor": {"risk": {"model": "one_factor"}},
             "one_factor, no vol levels": {"risk": {"model": "one_factor"}, "features": {"names": NO_VOLATILITY_LEVELS}}},
    "pretrain": {"pretrain off": {}, "pretrain on": {"pretrain": {"epochs": 3, "augment": "both"}}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", default="ffn,news,pretrain")
    parser.add_argument("--markets", default="0,1", help="seeds of the synthetic market")
    parser.add_argument("--seeds", default="0,1", help="training seeds per market")
    parser.add_argument("--days", type=int, default=2500)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    print(f"{'variant':<14}{'market':>7}{'seed':>5}{'test':>7}{'oracle':>8}{'ratio':>7}{'epoch':>6}{'s/epoch':>9}")
    rows = []
    for group in args.groups.split(","):
        for name, change in GROUPS[group].items():
            for market in (int(m) for m in args.markets.split(",")):
                for seed in (int(s) for s in args.seeds.split(",")):
                    row = run_one(change, market, seed, args.days, args.epochs)
                    row.update(variant=name, market=market, seed=seed)
                    rows.append(row)
                    print(f"{name:<14}{market:>7}{seed:>5}{row['test']:>7.2f}{row['oracle']:>8.2f}"
                          f"{row['ratio']:>7.2f}{row['epoch']:>6}{row['seconds_per_epoch']:>9.1f}", flush=True)
    print("\nmean over markets and seeds")
    print(f"{'variant':<14}{'test':>7}{'ratio':>7}{'s/epoch':>9}")
    for name in dict.fromkeys(r["variant"] for r in rows):
        group = [r for r in rows if r["variant"] == name]
        print(f"{name:<14}{np.mean([r['test'] for r in group]):>7.2f}{np.mean([r['ratio'] for r in group]):>7.2f}"
              f"{np.mean([r['seconds_per_epoch'] for r in group]):>9.1f}")


def run_one(change: dict, market: int, seed: int, days: int, epochs: int) -> dict:
    from quantray.config import (DataConfig, FeatureConfig, LossWeights, ModelConfig, NewsConfig, OptimConfig,
                                 PretrainConfig, RiskConfig,
                                 SplitConfig, TrainConfig)
    from quantray.data.pipeline import prepare
    from quantray.ensemble.build import backtest_block
    from quantray.train.checkpoint import load_checkpoint
    from quantray.train.inference import run_model
    from quantray.train.loop import InProcessSession, directory_reporter, fit

    data = DataConfig(source=f"synthetic:days={days},signal=2,seed={market}", lookback=32, horizon=5, cost_bps=2.0,
                      splits=SplitConfig(stop_fraction=0.1, val_fraction=0.15, test_fraction=0.2, embargo=5),
                      news=NewsConfig(**change.get("news", {})),
                      features=FeatureConfig(**{k: tuple(v) for k, v in change.get("features", {}).items()}),
                      risk=RiskConfig(**change.get("risk", {})))
    config = TrainConfig(
        data=data, model=ModelConfig(family="transformer", arch={**BASE_ARCH, **change.get("arch", {})}),
        loss=LossWeights(sharpe=1.0, direction=0.1, volatility=0.1, volume=0.0, regime=0.0),
        optim=OptimConfig(lr=2e-3, epochs=epochs, batch_dates=64), pretrain=PretrainConfig(**change.get("pretrain", {})),
        seed=seed)
    prepared = prepare(data)
    with tempfile.TemporaryDirectory(prefix="quantray-variants-") as scratch:
        started = time.monotonic()
        summary = fit(config, prepared, InProcessSession(prepared, config, report=directory_reporter(Path(scratch))))
        seconds = time.monotonic() - started
        member = load_checkpoint(Path(scratch) / "best")
    test = prepared.windows("test")
    result = backtest_block({"model": run_model(member.model, test).positions}, test,
                            prepared.labels.next_return, prepared.panel, cost_bps=data.cost_bps)
    sharpe = {name: s.metrics["sharpe"] for name, s in result.strategies.items()}
    return {"test": sharpe["model"], "oracle": sharpe["oracle"],
            "ratio": sharpe["model"] / sharpe["oracle"] if sharpe["oracle"] > 0 else float("nan"),
            "epoch": summary.best_epoch,
            "seconds_per_epoch": seconds / (epochs + config.pretrain.epochs)}


if __name__ == "__main__":
    main()
