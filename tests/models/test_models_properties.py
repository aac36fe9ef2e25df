"""Behaviour every family must have: asset permutation equivariance, masking, gradient flow."""

from __future__ import annotations

import pytest
import torch
from model_cases import ALL_TERMS, CASE_IDS, CASES, MIXING, A, build_small, random_inputs, random_labels

from quantray.models.blocks import Output
from quantray.models.gnn import correlation_graph
from quantray.train.losses import objective

PER_ASSET_HEADS = ("direction", "volatility", "volume")


def run(model: torch.nn.Module, x: torch.Tensor, asset_ids: torch.Tensor, mask: torch.Tensor) -> Output:
    with torch.no_grad():
        return model(x, asset_ids, mask, return_attention=True)


def assert_outputs_close(got: Output, want: Output) -> None:
    torch.testing.assert_close(got.embedding, want.embedding, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.position, want.position, atol=1e-5, rtol=1e-5)
    assert got.heads.keys() == want.heads.keys()
    for name in got.heads:
        torch.testing.assert_close(got.heads[name], want.heads[name], atol=1e-5, rtol=1e-5)
    for got_weights, want_weights in ((got.attention, want.attention), (got.lead_lag, want.lead_lag)):
        assert (got_weights is None) == (want_weights is None)
        if got_weights is not None:
            torch.testing.assert_close(got_weights, want_weights, atol=1e-5, rtol=1e-5)


def permute_assets(out: Output, perm: torch.Tensor) -> Output:
    heads = {name: value if name == "regime" else value[:, perm] for name, value in out.heads.items()}
    attention = None if out.attention is None else out.attention[:, :, perm][:, :, :, perm]
    lead_lag = None if out.lead_lag is None else out.lead_lag[:, :, perm][:, :, :, perm]
    return Output(out.embedding[:, perm], out.position[:, perm], heads, attention, lead_lag)


def test_permuting_assets_permutes_the_outputs(case: tuple[str, dict]) -> None:
    family, arch = case
    model = build_small(family, **arch).eval()
    x, asset_ids, mask = random_inputs(seed=3)
    perm = torch.tensor([3, 0, 4, 2, 1])
    got = run(model, x[:, perm], asset_ids[perm], mask[:, perm])
    want = permute_assets(run(model, x, asset_ids, mask), perm)
    assert_outputs_close(got, want)
    if family in MIXING and arch.get("cross_layers", 1):
        assert got.attention is not None


def test_mixing_families_do_mix_assets() -> None:
    """The counterpart of the masking test: an active asset's input does reach the others."""
    for family in MIXING:
        model = build_small(family).eval()
        x, asset_ids, _ = random_inputs(seed=4)
        mask = torch.ones(x.shape[:2], dtype=torch.bool)
        changed = x.clone()
        changed[:, 1] = torch.randn_like(changed[:, 1])
        before, after = run(model, x, asset_ids, mask), run(model, changed, asset_ids, mask)
        others = [0, 2, 3, 4]
        assert not torch.allclose(before.embedding[:, others], after.embedding[:, others], atol=1e-4), family


@pytest.mark.parametrize("junk", ["random", "nan"])
def test_masked_asset_does_not_change_the_others(case: tuple[str, dict], junk: str) -> None:
    family, arch = case
    model = build_small(family, **arch).eval()
    x, asset_ids, mask = random_inputs(seed=5)
    mask[:, 2] = False
    mask[0, 3] = False
    changed = x.clone()
    changed[:, 2] = torch.randn_like(changed[:, 2]) * 1e3
    changed[0, 3] = float("nan") if junk == "nan" else -1e3
    before, after = run(model, x, asset_ids, mask), run(model, changed, asset_ids, mask)
    assert_outputs_close(after, before)
    for out in (before, after):
        assert (out.embedding[~mask] == 0).all()
        assert (out.position[~mask] == 0).all()
        for name in PER_ASSET_HEADS:
            assert (out.heads[name][~mask] == 0).all()
        assert torch.isfinite(out.heads["regime"]).all()


def test_regime_pools_over_unmasked_assets_only(case: tuple[str, dict]) -> None:
    """Dropping the masked assets from the universe altogether gives the same regime logits."""
    family, arch = case
    model = build_small(family, **arch).eval()
    x, asset_ids, mask = random_inputs(seed=6)
    mask[:] = True
    mask[:, 4] = False
    full = run(model, x, asset_ids, mask)
    kept = run(model, x[:, :4], asset_ids[:4], mask[:, :4])
    torch.testing.assert_close(full.heads["regime"], kept.heads["regime"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full.position[:, :4], kept.position, atol=1e-5, rtol=1e-5)


def test_a_date_with_every_asset_masked_gives_zeros(case: tuple[str, dict]) -> None:
    family, arch = case
    model = build_small(family, **arch).eval()
    x, asset_ids, mask = random_inputs(seed=7)
    mask[1] = False
    out = run(model, x, asset_ids, mask)
    assert (out.position[1] == 0).all() and (out.embedding[1] == 0).all()
    assert torch.isfinite(out.heads["regime"]).all()


@pytest.mark.parametrize(("family", "arch"), CASES, ids=CASE_IDS)
def test_gradients_reach_every_parameter(family: str, arch: dict) -> None:
    model = build_small(family, **arch).train()
    x, asset_ids, mask = random_inputs(seed=8)
    loss, _ = objective(model(x, asset_ids, mask), random_labels(mask), ALL_TERMS, cost_bps=5.0)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"
        assert parameter.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_correlation_graph_links_each_active_asset_to_its_top_k() -> None:
    t = torch.linspace(0, 6.28, 20)
    base = torch.sin(t)
    returns = torch.stack([base, base + 0.01 * torch.cos(3 * t), -base, torch.cos(t), base])[None]  # [1, 5, 20]
    mask = torch.tensor([[True, True, True, True, False]])
    edge_index, edge_attr = correlation_graph(returns, mask, top_k=2)
    edges = {(int(s), int(t)) for s, t in edge_index.T}
    # asset 0's strongest |corr| partners are 1 (+) and 2 (−); masked asset 4 (a copy of 0) is excluded
    assert {(1, 0), (2, 0)} <= edges
    assert all(4 not in edge for edge in edges)
    assert all(s != t for s, t in edges)
    assert len(edges) == 4 * 2
    weight = {edge: float(w) for edge, w in zip(((int(s), int(t)) for s, t in edge_index.T), edge_attr[:, 0])}
    assert weight[(2, 0)] < -0.99 and weight[(1, 0)] > 0.99


def test_correlation_graph_is_block_diagonal_over_the_batch() -> None:
    returns = torch.randn(3, A, 10)
    mask = torch.ones(3, A, dtype=torch.bool)
    edge_index, _ = correlation_graph(returns, mask, top_k=2)
    assert edge_index.shape == (2, 3 * A * 2)
    assert (edge_index[0] // A == edge_index[1] // A).all()
