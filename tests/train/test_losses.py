"""The Sharpe multi-task objective against hand-computed values and its masking rules."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from quantray.errors import BadInput
from quantray.models.blocks import Output
from quantray.train.losses import LossWeights, focal_loss, objective, portfolio_returns, batch_sharpe

SHARPE_ONLY = LossWeights(sharpe=1.0, direction=0.0, volatility=0.0, volume=0.0, regime=0.0)

# 3 dates x 3 assets; asset 2 is masked on date 1 (its position and return there are junk)
POSITION = [[0.5, -1.0, 0.25], [1.0, 0.0, 0.9], [0.0, 0.5, -0.5]]
NEXT_RETURN = [[0.01, 0.02, -0.03], [-0.01, 0.03, 0.5], [0.02, -0.02, 0.01]]
MASK = [[True, True, True], [True, True, False], [True, True, True]]
COST_BPS = 10.0  # 0.001 per unit traded

# by hand: gross − 0.001·Σ|Δpos| (pos[−1] = 0, a masked asset holds 0), over the active count
HAND_RETURNS = [
    (0.5 * 0.01 + -1.0 * 0.02 + 0.25 * -0.03 - 0.001 * (0.5 + 1.0 + 0.25)) / 3,
    (1.0 * -0.01 + 0.0 * 0.03 - 0.001 * (0.5 + 1.0 + 0.25)) / 2,
    (0.0 * 0.02 + 0.5 * -0.02 + -0.5 * 0.01 - 0.001 * (1.0 + 0.5 + 0.5)) / 3,
]


def hand_sharpe(returns: list[float], eps: float = 1e-8) -> float:
    mean = sum(returns) / len(returns)
    variance = sum((r - mean) ** 2 for r in returns) / len(returns)
    return mean / math.sqrt(variance + eps)


def output(position: torch.Tensor, seed: int = 0) -> Output:
    """A model Output around `position` with random head values."""
    generator = torch.Generator().manual_seed(seed)
    B, A = position.shape
    heads = {
        "direction": torch.randn(B, A, 3, generator=generator),
        "volatility": torch.randn(B, A, generator=generator),
        "volume": torch.randn(B, A, generator=generator),
        "regime": torch.randn(B, 3, generator=generator),
    }
    return Output(torch.zeros(B, A, 4), position, heads)


def labels(mask: torch.Tensor, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    B, A = mask.shape
    direction = torch.randint(0, 3, (B, A), generator=generator)
    direction[0, 1] = -1
    regime = torch.randint(0, 3, (B,), generator=generator)
    regime[1] = -1
    label_mask = torch.ones(B, A, dtype=torch.bool)
    label_mask[2, 0] = False
    return {
        "mask": mask,
        "next_return": torch.randn(B, A, generator=generator) * 0.02,
        "direction": direction,
        "volatility": torch.rand(B, A, generator=generator) * 0.03,
        "volume": torch.randn(B, A, generator=generator),
        "regime": regime,
        "label_mask": label_mask,
    }


def test_portfolio_returns_match_the_hand_computation() -> None:
    got = portfolio_returns(torch.tensor(POSITION), torch.tensor(NEXT_RETURN), torch.tensor(MASK), COST_BPS)
    torch.testing.assert_close(got, torch.tensor(HAND_RETURNS), atol=1e-7, rtol=1e-6)


def test_sharpe_loss_matches_the_hand_computation() -> None:
    position = torch.tensor(POSITION)
    batch = {"mask": torch.tensor(MASK), "next_return": torch.tensor(NEXT_RETURN)}
    total, parts = objective(output(position), batch, SHARPE_ONLY, COST_BPS)
    assert parts.keys() == {"sharpe"}
    assert total.item() == pytest.approx(-hand_sharpe(HAND_RETURNS), rel=1e-5)
    assert parts["sharpe"].item() == pytest.approx(hand_sharpe(HAND_RETURNS), rel=1e-5)


def test_sharpe_ratio_is_per_period_with_population_variance() -> None:
    returns = [0.01, -0.02, 0.03, 0.0]
    got = batch_sharpe(torch.tensor(returns, dtype=torch.float64), eps=0.0)
    assert got.item() == pytest.approx(hand_sharpe(returns, eps=0.0))
    batched = batch_sharpe(torch.tensor([returns, [0.01, 0.01, 0.02, 0.0]]))
    assert batched.shape == (2,)


def test_training_and_evaluation_agree_on_portfolio_returns() -> None:
    from quantray.evaluate.metrics import net_returns

    want = net_returns(np.array(POSITION), np.array(NEXT_RETURN), np.array(MASK), COST_BPS)
    got = portfolio_returns(torch.tensor(POSITION), torch.tensor(NEXT_RETURN), torch.tensor(MASK), COST_BPS)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-7)


@pytest.mark.parametrize(
    ("position", "next_return"),
    [
        ([[0.3, -0.7]] * 4, [[0.0, 0.0]] * 4),  # every return 0
        ([[0.5, 0.5]] * 4, [[0.01, 0.01]] * 4),  # the same nonzero return every date
    ],
)
def test_sharpe_gradient_is_finite_when_returns_have_zero_variance(position: list, next_return: list) -> None:
    pos = torch.tensor(position, requires_grad=True)
    batch = {"mask": torch.ones(4, 2, dtype=torch.bool), "next_return": torch.tensor(next_return)}
    total, _ = objective(output(pos), batch, SHARPE_ONLY, cost_bps=0.0)
    total.backward()
    assert torch.isfinite(total)
    assert pos.grad is not None and torch.isfinite(pos.grad).all()


def test_masked_assets_contribute_nothing() -> None:
    mask = torch.tensor([[True, True, False], [True, False, True], [True, True, True], [False, True, True]])
    batch = labels(mask)
    position = (torch.rand(4, 3) * 2 - 1).masked_fill(~mask, 0.0).requires_grad_()
    out = output(position)
    total, parts = objective(out, batch, LossWeights(), cost_bps=5.0)
    total.backward()
    assert (position.grad[~mask] == 0).all()

    junk_heads = {name: value.clone() for name, value in out.heads.items()}
    for name in ("direction", "volatility", "volume"):
        junk_heads[name][~mask] = 123.0
    junk_batch = dict(batch)
    for name in ("next_return", "volatility", "volume"):
        junk_batch[name] = batch[name].masked_fill(~mask, 9.0)
    junk_batch["direction"] = batch["direction"].masked_fill(~mask, 2)
    junk_position = position.detach().masked_fill(~mask, 0.8)  # the objective treats masked as flat
    junk_total, junk_parts = objective(Output(out.embedding, junk_position, junk_heads), junk_batch,
                                       LossWeights(), cost_bps=5.0)
    assert junk_total.item() == pytest.approx(total.item(), abs=1e-6)
    for name in parts:
        assert junk_parts[name].item() == pytest.approx(parts[name].item(), abs=1e-6)


def test_unknown_labels_contribute_nothing() -> None:
    mask = torch.ones(3, 2, dtype=torch.bool)
    batch = labels(mask)
    out = output(torch.zeros(3, 2))
    _, parts = objective(out, batch, LossWeights(), cost_bps=5.0)
    heads = {name: value.clone() for name, value in out.heads.items()}
    heads["direction"][0, 1] = torch.tensor([50.0, -50.0, 0.0])  # direction -1 there
    heads["volatility"][2, 0] = 77.0  # label_mask False there
    heads["volume"][2, 0] = -77.0
    heads["regime"][1] = torch.tensor([0.0, 90.0, -90.0])  # regime -1 there
    _, changed = objective(Output(out.embedding, out.position, heads), batch, LossWeights(), cost_bps=5.0)
    for name in parts:
        assert changed[name].item() == pytest.approx(parts[name].item(), abs=1e-6), name


def test_a_term_with_zero_weight_is_skipped() -> None:
    mask = torch.ones(3, 2, dtype=torch.bool)
    batch = labels(mask)
    del batch["direction"], batch["regime"]  # computing those terms would need these keys
    weights = replace(LossWeights(), direction=0.0, regime=0.0)
    total, parts = objective(output(torch.zeros(3, 2)), batch, weights, cost_bps=5.0)
    assert parts.keys() == {"sharpe", "volatility", "volume"}
    expected = -parts["sharpe"] + weights.volatility * parts["volatility"] + weights.volume * parts["volume"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_focal_loss_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0, math.log(2.0)]])  # softmax = 1/4, 1/4, 1/2
    target = torch.tensor([2])
    valid = torch.tensor([True])
    assert focal_loss(logits, target, valid, gamma=2.0).item() == pytest.approx(0.5**2 * math.log(2.0), rel=1e-6)
    assert focal_loss(logits, target, valid, gamma=0.0).item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_focal_loss_with_gamma_zero_is_cross_entropy() -> None:
    logits = torch.randn(5, 4, 3)
    target = torch.randint(0, 3, (5, 4))
    valid = torch.ones(5, 4, dtype=torch.bool)
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 3), target.reshape(-1))
    torch.testing.assert_close(focal_loss(logits, target, valid, gamma=0.0), want)


def test_negative_weight_is_rejected_by_name() -> None:
    mask = torch.ones(3, 2, dtype=torch.bool)
    with pytest.raises(BadInput, match="loss.volume"):
        objective(output(torch.zeros(3, 2)), labels(mask), replace(LossWeights(), volume=-1.0), cost_bps=0.0)
