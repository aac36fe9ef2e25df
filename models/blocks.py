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

# Heads every family provides (besides the position), so any family trains on the full objective.
TASKS: tuple[str, ...] = ("direction", "volatility", "volume", "regime", "barrier")
N_DIRECTIONS = 3  # 0 down, 1 flat, 2 up
N_REGIMES = 3  # 0 down/volatile, 1 calm, 2 up
N_BARRIERS = 3  # 0 lower barrier first, 1 vertical (neither), 2 upper barrier first
FFN_KINDS: tuple[str, ...] = ("gelu", "swiglu", "kan")
KAN_GRID = 5  # Gaussian basis functions per KAN edge: a small grid keeps the layer cheap


class Output(NamedTuple):
    embedding: Tensor  # [B, A, D], 0 for masked assets
    position: Tensor  # [B, A] in [-1, 1], 0 for masked assets
    heads: dict[str, Tensor]  # direction [B, A, 3], volatility [B, A], volume [B, A], regime [B, 3], barrier [B, A, 3]
    attention: Tensor | None = None  # [B, H, A, A] cross-asset weights when asked for
    lead_lag: Tensor | None = None  # [B, H, A, A, max_lag + 1] (receiver, sender, lag) when asked for


# ---------------------------------------------------------------- argument checks


def check_arg(ok: bool, name: str, value: object, requirement: str) -> None:
    """Raise ValueError naming the architecture argument unless `ok`."""
    if not ok:
        raise ValueError(f"architecture argument {name!r} {requirement}, got {value!r}")


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


def run_lstm(lstm: nn.LSTM, h: Tensor) -> Tensor:
    """The LSTM's output sequence. Under CPU autocast it runs in float32: oneDNN has no bf16 LSTM
    kernel on CPUs without native bf16 ("could not create a primitive descriptor"), and the
    recurrence is the part of these models that bf16 rounding hurts most anyway."""
    if h.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return lstm(h.float())[0]
    return lstm(h)[0]


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


# ---------------------------------------------------------------- feed-forward blocks


