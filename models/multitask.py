"""multitask: a shared LSTM -> transformer encoder per asset with heads for every task.

x [B, A, L, F] -> stem (RevIN, projection, ticker embedding) -> LSTM over the window (optionally
bidirectional: the whole window lies at or before the decision date, so reading it backwards
leaks nothing) -> temporal self-attention and pooling -> embedding [B, A, D]. The position,
direction, volatility, volume and regime heads read the embedding directly, or, with
`moe_experts > 0`, each through its own gate over shared experts (MMoE). Assets are encoded
independently; only the regime head pools over the (unmasked) assets of a date. `ffn` picks the
feed-forward blocks (encoder, experts, regime head): gelu, swiglu or kan.
"""

from __future__ import annotations

from torch import Tensor, nn

from quantray.models.blocks import (
    run_lstm,
    TASKS,
    InputStem,
    MixtureOfExperts,
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


class MultiTaskModel(nn.Module):
    def __init__(
        self,
        *,
        n_assets: int,
        n_features: int,
        lookback: int,
        d_model: int = 32,
        n_heads: int = 4,
        lstm_layers: int = 1,
        bidirectional: bool = False,
        transformer_layers: int = 1,
        ff_mult: int = 2,
        dropout: float = 0.1,
        moe_experts: int = 0,
        pooling: str = "attention",
        positional: str = "sinusoidal",
        revin: bool = True,
        ffn: str = "gelu",
        market_neutral: bool = False,
    ) -> None:
        super().__init__()
        check_heads(d_model, n_heads)
        check_int("lstm_layers", lstm_layers, 1)
        check_int("transformer_layers", transformer_layers, 0)
        check_int("ff_mult", ff_mult, 1)
        check_int("moe_experts", moe_experts, 0)
        check_dropout(dropout)
        check_bool("bidirectional", bidirectional)
        check_arg(not bidirectional or d_model % 2 == 0, "d_model", d_model, "must be even when bidirectional")
        self.embedding_dim = d_model
        self.stem = InputStem(n_assets, n_features, d_model, revin)
        self.lstm = nn.LSTM(
            d_model, d_model // 2 if bidirectional else d_model, lstm_layers,
            batch_first=True, bidirectional=bidirectional, dropout=dropout if lstm_layers > 1 else 0.0,
        )
        self.temporal = TemporalTransformer(
            d_model=d_model, n_heads=n_heads, n_layers=transformer_layers, ff_mult=ff_mult, dropout=dropout,
            lookback=lookback, positional=positional, pooling=pooling, ffn=ffn,
        )
        self.moe = (
            MixtureOfExperts(d_model, moe_experts, ("position",) + TASKS, ff_mult, dropout, ffn) if moe_experts else None
        )
        self.position = PositionHead(d_model, market_neutral)
        self.heads = TaskHeads(d_model, dropout, ffn)

    def forward(self, x: Tensor, asset_ids: Tensor, mask: Tensor, return_attention: bool = False,
                news: Tensor | None = None, news_mask: Tensor | None = None) -> Output:
        """`news` / `news_mask` are accepted and not read: this family has no news channel."""
        B, A = mask.shape
        h = self.stem(x, asset_ids, mask).flatten(0, 1)  # [B·A, L, D]
        h = run_lstm(self.lstm, h)
        embedding = zero_masked(self.temporal(h).unflatten(0, (B, A)), mask)
        if self.moe is None:
            return Output(embedding, self.position(embedding, mask), self.heads(embedding, mask))
        per_task = self.moe(embedding)
        return Output(embedding, self.position(per_task["position"], mask), self.heads(per_task, mask))
