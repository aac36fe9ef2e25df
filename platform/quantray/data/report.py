"""Text summaries of a Panel and long-format exports of prepared data (`quantray data show|export`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from quantray.data.panel import Panel
from quantray.data.pipeline import Prepared

LABEL_COLUMNS: tuple[str, ...] = ("next_return", "fwd_return", "direction", "barrier", "volatility", "volume")


def asset_table(panel: Panel) -> pd.DataFrame:
    """Per asset: first and last traded date, traded rows, and gaps (dates missing in between)."""
    traded = panel.mask
    first = traded.argmax(axis=0)
    last = len(traded) - 1 - traded[::-1].argmax(axis=0)
    rows = traded.sum(axis=0)
    return pd.DataFrame({
        "asset": panel.assets,
        "first": panel.dates[first],
        "last": panel.dates[last],
        "rows": rows,
        "gaps": (last - first + 1) - rows,
    })


def summarize(panel: Panel, source: str) -> str:
    table = asset_table(panel)
    lines = [
        f"source:  {source}",
        f"assets:  {panel.n_assets} ({', '.join(panel.assets[:12])}{', ...' if panel.n_assets > 12 else ''})",
        f"dates:   {panel.n_dates}, {panel.dates[0]} .. {panel.dates[-1]}",
        f"rows:    {int(panel.mask.sum())} traded (date, asset) rows",
        f"gaps:    {int(table['gaps'].sum())} missing dates inside assets' histories",
        f"columns: {', '.join(panel.fields)}",
    ]
    if panel.oracle is not None:
        lines.append(f"oracle:  Sharpe {panel.oracle.sharpe:.2f} (annualized, best positions from the true process)")
    lines.append("")
    lines.append(table.to_string(index=False))
    return "\n".join(lines)


def export_frame(prepared: Prepared, fold: int = 0) -> pd.DataFrame:
    """One row per traded (date, asset): `valid`, the model features as the models of `fold` see them
    (its fitted pipeline; 0 where not valid) and the labels as label_* (NaN or -1 where unknown)."""
    panel, features, labels = prepared.panel, prepared.fold_features(fold), prepared.labels
    t, a = np.nonzero(panel.mask)
    columns: dict[str, np.ndarray] = {
        "date": panel.dates[t],
        "asset": np.asarray(panel.assets, dtype=object)[a],
        "valid": features.valid[t, a],
    }
    for j, name in enumerate(features.names):
        columns[name] = features.values[t, a, j]
    for name in LABEL_COLUMNS:
        columns[f"label_{name}"] = getattr(labels, name)[t, a]
    columns["label_regime"] = labels.regime[t]
    return pd.DataFrame(columns)
