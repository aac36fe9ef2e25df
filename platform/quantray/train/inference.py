"""Run a model over a block of windows: positions, embeddings and (optionally) attention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

from quantray.data.risk import RISK_KEYS

if TYPE_CHECKING:
    import torch

    from quantray.data.windows import Windows


# Every inference batch has this many rows (the last one padded by repeating its last row). CPU
# kernels pick their blocking by batch size, so a date's output would otherwise depend on which
# other dates share its batch: a fixed shape makes it the same bit for bit wherever the date falls
# (training-side evaluation, backtest, the pyfunc, the server).
INFERENCE_BATCH = 64


def padded_batches(n_rows: int, size: int = INFERENCE_BATCH) -> Iterator[tuple[np.ndarray, int]]:
    """(row indices, all `size` long, and how many of them are real) covering 0..n_rows-1 in order."""
    for start in range(0, n_rows, size):
        rows = np.arange(start, min(start + size, n_rows))
        yield np.concatenate([rows, np.full(size - len(rows), rows[-1])]), len(rows)


# what a model and the risk model after it read of a batch (`Windows.gather`)
MODEL_INPUTS: tuple[str, ...] = ("x", "asset_ids", "mask", "news", "news_mask", *RISK_KEYS)


def batch_tensors(batch: dict[str, np.ndarray], device: str = "cpu") -> dict[str, "torch.Tensor"]:
    """The model's inputs of a numpy batch as tensors on `device` (the training loop's batches
    come as tensors already: `train.batches.DeviceWindows`)."""
    import torch

    return {key: torch.as_tensor(batch[key], device=device) for key in MODEL_INPUTS if key in batch}


def run_batch(model: "torch.nn.Module", tensors: dict[str, "torch.Tensor"], return_attention: bool = False):
    """The model's Output on a batch of tensors, its position what the model trades: the news
    tokens go in and the risk model applies (`train.risk`) when the data has them. Every caller
    (the loss, validation, inference, the diagnostics) runs a model through this."""
    from quantray.train.risk import risk_positions  # lazy: imports torch

    out = model(tensors["x"], tensors["asset_ids"], tensors["mask"], return_attention=return_attention,
                news=tensors.get("news"), news_mask=tensors.get("news_mask"))
    return out._replace(position=risk_positions(out.position, tensors))


@dataclass
class Inference:
    positions: np.ndarray  # [T, A], 0 for masked assets
    embeddings: np.ndarray | None  # [T, A, D]
    attention: np.ndarray | None  # [A, A], mean over dates and heads, when asked for


def run_model(
    model: "torch.nn.Module",
    windows: "Windows",
    *,
    embeddings: bool = False,
    attention: bool = False,
    device: str = "cpu",
) -> Inference:
    """Evaluate `model` on every sample of `windows`, in date order, without gradients; positions
    through the data's risk model when it has one (`train.risk`), as in training."""
    import torch

    model.eval()
    positions, embeds, attn_sum, attn_n = [], [], None, 0
    with torch.no_grad():
        for rows, n_real in padded_batches(len(windows)):
            out = run_batch(model, batch_tensors(windows.batch(rows), device), return_attention=attention)
            positions.append(out.position[:n_real].float().cpu().numpy())
            if embeddings:
                embeds.append(out.embedding[:n_real].float().cpu().numpy())
            if attention and out.attention is not None:
                weights = out.attention[:n_real].float().mean(dim=1).sum(dim=0).cpu().numpy()
                attn_sum = weights if attn_sum is None else attn_sum + weights
                attn_n += n_real
    n_assets = windows.n_assets
    return Inference(
        positions=np.concatenate(positions) if positions else np.zeros((0, n_assets), np.float32),
        embeddings=np.concatenate(embeds) if embeds else None,
        attention=None if attn_sum is None else attn_sum / attn_n,
    )
