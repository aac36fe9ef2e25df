"""`quantray data show|check|export` through the real CLI, and one clear line for every bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_helpers import late_start_panel, write_ticker_csvs

from quantray.cli import main

GOOD = "date,open,high,low,close,volume\n2020-01-02,1,2,0.5,1.5,100\n"

# name -> (file name, bytes, what the one error line must contain)
BAD_FILES: dict[str, tuple[str, bytes, tuple[str, ...]]] = {
    "missing column": ("A.csv", b"date,open,high,low\n2020-01-02,1,2,0.5\n", ("A.csv", "missing column 'close'")),
    "non-numeric cell": ("A.csv", (GOOD + "2020-01-03,1,2,0.5,abc,100\n").encode(),
                         ("A.csv", "row 3", "column 'close'", "non-numeric value 'abc'")),
    "duplicate date": ("A.csv", (GOOD + "2020-01-03,1,2,0.5,1,1\n2020-01-03,1,2,0.5,1,1\n").encode(),
                       ("A.csv", "row 4", "column 'date'", "duplicate date 2020-01-03")),
    "unparsable date": ("A.csv", (GOOD + "2020-02-31,1,2,0.5,1,1\n").encode(),
                        ("A.csv", "row 3", "column 'date'", "cannot parse date '2020-02-31'")),
    "negative price": ("A.csv", (GOOD + "2020-01-03,-1,2,0.5,1,1\n").encode(),
                       ("A.csv", "row 3", "column 'open'", "price must be positive")),
    "zero price": ("A.csv", (GOOD + "2020-01-03,1,2,0.5,0,1\n").encode(),
                   ("A.csv", "row 3", "column 'close'", "price must be positive")),
    "high below low": ("A.csv", (GOOD + "2020-01-03,1,0.5,2,1,1\n").encode(),
                       ("A.csv", "row 3", "column 'high'", "below low")),
    "inf": ("A.csv", (GOOD + "2020-01-03,1,2,0.5,inf,1\n").encode(),
            ("A.csv", "row 3", "column 'close'", "infinite")),
    "empty cell": ("A.csv", (GOOD + "2020-01-03,1,2,0.5,,1\n").encode(),
                   ("A.csv", "row 3", "column 'close'", "missing value")),
    "row after a blank line": ("A.csv", (GOOD + "\n2020-01-03,1,2,0.5,x,1\n").encode(),
                               ("A.csv", "row 4", "column 'close'")),
    "header only": ("A.csv", b"date,open,high,low,close,volume\n", ("A.csv", "no data rows")),
    "empty file": ("A.csv", b"", ("A.csv", "empty file")),
    "non-CSV bytes": ("A.csv", bytes(range(256)) * 4, ("A.csv", "not a CSV text file")),
    "non-UTF-8 bytes": ("A.csv", b"\x89PNG\r\n\x1a\n\xff\xfe" * 10, ("A.csv", "not a CSV text file")),
    "ragged rows": ("A.csv", (GOOD + "2020-01-03,1,2,0.5,1,1,7,8\n").encode(), ("A.csv", "not a readable CSV")),
}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clear_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("quantray: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_gets_one_line_naming_file_row_column(tmp_path, capsys, case):
    name, content, needles = BAD_FILES[case]
    folder = tmp_path / "prices"
    folder.mkdir()
    (folder / name).write_bytes(content)
    code, out, err = run_cli(capsys, "data", "check", f"csv:{folder}", "--lookback", "1")
    assert code == 2 and out == ""
    assert_one_clear_line(err, *needles)
    # export validates before writing: nothing appears, not even a temporary file
    target = tmp_path / "out" / "features.parquet"
    code, _, err = run_cli(capsys, "data", "export", f"csv:{folder}", "--out", str(target), "--lookback", "1")
    assert code == 2 and not target.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert_one_clear_line(err, *needles)


@pytest.mark.parametrize("source, needles", [
    ("nope:x", ("unknown scheme 'nope'",)),
    ("bundled:nope", ("unknown bundled dataset 'nope'", "us_indices")),
    ("synthetic:assets=x", ("key 'assets' must be an integer",)),
    ("synthetic:color=red", ("unknown key 'color'",)),
    ("synthetic:days=0", ("key 'days' must be in",)),
    ("synthetic:days=30", ("has 30 dates, fewer than the lookback 64",)),
    ("csv:/no/such/folder", ("/no/such/folder", "no such file")),
])
def test_bad_sources(capsys, source, needles):
    code, _, err = run_cli(capsys, "data", "check", source)
    assert code == 2
    assert_one_clear_line(err, *needles)


def test_empty_folder_and_short_history(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "data", "check", f"csv:{tmp_path / 'empty'}")
    assert code == 2
    assert_one_clear_line(err, "empty", "no .csv files")
    write_ticker_csvs(tmp_path / "short", late_start_panel(days=100))
    code, _, err = run_cli(capsys, "data", "check", f"csv:{tmp_path / 'short'}", "--lookback", "80")
    assert code == 2
    assert_one_clear_line(err, "IWM.csv", "asset 'IWM' has 59 dates, fewer than the lookback 80")


def test_show_and_check_a_good_folder(tmp_path, capsys):
    # 250 dates: after the default features' warm-up and the lookback, enough for a validation block
    # purged and embargoed before the test block
    folder = write_ticker_csvs(tmp_path / "prices", late_start_panel(days=250))
    code, out, _ = run_cli(capsys, "data", "show", f"csv:{folder}")
    assert code == 0
    assert "assets:  3" in out and "gaps:    1 " in out and "open, high, low, close, volume" in out
    assert "IWM" in out and "2010-03-01" in out  # the late asset's first date
    code, out, _ = run_cli(capsys, "data", "check", f"csv:{folder}", "--lookback", "32")
    assert code == 0 and out.startswith("ok: ")


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_rows_are_what_the_models_see(tmp_path, capsys, suffix):
    source = "synthetic:assets=3,days=400,seed=4"
    target = tmp_path / f"export{suffix}"
    code, out, _ = run_cli(capsys, "data", "export", source, "--out", str(target), "--horizon", "3")
    assert code == 0 and target.exists() and [p.name for p in tmp_path.iterdir()] == [target.name]
    frame = pd.read_parquet(target) if suffix == ".parquet" else pd.read_csv(target)
    assert len(frame) == 1200
    features = [c for c in frame.columns if c not in ("date", "asset", "valid") and not c.startswith("label_")]
    assert features[0] == "log_return" and len(features) == 44 and features[22] == "log_return_cs"
    assert {"label_next_return", "label_fwd_return", "label_direction", "label_barrier", "label_volatility",
            "label_volume", "label_regime"} <= set(frame.columns)
    # causal normalization: exporting a shorter history gives the same rows for the shared dates
    short = tmp_path / f"short{suffix}"
    assert run_cli(capsys, "data", "export", "synthetic:assets=3,days=400,seed=4", "--out", str(short))[0] == 0
    short_frame = pd.read_parquet(short) if suffix == ".parquet" else pd.read_csv(short)
    np.testing.assert_allclose(short_frame[features].to_numpy(), frame[features].to_numpy(), rtol=1e-6)


def test_export_rejects_an_unknown_extension(tmp_path, capsys):
    code, _, err = run_cli(capsys, "data", "export", "synthetic", "--out", str(tmp_path / "x.json"))
    assert code == 2 and not (tmp_path / "x.json").exists()
    assert_one_clear_line(err, "x.json", ".parquet or .csv")


def test_real_entry_point_subprocess(tmp_path):
    quantray = Path(sys.executable).with_name("quantray")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "SPY.csv").write_text(GOOD + "2020-01-03,1,2,0.5,abc,100\n")
    result = subprocess.run([str(quantray), "data", "check", f"csv:{bad}"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    expected = f"quantray: error: {bad / 'SPY.csv'}: row 3, column 'close': non-numeric value 'abc'"
    assert result.stderr.strip() == expected
    help_text = subprocess.run([str(quantray), "data", "export", "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "--horizon" in help_text.stdout
