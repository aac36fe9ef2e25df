"""PSR, DSR and PBO against values worked out by hand."""

import math
import statistics

import numpy as np
import pytest

from quantray.evaluate.overfitting import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    sharpe_variance,
)

RETURNS = [0.02, -0.01, 0.03, 0.015, -0.005, 0.01, -0.02, 0.025]


def test_psr_step_by_step():
    n = len(RETURNS)
    mean = sum(RETURNS) / n
    sample_std = math.sqrt(sum((x - mean) ** 2 for x in RETURNS) / (n - 1))
    sr = mean / sample_std
    m2 = sum((x - mean) ** 2 for x in RETURNS) / n
    skew = sum((x - mean) ** 3 for x in RETURNS) / n / m2**1.5
    kurt = sum((x - mean) ** 4 for x in RETURNS) / n / m2**2  # non-excess
    benchmark = 0.1
    z = (sr - benchmark) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    expected = 0.5 * (1 + math.erf(z / math.sqrt(2)))

    assert probabilistic_sharpe_ratio(np.array(RETURNS), benchmark) == pytest.approx(expected, rel=1e-12)


def test_psr_is_one_half_at_its_own_sharpe_and_falls_with_the_benchmark():
    r = np.array(RETURNS)
    sr = statistics.mean(RETURNS) / statistics.stdev(RETURNS)
    assert probabilistic_sharpe_ratio(r, sr) == pytest.approx(0.5)
    assert probabilistic_sharpe_ratio(r, 0.0) > probabilistic_sharpe_ratio(r, 0.2) > probabilistic_sharpe_ratio(r, 0.5)


@pytest.mark.parametrize("returns", [[], [0.01], [0.01] * 20, [0.0] * 20, [np.nan] * 5])
def test_psr_without_evidence_is_zero(returns):
    assert probabilistic_sharpe_ratio(np.array(returns, dtype=float)) == 0.0


def test_expected_max_sharpe_known_values():
    assert expected_max_sharpe(1, 1.0) == 0.0
    # (1 - γ)·Φ⁻¹(0.99) + γ·Φ⁻¹(1 - 1/(100e)) = 0.42278·2.32635 + 0.57722·2.68250
    assert expected_max_sharpe(100, 1.0) == pytest.approx(2.5306, abs=1e-4)
    assert expected_max_sharpe(100, 4.0) == pytest.approx(2 * expected_max_sharpe(100, 1.0))
    assert expected_max_sharpe(1000, 1.0) > expected_max_sharpe(100, 1.0)
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, 1.0)
    with pytest.raises(ValueError, match="sharpe_variance"):
        expected_max_sharpe(10, -1.0)


def test_dsr_with_one_trial_is_psr_against_zero_and_falls_with_trials():
    r = np.array(RETURNS)
    assert deflated_sharpe_ratio(r, 1, 0.3) == probabilistic_sharpe_ratio(r, 0.0)
    assert deflated_sharpe_ratio(r, 10, 0.01) > deflated_sharpe_ratio(r, 1000, 0.01)


def test_sharpe_variance_by_hand():
    trials = [[0.01, 0.02, -0.01, 0.03], [0.0, -0.01, 0.01, -0.02], [0.05, 0.01, 0.02, 0.0]]
    sharpes = [statistics.mean(t) / statistics.stdev(t) for t in trials]
    assert sharpe_variance(np.array(trials)) == pytest.approx(statistics.variance(sharpes))
    assert sharpe_variance(np.array(trials[:1])) == 0.0


