"""Fusion on the validation block: greedy selection finds a known best mix; the mean is the members'
average; the trained heads beat untrained ones; members stay frozen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from quantray.data.pipeline import Prepared
from quantray.ensemble.fusion import (
    FusionConfig,
    apply_head,
    block_labels,
    build_head,
    fit_fusion,
    greedy_weights,
    member_groups,
    run_members,
    train_head,
)
from quantray.errors import BadInput
from quantray.evaluate.metrics import net_returns, annualized_sharpe
from quantray.train.checkpoint import load_checkpoint


def test_greedy_selection_recovers_the_best_combination() -> None:
    # returns = signal a + signal b + noise; members A and B each know one signal, C knows nothing.
    rng = np.random.default_rng(0)
    n_dates, n_assets = 2000, 3
    a, b = rng.normal(0, 0.01, (2, n_dates, n_assets))
    returns = a + b + rng.normal(0, 0.01, (n_dates, n_assets))
    positions = np.stack([np.tanh(a / 0.01), np.tanh(b / 0.01), np.tanh(rng.normal(size=(n_dates, n_assets)))])
    mask = np.ones((n_dates, n_assets), dtype=bool)

    weights = greedy_weights(positions, returns, mask, cost_bps=0.0, rounds=20)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[2] == 0.0  # the uninformed member is never picked
    assert weights[0] == pytest.approx(0.5, abs=0.15) and weights[1] == pytest.approx(0.5, abs=0.15)
    mixed = annualized_sharpe(net_returns(np.tensordot(weights, positions, axes=1), returns, mask))
    single = max(annualized_sharpe(net_returns(p, returns, mask)) for p in positions)
    assert mixed > 1.2 * single  # two independent signals: about sqrt(2) times one


def test_greedy_with_costs_prefers_the_cheaper_of_two_equal_signals() -> None:
    rng = np.random.default_rng(1)
    signal = rng.normal(0, 0.01, (1500, 2))
    returns = signal + rng.normal(0, 0.01, (1500, 2))
    calm = np.tanh(signal / 0.01)
    jittery = calm + rng.choice([-0.3, 0.3], size=calm.shape)  # same signal, far more turnover
    weights = greedy_weights(np.stack([jittery, calm]), returns, np.ones((1500, 2), bool), cost_bps=50.0)
    assert weights[1] > weights[0]


@pytest.fixture(scope="module")
def members(member_dirs: list[Path]):
    return [load_checkpoint(path) for path in member_dirs]


def val_sharpe(positions: np.ndarray, labels: dict[str, np.ndarray], cost_bps: float) -> float:
    return annualized_sharpe(net_returns(positions, labels["next_return"], labels["mask"], cost_bps))


def test_greedy_fusion_of_real_members_is_at_least_the_best_member(prepared: Prepared, members) -> None:
    val = prepared.windows("val")
    labels = block_labels(val)
    model = fit_fusion(members, val, "greedy", cost_bps=prepared.config.cost_bps)
    assert model.weights.sum() == pytest.approx(1.0) and model.head is None
    best_member = max(m.metrics["val_sharpe"] for m in members)
    assert val_sharpe(model.run(val).positions, labels, prepared.config.cost_bps) >= best_member - 1e-9


def test_mean_fusion_trades_the_average_of_its_members_positions(prepared: Prepared, members) -> None:
    val = prepared.windows("val")
    model = fit_fusion(members, val, "mean", cost_bps=prepared.config.cost_bps)
    assert model.head is None and model.weights.tolist() == [1.0 / len(members)] * len(members)
    average = run_members(members, val, embeddings=False).positions.mean(axis=0) * block_labels(val)["mask"]
    np.testing.assert_allclose(model.run(val).positions, average, atol=1e-6)
    outputs = run_members(members, val, embeddings=True)
    fused = model.run(val, embeddings=True).embeddings  # each member's embedding, scaled by 1/M, concatenated
    np.testing.assert_allclose(fused[..., :outputs.embeddings[0].shape[-1]],
                               outputs.embeddings[0] / len(members) * block_labels(val)["mask"][..., None], atol=1e-6)


def groups_for(method: str, members) -> tuple[int, ...] | None:
    return member_groups(members, "model.family") if method == "hierarchical" else None


HEAD_METHODS = ["concat", "attention", "hierarchical"]


@pytest.mark.parametrize("method", HEAD_METHODS)
def test_an_untrained_head_is_the_members_consensus(prepared: Prepared, members, method) -> None:
    val = prepared.windows("val")
    outputs = run_members(members, val, embeddings=True)
    head = build_head(method, [e.shape[-1] for e in outputs.embeddings], FusionConfig(), groups_for(method, members))
    mask = block_labels(val)["mask"]
    logits = np.arctanh(np.clip(outputs.positions, -0.995, 0.995)).mean(axis=0)
    np.testing.assert_allclose(apply_head(head, outputs, mask, embeddings=False).positions,
                               np.tanh(logits) * mask, atol=1e-5)


@pytest.mark.parametrize("method", HEAD_METHODS)
def test_training_improves_on_the_consensus_and_members_stay_frozen(prepared: Prepared, members, method) -> None:
    val = prepared.windows("val")
    labels = block_labels(val)
    cost = prepared.config.cost_bps
    before = [{k: v.clone() for k, v in m.model.state_dict().items()} for m in members]
    config = FusionConfig(epochs=30, seed=3, holdout=0.0)  # fit on the whole block: no early stop

    model = fit_fusion(members, val, method, cost_bps=cost, config=config)

    outputs = run_members(members, val, embeddings=True)
    untrained = build_head(method, [e.shape[-1] for e in outputs.embeddings], config, groups_for(method, members))
    consensus_sharpe = val_sharpe(apply_head(untrained, outputs, labels["mask"], embeddings=False).positions,
                                  labels, cost)
    out = model.run(val, embeddings=True)
    assert val_sharpe(out.positions, labels, cost) > consensus_sharpe + 0.5
    assert np.abs(out.positions).max() <= 1.0 and (out.positions[~labels["mask"]] == 0).all()
    assert out.embeddings.shape == (len(val), prepared.n_assets, config.hidden)
    assert model.weights.shape == (len(members),) and model.weights.sum() == pytest.approx(1.0)
    for member, state in zip(members, before):
        assert not member.model.training
        assert not any(p.requires_grad for p in member.model.parameters())
        for key, value in member.model.state_dict().items():
            torch.testing.assert_close(value, state[key])


def test_early_stopping_keeps_the_consensus_when_training_only_hurts_the_held_out_dates(prepared: Prepared,
                                                                                         members) -> None:
    val = prepared.windows("val")
    mask = block_labels(val)["mask"]
    outputs = run_members(members, val, embeddings=True)
    config = FusionConfig(epochs=5, seed=0)
    head = build_head("concat", [e.shape[-1] for e in outputs.embeddings], config)
    consensus = apply_head(head, outputs, mask, embeddings=False).positions
    # Returns that reward the consensus on the held-out tail and punish it on the fit dates:
    # training moves away from the consensus, which only loses on the tail.
    rng = np.random.default_rng(0)
    returns = 0.01 * consensus + 1e-4 * rng.standard_normal(consensus.shape)
    n_fit = int(round(len(returns) * (1 - config.holdout)))
    returns[:n_fit] *= -1
    history = train_head(head, outputs, returns, mask, cost_bps=0.0, config=config)
    assert len(history) == config.epochs + 1 and int(np.argmax(history)) == 0
    assert history[-1] < history[0]
    np.testing.assert_allclose(apply_head(head, outputs, mask, embeddings=False).positions, consensus)


def test_fitting_is_seeded_and_leaves_the_global_rng_alone(prepared: Prepared, members) -> None:
    val = prepared.windows("val")
    torch.manual_seed(123)
    expected_draw = torch.rand(1)
    torch.manual_seed(123)
    first = fit_fusion(members, val, "attention", cost_bps=5.0, config=FusionConfig(epochs=3)).run(val).positions
    assert torch.rand(1) == expected_draw
    second = fit_fusion(members, val, "attention", cost_bps=5.0, config=FusionConfig(epochs=3)).run(val).positions
    np.testing.assert_array_equal(first, second)


def test_hierarchical_fuses_within_groups_then_across_them(prepared: Prepared, members) -> None:
    # members: transformer, cnn_lstm, transformer (tests/ensemble/ensemble_cases.py)
    assert member_groups(members, "model.family") == (0, 1, 0)
    assert member_groups(members, "model.arch.pooling") == (0, 0, 1)  # unset, unset, "last"
    with pytest.raises(BadInput, match="fusion.grouping"):
        member_groups(members, "model.colour")
    val = prepared.windows("val")
    mask = block_labels(val)["mask"]
    model = fit_fusion(members, val, "hierarchical", cost_bps=5.0, config=FusionConfig(epochs=3))
    out = model.run(val)
    weights = out.member_weights[mask]  # [N, M]
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)
    # the cnn_lstm is alone in its group: its weight is its group's, so the two transformers share the rest
    assert ((weights[:, 0] > 0) & (weights[:, 2] > 0)).all()
    assert model.weights.shape == (3,) and model.weights.sum() == pytest.approx(1.0)
    # one group per member is also a valid hierarchy; a group index left unused is not
    build_head("hierarchical", [8, 8, 12], FusionConfig(), (0, 1, 2))
    with pytest.raises(ValueError, match="each index used"):
        build_head("hierarchical", [8, 8, 12], FusionConfig(), (0, 2, 2))
