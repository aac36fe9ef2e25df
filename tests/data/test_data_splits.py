"""Walk-forward splits: purged, embargoed, and purging no more than needed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantray.config import SplitConfig
from quantray.data.splits import split_dates
from quantray.errors import BadInput


@settings(max_examples=200, deadline=None)
@given(
    n_dates=st.integers(300, 3000), lookback=st.integers(1, 80), horizon=st.integers(1, 20),
    start=st.integers(0, 100), val=st.floats(0.05, 0.3), test=st.floats(0.05, 0.3),
    stop=st.sampled_from([0.0, 0.05, 0.1, 0.2]), embargo=st.integers(0, 15), folds=st.integers(1, 3),
)
def test_no_label_window_reaches_a_later_block_and_the_embargo_holds(
        n_dates, lookback, horizon, start, val, test, stop, embargo, folds):
    cfg = SplitConfig(val_fraction=val, test_fraction=test, stop_fraction=stop, embargo=embargo, folds=folds)
    try:
        splits = split_dates(n_dates, lookback, horizon, cfg, start=start)
    except BadInput:
        return  # too little data for this configuration (covered below)
    assert [s.fold for s in splits] == list(range(folds))
    for s in splits:
        (train_begin, train_end), (stop_begin, stop_end), (val_begin, val_end), (test_begin, test_end) = s.blocks
        assert train_end == stop_begin and stop_end == val_begin and val_end == test_begin
        assert (len(s.stop) > 0) == (stop > 0)
        for part in (s.train, s.stop, s.val, s.test):
            if len(part):
                assert part.dtype == np.int64 and np.all(np.diff(part) == 1)
                assert part.min() >= start + lookback - 1  # a full window of valid features
                assert part.max() + horizon <= n_dates - 1  # a fully known label
        # purge: label windows (t, t+h] stay inside their own block
        assert s.train.max() + horizon < stop_begin
        assert len(s.stop) == 0 or s.stop.max() + horizon < val_begin
        assert s.val.max() + horizon < test_begin
        # ... and no more is purged than that; the embargo keeps validation `embargo` more dates away
        assert s.train.max() + horizon == stop_begin - 1 and s.val.max() + horizon + embargo == test_begin - 1
        assert len(s.stop) == 0 or (s.stop.min() == stop_begin and s.stop.max() + horizon == val_begin - 1)
        # the test block is whole
        assert s.val.min() == val_begin and s.test.min() == test_begin and s.test.max() == test_end - 1
    # fold 0 holds the final test block; later folds walk back in time, their test blocks tiling
    assert splits[0].test.max() == n_dates - 1 - horizon
    for a, b in zip(splits, splits[1:]):
        assert b.blocks[3][1] == a.blocks[3][0] and b.test.max() + 1 == a.test.min()


def test_default_single_split_fractions():
    (split,) = split_dates(1000, 64, 5, SplitConfig())
    n = 1000 - 5 - 63
    assert split.train[0] == 63
    assert len(split.stop) == round(0.1 * n) - 5  # purged before validation
    assert len(split.val) == round(0.15 * n) - 5 - 5  # purge (horizon 5) and embargo (5) before the test block
    assert len(split.test) == round(0.15 * n)


@pytest.mark.parametrize("cfg, match", [
    (SplitConfig(val_fraction=0.0), "val_fraction"),
    (SplitConfig(val_fraction=0.6, test_fraction=0.5), "val_fraction"),
    (SplitConfig(stop_fraction=-0.1), "stop_fraction"),
    (SplitConfig(stop_fraction=0.7), "stop_fraction"),
    (SplitConfig(embargo=-1), "embargo"),
    (SplitConfig(folds=0), "folds"),
    (SplitConfig(folds=8), "too few"),
])
def test_bad_split_config(cfg, match):
    with pytest.raises(BadInput, match=match):
        split_dates(300, 64, 5, cfg)
