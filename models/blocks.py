"""Layers shared by the model families, and the `Output` every family returns.

Shapes: B samples (dates), A assets, L time steps (the lookback window), F input features,
D model width. Families compose these blocks; none inherits from another.

Masking rule: a masked asset neither sends nor receives information. `InputStem` zeroes its
input (so junk or NaN there cannot reach anything), cross-asset blocks never let it take part
in another asset's mixing, and families zero its embedding, position and per-asset heads.
"""

from __future__ import annotations

import math
import numbers
from typing import Mapping, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quantray.errors import BadInput

# Heads every family provides (besides the position), so any family trains on the full objective.
TASKS: tuple[str, ...] = ("direction", "volatility", "volume", "regime")
N_DIRECTIONS = 3  # 0 down, 1 flat, 2 up
N_REGIMES = 3  # 0 down/volatile, 1 calm, 2 up


class Output(NamedTuple):
    embedding: Tensor  # [B, A, D], 0 for masked assets
    position: Tensor  # [B, A] in [-1, 1], 0 for masked assets
    heads: dict[str, Tensor]  # direction [B, A, 3], volatility [B, A], volume [B, A], regime [B, 3]
    attention: Tensor | None = None  # [B, H, A, A] cross-asset weights when asked for


# ---------------------------------------------------------------- argument checks


def check_arg(ok: bool, name: str, value: object, requirement: str) -> None:
    """Raise BadInput naming the architecture argument unless `ok`."""
    if not ok:
        raise BadInput(f"architecture argument {name!r} {requirement}, got {value!r}")


def check_int(name: str, value: object, minimum: int) -> None:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum
    check_arg(ok, name, value, f"must be an integer >= {minimum}")


def check_bool(name: str, value: object) -> None:
    check_arg(isinstance(value, bool), name, value, "must be true or false")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    check_arg(value in choices, name, value, f"must be one of {', '.join(choices)}")


def check_dropout(value: object) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value < 1.0
    check_arg(ok, "dropout", value, "must be a number in [0, 1)")


def check_heads(d_model: int, n_heads: int) -> None:
    check_int("d_model", d_model, 1)
    check_int("n_heads", n_heads, 1)
    check_arg(d_model % n_heads == 0, "d_model", d_model, f"must be divisible by n_heads={n_heads}")


# ---------------------------------------------------------------- masking helpers


