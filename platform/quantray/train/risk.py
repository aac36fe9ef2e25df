"""Positions from a model's views through the data's risk model (`data.risk`, quantray.data.risk).

Applied wherever a member's output becomes a position: the training loss and validation
(`inference.run_batch`) and every inference (`inference.run_model`: the ensemble's members, the
backtest, the pyfunc and the server), so the book a model is trained on is the book it trades.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

MIN_VARIANCE = 1e-12  # a floor under the variances the transform divides by


def risk_positions(view: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
    """clip(s · Σ⁻¹ · view, -1, 1) per date for a batch with a risk model, else `view` unchanged.

    Σ = market_var · ββ' + diag(idio_var) over the active assets (Sherman-Morrison, no A x A
    matrix); s = the mean idiosyncratic variance of the date's active assets, so uncorrelated
    assets of equal variance keep their view. A date with a single active asset trades its view:
    that asset is the whole market, with nothing to hedge it against. Masked assets hold 0."""
    if "beta" not in batch:
        return view
    mask = batch["mask"]
    beta = torch.where(mask, batch["beta"].float(), 0.0)
    idio = torch.where(mask, batch["idio_var"].float(), 1.0).clamp(min=MIN_VARIANCE)
    market_var = batch["market_var"].float().clamp(min=MIN_VARIANCE)
    weighted = torch.where(mask, view.float(), 0.0) / idio  # D⁻¹ view
    hedge = (beta * weighted).sum(dim=-1) / (1.0 / market_var + (beta * beta / idio).sum(dim=-1))
    active = mask.sum(dim=-1).clamp(min=1)
    scale = torch.where(mask, idio, 0.0).sum(dim=-1) / active
    position = (weighted - beta / idio * hedge[:, None]) * scale[:, None]
    position = torch.where(mask.sum(dim=-1, keepdim=True) == 1, view.float(), position)
    return torch.where(mask, position.clamp(-1.0, 1.0), 0.0).to(view.dtype)
