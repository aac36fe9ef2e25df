"""`prepare(cfg)`: the one place the data layer is wired, source to windows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from quantray.config import DataConfig
from quantray.data.features import Features, apply_scaler, build_features, fit_scaler
from quantray.data.labels import Labels, build_labels
from quantray.data.panel import Panel, check_history
from quantray.data.sources import load_panel
from quantray.data.splits import Split, split_dates
from quantray.data.windows import Windows

Part = Literal["train", "val", "test"]


@dataclass(frozen=True)
class Prepared:
    config: DataConfig
    panel: Panel
    features: Features  # scaled; train_* scalers are fit on fold 0's training dates
    labels: Labels
    splits: list[Split]
    raw_features: Features | None = None  # unscaled, kept for train_* normalization of other folds
    _fold_features: dict[int, Features] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_assets(self) -> int:
        return self.panel.n_assets

    @property
    def n_features(self) -> int:
        return len(self.features.names)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.features.names

    @property
    def asset_names(self) -> tuple[str, ...]:
        return self.panel.assets

    def fold_features(self, fold: int = 0) -> Features:
        """Features as fold `fold` sees them (train_* scalers fit on that fold's training dates)."""
        if self.raw_features is None or fold == 0:
            return self.features
        if fold not in self._fold_features:
            self._fold_features[fold] = _scale_for(self.raw_features, self.splits[fold], self.config)
        return self._fold_features[fold]

    def windows(self, part: Part, fold: int = 0) -> Windows:
        if part not in ("train", "val", "test"):
            raise ValueError(f"part must be train, val or test, got {part!r}")
        if not 0 <= fold < len(self.splits):
            raise ValueError(f"fold {fold} out of range: {len(self.splits)} fold(s)")
        features = self.fold_features(fold)
        dates = getattr(self.splits[fold], part)
        return Windows(features.values, self.labels, features.valid, self.config.lookback, dates)


def prepare(cfg: DataConfig = DataConfig()) -> Prepared:
    panel = load_panel(cfg.source)
    check_history(panel, cfg.lookback)
    features = build_features(panel, cfg.features)
    labels = build_labels(panel, cfg.horizon)
    splits = split_dates(panel.n_dates, cfg.lookback, cfg.horizon, cfg.splits, start=first_valid_date(features))
    if cfg.features.normalization.startswith("train_"):
        return Prepared(cfg, panel, _scale_for(features, splits[0], cfg), labels, splits, raw_features=features)
    return Prepared(cfg, panel, features, labels, splits)


def first_valid_date(features: Features) -> int:
    """The first date at which some asset has valid features."""
    any_valid = features.valid.any(axis=1)
    return int(np.argmax(any_valid)) if any_valid.any() else len(any_valid)


def _scale_for(features: Features, split: Split, cfg: DataConfig) -> Features:
    method = cfg.features.normalization.removeprefix("train_")
    return apply_scaler(features, fit_scaler(features, split.train, method, cfg.features.clip))
