"""Set-prediction losses. The criterion only computes a dict of named losses; the engine weighs and sums
them with `weight_dict` (built with the criterion by `mqspn.build.build_criterion`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mqspn.model.matcher import HungarianMatcher
from mqspn.model.region_scoring import RegionScoring, masked_bce

LOSSES = ("type", "boundary", "region")


def replicate_targets(target: dict, max_targets: int, num_queries: int) -> dict:
    """Repeat a post's gold set toward `max_targets` (never past u) so several queries learn each entity."""
    m = len(target["types"])
    if max_targets <= 0 or m == 0:
        return target
    times = max(1, min(max_targets, num_queries) // m)
    return {key: value.repeat(times, *([1] * (value.dim() - 1))) for key, value in target.items()}


def adaptive_null_weight(num_matched: int, num_queries: int) -> float:
    """The null class's weight for a batch of `num_queries` (B x u) queries of which `num_matched` have a
    target (`loss.null_weight: adaptive`, the released code's N_gt / (B*u - N_gt)): the unmatched queries
    together weigh as much as the matched ones. A batch whose queries are all null or all matched has one
    class only, and any weight gives the same mean: 1 (the formula would divide 0 by 0)."""
    return num_matched / (num_queries - num_matched) if 0 < num_matched < num_queries else 1.0


def layer_suffix(layer: int, num_layers: int) -> str:
    """The suffix of a layer's loss names: none for the last QFNet layer, `_<l>` for earlier ones."""
    return "" if layer == num_layers - 1 else f"_{layer}"


class SetCriterion(torch.nn.Module):
    """forward(outputs, targets) -> {"loss_type", "loss_boundary", "loss_region"} for the last layer and
    the same names suffixed `_<l>` for every earlier QFNet layer (deep supervision); each layer is
    matched on its own.

    outputs: `MQSPN.forward`'s dict; targets: per post types/starts/ends [m] and regions [m, k+1]
    (multi-hot over the candidate slots). One method per loss, each taking (layer outputs, targets,
    indices from the matcher) and returning {"loss_<name>": scalar}.
    """

    def __init__(self, num_types: int, matcher: HungarianMatcher, scoring: RegionScoring,
                 null_weight: float | str = 0.1, max_targets: int = 0, losses: tuple[str, ...] = LOSSES) -> None:
        super().__init__()
        self.matcher, self.scoring = matcher, scoring
        self.max_targets = max_targets
        self.losses = losses
        self.adaptive_null = null_weight == "adaptive"
        weight = torch.ones(num_types + 1)
        weight[-1] = 1.0 if self.adaptive_null else null_weight
        self.register_buffer("type_weight", weight)

    def loss_type(self, outputs: dict, targets: list[dict], indices) -> dict[str, torch.Tensor]:
        """Cross-entropy over all B x u queries: the matched type, or null (the last class, down-weighted)."""
        type_logits = outputs["type_logits"]
        b, u, c = type_logits.shape
        type_target = torch.full((b, u), c - 1, dtype=torch.int64, device=type_logits.device)
        for i, ((pred, tgt), target) in enumerate(zip(indices, targets)):
            type_target[i, pred] = target["types"][tgt]
        weight = self.type_weight
        if self.adaptive_null:
            weight = weight.clone()
            weight[-1] = adaptive_null_weight(sum(len(pred) for pred, _ in indices), b * u)
        return {"loss_type": F.cross_entropy(type_logits.flatten(0, 1).float(), type_target.flatten(), weight=weight)}

    def loss_boundary(self, outputs: dict, targets: list[dict], indices) -> dict[str, torch.Tensor]:
        """BCE of each matched query's start and end probabilities against one-hot gold words."""
        matched = self._matched(outputs, targets, indices)
        if matched is None:
            return {"loss_boundary": outputs["type_logits"].sum() * 0.0}
        bi, qi, picked = matched
        text_valid = ~outputs["text_pad"][bi]  # [M, n]
        n = text_valid.shape[1]
        start_t = F.one_hot(picked["starts"], n).float()
        end_t = F.one_hot(picked["ends"], n).float()
        return {"loss_boundary": masked_bce(outputs["start_logits"][bi, qi], start_t, text_valid)
                + masked_bce(outputs["end_logits"][bi, qi], end_t, text_valid)}

    def loss_region(self, outputs: dict, targets: list[dict], indices) -> dict[str, torch.Tensor]:
        """Each matched query's region slots against the multi-hot gold slots (`RegionScoring.loss`)."""
        matched = self._matched(outputs, targets, indices)
        if matched is None:
            return {"loss_region": outputs["type_logits"].sum() * 0.0}
        bi, qi, picked = matched
        region_valid = ~outputs["region_pad"][bi]  # [M, k+1]
        return {"loss_region": self.scoring.loss(outputs["region_logits"][bi, qi], picked["regions"].float(), region_valid)}

    @staticmethod
    def _matched(outputs: dict, targets: list[dict], indices):
        """(post index [M], query index [M], the matched targets' starts/ends [M], regions [M, k+1]) of the
        M matched pairs, or None when nothing is matched."""
        rows = [(i, int(p)) for i, (pred, _) in enumerate(indices) for p in pred]
        if not rows:
            return None
        device = outputs["type_logits"].device
        bi = torch.tensor([r[0] for r in rows], device=device)
        qi = torch.tensor([r[1] for r in rows], device=device)
        picked = {key: torch.cat([t[key][tgt] for (_, tgt), t in zip(indices, targets)])
                  for key in ("starts", "ends", "regions")}
        return bi, qi, picked

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        u = outputs["layers"][-1]["type_logits"].shape[1]
        targets = [replicate_targets(t, self.max_targets, u) for t in targets]
        losses = {}
        for l, layer in enumerate(outputs["layers"]):
            layer = dict(layer, text_pad=outputs["text_pad"], region_pad=outputs["region_pad"])
            indices = self.matcher(layer, targets)
            suffix = layer_suffix(l, len(outputs["layers"]))
            for name in self.losses:
                for key, value in getattr(self, f"loss_{name}")(layer, targets, indices).items():
                    losses[key + suffix] = value
        return losses
