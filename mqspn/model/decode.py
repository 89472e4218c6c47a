"""Turn the last layer's head outputs into entities (spec section 3, decoding)."""
from __future__ import annotations

from typing import Sequence

import torch

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


@torch.no_grad()
def decode(outputs: dict, num_words: Sequence[int], regions: Sequence[Sequence[Region]],
           types: Sequence[str], max_span_words: int = 12) -> list[list[Entity]]:
    """-> per post, entities sorted by score; spans overlapping a higher-scored kept span are dropped.

    Each query gives its argmax type (null: no entity), its best span and its argmax region slot
    (slot 0: ungroundable -> box None, slot j: the j-th candidate's box).
    """
    last = outputs["layers"][-1]
    type_p = last["type_logits"].float().softmax(-1).cpu()
    start_p = torch.sigmoid(last["start_logits"].float()).cpu()
    end_p = torch.sigmoid(last["end_logits"].float()).cpu()
    region = last["region_logits"].float().cpu()
    null = type_p.shape[-1] - 1
    results = []
    for b, n in enumerate(num_words):
        candidates = []
        score, cls = type_p[b].max(-1)
        keep = torch.nonzero(cls != null).flatten()
        starts, ends = best_spans(start_p[b, keep, :n], end_p[b, keep, :n], max_span_words)
        slots = region[b, keep, : len(regions[b]) + 1].argmax(-1)
        for q, s, e, slot in zip(keep.tolist(), starts.tolist(), ends.tolist(), slots.tolist()):
            boxes = [regions[b][slot - 1].box] if slot > 0 else []
            candidates.append(Entity(s, e, types[int(cls[q])], boxes=boxes, score=float(score[q])))
        candidates.sort(key=lambda ent: -ent.score)
        kept: list[Entity] = []
        for ent in candidates:
            if all(ent.end < k.start or ent.start > k.end for k in kept):
                kept.append(ent)
        results.append(kept)
    return results
