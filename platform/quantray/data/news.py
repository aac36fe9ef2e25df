"""The news channel: daily text (optionally per asset) or precomputed embeddings, joined to the
panel's bars by a stated timestamp rule, embedded locally, and handed to the models as tokens.

Timestamp rule (`NewsConfig.rule`). A news item carries a date stamp s:
- `next_bar` (default): the item is known only after the close of s, so it is usable from the
  first bar dated strictly after s. News stamped on trading day t reaches t+1's decision; news
  stamped on a Saturday reaches Monday's.
- `same_bar`: the item is known before the close of s (pre-market), usable from the first bar
  dated on or after s.
Items whose first usable bar lies beyond the panel are dropped. The text that becomes usable at
bar t is that bar's document; the model's news tokens at decision t are the documents of bars
t-window+1 .. t (one token per bar, `news_mask` False where a bar has none).

Sources (`NewsConfig.source`):
    csv:PATH                          columns date, optional asset, and text (or emb_0..emb_K-1)
    synthetic[:seed=0,informed=0.3]   a news stream drawn for the panel, with planted information
                                      (quantray.data.synthetic.synthetic_news)

Embedders (`NewsConfig.embedder`): `tfidf`, hashed word n-grams (crc32 buckets, so stable across
processes) weighted by a TF-IDF whose document frequencies are fit on training bars only; or
`columns`, the CSV's own embedding columns (nothing is fit). Per-asset text is tagged: each of
its words also counts as `asset:word`, so the embedding can tell whose news it is.
"""

from __future__ import annotations

import csv
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantray.config import NewsConfig
from quantray.data.synthetic import synthetic_news
from quantray.errors import BadInput

RULES: tuple[str, ...] = ("next_bar", "same_bar")
EMBEDDERS: tuple[str, ...] = ("tfidf", "columns")
EMBEDDING_PREFIX = "emb_"
WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class NewsItems:
    """Raw news as read from a source: one row per item."""

    stamps: np.ndarray  # datetime64[D] [N]
    assets: tuple[str, ...]  # [N], "" for market-wide news
    texts: tuple[str, ...] | None  # [N] (text sources)
    vectors: np.ndarray | None  # float32 [N, K] (embedding-column sources)


@dataclass(frozen=True)
class DailyNews:
    """News aligned to the panel's bars: what becomes usable at each bar."""

    documents: tuple[str, ...] | None  # [T] the text usable from bar t ("" when none)
    vectors: np.ndarray | None  # float32 [T, K] mean embedding of the items usable from bar t
    present: np.ndarray  # bool [T]


