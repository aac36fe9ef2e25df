"""The Sharpe multi-task objective against hand-computed values and its masking rules."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from quantray.models.blocks import Output
from quantray.config import resolve
from quantray.errors import BadInput
from quantray.train.losses import (
    LossWeights,
    focal_loss,
    max_drawdown,
    objective,
    portfolio_returns,
    batch_sharpe,
)

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
        "barrier": torch.randn(B, A, 3, generator=generator),
    }
    return Output(torch.zeros(B, A, 4), position, heads)


def labels(mask: torch.Tensor, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    B, A = mask.shape
    direction = torch.randint(0, 3, (B, A), generator=generator)
    direction[0, 1] = -1
    regime = torch.randint(0, 3, (B,), generator=generator)
    regime[1] = -1
    barrier = torch.randint(0, 3, (B, A), generator=generator)
    barrier[1, 0] = -1
    label_mask = torch.ones(B, A, dtype=torch.bool)
    label_mask[2, 0] = False
    return {
        "mask": mask,
        "next_return": torch.randn(B, A, generator=generator) * 0.02,
        "direction": direction,
        "volatility": torch.rand(B, A, generator=generator) * 0.03,
        "volume": torch.randn(B, A, generator=generator),
        "regime": regime,
        "barrier": barrier,
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


def test_batch_sharpe_is_per_period_with_population_variance() -> None:
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


NO_TERMS = LossWeights(sharpe=0.0, direction=0.0, volatility=0.0, volume=0.0, regime=0.0)


def test_new_terms_are_off_by_default() -> None:
    mask = torch.ones(3, 2, dtype=torch.bool)
    _, parts = objective(output(torch.zeros(3, 2)), labels(mask), LossWeights(), cost_bps=5.0)
    assert not parts.keys() & {"barrier", "information_ratio", "drawdown", "turnover"}


def test_information_ratio_is_against_the_equal_weight_book_of_active_assets() -> None:
    position, next_return, mask = torch.tensor(POSITION), torch.tensor(NEXT_RETURN), torch.tensor(MASK)
    # by hand: the active assets' mean return per date (asset 2 is masked on date 1)
    bench = [(0.01 + 0.02 - 0.03) / 3, (-0.01 + 0.03) / 2, (0.02 - 0.02 + 0.01) / 3]
    want = hand_sharpe([p - b for p, b in zip(HAND_RETURNS, bench)])
    weights = replace(NO_TERMS, information_ratio=0.5)
    total, parts = objective(output(position), {"mask": mask, "next_return": next_return}, weights, COST_BPS)
    assert parts.keys() == {"information_ratio"}
    assert parts["information_ratio"].item() == pytest.approx(want, rel=1e-5)
    assert total.item() == pytest.approx(-0.5 * want, rel=1e-5)


def test_holding_the_benchmark_has_no_information_ratio() -> None:
    mask = torch.ones(4, 3, dtype=torch.bool)
    batch = {"mask": mask, "next_return": torch.randn(4, 3) * 0.01}
    _, parts = objective(output(torch.ones(4, 3)), batch, replace(NO_TERMS, information_ratio=1.0), cost_bps=0.0)
    assert parts["information_ratio"].item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("returns", "want"),
    [
        ([0.01, 0.02, 0.03], 0.0),  # only gains
        ([-0.02, 0.01, -0.03], 0.04),  # the start counts as a peak: 0 -> -0.04
        ([0.05, -0.02, 0.01, -0.04, 0.03], 0.05),  # peak 0.05, trough 0.0
        ([0.01, -0.03, 0.04, 0.01, -0.01], 0.03),  # the deeper of two falls
    ],
)
def test_max_drawdown_by_hand(returns: list[float], want: float) -> None:
    assert max_drawdown(torch.tensor(returns, dtype=torch.float64)).item() == pytest.approx(want, abs=1e-12)


def test_drawdown_term_uses_the_net_returns() -> None:
    position, next_return, mask = torch.tensor(POSITION), torch.tensor(NEXT_RETURN), torch.tensor(MASK)
    weights = replace(NO_TERMS, drawdown=2.0)
    total, parts = objective(output(position), {"mask": mask, "next_return": next_return}, weights, COST_BPS)
    want = max_drawdown(torch.tensor(HAND_RETURNS, dtype=torch.float64)).item()
    assert want > 0
    assert parts["drawdown"].item() == pytest.approx(want, rel=1e-5)
    assert total.item() == pytest.approx(2.0 * want, rel=1e-5)


def test_turnover_term_by_hand() -> None:
    position, mask = torch.tensor(POSITION), torch.tensor(MASK)
    # Σ|Δpos| / n per date, pos[−1] = 0, asset 2 holds 0 while masked on date 1
    want = ((0.5 + 1.0 + 0.25) / 3 + (0.5 + 1.0 + 0.25) / 2 + (1.0 + 0.5 + 0.5) / 3) / 3
    batch = {"mask": mask, "next_return": torch.tensor(NEXT_RETURN)}
    total, parts = objective(output(position), batch, replace(NO_TERMS, turnover=3.0), cost_bps=0.0)
    assert parts.keys() == {"turnover"}
    assert parts["turnover"].item() == pytest.approx(want, rel=1e-6)
    assert total.item() == pytest.approx(3.0 * want, rel=1e-6)


def test_direction_class_weights_scale_each_class() -> None:
    logits = torch.randn(4, 5, 3)
    target = torch.randint(0, 3, (4, 5))
    valid = torch.ones(4, 5, dtype=torch.bool)
    per_entry = [focal_loss(logits[t == target], target[t == target], valid[t == target], 2.0) * (t == target).sum()
                 for t in range(3)]
    weighted = focal_loss(logits, target, valid, 2.0, class_weights=(3.0, 1.0, 0.5))
    want = (3.0 * per_entry[0] + per_entry[1] + 0.5 * per_entry[2]) / valid.sum()
    assert weighted.item() == pytest.approx(want.item(), rel=1e-5)
    equal = focal_loss(logits, target, valid, 2.0, class_weights=(1.0, 1.0, 1.0))
    assert equal.item() == pytest.approx(focal_loss(logits, target, valid, 2.0).item(), rel=1e-6)


def test_direction_term_weights_down_days_by_the_config() -> None:
    mask = torch.ones(3, 2, dtype=torch.bool)
    batch = labels(mask)
    batch["direction"] = torch.tensor([[0, 2], [0, 1], [2, 2]])
    out = output(torch.zeros(3, 2))
    weights = replace(NO_TERMS, direction=1.0)
    _, plain = objective(out, batch, weights, cost_bps=0.0)
    _, bear = objective(out, batch, replace(weights, direction_class_weights=(2.0, 1.0, 1.0)), cost_bps=0.0)
    valid = batch["label_mask"]
    down = valid & (batch["direction"] == 0)
    down_part = focal_loss(out.heads["direction"][down], batch["direction"][down], valid[down], 2.0) * down.sum()
    assert bear["direction"].item() == pytest.approx(plain["direction"].item() + down_part.item() / valid.sum().item(),
                                                     rel=1e-5)


def test_barrier_term_is_focal_over_known_labels() -> None:
    mask = torch.tensor([[True, True], [True, False], [True, True]])
    batch = labels(mask)
    out = output(torch.zeros(3, 2))
    weights = replace(NO_TERMS, barrier=0.7)
    total, parts = objective(out, batch, weights, cost_bps=0.0)
    valid = mask & batch["label_mask"] & (batch["barrier"] >= 0)
    want = focal_loss(out.heads["barrier"], batch["barrier"], valid, weights.focal_gamma)
    assert parts.keys() == {"barrier"}
    assert parts["barrier"].item() == pytest.approx(want.item(), rel=1e-6)
    assert total.item() == pytest.approx(0.7 * want.item(), rel=1e-6)
    # the unknown (barrier −1) and masked entries do not count
    heads = dict(out.heads, barrier=out.heads["barrier"].clone())
    heads["barrier"][1, 0] = torch.tensor([40.0, -40.0, 0.0])  # barrier −1 there
    heads["barrier"][1, 1] = torch.tensor([-40.0, 40.0, 0.0])  # masked there
    _, changed = objective(Output(out.embedding, out.position, heads), batch, weights, cost_bps=0.0)
    assert changed["barrier"].item() == pytest.approx(parts["barrier"].item(), rel=1e-6)


@pytest.mark.parametrize("bad", [[1.0, -1.0, 1.0], [0.0, 0.0, 0.0], [float("nan"), 1.0, 1.0]])
def test_bad_direction_class_weights_are_rejected_by_name(bad: list[float]) -> None:
    with pytest.raises(BadInput, match="loss.direction_class_weights"):
        resolve(LossWeights, {"direction_class_weights": bad}, where="space.yaml", key="loss")


def test_direction_class_weights_resolve_from_a_list() -> None:
    weights = resolve(LossWeights, {"direction_class_weights": [2, 1, 1], "barrier": 0.3}, where="x", key="loss")
    assert weights.direction_class_weights == (2.0, 1.0, 1.0) and weights.barrier == 0.3


def test_batch_sharpe_and_the_reported_annualized_sharpe_agree_up_to_their_conventions() -> None:
    """The objective's per-period Sharpe (population variance) and the annualized sample Sharpe that
    validation, early stopping and reports use measure the same thing: one parity check."""
    from quantray.evaluate.metrics import PERIODS_PER_YEAR, annualized_sharpe

    returns = np.random.default_rng(3).normal(0.001, 0.01, 250)
    per_period = float(batch_sharpe(torch.tensor(returns, dtype=torch.float64), eps=0.0))
    n = len(returns)
    # sample std = population std * sqrt(n / (n - 1))
    assert annualized_sharpe(returns) == pytest.approx(per_period * np.sqrt((n - 1) / n * PERIODS_PER_YEAR), rel=1e-9)
