"""The faster forward paths compute what the torch / PyG modules they stand in for compute.

`multihead_attention` and `torch_encoder_layer` reuse nn.MultiheadAttention's and
nn.TransformerEncoderLayer's parameters; `IndexSum` replaces PyG's sum aggregation in GATv2.
Checked against the modules' own forward, in eval mode and (same seed, so the same dropout
draws) in training mode.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantray.models.blocks import multihead_attention, torch_encoder_layer


def encoder_layer(dropout: float) -> nn.TransformerEncoderLayer:
    torch.manual_seed(0)
    return nn.TransformerEncoderLayer(16, 4, 32, dropout, activation="gelu", batch_first=True, norm_first=True)


@pytest.mark.parametrize("training", [False, True])
def test_encoder_layer_matches_torch(training: bool) -> None:
    layer = encoder_layer(0.2).train(training)
    layer.dropout1.p = 0.0  # torch draws it over a transposed view: other elements, same distribution
    h = torch.randn(6, 10, 16)
    torch.manual_seed(1)
    expected = layer(h)
    torch.manual_seed(1)
    actual = torch_encoder_layer(layer, h)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_encoder_layer_gradients_match_torch() -> None:
    layer = encoder_layer(0.0).train()
    h = torch.randn(4, 7, 16)
    expected = torch.autograd.grad(layer(h).square().sum(), list(layer.parameters()))
    actual = torch.autograd.grad(torch_encoder_layer(layer, h).square().sum(), list(layer.parameters()))
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_context_attention_matches_torch(training: bool) -> None:
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(16, 4, dropout=0.3, batch_first=True).train(training)
    query, context = torch.randn(5, 9, 16), torch.randn(5, 3, 16)
    torch.manual_seed(2)
    expected = attn(query, context, context, need_weights=False)[0]
    torch.manual_seed(2)
    torch.testing.assert_close(multihead_attention(attn, query, context), expected, rtol=1e-5, atol=1e-5)


def test_index_sum_matches_pyg_sum() -> None:
    from torch_geometric.nn import GATv2Conv

    from quantray.models.gnn import IndexSum

    torch.manual_seed(0)
    reference = GATv2Conv(16, 4, heads=4, edge_dim=1, add_self_loops=True).eval()
    fast = GATv2Conv(16, 4, heads=4, edge_dim=1, add_self_loops=True, aggr=IndexSum()).eval()
    fast.load_state_dict(reference.state_dict())  # same keys: the aggregation holds no parameters
    nodes = torch.randn(20, 16)
    edge_index = torch.randint(0, 20, (2, 60))
    edge_attr = torch.randn(60, 1)
    torch.testing.assert_close(fast(nodes, edge_index, edge_attr), reference(nodes, edge_index, edge_attr))
