"""gnn: a temporal transformer per asset, then graph attention (GATv2) over an asset graph.

The graph of each date is built causally from its own window: the trailing correlation of the
assets' returns over the last `corr_window` steps (all of them when 0). `return_feature` is the
index of the return in x's features (`models.build` looks `log_return` up by name). Each active
asset receives messages from its `top_k` active neighbours with the largest |correlation|; the
signed correlation is the edge feature. Masked assets have no edges (only the self-loop GATv2
adds), so they neither send nor receive. The batch is one disjoint graph of B·A nodes whose
edge_index is built with tensor ops, no loop over samples.

`ffn` picks the feed-forward blocks (temporal encoder, graph layers, regime head): gelu, swiglu
or kan.

torch_geometric is imported when a model is built (quantray.models imports this module only
then), not when quantray.models is imported.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv
from torch_geometric.nn.aggr import Aggregation

from quantray.models.blocks import (
    InputStem,
    Output,
    PositionHead,
    TaskHeads,
    TemporalTransformer,
    check_arg,
    check_dropout,
    check_heads,
    check_int,
    feed_forward,
    zero_masked,
)


class IndexSum(Aggregation):
    """GATv2's sum of messages [E, H, C] into their target nodes, by index_add_. Why: PyG's sum
    runs scatter_add_ with an expanded index, whose multi-threaded CPU path is tens of times
    slower than index_add_ for these sizes (and worse when the cores are shared). Same sums,
    no parameters, so checkpoints are unchanged."""

    def forward(self, x: Tensor, index: Tensor | None = None, ptr: Tensor | None = None,
                dim_size: int | None = None, dim: int = -2) -> Tensor:
        if index is None or dim_size is None:
            raise ValueError("IndexSum needs the target index and the node count")
        dim = dim % x.dim()
        shape = x.shape[:dim] + (dim_size,) + x.shape[dim + 1:]
        return x.new_zeros(shape).index_add_(dim, index, x)


def correlation_graph(returns: Tensor, mask: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """returns [B, A, S], mask [B, A] -> (edge_index [2, E] over nodes b·A + a, edge_attr [E, 1]).

    Edge (source j -> target i) for the `top_k` active j != i with the largest |corr(i, j)|,
    for every active i. A zero-variance series has correlation 0 with everything.
    """
    B, A, _ = returns.shape
    k = min(top_k, A - 1)
    if k <= 0:
        return returns.new_zeros((2, 0), dtype=torch.long), returns.new_zeros((0, 1))
    with torch.no_grad(), torch.autocast(returns.device.type, enabled=False):
        centered = returns.float() - returns.float().mean(dim=-1, keepdim=True)
        unit = centered / (centered.norm(dim=-1, keepdim=True) + 1e-8)
        corr = unit @ unit.transpose(1, 2)  # [B, A, A]
        eye = torch.eye(A, dtype=torch.bool, device=mask.device)
        eligible = mask[:, :, None] & mask[:, None, :] & ~eye
        score, neighbour = corr.abs().masked_fill(~eligible, -1.0).topk(k, dim=-1)  # [B, A, k]
        keep = score >= 0  # fewer than k active neighbours: drop the padding picks
        offset = (torch.arange(B, device=mask.device) * A)[:, None, None]
        target = (torch.arange(A, device=mask.device)[None, :, None] + offset).expand(B, A, k)
        source = neighbour + offset
        edge_index = torch.stack([source[keep], target[keep]])
        edge_attr = corr.gather(-1, neighbour)[keep][:, None]
    return edge_index, edge_attr


def dense_attention(edge_index: Tensor, alpha: Tensor, B: int, A: int, mask: Tensor) -> Tensor:
    """GATv2 edge weights alpha [E, H] -> [B, H, A, A] (row: receiving asset, column: sender)."""
    target, source = edge_index[1], edge_index[0]
    weights = alpha.new_zeros(B, A, A, alpha.shape[1])
    weights[target // A, target % A, source % A] = alpha
    return zero_masked(weights.permute(0, 3, 1, 2), mask[:, None].expand(B, alpha.shape[1], A))


class GraphAttentionModel(nn.Module):
    def __init__(
        self,
        *,
        n_assets: int,
        n_features: int,
        lookback: int,
        return_feature: int = 0,
        d_model: int = 32,
        n_heads: int = 4,
        temporal_layers: int = 1,
        graph_layers: int = 2,
        top_k: int = 3,
        corr_window: int = 0,
        ff_mult: int = 2,
        dropout: float = 0.1,
        pooling: str = "attention",
        positional: str = "sinusoidal",
        revin: bool = True,
        ffn: str = "gelu",
        market_neutral: bool = False,
    ) -> None:
        super().__init__()
        check_heads(d_model, n_heads)
        check_int("temporal_layers", temporal_layers, 0)
        check_int("graph_layers", graph_layers, 1)
        check_int("top_k", top_k, 1)
        check_int("corr_window", corr_window, 0)
        check_arg(0 <= return_feature < n_features, "return_feature", return_feature,
                  f"must index one of the {n_features} features")
        self.return_feature = return_feature
        check_arg(corr_window != 1, "corr_window", corr_window, "must be 0 (the whole window) or >= 2")
        check_int("ff_mult", ff_mult, 1)
        check_dropout(dropout)
        self.embedding_dim = d_model
        self.top_k = top_k
        self.corr_window = corr_window
        self.stem = InputStem(n_assets, n_features, d_model, revin)
        self.temporal = TemporalTransformer(
            d_model=d_model, n_heads=n_heads, n_layers=temporal_layers, ff_mult=ff_mult, dropout=dropout,
            lookback=lookback, positional=positional, pooling=pooling, ffn=ffn,
        )
        self.graph = nn.ModuleList(
            GATv2Conv(d_model, d_model // n_heads, heads=n_heads, dropout=dropout, edge_dim=1, add_self_loops=True,
                      aggr=IndexSum())
            for _ in range(graph_layers)
        )
        self.graph_norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(graph_layers))
        self.ff_norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(graph_layers))
        self.ffs = nn.ModuleList(
            feed_forward(ffn, d_model, ff_mult * d_model, d_model, dropout) for _ in range(graph_layers)
        )
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.position = PositionHead(d_model, market_neutral)
        self.heads = TaskHeads(d_model, dropout, ffn)

    def forward(self, x: Tensor, asset_ids: Tensor, mask: Tensor, return_attention: bool = False,
                news: Tensor | None = None, news_mask: Tensor | None = None) -> Output:
        """`news` / `news_mask` are accepted and not read: this family has no news channel."""
        B, A = mask.shape
        returns = zero_masked(x[..., self.return_feature], mask)  # [B, A, L]
        if self.corr_window:
            returns = returns[..., -self.corr_window:]
        edge_index, edge_attr = correlation_graph(returns, mask, self.top_k)

        h = self.stem(x, asset_ids, mask)
        nodes = self.temporal(h.flatten(0, 1))  # [B·A, D]: one disjoint graph for the batch
        attention = None
        for conv, graph_norm, ff_norm, ff in zip(self.graph, self.graph_norms, self.ff_norms, self.ffs):
            if return_attention:
                messages, (edges, alpha) = conv(graph_norm(nodes), edge_index, edge_attr, return_attention_weights=True)
                attention = dense_attention(edges, alpha, B, A, mask)
            else:
                messages = conv(graph_norm(nodes), edge_index, edge_attr)
            nodes = nodes + self.drop(messages)
            nodes = nodes + self.drop(ff(ff_norm(nodes)))
        embedding = zero_masked(self.norm(nodes).unflatten(0, (B, A)), mask)
        return Output(embedding, self.position(embedding, mask), self.heads(embedding, mask), attention)
