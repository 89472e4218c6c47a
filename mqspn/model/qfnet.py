"""Query-guided fusion net (QFNet): L layers that refine the queries, the words and the regions together.

Two layer forms (`ModelConfig.refine_states`):
- `QFNetLayer` (paper, default): the words and the queries go through one transformer layer (the queries
  cross-attend to the words, the words attend to each other), the regions attend over their own keys and
  values with the layer's words and queries prepended as a prefix (prefix-tuning, as in HVPNeT/MKGFormer),
  and the similarity-aware aggregator fuses the refined words and regions into the queries. Each layer
  hands its refined queries, words and regions (H^_Q, H^_T, H^_V) to the heads.
- `QueryOnlyLayer` (`refine_states: false`, the CPU demo's form): only the queries are updated; they read
  the words by cross-attention and the regions (with queries and words as a prefix) by a second one, and
  the heads score against the encoders' projected states.
"""
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


class QueryOnlyLayer(nn.Module):
    """One pre-norm layer that updates the queries only. q, q0 [B, u, h], text [B, n, h], regions [B, k+1, h]; *_pad are True at padding.

    `q0` are the initial multi-grained queries. As DETR does with its query embeddings, they are added to
    the attention queries of every layer: without them the u queries receive the same attended content,
    drift together layer after layer and end up predicting the same entity.
    """

    def __init__(self, hidden: int, heads: int, dropout: float, use_cross_attention: bool = True,
                 use_region_prefix: bool = True, use_aggregator: bool = True,
                 use_query_self_attention: bool = True) -> None:
        super().__init__()
        h, p = hidden, dropout
        self.use_cross = use_cross_attention
        self.use_prefix = use_region_prefix
        self.use_aggregator = use_aggregator
        self.use_self = use_query_self_attention
        if self.use_self:
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
        self.ffn = _ffn(h, p)
        self.norm_ffn = nn.LayerNorm(h)
        self.drop = nn.Dropout(p)

    def forward(self, q, q0, text, text_pad, regions, region_pad):
        if self.use_self:
            q = self_attend(self, q, q0)
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
        q = q + self.drop(self.ffn(self.norm_ffn(q)))
        return q, text, regions


def _ffn(h: int, p: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(h, 4 * h), nn.GELU(), nn.Dropout(p), nn.Linear(4 * h, h))


def self_attend(layer: nn.Module, q: torch.Tensor, q0: torch.Tensor) -> torch.Tensor:
    """The queries' pre-norm self-attention block (`layer.self_attn`, `layer.norm_self`), q, q0 [B, u, h]."""
    x = layer.norm_self(q)
    return q + layer.drop(layer.self_attn(x + q0, x + q0, x, need_weights=False)[0])


