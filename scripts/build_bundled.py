"""Build the real datasets shipped in platform/quantray/data/bundled/ (run once, offline).

The data come from files that two PyPI packages ship inside their wheels; quantray does not
depend on either at run time. Install them into a throwaway environment and run this script there:

    python3 -m venv /tmp/bundlevenv
    /tmp/bundlevenv/bin/pip install arch skfolio pyarrow
    /tmp/bundlevenv/bin/python scripts/build_bundled.py

Each dataset is a long parquet table (date, asset, close[, open, high, low, volume]) in float32
with zstd compression; the script also writes bundled/README.md with provenance and checksums.
"""

from __future__ import annotations

import hashlib
import os
from importlib.metadata import version
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "platform" / "quantray" / "data" / "bundled"


def us_indices() -> pd.DataFrame:
    """S&P 500 and NASDAQ Composite daily OHLCV, 1999-2018 (arch.data.sp500, arch.data.nasdaq)."""
    from arch.data import nasdaq, sp500

    frames = []
    for asset, module in (("SP500", sp500), ("NASDAQ", nasdaq)):
        df = module.load()
        factor = df["Adj Close"] / df["Close"]  # 1.0 for these indices; kept general
        frames.append(pd.DataFrame({
            "date": df.index, "asset": asset,
            "open": df["Open"] * factor, "high": df["High"] * factor, "low": df["Low"] * factor,
            "close": df["Adj Close"], "volume": df["Volume"],
        }))
    return pd.concat(frames, ignore_index=True)


def sp500_stocks() -> pd.DataFrame:
    """20 S&P 500 constituents and the index, daily adjusted closes, 1990-2022 (skfolio)."""
    from skfolio.datasets import load_sp500_dataset, load_sp500_index

    wide = load_sp500_dataset().join(load_sp500_index(), how="outer")
    return _long_closes(wide)


def factors() -> pd.DataFrame:
    """5 factor ETFs (MTUM, QUAL, SIZE, USMV, VLUE), daily adjusted closes, 2014-2022 (skfolio)."""
    from skfolio.datasets import load_factors_dataset

    return _long_closes(load_factors_dataset())


def _long_closes(wide: pd.DataFrame) -> pd.DataFrame:
    wide = wide.rename_axis("date").rename_axis("asset", axis=1)
    long = wide.stack().rename("close").reset_index()
    return long.dropna(subset=["close"])


DATASETS = {
    "us_indices": (us_indices, "arch", "arch.data.sp500.load(), arch.data.nasdaq.load()", "NCSA"),
    "sp500_stocks": (sp500_stocks, "skfolio", "skfolio.datasets.load_sp500_dataset(), load_sp500_index()",
                     "BSD-3-Clause"),
    "factors": (factors, "skfolio", "skfolio.datasets.load_factors_dataset()", "BSD-3-Clause"),
}


def write(frame: pd.DataFrame, path: Path) -> None:
    frame = frame.sort_values(["asset", "date"]).reset_index(drop=True)
    frame["date"] = pd.to_datetime(frame["date"]).dt.date  # parquet date32
    frame["asset"] = frame["asset"].astype(str)
    for column in frame.columns.drop(["date", "asset"]):
        frame[column] = frame[column].astype("float32")
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False, compression="zstd")
    os.replace(tmp, path)


def readme(rows: list[str]) -> str:
    return f"""# Bundled datasets

Real daily market data shipped with quantray as long parquet tables (`date, asset, close` and,
where available, `open, high, low, volume`; float32, zstd). Load them with `bundled:NAME`.
They were built once by `scripts/build_bundled.py` from data files that two PyPI packages ship
inside their wheels; quantray has no run-time dependency on those packages.

| name | content | source package | loader | licence | rows | dates | sha256 (first 16 hex) |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Provenance and licences:

- `arch` (Kevin Sheppard, https://github.com/bashtage/arch), University of Illinois/NCSA Open
  Source Licence: the S&P 500 (^GSPC) and NASDAQ Composite (^IXIC) daily OHLCV files
  `arch/data/sp500/sp500.csv.gz` and `arch/data/nasdaq/nasdaq.csv.gz`, originally from Yahoo
  Finance. Closes are the adjusted closes (equal to the closes for these indices).
- `skfolio` (the skfolio developers, https://github.com/skfolio/skfolio), BSD 3-Clause Licence:
  `skfolio/datasets/data/sp500_dataset.csv.gz` (adjusted closes of 20 S&P 500 constituents:
  AAPL, AMD, BAC, BBY, CVX, GE, HD, JNJ, JPM, KO, LLY, MRK, MSFT, PEP, PFE, PG, RRC, UNH, WMT,
  XOM), `sp500_index.csv.gz` (the index, asset `SP500`) and `factors_dataset.csv.gz` (MTUM,
  QUAL, SIZE, USMV, VLUE). skfolio describes these as stale data for testing and examples, not
  for investment decisions; the same holds here. Prices carry three decimals, so the early
  prices of some stocks are coarse.

All of these datasets ship in the wheels; none had to be downloaded.
"""


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (build, package, loader, licence) in DATASETS.items():
        path = OUT / f"{name}.parquet"
        frame = build()
        write(frame, path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        span = f"{pd.Timestamp(frame['date'].min()).date()}..{pd.Timestamp(frame['date'].max()).date()}"
        assets = frame["asset"].nunique()
        content = f"{assets} assets, {', '.join(c for c in frame.columns if c not in ('date', 'asset'))}"
        rows.append(f"| `{name}` | {content} | {package} {version(package)} | `{loader}` | {licence} | "
                    f"{len(frame)} | {span} | `{digest}` |")
        print(f"{path}: {len(frame)} rows, {assets} assets, {span}, {path.stat().st_size / 1e6:.2f} MB")
    (OUT / "README.md").write_text(readme(rows))


if __name__ == "__main__":
    main()
