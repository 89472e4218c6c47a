"""Multimodal set prediction (MSP) heads, shared by every QFNet layer."""
from __future__ import annotations

import torch
from torch import nn



class PairScorer(nn.Module):
    """S = ReLU(Q W_q + X W_x); logits = S w (+ (Q U_q) . (X U_x) / sqrt(head) when `bilinear`).

    q [B, u, h], x [B, m, h] -> [B, u, m, outputs]. The additive form is the paper's. Its query-candidate
    interaction only arises through the ReLU and is learnt slowly from scratch; the optional bilinear
    term scores the match directly (`model.bilinear_scores`).
    """

    def __init__(self, hidden: int, head: int, outputs: int, bilinear: bool = False) -> None:
        super().__init__()
        self.wq = nn.Linear(hidden, head)
        self.wx = nn.Linear(hidden, head, bias=False)
        self.w = nn.Linear(head, outputs)
        if bilinear:
            self.uq = nn.Linear(hidden, head * outputs)
            self.ux = nn.Linear(hidden, head * outputs, bias=False)
        self.bilinear, self.outputs, self.scale = bilinear, outputs, head ** -0.5

    def forward(self, q, x):
        s = torch.relu(self.wq(q).unsqueeze(2) + self.wx(x).unsqueeze(1))
        logits = self.w(s)
        if self.bilinear:
            b, u, m = q.shape[0], q.shape[1], x.shape[1]
            uq = self.uq(q).view(b, u, self.outputs, -1)
            ux = self.ux(x).view(b, m, self.outputs, -1)
            logits = logits + torch.einsum("bukd,bmkd->bumk", uq, ux) * self.scale
        return logits


class MSPHeads(nn.Module):
    """Per-query span boundaries, region slot and type.

    The type head reads [q W_c; P_start T; P_end T; P_r V] (paper; the last term per `type_uses_region`).
    With `region_uses_span` the region scorer reads q + [P_start T; P_end T] W_s instead of q alone: the
    words the query points at carry the entity's identity more directly than the query state does.

    forward(q [B, u, h], text [B, n, h], text_pad [B, n], regions [B, k+1, h], region_pad [B, k+1]) ->
      start_logits [B, u, n], end_logits [B, u, n]   (padding = -inf)
      region_logits [B, u, k+1]                       (slot 0 = ungroundable; padding = -inf)
      type_logits [B, u, p+1]                         (last class = null, "no entity")
    """

    def __init__(self, hidden: int, head: int, num_types: int, bilinear: bool = False,
                 type_uses_region: bool = True, region_uses_span: bool = False) -> None:
        super().__init__()
        h = hidden
        self.boundary = PairScorer(h, head, 2, bilinear)
        self.region = PairScorer(h, head, 1, bilinear)
        self.use_region, self.use_span = type_uses_region, region_uses_span
        if self.use_span:
            self.span_to_region = nn.Linear(2 * h, h)
        parts = 4 if self.use_region else 3
        self.wc = nn.Linear(h, h)
        self.classify = nn.Sequential(nn.Linear(parts * h, h), nn.GELU(), nn.Linear(h, num_types + 1))

    @staticmethod
    def _pool(logits, states):
        # Sigmoid probabilities normalised over positions: a soft pointer into the text or regions.
        probs = torch.sigmoid(logits)
        probs = probs / probs.sum(-1, keepdim=True).clamp_min(1e-6)
        return torch.einsum("bum,bmh->buh", probs, states)

    @staticmethod
    def _masked(logits, pad):
        # The lowest value of the logits' own dtype: under bf16 autocast they are bf16 while q is not.
        return logits.masked_fill(pad, torch.finfo(logits.dtype).min)

    def forward(self, q, text, text_pad, regions, region_pad) -> dict[str, torch.Tensor]:
        boundary = self._masked(self.boundary(q, text), text_pad[:, None, :, None])
        start, end = boundary[..., 0], boundary[..., 1]
        spans = [self._pool(start, text), self._pool(end, text)]
        region_q = q + self.span_to_region(torch.cat(spans, -1)) if self.use_span else q
        region = self._masked(self.region(region_q, regions)[..., 0], region_pad[:, None, :])
        parts = [self.wc(q), *spans]
        if self.use_region:
            parts.append(self._pool(region, regions))
        return {
            "start_logits": start,
            "end_logits": end,
            "region_logits": region,
            "type_logits": self.classify(torch.cat(parts, -1)),
        }
