"""Read a finished (or interrupted) search back from its storage folder."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from quantray.errors import BadInput
from quantray.train.loop import BEST_DIR

CHECKPOINT_PATH_KEY = "checkpoint_path"  # what TuneReportCallback adds for TorchTrainer trials


@dataclass(frozen=True)
class TrialRecord:
    trial_id: str
    status: str  # TERMINATED (finished or stopped by ASHA), ERROR, RUNNING/PENDING if interrupted
    val_sharpe: float  # the chosen epoch's validation net Sharpe (the trial's score), NaN if no epoch finished
    checkpoint: Path | None  # the chosen epoch's member checkpoint directory
    history: list[float] = field(default_factory=list)  # validation Sharpe per epoch
    params: dict = field(default_factory=dict)
    epoch_on_stop_block: bool = True  # False: its epoch was chosen on validation

    @property
    def n_compared(self) -> int:
        """Models of this trial compared on validation data: 1 when its epoch was chosen on the
        early-stopping block, else every epoch (choosing the best one is itself a selection); a
        trial that failed before its first epoch still counts as one configuration tried."""
        return 1 if self.epoch_on_stop_block else max(len(self.history), 1)


@dataclass
class Trials:
    experiment: str
    records: list[TrialRecord]

    @property
    def n_tried(self) -> int:
        """Every trial the search started."""
        return len(self.records)

    @property
    def n_compared(self) -> int:
        """Every model compared on validation data: the N of the Deflated Sharpe Ratio."""
        return sum(r.n_compared for r in self.records)

    def best(self) -> TrialRecord | None:
        usable = [r for r in self.records if r.checkpoint is not None and math.isfinite(r.val_sharpe)]
        return max(usable, key=lambda r: r.val_sharpe) if usable else None


def load_trials(experiment: str, storage: Path) -> Trials:
    """Every trial of `experiment` under `storage`, in the order they were created."""
    from ray.tune import ExperimentAnalysis

    path = Path(storage).resolve() / experiment  # Ray reads a relative path as a URI without a scheme
    if not path.is_dir():
        raise BadInput(f"experiment '{experiment}': not found under {Path(storage).resolve()}")
    analysis = ExperimentAnalysis(str(path))
    records = [_record(trial) for trial in analysis.trials]
    return Trials(experiment=experiment, records=records)


def _record(trial) -> TrialRecord:
    results = _results(Path(trial.path) / "result.json") if trial.path else []
    history = [float(r.get("val_sharpe", math.nan)) for r in results]
    checkpoint = None
    if trial.checkpoint is not None:
        checkpoint = Path(trial.checkpoint.path) / BEST_DIR
    elif trial.last_result and trial.last_result.get(CHECKPOINT_PATH_KEY):
        checkpoint = Path(trial.last_result[CHECKPOINT_PATH_KEY]) / BEST_DIR
    if checkpoint is not None and not (checkpoint / "model.pt").exists():
        checkpoint = None
    return TrialRecord(
        trial_id=trial.trial_id,
        status=trial.status,
        val_sharpe=float(results[-1].get("best_val_sharpe", math.nan)) if results else math.nan,
        checkpoint=checkpoint,
        history=history,
        params=dict(trial.config),
        epoch_on_stop_block=bool(results) and "stop_sharpe" in results[-1],
    )


def _results(result_file: Path) -> list[dict]:
    """Every epoch's reported metrics, in order."""
    if not result_file.exists():
        return []
    return [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
