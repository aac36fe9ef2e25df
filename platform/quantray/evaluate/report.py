"""The backtest report: one self-contained HTML page plus its figures as PNG files beside it.

Figures: equity curves against the baselines, drawdown, rolling Sharpe, the search's trial
history, ensemble member weights, cross-asset attention, and (`Diagnostics`) the lead-lag
analysis: the lagged cross-correlations of the assets' returns and the model's lead-lag attention,
one heatmap per lag; plus the classification metrics of a model's direction and barrier heads
(accuracy, macro-F1, confusion matrix). The optional ones are skipped when their input is missing. matplotlib is imported inside the plotting functions and drives the Agg
canvas directly (no pyplot state), so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from quantray.evaluate.backtest import BacktestResult
from quantray.evaluate.metrics import COUNT_KEYS, classification_metrics, rolling_sharpe
from quantray.workspace import write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ROLLING_WINDOW = 63  # about a quarter of trading days
REPORT_NAME = "report.html"
LEAD_LAG_MAX_ASSETS = 24  # heatmaps of more assets are unreadable: the first ones are drawn
CLASS_NAMES: dict[str, tuple[str, str, str]] = {
    "direction": ("down", "flat", "up"),
    "barrier": ("lower", "vertical", "upper"),
}


@dataclass(frozen=True)
class Diagnostics:
    """What the report shows beyond the strategies, each part optional."""

    asset_names: Sequence[str] = ()
    lead_lag_data: np.ndarray | None = None  # [A, A, K+1] metrics.lagged_cross_correlations of the returns
    lead_lag_attention: np.ndarray | None = None  # [A, A, K+1] the model's lead-lag attention (receiver, sender, lag)
    confusion: Mapping[str, np.ndarray] = field(default_factory=dict)  # class head -> [3, 3], row = actual


def write_report(
    result: BacktestResult,
    out_dir: Path,
    *,
    title: str,
    trial_history: Sequence[float] | None = None,
    ensemble_weights: Mapping[str, float] | None = None,
    attention: np.ndarray | None = None,
    asset_names: Sequence[str] | None = None,
    extra_metrics: Mapping[str, float | int | str] | None = None,
    diagnostics: Diagnostics | None = None,
) -> Path:
    """Write `out_dir/report.html` and its PNGs; return the HTML path.

    `trial_history`: the trials' validation Sharpe in the order they ran (NaN = failed trial).
    `ensemble_weights`: member name -> weight. `attention [A, A]`: mean cross-asset attention,
    row = the asset attending, labelled by `asset_names`. `extra_metrics`: headline numbers such
    as DSR, PSR and PBO, shown above the per-strategy table. `diagnostics`: the lead-lag heatmaps
    and the classification tables.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # (file, caption, plot): optional figures only when their input was given
    figures: list[tuple[str, str, Callable[[], Figure]]] = [
        ("equity.png", "Equity (net of costs, compounded)", lambda: _plot_equity(result)),
        ("drawdown.png", "Drawdown from the running peak", lambda: _plot_drawdown(result)),
        ("rolling_sharpe.png", f"Rolling {ROLLING_WINDOW}-day Sharpe (annualized)", lambda: _plot_rolling_sharpe(result)),
    ]
    if trial_history is not None and len(trial_history) > 0:
        figures.append(("trials.png", "Search: validation Sharpe per trial", lambda: _plot_trials(trial_history)))
    if ensemble_weights:
        figures.append(("ensemble_weights.png", "Ensemble member weights", lambda: _plot_weights(ensemble_weights)))
    if attention is not None:
        caption = "Cross-asset attention (row attends to column)"
        figures.append(("attention.png", caption, lambda: _plot_attention(attention, asset_names)))
    diagnostics = diagnostics or Diagnostics()
    if diagnostics.lead_lag_data is not None:
        caption = ("Lead-lag in the data: correlation of the row asset's return with the column asset's "
                   "return k bars earlier")
        figures.append(("lead_lag_data.png", caption,
                        lambda: _plot_by_lag(diagnostics.lead_lag_data, diagnostics.asset_names, "RdBu_r", True)))
    if diagnostics.lead_lag_attention is not None:
        caption = "Lead-lag attention of the model: the row asset attends to the column asset's state k bars earlier"
        figures.append(("lead_lag_attention.png", caption,
                        lambda: _plot_by_lag(diagnostics.lead_lag_attention, diagnostics.asset_names, "viridis",
                                             False)))

    sections = []
    for filename, caption, plot in figures:
        png = _png_bytes(plot())
        write_bytes(out_dir / filename, png)
        sections.append(_figure_html(filename, caption, png))
    sections = _classification_html(diagnostics.confusion) + sections
    page = _page_html(title, result, extra_metrics or {}, sections)
    path = out_dir / REPORT_NAME
    write_bytes(path, page.encode("utf-8"))
    return path


