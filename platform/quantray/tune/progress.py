"""Compact live progress of a search: one line per trial event, best-so-far on every epoch line."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ray.tune import Callback

from quantray.train.loop import stale


class ProgressPrinter(Callback):
    def __init__(self, *, total_trials: int, epochs: int, patience: int = 0, stream: TextIO = sys.stdout,
                 log: Path | None = None) -> None:
        self._log = log  # where the full traceback of a failed trial is (besides Tune's error file)
        self._total = total_trials
        self._epochs = epochs
        self._patience = patience
        self._stream = stream
        self._started = time.monotonic()
        self._best = -math.inf
        self._best_trial = ""
        self._done = 0

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; a terminal stream does not pickle
        return {**self.__dict__, "_stream": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _stream=sys.stdout)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        params = "  ".join(f"{_short(k)}={_fmt(v)}" for k, v in sorted(trial.config.items()))
        self._line(f"start  {trial.trial_id}  {params}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        sharpe = float(result.get("val_sharpe", math.nan))
        score = float(result.get("best_val_sharpe", math.nan))  # the chosen epoch's: what trials are ranked by
        if score > self._best:
            self._best, self._best_trial = score, trial.trial_id
        self._line(f"epoch  {trial.trial_id}  {int(result.get('epoch', 0))}/{self._epochs}  "
                   f"val Sharpe {sharpe:6.2f}  loss {float(result.get('val_loss', math.nan)):.4f}  "
                   f"| best {self._best:.2f} ({self._best_trial})")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._done += 1
        result = trial.last_result or {}
        epochs, chosen = int(result.get("epoch", 0)), int(result.get("best_epoch", 0))
        how = "finished"
        if epochs < self._epochs and stale(chosen, epochs, self._patience):  # the loop's own rule
            how = f"stopped early after epoch {epochs}: no better score since epoch {chosen}"
        elif epochs < self._epochs:
            how = f"stopped by ASHA after epoch {epochs}"
        self._line(f"done   {trial.trial_id}  {how}  [{self._done}/{self._total}]")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._done += 1
        where = self._log or getattr(trial, "error_file", None) or "Tune's trial folder"
        self._line(f"FAIL   {trial.trial_id}  {_last_error_line(trial)}  (traceback: {where}); "
                   f"the search goes on  [{self._done}/{self._total}]")

    def _line(self, text: str) -> None:
        elapsed = time.monotonic() - self._started
        print(f"[{elapsed:5.0f}s] {text}", file=self._stream, flush=True)


def _last_error_line(trial: Any) -> str:
    """The exception line of a failed trial (Tune keeps the whole traceback in its error file)."""
    path = getattr(trial, "error_file", None)
    try:
        lines = [line.strip() for line in open(path).read().splitlines() if line.strip()] if path else []
    except OSError:
        lines = []
    return lines[-1][:200] if lines else "failed"


def _short(key: str) -> str:
    return key.split(".")[-1]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
