"""`quantray train` on the zoo configs, then `quantray backtest` of the trained member's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from quantray.cli import main
from quantray.recipes.options import TrainOptions
from quantray.recipes.train import load_train_config, run_train
from quantray.train.checkpoint import load_checkpoint

ZOO = Path(__file__).resolve().parents[2] / "search_spaces" / "zoo"
TINY_DATA = "synthetic:assets=3,days=420"


def fixed(value: Any) -> Any:
    """A zoo value with every distribution replaced by its low end (a fixed configuration)."""
    if isinstance(value, dict) and {"int", "float", "choice"} & set(value):
        kind = next(k for k in ("int", "float", "choice") if k in value)
        return value[kind][0]
    if isinstance(value, dict):
        return {key: fixed(v) for key, v in value.items()}
    return value


def fixed_zoo_config(name: str, folder: Path) -> Path:
    """The zoo config `name` fixed, without its search sections, small enough to train in seconds."""
    raw = yaml.safe_load((ZOO / name).read_text())
    config = {key: fixed(raw[key]) for key in ("name", "seed", "data", "model", "loss", "optim") if key in raw}
    config["data"]["lookback"] = min(config["data"]["lookback"], 16)
    config["optim"]["batch_dates"] = 64
    path = folder / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_a_zoo_config_then_backtest_its_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = fixed_zoo_config("cnn_lstm_classifier.yaml", tmp_path)
    run = tmp_path / "run"
    assert main(["train", str(config), "--data", TINY_DATA, "--epochs", "2", "--out", str(run), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "epoch 2/2" in printed and "val_sharpe" in printed and f"quantray backtest {run}" in printed
    history = json.loads((run / "history.json").read_text())
    assert [m["epoch"] for m in history] == [1.0, 2.0]
    member = load_checkpoint(run / "checkpoint" / "best")
    assert member.config.data.source == TINY_DATA and member.config.loss.barrier == 0.5
    assert member.pipeline.scaler is not None  # train_robust: fit on the training dates, saved with the member

    report = tmp_path / "report"
    assert main(["backtest", str(run), "--out", str(report), "--rebalance-every", "2"]) == 0
    printed = capsys.readouterr().out
    assert "equal_weight" in printed and "252 bars a year, rebalanced every 2 bars" in printed
    assert "barrier_accuracy" in printed and "direction_macro_f1" in printed
    page = (report / "report.html").read_text()
    assert "Classification heads" in page and "predicted upper" in page and "lead_lag_data.png" in page
    assert (report / "lead_lag_data.png").stat().st_size > 0


@pytest.mark.parametrize("name", ["hybrid_network.yaml", "lead_lag_cross_attention.yaml", "v17_experimental.yaml",
                                  "cross_attention_etf.yaml"])
def test_every_zoo_config_trains_an_epoch(tmp_path: Path, name: str) -> None:
    config = fixed_zoo_config(name, tmp_path)
    result = run_train(config, TrainOptions(data=TINY_DATA, epochs=1, out=tmp_path / "run", device="cpu"))
    assert result.summary.epochs_run == 1 and np.isfinite(result.metrics["val_loss"])
    assert (result.checkpoint / "model.pt").is_file()


def test_lead_lag_member_report_has_its_attention_by_lag(tmp_path: Path) -> None:
    from quantray.recipes.backtest import backtest_checkpoint
    from quantray.recipes.options import BacktestOptions

    config = fixed_zoo_config("lead_lag_cross_attention.yaml", tmp_path)
    result = run_train(config, TrainOptions(data=TINY_DATA, epochs=1, out=tmp_path / "run", device="cpu"))
    outcome = backtest_checkpoint(result.checkpoint, BacktestOptions(out=tmp_path / "report"))
    assert (tmp_path / "report" / "lead_lag_attention.png").is_file()
    assert "direction_accuracy" in outcome.metrics


def test_a_distribution_or_a_search_section_is_refused_naming_the_key(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    searched = tmp_path / "searched.yaml"
    searched.write_text("model:\n  family: hybrid\n  arch:\n    d_model: {choice: [32, 64]}\n")
    assert main(["train", str(searched)]) == 2
    assert "key 'model.arch.d_model': a distribution" in capsys.readouterr().err
    budget = tmp_path / "budget.yaml"
    budget.write_text("model: {family: hybrid}\nbudget: {trials: 3}\n")
    assert main(["train", str(budget)]) == 2
    assert "key 'budget': a search section" in capsys.readouterr().err
    typo = tmp_path / "typo.yaml"
    typo.write_text("model: {family: hybrid, arch: {d_modle: 32}}\n")
    assert main(["train", str(typo)]) == 2
    assert "d_modle" in capsys.readouterr().err
    name, config = load_train_config(fixed_zoo_config("hybrid_network.yaml", tmp_path), TrainOptions(epochs=3))
    assert name == "hybrid_network" and config.optim.epochs == 3 and config.model.arch["d_model"] == 32