# ---------------------------------------------------------------- figures


def _x_axis(result: BacktestResult) -> np.ndarray:
    n = len(next(iter(result.strategies.values())).net_returns)
    return result.dates if result.dates is not None else np.arange(n)


def _strategy_lines(result: BacktestResult, series: Callable[[str], np.ndarray], ylabel: str) -> Figure:
    """One line per strategy, the main one drawn thicker and on top."""
    fig, ax = _new_figure()
    x = _x_axis(result)
    for name in result.strategies:
        is_main = name == result.main
        ax.plot(x, series(name), label=name, linewidth=2.2 if is_main else 1.0, zorder=3 if is_main else 2)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if result.dates is not None:
        fig.autofmt_xdate()
    return fig


def _plot_equity(result: BacktestResult) -> Figure:
    return _strategy_lines(result, lambda name: result.strategies[name].equity, "wealth (start = 1)")


def _plot_drawdown(result: BacktestResult) -> Figure:
    fig = _strategy_lines(result, lambda name: -result.strategies[name].drawdown, "drawdown")
    ax = fig.axes[0]
    color = next(line.get_color() for line in ax.get_lines() if line.get_label() == result.main)
    main_drawdown = result.strategies[result.main].drawdown
    ax.fill_between(_x_axis(result), -main_drawdown, 0.0, color=color, alpha=0.2, zorder=1)
    return fig


def _plot_rolling_sharpe(result: BacktestResult) -> Figure:
    fig = _strategy_lines(
        result, lambda name: rolling_sharpe(result.strategies[name].net_returns, ROLLING_WINDOW, result.periods_per_year),
        "Sharpe",
    )
    fig.axes[0].axhline(0.0, color="black", linewidth=0.6)
    return fig


