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
    for _ in range(150):
        loss, parts = objective(model(x, asset_ids, mask), labels, LossWeights(), cost_bps=5.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append((loss.item(), parts))
    # the Sharpe of 16 dates swings from step to step at this learning rate: judge the best of
    # the second half of the run, not whichever step happens to be last
    (first, first_parts), (best, best_parts) = history[0], min(history[75:], key=lambda item: item[0])
    assert best < first - 1.0, f"loss went {first:.3f} -> {best:.3f}"
    assert best_parts["sharpe"] > 1.0
    assert best_parts["direction"] < first_parts["direction"]
