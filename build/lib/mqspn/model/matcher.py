"""Assignment between the u predictions of a post and its gold entities. It only matches."""
from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from mqspn.model.region_scoring import RegionScoring


class NonFiniteOutputError(ArithmeticError):
    """The model produced NaN or infinite scores, so there is nothing to match (training diverged)."""


class HungarianMatcher:
    """Per post, the assignment minimising -(w_c p_type + w_b (P_start + P_end) + w_r P_region).

    outputs: one layer's head outputs (start/end_logits [B, u, n], region_logits [B, u, k+1],
    type_logits [B, u, p+1]); targets: per post a dict with types/starts/ends [m] and regions
    [m, k+1] (multi-hot: every candidate slot that counts as the entity's region).
    Returns per post (pred_idx [j], target_idx [j]) as int64 tensors, j = min(u, m).
    `bipartite=False` is the "w/o bipartite matching" ablation: target i goes to query i.
    """

    def __init__(self, cost_type: float = 1.0, cost_boundary: float = 1.0, cost_region: float = 1.0,
                 bipartite: bool = True, scoring: RegionScoring | None = None) -> None:
        self.w_type, self.w_boundary, self.w_region = cost_type, cost_boundary, cost_region
        self.bipartite = bipartite
        self.scoring = scoring or RegionScoring()  # region probabilities as the region loss trains them

    def probabilities(self, outputs: dict) -> dict[str, torch.Tensor]:
        """The batch's type/start/end/region probabilities, each in one kernel rather than one per post."""
        return {"type": outputs["type_logits"].float().softmax(-1),
                "start": torch.sigmoid(outputs["start_logits"].float()),
                "end": torch.sigmoid(outputs["end_logits"].float()),
                "region": self.scoring.probs(outputs["region_logits"].float())}

    def cost(self, probs: dict, b: int, target: dict) -> torch.Tensor:
        """Cost matrix [u, m] of post b; `probs` from `probabilities(outputs)`."""
        p_type = probs["type"][b][:, target["types"]]
        p_start = probs["start"][b][:, target["starts"]]
        p_end = probs["end"][b][:, target["ends"]]
        # Best probability among the slots that count as the entity's region.
        p_reg = (probs["region"][b].unsqueeze(1) * target["regions"].unsqueeze(0)).amax(-1)
        return -(self.w_type * p_type + self.w_boundary * (p_start + p_end) + self.w_region * p_reg)

    @torch.no_grad()
    def __call__(self, outputs: dict, targets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        u = outputs["type_logits"].shape[1]
        probs = self.probabilities(outputs) if self.bipartite else None
        indices = []
        for b, target in enumerate(targets):
            m = len(target["types"])
            if m == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty))
            elif not self.bipartite:
                idx = torch.arange(min(u, m), dtype=torch.int64)
                indices.append((idx, idx))
            else:
                cost = self.cost(probs, b, target)
                if not torch.isfinite(cost).all():
                    raise NonFiniteOutputError(f"non-finite prediction scores for post {b} of the batch")
                rows, cols = linear_sum_assignment(cost.cpu().numpy())
                indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices
