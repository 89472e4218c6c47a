"""How region slots are scored: the one place that owns the sigmoid/softmax choice (`loss.region_loss`).

The matcher's cost, the criterion's region loss and the decoding all read region probabilities from
here, so the three never disagree on what a region logit means:
- `bce` (paper): an independent sigmoid per slot, trained with BCE over the k+1 slots;
- `softmax`: the slots compete, trained with the multi-positive cross-entropy (-log of the softmax mass
  on the positive slots), as argmax decoding picks one slot.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

REGION_LOSSES = ("bce", "softmax")


def masked_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """BCE summed over the valid positions of each row, averaged over rows. [M, m] each -> scalar."""
    loss = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    return (loss * valid).sum(-1).mean()


class RegionScoring:
    """probs(logits [..., k+1]) -> per-slot probabilities; loss(logits [M, k+1], target multi-hot [M, k+1],
    valid [M, k+1]) -> scalar."""

    def __init__(self, region_loss: str = "bce") -> None:
        if region_loss not in REGION_LOSSES:
            raise ValueError(f"loss.region_loss={region_loss!r}: expected one of {', '.join(REGION_LOSSES)}")
        self.region_loss = region_loss
        self.softmax = region_loss == "softmax"

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(-1) if self.softmax else torch.sigmoid(logits)

    def loss(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if not self.softmax:
            return masked_bce(logits, target, valid)
        logits = logits.float().masked_fill(~valid, float("-inf"))
        positive = logits.masked_fill(target <= 0, float("-inf"))
        return (torch.logsumexp(logits, -1) - torch.logsumexp(positive, -1)).mean()
