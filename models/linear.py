"""linear: the position is tanh of one linear function of an asset's latest features.

x [B, A, L, F] -> the last `bars` bars of each asset, flattened -> embedding [B, A, bars·F] (the
input itself) -> position and task heads, every map shared by all assets. No hidden layer, no
ticker embedding, nothing across assets or deeper in time. The family a deep model has to beat
inside the same search, trained on the same loss and traded through the same risk model: where
the signal is weak and slow (a trend in features the data layer already computes) it learns
what the deep families spend their capacity missing.
"""

from __future__ import annotations

from torch import Tensor, nn

from quantray.models.blocks import Output, PositionHead, TaskHeads, check_arg, check_dropout, check_int, zero_masked


class LinearModel(nn.Module):
    ENCODER = False  # the embedding is the input itself: nothing for pretraining to train (models.has_encoder)

    def __init__(
        self,
        *,
        n_assets: int,
        n_features: int,
        lookback: int,
        bars: int = 1,
        dropout: float = 0.0,
        market_neutral: bool = False,
    ) -> None:
        super().__init__()
        check_int("bars", bars, 1)
        check_arg(bars <= lookback, "bars", bars, f"must be at most the lookback ({lookback})")
        check_dropout(dropout)
        self.bars = bars
        self.embedding_dim = bars * n_features
        self.drop = nn.Dropout(dropout)
        self.position = PositionHead(self.embedding_dim, market_neutral)
        self.heads = TaskHeads(self.embedding_dim, dropout)

    def forward(self, x: Tensor, asset_ids: Tensor, mask: Tensor, return_attention: bool = False,
                news: Tensor | None = None, news_mask: Tensor | None = None) -> Output:
        """`news` / `news_mask` are accepted and not read: this family has no news channel."""
        embedding = zero_masked(x[:, :, -self.bars:].flatten(2), mask)  # junk in a masked asset reaches nothing
        return Output(embedding, self.position(self.drop(embedding), mask), self.heads(embedding, mask))
