"""The Sharpe multi-task objective.

A batch holds B consecutive dates, so the turnover |pos[t] - pos[t-1]| is defined inside it.

    p[t]  = Σ_a pos[t,a]·next_return[t,a] / n[t]  −  cost_bps/1e4 · turnover[t]
    turnover[t] = Σ_a |pos[t,a] − pos[t−1,a]| / n[t]
    total = λ_sharpe · (−Sharpe(p)) + λ_ir · (−IR(p − bench)) + λ_dd · MaxDrawdown(p) + λ_turn · mean(turnover)
          + λ_dir · focal_α(direction) + λ_vol · Huber(volatility) + λ_volume · Huber(volume)
          + λ_regime · CE(regime) + λ_barrier · focal(barrier)

Choices:
- n[t] is the number of active (mask True) assets, at least 1: with |pos| <= 1 the gross
  exposure is at most 1 whatever the universe size, so costs and Sharpe compare across universes.
- pos[−1] = 0: the first date of the batch pays for opening its positions (the same convention
  as quantray.evaluate.metrics.net_returns). Masked assets hold 0, so leaving the universe
  closes the position and pays for it.
- Sharpe = mean(p) / sqrt(var(p) + eps), population variance, per period (not annualized);
  eps = 1e-8 (a daily-return std of 1e-4) keeps it finite with differentiable gradients when the
  returns have zero variance, and makes a near-flat book score near 0 instead of exploding.
- Information ratio: the same ratio on p[t] − bench[t], bench[t] the equal-weight (costless)
  mean next_return of the active assets: the book is scored on what it adds to holding them all.
- Max drawdown of the additive cumulative net return c[t] = Σ_{s<=t} p[s] from a start at 0:
  max_t (max(0, max_{s<=t} c[s]) − c[t]), in return units (>= 0, differentiable almost everywhere).
- Turnover penalty: mean over dates of turnover[t] (the same count the costs use), for books
  that must trade less than the costs alone would make them.
- Auxiliary terms average over the (date, asset) pairs that count: mask True, label_mask True,
  and for direction and barrier a known class (>= 0); regime over dates with a known regime
  (>= 0). Volatility and volume use a Huber loss (delta 1) on the labels as given. Direction
  uses focal loss with a per-class weight α (`direction_class_weights`); barrier plain focal loss.
- A term whose weight is 0 is not computed and is absent from `parts`.
- Weights are validated once, when the config is loaded, not here on every batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from quantray.config import LossWeights

if TYPE_CHECKING:
    from quantray.models.blocks import Output

__all__ = [
    "LossWeights", "SHARPE_EPS", "focal_loss", "information_ratio", "max_drawdown", "objective",
    "portfolio_returns", "batch_sharpe", "turnover",
]

SHARPE_EPS = 1e-8


def batch_sharpe(returns: Tensor, eps: float = SHARPE_EPS) -> Tensor:
    """Per-period Sharpe over the last dimension: mean / sqrt(population variance + eps).

    The differentiable training objective. What validation, early stopping and reports compare is
    `quantray.evaluate.metrics.annualized_sharpe` (sample std, annualized): see the parity test."""
    mean = returns.mean(dim=-1)
    variance = returns.var(dim=-1, unbiased=False)
    return mean / torch.sqrt(variance + eps)


def information_ratio(returns: Tensor, benchmark: Tensor, eps: float = SHARPE_EPS) -> Tensor:
    """The Sharpe of the active return `returns − benchmark` (same eps and conventions)."""
    return batch_sharpe(returns - benchmark, eps)


def max_drawdown(returns: Tensor) -> Tensor:
    """Largest fall of the additive cumulative return from its running peak, over the last
    dimension; the book starts at 0, so a first-day loss is a drawdown."""
    cumulative = returns.cumsum(dim=-1)
    peak = cumulative.cummax(dim=-1).values.clamp(min=0.0)
    return (peak - cumulative).amax(dim=-1)


def active_count(mask: Tensor) -> Tensor:
    return mask.sum(dim=-1).clamp(min=1).float()


def turnover(position: Tensor, mask: Tensor) -> Tensor:
    """Σ_a |pos[t,a] − pos[t−1,a]| / n[t] per date [B]; pos[−1] = 0, masked assets hold 0."""
    position = torch.where(mask, position.float(), 0.0)
    previous = F.pad(position[:-1], (0, 0, 1, 0))
    return (position - previous).abs().sum(dim=-1) / active_count(mask)


def portfolio_returns(position: Tensor, next_return: Tensor, mask: Tensor, cost_bps: float) -> Tensor:
    """Net portfolio return per date [B] from positions [B, A] held over next_return [B, A]."""
    position = torch.where(mask, position.float(), 0.0)
    gross = (position * torch.where(mask, next_return.float(), 0.0)).sum(dim=-1) / active_count(mask)
    return gross - cost_bps / 1e4 * turnover(position, mask)


def equal_weight_returns(next_return: Tensor, mask: Tensor) -> Tensor:
    """The benchmark: mean next_return of the active assets per date [B] (0 when none is)."""
    return torch.where(mask, next_return.float(), 0.0).sum(dim=-1) / active_count(mask)


def focal_loss(
    logits: Tensor, target: Tensor, valid: Tensor, gamma: float, class_weights: Sequence[float] | None = None
) -> Tensor:
    """Mean focal loss −α_y·(1 − p_t)^γ·log p_t over `valid` entries (cross-entropy when γ = 0
    and α = 1). α_y = class_weights[target]; the mean is over entries, not normalized by α, so
    weights of 1 leave the loss unchanged and a weight of 2 counts a class twice."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    target = target.clamp(min=0)
    log_pt = log_p.gather(-1, target[..., None]).squeeze(-1)
    loss = -log_pt
    if gamma > 0:
        # clamped so a fractional γ has a finite gradient when p_t rounds to 1
        loss = (1.0 - log_pt.exp()).clamp(min=1e-6) ** gamma * loss
    if class_weights is not None:
        loss = torch.as_tensor(class_weights, dtype=loss.dtype, device=loss.device)[target] * loss
    return masked_average(loss, valid)


