"""A quiet console: quantray's own lines on the terminal, Ray's, Tune's and MLflow's in a log file.

Ray and MLflow write from C++ threads, subprocesses and loggers configured at import, so the
redirection is of the process's file descriptors 1 and 2, not of `sys.stdout`: whatever any of
them writes while a recipe runs lands in the log. quantray's lines go to `console`, a stream on
the terminal as it was.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TextIO

from quantray.workspace import root


@dataclass(frozen=True)
class Console:
    """Where quantray's own lines go, and the log file the libraries write to (None: not redirected)."""

    stream: TextIO
    log: Path | None = None

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def new_log_path(verb: str) -> Path:
    """`./.quantray/logs/<verb>-<time>.log`, absolute (it is printed for the user to open)."""
    folder = (root() / "logs").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{verb}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


@contextmanager
def libraries_logging_to(log: Path) -> Iterator[Console]:
    """Inside, fds 1 and 2 write to `log`; yields a Console on the original stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(saved_out), "w", buffering=1)
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    try:
        yield Console(console, log)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        console.close()


@contextmanager
def quiet_console(verb: str) -> Iterator[Console]:
    """A recipe's console when none was given: say where the libraries' output goes, then send it there."""
    log = new_log_path(verb)
    print(f"log           {log}  (Ray, Tune and MLflow output; failed trials' tracebacks)", flush=True)
    with libraries_logging_to(log) as console:
        yield console
