"""transformer: a temporal transformer per asset, then attention across the assets of a date.

x [B, A, L, F] -> stem (RevIN, projection, ticker embedding) -> temporal self-attention over the
window, pooled to one vector per asset -> cross-asset attention layers (masked assets excluded)
-> embedding [B, A, D] -> position and task heads. The last cross-asset layer's attention
weights come back with `return_attention=True`, for heatmaps.
"""

from __future__ import annotations

from torch import Tensor, nn

from quantray.models.blocks import (
    CrossAssetLayer,
    InputStem,
    Output,
    PositionHead,
    TaskHeads,
    TemporalTransformer,
    check_dropout,
    check_heads,
    check_int,
    zero_masked,
)


class TransformerModel(nn.Module):
    def __init__(
        self,
        *,
        n_assets: int,
        n_features: int,
        lookback: int,
        d_model: int = 32,
        n_heads: int = 4,
        temporal_layers: int = 1,
        cross_layers: int = 1,
        ff_mult: int = 2,
        dropout: float = 0.1,
        pooling: str = "attention",
        positional: str = "sinusoidal",
        revin: bool = True,
    ) -> None:
        super().__init__()
        check_heads(d_model, n_heads)
        check_int("temporal_layers", temporal_layers, 0)
        check_int("cross_layers", cross_layers, 0)
        check_int("ff_mult", ff_mult, 1)
        check_dropout(dropout)
        self.embedding_dim = d_model
        self.stem = InputStem(n_assets, n_features, d_model, revin)
        self.temporal = TemporalTransformer(
            d_model=d_model, n_heads=n_heads, n_layers=temporal_layers, ff_mult=ff_mult, dropout=dropout,
            lookback=lookback, positional=positional, pooling=pooling,
        )
        self.cross = nn.ModuleList(CrossAssetLayer(d_model, n_heads, ff_mult, dropout) for _ in range(cross_layers))
        self.norm = nn.LayerNorm(d_model)
        self.position = PositionHead(d_model)
        self.heads = TaskHeads(d_model, dropout)

    def forward(self, x: Tensor, asset_ids: Tensor, mask: Tensor, return_attention: bool = False) -> Output:
        B, A = mask.shape
        h = self.stem(x, asset_ids, mask)  # [B, A, L, D]
        h = self.temporal(h.flatten(0, 1)).unflatten(0, (B, A))  # [B, A, D]
        attention = None
        for layer in self.cross:
            h, attention = layer(h, mask, need_weights=return_attention)
        embedding = zero_masked(self.norm(h), mask)
        return Output(embedding, self.position(embedding, mask), self.heads(embedding, mask), attention)