@dataclass(frozen=True)
class NewsTokens:
    """Embedded news per bar, what `Windows.gather` windows into `news [B, N, E]`."""

    values: np.ndarray  # float32 [T, E]
    present: np.ndarray  # bool [T]
    window: int  # N: bars of news per sample

    @property
    def dim(self) -> int:
        return self.values.shape[1]

    def gather(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(news [B, N, E], news_mask [B, N]) for decision dates `t` [B], oldest bar first."""
        bars = t[:, None] - np.arange(self.window - 1, -1, -1)[None, :]  # [B, N]
        inside = bars >= 0
        bars = np.clip(bars, 0, None)
        return self.values[bars], self.present[bars] & inside


# ---- reading and joining ------------------------------------------------------------------------

def check_news_config(cfg: NewsConfig) -> None:
    if cfg.rule not in RULES:
        raise BadInput(f"data.news.rule: must be one of {', '.join(RULES)}, got {cfg.rule!r}")
    if cfg.embedder not in EMBEDDERS:
        raise BadInput(f"data.news.embedder: must be one of {', '.join(EMBEDDERS)}, got {cfg.embedder!r}")
    for key in ("window", "dim", "ngrams"):
        if getattr(cfg, key) < 1:
            raise BadInput(f"data.news.{key}: must be at least 1, got {getattr(cfg, key)}")
    scheme = cfg.source.split(":", 1)[0]
    if scheme not in ("csv", "synthetic"):
        raise BadInput(f"data.news.source: expected csv:PATH or synthetic[:...], got {cfg.source!r}")
    if scheme == "synthetic" and cfg.embedder != "tfidf":
        raise BadInput("data.news.embedder: the synthetic news stream is text; use tfidf")


def load_news_items(cfg: NewsConfig, dates: np.ndarray, assets: tuple[str, ...], closes: np.ndarray) -> NewsItems:
    """Read the configured source (`closes` [T, A]: the synthetic stream is drawn from them)."""
    check_news_config(cfg)
    scheme, _, rest = cfg.source.partition(":")
    if scheme == "synthetic":
        options = parse_options(rest, "data.news.source")
        unknown = set(options) - {"seed", "informed"}
        if unknown:
            raise BadInput(f"data.news.source: unknown option(s) {', '.join(sorted(unknown))} (expected seed, informed)")
        stamps, texts = synthetic_news(dates, closes, seed=int(options.get("seed", 0)),
                                       informed=float(options.get("informed", 0.3)))
        return NewsItems(stamps, ("",) * len(texts), texts, None)
    return read_news_csv(Path(rest), cfg.embedder, where="data.news.source")


def parse_options(text: str, where: str) -> dict[str, str]:
    options = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise BadInput(f"{where}: expected key=value, got {part!r}")
        options[key.strip()] = value.strip()
    return options


def read_news_csv(path: Path, embedder: str, *, where: str) -> NewsItems:
    """Items from a CSV: `date` (YYYY-MM-DD), optional `asset`, `text` or `emb_0..emb_K-1`."""
    if not path.is_file():
        raise BadInput(f"{where}: no news file {path}")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = list(rows[0].keys()) if rows else []
    if "date" not in columns:
        raise BadInput(f"{path}: news needs a 'date' column (got {', '.join(columns) or 'none'})")
    embedding_columns = sorted((c for c in columns if c.startswith(EMBEDDING_PREFIX)),
                               key=lambda c: int(c[len(EMBEDDING_PREFIX):]) if c[len(EMBEDDING_PREFIX):].isdigit() else -1)
    if embedder == "tfidf" and "text" not in columns:
        raise BadInput(f"{path}: embedder tfidf needs a 'text' column")
    if embedder == "columns" and not embedding_columns:
        raise BadInput(f"{path}: embedder columns needs {EMBEDDING_PREFIX}0.. columns")
    stamps = []
    for i, row in enumerate(rows):
        try:
            stamps.append(np.datetime64(row["date"].strip()[:10], "D"))
        except ValueError:
            raise BadInput(f"{path}: row {i + 2}: column 'date': not a date: {row['date']!r}") from None
    assets = tuple((row.get("asset") or "").strip() for row in rows)
    if embedder == "tfidf":
        return NewsItems(np.array(stamps, dtype="datetime64[D]"), assets, tuple(row["text"] or "" for row in rows), None)
    try:
        vectors = np.array([[float(row[c]) for c in embedding_columns] for row in rows], dtype=np.float32)
    except ValueError:
        raise BadInput(f"{path}: embedding columns must be numbers") from None
    return NewsItems(np.array(stamps, dtype="datetime64[D]"), assets, None, vectors.reshape(len(rows), -1))


def usable_bar(stamps: np.ndarray, bar_dates: np.ndarray, rule: str) -> np.ndarray:
    """Index of the first bar at which each item is usable (len(bar_dates) if none): the rule of
    the module docstring."""
    side = "right" if rule == "next_bar" else "left"
    return np.searchsorted(bar_dates.astype("datetime64[D]"), stamps.astype("datetime64[D]"), side=side)


def align_news(items: NewsItems, bar_dates: np.ndarray, rule: str, assets: tuple[str, ...]) -> DailyNews:
    """Each bar's document (or mean vector): the items that become usable at that bar. Per-asset
    items of assets outside the panel are dropped."""
    T = len(bar_dates)
    bars = usable_bar(items.stamps, bar_dates, rule)
    keep = (bars < T) & np.array([a == "" or a in assets for a in items.assets], dtype=bool)
    present = np.zeros(T, dtype=bool)
    present[bars[keep]] = True
    if items.vectors is not None:
        sums = np.zeros((T, items.vectors.shape[1]), dtype=np.float64)
        counts = np.zeros(T)
        np.add.at(sums, bars[keep], items.vectors[keep])
        np.add.at(counts, bars[keep], 1.0)
        return DailyNews(None, (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32), present)
    parts: list[list[str]] = [[] for _ in range(T)]
    for i in np.flatnonzero(keep):
        parts[bars[i]].append(tag_words(items.texts[i], items.assets[i]))
    return DailyNews(tuple(" ".join(p) for p in parts), None, present)


def tag_words(text: str, asset: str) -> str:
    """Per-asset text counts each word twice: as itself and as `asset:word`."""
    words = WORD.findall(text.lower())
    if not asset:
        return " ".join(words)
    return " ".join(words + [f"{asset.lower()}:{w}" for w in words])


# ---- the local embedder -------------------------------------------------------------------------

def hashed_counts(documents: tuple[str, ...], dim: int, ngrams: int):
    """Sparse [T, dim] counts of each document's word n-grams (n = 1..ngrams), hashed with crc32."""
    from scipy import sparse

    rows, cols = [], []
    for i, document in enumerate(documents):
        words = document.split()
        for n in range(1, ngrams + 1):
            for j in range(len(words) - n + 1):
                rows.append(i)
                cols.append(zlib.crc32(" ".join(words[j:j + n]).encode()) % dim)
    data = np.ones(len(rows), dtype=np.float64)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(documents), dim))


