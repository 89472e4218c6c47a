"""Training-time transforms that the data side applies to a collated batch before the model sees it."""
from __future__ import annotations

import torch
from torch import nn


def augment_crops(crops: torch.Tensor, shift: int = 2, brightness: float = 0.1) -> torch.Tensor:
    """uint8 [N, 3, S, S] -> float [N, 3, S, S] in 0..255: each crop mirrored with chance 1/2, moved by up
    to `shift` pixels (edges replicated) and its brightness scaled by 1 +- `brightness`. A detector's box
    wobbles by a few pixels and lighting varies; neither changes what the region shows."""
    n, _, size, _ = crops.shape
    x = crops.float()
    x = torch.where((torch.rand(n, device=x.device) < 0.5)[:, None, None, None], x.flip(-1), x)
    padded = nn.functional.pad(x, (shift,) * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * shift + 1, (2, n)).tolist()
    x = torch.stack([padded[i, :, dy[i]: dy[i] + size, dx[i]: dx[i] + size] for i in range(n)])
    scale = 1 + brightness * (2 * torch.rand(n, 1, 1, 1, device=x.device) - 1)
    return (x * scale).clamp(0, 255)


class CropAugment:
    """`train.crop_augment` as a batch transform: replaces `batch["crops"]` by `augment_crops` of them.

    `active` is set by the trainer each epoch: only a vision encoder that trains sees augmented crops (the
    outputs of a frozen one are cached per crop, so they must come from the crops themselves).
    """

    def __init__(self, active: bool = True) -> None:
        self.active = active

    def __call__(self, batch: dict) -> dict:
        if self.active and "crops" in batch:
            batch["crops"] = augment_crops(batch["crops"])
        return batch
