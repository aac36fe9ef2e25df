"""Backtests of several strategies on one block, and causal baselines."""

import json

import numpy as np
import pytest

from quantray.evaluate.backtest import BacktestResult, equal_weight, run_backtest, time_series_momentum
from quantray.evaluate.metrics import net_returns


@pytest.fixture
def block():
    rng = np.random.default_rng(0)
    history = rng.normal(0.0005, 0.01, size=(300, 5))  # next_return over the whole panel
    dates_idx = np.arange(100, 300)
    mask = np.ones((200, 5), dtype=bool)
    mask[:20, 4] = False  # asset 4 starts trading on day 20 of the block
    dates = np.datetime64("2021-01-04") + np.arange(200)
    return history, dates_idx, mask, dates


def test_equal_weight_earns_the_mean_active_return_and_trades_only_on_entry(block):
    history, dates_idx, mask, _ = block
    r = history[dates_idx]
    net = net_returns(equal_weight(mask), r, mask, cost_bps=10)
    gross = np.where(mask, r, 0).sum(axis=1) / mask.sum(axis=1)
    traded = np.zeros(200)
    traded[0], traded[20] = 4 / 4, 1 / 5  # open 4 assets, then asset 4 joins
    np.testing.assert_allclose(net, gross - 10 / 1e4 * traded)


def test_time_series_momentum_by_hand():
    next_return = np.array([[0.1, -0.1], [0.1, 0.05], [-0.3, 0.01], [0.2, 0.02], [0.0, 0.0]])
    positions = time_series_momentum(next_return, np.array([0, 1, 3, 4]), lookback=2)
    # date 0: no history; date 1: row 0 only; date 3: rows 1-2; date 4: rows 2-3
    expected = [
        [0.0, 0.0],
        [1.0, -1.0],
        [np.sign(1.1 * 0.7 - 1), np.sign(1.05 * 1.01 - 1)],
        [np.sign(0.7 * 1.2 - 1), 1.0],
    ]
    np.testing.assert_array_equal(positions, expected)


def test_time_series_momentum_is_causal(block):
    history, dates_idx, _, _ = block
    before = time_series_momentum(history, dates_idx, lookback=60)
    changed = history.copy()
    cut = 180  # rewrite every return from date 180 on
    changed[cut:] = np.random.default_rng(1).normal(0.0, 0.05, size=changed[cut:].shape)
    after = time_series_momentum(changed, dates_idx, lookback=60)
    known = dates_idx <= cut  # the signal at t reads rows < t only
    np.testing.assert_array_equal(before[known], after[known])
    assert (before[~known] != after[~known]).any()  # the change did reach later dates
    assert (before[0] != 0).all()  # the first block date sees the history before the block


def test_run_backtest_compares_strategies_on_the_same_block(block):
    history, dates_idx, mask, dates = block
    r = history[dates_idx]
    oracle = np.where(mask, np.nan_to_num(r), 0.0)  # knows the future: ranks returns perfectly
    strategies = {
        "model": np.tanh(np.random.default_rng(2).normal(size=r.shape)),
        "equal_weight": equal_weight(mask),
        "tsmom": time_series_momentum(history, dates_idx),
        "oracle": oracle,
    }
    result = run_backtest(strategies, r, mask, cost_bps=5.0, dates=dates)

    assert result.main == "model" and result.baselines == ["equal_weight", "tsmom", "oracle"]
    for name, positions in strategies.items():
        s = result.strategies[name]
        np.testing.assert_array_equal(s.net_returns, net_returns(positions, r, mask, 5.0))
        np.testing.assert_allclose(s.equity, np.cumprod(1 + s.net_returns))
        assert s.metrics["n_periods"] == 200
    assert result.strategies["oracle"].metrics["ic"] == pytest.approx(1.0)
    assert result.strategies["oracle"].metrics["sharpe"] > result.strategies["model"].metrics["sharpe"]
    # capital weights: equal weight trades 100% of capital once, then 1/5 when asset 4 joins
    expected_turnover = (1.0 + 4 * abs(1 / 5 - 1 / 4) + 1 / 5) / 200
    assert result.strategies["equal_weight"].metrics["turnover"] == pytest.approx(expected_turnover)


def test_result_round_trips_through_json(block):
    history, dates_idx, mask, dates = block
    result = run_backtest(
        {"a": equal_weight(mask), "b": -equal_weight(mask)}, history[dates_idx], mask, cost_bps=1, dates=dates, main="b"
    )
    text = json.dumps(result.to_dict(), allow_nan=False)
    back = BacktestResult.from_dict(json.loads(text))
    assert back.main == "b" and back.cost_bps == 1.0
    np.testing.assert_array_equal(back.dates, result.dates)
    assert json.loads(text)["dates"][0] == "2021-01-04"
    for name in ("a", "b"):
        np.testing.assert_array_equal(back.strategies[name].net_returns, result.strategies[name].net_returns)
        assert back.strategies[name].metrics == result.strategies[name].metrics


def test_run_backtest_rejects_mismatches(block):
    history, dates_idx, mask, dates = block
    r = history[dates_idx]
    with pytest.raises(ValueError, match="main strategy"):
        run_backtest({"a": equal_weight(mask)}, r, mask, cost_bps=0, main="b")
    with pytest.raises(ValueError, match="strategy 'a'"):
        run_backtest({"a": np.ones((3, 5))}, r, mask, cost_bps=0)
    with pytest.raises(ValueError, match="dates"):
        run_backtest({"a": equal_weight(mask)}, r, mask, cost_bps=0, dates=dates[:10])
    with pytest.raises(ValueError, match="at least one"):
        run_backtest({}, r, mask, cost_bps=0)


def test_volatility_targets_and_momentum_scaling_are_causal_and_hit_the_target(block):
    from quantray.evaluate.backtest import scaled_momentum, trailing_volatility, volatility_targeted

    history, dates_idx, mask, _ = block
    vol = trailing_volatility(history, dates_idx, span=60)
    assert np.nanmean(vol) == pytest.approx(0.01 * np.sqrt(252), rel=0.15)  # the returns' annualized vol
    for make in (lambda h: volatility_targeted(mask, h, dates_idx, target=0.10),
                 lambda h: scaled_momentum(h, dates_idx, lookback=60)):
        before = make(history)
        changed = history.copy()
        changed[200:] *= -3.0  # the future from block row 100 on: rows >= 200 of the history
        after = make(changed)
        np.testing.assert_array_equal(after[:101], before[:101])  # date 200 sees rows < 200 only
        assert not np.array_equal(after, before) and np.abs(before).max() <= 1.0
    # scaled to 10% of a ~16% volatility: positions near 0.63, capped at 1
    assert np.nanmedian(volatility_targeted(mask, history, dates_idx)[60:, :4]) == pytest.approx(0.63, rel=0.15)


def test_ridge_learns_only_from_its_training_rows():
    from quantray.evaluate.backtest import ridge_positions

    rng = np.random.default_rng(1)
    features = rng.normal(size=(400, 3, 4)).astype(np.float32)
    target = 0.01 * features[..., 0] + 0.001 * rng.normal(size=(400, 3))  # feature 0 predicts the return
    valid = np.ones((400, 3), dtype=bool)
    train, test = np.arange(0, 300), np.arange(300, 400)
    positions = ridge_positions(features, valid, target, train, test)
    assert np.corrcoef(positions.ravel(), target[test].ravel())[0, 1] > 0.9 and np.abs(positions).max() < 1
    changed = target.copy()
    changed[300:] = -changed[300:]  # outside the training rows
    np.testing.assert_array_equal(ridge_positions(features, valid, changed, train, test), positions)
