"""Small model sizes and random multi-asset batches shared by the model tests."""

from __future__ import annotations

from typing import Any

import torch

from quantray import models
from quantray.train.losses import LossWeights

B, A, L, F = 6, 5, 12, 4

# Every family at a test size; the extra cases switch on the non-default options.
SMALL: dict[str, dict[str, Any]] = {
    "transformer": {"d_model": 16, "n_heads": 2},
    "gnn": {"d_model": 16, "n_heads": 2, "top_k": 2},
    "multitask": {"d_model": 16, "n_heads": 2},
    "hybrid": {"d_model": 16, "n_heads": 2, "n_experts": 2},
    "cnn_lstm": {"d_model": 16, "kernel_size": 3},
    "linear": {"bars": 4},  # four of the twelve bars: enough inputs to fit the tiny batch
}
OPTION_CASES: list[tuple[str, dict[str, Any]]] = [
    ("transformer", {"pooling": "cls", "positional": "learned", "revin": False, "cross_layers": 2}),
    ("transformer", {"pooling": "last", "temporal_layers": 2}),
    ("gnn", {"corr_window": 6, "graph_layers": 1, "pooling": "cls", "revin": False}),
    ("multitask", {"bidirectional": True, "moe_experts": 3, "lstm_layers": 2}),
    ("hybrid", {"positional": "learned", "revin": False, "transformer_layers": 2}),
    ("cnn_lstm", {"revin": True, "conv_layers": 3, "lstm_layers": 2}),
    ("transformer", {"ffn": "swiglu", "cross_layers": 2}),
    ("transformer", {"ffn": "kan", "pooling": "last"}),
    ("transformer", {"lead_lag": 3, "cross_layers": 0}),
    ("transformer", {"lead_lag": 2, "pooling": "cls", "ffn": "swiglu"}),
    ("transformer", {"groups": (0, 1, 0, 2, 1), "cross_layers": 2}),
    ("transformer", {"groups": (3, 3, 7, 7, 7), "lead_lag": 1, "ffn": "kan"}),
    ("gnn", {"ffn": "kan"}),
    ("multitask", {"ffn": "swiglu", "moe_experts": 2}),
    ("multitask", {"ffn": "kan", "bidirectional": True}),
    ("hybrid", {"ffn": "kan"}),
    ("hybrid", {"ffn": "swiglu", "revin": False}),
    # the real calendar: build finds day_of_week and month_of_year among the data's features by name
    ("hybrid", {"feature_names": ("log_return", "day_of_week_sin", "day_of_week_cos", "month_of_year_cos")}),
    # news cross-attention: fed random news by WithNews, so every shared test runs the news path
    ("transformer", {"news_attention": True}),
    ("transformer", {"news_attention": True, "lead_lag": 2, "groups": (0, 1, 0, 2, 1), "ffn": "swiglu"}),
    ("hybrid", {"news_attention": True}),
    ("hybrid", {"news_attention": True, "ffn": "kan", "revin": False}),
    # a dollar-neutral book from every family
    ("transformer", {"market_neutral": True}),
    ("gnn", {"market_neutral": True}),
    ("multitask", {"market_neutral": True}),
    ("hybrid", {"market_neutral": True}),
    ("cnn_lstm", {"market_neutral": True}),
    ("linear", {"market_neutral": True}),
    ("linear", {"bars": 12, "dropout": 0.1}),  # the whole window
]
# every family at its defaults, then the option cases
CASES: list[tuple[str, dict[str, Any]]] = [(family, {}) for family in models.FAMILIES] + OPTION_CASES
CASE_IDS: list[str] = [f"{f}-{'-'.join(a) or 'default'}" for f, a in CASES]
# the default objective plus every term that is off by default, so every head is trained
ALL_TERMS = LossWeights(barrier=0.1, information_ratio=0.1, drawdown=0.5, turnover=0.01)
MIXING = ("transformer", "gnn")  # families that exchange information across assets


NEWS_DIM, N_NEWS = 8, 3  # news tokens [B, N_NEWS, NEWS_DIM]


def random_news(batch: int, seed: int = 7, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """news [batch, N_NEWS, NEWS_DIM] and news_mask [batch, N_NEWS]: the oldest bar of every
    other date has no news (its token is junk that must not matter)."""
    generator = torch.Generator().manual_seed(seed)
    news = torch.randn(batch, N_NEWS, NEWS_DIM, generator=generator)
    news_mask = torch.ones(batch, N_NEWS, dtype=torch.bool)
    news_mask[::2, 0] = False
    return news.to(device), news_mask.to(device)


class WithNews(torch.nn.Module):
    """A news-reading model called the contract's way, fed a fixed random news batch (the same
    for the same batch size), so the shared contract tests run its news path."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.embedding_dim = model.embedding_dim

    def forward(self, x: torch.Tensor, asset_ids: torch.Tensor, mask: torch.Tensor, return_attention: bool = False):
        news, news_mask = random_news(x.shape[0], device=x.device)
        return self.model(x, asset_ids, mask, return_attention=return_attention, news=news, news_mask=news_mask)


def build_small(family: str, **arch: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    model = models.build(family, n_assets=A, n_features=F, lookback=L, news_dim=NEWS_DIM, **{**SMALL[family], **arch})
    return WithNews(model) if arch.get("news_attention") else model


def random_inputs(seed: int = 0, batch: int = B) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [batch, A, L, F], asset ids [A] (0..A-1 in a random order), mask [batch, A] with some
    assets masked and asset 0 always active."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, A, L, F, generator=generator)
    asset_ids = torch.randperm(A, generator=generator)
    mask = torch.rand(batch, A, generator=generator) > 0.3
    mask[:, 0] = True  # at least one active asset per date
    return x, asset_ids, mask


def random_labels(mask: torch.Tensor, seed: int = 1) -> dict[str, torch.Tensor]:
    """The label keys of a data batch (docs/architecture.md), some of them unknown."""
    generator = torch.Generator().manual_seed(seed)
    n, a = mask.shape
    direction = torch.randint(0, 3, (n, a), generator=generator)
    direction[0, 0] = -1
    regime = torch.randint(0, 3, (n,), generator=generator)
    regime[-1] = -1
    labels = {
        "mask": mask,
        "next_return": torch.randn(n, a, generator=generator) * 0.02,
        "direction": direction,
        "volatility": torch.rand(n, a, generator=generator) * 0.03,
        "volume": torch.randn(n, a, generator=generator),
        "regime": regime,
        "label_mask": torch.rand(n, a, generator=generator) > 0.1,
    }
    labels["barrier"] = torch.randint(0, 3, (n, a), generator=generator)  # drawn last: the others stay as they were
    labels["barrier"][-1, 0] = -1
    return labels
