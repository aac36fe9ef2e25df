"""Every recipe's options: one frozen dataclass each, the only place their defaults and help live.

`quantray.config.add_options` turns one into command-line flags (`tune`, `ensemble`, `backtest`,
`train`, `quickstart`), and `quantray.config.to_arguments` turns it back into flags for a job that runs
the command elsewhere (`submit`). This module imports nothing heavy, so `quantray --help` is fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quantray.config import FUSION_METHODS, option
from quantray.errors import BadInput

QUICKSTART_SPACE = "quickstart.yaml"


@dataclass(frozen=True)
class TuneOptions:
    """The options of a search: `quantray tune`, `quantray submit` and `quantray quickstart` share them."""

    data: str | None = option(None, "data source overriding the space's (synthetic[:k=v,..], bundled:NAME, "
                                    "yfinance:T1,T2, csv:DIR, parquet:PATH)", metavar="SOURCE")
    trials: int | None = option(None, "number of trials (default: the space's budget)")
    experiment: str | None = option(None, "experiment name (default: the space name and a timestamp)")
    address: str | None = option(None, "Ray cluster address to join (default: start a local Ray)")
    gpus_per_trial: float | None = option(None, "GPUs per trial; fractions share a GPU")
    workers_per_trial: int | None = option(None, "DDP workers per trial (>1 runs the loop under Ray Train)")
    resume: bool = option(False, "continue an interrupted experiment")
    tracking_uri: str | None = option(None, "MLflow tracking URI (default: MLFLOW_TRACKING_URI or a SQLite "
                                            "store under ./.quantray/)")
    storage: Path | None = option(None, "where results and checkpoints go (default: QUANTRAY_STORAGE or "
                                        "./.quantray/tune)")


@dataclass(frozen=True)
class EnsembleOptions:
    """How the members are chosen and fused; `quantray ensemble` and `quickstart` share them."""

    top_k: int = option(5, "members to fuse")
    method: str = option("concat", "concat: MLP over concatenated embeddings; attention: attention over "
                                   "members; hierarchical: attention within each model family, then across "
                                   "families; greedy: Caruana ensemble selection over positions; mean: positions "
                                   "averaged with equal weights", choices=FUSION_METHODS)
    max_corr: float = option(0.95, "skip a trial whose validation returns correlate above this with a member")
    storage: Path | None = option(None, "where the search's results are (default: QUANTRAY_STORAGE or "
                                        "./.quantray/tune)")
    tracking_uri: str | None = option(None, "MLflow tracking URI (default: MLFLOW_TRACKING_URI or a SQLite "
                                            "store under ./.quantray/)")
    name: str | None = option(None, "registered model name (default: the experiment name)")
    out: Path | None = option(None, "output folder (default ./.quantray/ensembles/EXPERIMENT/)")

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise BadInput(f"--method: unknown fusion method '{self.method}' (expected one of: {', '.join(FUSION_METHODS)})")
        if self.top_k < 1:
            raise BadInput(f"--top-k: must be at least 1, got {self.top_k}")


@dataclass(frozen=True)
class BacktestOptions:
    data: str | None = option(None, "data source (default: the model's own)", metavar="SOURCE")
    cost_bps: float | None = option(None, "cost per unit of turnover in bps (default: the model's)")
    rebalance_every: int = option(1, "trade every N bars and hold the positions in between (costs only then)")
    out: Path | None = option(None, "report folder (default ./.quantray/reports/NAME-VERSION/)")
    tracking_uri: str | None = option(None, "MLflow tracking URI (default: MLFLOW_TRACKING_URI or a SQLite "
                                            "store under ./.quantray/)")

    def __post_init__(self) -> None:
        if self.rebalance_every < 1:
            raise BadInput(f"--rebalance-every: must be at least 1, got {self.rebalance_every}")


@dataclass(frozen=True)
class QuickstartOptions:
    space: Path | None = option(None, f"search space (default: search_spaces/{QUICKSTART_SPACE})")


@dataclass(frozen=True)
class WalkForwardOptions:
    """`quantray walkforward`: the space's `walkforward:` section, overridden here."""

    data: str | None = option(None, "data source overriding the space's", metavar="SOURCE")
    folds: int | None = option(None, "walk-forward folds (default: the space's walkforward.folds, else 4)")
    mode: str | None = option(None, "search: a fresh search per fold (the reference); refit: search on the first "
                                    "fold, then refit its best configurations on each later fold (default: the "
                                    "space's, else refit)", choices=("search", "refit"))
    trials: int | None = option(None, "trials per search (default: the space's budget)")
    seed: int | None = option(None, "search seed (default: the space's)")
    method: str = option("mean", "fusion method per fold (mean: equal weights; the heads overfit a refit "
                                 "fold's validation block and greedy weights lose to equal ones out of sample, "
                                 "docs/evaluation.md)", choices=FUSION_METHODS)
    experiment: str | None = option(None, "experiment name (default: the space name, walkforward and a timestamp)")
    address: str | None = option(None, "Ray cluster address to join (default: start a local Ray)")
    tracking_uri: str | None = option(None, "MLflow tracking URI (default: MLFLOW_TRACKING_URI or a SQLite "
                                            "store under ./.quantray/)")
    storage: Path | None = option(None, "where trials and checkpoints go (default: QUANTRAY_STORAGE or "
                                        "./.quantray/tune)")
    out: Path | None = option(None, "output folder (default ./.quantray/walkforward/EXPERIMENT/)")
    no_register: bool = option(False, "do not register the last fold's ensemble in MLflow (by default it is, "
                                      "with the stitched record's DSR and PBO for `quantray promote` to judge)")


@dataclass(frozen=True)
class TrainOptions:
    """`quantray train CONFIG.yaml`: one fixed configuration, trained in this process."""

    data: str | None = option(None, "data source overriding the config's (synthetic[:k=v,..], bundled:NAME, "
                                    "yfinance:T1,T2, csv:DIR, parquet:PATH)", metavar="SOURCE")
    epochs: int | None = option(None, "epochs overriding the config's optim.epochs")
    out: Path | None = option(None, "output folder (default ./.quantray/train/NAME-TIMESTAMP/)")
    device: str = option("auto", "torch device: auto (cuda when there is one), cpu, cuda, cuda:1, ...")

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise BadInput(f"--epochs: must be at least 1, got {self.epochs}")


@dataclass(frozen=True)
class ServeOptions:
    """`quantray serve`: where the application runs and how it follows the registry."""

    address: str | None = option(None, "Ray cluster address to join (default: start a local Ray)")
    host: str = option("127.0.0.1", "HTTP host to bind (0.0.0.0 exposes it beyond this machine)")
    port: int = option(8000, "HTTP port")
    replicas: int = option(1, "ingress replicas (each holds the model; the bar history is shared)")
    replica_cpus: float = option(1.0, "CPUs each replica reserves")
    poll_s: float = option(5.0, "seconds between registry polls when MODEL names an alias")
    tracking_uri: str | None = option(None, "MLflow tracking URI (default: MLFLOW_TRACKING_URI or a SQLite "
                                            "store under ./.quantray/)")

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise BadInput(f"--replicas: must be at least 1, got {self.replicas}")
        if not 0 < self.port < 65536:
            raise BadInput(f"--port: must be in 1..65535, got {self.port}")
        if not self.poll_s > 0:
            raise BadInput(f"--poll-s: must be positive, got {self.poll_s}")
        if not self.replica_cpus >= 0:
            raise BadInput(f"--replica-cpus: must not be negative, got {self.replica_cpus}")
