"""Metrics against values computed by hand, and degenerate inputs that must stay finite."""

import math
import statistics

import numpy as np
import pytest

from quantray.evaluate.metrics import (
    drawdown,
    information_coefficient,
    net_returns,
    performance,
    portfolio_weights,
    rolling_sharpe,
    annualized_sharpe,
    turnover,
)

pytestmark = pytest.mark.filterwarnings("error")  # a degenerate input must not even warn


def test_performance_matches_hand_computation():
    r = [0.01, -0.02, 0.03, 0.0, 0.01]
    mean, std = statistics.mean(r), statistics.stdev(r)
    equity = [1.01, 1.01 * 0.98, 1.01 * 0.98 * 1.03, 1.01 * 0.98 * 1.03, 1.01 * 0.98 * 1.03 * 1.01]
    max_dd = 1 - equity[1] / equity[0]  # the only fall below a peak: day 2 against day 1
    cagr = equity[-1] ** (252 / 5) - 1
    downside = math.sqrt((0.02**2) / 5)  # only day 2 loses; the mean runs over all 5 days

    m = performance(np.array(r))

    assert m["sharpe"] == pytest.approx(mean / std * math.sqrt(252))
    assert m["annual_volatility"] == pytest.approx(std * math.sqrt(252))
    assert m["sortino"] == pytest.approx(mean / downside * math.sqrt(252))
    assert m["max_drawdown"] == pytest.approx(max_dd)
    assert m["annual_return"] == pytest.approx(cagr)
    assert m["calmar"] == pytest.approx(cagr / max_dd)
    assert m["hit_rate"] == pytest.approx(3 / 4)  # the flat day counts neither way
    assert m["n_periods"] == 5
    assert "turnover" not in m and "ic" not in m


def test_first_period_loss_is_a_drawdown():
    assert drawdown(np.array([-0.1, 0.05]))[0] == pytest.approx(0.1)
    assert drawdown(np.array([-0.1, 0.05]))[1] == pytest.approx(1 - 0.9 * 1.05)


@pytest.mark.parametrize(
    "returns",
    [
        np.full(50, 0.001),  # constant: no variance
        np.zeros(50),
        np.array([0.02]),
        np.array([]),
        np.array([np.nan, np.nan]),
        np.array([0.01, np.inf, -np.inf]),
    ],
    ids=["constant", "zeros", "length1", "empty", "all-nan", "inf"],
)
def test_degenerate_returns_give_finite_documented_values(returns):
    m = performance(returns)
    assert all(math.isfinite(v) for v in m.values())
    assert m["sharpe"] == 0.0 and m["sortino"] == 0.0 and m["annual_volatility"] == 0.0


def test_constant_positive_returns_have_no_drawdown_and_zero_calmar():
    m = performance(np.full(10, 0.001))
    assert m["max_drawdown"] == 0.0 and m["calmar"] == 0.0
    assert m["annual_return"] == pytest.approx(1.001**252 - 1)
    assert m["hit_rate"] == 1.0


def test_nan_returns_are_dropped():
    with_nan = performance(np.array([0.01, np.nan, -0.01, 0.02]))
    assert with_nan == performance(np.array([0.01, -0.01, 0.02]))


def test_wiped_out_equity_has_annual_return_minus_one():
    m = performance(np.array([0.1, -1.0, 0.1]))
    assert m["annual_return"] == -1.0 and m["max_drawdown"] == 1.0


def test_net_returns_with_costs_by_hand():
    # 3 days, 2 assets, 10 bps; asset 0 leaves the universe on day 3 (its 0.7 is ignored)
    positions = np.array([[1.0, -0.5], [0.5, -0.5], [0.7, 1.0]])
    returns = np.array([[0.01, 0.02], [-0.01, 0.03], [np.nan, -0.01]])
    mask = np.array([[True, True], [True, True], [False, True]])
    cost = 10 / 1e4
    expected = [
        (1 * 0.01 - 0.5 * 0.02) / 2 - cost * (1.0 + 0.5) / 2,  # opening from flat
        (0.5 * -0.01 - 0.5 * 0.03) / 2 - cost * (0.5 + 0.0) / 2,
        (1.0 * -0.01) / 1 - cost * (0.5 + 1.5) / 1,  # closing asset 0 is paid for too
    ]
    np.testing.assert_allclose(net_returns(positions, returns, mask, cost_bps=10), expected, rtol=1e-12)


def test_net_returns_rejects_nan_positions_at_active_assets():
    with pytest.raises(ValueError, match="NaN"):
        net_returns(np.array([[np.nan, 1.0]]), np.array([[0.01, 0.01]]), None, cost_bps=0)
    # the same NaN at a masked asset is ignored
    assert net_returns(np.array([[np.nan, 1.0]]), np.array([[0.01, 0.02]]), np.array([[False, True]]), 0)[0] == 0.02


def test_portfolio_weights_divide_by_active_assets():
    w = portfolio_weights(np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 1.0]]), np.array([[True, True, False], [True] * 3]))
    np.testing.assert_allclose(w, [[0.5, 0.5, 0.0], [1 / 3, -1 / 3, 1 / 3]])


def test_turnover_by_hand():
    positions = np.array([[1.0, 0.0], [1.0, -1.0], [0.0, np.nan]])
    # |1|+|0| opening, then |0|+|-1|, then |-1|+|1| (NaN counts as flat)
    assert turnover(positions) == pytest.approx((1 + 1 + 2) / 3)


def test_information_coefficient_is_mean_spearman_with_skipped_dates():
    positions = np.array(
        [
            [0.1, 0.2, 0.3, 0.4],  # same order as returns: +1
            [0.4, 0.3, 0.2, 0.1],  # reversed: -1
            [1.0, 1.0, 1.0, 1.0],  # no dispersion: skipped
            [0.1, 0.2, np.nan, np.nan],  # only 2 finite assets: skipped
            [1.0, 1.0, 0.0, -1.0],  # ties, checked against hand ranks below
        ]
    )
    returns = np.tile([0.01, 0.02, 0.03, 0.04], (5, 1))
    ranks_pos, ranks_ret = np.array([3.5, 3.5, 2.0, 1.0]), np.array([1.0, 2.0, 3.0, 4.0])
    tied = np.corrcoef(ranks_pos, ranks_ret)[0, 1]

    ic, n_dates = information_coefficient(positions, returns)

    assert n_dates == 3
    assert ic == pytest.approx((1 - 1 + tied) / 3)


def test_information_coefficient_without_usable_dates_is_zero():
    assert information_coefficient(np.ones((4, 5)), np.random.default_rng(0).normal(size=(4, 5))) == (0.0, 0.0)


def test_performance_with_positions_reports_turnover_and_ic():
    rng = np.random.default_rng(1)
    asset_returns = rng.normal(size=(30, 6))
    m = performance(rng.normal(size=30), asset_returns, asset_returns)
    assert m["ic"] == pytest.approx(1.0) and m["ic_dates"] == 30
    assert m["turnover"] == pytest.approx(turnover(asset_returns))


def test_rolling_sharpe_matches_sharpe_of_each_window():
    r = np.random.default_rng(2).normal(0.001, 0.01, size=80)
    rolled = rolling_sharpe(r, window=63)
    assert np.isnan(rolled[:62]).all()
    assert rolled[62] == pytest.approx(annualized_sharpe(r[:63]))
    assert rolled[-1] == pytest.approx(annualized_sharpe(r[-63:]))
    assert (rolling_sharpe(np.zeros(70), window=63)[62:] == 0.0).all()
