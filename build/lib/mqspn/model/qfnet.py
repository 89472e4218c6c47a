"""Query-guided fusion net (QFNet): L layers that refine the queries against text and regions."""
from __future__ import annotations

import torch
from torch import nn


class SimilarityAggregator(nn.Module):
    """F(Q) = tanh(Q W1 + sum_phi lambda_phi sum_j alpha_j H_phi_j) W2 + b, phi in {text, regions}.

    alpha_j = softmax_j(H_phi_j . Q / sqrt(h)); the sqrt(h) scaling keeps the softmax from saturating
    at initialisation. The lambdas are a softmax over two learned logits, so they sum to 1.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(hidden, hidden, bias=False)
        self.w2 = nn.Linear(hidden, hidden)
        self.mix = nn.Parameter(torch.zeros(2))
        self.scale = hidden ** -0.5

    @staticmethod
    def _attend(q, h, pad_mask, scale):
        scores = torch.einsum("bud,bnd->bun", q, h) * scale
        scores = scores.masked_fill(pad_mask.unsqueeze(1), float("-inf"))
        return torch.einsum("bun,bnd->bud", scores.softmax(-1), h)

    def forward(self, q, text, text_pad, regions, region_pad):
        lam = self.mix.softmax(0)
        pooled = lam[0] * self._attend(q, text, text_pad, self.scale) + lam[1] * self._attend(q, regions, region_pad, self.scale)
        return self.w2(torch.tanh(self.w1(q) + pooled))


class QFNetLayer(nn.Module):
    """One pre-norm layer. q, q0 [B, u, h], text [B, n, h], regions [B, k+1, h]; *_pad are True at padding.

    `q0` are the initial multi-grained queries. As DETR does with its query embeddings, they are added to
    the attention queries of every layer: without them the u queries receive the same attended content,
    drift together layer after layer and end up predicting the same entity.
    """

    def __init__(self, hidden: int, heads: int, dropout: float, use_cross_attention: bool = True,
                 use_region_prefix: bool = True, use_aggregator: bool = True) -> None:
        super().__init__()
        h, p = hidden, dropout
        self.use_cross = use_cross_attention
        self.use_prefix = use_region_prefix
        self.use_aggregator = use_aggregator
        self.self_attn = nn.MultiheadAttention(h, heads, dropout=p, batch_first=True)
        self.norm_self = nn.LayerNorm(h)
        if self.use_cross:
            self.text_attn = nn.MultiheadAttention(h, heads, dropout=p, batch_first=True)
            self.norm_text = nn.LayerNorm(h)
        self.region_attn = nn.MultiheadAttention(h, heads, dropout=p, batch_first=True)
        self.norm_region = nn.LayerNorm(h)
        if self.use_aggregator:
            self.aggregator = SimilarityAggregator(h)
            self.norm_agg = nn.LayerNorm(h)
        self.ffn = nn.Sequential(nn.Linear(h, 4 * h), nn.GELU(), nn.Dropout(p), nn.Linear(4 * h, h))
        self.norm_ffn = nn.LayerNorm(h)
        self.drop = nn.Dropout(p)

    def forward(self, q, q0, text, text_pad, regions, region_pad):
        x = self.norm_self(q)
        q = q + self.drop(self.self_attn(x + q0, x + q0, x, need_weights=False)[0])
        if self.use_cross:
            x = self.norm_text(q)
            q = q + self.drop(self.text_attn(x + q0, text, text, key_padding_mask=text_pad, need_weights=False)[0])
        x = self.norm_region(q)
        if self.use_prefix:
            # Prefix integration: the queries and the text are prepended to the regions as extra keys and
            # values, so region attention is conditioned on what the queries already read in the text.
            memory = torch.cat([x, text, regions], 1)
            pad = torch.cat([torch.zeros_like(x[..., 0], dtype=torch.bool), text_pad, region_pad], 1)
        else:
            memory, pad = regions, region_pad
        q = q + self.drop(self.region_attn(x + q0, memory, memory, key_padding_mask=pad, need_weights=False)[0])
        if self.use_aggregator:
            x = self.norm_agg(q)
            q = q + self.drop(self.aggregator(x + q0, text, text_pad, regions, region_pad))
        return q + self.drop(self.ffn(self.norm_ffn(q)))


class QFNet(nn.Module):
    """forward(q0, text, text_pad, regions, region_pad) -> list of L query states, each [B, u, h].

    Every layer's output passes through one shared final LayerNorm before the heads (pre-norm stack).
    `layer_options` are `QFNetLayer`'s switches (the Table-3 ablations).
    """

    def __init__(self, num_layers: int, hidden: int, heads: int, dropout: float, **layer_options: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(QFNetLayer(hidden, heads, dropout, **layer_options) for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, q0, text, text_pad, regions, region_pad) -> list[torch.Tensor]:
        outputs = []
        q = q0
        for layer in self.layers:
            q = layer(q, q0, text, text_pad, regions, region_pad)
            outputs.append(self.norm(q))
        return outputs
