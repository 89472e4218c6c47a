"""Turn the last layer's head outputs into entities (spec section 3, decoding)."""
from __future__ import annotations

from typing import Sequence

import torch

from mqspn.types import Entity, Region


def best_span(start_p: torch.Tensor, end_p: torch.Tensor, n: int, max_len: int) -> tuple[int, int]:
    """argmax over start <= end < start + max_len of P_start * P_end, within the first n words."""
    joint = start_p[:n, None] * end_p[None, :n]
    idx = torch.arange(n)
    allowed = (idx[None, :] >= idx[:, None]) & (idx[None, :] - idx[:, None] < max_len)
    flat = torch.where(allowed, joint, torch.full_like(joint, -1.0)).argmax()
    return int(flat // n), int(flat % n)


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
        for q in torch.nonzero(cls != null).flatten().tolist():
            s, e = best_span(start_p[b, q], end_p[b, q], n, max_span_words)
            slot = int(region[b, q, : len(regions[b]) + 1].argmax())
            boxes = [regions[b][slot - 1].box] if slot > 0 else []
            candidates.append(Entity(s, e, types[int(cls[q])], boxes=boxes, score=float(score[q])))
        candidates.sort(key=lambda ent: -ent.score)
        kept: list[Entity] = []
        for ent in candidates:
            if all(ent.end < k.start or ent.start > k.end for k in kept):
                kept.append(ent)
        results.append(kept)
    return results
