"""Labels look forward exactly over (t, t+h]."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import late_start_panel, perturbed_after
from hypothesis import given, settings
from hypothesis import strategies as st

from quantray.data.labels import Labels, build_labels
from quantray.data.panel import Panel
from quantray.errors import BadInput

PANEL = late_start_panel(days=260)
FIELDS = ("next_return", "fwd_return", "direction", "barrier", "volatility", "volume")


def _same(a: Labels, b: Labels, rows: slice) -> bool:
    return all(np.array_equal(getattr(a, f)[rows], getattr(b, f)[rows], equal_nan=True) for f in FIELDS) and \
        np.array_equal(a.regime[rows], b.regime[rows])


@settings(max_examples=25, deadline=None)
@given(t=st.integers(0, PANEL.n_dates - 2), horizon=st.integers(1, 10), seed=st.integers(0, 2**31 - 1))
def test_a_label_at_t_ignores_data_after_t_plus_h(t, horizon, seed):
    rng = np.random.default_rng(seed)
    shape = PANEL.mask.shape
    base = build_labels(PANEL, horizon)
    after = perturbed_after(PANEL, t + horizon, np.exp(rng.normal(0, 0.2, shape)), rng.uniform(0.1, 10, shape))
    assert _same(base, build_labels(after, horizon), slice(0, t + 1))


@settings(max_examples=15, deadline=None)
@given(t=st.integers(80, PANEL.n_dates - 12), horizon=st.integers(1, 10), k=st.integers(1, 10))
def test_a_label_at_t_reads_the_data_in_the_horizon(t, horizon, k):
    """Data at t+k (k <= h) moves the labels at t (the property above is not vacuous)."""
    k = min(k, horizon)
    values = PANEL.values.copy()
    values[t + k:, 0, :4] *= 1.05  # a 5% jump at t+k that persists
    jumped = build_labels(Panel(PANEL.dates, PANEL.assets, PANEL.fields, values, PANEL.mask), horizon)
    base = build_labels(PANEL, horizon)
    assert jumped.volatility[t, 0] != base.volatility[t, 0]
    assert jumped.fwd_return[t, 0] == pytest.approx(base.fwd_return[t, 0] + np.log(1.05), abs=1e-9)


def test_label_values_and_unknowns():
    h = 5
    labels = build_labels(PANEL, h)
    close = PANEL.field("close")
    np.testing.assert_allclose(labels.next_return[:-1, 0], close[1:, 0] / close[:-1, 0] - 1)
    np.testing.assert_allclose(labels.fwd_return[:-h, 0], np.log(close[h:, 0] / close[:-h, 0]))
    assert np.isnan(labels.next_return[-1]).all() and np.isnan(labels.fwd_return[-h:]).all()
    assert (labels.direction[-h:] == -1).all() and (labels.regime[-h:] == -1).all()
    assert np.isnan(labels.fwd_return[:40, 2]).all()  # asset 2 not trading yet
    gap = 40 + int(np.flatnonzero(~PANEL.mask[40:, 2])[0])
    assert np.isnan(labels.next_return[gap - 1, 2]) and np.isnan(labels.fwd_return[gap - h, 2])
    known = labels.direction >= 0
    assert set(np.unique(labels.direction[known])) == {0, 1, 2}
    up = labels.direction == 2
    assert (labels.fwd_return[up] > 0).all() and (labels.fwd_return[labels.direction == 0] < 0).all()
    assert set(np.unique(labels.barrier[labels.barrier >= 0])) == {0, 1, 2}
    assert set(np.unique(labels.regime[labels.regime >= 0])) == {0, 1, 2}
    assert np.nanmin(labels.volatility) >= 0


def test_triple_barrier_takes_the_first_touch():
    days = 60
    dates = np.arange("2020-01-01", days, dtype="datetime64[D]")
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, days)))  # trailing vol ~1%
    t, h = 40, 5
    close[t + 1:] = close[t] * np.array([1.0, 0.97, 1.5, 1.5, 1.5] + [1.5] * (days - t - 6))  # down first
    panel = Panel(dates, ("X",), ("close",), close[:, None, None], np.ones((days, 1), bool))
    labels = build_labels(panel, h)
    assert labels.barrier[t, 0] == 0  # touched -1 vol * sqrt(5) ~ -2.2% on day 2 before the +50%
    assert labels.direction[t, 0] == 2  # but ended up


def test_bad_horizon():
    with pytest.raises(BadInput, match="horizon"):
        build_labels(PANEL, 0)
