"""The HTML report and its PNGs."""

import base64
import re

import numpy as np
import pytest

from quantray.evaluate.backtest import equal_weight, run_backtest, time_series_momentum
from quantray.evaluate.overfitting import deflated_sharpe_ratio

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def result():
    rng = np.random.default_rng(0)
    history = rng.normal(0.0003, 0.01, size=(400, 4))
    dates_idx = np.arange(150, 400)
    r = history[dates_idx]
    mask = np.ones(r.shape, dtype=bool)
    strategies = {
        "ensemble": np.tanh(30 * r + rng.normal(size=r.shape)),  # a noisy peek: clearly positive
        "equal_weight": equal_weight(mask),
        "time_series_momentum": time_series_momentum(history, dates_idx),
    }
    dates = np.datetime64("2022-01-03") + np.arange(len(dates_idx))
    return run_backtest(strategies, r, mask, cost_bps=5.0, dates=dates)


def test_full_report_embeds_every_figure_and_strategy(result, tmp_path):
    from quantray.evaluate.report import write_report

    dsr = deflated_sharpe_ratio(result.strategies["ensemble"].net_returns, 25, 0.004)
    html_path = write_report(
        result,
        tmp_path / "report",
        title="Backtest <test>",
        trial_history=[0.1, np.nan, 0.5, 0.3, 0.9, 0.2],
        ensemble_weights={"trial_03": 0.6, "trial_11": 0.4},
        attention=np.full((4, 4), 0.25),
        asset_names=["SPY", "QQQ", "IWM", "DIA"],
        extra_metrics={"dsr": dsr, "pbo": 0.31, "n_trials": 25},
    )

    page = html_path.read_text()
    for name in result.strategies:
        assert f"<td>{name}" in page  # a row of the metrics table
    assert f"{dsr:.4f}" in page and "<td>n_trials</td><td>25</td>" in page
    assert "<td>250</td>" in page  # n_periods, shown as a count
    assert "Backtest &lt;test&gt;" in page  # the title is escaped
    pngs = sorted(p.name for p in html_path.parent.glob("*.png"))
    assert pngs == sorted(
        ["equity.png", "drawdown.png", "rolling_sharpe.png", "trials.png", "ensemble_weights.png", "attention.png"]
    )
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == len(pngs)
    for name in pngs:
        data = (html_path.parent / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert name in page
        assert base64.b64encode(data).decode() in embedded  # the page does not depend on the files
    assert [p.name for p in html_path.parent.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_report_skips_plots_without_their_inputs(result, tmp_path):
    from quantray.evaluate.report import write_report

    html_path = write_report(result, tmp_path, title="minimal")
    assert html_path == tmp_path / "report.html"
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["drawdown.png", "equity.png", "rolling_sharpe.png"]
    assert "Overfitting" not in html_path.read_text()


def test_report_rejects_attention_that_does_not_match_the_names(result, tmp_path):
    from quantray.evaluate.report import write_report

    with pytest.raises(ValueError, match="asset names"):
        write_report(result, tmp_path, title="t", attention=np.eye(4), asset_names=["SPY", "QQQ"])
    assert not (tmp_path / "report.html").exists()
