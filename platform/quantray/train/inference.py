"""Run a model over a block of windows: positions, embeddings and (optionally) attention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from quantray.data.windows import Windows


@dataclass
class Inference:
    positions: np.ndarray  # [T, A], 0 for masked assets
    embeddings: np.ndarray | None  # [T, A, D]
    attention: np.ndarray | None  # [A, A], mean over dates and heads, when asked for


def run_model(
    model: "torch.nn.Module",
    windows: "Windows",
    *,
    batch_size: int = 256,
    embeddings: bool = False,
    attention: bool = False,
    device: str = "cpu",
) -> Inference:
    """Evaluate `model` on every sample of `windows`, in date order, without gradients."""
    import torch

    model.eval()
    positions, embeds, attn_sum, attn_n = [], [], None, 0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            batch = windows.batch(np.arange(start, min(start + batch_size, len(windows))))
            out = model(
                torch.as_tensor(batch["x"], device=device),
                torch.as_tensor(batch["asset_ids"], device=device),
                torch.as_tensor(batch["mask"], device=device),
                return_attention=attention,
            )
            positions.append(out.position.float().cpu().numpy())
            if embeddings:
                embeds.append(out.embedding.float().cpu().numpy())
            if attention and out.attention is not None:
                weights = out.attention.float().mean(dim=1).sum(dim=0).cpu().numpy()
                attn_sum = weights if attn_sum is None else attn_sum + weights
                attn_n += out.attention.shape[0]
    n_assets = windows.n_assets
    return Inference(
        positions=np.concatenate(positions) if positions else np.zeros((0, n_assets), np.float32),
        embeddings=np.concatenate(embeds) if embeds else None,
        attention=None if attn_sum is None else attn_sum / attn_n,
    )
