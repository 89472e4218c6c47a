"""Set-prediction losses. The criterion only computes a dict of named losses; the engine weighs and sums."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mqspn.model.matcher import HungarianMatcher


def replicate_targets(target: dict, max_targets: int, num_queries: int) -> dict:
    """Repeat a post's gold set toward `max_targets` (never past u) so several queries learn each entity."""
    m = len(target["types"])
    if max_targets <= 0 or m == 0:
        return target
    times = max(1, min(max_targets, num_queries) // m)
    return {key: value.repeat(times, *([1] * (value.dim() - 1))) for key, value in target.items()}


class SetCriterion(torch.nn.Module):
    """forward(outputs, targets) -> {"loss_type", "loss_boundary", "loss_region"} for the last layer and
    the same names suffixed `_<l>` for every earlier QFNet layer (deep supervision)."""

    def __init__(self, num_types: int, matcher: HungarianMatcher, null_weight: float = 0.1, max_targets: int = 0,
                 region_softmax: bool = False) -> None:
        super().__init__()
        self.matcher = matcher
        self.max_targets = max_targets
        self.region_softmax = region_softmax
        weight = torch.ones(num_types + 1)
        weight[-1] = null_weight
        self.register_buffer("type_weight", weight)

    def layer_losses(self, outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        indices = self.matcher(outputs, targets)
        type_logits = outputs["type_logits"]
        b, u, c = type_logits.shape
        type_target = torch.full((b, u), c - 1, dtype=torch.int64, device=type_logits.device)
        starts, ends, regions, rows = [], [], [], []
        for i, ((pred, tgt), target) in enumerate(zip(indices, targets)):
            type_target[i, pred] = target["types"][tgt]
            rows += [(i, int(p)) for p in pred]
            starts.append(target["starts"][tgt])
            ends.append(target["ends"][tgt])
            regions.append(target["regions"][tgt])
        loss_type = F.cross_entropy(type_logits.flatten(0, 1).float(), type_target.flatten(), weight=self.type_weight)
        if not rows:
            zero = type_logits.sum() * 0.0
            return {"loss_type": loss_type, "loss_boundary": zero, "loss_region": zero}
        bi = torch.tensor([r[0] for r in rows], device=type_logits.device)
        qi = torch.tensor([r[1] for r in rows], device=type_logits.device)
        text_valid = ~outputs["text_pad"][bi]  # [M, n]
        region_valid = ~outputs["region_pad"][bi]  # [M, k+1]
        n = text_valid.shape[1]
        start_t = F.one_hot(torch.cat(starts), n).float()
        end_t = F.one_hot(torch.cat(ends), n).float()
        region_t = torch.cat(regions).float()
        loss_boundary = (
            self._masked_bce(outputs["start_logits"][bi, qi], start_t, text_valid)
            + self._masked_bce(outputs["end_logits"][bi, qi], end_t, text_valid)
        )
        if self.region_softmax:
            loss_region = self._multi_positive_ce(outputs["region_logits"][bi, qi], region_t, region_valid)
        else:
            loss_region = self._masked_bce(outputs["region_logits"][bi, qi], region_t, region_valid)
        return {"loss_type": loss_type, "loss_boundary": loss_boundary, "loss_region": loss_region}

    @staticmethod
    def _multi_positive_ce(logits, target, valid):
        """-log of the softmax mass on the positive slots: the slots compete, as argmax decoding does."""
        logits = logits.float().masked_fill(~valid, float("-inf"))
        positive = logits.masked_fill(target <= 0, float("-inf"))
        return (torch.logsumexp(logits, -1) - torch.logsumexp(positive, -1)).mean()

    @staticmethod
    def _masked_bce(logits, target, valid):
        """BCE summed over the valid positions of each matched query, averaged over queries."""
        loss = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
        return (loss * valid).sum(-1).mean()

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        u = outputs["layers"][-1]["type_logits"].shape[1]
        targets = [replicate_targets(t, self.max_targets, u) for t in targets]
        losses = {}
        last = len(outputs["layers"]) - 1
        for l, layer in enumerate(outputs["layers"]):
            layer = dict(layer, text_pad=outputs["text_pad"], region_pad=outputs["region_pad"])
            suffix = "" if l == last else f"_{l}"
            for name, value in self.layer_losses(layer, targets).items():
                losses[name + suffix] = value
        return losses
