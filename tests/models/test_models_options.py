"""Behaviour of the architecture options from the seed systems: the feed-forward kind (gelu,
swiglu, kan), lead-lag attention, hierarchical (grouped) cross-asset attention and the market-neutral book."""

from __future__ import annotations

import pytest
import torch
from model_cases import A, B, build_small, random_inputs

from quantray import models
from quantray.models.blocks import KANLayer, feed_forward


def n_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def run(model: torch.nn.Module, x: torch.Tensor, asset_ids: torch.Tensor, mask: torch.Tensor):
    with torch.no_grad():
        return model(x, asset_ids, mask, return_attention=True)


@pytest.mark.parametrize("kind", ["swiglu", "kan"])
@pytest.mark.parametrize(("d_in", "d_hidden", "d_out"), [(32, 64, 32), (64, 256, 64), (32, 32, 3)])
def test_feed_forward_kinds_have_about_the_gelu_parameter_count(kind: str, d_in: int, d_hidden: int, d_out: int) -> None:
    gelu = n_parameters(feed_forward("gelu", d_in, d_hidden, d_out, 0.0))
    other = n_parameters(feed_forward(kind, d_in, d_hidden, d_out, 0.0))
    assert abs(other - gelu) / gelu < 0.15, (kind, other, gelu)
    assert feed_forward(kind, d_in, d_hidden, d_out, 0.0)(torch.randn(7, d_in)).shape == (7, d_out)


@pytest.mark.parametrize("family", ["transformer", "gnn", "multitask", "hybrid"])
@pytest.mark.parametrize("kind", ["swiglu", "kan"])
def test_ffn_option_keeps_the_model_size(family: str, kind: str) -> None:
    shape = {"n_assets": 8, "n_features": 16, "lookback": 64}
    gelu = n_parameters(models.build(family, **shape))
    other = n_parameters(models.build(family, **shape, ffn=kind))
    assert abs(other - gelu) / gelu < 0.05, (family, kind, other, gelu)


def test_gelu_is_the_default_and_unchanged() -> None:
    assert all(models.defaults(f)["ffn"] == "gelu" for f in ("transformer", "gnn", "multitask", "hybrid"))
    default, explicit = build_small("transformer"), build_small("transformer", ffn="gelu")
    assert isinstance(default.temporal.encoder.layers[0], torch.nn.TransformerEncoderLayer)
    x, asset_ids, mask = random_inputs()
    torch.testing.assert_close(run(default.eval(), x, asset_ids, mask).position,
                               run(explicit.eval(), x, asset_ids, mask).position)


