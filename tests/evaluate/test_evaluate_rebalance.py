"""Rebalancing every N bars: positions held in between, costs only at rebalances."""

from __future__ import annotations

import numpy as np
import pytest

from quantray.evaluate.backtest import BacktestResult, hold_between_rebalances, run_backtest
from quantray.evaluate.metrics import net_returns


def test_positions_are_held_between_rebalances_and_costs_paid_only_there():
    rng = np.random.default_rng(0)
    positions = rng.uniform(-1, 1, size=(10, 3))
    returns = rng.normal(0, 0.01, size=(10, 3))
    held = hold_between_rebalances(positions, 4)
    np.testing.assert_array_equal(held[[0, 1, 2, 3]], np.repeat(positions[[0]], 4, axis=0))
    np.testing.assert_array_equal(held[[4, 5, 6, 7]], np.repeat(positions[[4]], 4, axis=0))
    np.testing.assert_array_equal(held[[8, 9]], np.repeat(positions[[8]], 2, axis=0))

    result = run_backtest({"model": positions}, returns, cost_bps=10.0, rebalance_every=4)
    gross = net_returns(held, returns, cost_bps=0.0)
    costs = gross - result.strategies["model"].net_returns
    assert np.flatnonzero(costs > 1e-15).tolist() == [0, 4, 8]  # the rebalance bars alone pay
    expected = net_returns(held, returns, cost_bps=10.0)
    np.testing.assert_allclose(result.strategies["model"].net_returns, expected)
    assert result.strategies["model"].metrics["turnover"] < run_backtest(
        {"model": positions}, returns, cost_bps=10.0).strategies["model"].metrics["turnover"]
    assert BacktestResult.from_dict(result.to_dict()).rebalance_every == 4


def test_every_bar_is_the_default_and_a_bad_period_is_refused():
    positions = np.ones((5, 2))
    assert hold_between_rebalances(positions, 1) is positions
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="rebalance_every"):
            hold_between_rebalances(positions, bad)
