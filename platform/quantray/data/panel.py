"""The Panel: dense OHLCV arrays (daily or intraday bars) for a universe of assets, and the one place
rows are validated.

Every source (csv, parquet, yfinance, bundled, the registry's pyfunc) ends in `panel_from_tables`,
so a malformed row gets the same one-line `BadInput` naming the file, row and column whatever the
source. Row numbers are 1-based; for CSV files they are file line numbers with the header as line 1.

Bars: timestamps are parsed to the second. A source where no asset has two bars on one calendar day
is daily, and its dates are `datetime64[D]` (as they always were); otherwise the bars are intraday
and the dates stay `datetime64[s]`. `bars_per_year(dates)` infers the annualization from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from quantray.config import parse_duration
from quantray.errors import BadInput

FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
PRICE_FIELDS: tuple[str, ...] = ("open", "high", "low", "close")

# Column spellings accepted in user files, mapped to the canonical names.
_COLUMN_ALIASES = {
    "ticker": "asset", "symbol": "asset",
    "adj close": "adj_close", "adjclose": "adj_close", "adjusted_close": "adj_close",
    "datetime": "date", "timestamp": "date",
}

TRADING_DAYS_PER_YEAR = 252  # exchange-traded assets: weekdays less holidays
CALENDAR_DAYS_PER_YEAR = 365  # 24/7 markets (crypto)
WEEKEND_SHARE_24_7 = 0.2  # a 24/7 market trades on 2 days in 7 (0.29) at weekends; an exchange on none


@dataclass(frozen=True)
class Oracle:
    """The best positions given the true process at t (synthetic sources only)."""

    positions: np.ndarray  # float64 [T, A] in [-1, 1], held from t to t+1
    sharpe: float  # annualized (sqrt(252)) Sharpe of sum_a positions[t, a] * next_return[t, a]
    expected_return: np.ndarray  # float64 [T, A]: E[next_return[t] | state at t]


@dataclass(frozen=True)
class Panel:
    """Dates x assets x fields. NaN (and mask False) where an asset did not trade."""

    dates: np.ndarray  # datetime64[D] [T] (daily bars) or datetime64[s] (intraday), strictly increasing
    assets: tuple[str, ...]  # [A]
    fields: tuple[str, ...]  # subset of FIELDS in that order; close always present
    values: np.ndarray  # float64 [T, A, C]
    mask: np.ndarray  # bool [T, A], True = traded
    oracle: Oracle | None = None
    origins: tuple[str, ...] = field(default=())  # where each asset came from (file), for messages

    def __post_init__(self) -> None:
        T, A = len(self.dates), len(self.assets)
        if self.values.shape != (T, A, len(self.fields)) or self.mask.shape != (T, A):
            raise ValueError(f"panel shapes disagree: dates {T}, assets {A}, fields {len(self.fields)}, "
                             f"values {self.values.shape}, mask {self.mask.shape}")
        if "close" not in self.fields:
            raise ValueError("a panel needs a close field")

    @property
    def n_dates(self) -> int:
        return len(self.dates)

    @property
    def n_assets(self) -> int:
        return len(self.assets)

    def has(self, name: str) -> bool:
        return name in self.fields

    def field(self, name: str) -> np.ndarray:
        """The [T, A] view of one field."""
        return self.values[:, :, self.fields.index(name)]

    def origin(self, asset_index: int) -> str:
        return self.origins[asset_index] if self.origins else self.assets[asset_index]

    def head(self, n_dates: int) -> Panel:
        """The first `n_dates` dates (what the panel looked like at date n_dates - 1)."""
        oracle = None
        if self.oracle is not None:
            oracle = Oracle(self.oracle.positions[:n_dates], self.oracle.sharpe,
                            self.oracle.expected_return[:n_dates])
        return Panel(self.dates[:n_dates], self.assets, self.fields, self.values[:n_dates],
                     self.mask[:n_dates], oracle, self.origins)


@dataclass(frozen=True)
class Table:
    """Rows of one file as read, before validation. `rows` holds each row's number for messages."""

    origin: str  # the file (or a description of the frame) named in error messages
    frame: pd.DataFrame
    rows: np.ndarray  # int64 [n]: 1-based row number of each frame row
    default_asset: str | None = None  # asset name when the table has no asset column


@dataclass(frozen=True)
class _AssetSeries:
    name: str
    origin: str
    dates: np.ndarray  # datetime64[s] [n] as parsed (datetime64[D] once the source is known daily), sorted, unique
    values: dict[str, np.ndarray]  # field -> float64 [n]


