"""Turn the last layer's head outputs into entities (spec section 3, decoding).

The paper's decoding is the default; three `DecodeConfig` options change it, each measured in
docs/results.md (a model directory saves its training-time choice; `Predictor(..., decode=...)` and
`mqspn predict --set decode.<key>=...` override it without retraining):
- `entity_threshold`: drop queries whose (non-null) type probability is below it. Real posts have many
  capitalised non-entities, and a query that is unsure of its type is then more often wrong than right.
- `decode_rank = "joint"`: rank by type probability times the span's boundary probabilities, so that,
  of several queries on overlapping spans, the one surest of its boundaries wins (paper: type only).
- `region_vote`: the region of a kept entity is the argmax of the region probabilities averaged over all
  queries that decode to the same span. With gold-set replication (`max_targets`) several queries learn
  each entity, and their average is a steadier vote than the single winning query's.
"""
from __future__ import annotations

from typing import Sequence

import torch

from mqspn.config import DecodeConfig
from mqspn.model.region_scoring import RegionScoring
from mqspn.types import Entity, Region


def best_spans(start_p: torch.Tensor, end_p: torch.Tensor, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query, argmax over start <= end < start + max_len of P_start * P_end.

    start_p, end_p: [u, n] (the post's n real words) -> starts [u], ends [u].
    """
    u, n = start_p.shape
    joint = start_p[:, :, None] * end_p[:, None, :]  # [u, n, n]
    idx = torch.arange(n)
    allowed = (idx[None, :] >= idx[:, None]) & (idx[None, :] - idx[:, None] < max_len)
    flat = joint.masked_fill(~allowed, -1.0).reshape(u, n * n).argmax(-1)
    return flat // n, flat % n


class Decoder:
    """decoder(outputs, num_words, regions) -> per post, entities sorted by score; spans overlapping a
    higher-scored kept span are dropped.

    Each query gives its argmax type (null: no entity), its best span and its argmax region slot
    (slot 0: ungroundable -> box None, slot j: the j-th candidate's box). `Entity.score` is the ranking
    score (`cfg.decode_rank`). `types`: the model's types in class order; `scoring`: how the model's
    region logits were trained.
    """

    def __init__(self, types: Sequence[str], cfg: DecodeConfig | None = None, scoring: RegionScoring | None = None) -> None:
        self.types, self.cfg, self.scoring = list(types), cfg or DecodeConfig(), scoring or RegionScoring()

    @torch.no_grad()
    def __call__(self, outputs: dict, num_words: Sequence[int], regions: Sequence[Sequence[Region]]) -> list[list[Entity]]:
        last = outputs["layers"][-1]
        type_p = last["type_logits"].float().softmax(-1).cpu()
        start_p = torch.sigmoid(last["start_logits"].float()).cpu()
        end_p = torch.sigmoid(last["end_logits"].float()).cpu()
        region_p = self.scoring.probs(last["region_logits"].float()).cpu()
        return [self._post(type_p[b], start_p[b], end_p[b], region_p[b], n, regions[b]) for b, n in enumerate(num_words)]

    def _post(self, type_p, start_p, end_p, region_p, n: int, regions: Sequence[Region]) -> list[Entity]:
        cfg = self.cfg
        null = type_p.shape[-1] - 1
        type_score, cls = type_p.max(-1)
        keep = torch.nonzero((cls != null) & (type_score >= cfg.entity_threshold)).flatten()
        starts, ends = best_spans(start_p[keep, :n], end_p[keep, :n], cfg.max_span_words)
        score = type_score[keep]
        if cfg.decode_rank == "joint":
            score = score * start_p[keep, starts] * end_p[keep, ends]
        probs = region_p[keep, : len(regions) + 1]
        order = score.argsort(descending=True, stable=True).tolist()
        first, last_word = starts.tolist(), ends.tolist()  # plain ints: the overlap test runs per pair
        kept: list[int] = []
        for i in order:
            if all(last_word[i] < first[j] or first[i] > last_word[j] for j in kept):
                kept.append(i)
        entities = []
        for i in kept:
            if cfg.region_vote:
                same = (starts == starts[i]) & (ends == ends[i])
                slot = int(probs[same].mean(0).argmax())
            else:
                slot = int(probs[i].argmax())
            boxes = [regions[slot - 1].box] if slot > 0 else []
            entities.append(Entity(first[i], last_word[i], self.types[int(cls[keep[i]])], boxes=boxes,
                                   score=float(score[i])))
        return entities