def zero_masked(values: Tensor, mask: Tensor) -> Tensor:
    """Exact zeros where `mask` [B, A] is False; `values` is [B, A] or [B, A, ...]."""
    keep = mask.reshape(mask.shape + (1,) * (values.dim() - mask.dim()))
    return values.masked_fill(~keep, 0.0)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` [B, A, D] over unmasked assets -> [B, D] (0 when none is active)."""
    total = zero_masked(values, mask).sum(dim=1)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(values.dtype)
    return total / count


def mlp(d_in: int, d_hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_out))


# ---------------------------------------------------------------- input


class RevIN(nn.Module):
    """Instance normalization of each asset's window over time (RevIN, Kim et al. 2022).

    The models predict positions and labels, not the input series, so there is nothing to
    de-normalize; instead the removed statistics (mean, log std per feature) are returned and
    the stem adds a projection of them back, so the level and scale information is not lost.
    """

    def __init__(self, n_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_features))
        self.bias = nn.Parameter(torch.zeros(n_features))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [..., L, F] -> (normalized x [..., L, F], stats [..., 2F])."""
        mean = x.mean(dim=-2, keepdim=True)
        std = torch.sqrt(x.var(dim=-2, keepdim=True, unbiased=False) + self.eps)
        normalized = (x - mean) / std * self.weight + self.bias
        stats = torch.cat([mean, torch.log(std)], dim=-1).squeeze(-2)
        return normalized, stats


class InputStem(nn.Module):
    """x [B, A, L, F] -> [B, A, L, D]: optional RevIN, a linear projection, and the learned
    ticker embedding (an nn.Embedding over asset ids) added at every time step."""

    def __init__(self, n_assets: int, n_features: int, d_model: int, revin: bool) -> None:
        super().__init__()
        check_bool("revin", revin)
        self.revin = RevIN(n_features) if revin else None
        self.stats = nn.Linear(2 * n_features, d_model) if revin else None
        self.project = nn.Linear(n_features, d_model)
        self.ticker = nn.Embedding(n_assets, d_model)

    def forward(self, x: Tensor, asset_ids: Tensor, mask: Tensor) -> Tensor:
        x = zero_masked(x, mask)  # junk (even NaN) in a masked asset must reach nothing
        h = self.ticker(asset_ids)[None, :, None, :]
        if self.revin is not None and self.stats is not None:
            x, stats = self.revin(x)
            h = h + self.stats(stats)[:, :, None, :]
        return self.project(x) + h


def sinusoidal_table(length: int, d_model: int) -> Tensor:
    """The Transformer's fixed sin/cos encodings, [length, d_model]."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: d_model // 2])
    return table


class PositionalEncoding(nn.Module):
    """Adds a sinusoidal or learned encoding of the time step to h [N, L, D].

    Steps are aligned to the window's end, so the latest step has the same code whatever L is
    (L may be shorter than the lookback the model was built for, never longer)."""

    def __init__(self, lookback: int, d_model: int, kind: str) -> None:
        super().__init__()
        check_choice("positional", kind, ("sinusoidal", "learned"))
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(lookback, d_model) * 0.02)
        else:
            self.register_buffer("table", sinusoidal_table(lookback, d_model), persistent=False)

    def forward(self, h: Tensor) -> Tensor:
        steps = h.shape[-2]
        if steps > self.table.shape[0]:
            raise ValueError(f"window of {steps} steps is longer than the model's lookback {self.table.shape[0]}")
        return h + self.table[-steps:]


# ---------------------------------------------------------------- temporal encoding


class Pooling(nn.Module):
    """Sequence [N, S, D] -> [N, D].

    'cls': a learned token is prepended before the encoder (`add_token`) and read out after it;
    'attention': a learned query attends over the steps; 'last': the latest step.
    """

    def __init__(self, d_model: int, kind: str) -> None:
        super().__init__()
        check_choice("pooling", kind, ("attention", "cls", "last"))
        self.kind = kind
        self.token = nn.Parameter(torch.randn(d_model) * 0.02) if kind in ("cls", "attention") else None

    def add_token(self, h: Tensor) -> Tensor:
        if self.kind != "cls" or self.token is None:
            return h
        return torch.cat([self.token.expand(h.shape[0], 1, -1), h], dim=1)

    def forward(self, h: Tensor) -> Tensor:
        if self.kind == "cls":
            return h[:, 0]
        if self.kind == "last" or self.token is None:
            return h[:, -1]
        scores = (h @ self.token) / math.sqrt(h.shape[-1])  # [N, S]
        return (scores.softmax(dim=-1)[..., None] * h).sum(dim=1)


class EncoderStack(nn.Module):
    """Pre-norm self-attention layers over a sequence [N, S, D], then a final LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, n_layers: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model, n_heads, ff_mult * d_model, dropout,
                activation="gelu", batch_first=True, norm_first=True,
            )
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, h: Tensor) -> Tensor:
        for layer in self.layers:
            h = layer(h)
        return self.norm(h)


class TemporalTransformer(nn.Module):
    """Per-asset temporal encoder: positional encoding, self-attention over the window, pooling.
    h [N, L, D] -> [N, D]."""

    def __init__(
        self, *, d_model: int, n_heads: int, n_layers: int, ff_mult: int, dropout: float,
        lookback: int, positional: str, pooling: str,
    ) -> None:
        super().__init__()
        self.positional = PositionalEncoding(lookback, d_model, positional)
        self.pool = Pooling(d_model, pooling)
        self.encoder = EncoderStack(d_model, n_heads, n_layers, ff_mult, dropout)

    def forward(self, h: Tensor) -> Tensor:
        h = self.pool.add_token(self.positional(h))
        return self.pool(self.encoder(h))


# ---------------------------------------------------------------- cross-asset attention


def asset_attention_mask(mask: Tensor) -> Tensor:
    """[B, A] -> [B, A, A] (query i, key j): active assets attend to active assets; a masked
    asset attends only to itself, so it neither sends nor receives and no row is empty."""
    eye = torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
    return (mask[:, :, None] & mask[:, None, :]) | eye


class CrossAssetLayer(nn.Module):
    """Pre-norm multi-head attention across the assets of one date, then a feed-forward block.
    No positional code over assets: the layer is permutation-equivariant in the assets."""

    def __init__(self, d_model: int, n_heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.norm_attn = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = mlp(d_model, ff_mult * d_model, d_model, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, mask: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """h [B, A, D], mask [B, A] -> (h [B, A, D], weights [B, H, A, A] or None)."""
        B, A, D = h.shape
        q, k, v = self.qkv(self.norm_attn(h)).view(B, A, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        allowed = asset_attention_mask(mask)[:, None]  # [B, 1, A, A], broadcast over heads
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
            mixed = F.dropout(weights, p, self.training) @ v
            weights = zero_masked(weights, mask[:, None].expand(B, self.n_heads, A))
        else:
            mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        h = h + self.drop(self.out(mixed.transpose(1, 2).reshape(B, A, D)))
        h = h + self.drop(self.ff(self.norm_ff(h)))
        return h, weights


# ---------------------------------------------------------------- heads


class PositionHead(nn.Module):
    """Embedding [B, A, D] -> position [B, A] = tanh(linear), 0 for masked assets."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_model, 1)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        return zero_masked(torch.tanh(self.linear(h).squeeze(-1)), mask)


class TaskHeads(nn.Module):
    """The auxiliary tasks: direction logits, volatility, volume per asset, and market regime
    logits from the masked mean of the asset features (only unmasked assets count).

    `features` is one tensor [B, A, D] used by every task, or a mapping task -> [B, A, D]
    (a mixture-of-experts gate gives each task its own mix)."""

    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__()
        self.direction = nn.Linear(d_model, N_DIRECTIONS)
        self.volatility = nn.Linear(d_model, 1)
        self.volume = nn.Linear(d_model, 1)
        self.regime = mlp(d_model, d_model, N_REGIMES, dropout)

    def forward(self, features: Tensor | Mapping[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        per_task = features if isinstance(features, Mapping) else dict.fromkeys(TASKS, features)
        return {
            "direction": zero_masked(self.direction(per_task["direction"]), mask),
            "volatility": zero_masked(self.volatility(per_task["volatility"]).squeeze(-1), mask),
            "volume": zero_masked(self.volume(per_task["volume"]).squeeze(-1), mask),
            "regime": self.regime(masked_mean(per_task["regime"], mask)),
        }


class MixtureOfExperts(nn.Module):
    """Multi-gate mixture of experts (MMoE, Ma et al. 2018): shared expert MLPs, one softmax
    gate per task. h [..., D] -> {task: h + Σ_e gate_task(h)_e · expert_e(h)}."""

    def __init__(self, d_model: int, n_experts: int, tasks: tuple[str, ...], ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.experts = nn.ModuleList(mlp(d_model, ff_mult * d_model, d_model, dropout) for _ in range(n_experts))
        self.gates = nn.ModuleDict({task: nn.Linear(d_model, n_experts) for task in tasks})

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        experts = torch.stack([expert(h) for expert in self.experts], dim=-2)  # [..., E, D]
        return {
            task: h + (gate(h).softmax(dim=-1)[..., None] * experts).sum(dim=-2)
            for task, gate in self.gates.items()
        }