class SwiGLU(nn.Module):
    """FFN_SwiGLU (Shazeer 2020): W_down(SiLU(x·W_gate) ⊙ x·W_up)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.gate_up = nn.Linear(d_in, 2 * d_hidden)
        self.down = nn.Linear(d_hidden, d_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(self.drop(F.silu(gate) * up))


class KANLayer(nn.Module):
    """A Kolmogorov-Arnold layer, FastKAN style (Li 2024): output j = Σ_i φ_ij(x_i) with
    φ_ij(x) = Σ_g c_ijg·exp(−((x − g)/w)²) + w_ij·SiLU(x), a learnable function on every edge.
    Gaussian bumps on a fixed grid stand in for KAN's cubic B-splines (nearly the same basis,
    one exp instead of the Cox-de Boor recursion). The LayerNorm keeps inputs on the grid."""

    def __init__(self, d_in: int, d_out: int, grid: int = KAN_GRID, span: float = 2.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_in)
        self.register_buffer("centers", torch.linspace(-span, span, grid), persistent=False)
        self.inv_width = (grid - 1) / (2 * span)  # neighbouring bumps cross at exp(-1/4)
        self.spline = nn.Linear(d_in * grid, d_out, bias=False)
        self.base = nn.Linear(d_in, d_out)

    def forward(self, x: Tensor) -> Tensor:
        z = self.norm(x)
        basis = torch.exp(-(((z[..., None] - self.centers) * self.inv_width) ** 2))  # [..., d_in, grid]
        return self.spline(basis.flatten(-2)) + self.base(F.silu(z))


class KANFeedForward(nn.Module):
    """Two KAN layers d_in -> d_hidden -> d_out."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.inner = KANLayer(d_in, d_hidden)
        self.drop = nn.Dropout(dropout)
        self.outer = KANLayer(d_hidden, d_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.outer(self.drop(self.inner(x)))


def feed_forward(kind: str, d_in: int, d_hidden: int, d_out: int, dropout: float) -> nn.Module:
    """A feed-forward block with about the parameters of the GELU MLP d_in -> d_hidden -> d_out.

    The GELU MLP holds ≈ d_hidden·(d_in + d_out) weights; SwiGLU's three matrices hold
    h·(2·d_in + d_out), so h = d_hidden·(d_in + d_out)/(2·d_in + d_out) (2/3·d_hidden when square,
    as in Shazeer 2020); a KAN edge carries KAN_GRID + 1 weights, so h = d_hidden/(KAN_GRID + 1).
    """
    check_choice("ffn", kind, FFN_KINDS)
    if kind == "swiglu":
        return SwiGLU(d_in, max(1, round(d_hidden * (d_in + d_out) / (2 * d_in + d_out))), d_out, dropout)
    if kind == "kan":
        return KANFeedForward(d_in, max(1, round(d_hidden / (KAN_GRID + 1))), d_out, dropout)
    return mlp(d_in, d_hidden, d_out, dropout)


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


class EncoderLayer(nn.Module):
    """Pre-norm self-attention then a SwiGLU or KAN feed-forward block, over h [N, S, D]
    (nn.TransformerEncoderLayer hard-wires the two-layer MLP, which stays the GELU path)."""

    def __init__(self, d_model: int, n_heads: int, ff_mult: int, dropout: float, ffn: str) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = feed_forward(ffn, d_model, ff_mult * d_model, d_model, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor) -> Tensor:
        h = h + self.drop(multihead_attention(self.attn, self.norm_attn(h)))
        return h + self.drop(self.ff(self.norm_ff(h)))


class EncoderStack(nn.Module):
    """Pre-norm self-attention layers over a sequence [N, S, D], then a final LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, n_layers: int, ff_mult: int, dropout: float, ffn: str = "gelu") -> None:
        super().__init__()
        check_choice("ffn", ffn, FFN_KINDS)
        if ffn == "gelu":
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(
                    d_model, n_heads, ff_mult * d_model, dropout,
                    activation="gelu", batch_first=True, norm_first=True,
                )
                for _ in range(n_layers)
            )
        else:
            self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, ff_mult, dropout, ffn) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, h: Tensor) -> Tensor:
        for layer in self.layers:
            h = torch_encoder_layer(layer, h) if isinstance(layer, nn.TransformerEncoderLayer) else layer(h)
        return self.norm(h)


def torch_encoder_layer(layer: nn.TransformerEncoderLayer, h: Tensor) -> Tensor:
    """`layer(h)` for the pre-norm, batch-first GELU layer EncoderStack builds, with its own
    submodules (so checkpoints keep their keys) and the attention of `multihead_attention`.
    For one seed the attention and feed-forward dropouts draw what torch's forward draws; the
    dropout after the attention draws the same distribution on other elements (torch's output
    there is a transposed view, and dropout fills in memory order)."""
    h = h + layer.dropout1(multihead_attention(layer.self_attn, layer.norm1(h)))
    return h + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(h))))))


class TemporalTransformer(nn.Module):
    """Per-asset temporal encoder: positional encoding, self-attention over the window, pooling.
    h [N, L, D] -> [N, D], and with `return_states` also the encoded steps [N, L, D]."""

    def __init__(
        self, *, d_model: int, n_heads: int, n_layers: int, ff_mult: int, dropout: float,
        lookback: int, positional: str, pooling: str, ffn: str = "gelu",
    ) -> None:
        super().__init__()
        self.positional = PositionalEncoding(lookback, d_model, positional)
        self.pool = Pooling(d_model, pooling)
        self.encoder = EncoderStack(d_model, n_heads, n_layers, ff_mult, dropout, ffn)

    def forward(self, h: Tensor, return_states: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        steps = h.shape[1]
        h = self.encoder(self.pool.add_token(self.positional(h)))
        if not return_states:
            return self.pool(h)
        return self.pool(h), h[:, -steps:]  # a CLS token sits in front of the steps


# ---------------------------------------------------------------- self- and context attention


def attend_all(q: Tensor, k: Tensor, v: Tensor, dropout: float) -> Tensor:
    """Unmasked multi-head attention q [N, H, S, d], k, v [N, H, T, d] -> [N, H, S, d].

    Why not always scaled_dot_product_attention: with dropout on a CPU it falls back to its math
    path, which scales q and k separately, runs a softmax that guards against all-masked rows
    (there are none without a mask) and copies; this does the same arithmetic in fewer passes
    over the [N, H, S, T] weights, with the same dropout draw (F.dropout on the same shape). On
    CUDA, or without dropout, the fused kernels win."""
    if dropout == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    weights = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
    return F.dropout(weights, dropout) @ v


def multihead_attention(attn: nn.MultiheadAttention, query: Tensor, context: Tensor | None = None) -> Tensor:
    """`attn(query, context, context, need_weights=False)[0]` for a batch-first module without
    masks: query [N, S, D] attends to context [N, T, D] (itself when None). Uses the module's
    packed projection in one matmul and `attend_all`, skipping nn.MultiheadAttention's layout
    copies; the module and its state_dict keys are unchanged."""
    N, S, D = query.shape
    H = attn.num_heads
    weight, bias = attn.in_proj_weight, attn.in_proj_bias
    if context is None:
        q, k, v = split_heads(F.linear(query, weight, bias), 3, H)
    else:
        (q,) = split_heads(F.linear(query, weight[:D], bias[:D]), 1, H)
        k, v = split_heads(F.linear(context, weight[D:], bias[D:]), 2, H)
    mixed = attend_all(q, k, v, attn.dropout if attn.training else 0.0)
    return attn.out_proj(merge_heads(mixed))


# ---------------------------------------------------------------- cross-asset attention


def asset_attention_mask(mask: Tensor) -> Tensor:
    """[B, A] -> [B, A, A] (query i, key j): active assets attend to active assets; a masked
    asset attends only to itself, so it neither sends nor receives and no row is empty."""
    eye = torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
    return (mask[:, :, None] & mask[:, None, :]) | eye


def attend(
    q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, dropout: float, need_weights: bool
) -> tuple[Tensor, Tensor | None]:
    """Multi-head attention q [B, H, Nq, d], k, v [B, H, Nk, d] over the `allowed` [B, 1, Nq, Nk]
    keys (every row allows at least one) -> (mixed [B, H, Nq, d], weights [B, H, Nq, Nk] or None)."""
    if not need_weights:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout), None
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    return F.dropout(weights, dropout, dropout > 0) @ v, weights


def split_heads(x: Tensor, n_parts: int, n_heads: int) -> Tensor:
    """[B, N, n_parts·D] -> [n_parts, B, H, N, D/H]."""
    B, N, _ = x.shape
    return x.view(B, N, n_parts, n_heads, -1).permute(2, 0, 3, 1, 4)


def merge_heads(x: Tensor) -> Tensor:
    """[B, H, N, d] -> [B, N, H·d]."""
    return x.transpose(1, 2).flatten(2)


class CrossAssetLayer(nn.Module):
    """Pre-norm multi-head attention across the assets of one date, then a feed-forward block.
    No positional code over assets: the layer is permutation-equivariant in the assets.

    Hierarchical (`n_groups > 0`, called with each asset's `group`): an asset attends only to the
    active assets of its own group; then each group's summary (the mean of its active members)
    attends to the other groups' summaries, and every asset adds its group's result. Information
    crosses groups only through the summaries."""

    def __init__(self, d_model: int, n_heads: int, ff_mult: int, dropout: float, ffn: str = "gelu",
                 n_groups: int = 0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.n_groups = n_groups
        self.norm_attn = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = feed_forward(ffn, d_model, ff_mult * d_model, d_model, dropout)
        self.drop = nn.Dropout(dropout)
        if n_groups:
            self.norm_group = nn.LayerNorm(d_model)
            self.group_qkv = nn.Linear(d_model, 3 * d_model)
            self.group_out = nn.Linear(d_model, d_model)

    def forward(
        self, h: Tensor, mask: Tensor, need_weights: bool = False, group: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """h [B, A, D], mask [B, A], group [A] (ids < n_groups) -> (h [B, A, D], weights [B, H, A, A] or None)."""
        B, A, _ = h.shape
        allowed = asset_attention_mask(mask)
        if group is not None:
            eye = torch.eye(A, dtype=torch.bool, device=mask.device)
            allowed = allowed & (group[:, None] == group[None, :]) | eye
        q, k, v = split_heads(self.qkv(self.norm_attn(h)), 3, self.n_heads)
        p = self.dropout if self.training else 0.0
        mixed, weights = attend(q, k, v, allowed[:, None], p, need_weights)
        if weights is not None:
            weights = zero_masked(weights, mask[:, None].expand(B, self.n_heads, A))
        h = h + self.drop(self.out(merge_heads(mixed)))
        if group is not None:
            h = h + self.drop(self.across_groups(h, mask, group))
        h = h + self.drop(self.ff(self.norm_ff(h)))
        return h, weights

    def across_groups(self, h: Tensor, mask: Tensor, group: Tensor) -> Tensor:
        """Attention between the group summaries [B, G, D], read back by each asset -> [B, A, D]."""
        members = F.one_hot(group, self.n_groups).to(h.dtype)[None] * mask[..., None].to(h.dtype)  # [B, A, G]
        count = members.sum(dim=1)  # [B, G]
        summary = members.transpose(1, 2) @ self.norm_group(h) / count.clamp(min=1)[..., None]
        q, k, v = split_heads(self.group_qkv(summary), 3, self.n_heads)
        p = self.dropout if self.training else 0.0
        mixed, _ = attend(q, k, v, asset_attention_mask(count > 0)[:, None], p, need_weights=False)
        return self.group_out(merge_heads(mixed))[:, group]


class LeadLagAttention(nn.Module):
    """Temporal cross-attention across assets (lead-lag, after seed 003's max_lag).

    Each asset's current state h_i [B, A, D] attends jointly to the temporal states s_j[L−1−ℓ]
    of every active asset j at lags ℓ = 0..max_lag, with a learned lag embedding added to the
    keys, so one softmax spreads the weight over (sender, lag) pairs and a lagged sender can win
    over a contemporaneous one. Then a feed-forward block. The window lies at or before the
    decision date, so every key is past or present data. Lags beyond a short window get no
    weight. A masked asset neither sends nor receives (it attends only to its own lags)."""

    def __init__(self, d_model: int, n_heads: int, max_lag: int, ff_mult: int, dropout: float, ffn: str) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.max_lag = max_lag
        self.dropout = dropout
        self.norm_query = nn.LayerNorm(d_model)
        self.norm_states = nn.LayerNorm(d_model)
        self.lag = nn.Parameter(torch.randn(max_lag + 1, d_model) * 0.02)
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = feed_forward(ffn, d_model, ff_mult * d_model, d_model, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, h: Tensor, states: Tensor, mask: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """h [B, A, D], states [B, A, L, D], mask [B, A] ->
        (h [B, A, D], weights [B, H, A (receiver), A (sender), max_lag + 1] or None)."""
        B, A, _ = h.shape
        lagged = states.flip(2)[:, :, : self.max_lag + 1]  # [B, A, K, D]: index ℓ is lag ℓ
        K = lagged.shape[2]
        keys = (self.norm_states(lagged) + self.lag[:K]).flatten(1, 2)  # [B, A·K, D], sender-major
        (q,) = split_heads(self.q(self.norm_query(h)), 1, self.n_heads)
        k, v = split_heads(self.kv(keys), 2, self.n_heads)
        allowed = asset_attention_mask(mask)[:, None, :, :, None].expand(B, 1, A, A, K).flatten(-2)
        p = self.dropout if self.training else 0.0
        mixed, weights = attend(q, k, v, allowed, p, need_weights)
        h = h + self.drop(self.out(merge_heads(mixed)))
        h = h + self.drop(self.ff(self.norm_ff(h)))
        if weights is None:
            return h, None
        weights = F.pad(weights.unflatten(-1, (A, K)), (0, self.max_lag + 1 - K))
        return h, zero_masked(weights, mask[:, None].expand(B, self.n_heads, A))


# ---------------------------------------------------------------- news


class NewsCrossAttention(nn.Module):
    """Market tokens attend to the day's news tokens (seed 000's news x market cross-attention).

    h [B, Q, D] (Q market tokens of the date: one per asset, or one per asset and step) attends
    to the news tokens news [B, N, E] (oldest first; `news_mask` [B, N] False where a bar had no
    news) plus a learned null token, so a day without news, or news that does not matter, can be
    attended away and no row is ever empty. Age enters as a learned recency bias on the scores
    (ALiBi, Press et al. 2022): each head subtracts slope_h x age in bars, the slope starting at 1,
    so the newest news leads from the first step and a head can learn to look further back. (A
    sinusoidal age code added to the keys and values hid the content: on the synthetic stream the
    block did not learn to read yesterday's headline out of five.) Then a feed-forward block.
    Queries never see one another, so the block is equivariant in the assets and cannot carry
    information between them. Without news (`news=None`) every query attends to the null token."""

    def __init__(self, d_model: int, news_dim: int, n_heads: int, ff_mult: int, dropout: float, ffn: str) -> None:
        super().__init__()
        check_int("news_dim", news_dim, 1)
        self.n_heads = n_heads
        self.dropout = dropout
        self.null = nn.Parameter(torch.randn(1, news_dim) * 0.02)  # in news space: shares the projection
        self.project = nn.Sequential(nn.LayerNorm(news_dim), nn.Linear(news_dim, d_model))
        self.recency = nn.Parameter(torch.full((n_heads,), math.log(math.e - 1.0)))  # softplus -> slope 1
        self.norm_query = nn.LayerNorm(d_model)
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = feed_forward(ffn, d_model, ff_mult * d_model, d_model, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, news: Tensor | None, news_mask: Tensor | None) -> Tensor:
        B = h.shape[0]
        null = self.null.expand(B, 1, -1)
        tokens = null if news is None else torch.cat([null, news.to(null.dtype)], dim=1)  # [B, 1 + N, E]
        N = tokens.shape[1] - 1
        (q,) = split_heads(self.q(self.norm_query(h)), 1, self.n_heads)
        k, v = split_heads(self.kv(self.project(tokens)), 2, self.n_heads)
        present = torch.ones(B, N + 1, dtype=torch.bool, device=h.device)
        if news is not None and news_mask is not None:
            present = torch.cat([present[:, :1], news_mask.to(torch.bool)], dim=1)
        # age in bars: the null token 0, then oldest N-1 .. newest 0
        age = torch.cat([torch.zeros(1, device=h.device), torch.arange(N - 1, -1, -1, device=h.device)])
        bias = -F.softplus(self.recency)[:, None] * age[None, :]  # [H, 1 + N]
        scores = bias[None, :, None, :].masked_fill(~present[:, None, None, :], float("-inf"))  # [B, H, 1, 1 + N]
        p = self.dropout if self.training else 0.0
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=scores.to(q.dtype), dropout_p=p)
        h = h + self.drop(self.out(merge_heads(mixed)))
        return h + self.drop(self.ff(self.norm_ff(h)))


# ---------------------------------------------------------------- heads


def dollar_neutral(position: Tensor, mask: Tensor) -> Tensor:
    """(p - mean of p over the active assets) / 2 on every date: long as much as short, still in [-1, 1].

    A book without net exposure to what moves every asset together (the market factor, whose
    drift the bars reveal least reliably), so a model spends its capacity on the assets' relative
    moves; 0 for masked assets."""
    mean = zero_masked(position, mask).sum(dim=-1, keepdim=True) / mask.sum(dim=-1, keepdim=True).clamp(min=1)
    return zero_masked((position - mean) / 2, mask)


class PositionHead(nn.Module):
    """Embedding [B, A, D] -> position [B, A] = tanh(linear), 0 for masked assets; dollar-neutral
    (`dollar_neutral`) when `neutral`."""

    def __init__(self, d_model: int, neutral: bool = False) -> None:
        super().__init__()
        check_bool("market_neutral", neutral)
        self.linear = nn.Linear(d_model, 1)
        self.neutral = neutral

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        position = zero_masked(torch.tanh(self.linear(h).squeeze(-1)), mask)
        return dollar_neutral(position, mask) if self.neutral else position


class TaskHeads(nn.Module):
    """The auxiliary tasks: direction logits, volatility, volume and triple-barrier logits per
    asset, and market regime logits from the masked mean of the asset features (only unmasked
    assets count). The regime head is a feed-forward block of kind `ffn`.

    `features` is one tensor [B, A, D] used by every task, or a mapping task -> [B, A, D]
    (a mixture-of-experts gate gives each task its own mix)."""

    def __init__(self, d_model: int, dropout: float, ffn: str = "gelu") -> None:
        super().__init__()
        self.direction = nn.Linear(d_model, N_DIRECTIONS)
        self.volatility = nn.Linear(d_model, 1)
        self.volume = nn.Linear(d_model, 1)
        self.regime = feed_forward(ffn, d_model, d_model, N_REGIMES, dropout)
        self.barrier = nn.Linear(d_model, N_BARRIERS)

    def forward(self, features: Tensor | Mapping[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        per_task = features if isinstance(features, Mapping) else dict.fromkeys(TASKS, features)
        return {
            "direction": zero_masked(self.direction(per_task["direction"]), mask),
            "volatility": zero_masked(self.volatility(per_task["volatility"]).squeeze(-1), mask),
            "volume": zero_masked(self.volume(per_task["volume"]).squeeze(-1), mask),
            "regime": self.regime(masked_mean(per_task["regime"], mask)),
            "barrier": zero_masked(self.barrier(per_task["barrier"]), mask),
        }


class MixtureOfExperts(nn.Module):
    """Multi-gate mixture of experts (MMoE, Ma et al. 2018): shared expert MLPs, one softmax
    gate per task. h [..., D] -> {task: h + Σ_e gate_task(h)_e · expert_e(h)}. Experts are
    feed-forward blocks of kind `ffn` (KAN experts: seed 002's spline-based heads)."""

    def __init__(self, d_model: int, n_experts: int, tasks: tuple[str, ...], ff_mult: int, dropout: float,
                 ffn: str = "gelu") -> None:
        super().__init__()
        self.experts = nn.ModuleList(
            feed_forward(ffn, d_model, ff_mult * d_model, d_model, dropout) for _ in range(n_experts)
        )
        self.gates = nn.ModuleDict({task: nn.Linear(d_model, n_experts) for task in tasks})

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        experts = torch.stack([expert(h) for expert in self.experts], dim=-2)  # [..., E, D]
        return {
            task: h + (gate(h).softmax(dim=-1)[..., None] * experts).sum(dim=-2)
            for task, gate in self.gates.items()
        }
