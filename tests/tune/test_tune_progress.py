"""The console during a search: one line per trial event; a failed trial is one line, not a traceback."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from types import SimpleNamespace

from quantray.tune.progress import ProgressPrinter


def test_a_failed_trial_is_one_line_with_the_reason_and_the_log(tmp_path: Path) -> None:
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                          "quantray.errors.BadInput: prices: no such file or folder\n")
    stream, log = io.StringIO(), tmp_path / "quickstart.log"
    printer = ProgressPrinter(total_trials=4, epochs=2, stream=stream, log=log)
    printer.on_trial_error(0, [], SimpleNamespace(trial_id="abc_00001", error_file=str(error_file)))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    assert "FAIL   abc_00001  quantray.errors.BadInput: prices: no such file or folder" in lines[0]
    assert str(log) in lines[0] and "[1/4]" in lines[0]


def test_the_printer_survives_tunes_experiment_snapshot() -> None:
    """Tune pickles its callbacks with the experiment state; a terminal stream must not stop it."""
    stream = open("/dev/null", "w")
    try:
        restored = pickle.loads(pickle.dumps(ProgressPrinter(total_trials=1, epochs=1, stream=stream)))
    finally:
        stream.close()
    assert isinstance(restored, ProgressPrinter)


def test_a_trial_ended_early_says_by_what() -> None:
    stream = io.StringIO()
    printer = ProgressPrinter(total_trials=3, epochs=8, patience=3, stream=stream)
    for epoch, chosen in ((8, 6), (5, 2), (4, 3)):  # ran every epoch; early stopping; ASHA
        printer.on_trial_complete(0, [], SimpleNamespace(trial_id="t", last_result={"epoch": epoch, "best_epoch": chosen}))
    finished, patient, asha = stream.getvalue().splitlines()
    assert "finished" in finished
    assert "stopped early after epoch 5: no better score since epoch 2" in patient
    assert "stopped by ASHA after epoch 4" in asha