def masked_average(values: Tensor, valid: Tensor) -> Tensor:
    return torch.where(valid, values, 0.0).sum() / valid.sum().clamp(min=1)


def objective(
    out: "Output", batch: Mapping[str, Tensor], weights: LossWeights, cost_bps: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """The training loss and its unweighted parts (detached).

    `out` is a model Output (position [B, A], heads); `batch` holds mask, next_return and, for
    the terms with a nonzero weight, direction, volatility, volume, label_mask, regime, barrier.
    parts: "sharpe" and "information_ratio" (the ratios themselves, higher is better),
    "drawdown", "turnover" and each auxiliary loss computed.
    """
    mask = batch["mask"].bool()
    terms: dict[str, tuple[float, Tensor]] = {}
    if weights.sharpe or weights.information_ratio or weights.drawdown:
        net = portfolio_returns(out.position, batch["next_return"], mask, cost_bps)
        if weights.sharpe:
            terms["sharpe"] = (-weights.sharpe, batch_sharpe(net))
        if weights.information_ratio:
            benchmark = equal_weight_returns(batch["next_return"], mask)
            terms["information_ratio"] = (-weights.information_ratio, information_ratio(net, benchmark))
        if weights.drawdown:
            terms["drawdown"] = (weights.drawdown, max_drawdown(net))
    if weights.turnover:
        terms["turnover"] = (weights.turnover, turnover(out.position, mask).mean())
    needs_labels = weights.direction or weights.volatility or weights.volume or weights.barrier
    labelled = mask & batch["label_mask"].bool() if needs_labels else mask
    if weights.direction:
        target = batch["direction"]
        loss = focal_loss(out.heads["direction"], target, labelled & (target >= 0), weights.focal_gamma,
                          weights.direction_class_weights)
        terms["direction"] = (weights.direction, loss)
    for name in ("volatility", "volume"):
        if getattr(weights, name):
            error = F.huber_loss(out.heads[name].float(), batch[name].float(), reduction="none")
            terms[name] = (getattr(weights, name), masked_average(error, labelled))
    if weights.regime:
        target = batch["regime"]
        error = F.cross_entropy(out.heads["regime"].float(), target.clamp(min=0), reduction="none")
        terms["regime"] = (weights.regime, masked_average(error, target >= 0))
    if weights.barrier:
        target = batch["barrier"]
        loss = focal_loss(out.heads["barrier"], target, labelled & (target >= 0), weights.focal_gamma)
        terms["barrier"] = (weights.barrier, loss)

    total = sum((weight * value for weight, value in terms.values()), out.position.new_zeros((), dtype=torch.float32))
    return total, {name: value.detach() for name, (_, value) in terms.items()}