class QFNetLayer(nn.Module):
    """One pre-norm layer that refines the queries, the words and the regions (the paper's QFNet layer).

    q, q0 [B, u, h], text [B, n, h], regions [B, k+1, h]; *_pad [B, n] / [B, k+1] are True at padding.
    -> (q, text, regions), the same shapes. Keys at padding are masked in every attention, so a padded
    word or slot reaches no other state (padded rows are computed and ignored downstream).

    Switches (paper Table 3), each removing exactly its mechanism:
    - `use_cross_attention` False: the queries skip the query-text layer (they do not read the words
      there); the words are still refined by their own self-attention;
    - `use_region_prefix` False: the regions attend over themselves only, without the words' and the
      queries' prefix;
    - `use_aggregator` False: no similarity-aware fusion of words and regions into the queries.
    `use_query_self_attention` False drops the queries' self-attention block (DETR's; neither the paper
    nor the released code has one). As in `QueryOnlyLayer`, the initial queries `q0` are added to the
    queries' attention inputs.
    """

    def __init__(self, hidden: int, heads: int, dropout: float, use_cross_attention: bool = True,
                 use_region_prefix: bool = True, use_aggregator: bool = True,
                 use_query_self_attention: bool = True) -> None:
        super().__init__()
        h, p = hidden, dropout
        self.use_cross, self.use_prefix, self.use_aggregator = use_cross_attention, use_region_prefix, use_aggregator
        self.use_self = use_query_self_attention
        if self.use_self:
            self.self_attn = nn.MultiheadAttention(h, heads, dropout=p, batch_first=True)
            self.norm_self = nn.LayerNorm(h)
        # Query-text layer: one attention and one norm shared by words and queries (the words' and the
        # queries' rows attend to the same word keys, as in a BERT layer over [words; queries]).
        self.text_attn = nn.MultiheadAttention(h, heads, dropout=p, batch_first=True)
        self.norm_text = nn.LayerNorm(h)
        self.text_ffn, self.norm_text_ffn = _ffn(h, p), nn.LayerNorm(h)
        # Region layer with the prefix: regions read [words; queries; regions].
        self.region_attn = nn.MultiheadAttention(h, heads, dropout=p, batch_first=True)
        self.norm_region = nn.LayerNorm(h)
        self.norm_prefix = nn.LayerNorm(h)
        self.region_ffn, self.norm_region_ffn = _ffn(h, p), nn.LayerNorm(h)
        if self.use_aggregator:
            self.aggregator = SimilarityAggregator(h)
            self.norm_agg = nn.LayerNorm(h)
        self.ffn, self.norm_ffn = _ffn(h, p), nn.LayerNorm(h)
        self.drop = nn.Dropout(p)

    def forward(self, q, q0, text, text_pad, regions, region_pad):
        n = text.shape[1]
        if self.use_self:
            q = self_attend(self, q, q0)
        words = self.norm_text(text)
        rows = torch.cat([words, self.norm_text(q) + q0], 1) if self.use_cross else words
        attended = self.drop(self.text_attn(rows, words, words, key_padding_mask=text_pad, need_weights=False)[0])
        text = text + attended[:, :n]
        if self.use_cross:
            q = q + attended[:, n:]
        text = text + self.drop(self.text_ffn(self.norm_text_ffn(text)))
        x = self.norm_region(regions)
        if self.use_prefix:
            prefix = self.norm_prefix(torch.cat([text, q], 1))
            memory = torch.cat([prefix, x], 1)
            pad = torch.cat([text_pad, torch.zeros_like(q[..., 0], dtype=torch.bool), region_pad], 1)
        else:
            memory, pad = x, region_pad
        regions = regions + self.drop(self.region_attn(x, memory, memory, key_padding_mask=pad, need_weights=False)[0])
        regions = regions + self.drop(self.region_ffn(self.norm_region_ffn(regions)))
        if self.use_aggregator:
            x = self.norm_agg(q)
            q = q + self.drop(self.aggregator(x + q0, text, text_pad, regions, region_pad))
        q = q + self.drop(self.ffn(self.norm_ffn(q)))
        return q, text, regions


class QFNet(nn.Module):
    """forward(q0, text, text_pad, regions, region_pad) -> one (queries [B, u, h], words [B, n, h],
    regions [B, k+1, h]) triple per layer, the states that layer's heads read.

    `refine_states` picks the layer form (`QFNetLayer`, or `QueryOnlyLayer`, whose words and regions are
    the inputs unchanged); `layer_options` are the layers' switches (the Table-3 ablations). Every state a
    layer refines passes through one final LayerNorm per kind, shared by the layers (pre-norm stack).
    """

    def __init__(self, num_layers: int, hidden: int, heads: int, dropout: float, refine_states: bool = True,
                 **layer_options: bool) -> None:
        super().__init__()
        layer = QFNetLayer if refine_states else QueryOnlyLayer
        self.layers = nn.ModuleList(layer(hidden, heads, dropout, **layer_options) for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden)
        self.refine_states = refine_states
        if refine_states:
            self.norm_text = nn.LayerNorm(hidden)
            self.norm_regions = nn.LayerNorm(hidden)

    def forward(self, q0, text, text_pad, regions, region_pad) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        outputs = []
        q, t, r = q0, text, regions
        for layer in self.layers:
            q, t, r = layer(q, q0, t, text_pad, r, region_pad)
            if self.refine_states:
                outputs.append((self.norm(q), self.norm_text(t), self.norm_regions(r)))
            else:
                outputs.append((self.norm(q), t, r))
        return outputs
