"""Run a model over a block of windows: positions, embeddings and (optionally) attention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

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

    from quantray.train.risk import risk_inputs, risk_positions  # lazy: imports torch

    model.eval()
    positions, embeds, attn_sum, attn_n = [], [], None, 0
    with torch.no_grad():
        for rows, n_real in padded_batches(len(windows)):
            batch = windows.batch(rows)
            news = batch.get("news")
            out = model(
                torch.as_tensor(batch["x"], device=device),
                torch.as_tensor(batch["asset_ids"], device=device),
                torch.as_tensor(batch["mask"], device=device),
                return_attention=attention,
                news=None if news is None else torch.as_tensor(news, device=device),
                news_mask=None if news is None else torch.as_tensor(batch["news_mask"], device=device),
            )
            positions.append(risk_positions(out.position, risk_inputs(batch, device))[:n_real].float().cpu().numpy())
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
