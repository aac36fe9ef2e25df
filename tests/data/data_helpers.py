"""Small panels and CSV writers shared by the data-layer tests (imported as `data_helpers`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from quantray.data.panel import FIELDS, Panel
from quantray.data.synthetic import simulate


def late_start_panel(days: int = 360, seed: int = 3) -> Panel:
    """Three synthetic assets; the third starts trading 40 dates in and skips one date later (200 of 360)."""
    panel = simulate(seed=seed, assets=3, days=days)
    values, mask = panel.values.copy(), panel.mask.copy()
    mask[:40, 2] = False
    mask[days * 5 // 9, 2] = False  # date 200 of 360
    values[~mask] = np.nan
    return Panel(panel.dates, panel.assets, panel.fields, values, mask)


def perturbed_after(panel: Panel, t: int, factor: np.ndarray, volume_factor: np.ndarray) -> Panel:
    """Rows after t rescaled (each date's bar by one factor, so the bar stays consistent)."""
    values = panel.values.copy()
    price = [panel.fields.index(f) for f in ("open", "high", "low", "close") if f in panel.fields]
    values[t + 1:, :, price] *= factor[t + 1:, :, None]
    if panel.has("volume"):
        values[t + 1:, :, panel.fields.index("volume")] *= volume_factor[t + 1:]
    return Panel(panel.dates, panel.assets, panel.fields, values, panel.mask)


def write_ticker_csvs(folder: Path, panel: Panel, fields: tuple[str, ...] = FIELDS) -> Path:
    """One CSV per asset with the traded rows only."""
    folder.mkdir(parents=True, exist_ok=True)
    for a, asset in enumerate(panel.assets):
        rows = panel.mask[:, a]
        frame = pd.DataFrame({"date": panel.dates[rows].astype(str)})
        for name in fields:
            frame[name] = panel.field(name)[rows, a]
        frame.to_csv(folder / f"{asset}.csv", index=False)
    return folder
