"""NT-Xent contrastive pretraining of any family's encoder (seed 001), the pieces the loop's
pretraining phase uses (quantray.train.loop.fit runs it before the Sharpe epochs).

The representation is `Output.embedding` [B, A, D]; one sample is one (date, active asset). A
small projection head (discarded after pretraining, as in SimCLR) maps it to the space where the
NT-Xent loss (Chen et al. 2020) pulls the two views of a sample together and pushes every other
sample of the batch away. Positive pairs (`PretrainConfig.augment`):
- `jitter`: two views of the same window, each with Gaussian noise and a random share of its
  time steps zeroed;
- `adjacent`: the windows of consecutive dates of the same asset (batches hold consecutive dates);
- `both`: adjacent windows, each jittered.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quantray.config import PretrainConfig


def projection_head(d_model: int, width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_model, width), nn.ReLU(), nn.Linear(width, width))


def jitter(x: Tensor, noise: float, mask_rate: float) -> Tensor:
    """x [B, A, L, F] with Gaussian noise and a share `mask_rate` of its time steps zeroed."""
    keep = (torch.rand(x.shape[:3], device=x.device) >= mask_rate).to(x.dtype)[..., None]
    return (x + noise * torch.randn_like(x)) * keep


def nt_xent(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """NT-Xent over N positive pairs (a[i], b[i]) [N, P]: each of the 2N views must pick its
    partner among the other 2N - 1 by cosine similarity / temperature."""
    z = F.normalize(torch.cat([a, b]).float(), dim=-1)
    n = a.shape[0]
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, partner)


def contrastive_loss(model: nn.Module, projection: nn.Module, tensors: dict[str, Tensor],
                     config: PretrainConfig) -> Tensor:
    """The NT-Xent loss of one batch of consecutive dates (`tensors` as the loop makes them)."""
    x, asset_ids, mask = tensors["x"], tensors["asset_ids"], tensors["mask"]
    news = {"news": tensors.get("news"), "news_mask": tensors.get("news_mask")}
    if config.augment == "adjacent":
        views = [x, x]
    else:
        views = [jitter(x, config.noise, config.mask_rate) for _ in range(2)]
    outs = [model(v, asset_ids, mask, **news) for v in views]
    first, second = outs[0].embedding, outs[1].embedding
    active = mask
    if config.augment in ("adjacent", "both"):  # date t's view pairs with date t+1's
        first, second, active = first[:-1], second[1:], mask[:-1] & mask[1:]
    loss = nt_xent(projection(first[active]), projection(second[active]), config.temperature)
    # every parameter takes part (DDP all-reduces all of them; the heads get a zero gradient)
    untouched = sum(o.position.sum() + sum(h.float().sum() for h in o.heads.values()) for o in outs)
    return loss + 0.0 * untouched
