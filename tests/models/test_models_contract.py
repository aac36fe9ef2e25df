"""The model contract: build(), shapes and ranges of every family's Output."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from model_cases import MIXING, OPTION_CASES, A, B, build_small, random_inputs

from quantray import models


def test_families_are_the_documented_six() -> None:
    assert models.FAMILIES == ("transformer", "gnn", "multitask", "hybrid", "cnn_lstm", "linear")


def test_every_family_honours_the_output_contract(family: str) -> None:
    model = build_small(family).eval()
    x, asset_ids, mask = random_inputs()
    with torch.no_grad():
        out = model(x, asset_ids, mask)
    D = model.embedding_dim
    assert isinstance(D, int) and D > 0
    assert out.embedding.shape == (B, A, D)
    assert out.position.shape == (B, A)
    assert out.position.abs().max() <= 1.0
    assert out.heads["direction"].shape == (B, A, 3)
    assert out.heads["volatility"].shape == (B, A)
    assert out.heads["volume"].shape == (B, A)
    assert out.heads["regime"].shape == (B, 3)
    assert out.heads["barrier"].shape == (B, A, 3)
    assert out.attention is None and out.lead_lag is None
    for tensor in (out.embedding, out.position, *out.heads.values()):
        assert torch.isfinite(tensor).all()


@pytest.mark.parametrize(("family", "arch"), OPTION_CASES, ids=[f"{f}-{'-'.join(a)}" for f, a in OPTION_CASES])
def test_non_default_options_honour_the_contract(family: str, arch: dict) -> None:
    model = build_small(family, **arch).eval()
    x, asset_ids, mask = random_inputs()
    with torch.no_grad():
        out = model(x, asset_ids, mask)
    assert out.embedding.shape == (B, A, model.embedding_dim)
    assert out.position.shape == (B, A) and out.position.abs().max() <= 1.0
    assert out.heads["regime"].shape == (B, 3)
    assert out.heads["direction"].shape == out.heads["barrier"].shape == (B, A, 3)
    assert out.attention is None and out.lead_lag is None
    for tensor in (out.embedding, out.position, *out.heads.values()):
        assert torch.isfinite(tensor).all()


@pytest.mark.parametrize("family", MIXING)
def test_attention_weights_on_request(family: str) -> None:
    model = build_small(family).eval()
    x, asset_ids, mask = random_inputs()
    with torch.no_grad():
        plain = model(x, asset_ids, mask)
        out = model(x, asset_ids, mask, return_attention=True)
    assert out.attention is not None and out.attention.shape[0] == B and out.attention.shape[2:] == (A, A)
    # a row is the receiving asset: active rows are distributions over active assets only
    rows = out.attention.sum(dim=-1)
    active = mask[:, None, :].expand_as(rows)
    torch.testing.assert_close(rows[active], torch.ones_like(rows[active]))
    assert (rows[~active] == 0).all()
    senders = out.attention.sum(dim=2)  # [B, H, A]: weight each asset sent
    assert (senders[~active] == 0).all()
    # asking for the weights does not change the outputs
    torch.testing.assert_close(out.position, plain.position, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.embedding, plain.embedding, atol=1e-5, rtol=1e-5)


def test_unknown_architecture_argument_is_named() -> None:
    with pytest.raises((TypeError, ValueError), match="unknown architecture argument 'foo' for family 'gnn'"):
        models.build("gnn", n_assets=3, n_features=2, lookback=8, foo=1)


def test_unknown_family_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown model family 'lstm'.*transformer, gnn, multitask, hybrid, cnn_lstm, linear"):
        models.build("lstm", n_assets=3, n_features=2, lookback=8)


@pytest.mark.parametrize(
    ("family", "arch", "named"),
    [
        ("transformer", {"d_model": 30, "n_heads": 4}, "d_model"),
        ("transformer", {"pooling": "max"}, "pooling"),
        ("gnn", {"top_k": 0}, "top_k"),
        ("multitask", {"dropout": 1.5}, "dropout"),
        ("multitask", {"moe_experts": 1.5}, "moe_experts"),
        ("hybrid", {"positional": "rotary"}, "positional"),
        ("cnn_lstm", {"revin": "yes"}, "revin"),
        ("linear", {"bars": 0}, "bars"),
        ("linear", {"bars": 9}, "bars"),  # lookback is 8
        ("transformer", {"ffn": "relu"}, "ffn"),
        ("gnn", {"ffn": "mlp"}, "ffn"),
        ("hybrid", {"ffn": "KAN"}, "ffn"),
        ("multitask", {"ffn": None}, "ffn"),
        ("transformer", {"lead_lag": -1}, "lead_lag"),
        ("transformer", {"lead_lag": 8}, "lead_lag"),  # lookback is 8
        ("transformer", {"groups": (0, 1)}, "groups"),  # 3 assets
        ("transformer", {"groups": (0, -1, 1)}, "groups"),
        ("transformer", {"groups": "abc"}, "groups"),
        ("transformer", {"groups": (0, 1, 1), "cross_layers": 0}, "groups"),
        ("gnn", {"market_neutral": "yes"}, "market_neutral"),
        ("hybrid", {"market_neutral": 1}, "market_neutral"),
    ],
)
def test_bad_architecture_value_is_named(family: str, arch: dict, named: str) -> None:
    with pytest.raises(ValueError, match=f"'{named}'"):
        models.build(family, n_assets=3, n_features=2, lookback=8, **arch)


def test_defaults_list_every_architecture_argument(family: str) -> None:
    arch = models.defaults(family)
    assert "n_assets" not in arch
    model = models.build(family, n_assets=3, n_features=2, lookback=8, **arch)
    # linear's embedding is its input: the last `bars` bars of the 2 features
    assert model.embedding_dim == (arch["bars"] * 2 if family == "linear" else arch["d_model"])


def test_import_is_light_and_torch_geometric_is_lazy() -> None:
    script = (
        "import sys\n"
        "import quantray.models as m\n"
        "assert 'torch' not in sys.modules, 'quantray.models imported torch'\n"
        "m.build('transformer', n_assets=2, n_features=2, lookback=4)\n"
        "assert 'torch_geometric' not in sys.modules, 'transformer imported torch_geometric'\n"
        "m.build('gnn', n_assets=2, n_features=2, lookback=4)\n"
        "assert 'torch_geometric' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
