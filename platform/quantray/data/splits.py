"""Walk-forward date splits with purging and an embargo.

Sample dates run from `start + lookback - 1` (a full window of valid features) to `T - 1 - horizon`
(a fully known label). Each fold is train | stop | validation | test in time order; fold 0 ends at
the last usable date (its test block is the final hold-out) and fold f ends f test blocks earlier,
with an expanding training block from the first usable date.

The stop block (`stop_fraction`, 0 for none) is the end of the training history held out from
training: each run's epoch is chosen on it, so validation compares one model per configuration
and the Deflated Sharpe's N counts configurations, not epochs.

- purge: a sample whose label window (t, t+h] reaches into a later block of its fold is dropped
  (training dates before the stop block, stop dates before validation, validation before test);
- embargo: the last `embargo` dates before a test block are dropped from the validation block too,
  so what is chosen on validation sits at least horizon + embargo dates before the first test date.
  The test block itself is whole, so the test blocks of successive folds tile the end of the
  history with no gap and no overlap (the walk-forward's stitched record).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantray.config import SplitConfig
from quantray.errors import BadInput


@dataclass(frozen=True)
class Split:
    fold: int
    train: np.ndarray  # int64, sorted date indices
    stop: np.ndarray  # the early-stopping block: empty without one
    val: np.ndarray
    test: np.ndarray
    blocks: tuple[tuple[int, int], ...]  # (begin, end) of the train, stop, val, test blocks before purge/embargo


def usable_range(n_dates: int, lookback: int, horizon: int, start: int = 0) -> tuple[int, int]:
    """First and last sample date (inclusive)."""
    return start + lookback - 1, n_dates - 1 - horizon


def split_dates(n_dates: int, lookback: int, horizon: int, cfg: SplitConfig = SplitConfig(),
                *, start: int = 0) -> list[Split]:
    """One Split per walk-forward fold (fold 0 is the latest). `start`: first date with valid features."""
    _check_config(cfg)
    first, last = usable_range(n_dates, lookback, horizon, start)
    n = last - first + 1
    n_val, n_test = max(1, round(cfg.val_fraction * n)), max(1, round(cfg.test_fraction * n))
    n_stop = max(1, round(cfg.stop_fraction * n)) if cfg.stop_fraction > 0 else 0
    splits = []
    for fold in range(cfg.folds):
        test_end = last + 1 - fold * n_test  # exclusive
        test_start = test_end - n_test
        val_start = test_start - n_val
        stop_start = val_start - n_stop
        blocks = [("train", first, stop_start), ("stop", stop_start, val_start), ("val", val_start, test_start),
                  ("test", test_start, test_end)]
        parts = _purge_and_embargo(blocks, horizon, cfg.embargo)  # a stop block of 0 dates stays empty
        split = Split(fold, parts["train"], parts["stop"], parts["val"], parts["test"],
                      tuple((b, e) for _, b, e in blocks))
        if min(len(part) for name, part in parts.items() if n_stop or name != "stop") == 0:
            warmup = f"the first {start} are feature warm-up, " if start else ""
            raise BadInput(
                f"splits: {max(n, 0)} usable sample dates ({n_dates} dates; {warmup}lookback {lookback}, "
                f"horizon {horizon}) are too few for {cfg.folds} fold(s) with stop_fraction {cfg.stop_fraction}, "
                f"val_fraction {cfg.val_fraction}, "
                f"test_fraction {cfg.test_fraction}, embargo {cfg.embargo}")
        splits.append(split)
    return splits


def _purge_and_embargo(blocks: list[tuple[str, int, int]], horizon: int, embargo: int) -> dict[str, np.ndarray]:
    parts = {}
    for i, (name, begin, end) in enumerate(blocks):
        if i + 1 < len(blocks):
            gap = horizon + (embargo if blocks[i + 1][0] == "test" else 0)
            end = min(end, blocks[i + 1][1] - gap)  # purge (t + h before the next block), embargo before test
        parts[name] = np.arange(begin, max(begin, end), dtype=np.int64)
    return parts


def _check_config(cfg: SplitConfig) -> None:
    if not (0 < cfg.val_fraction < 1 and 0 < cfg.test_fraction < 1 and 0 <= cfg.stop_fraction < 1
            and cfg.stop_fraction + cfg.val_fraction + cfg.test_fraction < 1):
        raise BadInput(f"splits: val_fraction and test_fraction must be in (0, 1), stop_fraction in [0, 1), with a "
                       f"sum below 1, got {cfg.val_fraction}, {cfg.test_fraction} and {cfg.stop_fraction}")
    if cfg.embargo < 0:
        raise BadInput(f"splits.embargo: must not be negative, got {cfg.embargo}")
    if cfg.folds < 1:
        raise BadInput(f"splits.folds: must be at least 1, got {cfg.folds}")