def test_pbo_tiny_case_enumerated_by_hand():
    # S = 4 blocks of 2 dates, N = 2 trials.
    # trial 0: block means +0.02, +0.02, -0.02, -0.02 (Sharpe 1.732 on blocks {0,1}, -1.732 on
    #          {2,3}, exactly 0 on any mixed pair).
    # trial 1: 0.02, -0.01 in every block: Sharpe 0.005 / 0.01732 = 0.2887 on any pair.
    trial0 = [0.03, 0.01, 0.03, 0.01, -0.01, -0.03, -0.01, -0.03]
    trial1 = [0.02, -0.01] * 4
    # IS blocks -> IS winner -> its OOS rank of 2 -> ω -> λ
    # {0,1} -> trial 0 (1.732)  -> worst OOS (-1.732 < 0.289) -> 1/3 -> -log 2
    # {2,3} -> trial 1 (0.289)  -> worst OOS (0.289 < 1.732)  -> 1/3 -> -log 2
    # {0,2}, {0,3}, {1,2}, {1,3} -> trial 1 (0.289 > 0) -> best OOS (0.289 > 0) -> 2/3 -> +log 2
    sr_t0 = 0.02 / statistics.stdev([0.03, 0.01, 0.03, 0.01])
    sr_t1 = statistics.mean([0.02, -0.01] * 2) / statistics.stdev([0.02, -0.01] * 2)

    result = probability_of_backtest_overfitting(np.array([trial0, trial1]).T, n_splits=4)

    assert result.n_combinations == math.comb(4, 2) == 6
    assert result.pbo == pytest.approx(2 / 6)
    np.testing.assert_allclose(sorted(result.logits), [-math.log(2)] * 2 + [math.log(2)] * 4)
    np.testing.assert_allclose(sorted(result.is_sharpe), sorted([sr_t0, sr_t1] + [sr_t1] * 4))
    np.testing.assert_allclose(sorted(result.oos_sharpe), sorted([-sr_t0, sr_t1] + [sr_t1] * 4), atol=1e-12)
    assert result.prob_oos_loss == pytest.approx(1 / 6)


def test_pbo_is_zero_when_one_trial_is_best_in_every_block():
    rng = np.random.default_rng(3)
    noise = rng.normal(0.0, 0.01, size=(320, 8))
    noise[:, 5] = 0.01 + rng.normal(0.0, 0.001, size=320)  # Sharpe ~10 per period, everywhere
    result = probability_of_backtest_overfitting(noise, n_splits=16)
    assert result.n_combinations == math.comb(16, 8)
    assert result.pbo == 0.0
    np.testing.assert_allclose(result.logits, math.log(8))  # ω = 8 / 9: best of 8 out of sample


def test_pbo_of_pure_noise_is_near_one_half():
    # One draw of CSCV on noise scatters widely (its combinations share data), so average seeds.
    pbos = [
        probability_of_backtest_overfitting(np.random.default_rng(seed).normal(0, 0.01, (320, 50)), 16).pbo
        for seed in range(10)
    ]
    assert statistics.mean(pbos) == pytest.approx(0.5, abs=0.12)


def test_pbo_drops_the_first_dates_that_do_not_fill_a_block():
    m = np.random.default_rng(4).normal(size=(41, 5))
    full = probability_of_backtest_overfitting(m, n_splits=8)
    trimmed = probability_of_backtest_overfitting(m[1:], n_splits=8)
    np.testing.assert_array_equal(full.logits, trimmed.logits)


def test_pbo_samples_a_deterministic_subset_when_combinations_are_too_many():
    m = np.random.default_rng(5).normal(size=(200, 6))
    a = probability_of_backtest_overfitting(m, n_splits=20, max_combinations=300)
    b = probability_of_backtest_overfitting(m, n_splits=20, max_combinations=300)
    assert a.n_combinations == 300
    np.testing.assert_array_equal(a.logits, b.logits)


@pytest.mark.parametrize(
    ("shape", "n_splits", "message"),
    [((64, 4), 5, "even"), ((10, 4), 16, "at least n_splits"), ((64, 1), 8, "at least 2 trials")],
)
def test_pbo_rejects_bad_arguments(shape, n_splits, message):
    with pytest.raises(ValueError, match=message):
        probability_of_backtest_overfitting(np.zeros(shape), n_splits=n_splits)


def test_pbo_rejects_non_finite_returns():
    m = np.zeros((32, 3))
    m[4, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        probability_of_backtest_overfitting(m, n_splits=4)



def test_pbo_ranks_ties_by_their_average():
    # identical trials: the in-sample pick always ties with its twin out of sample,
    # rank 1.5 of 2 -> ω = 1.5 / 3 = 1/2 -> λ = 0, which counts as overfit (λ <= 0)
    trial = np.random.default_rng(7).normal(size=64)
    result = probability_of_backtest_overfitting(np.stack([trial, trial], axis=1), n_splits=8)
    np.testing.assert_array_equal(result.logits, 0.0)
    assert result.pbo == 1.0
