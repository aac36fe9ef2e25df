"""Pick the ensemble's members: the best trials by validation Sharpe, minus near-duplicates.

Two trials that found the same strategy (their validation returns move together) add nothing
to an ensemble but weight; of such a pair only the better one is kept.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from quantray.tune.results import TrialRecord


def usable(record: "TrialRecord") -> bool:
    """A trial can be a member when it has a finite validation Sharpe and a checkpoint."""
    return record.checkpoint is not None and math.isfinite(record.val_sharpe)


def load_val_returns(records: Sequence["TrialRecord"]) -> dict[str, np.ndarray]:
    """Validation net returns [Tv] of every usable trial whose checkpoint has them, by trial id."""
    files = {r.trial_id: Path(r.checkpoint) / "val_returns.npy" for r in records if usable(r)}
    return {trial_id: np.load(path) for trial_id, path in files.items() if path.is_file()}


def select_members(
    trials: Sequence["TrialRecord"],
    k: int,
    max_corr: float = 0.95,
    returns: Mapping[str, np.ndarray] | None = None,
) -> list["TrialRecord"]:
    """The top-`k` usable trials by validation Sharpe, best first.

    A trial whose validation returns correlate above `max_corr` with an already selected
    member's is skipped. `returns` maps trial id -> validation returns [Tv] (by default read
    from each trial's checkpoint); a trial without returns is not a candidate.
    """
    if k < 1:
        raise ValueError(f"top-k must be at least 1, got {k}")
    if returns is None:
        returns = load_val_returns(trials)
    candidates = sorted((r for r in trials if usable(r) and r.trial_id in returns),
                        key=lambda r: r.val_sharpe, reverse=True)
    chosen: list["TrialRecord"] = []
    for record in candidates:
        if len(chosen) == k:
            break
        mine = returns[record.trial_id]
        if all(correlation(mine, returns[c.trial_id]) <= max_corr for c in chosen):
            chosen.append(record)
    return chosen


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation over the dates both series cover (aligned at the end).

    A constant series has no correlation with anything except an identical series (1.0).
    """
    n = min(len(a), len(b))
    a, b = np.asarray(a[-n:], dtype=np.float64), np.asarray(b[-n:], dtype=np.float64)
    finite = np.isfinite(a) & np.isfinite(b)
    a, b = a[finite], b[finite]
    if len(a) < 2:
        return 0.0
    if np.allclose(a, b):
        return 1.0
    if a.std() == 0.0 or b.std() == 0.0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
