"""The bar history `/bars` keeps: every bar each asset has sent, as one growing Panel.

Exactness needs all of it: some features are EWMAs over the whole history (`_ema`), so a
truncated history would move them. Appending copies the arrays (O(T) per bar) into a new Panel;
the old one stays valid until the caller swaps it in, so a failure leaves the state untouched.
"""

from __future__ import annotations

import numpy as np

from quantray.data.panel import FIELDS, Panel
from quantray.errors import BadInput


def empty_history(assets: tuple[str, ...]) -> Panel:
    return Panel(np.zeros(0, dtype="datetime64[D]"), assets, FIELDS,
                 np.zeros((0, len(assets), len(FIELDS))), np.zeros((0, len(assets)), dtype=bool))


def append_bar(history: Panel, bar: Panel) -> Panel:
    """`history` with one more date: the bar's assets traded, the others not (NaN, masked)."""
    date = bar.dates[0]
    if history.n_dates and date <= history.dates[-1]:
        raise BadInput(f"bars: column 'date': {date} is not after the last bar {history.dates[-1]} "
                       f"(bars arrive one date at a time, in order)")
    row = np.full((1, history.n_assets, len(FIELDS)), np.nan)
    index = {name: i for i, name in enumerate(history.assets)}
    columns = [bar.fields.index(f) for f in FIELDS]
    for a, name in enumerate(bar.assets):
        row[0, index[name]] = bar.values[0, a, columns]
    return Panel(np.concatenate([history.dates, bar.dates]), history.assets, FIELDS,
                 np.concatenate([history.values, row]),
                 np.concatenate([history.mask, ~np.isnan(row[:, :, FIELDS.index("close")])]))
