"""Every family can fit a tiny batch on the full objective (the optimisation path works end to end)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from model_cases import build_small, random_inputs, random_labels

from quantray.train.losses import LossWeights, objective


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models train faster on one thread (two threads add wake-up stalls on small ops)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_family_fits_a_tiny_batch(case: tuple[str, dict], one_thread: None) -> None:
    family, arch = case
    model = build_small(family, **{**arch, "dropout": 0.0}).train()
    x, asset_ids, mask = random_inputs(seed=9, batch=16)
    labels = random_labels(mask, seed=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    history = []
    for _ in range(100):
        loss, parts = objective(model(x, asset_ids, mask), labels, LossWeights(), cost_bps=5.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append((loss.item(), parts))
    (first, first_parts), (last, last_parts) = history[0], history[-1]
    assert last < first - 1.0, f"loss went {first:.3f} -> {last:.3f}"
    assert last_parts["sharpe"] > 1.0
    assert last_parts["direction"] < first_parts["direction"]
