"""hybrid: LSTM + transformer encoder, cross-attention to static and calendar context,
mixture-of-experts multi-horizon heads.

x [B, A, L, F] -> stem (RevIN on, projection, ticker embedding) -> LSTM -> positional encoding ->
self-attention layers -> every step cross-attends to context tokens -> optional news
cross-attention (every step of every asset attends to the day's news tokens, `news_attention`) ->
attention pooling -> embedding [B, A, D].

Context tokens: the static token is the asset's ticker embedding; the calendar tokens describe
each step's date. The model contract carries no dates, so the real calendar comes in as features:
with the data's `day_of_week` and `month_of_year` groups (sin/cos of each bar's weekday and month,
`calendar_features` = their indices in x, which `models.build` finds by name) each step's token
is a projection of its own day of week and month of year. Without them the tokens fall back to
the step's place in the window: for a step τ bars before the decision date, sin/cos(2πτ/P) for
P = 5, 21, 63, 252 (week, month, quarter, year of daily bars), projected to D.

Heads: a multi-gate mixture of experts gives each task its own mix of shared experts. `ffn`
picks the feed-forward blocks of the encoder, the experts and the regime head (gelu, swiglu or
kan: seed 002's V17 variant uses KAN and SwiGLU). The
"horizons" task scores the asset over `n_horizons` latent horizons (heads["horizons"]
[B, A, n_horizons], trained only through the position, which is tanh of a learned combination
of them); direction, volatility, volume and regime are the usual task heads. Assets are encoded
independently; only the regime head pools over the (unmasked) assets of a date.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from quantray.models.blocks import (
    run_lstm,
    TASKS,
    EncoderStack,
    InputStem,
    MixtureOfExperts,
    NewsCrossAttention,
    Output,
    Pooling,
    PositionalEncoding,
    TaskHeads,
    check_arg,
    check_bool,
    check_dropout,
    check_heads,
    check_int,
    dollar_neutral,
    multihead_attention,
    zero_masked,
)

CALENDAR_PERIODS: tuple[int, ...] = (5, 21, 63, 252)  # trading days in a week, month, quarter, year


def calendar_features(steps: int, device: torch.device) -> Tensor:
    """[steps, 2·len(CALENDAR_PERIODS)]: sin/cos of each step's lag before the window's end."""
    lag = torch.arange(steps - 1, -1, -1, dtype=torch.float32, device=device)[:, None]
    angle = 2 * math.pi * lag / torch.tensor(CALENDAR_PERIODS, dtype=torch.float32, device=device)
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class HybridModel(nn.Module):
    def __init__(
        self,
        *,
        n_assets: int,
        n_features: int,
        lookback: int,
        news_dim: int = 0,
        d_model: int = 32,
        n_heads: int = 4,
        lstm_layers: int = 1,
        transformer_layers: int = 1,
        ff_mult: int = 2,
        dropout: float = 0.1,
        n_experts: int = 4,
        n_horizons: int = 3,
        positional: str = "sinusoidal",
        revin: bool = True,
        ffn: str = "gelu",
        calendar_features: tuple[int, ...] = (),
        news_attention: bool = False,
        market_neutral: bool = False,
    ) -> None:
        super().__init__()
        for index in calendar_features:
            check_int("calendar_features", index, 0)
            if index >= n_features:
                raise ValueError(f"calendar_features: index {index} is not below n_features ({n_features})")
        self.calendar_features = tuple(int(i) for i in calendar_features)
        check_heads(d_model, n_heads)
        check_bool("news_attention", news_attention)
        check_bool("market_neutral", market_neutral)
        check_arg(not news_attention or news_dim > 0, "news_attention", news_attention,
                  "needs data with news (data.news.source)")
        self.market_neutral = market_neutral
        check_int("lstm_layers", lstm_layers, 1)
        check_int("transformer_layers", transformer_layers, 0)
        check_int("ff_mult", ff_mult, 1)
        check_int("n_experts", n_experts, 1)
        check_int("n_horizons", n_horizons, 1)
        check_dropout(dropout)
        self.embedding_dim = d_model
        self.stem = InputStem(n_assets, n_features, d_model, revin)
        self.lstm = nn.LSTM(d_model, d_model, lstm_layers, batch_first=True, dropout=dropout if lstm_layers > 1 else 0.0)
        self.positional = PositionalEncoding(lookback, d_model, positional)
        self.encoder = EncoderStack(d_model, n_heads, transformer_layers, ff_mult, dropout, ffn)
        self.calendar = nn.Linear(len(self.calendar_features) or 2 * len(CALENDAR_PERIODS), d_model)
        self.context_norm = nn.LayerNorm(d_model)
        self.context_attention = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.news = NewsCrossAttention(d_model, news_dim, n_heads, ff_mult, dropout, ffn) if news_attention else None
        self.pool = Pooling(d_model, "attention")
        self.norm = nn.LayerNorm(d_model)
        self.moe = MixtureOfExperts(d_model, n_experts, ("horizons",) + TASKS, ff_mult, dropout, ffn)
        self.horizons = nn.Linear(d_model, n_horizons)
        self.position_mix = nn.Linear(n_horizons, 1)
        self.heads = TaskHeads(d_model, dropout, ffn)

    def forward(self, x: Tensor, asset_ids: Tensor, mask: Tensor, return_attention: bool = False,
                news: Tensor | None = None, news_mask: Tensor | None = None) -> Output:
        B, A = mask.shape
        L = x.shape[2]
        h = self.stem(x, asset_ids, mask).flatten(0, 1)  # [B·A, L, D]
        h = run_lstm(self.lstm, h)
        h = self.encoder(self.positional(h))
        h = h + self.attend_to_context(h, zero_masked(x, mask), asset_ids, B, L)
        if self.news is not None:  # every step of every asset of a date reads that date's news
            h = self.news(h.unflatten(0, (B, A)).flatten(1, 2), news, news_mask).unflatten(1, (A, L)).flatten(0, 1)
        embedding = zero_masked(self.norm(self.pool(h)).unflatten(0, (B, A)), mask)

        per_task = self.moe(embedding)
        horizons = zero_masked(self.horizons(per_task["horizons"]), mask)  # [B, A, n_horizons]
        position = zero_masked(torch.tanh(self.position_mix(horizons).squeeze(-1)), mask)
        if self.market_neutral:
            position = dollar_neutral(position, mask)
        heads = self.heads(per_task, mask)
        heads["horizons"] = horizons
        return Output(embedding, position, heads)

    def attend_to_context(self, h: Tensor, x: Tensor, asset_ids: Tensor, B: int, L: int) -> Tensor:
        """Each step of h [B·A, L, D] attends to [ticker token, L calendar tokens]."""
        static = self.stem.ticker(asset_ids)[None, :, None, :].expand(B, -1, 1, -1).flatten(0, 1)  # [B·A, 1, D]
        if self.calendar_features:  # each step's own date, read from the raw input (not RevIN'd)
            dates = x[..., list(self.calendar_features)].flatten(0, 1)  # [B·A, L, k]
            calendar = self.calendar(dates)
        else:
            calendar = self.calendar(calendar_features(L, h.device)).expand(h.shape[0], L, -1)  # [B·A, L, D]
        context = torch.cat([static, calendar], dim=1)
        return multihead_attention(self.context_attention, self.context_norm(h), context)
