"""Member selection: top-k by validation Sharpe, near-duplicates skipped, unusable trials ignored."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from quantray.ensemble.select import correlation, load_val_returns, select_members
from quantray.tune.results import TrialRecord


def record(trial_id: str, sharpe: float, checkpoint: bool = True) -> TrialRecord:
    return TrialRecord(trial_id=trial_id, status="TERMINATED", val_sharpe=sharpe,
                       checkpoint=Path(f"/nowhere/{trial_id}") if checkpoint else None)


def independent_returns(ids: list[str], n: int = 300, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {trial_id: rng.normal(0.0, 0.01, n) for trial_id in ids}


def test_top_k_in_order_of_validation_sharpe() -> None:
    trials = [record("a", 0.5), record("b", 1.5), record("c", -0.2), record("d", 1.0)]
    chosen = select_members(trials, 3, returns=independent_returns(["a", "b", "c", "d"]))
    assert [r.trial_id for r in chosen] == ["b", "d", "a"]
    assert [r.trial_id for r in select_members(trials, 10, returns=independent_returns(list("abcd")))] == list("bdac")


def test_a_near_duplicate_of_a_better_member_is_skipped() -> None:
    returns = independent_returns(["a", "b", "c"])
    rng = np.random.default_rng(1)
    returns["a_twin"] = returns["a"] + rng.normal(0.0, 0.001, 300)  # correlation ~0.99 with a
    trials = [record("a", 2.0), record("a_twin", 1.9), record("b", 1.0), record("c", 0.5)]
    chosen = [r.trial_id for r in select_members(trials, 3, max_corr=0.95, returns=returns)]
    assert chosen == ["a", "b", "c"]
    # with a looser threshold the twin is kept
    assert [r.trial_id for r in select_members(trials, 3, max_corr=0.999, returns=returns)] == ["a", "a_twin", "b"]


def test_nan_sharpe_and_missing_checkpoints_are_never_members() -> None:
    trials = [record("nan", math.nan), record("nockpt", 3.0, checkpoint=False), record("ok", 0.1),
              record("noreturns", 5.0)]
    returns = independent_returns(["nan", "nockpt", "ok"])
    assert [r.trial_id for r in select_members(trials, 4, returns=returns)] == ["ok"]


def test_returns_are_read_from_checkpoints(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    trials = []
    for trial_id, sharpe in (("x", 1.0), ("y", 2.0)):
        (tmp_path / trial_id).mkdir()
        np.save(tmp_path / trial_id / "val_returns.npy", rng.normal(0, 0.01, 50))
        trials.append(TrialRecord(trial_id=trial_id, status="TERMINATED", val_sharpe=sharpe,
                                  checkpoint=tmp_path / trial_id))
    assert set(load_val_returns(trials)) == {"x", "y"}
    assert [r.trial_id for r in select_members(trials, 2)] == ["y", "x"]


def test_correlation_of_constant_series() -> None:
    zeros = np.zeros(20)
    assert correlation(zeros, zeros) == 1.0  # two flat books are the same book
    assert correlation(zeros, np.random.default_rng(0).normal(size=20)) == 0.0
    with pytest.raises(ValueError, match="top-k"):
        select_members([], 0, returns={})