def test_kan_layer_learns_a_nonlinear_function() -> None:
    """One KAN layer fits y = sin(3x) on [-1, 1] far better than its linear (SiLU-free) best fit."""
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 256)[:, None]
    y = torch.sin(3 * x)
    layer = torch.nn.Sequential(torch.nn.Linear(1, 4), KANLayer(4, 1))
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for _ in range(400):
        loss = torch.nn.functional.mse_loss(layer(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    linear_fit = torch.linalg.lstsq(torch.cat([x, torch.ones_like(x)], 1), y).solution
    linear_error = torch.nn.functional.mse_loss(torch.cat([x, torch.ones_like(x)], 1) @ linear_fit, y)
    assert loss.item() < 0.1 * linear_error.item()


def test_lead_lag_weights_are_a_distribution_over_active_senders_and_lags() -> None:
    model = build_small("transformer", lead_lag=3).eval()
    x, asset_ids, mask = random_inputs(seed=2)
    out = run(model, x, asset_ids, mask)
    assert out.lead_lag is not None and out.lead_lag.shape == (B, 2, A, A, 4)
    rows = out.lead_lag.sum(dim=(-1, -2))  # [B, H, A]
    active = mask[:, None, :].expand_as(rows)
    torch.testing.assert_close(rows[active], torch.ones_like(rows[active]))
    assert (rows[~active] == 0).all()
    sent = out.lead_lag.sum(dim=(2, 4))  # [B, H, A]: weight each asset sent, over all lags
    assert (sent[~active] == 0).all()
    plain = model(x, asset_ids, mask)
    assert plain.lead_lag is None
    torch.testing.assert_close(plain.position, out.position, atol=1e-5, rtol=1e-5)


def test_lead_lag_on_a_window_shorter_than_its_lags_gives_them_no_weight() -> None:
    model = build_small("transformer", lead_lag=5).eval()
    x, asset_ids, mask = random_inputs()
    out = run(model, x[:, :, -3:], asset_ids, mask)  # 3 steps: lags 0..2 exist
    assert out.lead_lag.shape[-1] == 6
    assert (out.lead_lag[..., 3:] == 0).all() and out.lead_lag[..., :3].sum() > 0


def test_lead_lag_mixes_assets_without_cross_layers() -> None:
    """Lead-lag attention alone carries one asset's past to another; without it nothing does."""
    x, asset_ids, _ = random_inputs(seed=4)
    mask = torch.ones(x.shape[:2], dtype=torch.bool)
    changed = x.clone()
    changed[:, 1, :-2] = torch.randn_like(changed[:, 1, :-2])  # only asset 1's older steps
    for lead_lag, mixes in ((2, True), (0, False)):
        model = build_small("transformer", lead_lag=lead_lag, cross_layers=0).eval()
        before, after = run(model, x, asset_ids, mask), run(model, changed, asset_ids, mask)
        moved = not torch.allclose(before.embedding[:, [0, 2, 3, 4]], after.embedding[:, [0, 2, 3, 4]], atol=1e-5)
        assert moved == mixes, lead_lag


def test_grouped_attention_stays_inside_each_group() -> None:
    groups = (0, 1, 0, 1, 1)
    model = build_small("transformer", groups=groups).eval()
    x, asset_ids, mask = random_inputs(seed=11)
    out = run(model, x, asset_ids, mask)
    group = torch.tensor(groups)[asset_ids]  # groups are indexed by asset id
    across = group[:, None] != group[None, :]
    assert (out.attention[:, :, across] == 0).all()
    rows = out.attention.sum(dim=-1)
    active = mask[:, None, :].expand_as(rows)
    torch.testing.assert_close(rows[active], torch.ones_like(rows[active]))


def test_groups_exchange_information_through_their_summaries() -> None:
    """Changing an asset of group 0 reaches group 1 (through the group summaries); the same
    model with the across-group step removed keeps group 1 untouched."""
    groups = (0, 0, 1, 1, 1)
    model = build_small("transformer", groups=groups).eval()
    x, _, _ = random_inputs(seed=12)
    asset_ids = torch.arange(A)
    mask = torch.ones(x.shape[:2], dtype=torch.bool)
    changed = x.clone()
    changed[:, 0] = torch.randn_like(changed[:, 0])
    before, after = run(model, x, asset_ids, mask), run(model, changed, asset_ids, mask)
    assert not torch.allclose(before.embedding[:, 2:], after.embedding[:, 2:], atol=1e-4)
    for layer in model.cross:
        layer.group_out.weight.data.zero_()
        layer.group_out.bias.data.zero_()
    before, after = run(model, x, asset_ids, mask), run(model, changed, asset_ids, mask)
    torch.testing.assert_close(before.embedding[:, 2:], after.embedding[:, 2:])


@pytest.mark.parametrize("family", ["transformer", "gnn", "multitask", "hybrid", "cnn_lstm", "linear"])
def test_market_neutral_books_are_long_as_much_as_short(family: str) -> None:
    """On every date the active assets' positions sum to 0, masked assets hold 0, and a model that
    would otherwise hold a net position does so no more."""
    x, asset_ids, mask = random_inputs()
    torch.manual_seed(0)
    neutral = build_small(family, market_neutral=True).eval()
    torch.manual_seed(0)
    plain = build_small(family).eval()
    with torch.no_grad():
        book, free = neutral(x, asset_ids, mask).position, plain(x, asset_ids, mask).position
    assert torch.allclose(book.sum(dim=1), torch.zeros(B), atol=1e-6)
    assert (book[~mask] == 0).all() and book.abs().max() <= 1.0
    assert free.sum(dim=1).abs().max() > 1e-3  # the same weights without the option do hold a net position
    # the same weights, demeaned over the active assets and halved
    mean = free.sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True)
    assert torch.allclose(book, torch.where(mask, (free - mean) / 2, 0.0), atol=1e-6)
