"""SOURCE strings -> Panel: synthetic, bundled, yfinance, csv and parquet.

    synthetic[:seed=0,assets=8,days=1500,signal=1]   a simulated market with a known oracle
    bundled:NAME                            real data shipped in the package (bundled/README.md)
    yfinance:SPY,QQQ[,start=..,end=..]      downloaded once, then read from the parquet cache
    csv:DIR | csv:FILE                      one file per ticker (name = ticker) or a long file
    parquet:PATH                            a long table with an asset column
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from quantray.data.panel import Panel, Table, panel_from_long_frame, panel_from_tables
from quantray.data.synthetic import MarketParams, simulate
from quantray.errors import BadInput
from quantray.workspace import atomic_file, cache_dir

SCHEMES: tuple[str, ...] = ("synthetic", "bundled", "yfinance", "csv", "parquet")
SYNTHETIC_DEFAULTS: dict[str, float] = {"seed": 0, "assets": 8, "days": 1500, "signal": 1.0}
SYNTHETIC_LIMITS = {"seed": (0, 2**32 - 1), "assets": (1, 500), "days": (2, 100_000), "signal": (0.0, 10.0)}
SYNTHETIC_FLOATS = ("signal",)  # a multiplier of the planted signal's strength; the rest are integers
BUNDLED_DIR = Path(__file__).parent / "bundled"
BUNDLED: tuple[str, ...] = ("us_indices", "sp500_stocks", "factors")  # see bundled/README.md


def load_panel(source: str) -> Panel:
    """Parse a SOURCE string and load it; malformed input raises BadInput naming file, row, column."""
    scheme, _, rest = source.partition(":")
    scheme = scheme.strip().lower()
    loaders: dict[str, Callable[[str, str], Panel]] = {
        "synthetic": _load_synthetic, "bundled": _load_bundled, "yfinance": _load_yfinance,
        "csv": _load_csv, "parquet": _load_parquet,
    }
    if scheme not in loaders:
        raise BadInput(f"source '{source}': unknown scheme '{scheme}' (expected one of: {', '.join(SCHEMES)})")
    return loaders[scheme](rest.strip(), source)


FILE_SCHEMES: tuple[str, ...] = ("csv", "parquet")  # the schemes whose rest is a path


def is_file_source(source: str) -> bool:
    """Whether `source` names a file or folder (csv:, parquet:)."""
    return source.partition(":")[0].strip().lower() in FILE_SCHEMES


def absolute_source(source: str, base: Path | str | None = None) -> str:
    """`source` with a relative `csv:`/`parquet:` path made absolute against `base` (default: the
    working directory); every other source unchanged.

    Resolve where the user typed the path: Ray runs trials in other working directories, so a
    relative path that reaches a trial names nothing. A path in a space file is relative to the
    space file's folder (pass it as `base`).
    """
    scheme, colon, rest = source.partition(":")
    location = rest.strip()
    if not colon or scheme.strip().lower() not in FILE_SCHEMES or not location:
        return source
    path = Path(location).expanduser()
    if not path.is_absolute():
        path = Path(base if base is not None else Path.cwd()).expanduser() / path
    return f"{scheme.strip()}:{Path(os.path.abspath(path))}"


# --- synthetic --------------------------------------------------------------------------------

def parse_options(text: str, source: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """'k=v,k=v' -> dict; unknown or repeated keys raise BadInput."""
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not value.strip():
            raise BadInput(f"source '{source}': expected key=value, got '{item}'")
        if key not in allowed:
            raise BadInput(f"source '{source}': unknown key '{key}' (expected one of: {', '.join(allowed)})")
        if key in options:
            raise BadInput(f"source '{source}': key '{key}' given twice")
        options[key] = value.strip()
    return options


def synthetic_options(text: str, source: str) -> dict[str, float]:
    options = dict(SYNTHETIC_DEFAULTS)
    for key, value in parse_options(text, source, tuple(SYNTHETIC_DEFAULTS)).items():
        kind = float if key in SYNTHETIC_FLOATS else int
        try:
            number = kind(value)
        except ValueError:
            noun = "a number" if kind is float else "an integer"
            raise BadInput(f"source '{source}': key '{key}' must be {noun}, got '{value}'") from None
        low, high = SYNTHETIC_LIMITS[key]
        if not low <= number <= high:
            raise BadInput(f"source '{source}': key '{key}' must be in {low}..{high}, got {number}")
        options[key] = number
    return options


def synthetic_arguments(source: str) -> dict[str, Any]:
    """The arguments of `synthetic.simulate` that a `synthetic:` source names (seed, assets, days,
    params): the one place that maps the source to its market, for the loader and for whoever
    needs more of the same market (`synthetic.expected_return_parts`)."""
    scheme, _, rest = source.partition(":")
    if scheme.strip().lower() != "synthetic":
        raise BadInput(f"source '{source}': not a synthetic: source")
    options = synthetic_options(rest.strip(), source)
    params = MarketParams(signal_kappa=MarketParams.signal_kappa * options["signal"])
    return {"seed": int(options["seed"]), "assets": int(options["assets"]), "days": int(options["days"]),
            "params": params}


def _load_synthetic(rest: str, source: str) -> Panel:
    return simulate(**synthetic_arguments(source))


# --- bundled ----------------------------------------------------------------------------------

def _load_bundled(name: str, source: str) -> Panel:
    path = BUNDLED_DIR / f"{name}.parquet"
    if name not in BUNDLED or not path.is_file():
        available = [n for n in BUNDLED if (BUNDLED_DIR / f"{n}.parquet").is_file()]
        raise BadInput(f"source '{source}': unknown bundled dataset '{name}' (available: {', '.join(available)})")
    return _read_long_parquet(path)


# --- csv and parquet --------------------------------------------------------------------------

def _load_csv(location: str, source: str) -> Panel:
    path = _existing_path(location, source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".gz", ".txt"))
        if not files:
            raise BadInput(f"{path}: no .csv files in this folder")
    else:
        files = [path]
    return panel_from_tables([read_csv_table(f) for f in files])


def read_csv_table(path: Path) -> Table:
    """One CSV file as strings, with file line numbers (header = line 1) for every data row."""
    _check_text_file(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False,
                            skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise BadInput(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"{path}: not a readable CSV file ({_first_line(exc)})") from None
    rows = np.arange(2, len(frame) + 2, dtype=np.int64)
    blank = frame.apply(lambda c: c.str.strip().eq("")).all(axis=1).to_numpy() if len(frame.columns) else None
    if blank is not None and blank.any():  # blank lines keep their numbers but carry no row
        frame, rows = frame.loc[~blank].reset_index(drop=True), rows[~blank]
    if len(frame) == 0:
        raise BadInput(f"{path}: no data rows (header only)")
    name = _ticker_from_file_name(path.name)
    return Table(str(path), frame, rows, default_asset=name)


def _ticker_from_file_name(name: str) -> str:
    """'BRK.B.csv' -> 'BRK.B', 'SPY.csv.gz' -> 'SPY'."""
    for suffix in (".gz", ".csv", ".txt"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _check_text_file(path: Path) -> None:
    with open(path, "rb") as handle:
        head = handle.read(8192)
    if not head.strip():
        raise BadInput(f"{path}: empty file")
    if path.suffix.lower() == ".gz":
        return  # pandas decompresses; malformed content surfaces as a parse error
    if b"\x00" in head:
        raise BadInput(f"{path}: not a CSV text file (a NUL byte at offset {head.index(bytes(1))})")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the 8 KiB boundary is fine
            raise BadInput(f"{path}: not a CSV text file (bytes that are not UTF-8 at offset {exc.start})") from None


def _load_parquet(location: str, source: str) -> Panel:
    return _read_long_parquet(_existing_path(location, source))


def _read_long_parquet(path: Path) -> Panel:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        frame = pq.read_table(path).to_pandas(date_as_object=False)
    except (pa.ArrowException, OSError) as exc:
        raise BadInput(f"{path}: not a readable parquet file ({_first_line(exc)})") from None
    if len(frame) == 0:
        raise BadInput(f"{path}: no data rows")
    return panel_from_long_frame(frame, origin=str(path))


def _existing_path(location: str, source: str) -> Path:
    if not location:
        raise BadInput(f"source '{source}': missing path after '{source.split(':')[0]}:'")
    path = Path(location).expanduser()
    if not path.exists():
        raise BadInput(f"{path}: no such file or folder (source '{source}')")
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- yfinance ---------------------------------------------------------------------------------

def parse_yfinance_source(rest: str, source: str) -> tuple[list[str], dict[str, str]]:
    """'SPY,QQQ,start=2010-01-01' -> (['QQQ', 'SPY'], {'start': '2010-01-01'})."""
    tickers, option_items = [], []
    for item in filter(None, (part.strip() for part in rest.split(","))):
        (option_items if "=" in item else tickers).append(item)
    options = parse_options(",".join(option_items), source, ("start", "end"))
    for key, value in options.items():
        if not _is_iso_date(value):
            raise BadInput(f"source '{source}': key '{key}' must be a date YYYY-MM-DD, got '{value}'")
    if not tickers:
        raise BadInput(f"source '{source}': name at least one ticker, e.g. yfinance:SPY,QQQ")
    for ticker in tickers:
        if not all(ch.isalnum() or ch in ".-^=" for ch in ticker):
            raise BadInput(f"source '{source}': '{ticker}' is not a ticker symbol")
    return sorted({t.upper() for t in tickers}), options


def _is_iso_date(value: str) -> bool:
    try:
        np.datetime64(value, "D")
    except ValueError:
        return False
    return len(value) == 10


def _load_yfinance(rest: str, source: str) -> Panel:
    tickers, options = parse_yfinance_source(rest, source)
    path = yfinance_cache_path(tickers, options)
    if not path.is_file():  # download once; afterwards the cache serves offline
        frame = _download_yfinance(tickers, options, source)
        write_frame_atomic(parse_yfinance_frame(frame, tickers), path)
    return _read_long_parquet(path)


def yfinance_cache_path(tickers: list[str], options: dict[str, str]) -> Path:
    key = ",".join(tickers) + f"|{options.get('start', '')}|{options.get('end', '')}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return cache_dir() / f"yfinance_{'_'.join(tickers)[:40]}_{digest}.parquet"


def _download_yfinance(tickers: list[str], options: dict[str, str], source: str) -> pd.DataFrame:
    no_cache = f"and there is no cache at {yfinance_cache_path(tickers, options)}"
    try:
        import yfinance
    except ImportError:
        raise BadInput(f"source '{source}': yfinance is not installed (pip install 'quantray[yfinance]') "
                       f"{no_cache}") from None
    start = options.get("start")
    try:
        # Without a start, yfinance's default period is one month: ask for "max" (up to `end`).
        frame = yfinance.download(tickers, start=start, end=options.get("end"), period=None if start else "max",
                                  auto_adjust=True, progress=False, threads=False, multi_level_index=True)
    except Exception as exc:  # noqa: BLE001 - whatever the network did, there is no data
        raise BadInput(f"source '{source}': download failed ({type(exc).__name__}: {_first_line(exc)}) "
                       f"{no_cache}") from None
    if frame is None or frame.dropna(how="all").empty:
        raise BadInput(f"source '{source}': yfinance returned no data (no network?) {no_cache}")
    return frame


def parse_yfinance_frame(frame: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
    """yfinance.download's wide frame -> a long frame (date, asset, open, high, low, close, volume).

    yfinance 1.x returns columns MultiIndex (Price, Ticker), Price in Close/High/Low/Open/Volume
    (plus 'Adj Close' when auto_adjust=False), and a tz-naive DatetimeIndex named 'Date'. A ticker
    that failed to download is all NaN; rows before a ticker's first trade are NaN.
    """
    if not isinstance(frame.columns, pd.MultiIndex):  # multi_level_index=False with one ticker
        frame = pd.concat({tickers[0]: frame}, axis=1, names=["Ticker", "Price"])
    level = "Ticker" if "Ticker" in frame.columns.names else 1
    pieces = []
    for ticker in tickers:
        if ticker not in frame.columns.get_level_values(level):
            raise BadInput(f"yfinance: no column for ticker '{ticker}'")
        one = frame.xs(ticker, axis=1, level=level).rename(columns=lambda c: str(c).lower().replace(" ", "_"))
        if "adj_close" in one.columns:  # auto_adjust=False: scale the bar by the close's adjustment
            factor = one["adj_close"] / one["close"]
            one = one.assign(**{c: one[c] * factor for c in ("open", "high", "low") if c in one.columns},
                             close=one["adj_close"])
        one = one[[c for c in ("open", "high", "low", "close", "volume") if c in one.columns]]
        one = one.dropna(subset=["close"])
        if one.empty:
            raise BadInput(f"yfinance: no data for '{ticker}' (unknown ticker or no network)")
        dates = pd.DatetimeIndex(one.index)
        if dates.tz is not None:
            dates = dates.tz_localize(None)
        pieces.append(one.assign(date=dates.normalize(), asset=ticker).reset_index(drop=True))
    return pd.concat(pieces, ignore_index=True)[["date", "asset", *pieces[0].columns[:-2]]]


def write_frame_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Parquet (.parquet/.pq) or CSV (.csv) by extension, whole or absent."""
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv"):
        raise BadInput(f"{path}: output must end in .parquet or .csv")
    with atomic_file(path) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False, compression="zstd")
