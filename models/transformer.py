"""transformer: a temporal transformer per asset, then attention across the assets of a date.

x [B, A, L, F] -> stem (RevIN, projection, ticker embedding) -> temporal self-attention over the
window, pooled to one vector per asset -> optional news cross-attention (each asset's state
attends to the day's news tokens, `news_attention`) -> optional lead-lag attention (each asset attends to the
other assets' temporal states at lags 0..lead_lag) -> cross-asset attention layers (masked assets
excluded; hierarchical within and across asset groups when `groups` is set) -> embedding
[B, A, D] -> position and task heads. With `return_attention=True` the last cross-asset layer's
weights come back in `Output.attention` and the lead-lag weights in `Output.lead_lag`.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn

from quantray.models.blocks import (
    CrossAssetLayer,
    InputStem,
    LeadLagAttention,
    NewsCrossAttention,
    Output,
    PositionHead,
    TaskHeads,
    TemporalTransformer,
    check_arg,
    check_bool,
    check_dropout,
    check_heads,
    check_int,
    zero_masked,
)


def group_index(groups: tuple[int, ...] | list[int], n_assets: int) -> Tensor:
    """Validated group ids (one per asset id) renumbered 0..G-1, as a long tensor [n_assets]."""
    ok = isinstance(groups, (tuple, list)) and all(
        isinstance(g, numbers.Integral) and not isinstance(g, bool) and g >= 0 for g in groups
    )
    check_arg(ok, "groups", groups, "must be a list of integer group ids >= 0")
    check_arg(len(groups) in (0, n_assets), "groups", groups, f"must hold one group id per asset ({n_assets})")
    _, index = torch.unique(torch.tensor(list(groups), dtype=torch.long), return_inverse=True)
    return index


class TransformerModel(nn.Module):
    def __init__(
        self,
        *,
        n_assets: int,
        n_features: int,
        lookback: int,
        news_dim: int = 0,
        d_model: int = 32,
        n_heads: int = 4,
        temporal_layers: int = 1,
        cross_layers: int = 1,
        ff_mult: int = 2,
        dropout: float = 0.1,
        pooling: str = "attention",
        positional: str = "sinusoidal",
        revin: bool = True,
        ffn: str = "gelu",
        lead_lag: int = 0,
        groups: tuple[int, ...] = (),
        news_attention: bool = False,
        market_neutral: bool = False,
    ) -> None:
        super().__init__()
        check_heads(d_model, n_heads)
        check_bool("news_attention", news_attention)
        check_arg(not news_attention or news_dim > 0, "news_attention", news_attention,
                  "needs data with news (data.news.source)")
        check_int("temporal_layers", temporal_layers, 0)
        check_int("cross_layers", cross_layers, 0)
        check_int("ff_mult", ff_mult, 1)
        check_int("lead_lag", lead_lag, 0)
        check_arg(lead_lag < lookback, "lead_lag", lead_lag, f"must be below the lookback ({lookback})")
        check_dropout(dropout)
        group_of = group_index(groups, n_assets)
        n_groups = int(group_of.max()) + 1 if len(group_of) else 0
        check_arg(not n_groups or cross_layers > 0, "groups", groups, "needs cross_layers >= 1")
        self.embedding_dim = d_model
        self.stem = InputStem(n_assets, n_features, d_model, revin)
        self.temporal = TemporalTransformer(
            d_model=d_model, n_heads=n_heads, n_layers=temporal_layers, ff_mult=ff_mult, dropout=dropout,
            lookback=lookback, positional=positional, pooling=pooling, ffn=ffn,
        )
        self.news = NewsCrossAttention(d_model, news_dim, n_heads, ff_mult, dropout, ffn) if news_attention else None
        self.lead_lag = LeadLagAttention(d_model, n_heads, lead_lag, ff_mult, dropout, ffn) if lead_lag else None
        self.register_buffer("group_of", group_of if n_groups else None, persistent=False)
        self.cross = nn.ModuleList(
            CrossAssetLayer(d_model, n_heads, ff_mult, dropout, ffn, n_groups) for _ in range(cross_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.position = PositionHead(d_model, market_neutral)
        self.heads = TaskHeads(d_model, dropout, ffn)

    def forward(self, x: Tensor, asset_ids: Tensor, mask: Tensor, return_attention: bool = False,
                news: Tensor | None = None, news_mask: Tensor | None = None) -> Output:
        B, A = mask.shape
        h = self.stem(x, asset_ids, mask)  # [B, A, L, D]
        lead_lag = None
        h, states = self.temporal(h.flatten(0, 1), return_states=True)
        h = h.unflatten(0, (B, A))  # [B, A, D]
        if self.news is not None:
            h = self.news(h, news, news_mask)
        if self.lead_lag is not None:
            h, lead_lag = self.lead_lag(h, states.unflatten(0, (B, A)), mask, return_attention)
        group = None if self.group_of is None else self.group_of[asset_ids]
        attention = None
        for layer in self.cross:
            h, attention = layer(h, mask, need_weights=return_attention, group=group)
        embedding = zero_masked(self.norm(h), mask)
        return Output(embedding, self.position(embedding, mask), self.heads(embedding, mask), attention, lead_lag)
