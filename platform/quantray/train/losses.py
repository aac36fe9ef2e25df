"""The Sharpe multi-task objective.

A batch holds B consecutive dates, so the turnover |pos[t] - pos[t-1]| is defined inside it.

    p[t]  = Σ_a pos[t,a]·next_return[t,a] / n[t]  −  cost_bps/1e4 · Σ_a |pos[t,a] − pos[t−1,a]| / n[t]
    total = λ_sharpe · (−Sharpe(p)) + λ_dir · focal(direction) + λ_vol · Huber(volatility)
          + λ_volume · Huber(volume) + λ_regime · CE(regime)

Choices:
- n[t] is the number of active (mask True) assets, at least 1: with |pos| <= 1 the gross
  exposure is at most 1 whatever the universe size, so costs and Sharpe compare across universes.
- pos[−1] = 0: the first date of the batch pays for opening its positions (the same convention
  as quantray.evaluate.metrics.net_returns). Masked assets hold 0, so leaving the universe
  closes the position and pays for it.
- Sharpe = mean(p) / sqrt(var(p) + eps), population variance, per period (not annualized);
  eps = 1e-8 (a daily-return std of 1e-4) keeps it finite with differentiable gradients when the
  returns have zero variance, and makes a near-flat book score near 0 instead of exploding.
- Auxiliary terms average over the (date, asset) pairs that count: mask True, label_mask True,
  and for direction a known class (>= 0); regime over dates with a known regime (>= 0).
  Volatility and volume use a Huber loss (delta 1) on the labels as given.
- A term whose weight is 0 is not computed and is absent from `parts`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from quantray.config import LossWeights
from quantray.errors import BadInput

if TYPE_CHECKING:
    from quantray.models.blocks import Output

__all__ = ["LossWeights", "SHARPE_EPS", "focal_loss", "objective", "portfolio_returns", "batch_sharpe"]

SHARPE_EPS = 1e-8
_NONNEGATIVE = ("sharpe", "direction", "volatility", "volume", "regime", "focal_gamma")


def batch_sharpe(returns: Tensor, eps: float = SHARPE_EPS) -> Tensor:
    """Per-period Sharpe over the last dimension: mean / sqrt(population variance + eps)."""
    mean = returns.mean(dim=-1)
    variance = returns.var(dim=-1, unbiased=False)
    return mean / torch.sqrt(variance + eps)


def portfolio_returns(position: Tensor, next_return: Tensor, mask: Tensor, cost_bps: float) -> Tensor:
    """Net portfolio return per date [B] from positions [B, A] held over next_return [B, A]."""
    position = torch.where(mask, position.float(), 0.0)
    n_active = mask.sum(dim=-1).clamp(min=1).float()
    gross = (position * torch.where(mask, next_return.float(), 0.0)).sum(dim=-1)
    previous = F.pad(position[:-1], (0, 0, 1, 0))  # pos[-1] = 0
    traded = (position - previous).abs().sum(dim=-1)
    return (gross - cost_bps / 1e4 * traded) / n_active


def focal_loss(logits: Tensor, target: Tensor, valid: Tensor, gamma: float) -> Tensor:
    """Mean focal loss −(1 − p_t)^γ·log p_t over `valid` entries (cross-entropy when γ = 0)."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    log_pt = log_p.gather(-1, target.clamp(min=0)[..., None]).squeeze(-1)
    loss = -log_pt
    if gamma > 0:
        # clamped so a fractional γ has a finite gradient when p_t rounds to 1
        loss = (1.0 - log_pt.exp()).clamp(min=1e-6) ** gamma * loss
    return masked_average(loss, valid)


def masked_average(values: Tensor, valid: Tensor) -> Tensor:
    return torch.where(valid, values, 0.0).sum() / valid.sum().clamp(min=1)


def objective(
    out: "Output", batch: Mapping[str, Tensor], weights: LossWeights, cost_bps: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """The training loss and its unweighted parts (detached).

    `out` is a model Output (position [B, A], heads); `batch` holds mask, next_return and, for
    the terms with a nonzero weight, direction, volatility, volume, label_mask, regime.
    parts: "sharpe" (the Sharpe itself, higher is better) and each auxiliary loss computed.
    """
    for name in _NONNEGATIVE:
        if getattr(weights, name) < 0:
            raise BadInput(f"loss.{name} must be >= 0, got {getattr(weights, name)!r}")
    mask = batch["mask"].bool()
    terms: dict[str, tuple[float, Tensor]] = {}
    if weights.sharpe:
        net = portfolio_returns(out.position, batch["next_return"], mask, cost_bps)
        terms["sharpe"] = (-weights.sharpe, batch_sharpe(net))
    needs_labels = weights.direction or weights.volatility or weights.volume
    labelled = mask & batch["label_mask"].bool() if needs_labels else mask
    if weights.direction:
        target = batch["direction"]
        loss = focal_loss(out.heads["direction"], target, labelled & (target >= 0), weights.focal_gamma)
        terms["direction"] = (weights.direction, loss)
    for name in ("volatility", "volume"):
        if getattr(weights, name):
            error = F.huber_loss(out.heads[name].float(), batch[name].float(), reduction="none")
            terms[name] = (getattr(weights, name), masked_average(error, labelled))
    if weights.regime:
        target = batch["regime"]
        error = F.cross_entropy(out.heads["regime"].float(), target.clamp(min=0), reduction="none")
        terms["regime"] = (weights.regime, masked_average(error, target >= 0))

    total = sum((weight * value for weight, value in terms.values()), out.position.new_zeros((), dtype=torch.float32))
    return total, {name: value.detach() for name, (_, value) in terms.items()}
