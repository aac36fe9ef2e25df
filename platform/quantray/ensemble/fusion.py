"""Fuse frozen members into one strategy, fit on the validation block only.

Five methods:
- `concat`: the members' embeddings, concatenated per asset [T, A, ΣD], through a small MLP
  head to a tanh position; trained on the Sharpe term of the objective;
- `attention`: a learned query scores each member's (projected) embedding per asset, a softmax
  over members mixes them, and the same kind of head maps the mix to a position;
- `hierarchical`: members are grouped (by model family by default, or by any value of their
  config, `FusionConfig.grouping`); an attention over members inside each group fuses the group,
  then an attention over the groups fuses the groups (seed 001: "fuse groups, then fuse the
  groups"), and the same kind of head maps the result to a position;
- `greedy`: Caruana et al. (2004) ensemble selection with replacement over the members'
  positions, maximizing the validation net Sharpe; no trainable part;
- `mean`: the members' positions averaged with equal weights, nothing fit on validation beyond
  the choice of members (the 1/N combination that fitted weights often fail to beat out of sample).

Members never change: their weights are frozen and they run in eval mode, so the fusion can only
learn how to combine them. The heads are small `nn.Module`s without I/O; saving lives in
quantray.ensemble.artifact. (This module imports torch; the CLI imports it inside its handlers.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import nn

from quantray.config import FUSION_METHODS
from quantray.data.windows import Windows
from quantray.errors import BadInput
from quantray.evaluate.metrics import annualized_sharpe, net_returns
from quantray.train.checkpoint import Member
from quantray.train.inference import padded_batches, run_model
from quantray.train.loop import consecutive_batches
from quantray.train.losses import batch_sharpe, portfolio_returns

METHODS = FUSION_METHODS
WEIGHTED = ("greedy", "mean")  # methods that mix member positions by fixed weights, without a head


@dataclass(frozen=True)
class FusionConfig:
    """How a fusion is fit; stored in ensemble.json so a head can be rebuilt before its weights load."""

    hidden: int = 32
    dropout: float = 0.1
    epochs: int = 40
    batch_dates: int = 64  # consecutive validation dates per step (turnover is defined inside)
    lr: float = 3e-3
    weight_decay: float = 1e-2
    seed: int = 0
    greedy_rounds: int = 50  # ensemble-selection steps; the best prefix is kept
    holdout: float = 0.25  # tail of the validation block that picks the head's epoch (early stopping)
    # hierarchical: the dotted key of a member's TrainConfig whose value names its group
    grouping: str = "model.family"

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass
class FusionOutput:
    positions: np.ndarray  # [T, A] in [-1, 1], 0 for masked assets
    embeddings: np.ndarray | None  # [T, A, E] fused embeddings, when asked for
    member_weights: np.ndarray | None  # [T, A, M] attention over members (attention, hierarchical)


@dataclass
class MemberOutputs:
    """What the frozen members say about one block of windows."""

    positions: np.ndarray  # [M, T, A]
    embeddings: list[np.ndarray] | None  # M arrays [T, A, D_m], when asked for


def run_members(members: Sequence[Member], windows: Windows, *, embeddings: bool) -> MemberOutputs:

    runs = [run_model(m.model, windows, embeddings=embeddings) for m in members]
    return MemberOutputs(
        positions=np.stack([r.positions for r in runs]),
        embeddings=[r.embeddings for r in runs] if embeddings else None,
    )


def freeze(members: Sequence[Member]) -> None:
    for member in members:
        member.model.eval()
        for p in member.model.parameters():
            p.requires_grad_(False)


class EnsembleModel:
    """Frozen members plus their fusion: positions (and fused embeddings) for any Windows."""

    def __init__(self, members: Sequence[Member], method: str, head: nn.Module | None,
                 weights: np.ndarray, config: FusionConfig) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown fusion method {method!r} (expected one of: {', '.join(METHODS)})")
        if (head is None) != (method in WEIGHTED):
            raise ValueError(f"method {method!r} {'needs' if head is None else 'takes no'} head")
        self.members = list(members)
        self.method = method
        self.head = head
        self.weights = np.asarray(weights, dtype=np.float64)  # [M]: what each member contributes
        self.config = config
        freeze(self.members)
        if head is not None:
            head.eval()

    def run(self, windows: Windows, *, embeddings: bool = False) -> FusionOutput:
        """Positions [T, A] for every sample of `windows`, in date order, without gradients."""
        mask = block_labels(windows)["mask"]
        outputs = run_members(self.members, windows, embeddings=embeddings or self.head is not None)
        if self.head is None:
            return FusionOutput(
                positions=weighted_positions(outputs.positions, self.weights) * mask,
                embeddings=weighted_concat(outputs.embeddings, self.weights) * mask[..., None] if embeddings else None,
                member_weights=None,
            )
        return apply_head(self.head, outputs, mask, embeddings=embeddings)


# ---- heads -------------------------------------------------------------------------------------

POSITION_LOGIT_LIMIT = 0.995  # member positions are clamped here before atanh, so logits stay within ±3


class ConsensusStart(nn.Module):
    """The members' consensus, which both heads start from and correct.

    logit = Σ_m mix_m · atanh(position_m), mix_m = 1/M at initialisation; the heads add their own
    output (a zero-initialised layer) to it before tanh. An untrained head is therefore the
    members' average vote, not noise, and the early stopping in `train_head` can keep it when no
    correction generalises to the held-out dates.
    """

    def __init__(self, n_members: int) -> None:
        super().__init__()
        self.mix = nn.Parameter(torch.full((n_members,), 1.0 / n_members))

    def forward(self, member_positions: torch.Tensor) -> torch.Tensor:
        """member_positions [B, A, M] -> consensus logit [B, A]."""
        logits = torch.atanh(member_positions.clamp(-POSITION_LOGIT_LIMIT, POSITION_LOGIT_LIMIT))
        return logits @ self.mix


def zero_linear(d_in: int, d_out: int) -> nn.Linear:
    layer = nn.Linear(d_in, d_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class ConcatHead(nn.Module):
    """LayerNorm(concatenated member embeddings) -> Linear -> GELU -> Linear, added to the
    members' consensus logit -> tanh position."""

    def __init__(self, dims: Sequence[int], hidden: int, dropout: float) -> None:
        super().__init__()
        self.dims = tuple(int(d) for d in dims)
        self.consensus = ConsensusStart(len(self.dims))
        self.norm = nn.LayerNorm(sum(self.dims))
        self.body = nn.Sequential(nn.Linear(sum(self.dims), hidden), nn.GELU(), nn.Dropout(dropout))
        self.out = zero_linear(hidden, 1)

    def forward(self, embeddings: list[torch.Tensor], member_positions: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(position [B, A], fused embedding [B, A, H], None) from member embeddings [B, A, D_m]
        and member positions [B, A, M]."""
        hidden = self.body(self.norm(torch.cat(embeddings, dim=-1)))
        logit = self.consensus(member_positions) + self.out(hidden).squeeze(-1)
        return torch.tanh(logit) * mask, hidden * mask[..., None], None

    def member_weights(self) -> np.ndarray:
        """Each member's share [M]: half its consensus weight, half the share of the first layer's
        squared weight norm that reads its embedding."""
        norms = self.body[0].weight.detach().pow(2).sum(dim=0).cpu().numpy()
        bounds = np.cumsum([0, *self.dims])
        reads = np.array([norms[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])])
        mix = self.consensus.mix.detach().abs().cpu().numpy()
        return 0.5 * mix / max(mix.sum(), 1e-12) + 0.5 * reads / reads.sum()


class AttentionHead(nn.Module):
    """Per asset, a softmax over members of a learned query's scores mixes their embeddings; the
    mix feeds a correction to the members' consensus logit."""

    def __init__(self, dims: Sequence[int], hidden: int, dropout: float) -> None:
        super().__init__()
        self.dims = tuple(int(d) for d in dims)
        self.consensus = ConsensusStart(len(self.dims))
        # members' embeddings differ in size and scale: normalize, then project into one space
        self.project = nn.ModuleList(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden)) for d in self.dims)
        self.key = nn.Linear(hidden, hidden, bias=False)
        self.query = nn.Parameter(torch.randn(hidden) / math.sqrt(hidden))
        self.body = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout))
        self.out = zero_linear(hidden, 1)

    def forward(self, embeddings: list[torch.Tensor], member_positions: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(position [B, A], fused embedding [B, A, H], weights over members [B, A, M])."""
        values = torch.stack([proj(e) for proj, e in zip(self.project, embeddings)], dim=-2)  # [B, A, M, H]
        scores = self.key(values) @ self.query / math.sqrt(values.shape[-1])  # [B, A, M]
        weights = torch.softmax(scores, dim=-1)
        hidden = self.body((weights[..., None] * values).sum(dim=-2))
        logit = self.consensus(member_positions) + self.out(hidden).squeeze(-1)
        return torch.tanh(logit) * mask, hidden * mask[..., None], weights


class AttentionPool(nn.Module):
    """A learned query's softmax over the second-to-last axis: [..., N, H] -> ([..., H], [..., N])."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.key = nn.Linear(hidden, hidden, bias=False)
        self.query = nn.Parameter(torch.randn(hidden) / math.sqrt(hidden))

    def forward(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.softmax(self.key(values) @ self.query / math.sqrt(values.shape[-1]), dim=-1)
        return (weights[..., None] * values).sum(dim=-2), weights


class HierarchicalHead(nn.Module):
    """Fuse each group of members (an attention over the group's members), then fuse the groups (an
    attention over the groups' fused embeddings); the result corrects the members' consensus logit.

    `groups[m]` is member m's group index (0..G-1, every index used). A member's weight is its
    group's weight times its weight inside the group, so the weights over members sum to 1.
    """

    def __init__(self, dims: Sequence[int], groups: Sequence[int], hidden: int, dropout: float) -> None:
        super().__init__()
        self.dims = tuple(int(d) for d in dims)
        self.groups = tuple(int(g) for g in groups)
        if len(self.groups) != len(self.dims) or sorted(set(self.groups)) != list(range(len(set(self.groups)))):
            raise ValueError(f"groups {list(self.groups)} must give each of the {len(self.dims)} members "
                             f"a group index 0..G-1, each index used")
        n_groups = len(set(self.groups))
        self.consensus = ConsensusStart(len(self.dims))
        self.project = nn.ModuleList(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden)) for d in self.dims)
        self.within = nn.ModuleList(AttentionPool(hidden) for _ in range(n_groups))  # one per group
        self.group_norm = nn.LayerNorm(hidden)
        self.across = AttentionPool(hidden)
        self.body = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout))
        self.out = zero_linear(hidden, 1)

    def forward(self, embeddings: list[torch.Tensor], member_positions: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(position [B, A], fused embedding [B, A, H], weights over members [B, A, M])."""
        values = [proj(e) for proj, e in zip(self.project, embeddings)]  # M x [B, A, H]
        fused_groups, member_weights = [], [None] * len(values)
        for g, pool in enumerate(self.within):
            members = [m for m, group in enumerate(self.groups) if group == g]
            fused, weights = pool(torch.stack([values[m] for m in members], dim=-2))  # [B, A, H], [B, A, n_g]
            fused_groups.append(self.group_norm(fused))
            for i, m in enumerate(members):
                member_weights[m] = weights[..., i]
        fused, group_weights = self.across(torch.stack(fused_groups, dim=-2))  # [B, A, H], [B, A, G]
        hidden = self.body(fused)
        logit = self.consensus(member_positions) + self.out(hidden).squeeze(-1)
        weights = torch.stack([group_weights[..., g] * w for g, w in zip(self.groups, member_weights)], dim=-1)
        return torch.tanh(logit) * mask, hidden * mask[..., None], weights


HEADS: dict[str, type[nn.Module]] = {"concat": ConcatHead, "attention": AttentionHead,
                                     "hierarchical": HierarchicalHead}


def build_head(method: str, dims: Sequence[int], config: FusionConfig,
               groups: Sequence[int] | None = None) -> nn.Module:
    """A freshly initialised head for `method` over members with embedding sizes `dims`
    (`groups`: each member's group index, for `hierarchical` only)."""
    if method not in HEADS:
        raise ValueError(f"method {method!r} has no head")
    if (groups is not None) != (method == "hierarchical"):
        raise ValueError(f"method {method!r} {'takes no' if groups is not None else 'needs'} member groups")
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(config.seed)
        if method == "hierarchical":
            return HierarchicalHead(dims, groups, config.hidden, config.dropout)
        return HEADS[method](dims, config.hidden, config.dropout)


def member_groups(members: Sequence[Member], grouping: str) -> tuple[int, ...]:
    """Each member's group index, by the value of `grouping` (a dotted key of its TrainConfig, e.g.
    `model.family` or `model.arch.ffn`), numbered in order of first appearance."""
    labels = [str(config_value(member.config, grouping)) for member in members]
    order = list(dict.fromkeys(labels))
    return tuple(order.index(label) for label in labels)


def config_value(config: object, dotted: str) -> object:
    value = config
    for part in dotted.split("."):
        if isinstance(value, dict):
            value = value.get(part)  # an arch key a member leaves at its default groups as None
        elif hasattr(value, "__dataclass_fields__") and part in value.__dataclass_fields__:
            value = getattr(value, part)
        else:
            raise BadInput(f"fusion.grouping: {dotted!r} is not a key of a member's config")
    return value


def apply_head(head: nn.Module, members: MemberOutputs, mask: np.ndarray, *, embeddings: bool) -> FusionOutput:
    """The head's positions for a block of member outputs (embeddings included), in fixed-shape
    batches (`padded_batches`: a date's output does not depend on its neighbours)."""
    member_embeddings, member_positions = members.embeddings, members.positions.transpose(1, 2, 0)  # [T, A, M]
    head.eval()
    positions, fused, weights = [], [], []
    with torch.no_grad():
        for rows, n_real in padded_batches(mask.shape[0]):
            pos, hidden, w = head([torch.as_tensor(e[rows]) for e in member_embeddings],
                                  torch.as_tensor(member_positions[rows]), torch.as_tensor(mask[rows]))
            positions.append(pos[:n_real].numpy())
            fused.append(hidden[:n_real].numpy())
            if w is not None:
                weights.append(w[:n_real].numpy())
    n_assets = mask.shape[1]
    return FusionOutput(
        positions=np.concatenate(positions) if positions else np.zeros((0, n_assets), np.float32),
        embeddings=(np.concatenate(fused) if fused else np.zeros((0, n_assets, 0), np.float32)) if embeddings else None,
        member_weights=np.concatenate(weights) if weights else None,
    )


# ---- fitting -----------------------------------------------------------------------------------

def fit_fusion(members: Sequence[Member], windows: Windows, method: str, *, cost_bps: float,
               config: FusionConfig = FusionConfig()) -> EnsembleModel:
    """Fit `method` on `windows` (the validation block) and return the fused model."""
    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r} (expected one of: {', '.join(METHODS)})")
    if not members:
        raise ValueError("an ensemble needs at least one member")
    freeze(members)
    labels = block_labels(windows)
    outputs = run_members(members, windows, embeddings=method not in WEIGHTED)
    if method == "greedy":
        weights = greedy_weights(outputs.positions, labels["next_return"], labels["mask"], cost_bps,
                                 rounds=config.greedy_rounds)
        return EnsembleModel(members, method, None, weights, config)
    if method == "mean":
        return EnsembleModel(members, method, None, np.full(len(members), 1.0 / len(members)), config)
    groups = member_groups(members, config.grouping) if method == "hierarchical" else None
    head = build_head(method, [e.shape[-1] for e in outputs.embeddings], config, groups)
    train_head(head, outputs, labels["next_return"], labels["mask"], cost_bps, config)
    if method in ("attention", "hierarchical"):
        weights = apply_head(head, outputs, labels["mask"], embeddings=False).member_weights
        weights = mean_member_weights(weights, labels["mask"])
    else:
        weights = head.member_weights()
    return EnsembleModel(members, method, head, weights, config)


def block_labels(windows: Windows, chunk: int = 256) -> dict[str, np.ndarray]:
    """next_return and mask [T, A] of every sample, gathered in chunks (one batch of all x is big)."""
    rows = np.arange(len(windows))
    parts = [windows.batch(rows[i:i + chunk]) for i in range(0, len(rows), chunk)]
    if not parts:
        return {"next_return": np.zeros((0, windows.n_assets), np.float32),
                "mask": np.zeros((0, windows.n_assets), bool)}
    return {key: np.concatenate([p[key] for p in parts]) for key in ("next_return", "mask")}


def mean_member_weights(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average attention over members [M] across the active (date, asset) pairs."""
    active = weights[mask]
    return active.mean(axis=0) if len(active) else np.full(weights.shape[-1], 1.0 / weights.shape[-1])


def train_head(head: nn.Module, members: MemberOutputs, next_return: np.ndarray,
               mask: np.ndarray, cost_bps: float, config: FusionConfig) -> list[float]:
    """Maximize the net Sharpe of the head's positions on consecutive-date batches of the first
    `1 - holdout` of the validation block, keeping the epoch whose Sharpe on the held-out tail is
    best, the untrained head (the members' consensus) included: a head fit and scored on the same
    few hundred dates overfits them, and the test block is never used. Returns the held-out Sharpe
    before training and after each epoch."""

    embeddings = [torch.as_tensor(e, dtype=torch.float32) for e in members.embeddings]
    positions = torch.as_tensor(members.positions.transpose(1, 2, 0), dtype=torch.float32)  # [T, A, M]
    returns = torch.as_tensor(next_return, dtype=torch.float32)
    active = torch.as_tensor(mask, dtype=torch.bool)
    n_fit = max(2, int(round(len(returns) * (1.0 - config.holdout))))
    tail = torch.arange(n_fit, len(returns))
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    history: list[float] = []
    best_sharpe, best_state = -math.inf, None

    def held_out_sharpe() -> float:
        if len(tail) < 2:
            return math.nan
        head.eval()
        with torch.no_grad():
            position, _, _ = head([e[tail] for e in embeddings], positions[tail], active[tail])
            # early stopping scores what validation reports: the annualized sample Sharpe
            value = annualized_sharpe(portfolio_returns(position, returns[tail], active[tail], cost_bps).double().numpy())
        head.train()
        return value

    def keep_if_best() -> None:
        nonlocal best_sharpe, best_state
        score = held_out_sharpe()
        history.append(score)
        if not math.isnan(score) and score > best_sharpe:
            best_sharpe, best_state = score, {k: v.detach().clone() for k, v in head.state_dict().items()}

    with torch.random.fork_rng(devices=[]):  # dropout draws are seeded too, the caller's RNG untouched
        torch.manual_seed(config.seed)
        head.train()
        keep_if_best()  # the consensus itself is a candidate
        for _ in range(config.epochs):
            for rows in consecutive_batches(n_fit, config.batch_dates, rng):
                rows = torch.as_tensor(rows)
                position, _, _ = head([e[rows] for e in embeddings], positions[rows], active[rows])
                loss = -batch_sharpe(portfolio_returns(position, returns[rows], active[rows], cost_bps))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            keep_if_best()
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    return history


# ---- weighted ensembles: greedy selection, equal weights ---------------------------------------

def greedy_weights(member_positions: np.ndarray, asset_returns: np.ndarray, mask: np.ndarray,
                   cost_bps: float, *, rounds: int = 50) -> np.ndarray:
    """Caruana et al. (2004) forward selection with replacement; weights [M] sum to 1.

    Each round adds the member whose inclusion maximizes the net Sharpe of the averaged
    positions of the members chosen so far (a member can be chosen again, which is how it
    gains weight). The prefix with the best Sharpe is kept, so adding rounds never hurts on
    validation; the weights are the selection counts over the total.
    """

    if rounds < 1:
        raise ValueError(f"greedy selection needs at least 1 round, got {rounds}")
    positions = np.asarray(member_positions, dtype=np.float64)
    n_members = positions.shape[0]
    counts = np.zeros(n_members)
    total = np.zeros(positions.shape[1:])
    best_score, best_counts = -math.inf, None
    for step in range(1, rounds + 1):
        scores = [annualized_sharpe(net_returns((total + positions[m]) / step, asset_returns, mask, cost_bps))
                  for m in range(n_members)]
        chosen = int(np.argmax(scores))
        counts[chosen] += 1
        total += positions[chosen]
        if scores[chosen] > best_score:
            best_score, best_counts = scores[chosen], counts.copy()
    return best_counts / best_counts.sum()


def weighted_positions(member_positions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.tensordot(np.asarray(weights, dtype=np.float64), member_positions, axes=1).astype(np.float32)


def weighted_concat(member_embeddings: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """A weighted ensemble's fused embedding (greedy, mean): the chosen members' embeddings, scaled by weight."""
    return np.concatenate([w * e for w, e in zip(weights, member_embeddings) if w > 0], axis=-1).astype(np.float32)
