"""What a model says besides its positions, on a block of windows: its class heads' predictions
(direction, triple barrier) and its lead-lag attention by lag, for the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from quantray.train.inference import batch_tensors, padded_batches, run_batch

if TYPE_CHECKING:
    import torch

    from quantray.data.windows import Windows

CLASS_HEADS: tuple[str, ...] = ("direction", "barrier")  # heads of 3-class logits [B, A, 3] with a label


@dataclass
class HeadPredictions:
    predicted: dict[str, np.ndarray] = field(default_factory=dict)  # head -> argmax class [T, A], -1 masked
    actual: dict[str, np.ndarray] = field(default_factory=dict)  # head -> its label [T, A], -1 unknown
    lead_lag: np.ndarray | None = None  # [A, A, max_lag + 1] (receiver, sender, lag), mean over dates and heads


def run_heads(model: "torch.nn.Module", windows: "Windows", device: str = "cpu") -> HeadPredictions:
    """The class heads' predictions against their labels and the lead-lag attention, in date order."""
    import torch

    model.eval()
    predicted: dict[str, list[np.ndarray]] = {}
    actual: dict[str, list[np.ndarray]] = {}
    lead_lag_sum, n = None, 0
    with torch.no_grad():
        for rows, n_real in padded_batches(len(windows)):
            batch = windows.batch(rows)
            out = run_batch(model, batch_tensors(batch, device), return_attention=True)
            mask = batch["mask"][:n_real]
            for head in CLASS_HEADS:
                if head in out.heads and head in batch:
                    guess = out.heads[head][:n_real].float().argmax(dim=-1).cpu().numpy()
                    predicted.setdefault(head, []).append(np.where(mask, guess, -1))
                    actual.setdefault(head, []).append(np.where(mask & batch["label_mask"][:n_real], batch[head][:n_real], -1))
            if out.lead_lag is not None:
                weights = out.lead_lag[:n_real].float().mean(dim=1).sum(dim=0).cpu().numpy()
                lead_lag_sum = weights if lead_lag_sum is None else lead_lag_sum + weights
                n += n_real
    return HeadPredictions(
        predicted={head: np.concatenate(parts) for head, parts in predicted.items()},
        actual={head: np.concatenate(parts) for head, parts in actual.items()},
        lead_lag=None if lead_lag_sum is None else lead_lag_sum / n,
    )