def _plot_trials(trial_history: Sequence[float]) -> Figure:
    values = np.asarray(trial_history, dtype=np.float64)
    trial = np.arange(1, values.size + 1)
    finite = np.isfinite(values)
    best_so_far = np.fmax.accumulate(np.where(finite, values, np.nan))  # NaN until the first finished trial
    fig, ax = _new_figure()
    ax.scatter(trial[finite], values[finite], s=14, alpha=0.6, label="trial")
    ax.step(trial, best_so_far, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation Sharpe")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


def _plot_weights(weights: Mapping[str, float]) -> Figure:
    names = list(weights)
    fig, ax = _new_figure(height=max(2.5, 0.35 * len(names) + 1.0))
    ax.barh(names, [float(weights[n]) for n in names])
    ax.invert_yaxis()  # first member on top
    ax.set_xlabel("weight")
    ax.grid(axis="x", alpha=0.3)
    return fig


def _plot_attention(attention: np.ndarray, asset_names: Sequence[str] | None) -> Figure:
    matrix = np.asarray(attention, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"attention must be [A, A], got shape {matrix.shape}")
    names = list(asset_names) if asset_names is not None else [str(i) for i in range(matrix.shape[0])]
    if len(names) != matrix.shape[0]:
        raise ValueError(f"{len(names)} asset names for a {matrix.shape[0]}x{matrix.shape[0]} attention matrix")
    size = max(4.0, 0.45 * len(names) + 2.0)
    fig, ax = _new_figure(width=size + 1.0, height=size)
    image = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("attended asset")
    ax.set_ylabel("attending asset")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def _plot_by_lag(matrix: np.ndarray, asset_names: Sequence[str], cmap: str, symmetric: bool) -> Figure:
    """One heatmap per lag of `matrix [A, A, K+1]` (row = receiver, column = sender), shared colour scale."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 3 or values.shape[0] != values.shape[1]:
        raise ValueError(f"a lead-lag matrix must be [A, A, lags], got shape {values.shape}")
    n = min(values.shape[0], LEAD_LAG_MAX_ASSETS)
    values = values[:n, :n]
    names = list(asset_names)[:n] if len(asset_names) >= n else [str(i) for i in range(n)]
    lags = values.shape[2]
    side = max(2.5, 0.22 * n + 1.2)
    fig = Figure(figsize=(side * lags + 1.0, side + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, lags, squeeze=False)[0]
    top = float(np.abs(values).max()) or 1.0
    low, high = (-top, top) if symmetric else (float(values.min()), float(values.max()) or 1.0)
    image = None
    for k, ax in enumerate(axes):
        image = ax.imshow(values[:, :, k], cmap=cmap, vmin=low, vmax=high)
        ax.set_title(f"lag {k}", fontsize=9)
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names if k == 0 else [""] * n, fontsize=7)
    fig.colorbar(image, ax=list(axes), fraction=0.02, pad=0.01)
    return fig


def _new_figure(width: float = 8.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png_bytes(fig: Figure) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ---------------------------------------------------------------- html


def _page_html(
    title: str, result: BacktestResult, extra: Mapping[str, float | int | str], sections: list[str]
) -> str:
    span = ""
    if result.dates is not None and len(result.dates):
        span = f"{result.dates[0]} to {result.dates[-1]}, "
    n = len(next(iter(result.strategies.values())).net_returns)
    summary = f"{span}{n} dates, costs {result.cost_bps:g} bps per unit traded; main strategy: {result.main}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(summary)}</p>",
    ]
    if extra:
        rows = [[key, _fmt(value)] for key, value in extra.items()]
        parts += ["<h2>Overfitting-adjusted figures</h2>", _table(["metric", "value"], rows)]
    parts += ["<h2>Strategies</h2>", _metrics_table(result), *sections, "</body></html>"]
    return "\n".join(parts) + "\n"


def _metrics_table(result: BacktestResult) -> str:
    keys: list[str] = []
    for strategy in result.strategies.values():
        keys += [k for k in strategy.metrics if k not in keys]
    rows = [
        [f"{name} (main)" if name == result.main else name]
        + [_fmt(s.metrics[k], count=k in COUNT_KEYS) if k in s.metrics else "—" for k in keys]
        for name, s in result.strategies.items()
    ]
    return _table(["strategy", *keys], rows)


def _classification_html(confusion: Mapping[str, np.ndarray]) -> list[str]:
    """Accuracy and macro-F1 per class head, and each head's confusion matrix (row = actual)."""
    if not confusion:
        return []
    rows = []
    for head, matrix in confusion.items():
        scores = classification_metrics(matrix)
        rows.append([head, _fmt(scores["accuracy"]), _fmt(scores["macro_f1"]), _fmt(scores["n"], count=True)])
    parts = ["<h2>Classification heads (test block)</h2>", _table(["head", "accuracy", "macro-F1", "labels"], rows)]
    for head, matrix in confusion.items():
        names = CLASS_NAMES.get(head, tuple(str(i) for i in range(len(matrix))))
        body = [[f"actual {names[i]}", *(str(int(v)) for v in matrix[i])] for i in range(len(matrix))]
        parts += [f"<h3>{html.escape(head)}: confusion matrix</h3>",
                  _table(["", *(f"predicted {name}" for name in names)], body)]
    return parts


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure_html(filename: str, caption: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(filename)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)} ({html.escape(filename)})</figcaption></figure>"
    )


