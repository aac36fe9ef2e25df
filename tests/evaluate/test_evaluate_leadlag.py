"""Classification metrics of class heads, lagged cross-correlations, and their place in the report."""

from __future__ import annotations

import numpy as np
import pytest

from quantray.evaluate.backtest import run_backtest
from quantray.evaluate.metrics import classification_metrics, confusion_matrix, lagged_cross_correlations
from quantray.evaluate.report import Diagnostics, write_report


def test_confusion_matrix_accuracy_and_macro_f1_by_hand():
    actual = np.array([[0, 1, 1], [2, 2, -1]])  # -1: unknown label, left out
    predicted = np.array([[0, 1, 2], [2, 0, 1]])
    matrix = confusion_matrix(predicted, actual)
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 1, 1], [1, 0, 1]])
    scores = classification_metrics(matrix)
    # F1: class 0 = 2/3 (1 hit, 1 present, 2 predicted), class 1 = 2/3, class 2 = 1/2
    assert scores == {"accuracy": pytest.approx(3 / 5), "macro_f1": pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3), "n": 5.0}
    assert classification_metrics(np.zeros((3, 3)))["accuracy"] == 0.0


def test_lagged_cross_correlations_find_the_leader():
    rng = np.random.default_rng(0)
    leader = rng.normal(size=600)
    follower = np.concatenate([[0.0, 0.0], leader[:-2]]) + 0.3 * rng.normal(size=600)  # follows 2 bars later
    returns = np.stack([leader, follower, rng.normal(size=600)], axis=1)
    returns[10, 0] = np.nan  # unknown returns are left out pairwise
    c = lagged_cross_correlations(returns, 3)
    assert c.shape == (3, 3, 4)
    assert c[1, 0, 2] > 0.9 and abs(c[0, 1, 2]) < 0.15  # the follower's now goes with the leader 2 bars ago
    assert np.argmax(np.abs(c[1, 0])) == 2
    np.testing.assert_allclose(np.diagonal(c[:, :, 0]), 1.0)
    ok = np.isfinite(returns[2:, 1]) & np.isfinite(returns[:-2, 0])
    assert c[1, 0, 2] == pytest.approx(np.corrcoef(returns[2:, 1][ok], returns[:-2, 0][ok])[0, 1])


def test_report_shows_the_lead_lag_heatmaps_and_the_class_heads(tmp_path):
    rng = np.random.default_rng(1)
    returns = rng.normal(0, 0.01, size=(80, 3))
    result = run_backtest({"model": rng.uniform(-1, 1, size=(80, 3))}, returns, cost_bps=5.0)
    diagnostics = Diagnostics(asset_names=("A", "B", "C"), lead_lag_data=lagged_cross_correlations(returns, 2),
                              lead_lag_attention=rng.dirichlet(np.ones(9), size=3).reshape(3, 3, 3),
                              confusion={"barrier": np.array([[5, 1, 0], [2, 9, 1], [0, 1, 4]])})
    page = write_report(result, tmp_path, title="t", diagnostics=diagnostics).read_text()
    for png in ("lead_lag_data.png", "lead_lag_attention.png"):
        assert (tmp_path / png).stat().st_size > 1000 and png in page
    assert "predicted vertical" in page and "actual lower" in page and "macro-F1" in page
    assert ">0.7826<" in page  # accuracy 18/23
    plain = write_report(result, tmp_path / "plain", title="t").read_text()
    assert "lead_lag" not in plain and "Classification" not in plain
