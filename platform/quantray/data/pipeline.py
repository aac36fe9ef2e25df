"""The one path from a panel to windows: a fitted, serialisable data pipeline.

A `DataPipeline` is the data config plus what was fit on training dates (the train_* scaler,
the news embedder's TF-IDF weights) and the asset order, feature order and lookback the models were built for. Training
(`prepare` -> `Prepared.windows`), the ensemble artifact, `backtest`, `predict`, `data export`,
the pyfunc and the server all turn a panel into features and windows through it, so a change to
features or scaling cannot make inference quietly differ from training.

    prepare(cfg)                    source -> panel -> raw features, labels, splits
    Prepared.pipeline(fold)         fit on that fold's training dates only
    pipeline.features(panel)        features as the models see them (assets in the trained order)
    pipeline.windows(panel, dates)  windows at sample dates (default: every date with a full lookback)
    pipeline.save(dir) / load_pipeline(dir)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from quantray.config import DataConfig, resolve, to_dict
from quantray.data.features import Features, Scaler, apply_scaler, build_features, fit_scaler
from quantray.data.labels import Labels, build_labels
from quantray.data.news import (
    DailyNews,
    NewsTokens,
    TfidfEmbedder,
    align_news,
    embed_news,
    fit_tfidf,
    load_news_items,
    training_bars,
)
from quantray.data.panel import Panel, check_history, duration_in_bars, select_assets
from quantray.data.risk import RiskArrays, build_risk
from quantray.data.sources import load_panel
from quantray.data.splits import Split, split_dates
from quantray.data.windows import Windows
from quantray.errors import BadInput

Part = Literal["train", "stop", "val", "test"]
PIPELINE_FILE = "pipeline.json"
SCALER_FILE = "scaler.npz"
NEWS_FILE = "news_idf.npy"


@dataclass(frozen=True, eq=False)
class DataPipeline:
    """Config + fitted state: how the models' inputs are made from a panel."""

    config: DataConfig
    asset_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    scaler: Scaler | None = None  # fit on training dates for train_* normalization; None otherwise
    news_embedder: TfidfEmbedder | None = None  # fit on training bars when the news is text; None otherwise
    news_dim: int = 0  # E of the news tokens; 0 without news

    @property
    def lookback(self) -> int:
        return self.config.lookback

    @property
    def n_assets(self) -> int:
        return len(self.asset_names)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def features(self, panel: Panel) -> Features:
        """The model features of `panel`, its assets in the trained order, scaled as in training."""
        return self.scale(build_features(select_assets(panel, self.asset_names), self.config.features))

    def scale(self, raw: Features) -> Features:
        """Apply the fitted normalization to features built with this pipeline's config."""
        if raw.names != self.feature_names:
            missing = [name for name in self.feature_names if name not in raw.names]
            raise BadInput(f"panel: cannot build feature(s) {', '.join(missing) or 'in the trained order'} "
                           f"the model was trained on")
        return raw if self.scaler is None else apply_scaler(raw, self.scaler)

    def windows(self, panel: Panel, dates_idx: np.ndarray | None = None) -> Windows:
        """Windows of `panel` at `dates_idx` (default: every date with a full lookback).

        Labels are built only for Windows' shape: at the end of a panel they are unknown, and
        inference reads none of them.
        """
        panel = select_assets(panel, self.asset_names)
        if panel.n_dates < self.lookback:
            raise BadInput(f"panel: {panel.n_dates} dates, fewer than the model's lookback {self.lookback}")
        features = self.features(panel)
        if dates_idx is None:
            dates_idx = np.arange(self.lookback - 1, panel.n_dates)
        return Windows(features.values, build_labels(panel, self.config.horizon), features.valid,
                       self.lookback, dates_idx, self.news_tokens(panel), build_risk(panel, self.config.risk))

    def news_tokens(self, panel: Panel, daily: DailyNews | None = None) -> NewsTokens | None:
        """The embedded news of `panel`'s bars (read from the configured source unless `daily` is
        given), or None without news."""
        if not self.config.news.enabled:
            return None
        if daily is None:
            daily = daily_news(self.config, select_assets(panel, self.asset_names))
        tokens = embed_news(daily, self.news_embedder, self.config.news.window)
        if tokens.dim != self.news_dim:
            raise BadInput(f"data.news: the news has {tokens.dim} embedding values, the model was trained on {self.news_dim}")
        return tokens

    def same_as(self, other: "DataPipeline") -> bool:
        """Whether `other` makes the same inputs from a panel (members of one ensemble must)."""
        if (to_dict(self.config), self.asset_names, self.feature_names) != \
                (to_dict(other.config), other.asset_names, other.feature_names):
            return False
        if (self.news_embedder is None) != (other.news_embedder is None) or (
                self.news_embedder is not None and not np.array_equal(self.news_embedder.idf, other.news_embedder.idf)):
            return False
        if self.scaler is None or other.scaler is None:
            return self.scaler is None and other.scaler is None
        return (self.scaler.method == other.scaler.method and self.scaler.clip == other.scaler.clip
                and np.array_equal(self.scaler.center, other.scaler.center)
                and np.array_equal(self.scaler.scale, other.scaler.scale))

    def save(self, directory: Path) -> None:
        """Write `pipeline.json` (and `scaler.npz`) into `directory`, which the caller writes atomically."""
        directory = Path(directory)
        document = {
            "config": to_dict(self.config),
            "asset_names": list(self.asset_names),
            "feature_names": list(self.feature_names),
            "scaler": None if self.scaler is None else {"method": self.scaler.method, "clip": float(self.scaler.clip)},
            "news_dim": self.news_dim,
        }
        (directory / PIPELINE_FILE).write_text(json.dumps(document, indent=2))
        if self.scaler is not None:
            np.savez(directory / SCALER_FILE, center=self.scaler.center, scale=self.scaler.scale)
        if self.news_embedder is not None:
            np.save(directory / NEWS_FILE, self.news_embedder.idf)


def load_pipeline(directory: Path) -> DataPipeline:
    """Read a pipeline written by `DataPipeline.save`."""
    where = Path(directory) / PIPELINE_FILE
    if not where.is_file():
        raise BadInput(f"{directory}: no {PIPELINE_FILE} (not written by this version of quantray)")
    document = json.loads(where.read_text())
    scaler = None
    if document["scaler"] is not None:
        arrays = np.load(Path(directory) / SCALER_FILE)
        scaler = Scaler(document["scaler"]["method"], arrays["center"], arrays["scale"], document["scaler"]["clip"])
    config = resolve(DataConfig, document["config"], where=str(where), key="config")
    embedder = None
    if (Path(directory) / NEWS_FILE).is_file():
        embedder = TfidfEmbedder(config.news.dim, config.news.ngrams, np.load(Path(directory) / NEWS_FILE))
    return DataPipeline(
        config=config,
        asset_names=tuple(document["asset_names"]),
        feature_names=tuple(document["feature_names"]),
        scaler=scaler,
        news_embedder=embedder,
        news_dim=int(document.get("news_dim", 0)),
    )


def fit_pipeline(config: DataConfig, assets: tuple[str, ...], raw: Features, train_dates: np.ndarray,
                 news: DailyNews | None = None) -> DataPipeline:
    """Fit the normalization on `train_dates` only (train_* methods; rolling ones fit nothing),
    and the news embedder on the news the training samples read (`news`: the aligned news)."""
    normalization = config.features.normalization
    scaler = None
    if normalization.startswith("train_"):
        scaler = fit_scaler(raw, train_dates, normalization.removeprefix("train_"), config.features.clip)
    embedder, news_dim = None, 0
    if news is not None:
        if news.documents is not None:
            cfg = config.news
            embedder = fit_tfidf(news.documents, training_bars(train_dates, cfg.window), cfg.dim, cfg.ngrams)
            news_dim = cfg.dim
        else:
            news_dim = news.vectors.shape[1]
    return DataPipeline(config, tuple(assets), raw.names, scaler, embedder, news_dim)


def daily_news(config: DataConfig, panel: Panel) -> DailyNews:
    """The configured news source aligned to `panel`'s bars by the timestamp rule."""
    items = load_news_items(config.news, panel.dates, panel.assets, panel.field("close"))
    return align_news(items, panel.dates, config.news.rule, panel.assets)


def sample_splits(config: DataConfig, valid: np.ndarray) -> list[Split]:
    """Train/validation/test sample dates of every fold, from the first date with valid features
    (`valid` [T, A]: where the features are valid)."""
    return split_dates(len(valid), config.lookback, config.horizon, config.splits, start=first_valid_date(valid))


def first_valid_date(valid: np.ndarray) -> int:
    """The first date at which some asset has valid features."""
    any_valid = valid.any(axis=1)
    return int(np.argmax(any_valid)) if any_valid.any() else len(any_valid)


@dataclass(frozen=True)
class Prepared:
    """A data source made ready for training: panel, raw features, labels, splits, and each
    fold's fitted pipeline."""

    config: DataConfig
    panel: Panel
    raw_features: Features  # unscaled; each fold's pipeline scales them
    labels: Labels
    splits: list[Split]
    news: DailyNews | None = None  # the aligned news, when the config has a news source
    risk: RiskArrays | None = None  # the risk model (data.risk), when the config has one
    _pipelines: dict[int, DataPipeline] = field(default_factory=dict, repr=False, compare=False)
    _features: dict[int, Features] = field(default_factory=dict, repr=False, compare=False)
    _news_tokens: dict[int, NewsTokens] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_assets(self) -> int:
        return self.panel.n_assets

    @property
    def n_features(self) -> int:
        return len(self.raw_features.names)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.raw_features.names

    @property
    def asset_names(self) -> tuple[str, ...]:
        return self.panel.assets

    @property
    def features(self) -> Features:
        """Fold 0's features."""
        return self.fold_features(0)

    def pipeline(self, fold: int = 0) -> DataPipeline:
        """The pipeline fit on fold `fold`'s training dates."""
        self._check_fold(fold)
        if fold not in self._pipelines:
            self._pipelines[fold] = fit_pipeline(self.config, self.panel.assets, self.raw_features,
                                                 self.splits[fold].train, self.news)
        return self._pipelines[fold]

    def fold_features(self, fold: int = 0) -> Features:
        """Features as fold `fold` sees them (its pipeline's normalization)."""
        if fold not in self._features:
            self._features[fold] = self.pipeline(fold).scale(self.raw_features)
        return self._features[fold]

    def windows(self, part: Part, fold: int = 0) -> Windows:
        if part not in ("train", "stop", "val", "test"):
            raise ValueError(f"part must be train, stop, val or test, got {part!r}")
        features = self.fold_features(fold)
        dates = getattr(self.splits[fold], part)
        return Windows(features.values, self.labels, features.valid, self.config.lookback, dates,
                       self.news_tokens(fold), self.risk)

    def news_tokens(self, fold: int = 0) -> NewsTokens | None:
        """The news as fold `fold`'s pipeline embeds it (None without news)."""
        if self.news is None:
            return None
        if fold not in self._news_tokens:
            self._news_tokens[fold] = self.pipeline(fold).news_tokens(self.panel, self.news)
        return self._news_tokens[fold]

    def _check_fold(self, fold: int) -> None:
        if not 0 <= fold < len(self.splits):
            raise ValueError(f"fold {fold} out of range: {len(self.splits)} fold(s)")


def prepare(cfg: DataConfig = DataConfig()) -> Prepared:
    """Load `cfg.source` and build everything training needs (validated: exits 2 on bad data)."""
    if not 0 <= cfg.fold < cfg.splits.folds:
        raise BadInput(f"data.fold: must be in [0, {cfg.splits.folds}) for splits.folds {cfg.splits.folds}, "
                       f"got {cfg.fold}")
    panel = load_panel(cfg.source)
    # a duration horizon ("4h", "5d") becomes bars of this data, once, before anything reads it
    cfg = replace(cfg, horizon=duration_in_bars(cfg.horizon, panel.dates, key="data.horizon",
                                                bars_per_year_override=cfg.bars_per_year))
    check_history(panel, cfg.lookback)
    raw = build_features(panel, cfg.features)
    news = daily_news(cfg, panel) if cfg.news.enabled else None
    return Prepared(cfg, panel, raw, build_labels(panel, cfg.horizon), sample_splits(cfg, raw.valid), news,
                    build_risk(panel, cfg.risk))