def _fmt(value: float | int | str, count: bool = False) -> str:
    """Floats with 4 decimals (large ones with 4 significant digits), ints, counts and text as such."""
    if isinstance(value, (bool, str, int, np.integer)):
        return str(value)
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if count:
        return str(round(value))
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.85em}"
    "th,td{border:1px solid #ccc;padding:0.3em 0.6em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}"
    "figure{margin:1.5em 0}img{max-width:100%}figcaption{color:#555;font-size:0.9em}"
)


# ---------------------------------------------------------------- walk-forward


def write_walkforward_report(
    result: BacktestResult,
    out_dir: Path,
    *,
    title: str,
    fold_rows: Sequence[Mapping[str, float | int | str]],
    fold_starts: Sequence[np.datetime64],
    search_histories: Mapping[str, Sequence[float]],
    extra_metrics: Mapping[str, float | int | str] | None = None,
) -> Path:
    """The walk-forward page: the stitched record against the baselines with the folds' test
    boundaries marked, per-fold Sharpe bars and table, drawdown, rolling Sharpe, each search's
    history. `fold_rows`: per fold `fold`, `start`, `end`, `n_dates` and each strategy's Sharpe."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def marked(plot: Callable[[BacktestResult], Figure]) -> Figure:
        fig = plot(result)
        for start in fold_starts:
            fig.axes[0].axvline(start, color="grey", linestyle="--", linewidth=0.8, zorder=0)
        return fig

    figures: list[tuple[str, str, Callable[[], Figure]]] = [
        ("equity.png", "Stitched out-of-sample equity (net of costs); dashed lines: fold boundaries",
         lambda: marked(_plot_equity)),
        ("fold_sharpe.png", "Net Sharpe per fold's test block", lambda: _plot_fold_bars(result, fold_rows)),
        ("drawdown.png", "Drawdown from the running peak", lambda: marked(_plot_drawdown)),
        ("rolling_sharpe.png", f"Rolling {ROLLING_WINDOW}-day Sharpe (annualized)", lambda: marked(_plot_rolling_sharpe)),
    ]
    for label, history in search_histories.items():
        if len(history):
            name = f"trials_{label.replace(' ', '')}.png"
            figures.append((name, f"Search of {label}: validation Sharpe per trial",
                            lambda history=history: _plot_trials(history)))
    sections = []
    for filename, caption, plot in figures:
        png = _png_bytes(plot())
        write_bytes(out_dir / filename, png)
        sections.append(_figure_html(filename, caption, png))
    names = list(result.strategies)
    table = _table(["fold", "test dates", "n", *names],
                   [[str(r["fold"]), f"{r['start']} .. {r['end']}", str(r["n_dates"]), *(_fmt(r[n]) for n in names)]
                    for r in fold_rows])
    page = _page_html(title, result, extra_metrics or {}, ["<h2>Folds</h2>", table, *sections])
    path = out_dir / REPORT_NAME
    write_bytes(path, page.encode("utf-8"))
    return path


def _plot_fold_bars(result: BacktestResult, fold_rows: Sequence[Mapping[str, float | int | str]]) -> Figure:
    fig, ax = _new_figure()
    names = list(result.strategies)
    width = 0.8 / len(names)
    folds = np.arange(len(fold_rows))
    for i, name in enumerate(names):
        ax.bar(folds + i * width, [float(r[name]) for r in fold_rows], width, label=name,
               edgecolor="black" if name == result.main else None)
    ax.set_xticks(folds + 0.4 - width / 2, [f"fold {r['fold']}" for r in fold_rows])
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_ylabel("net Sharpe")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="best", fontsize=7)
    return fig
