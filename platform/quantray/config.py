"""Typed configuration, resolved in one place.

Configs are plain frozen dataclasses. `resolve(cls, mapping, where=...)` builds one from a
mapping (a YAML section) and rejects unknown keys and wrong types with a `BadInput` that
names the file and the dotted key, so a typo never passes silently.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

from quantray.errors import BadInput

T = TypeVar("T")

FUSION_METHODS: tuple[str, ...] = ("concat", "attention", "hierarchical", "greedy", "mean")  # quantray.ensemble.fusion

DEFAULT_FEATURES: tuple[str, ...] = (
    "log_return",
    "intraday_return",
    "overnight_return",
    "range",
    "mean_return",
    "momentum",
    "trend",
    "volatility",
    "volume_z",
    "return_x_volume",
    "rsi",
    "macd",
    "wavelet",
)


@dataclass(frozen=True)
class FeatureConfig:
    """Which causal features to build and how to normalize them."""

    names: tuple[str, ...] = DEFAULT_FEATURES
    windows: tuple[int, ...] = (10, 20)  # rolling mean return / volatility
    momentum_windows: tuple[int, ...] = (21, 63)  # volatility-scaled trailing returns
    trend_halflives: tuple[int, ...] = (20, 60)  # exponentially weighted volatility-scaled returns
    volume_windows: tuple[int, ...] = (20, 50)  # z-scores of log volume
    rsi_window: int = 14
    macd: tuple[int, int, int] = (12, 26, 9)
    wavelet: str = "db2"
    wavelet_window: int = 32
    wavelet_levels: int = 3
    # trailing windows of the daily-bar microstructure proxies (opt-in groups)
    amihud_window: int = 21  # mean |return| / dollar volume
    spread_window: int = 21  # mean Corwin-Schultz two-day high-low spread
    roll_window: int = 63  # serial covariance of price changes: noisy, so a longer window
    # rolling_robust | rolling_zscore | train_zscore | train_robust | train_pooled | none
    normalization: str = "rolling_robust"
    norm_window: int = 252
    clip: float = 5.0
    cross_sectional: bool = True  # also each asset-specific feature minus its mean over the assets of the date


@dataclass(frozen=True)
class SplitConfig:
    """Date-based splits: the last dates are the test block, before them validation, before that
    the early-stopping block (the end of the training history, held out to choose each run's epoch)."""

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # 0: no early-stopping block; each run's epoch is then chosen on validation, and every epoch
    # counts as a configuration compared there (the Deflated Sharpe's N)
    stop_fraction: float = 0.1
    embargo: int = 5  # dates dropped after each validation/test block
    folds: int = 1  # walk-forward folds (1 = a single train/val/test split)


@dataclass(frozen=True)
class NewsConfig:
    """The news channel (quantray.data.news); off while `source` is empty."""

    source: str = ""  # csv:PATH | synthetic[:seed=0,informed=0.3]
    rule: str = "next_bar"  # next_bar: stamped on date s, usable from the first bar after s; same_bar: from s
    window: int = 5  # news tokens per sample: the documents of the last `window` bars
    embedder: str = "tfidf"  # tfidf: hashed n-grams, idf fit on training bars | columns: the CSV's emb_* columns
    dim: int = 1024  # tfidf hash buckets (the news embedding size E): few enough collisions for a small vocabulary
    ngrams: int = 1  # word n-grams 1..ngrams (bigrams of filler words fingerprint each day: a model memorizes them)

    @property
    def enabled(self) -> bool:
        return bool(self.source)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(min|h|d|w)")


def parse_duration(text: str, *, key: str) -> tuple[float, str]:
    """A duration such as "30min", "4h", "5d" or "2w" -> (amount, unit); anything else -> BadInput
    naming `key`. Days and weeks count traded days (a week: 5, or 7 in a 24/7 market)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match[1]) <= 0:
        raise BadInput(f"{key}: expected a number of bars or a duration such as 30min, 4h, 5d, 2w; got {text!r}")
    return float(match[1]), match[2]


RISK_MODELS: tuple[str, ...] = ("none", "one_factor")


@dataclass(frozen=True)
class RiskConfig:
    """The risk model between a model's views and the positions it trades (quantray.data.risk)."""

    # none: the position is the model's output; one_factor: Σ⁻¹·view, Σ an EWMA one-factor
    # covariance (beta to the equal-weight market + idiosyncratic variance) known at each date
    model: str = "none"
    halflife: float = 20.0  # bars, of the EWMA moments

    def __post_init__(self) -> None:
        if self.model not in RISK_MODELS:
            raise BadInput(f"data.risk.model: expected one of {', '.join(RISK_MODELS)}, got {self.model!r}")
        if not self.halflife > 0:
            raise BadInput(f"data.risk.halflife: must be > 0 bars, got {self.halflife!r}")


@dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"
    lookback: int = 64
    # bars after t whose return the labels measure; or a duration ("4h", "5d", "1w") that the
    # pipeline turns into bars of the loaded data (quantray.data.panel.duration_in_bars)
    horizon: int | str = 5
    cost_bps: float = 5.0  # transaction cost per unit of turnover, in basis points
    # periods per year to annualize Sharpe and Sortino; 0 = infer from the bars' timestamps
    # (252 for daily exchange data, 365 for daily 24/7 markets, times the bars per day intraday)
    bars_per_year: float = 0.0
    features: FeatureConfig = field(default_factory=FeatureConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    fold: int = 0  # the walk-forward fold (of splits.folds) a run trains and validates on; 0 = the latest
    news: NewsConfig = field(default_factory=NewsConfig)  # off by default
    risk: RiskConfig = field(default_factory=RiskConfig)  # off by default

    def __post_init__(self) -> None:
        if isinstance(self.horizon, str):
            parse_duration(self.horizon, key="data.horizon")
        elif not self.horizon >= 1:
            raise BadInput(f"data.horizon: must be at least 1 bar, got {self.horizon!r}")
        if not self.bars_per_year >= 0:
            raise BadInput(f"data.bars_per_year: must be >= 0 (0 infers it from the timestamps), "
                           f"got {self.bars_per_year!r}")


def read_sections(path: Path, what: str, sections: Sequence[str]) -> dict[str, Any]:
    """The top-level mapping of the YAML file `path` (a `what`, e.g. "search space"), every key one
    of `sections`; any problem -> BadInput naming the file (and line, for a YAML error) and key."""
    import yaml  # lazy: only reading a file needs it

    if not path.is_file():
        raise BadInput(f"{path}: no such {what} file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise BadInput(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: a {what} is a mapping of sections ({', '.join(sections)})")
    for key in raw:
        if key not in sections:
            raise BadInput(f"{path}: key '{key}': unknown section (expected one of: {', '.join(sections)})")
    return raw


def resolve(cls: type[T], mapping: Mapping[str, Any] | None, *, where: str, key: str = "") -> T:
    """Build dataclass `cls` from `mapping`; `where` names the file, `key` the dotted path to it.

    Nested dataclass fields take nested mappings; tuples take lists. Unknown keys and values of
    the wrong type raise `BadInput("FILE: key 'a.b': ...")`.
    """
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise BadInput(_at(where, key, f"expected a mapping, got {type(mapping).__name__}"))
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for name in mapping:
        if name not in known:
            raise BadInput(_at(where, _join(key, name), f"unknown key (expected one of: {', '.join(sorted(known))})"))
    values = {
        name: _coerce(hints[name], value, where=where, key=_join(key, name)) for name, value in mapping.items()
    }
    try:
        return cls(**values)
    except BadInput as exc:  # a dataclass's own check (__post_init__) names the key, not the file
        raise BadInput(f"{where}: {exc}" if where and not str(exc).startswith(where) else str(exc)) from None


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else str(name)


def _at(where: str, key: str, message: str) -> str:
    return f"{where}: key '{key}': {message}" if key else f"{where}: {message}"


def _coerce(hint: Any, value: Any, *, where: str, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return resolve(hint, value, where=where, key=key)
    origin = typing.get_origin(hint)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise BadInput(_at(where, key, f"expected a mapping, got {value!r}"))
        return dict(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise BadInput(_at(where, key, f"expected a list, got {value!r}"))
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where=where, key=key) for v in value)
        if len(args) != len(value):
            raise BadInput(_at(where, key, f"expected {len(args)} values, got {len(value)}"))
        return tuple(_coerce(a, v, where=where, key=key) for a, v in zip(args, value))
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is type(None) and value is None:
                return None
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        for arg in args[:-1]:  # the first member the value fits, e.g. `int | str`: 5 stays an int
            try:
                return _coerce(arg, value, where=where, key=key)
            except BadInput:
                continue
        return _coerce(args[-1], value, where=where, key=key)
    if hint is float:
        number = as_float(value)
        if number is None:
            raise BadInput(_at(where, key, f"expected a number, got {value!r}"))
        return number
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadInput(_at(where, key, f"expected an integer, got {value!r}"))
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise BadInput(_at(where, key, f"expected true or false, got {value!r}"))
        return value
    if hint is str:
        if not isinstance(value, str):
            raise BadInput(_at(where, key, f"expected a string, got {value!r}"))
        return value
    return value


@dataclass(frozen=True)
class ModelConfig:
    family: str = "transformer"
    # architecture arguments passed to quantray.models.build, which rejects unknown ones
    arch: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LossWeights:
    """The λ of the objective (see quantray.train.losses); the search tunes them."""

    sharpe: float = 1.0
    direction: float = 0.2
    volatility: float = 0.1
    volume: float = 0.05
    regime: float = 0.05
    focal_gamma: float = 2.0
    # focal α per direction class (down, flat, up); seed 002 weights down (Bear) days higher
    direction_class_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    barrier: float = 0.0  # focal CE on the triple-barrier label
    information_ratio: float = 0.0  # −IR against the equal-weight book of the active assets
    drawdown: float = 0.0  # max drawdown of the cumulative net returns over the batch
    turnover: float = 0.0  # mean turnover, a penalty on top of the costs

    def __post_init__(self) -> None:
        weights = self.direction_class_weights
        if len(weights) != 3 or any(not w >= 0 for w in weights) or not sum(weights) > 0:
            raise BadInput(
                f"loss.direction_class_weights must be three numbers >= 0 (down, flat, up), "
                f"not all 0, got {list(weights)!r}"
            )


PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


def check_gpus(value: float, key: str) -> None:
    """A GPU request Ray can place: 0, a share of one GPU in (0, 1] (several small trials on one
    GPU: 0.25 = four per GPU), or whole GPUs. Ray refuses fractions above 1 only when it places them."""
    whole = float(value).is_integer()
    if value < 0 or (value > 1 and not whole):
        raise BadInput(f"{key}: GPUs must be 0, a fraction of one GPU in (0, 1] or a whole number, got {value:g}")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_dates: int = 64  # consecutive dates per batch, so turnover is defined inside it
    epochs: int = 10
    # early stopping: end the run once this many epochs have passed without a better score on the
    # block epochs are chosen on (the stop block; validation without one); 0 runs every epoch
    patience: int = 0
    grad_clip: float = 1.0
    # fp32, or bf16: forward passes under bfloat16 autocast where the run is on CUDA (CPU runs stay fp32)
    precision: str = "fp32"
    compile: bool = False  # train through torch.compile(model): pays on GPUs and long runs (compiling takes minutes on CPU)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise BadInput(f"optim.precision: must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.patience < 0:
            raise BadInput(f"optim.patience: must be 0 (off) or a number of epochs, got {self.patience}")


PRETRAIN_AUGMENTS: tuple[str, ...] = ("jitter", "adjacent", "both")


@dataclass(frozen=True)
class PretrainConfig:
    """NT-Xent contrastive pretraining of the encoder (`Output.embedding`) before the Sharpe
    epochs (quantray.train.contrastive); off while `epochs` is 0."""

    epochs: int = 0
    temperature: float = 0.1
    # jitter: two noisy, step-masked views of the same window; adjacent: the windows of
    # consecutive dates; both: adjacent windows, each jittered
    augment: str = "jitter"
    noise: float = 0.1  # jitter: Gaussian noise, in units of the normalized features
    mask_rate: float = 0.1  # jitter: share of time steps zeroed
    projection: int = 32  # width of the projection head (discarded after pretraining)
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.augment not in PRETRAIN_AUGMENTS:
            raise BadInput(f"pretrain.augment: must be one of {', '.join(PRETRAIN_AUGMENTS)}, got {self.augment!r}")
        if self.epochs < 0 or not self.temperature > 0 or self.projection < 1 or not 0 <= self.mask_rate < 1:
            raise BadInput("pretrain: epochs >= 0, temperature > 0, projection >= 1 and mask_rate in [0, 1) "
                           f"(got epochs {self.epochs}, temperature {self.temperature}, projection "
                           f"{self.projection}, mask_rate {self.mask_rate})")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; a trial's resolved config."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    seed: int = 0
    workers: int = 1  # >1 runs the loop under Ray Train's TorchTrainer (DDP)
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        check_gpus(self.gpus_per_worker, "gpus_per_worker")


def as_float(value: Any) -> float | None:
    """`value` as a float, or None. Accepts strings like "1e-4": YAML 1.1 (PyYAML) reads an
    exponent without a dot and a sign as a string, and ML configs are full of them."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json_ready(dataclasses.asdict(config))


def json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


# ---- options: a recipe's options are one dataclass, and its command line is generated from it ----

def option(default: Any = None, help: str = "", **argparse_extra: Any) -> Any:
    """A dataclass field that is also a command-line option (`--name-with-dashes`).

    `help` is the option's help; `argparse_extra` passes `choices`, `metavar` and the like.
    """
    return field(default=default, metadata={"help": help, **argparse_extra})


def add_options(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """Add one `--flag` per field of options dataclass `cls` (bool fields are switches).

    Every flag defaults to "not given" (None), so `options_from` keeps the dataclass default:
    each default is defined once, in the dataclass.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        extra = {k: v for k, v in f.metadata.items() if k != "help"}
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = f"{f.metadata.get('help', '')} (default {default})" if default not in (None, False) else \
            f.metadata.get("help", "")
        flag = "--" + f.name.replace("_", "-")
        kind = _scalar(hints[f.name])
        if kind is bool:
            parser.add_argument(flag, action="store_true", default=None, help=shown)
        else:
            parser.add_argument(flag, type=kind, default=None, help=shown, **extra)


def options_from(cls: type[T], namespace: argparse.Namespace, **given: Any) -> T:
    """The options dataclass from parsed arguments (flags not given keep their defaults)."""
    values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)
              if getattr(namespace, f.name, None) is not None}
    return cls(**{**values, **given})


def to_arguments(options: Any, *, skip: tuple[str, ...] = ()) -> list[str]:
    """The command-line flags that reproduce `options` (only values that differ from the defaults)."""
    arguments: list[str] = []
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if f.name in skip or value is None or value == f.default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if value is True:
            arguments.append(flag)
        elif value is not False:
            arguments += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return arguments


def _scalar(hint: Any) -> type:
    """`int | None` -> int; `Path | None` -> Path."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint
