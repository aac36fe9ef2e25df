"""Model families for multi-asset windows; see docs/models.md for the contract.

    model = build("transformer", n_assets=10, n_features=16, lookback=64, d_model=64)
    out = model(x[B, A, L, F], asset_ids[A], mask[B, A])   # -> Output(embedding, position, heads, attention)
    out = model(x, asset_ids, mask, news=news[B, N, E], news_mask=news_mask[B, N])  # data with news

Importing this package is cheap: a family's module (and torch) is imported by `build`.
"""

from __future__ import annotations

import importlib
import inspect
import numbers
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

FAMILIES: tuple[str, ...] = ("transformer", "gnn", "multitask", "hybrid", "cnn_lstm", "linear")

_CLASSES: dict[str, tuple[str, str]] = {
    "transformer": ("quantray.models.transformer", "TransformerModel"),
    "gnn": ("quantray.models.gnn", "GraphAttentionModel"),
    "multitask": ("quantray.models.multitask", "MultiTaskModel"),
    "hybrid": ("quantray.models.hybrid", "HybridModel"),
    "cnn_lstm": ("quantray.models.cnn_lstm", "CnnLstmModel"),
    "linear": ("quantray.models.linear", "LinearModel"),
}
_SHAPE_ARGS = ("n_assets", "n_features", "lookback", "return_feature", "calendar_features", "news_dim")
RETURN_FEATURE = "log_return"  # what a family that takes `return_feature` reads from x, by name
# the data layer's opt-in calendar groups day_of_week and month_of_year (sin/cos of the bar's real date),
# which a family that takes `calendar_features` reads from x, by name, where the data has them
CALENDAR_FEATURES: tuple[str, ...] = ("day_of_week_sin", "day_of_week_cos", "month_of_year_sin", "month_of_year_cos")


def family_class(family: str) -> type:
    if family not in _CLASSES:
        raise ValueError(f"unknown model family {family!r} (expected one of: {', '.join(FAMILIES)})")
    module, name = _CLASSES[family]
    return getattr(importlib.import_module(module), name)


def defaults(family: str) -> dict[str, Any]:
    """The architecture arguments of `family` with their default values."""
    parameters = inspect.signature(family_class(family)).parameters.values()
    return {p.name: p.default for p in parameters if p.name not in _SHAPE_ARGS}


def needs_return_feature(family: str) -> bool:
    """Whether `family` reads the return feature (`RETURN_FEATURE`) from its input by index."""
    return "return_feature" in inspect.signature(family_class(family)).parameters


def needs_calendar_features(family: str) -> bool:
    """Whether `family` reads the calendar features (`CALENDAR_FEATURES`) from its input by index."""
    return "calendar_features" in inspect.signature(family_class(family)).parameters


def has_encoder(family: str) -> bool:
    """Whether `family` computes its embedding (what contrastive pretraining trains); a family whose
    embedding is its input says so with a class attribute `ENCODER = False`."""
    return bool(getattr(family_class(family), "ENCODER", True))


def build(family: str, *, n_assets: int, n_features: int, lookback: int, feature_names: tuple[str, ...] = (),
          news_dim: int = 0, **arch: Any) -> "nn.Module":
    """Build a `family` model for windows [B, n_assets, lookback, n_features].

    `arch` holds architecture arguments only; an unknown one raises ValueError
    naming it, and so does a bad value. `feature_names` (the data's feature order) lets a family
    that reads the return find it by name (without them it is feature 0), and one that reads the
    calendar find the `CALENDAR_FEATURES` the data has (without them it has none). `news_dim` is
    the size E of the data's news tokens (0: no news), passed to the families with a news channel.
    """
    known = defaults(family)
    for key in arch:
        if key not in known:
            raise ValueError(
                f"unknown architecture argument {key!r} for family {family!r} "
                f"(expected one of: {', '.join(known)})"
            )
    for name, value in (("n_assets", n_assets), ("n_features", n_features), ("lookback", lookback)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    shape = {"n_assets": int(n_assets), "n_features": int(n_features), "lookback": int(lookback)}
    if feature_names and needs_return_feature(family):
        if RETURN_FEATURE not in feature_names:
            raise ValueError(f"family {family!r} builds its asset graph from the {RETURN_FEATURE!r} feature, "
                             f"which the data does not have (features: {', '.join(feature_names)})")
        shape["return_feature"] = feature_names.index(RETURN_FEATURE)
    if feature_names and needs_calendar_features(family):
        shape["calendar_features"] = tuple(feature_names.index(name) for name in CALENDAR_FEATURES
                                           if name in feature_names)
    if "news_dim" in inspect.signature(family_class(family)).parameters:
        shape["news_dim"] = int(news_dim)
    return family_class(family)(**shape, **arch)