@dataclass(frozen=True, eq=False)
class TfidfEmbedder:
    """Hashed n-gram TF-IDF: sublinear tf (1 + log count), smoothed idf fit on training bars,
    rows scaled to unit length."""

    dim: int
    ngrams: int
    idf: np.ndarray  # float64 [dim]

    def transform(self, documents: tuple[str, ...]) -> np.ndarray:
        counts = hashed_counts(documents, self.dim, self.ngrams)
        counts.data = 1.0 + np.log(counts.data)
        weighted = np.asarray(counts.multiply(self.idf[None, :]).todense())
        norm = np.linalg.norm(weighted, axis=1, keepdims=True)
        return (weighted / np.maximum(norm, 1e-12)).astype(np.float32)


def fit_tfidf(documents: tuple[str, ...], fit_bars: np.ndarray, dim: int, ngrams: int) -> TfidfEmbedder:
    """Document frequencies from the documents of `fit_bars` only (the training bars)."""
    counts = hashed_counts(tuple(documents[i] for i in fit_bars), dim, ngrams)
    n_docs = sum(1 for i in fit_bars if documents[i])
    df = np.asarray((counts > 0).sum(axis=0)).ravel()
    return TfidfEmbedder(dim, ngrams, np.log((1.0 + n_docs) / (1.0 + df)) + 1.0)


def training_bars(train_dates: np.ndarray, window: int) -> np.ndarray:
    """The bars whose news the training samples read: t-window+1 .. t for every training date t."""
    bars = (np.asarray(train_dates)[:, None] - np.arange(window)[None, :]).ravel()
    return np.unique(bars[bars >= 0])


def embed_news(daily: DailyNews, embedder: TfidfEmbedder | None, window: int) -> NewsTokens:
    """Tokens per bar from aligned news: TF-IDF of the documents, or the given vectors."""
    if daily.vectors is not None:
        return NewsTokens(daily.vectors, daily.present, window)
    if embedder is None:
        raise ValueError("text news needs a fitted embedder")
    return NewsTokens(embedder.transform(daily.documents), daily.present, window)
