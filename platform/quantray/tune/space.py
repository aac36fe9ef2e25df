"""Search spaces: a YAML file -> a validated `SearchSpace` -> Optuna define-by-run -> `TrainConfig`.

A space YAML has the sections of `TrainConfig` (data, model, loss, optim, seed, resources) plus
`name`, `budget`, `asha` and `pretrain` (contrastive pretraining before the Sharpe epochs:
epochs, temperature, augment, ...). Any value under model.arch, loss, optim and pretrain may be a
distribution:

    {int: [lo, hi]}            integer, inclusive; `log: true` for a log scale, `step: k`
    {float: [lo, hi]}          float; `log: true` for a log scale
    {choice: [a, b, ...]}      categorical

`model.family` may be a choice; then `model.arch` is keyed by family name, so each family has
its own (conditional) architecture ranges. The data section is fixed for a search (every trial
sees the same windows, so trials are comparable and their returns line up for the ensemble).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from quantray import models
from quantray.config import (
    DataConfig, LossWeights, OptimConfig, TrainConfig, as_float, check_gpus, read_sections, resolve, to_dict,
)
from quantray.data.news import check_news_config
from quantray.errors import BadInput

TOP_LEVEL_KEYS = ("name", "seed", "data", "model", "loss", "optim", "pretrain", "resources", "budget", "asha",
                  "walkforward")
WALKFORWARD_MODES = ("search", "refit")
DISTRIBUTION_KINDS = ("int", "float", "choice")
TUNABLE_SECTIONS = ("loss", "optim", "pretrain")


@dataclass(frozen=True)
class Budget:
    trials: int = 8
    concurrency: int = 2  # trials running at once
    time_budget_s: float = 0.0  # 0 = no wall-clock limit
    # Reproducible: suggestions are handed out in generations of `concurrency` trials (each waits for
    # the previous generation) and ASHA stops no trial, so the same seed gives the same search
    # whatever order trials finish in. ASHA's decisions depend on that order, so it is off then;
    # early stopping (`optim.patience`) reads only a trial's own scores, so it stays on.
    reproducible: bool = False


@dataclass(frozen=True)
class WalkForwardConfig:
    """How `quantray walkforward` judges a space: expanding folds whose test blocks tile the end."""

    folds: int = 4
    mode: str = "refit"  # search: a fresh search per fold; refit: search on the first fold, refit after
    test_fraction: float = 0.1  # each fold's test block, as a share of the usable dates
    top_k: int = 5  # configurations refit per later fold (refit), and ensemble members per fold


@dataclass(frozen=True)
class AshaConfig:
    enabled: bool = True
    grace_period: int = 2  # epochs every trial runs before it can be stopped
    reduction_factor: int = 2
    max_t: int = 0  # epochs after which ASHA stops any trial; 0 = the space's epochs


@dataclass(frozen=True)
class Resources:
    workers: int = 1  # >1: each trial runs the loop under a TorchTrainer with this many workers
    gpus_per_worker: float = 0.0  # a fraction shares one GPU between trials: 0.25 = four trials per GPU
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        check_gpus(self.gpus_per_worker, "resources.gpus_per_worker")


@dataclass(frozen=True)
class Distribution:
    kind: str  # int | float | choice
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int | None = None
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SearchSpace:
    name: str
    path: Path
    raw: Mapping[str, Any]  # the YAML with distributions left in place
    families: tuple[str, ...]  # one family, or the choices of model.family
    budget: Budget = field(default_factory=Budget)
    asha: AshaConfig = field(default_factory=AshaConfig)
    resources: Resources = field(default_factory=Resources)
    walkforward: WalkForwardConfig = field(default_factory=WalkForwardConfig)

    @property
    def data(self) -> DataConfig:
        return resolve(DataConfig, self.raw.get("data"), where=str(self.path), key="data")

    def with_data(self, data: DataConfig) -> "SearchSpace":
        """This space with its data section replaced (a walk-forward fold's data)."""
        return dataclasses.replace(self, raw={**self.raw, "data": to_dict(data)})

    def with_seed(self, seed: int) -> "SearchSpace":
        return dataclasses.replace(self, raw={**self.raw, "seed": seed})

    @property
    def seed(self) -> int:
        """Seeds the sampler and every trial's initial weights."""
        return int(self.raw.get("seed", 0))

    @property
    def epochs(self) -> int:
        """Epochs per trial (fixed per search: ASHA's horizon; ASHA stops trials early instead)."""
        return int((self.raw.get("optim") or {}).get("epochs", OptimConfig.epochs))

    @property
    def patience(self) -> int:
        """Early stopping's patience in epochs (0: every trial runs every epoch)."""
        return int((self.raw.get("optim") or {}).get("patience", OptimConfig.patience))

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Optuna define-by-run: sample every distribution of this space on `trial`."""
        params: dict[str, Any] = {}
        family = self.families[0]
        if len(self.families) > 1:
            family = trial.suggest_categorical("model.family", list(self.families))
            params["model.family"] = family
        for key, dist in self._distributions(family).items():
            params[key] = _suggest(trial, key, dist)
        return params

    def resolve(self, params: Mapping[str, Any], *, data_source: str | None = None) -> TrainConfig:
        """The TrainConfig of one trial: the YAML with `params` (from `suggest`) filled in."""
        family = params.get("model.family", self.families[0])
        tree = copy.deepcopy(dict(self.raw))
        for name in ("name", "budget", "asha", "resources", "walkforward"):
            tree.pop(name, None)
        model = dict(tree.get("model") or {})
        arch = model.get("arch") or {}
        if len(self.families) > 1:
            arch = arch.get(family) or {}
        model["family"], model["arch"] = family, dict(arch)
        tree["model"] = model
        for key, value in params.items():
            if key == "model.family":
                continue
            _set_dotted(tree, _config_key(key), value)
        if data_source is not None:
            tree.setdefault("data", {})["source"] = data_source
        tree["workers"] = self.resources.workers
        tree["gpus_per_worker"] = self.resources.gpus_per_worker
        tree["cpus_per_worker"] = self.resources.cpus_per_worker
        _reject_unsampled(tree, self.path)
        return resolve(TrainConfig, tree, where=str(self.path))

    def _distributions(self, family: str) -> dict[str, Distribution]:
        found: dict[str, Distribution] = {}
        arch = (self.raw.get("model") or {}).get("arch") or {}
        if len(self.families) > 1:
            arch = arch.get(family) or {}
            prefix = f"model.arch.{family}"
        else:
            prefix = "model.arch"
        for key, value in arch.items():
            if _is_distribution(value):
                found[f"{prefix}.{key}"] = parse_distribution(value, where=str(self.path), key=f"{prefix}.{key}")
        for section in TUNABLE_SECTIONS:
            for key, value in (self.raw.get(section) or {}).items():
                if _is_distribution(value):
                    found[f"{section}.{key}"] = parse_distribution(value, where=str(self.path), key=f"{section}.{key}")
        return found


def load_space(path: Path | str) -> SearchSpace:
    """Read and validate a search-space YAML; any problem -> BadInput naming the file and key."""
    from quantray.data.sources import absolute_source  # lazy: sources imports pandas; submit reads spaces

    path = Path(path)
    raw = read_sections(path, "search-space", TOP_LEVEL_KEYS)
    where = str(path)
    model = raw.get("model") or {}
    if not isinstance(model, dict):
        raise BadInput(f"{path}: key 'model': expected a mapping")
    for key in model:
        if key not in ("family", "arch"):
            raise BadInput(f"{path}: key 'model.{key}': unknown key (expected family, arch)")
    families = _families(model.get("family", "transformer"), where)
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("source"), str):
        # a data path in a space file is relative to the file's folder, not to where Ray runs a trial
        raw = {**raw, "data": {**data, "source": absolute_source(data["source"], path.parent)}}
    space = SearchSpace(
        name=str(raw.get("name") or path.stem),
        path=path,
        raw=raw,
        families=families,
        budget=resolve(Budget, raw.get("budget"), where=where, key="budget"),
        asha=resolve(AshaConfig, raw.get("asha"), where=where, key="asha"),
        resources=resolve(Resources, raw.get("resources"), where=where, key="resources"),
        walkforward=resolve(WalkForwardConfig, raw.get("walkforward"), where=where, key="walkforward"),
    )
    _validate(space)
    return space


def parse_distribution(spec: Mapping[str, Any], *, where: str, key: str) -> Distribution:
    kinds = [k for k in DISTRIBUTION_KINDS if k in spec]
    extra = set(spec) - set(DISTRIBUTION_KINDS) - {"log", "step"}
    if len(kinds) != 1 or extra:
        raise BadInput(f"{where}: key '{key}': a distribution has exactly one of int/float/choice "
                       f"(plus log, step), got {sorted(spec)}")
    kind = kinds[0]
    value = spec[kind]
    if kind == "choice":
        if not isinstance(value, list) or not value:
            raise BadInput(f"{where}: key '{key}.choice': expected a non-empty list")
        return Distribution(kind="choice", choices=tuple(value))
    bounds = [as_float(v) for v in value] if isinstance(value, list) and len(value) == 2 else None
    if bounds is None or None in bounds:
        raise BadInput(f"{where}: key '{key}.{kind}': expected [low, high], got {value!r}")
    low, high = value if kind == "int" else bounds
    if kind == "int" and not all(isinstance(v, int) for v in value):
        raise BadInput(f"{where}: key '{key}.int': bounds must be integers, got {value!r}")
    if not low < high:
        raise BadInput(f"{where}: key '{key}.{kind}': low must be below high, got {value!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise BadInput(f"{where}: key '{key}.log': expected true or false")
    if log and low <= 0:
        raise BadInput(f"{where}: key '{key}.{kind}': a log scale needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None and (kind != "int" or not isinstance(step, int) or step < 1):
        raise BadInput(f"{where}: key '{key}.step': only int distributions take a positive integer step")
    return Distribution(kind=kind, low=low, high=high, log=log, step=step)


def _validate(space: SearchSpace) -> None:
    """Resolve and build the extremes of every family's space, so a bad key or a value that would
    be accepted and then ignored fails before any trial, naming the file and key."""
    where = space.path
    if not isinstance(space.raw.get("seed", 0), int) or isinstance(space.raw.get("seed", 0), bool):
        raise BadInput(f"{where}: key 'seed': expected an integer, got {space.raw.get('seed')!r}")
    if _is_distribution((space.raw.get("optim") or {}).get("epochs")):
        raise BadInput(f"{where}: key 'optim.epochs': must be a fixed number (it is ASHA's horizon; "
                       "ASHA stops poor trials early instead)")
    if _is_distribution((space.raw.get("optim") or {}).get("patience")):
        raise BadInput(f"{where}: key 'optim.patience': must be a fixed number of epochs (early stopping is "
                       "part of how every trial is run, like its epochs)")
    arch = (space.raw.get("model") or {}).get("arch") or {}
    if len(space.families) == 1 and isinstance(arch, Mapping):
        for key, value in arch.items():
            if key in models.FAMILIES and isinstance(value, Mapping):
                raise BadInput(f"{where}: key 'model.arch.{key}': with one family its arguments go straight under "
                               "model.arch (a section per family is for model.family: {choice: [...]})")
    for family in space.families:
        if family not in models.FAMILIES:
            raise BadInput(f"{space.path}: key 'model.family': unknown family '{family}' "
                           f"(expected one of: {', '.join(models.FAMILIES)})")
        dists = space._distributions(family)
        for pick in (_low, _high):
            params: dict[str, Any] = {k: pick(d) for k, d in dists.items()}
            if len(space.families) > 1:
                params["model.family"] = family
            config = space.resolve(params)
            news = config.data.news
            if news.enabled:
                check_news_config(news)
            try:
                # a group map names one group per asset: build for as many assets as it has
                n_assets = len(config.model.arch.get("groups") or ()) or 2
                models.build(family, n_assets=n_assets, n_features=3, lookback=config.data.lookback,
                             news_dim=news.dim if news.enabled else 0, **config.model.arch)
            except (TypeError, ValueError) as exc:
                raise BadInput(f"{space.path}: key 'model.arch' ({family}): {exc}") from None
            _check_training(config, where)
            if config.pretrain.epochs and not models.has_encoder(family):
                raise BadInput(f"{where}: key 'pretrain.epochs': the {family} family has no encoder to pretrain "
                               f"(its embedding is its input); set it to 0 or leave {family} out")
    if space.budget.trials < 1 or space.budget.concurrency < 1:
        raise BadInput(f"{space.path}: key 'budget': trials and concurrency must be at least 1")
    if space.resources.workers < 1:
        raise BadInput(f"{space.path}: key 'resources.workers': must be at least 1")
    check_walkforward(space.walkforward, where)


def check_walkforward(config: WalkForwardConfig, where: Path | str) -> None:
    if config.mode not in WALKFORWARD_MODES:
        raise BadInput(f"{where}: key 'walkforward.mode': expected one of {', '.join(WALKFORWARD_MODES)}, "
                       f"got {config.mode!r}")
    if config.folds < 2:
        raise BadInput(f"{where}: key 'walkforward.folds': at least 2 (one split is `quantray ensemble`), "
                       f"got {config.folds}")
    if not 0 < config.test_fraction < 1:
        raise BadInput(f"{where}: key 'walkforward.test_fraction': must be in (0, 1), got {config.test_fraction}")
    if config.top_k < 1:
        raise BadInput(f"{where}: key 'walkforward.top_k': must be at least 1, got {config.top_k}")


def _check_training(config: TrainConfig, where: Path) -> None:
    """Values the loop would accept and then silently ignore or misuse."""
    if config.optim.batch_dates < 2:
        raise BadInput(f"{where}: key 'optim.batch_dates': must be at least 2 (turnover and the Sharpe of a "
                       f"batch need consecutive dates), got {config.optim.batch_dates}")
    if config.optim.epochs < 1:
        raise BadInput(f"{where}: key 'optim.epochs': must be at least 1, got {config.optim.epochs}")
    for name in (f.name for f in dataclasses.fields(LossWeights)):
        value = getattr(config.loss, name)
        if isinstance(value, float) and value < 0:
            raise BadInput(f"{where}: key 'loss.{name}': must be >= 0 (a negative weight rewards the loss), "
                           f"got {value:g}")
    if config.workers > 1 and config.gpus_per_worker == 0 and config.cpus_per_worker < 1:
        raise BadInput(f"{where}: key 'resources.cpus_per_worker': a DDP worker needs at least 1 CPU, "
                       f"got {config.cpus_per_worker:g}")


def _families(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if _is_distribution(value):
        dist = parse_distribution(value, where=where, key="model.family")
        if dist.kind == "choice" and all(isinstance(c, str) for c in dist.choices):
            return tuple(dist.choices)
    raise BadInput(f"{where}: key 'model.family': expected a family name or {{choice: [names]}}")


def _suggest(trial: Any, name: str, dist: Distribution) -> Any:
    if dist.kind == "choice":
        return trial.suggest_categorical(name, list(dist.choices))
    if dist.kind == "int":
        return trial.suggest_int(name, int(dist.low), int(dist.high), log=dist.log, step=dist.step or 1)
    return trial.suggest_float(name, float(dist.low), float(dist.high), log=dist.log)


def _low(dist: Distribution) -> Any:
    return dist.choices[0] if dist.kind == "choice" else dist.low


def _high(dist: Distribution) -> Any:
    return dist.choices[-1] if dist.kind == "choice" else dist.high


def _config_key(param: str) -> str:
    """`model.arch.<family>.<key>` (conditional spaces) -> `model.arch.<key>`."""
    parts = param.split(".")
    if parts[:2] == ["model", "arch"] and len(parts) == 4:
        return ".".join(["model", "arch", parts[3]])
    return param


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _reject_unsampled(tree: Mapping[str, Any], path: Path, prefix: str = "") -> None:
    """A distribution left in a section that is not tuned (e.g. data) is a mistake: say where."""
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if _is_distribution(value):
            raise BadInput(f"{path}: key '{dotted}': only model.arch, loss and optim take distributions")
        if isinstance(value, Mapping):
            _reject_unsampled(value, path, prefix=f"{dotted}.")


def _is_distribution(value: Any) -> bool:
    return isinstance(value, Mapping) and any(k in value for k in DISTRIBUTION_KINDS)

