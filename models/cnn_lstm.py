"""cnn_lstm: causal Conv1D layers -> LSTM -> LayerNorm, a multi-asset classifier.

x [B, A, L, F] -> stem (projection, ticker embedding; RevIN optional) -> residual causal
convolutions over time (left padding: step t sees steps <= t) -> LSTM -> LayerNorm of the last
step -> embedding [B, A, D] -> position and task heads. Assets are encoded independently; only
the regime head pools over the (unmasked) assets of a date.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from quantray.models.blocks import (
    run_lstm,
    InputStem,
    Output,
    PositionHead,
    TaskHeads,
    check_dropout,
    check_int,
    zero_masked,
)


class CausalConv(nn.Module):
    """Residual block h [N, D, L] -> h + dropout(GELU(conv(left-padded h)))."""

    def __init__(self, d_model: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.pad = kernel_size - 1
        self.conv = nn.Conv1d(d_model, d_model, kernel_size)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.drop(F.gelu(self.conv(F.pad(h, (self.pad, 0)))))


class CnnLstmModel(nn.Module):
    def __init__(
        self,
        *,
        n_assets: int,
        n_features: int,
        lookback: int,
        d_model: int = 32,
        conv_layers: int = 2,
        kernel_size: int = 5,
        lstm_layers: int = 1,
        dropout: float = 0.1,
        revin: bool = False,
        market_neutral: bool = False,
    ) -> None:
        super().__init__()
        check_int("d_model", d_model, 1)
        check_int("conv_layers", conv_layers, 0)
        check_int("kernel_size", kernel_size, 1)
        check_int("lstm_layers", lstm_layers, 1)
        check_dropout(dropout)
        self.embedding_dim = d_model
        self.stem = InputStem(n_assets, n_features, d_model, revin)
        self.convs = nn.Sequential(*(CausalConv(d_model, kernel_size, dropout) for _ in range(conv_layers)))
        self.lstm = nn.LSTM(d_model, d_model, lstm_layers, batch_first=True, dropout=dropout if lstm_layers > 1 else 0.0)
        self.norm = nn.LayerNorm(d_model)
        self.position = PositionHead(d_model, market_neutral)
        self.heads = TaskHeads(d_model, dropout)

    def forward(self, x: Tensor, asset_ids: Tensor, mask: Tensor, return_attention: bool = False,
                news: Tensor | None = None, news_mask: Tensor | None = None) -> Output:
        """`news` / `news_mask` are accepted and not read: this family has no news channel."""
        B, A = mask.shape
        h = self.stem(x, asset_ids, mask).flatten(0, 1)  # [B·A, L, D]
        h = self.convs(h.transpose(1, 2)).transpose(1, 2)
        h = run_lstm(self.lstm, h)
        embedding = zero_masked(self.norm(h[:, -1]).unflatten(0, (B, A)), mask)
        return Output(embedding, self.position(embedding, mask), self.heads(embedding, mask))
