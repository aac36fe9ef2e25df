"""How much of a backtest's Sharpe ratio survives the search that found it.

- Probabilistic Sharpe Ratio (Bailey & López de Prado 2012, "The Sharpe Ratio Efficient
  Frontier"): the probability that the true Sharpe exceeds a benchmark, given the sample
  length, skewness and kurtosis of the returns.
- Deflated Sharpe Ratio (Bailey & López de Prado 2014, "The Deflated Sharpe Ratio"): PSR against
  the Sharpe the best of N unskilled trials would reach by luck.
- Probability of Backtest Overfitting by combinatorially symmetric cross-validation (Bailey,
  Borwein, López de Prado & Zhu 2015, "The Probability of Backtest Overfitting").

Sharpe ratios here are per period (not annualized), as in the papers. docs/evaluation.md
gives the formulas.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from quantray.evaluate.metrics import sample_std, annualized_sharpe

EULER_GAMMA = 0.5772156649015329
MAX_COMBINATIONS = 20_000  # C(16, 8) = 12,870 are enumerated; C(20, 10) = 184,756 are sampled

_NORMAL = NormalDist()


def probabilistic_sharpe_ratio(returns: np.ndarray, sr_benchmark: float = 0.0) -> float:
    """P(true per-period Sharpe > `sr_benchmark`) from the sample of per-period `returns`.

    PSR = Φ((SR − SR*)·sqrt(n − 1) / sqrt(1 − γ3·SR + (γ4 − 1)/4·SR²)), SR the sample per-period
    Sharpe (sample std), γ3 the skewness and γ4 the (non-excess) kurtosis. Non-finite returns are
    dropped; with fewer than 2 returns or no variance there is no evidence of skill: 0.0.
    """
    r = np.asarray(returns, dtype=np.float64).reshape(-1)
    r = r[np.isfinite(r)]
    if sample_std(r) == 0.0:  # also covers fewer than 2 returns
        return 0.0
    sr = annualized_sharpe(r, periods_per_year=1)
    centered = r - r.mean()
    m2 = float(np.mean(centered**2))
    skew = float(np.mean(centered**3)) / m2**1.5
    kurt = float(np.mean(centered**4)) / m2**2
    # >= 0 for every distribution (kurtosis >= 1 + skew²); the floor only guards rounding
    variance = max(1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2, 1e-12)
    return _NORMAL.cdf((sr - sr_benchmark) * math.sqrt(r.size - 1) / math.sqrt(variance))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum per-period Sharpe of `n_trials` unskilled trials (true Sharpe 0).

    E[max SR] ≈ sqrt(V)·((1 − γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e))), γ the Euler–Mascheroni
    constant and V the variance of the trials' Sharpe ratios. One trial: 0.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if not math.isfinite(sharpe_variance) or sharpe_variance < 0.0:
        raise ValueError(f"sharpe_variance must be finite and >= 0, got {sharpe_variance}")
    if n_trials == 1:
        return 0.0
    z = _NORMAL.inv_cdf
    return math.sqrt(sharpe_variance) * (
        (1.0 - EULER_GAMMA) * z(1.0 - 1.0 / n_trials) + EULER_GAMMA * z(1.0 - 1.0 / (n_trials * math.e))
    )


def deflated_sharpe_ratio(returns: np.ndarray, n_trials: int, trial_sharpes_variance: float) -> float:
    """PSR of `returns` against the Sharpe the best of `n_trials` lucky trials would show."""
    return probabilistic_sharpe_ratio(returns, expected_max_sharpe(n_trials, trial_sharpes_variance))


def sharpe_variance(trial_returns: np.ndarray) -> float:
    """Variance (ddof=1) across trials of their per-period Sharpe; `trial_returns` is [N, T].

    0.0 with fewer than 2 trials. Non-finite returns are dropped per trial.
    """
    trials = np.asarray(trial_returns, dtype=np.float64)
    if trials.ndim != 2:
        raise ValueError(f"trial_returns must be [N, T], got shape {trials.shape}")
    if trials.shape[0] < 2:
        return 0.0
    return float(np.var([annualized_sharpe(row, periods_per_year=1) for row in trials], ddof=1))


@dataclass(frozen=True)
class PBOResult:
    """CSCV outcome; one entry per in-sample/out-of-sample combination in the arrays."""

    pbo: float  # share of combinations whose in-sample best is at or below the OOS median (λ <= 0)
    logits: np.ndarray  # λ = log(ω / (1 − ω)), ω the selected trial's relative OOS rank
    is_sharpe: np.ndarray  # in-sample per-period Sharpe of the selected trial
    oos_sharpe: np.ndarray  # its out-of-sample per-period Sharpe
    degradation_slope: float  # OLS slope of oos_sharpe on is_sharpe (negative: overfit)
    degradation_intercept: float
    prob_oos_loss: float  # share of combinations where the selected trial loses OOS (Sharpe < 0)
    n_splits: int
    n_combinations: int

    def to_dict(self) -> dict[str, float | int | list[float]]:
        return {
            "pbo": self.pbo,
            "logits": self.logits.tolist(),
            "is_sharpe": self.is_sharpe.tolist(),
            "oos_sharpe": self.oos_sharpe.tolist(),
            "degradation_slope": self.degradation_slope,
            "degradation_intercept": self.degradation_intercept,
            "prob_oos_loss": self.prob_oos_loss,
            "n_splits": self.n_splits,
            "n_combinations": self.n_combinations,
        }


def probability_of_backtest_overfitting(
    trial_returns: np.ndarray, n_splits: int = 16, max_combinations: int = MAX_COMBINATIONS
) -> PBOResult:
    """PBO by combinatorially symmetric cross-validation over `trial_returns [T, N]`.

    The T dates are cut into `n_splits` (S) contiguous blocks of T // S dates (the first T mod S
    dates are dropped). For every way of choosing S/2 blocks as in-sample (the rest out of
    sample) the trial with the best in-sample Sharpe is selected and ω is its out-of-sample
    rank among the N trials (1 = worst, ties averaged) divided by N + 1. PBO is the share of
    combinations with logit(ω) <= 0. All C(S, S/2) combinations are used when there are at most
    `max_combinations`; otherwise that many distinct ones are drawn with a fixed seed, so the
    result is deterministic.
    """
    m = np.asarray(trial_returns, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"trial_returns must be [T, N], got shape {m.shape}")
    n_dates, n_trials = m.shape
    if n_splits < 2 or n_splits % 2:
        raise ValueError(f"n_splits must be an even number >= 2, got {n_splits}")
    if n_dates < n_splits:
        raise ValueError(f"need at least n_splits={n_splits} dates, got T={n_dates}")
    if n_trials < 2:
        raise ValueError(f"need at least 2 trials to rank, got N={n_trials}")
    if not np.isfinite(m).all():
        raise ValueError(f"trial_returns hold {int((~np.isfinite(m)).sum())} non-finite values")

    block = n_dates // n_splits
    blocks = m[n_dates - block * n_splits :].reshape(n_splits, block, n_trials)
    sums, sumsq = blocks.sum(axis=1), (blocks**2).sum(axis=1)  # [S, N]
    in_sample = _combinations(n_splits, max_combinations)  # [C, S] bool
    is_sr = _sharpe_from_sums(in_sample @ sums, in_sample @ sumsq, block * n_splits // 2)
    oos_sr = _sharpe_from_sums(~in_sample @ sums, ~in_sample @ sumsq, block * n_splits // 2)

    rows = np.arange(len(in_sample))
    chosen = np.argmax(is_sr, axis=1)
    chosen_oos = oos_sr[rows, chosen]
    below = (oos_sr < chosen_oos[:, None]).sum(axis=1)
    ties = (oos_sr == chosen_oos[:, None]).sum(axis=1)  # includes the chosen trial itself
    omega = (below + (ties + 1) / 2) / (n_trials + 1)
    logits = np.log(omega / (1.0 - omega))
    slope, intercept = _ols(is_sr[rows, chosen], chosen_oos)
    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        is_sharpe=is_sr[rows, chosen],
        oos_sharpe=chosen_oos,
        degradation_slope=slope,
        degradation_intercept=intercept,
        prob_oos_loss=float(np.mean(chosen_oos < 0.0)),
        n_splits=n_splits,
        n_combinations=len(in_sample),
    )


def _combinations(n_splits: int, limit: int) -> np.ndarray:
    """Indicator rows [C, S] of the in-sample halves: all of them, or `limit` seeded draws."""
    half = n_splits // 2
    if math.comb(n_splits, half) <= limit:
        chosen = list(itertools.combinations(range(n_splits), half))
    else:
        rng = np.random.default_rng(0)
        seen: dict[tuple[int, ...], None] = {}  # insertion-ordered set
        while len(seen) < limit:
            seen[tuple(sorted(rng.permutation(n_splits)[:half].tolist()))] = None
        chosen = list(seen)
    indicator = np.zeros((len(chosen), n_splits), dtype=bool)
    for row, blocks in enumerate(chosen):
        indicator[row, list(blocks)] = True
    return indicator


def _sharpe_from_sums(total: np.ndarray, total_sq: np.ndarray, count: int) -> np.ndarray:
    """Per-period Sharpe (sample std) from sums and sums of squares; 0 where there is no variance."""
    if count < 2:
        return np.zeros_like(total)
    mean = total / count
    var = np.maximum(total_sq - count * mean**2, 0.0) / (count - 1)
    std = np.sqrt(var)
    # sumsq - count·mean² cancels: a constant series leaves std ~ 1e-8·rms of rounding noise
    ok = std > 1e-6 * np.sqrt(np.maximum(total_sq / count, 1e-300))
    return np.where(ok, mean / np.where(ok, std, 1.0), 0.0)


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of y on x; slope 0 when x does not vary."""
    dx = x - x.mean()
    denom = float((dx**2).sum())
    slope = float((dx * (y - y.mean())).sum() / denom) if denom > 0.0 else 0.0
    return slope, float(y.mean() - slope * x.mean())