def panel_from_long_frame(df: pd.DataFrame, *, origin: str = "frame") -> Panel:
    """A Panel from a long frame with columns date, asset, close (and open, high, low, volume).

    Rows are numbered from 1 in messages. Used by the registry's pyfunc and the parquet source.
    """
    if not isinstance(df, pd.DataFrame):
        raise BadInput(f"{origin}: expected a pandas DataFrame, got {type(df).__name__}")
    frame = df.reset_index(drop=True)
    return panel_from_tables([Table(origin, frame, np.arange(1, len(frame) + 1, dtype=np.int64))])


def panel_from_tables(tables: list[Table]) -> Panel:
    """Validate every table and assemble one Panel over the union of their dates."""
    series: list[_AssetSeries] = []
    for table in tables:
        series.extend(_series_from_table(table))
    if not series:
        raise BadInput(f"{tables[0].origin if tables else 'source'}: no data rows")
    seen: dict[str, str] = {}
    for s in series:
        if s.name in seen:
            raise BadInput(f"{s.origin}: asset '{s.name}' appears twice (also in {seen[s.name]})")
        seen[s.name] = s.origin
    # Features degrade to the fields every asset has (e.g. close-only if one file lacks OHLC).
    if not any(_two_bars_a_day(s.dates) for s in series):  # daily bars: a date is a day
        series = [_AssetSeries(s.name, s.origin, s.dates.astype("datetime64[D]"), s.values) for s in series]
    fields = tuple(f for f in FIELDS if all(f in s.values for s in series))
    dates = np.unique(np.concatenate([s.dates for s in series]))
    values = np.full((len(dates), len(series), len(fields)), np.nan)
    for a, s in enumerate(series):
        rows = np.searchsorted(dates, s.dates)
        for c, name in enumerate(fields):
            values[rows, a, c] = s.values[name]
    mask = ~np.isnan(values[:, :, fields.index("close")])
    return Panel(dates, tuple(s.name for s in series), fields, values, mask,
                 origins=tuple(s.origin for s in series))


def normalize_columns(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Lower-case, trimmed column names with the accepted aliases mapped; duplicates rejected."""
    names = []
    for column in frame.columns:
        name = str(column).strip().lower()
        name = _COLUMN_ALIASES.get(name, name.replace(" ", "_"))
        if name in names:
            raise BadInput(f"{origin}: column '{column}' appears twice")
        names.append(name)
    out = frame.copy(deep=False)
    out.columns = names
    return out


def _series_from_table(table: Table) -> list[_AssetSeries]:
    frame = normalize_columns(table.frame, table.origin)
    where = table.origin
    for required in ("date", "close"):
        if required not in frame.columns:
            raise BadInput(f"{where}: missing column '{required}' (found: {', '.join(map(str, frame.columns))})")
    ohlc = [c for c in ("open", "high", "low") if c in frame.columns]
    if ohlc and len(ohlc) != 3:
        missing = next(c for c in ("open", "high", "low") if c not in frame.columns)
        raise BadInput(f"{where}: missing column '{missing}' (open, high and low come together)")
    if "asset" not in frame.columns and table.default_asset is None:
        raise BadInput(f"{where}: missing column 'asset' (a long table names the asset of each row)")
    if len(frame) == 0:
        raise BadInput(f"{where}: no data rows")

    dates = _parse_dates(frame["date"], table)
    fields = [c for c in FIELDS if c in frame.columns]
    numbers = {name: _parse_numbers(frame[name], name, table) for name in fields}
    _check_prices(numbers, table, frame)
    if "adj_close" in frame.columns:  # adjusted prices: scale the whole bar by its close's adjustment
        adj_close = _parse_numbers(frame["adj_close"], "adj_close", table)
        _require(adj_close > 0, table, "adj_close", "price must be positive", frame["adj_close"])
        factor = adj_close / numbers["close"]
        numbers.update({name: numbers[name] * factor for name in PRICE_FIELDS if name in numbers})

    if "asset" in frame.columns:
        assets = _parse_assets(frame["asset"], table)
    else:
        assets = np.full(len(frame), table.default_asset, dtype=object)
    return [_one_asset(name, idx, dates, numbers, table) for name, idx in _group_rows(assets)]


def _group_rows(assets: np.ndarray) -> list[tuple[str, np.ndarray]]:
    codes, uniques = pd.factorize(assets, sort=False)
    order = np.argsort(codes, kind="stable")
    splits = np.flatnonzero(np.diff(codes[order])) + 1
    return [(str(uniques[codes[g[0]]]), g) for g in np.split(order, splits)]


def _one_asset(name: str, idx: np.ndarray, dates: np.ndarray, numbers: dict[str, np.ndarray],
               table: Table) -> _AssetSeries:
    d = dates[idx]
    order = np.argsort(d, kind="stable")
    sorted_dates = d[order]
    dup = np.flatnonzero(sorted_dates[1:] == sorted_dates[:-1])
    if dup.size:
        first, second = sorted(table.rows[idx[order[dup[0]:dup[0] + 2]]])
        raise BadInput(f"{table.origin}: row {second}, column 'date': duplicate date {_show_time(sorted_dates[dup[0]])} "
                       f"for asset '{name}' (also row {first})")
    return _AssetSeries(name, table.origin, sorted_dates,
                        {f: v[idx][order] for f, v in numbers.items()})


def _parse_dates(column: pd.Series, table: Table) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        parsed = column
    else:
        text = column.astype("string").str.strip()
        parsed = _to_datetime(text)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)  # keep the exchange's wall-clock date and time
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BadInput(f"{table.origin}: row {table.rows[i]}, column 'date': "
                       f"cannot parse date {_show(column.iloc[i])}")
    return parsed.to_numpy().astype("datetime64[s]")


def _two_bars_a_day(dates: np.ndarray) -> bool:
    """Whether sorted timestamps hold two bars on one calendar day (intraday bars)."""
    days = dates.astype("datetime64[D]")
    return bool((days[1:] == days[:-1]).any())


def _show_time(moment: np.datetime64) -> str:
    """A timestamp as the user wrote it: the day alone when it is midnight."""
    day = moment.astype("datetime64[D]")
    return str(day) if moment == day else str(moment)


def is_intraday(dates: np.ndarray) -> bool:
    """Whether a panel's dates are intraday bars (a unit finer than a day)."""
    unit, _ = np.datetime_data(np.asarray(dates).dtype)
    return unit not in ("Y", "M", "W", "D")


def bars_per_year(dates: np.ndarray, override: float = 0.0) -> float:
    """The periods per year to annualize returns of bars at `dates` (`override` wins when > 0).

    Days per year (`days_per_year`): 365 in a 24/7 market, else 252. Daily bars: that many (weekly
    and monthly ones: 52 and 12). Intraday bars: times the median number of bars per traded day
    (hourly US stocks: 7 a day, 1764 a year; hourly crypto: 8760).
    """
    if override > 0:
        return float(override)
    d = np.asarray(dates)
    if d.size < 2:
        return float(TRADING_DAYS_PER_YEAR)
    days, bars_per_day = np.unique(d.astype("datetime64[D]"), return_counts=True)
    if is_intraday(d):
        return float(days_per_year(d) * np.median(bars_per_day))
    gap = float(np.median(np.diff(days.astype(np.int64))))
    if gap >= 28:
        return 12.0
    if gap >= 7:
        return 52.0
    return float(days_per_year(d))


def days_per_year(dates: np.ndarray) -> int:
    """365 when a fifth or more of the traded days are weekend days (a 24/7 market), else 252."""
    days = np.unique(np.asarray(dates).astype("datetime64[D]"))
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    weekend = days.size > 0 and np.mean(weekday >= 5) >= WEEKEND_SHARE_24_7
    return CALENDAR_DAYS_PER_YEAR if weekend else TRADING_DAYS_PER_YEAR


def duration_in_bars(value: int | str, dates: np.ndarray, *, key: str, bars_per_year_override: float = 0.0) -> int:
    """`value` in bars of the data at `dates`: an int already is; a duration ("30min", "4h", "5d",
    "2w") is converted by the bars' spacing (minutes, hours) or their number per traded day
    (days; a week is 5 traded days, 7 in a 24/7 market). A duration that is not about a whole
    number of bars (within a tenth of a bar), or hours on daily bars, -> BadInput naming `key`."""
    if not isinstance(value, str):
        return int(value)
    amount, unit = parse_duration(value, key=key)
    if unit in ("min", "h"):
        spacing = bar_minutes(dates)
        if spacing is None:
            raise BadInput(f"{key}: {value!r} needs intraday bars, and these bars are daily or longer "
                           f"(give days, e.g. '5d', or a number of bars)")
        bars = amount * (60.0 if unit == "h" else 1.0) / spacing
    else:
        per_year = days_per_year(dates)
        week = 7.0 if per_year == CALENDAR_DAYS_PER_YEAR else 5.0
        days = amount * (week if unit == "w" else 1.0)
        bars = days * bars_per_year(dates, bars_per_year_override) / per_year
    whole = round(bars)
    if whole < 1 or abs(bars - whole) > 0.1:
        raise BadInput(f"{key}: {value!r} is {bars:.2f} bars of this data; give a whole number of bars")
    return int(whole)


def bar_minutes(dates: np.ndarray) -> float | None:
    """The median spacing in minutes of consecutive bars on the same day; None for daily bars."""
    d = np.asarray(dates)
    if not is_intraday(d):
        return None
    gaps = np.diff(d.astype("datetime64[s]").astype(np.int64))
    same_day = d[1:].astype("datetime64[D]") == d[:-1].astype("datetime64[D]")
    gaps = gaps[same_day & (gaps > 0)]
    return float(np.median(gaps)) / 60.0 if gaps.size else None


def _to_datetime(text: pd.Series) -> pd.Series:
    # ISO dates first (fast, strict); a column in another single format falls back to inference.
    try:
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
    except (ValueError, TypeError):
        parsed = pd.Series(pd.NaT, index=text.index)
    if parsed.isna().all() and text.notna().any():
        try:
            parsed = pd.to_datetime(text, format="mixed", errors="coerce")
        except (ValueError, TypeError):
            parsed = pd.to_datetime(text, format="mixed", errors="coerce", utc=True)
    return parsed


def _parse_numbers(column: pd.Series, name: str, table: Table) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        text = column.astype("string").str.strip()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        non_numeric = np.isnan(values) & text.fillna("").ne("").to_numpy() & ~_nan_words(text)
        if non_numeric.any():
            i = int(np.flatnonzero(non_numeric)[0])
            raise BadInput(f"{table.origin}: row {table.rows[i]}, column '{name}': "
                           f"non-numeric value {_show(column.iloc[i])}")
    missing = np.isnan(values)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise BadInput(f"{table.origin}: row {table.rows[i]}, column '{name}': missing value")
    _require(np.isfinite(values), table, name, "value is infinite", column)
    return values


def _nan_words(text: pd.Series) -> np.ndarray:
    return text.str.lower().isin(["nan", "na", "n/a", "null", "none"]).fillna(False).to_numpy(dtype=bool)


def _check_prices(numbers: dict[str, np.ndarray], table: Table, frame: pd.DataFrame) -> None:
    for name in PRICE_FIELDS:
        if name in numbers:
            _require(numbers[name] > 0, table, name, "price must be positive", frame[name])
    if "volume" in numbers:
        _require(numbers["volume"] >= 0, table, "volume", "volume must not be negative", frame["volume"])
    if "high" in numbers:
        high, low = numbers["high"], numbers["low"]
        bad = high < low
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BadInput(f"{table.origin}: row {table.rows[i]}, column 'high': high {high[i]:g} "
                           f"is below low {low[i]:g}")


def _parse_assets(column: pd.Series, table: Table) -> np.ndarray:
    text = column.astype("string").str.strip()
    empty = text.fillna("").eq("").to_numpy()
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise BadInput(f"{table.origin}: row {table.rows[i]}, column 'asset': empty asset name")
    return text.to_numpy(dtype=object)


def _require(ok: np.ndarray, table: Table, name: str, problem: str, column: pd.Series) -> None:
    bad = ~ok
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BadInput(f"{table.origin}: row {table.rows[i]}, column '{name}': {problem} "
                       f"(got {_show(column.iloc[i])})")


def _show(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def check_history(panel: Panel, lookback: int) -> None:
    """Every asset needs at least `lookback` traded dates, or no window can be built from it."""
    if lookback < 1:
        raise BadInput(f"lookback: must be at least 1, got {lookback}")
    counts = panel.mask.sum(axis=0)
    short = np.flatnonzero(counts < lookback)
    if short.size:
        a = int(short[0])
        raise BadInput(f"{panel.origin(a)}: asset '{panel.assets[a]}' has {int(counts[a])} dates, "
                       f"fewer than the lookback {lookback}")


def select_assets(panel: Panel, assets: tuple[str, ...]) -> Panel:
    """`panel` restricted to `assets`, in that order (models' ticker embeddings are by position)."""
    index = {name: i for i, name in enumerate(panel.assets)}
    missing = [name for name in assets if name not in index]
    if missing:
        raise BadInput(f"panel: asset '{missing[0]}' is missing (the model trades {', '.join(assets)}; "
                       f"the panel has {', '.join(panel.assets)})")
    order = [index[name] for name in assets]
    if order == list(range(panel.n_assets)):
        return panel
    oracle = None
    if panel.oracle is not None:
        oracle = Oracle(panel.oracle.positions[:, order], panel.oracle.sharpe, panel.oracle.expected_return[:, order])
    origins = tuple(panel.origins[i] for i in order) if panel.origins else ()
    return Panel(panel.dates, tuple(assets), panel.fields, panel.values[:, order], panel.mask[:, order], oracle,
                 origins)
