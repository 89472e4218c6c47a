"""Region encoders: turn each candidate region into a vector.

`ModelConfig.vision_encoder`:
- `cnn`: a small CNN over the region crops, trained from scratch (demo and tests);
- `clip:<folder>`: the CLIP vision tower from a local folder (paper: ViT-B/32), pooled output; its crops
  are the tower's own input size, or `model.clip_crop_size` (position embeddings interpolated);
- `features`: the detector's own box features (VinVL 2048-d), projected; no crops are made;
- `none`: text only, every entity ungroundable.
Crops arrive as uint8 [N, 3, S, S]; normalisation happens here so the crop cache stays compact.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CropCNN(nn.Module):
    """crops uint8 [N, 3, S, S] -> [N, out_dim]. GroupNorm, not BatchNorm: a crop's encoding must not
    depend on the other crops in its batch (one post alone predicts the same as inside a batch).

    Beside the conv stack, a colour path (per-pixel 1x1 conv, pooled over the crop) sees every pixel at
    full resolution: which colours a region holds, and how much of each, are learnt in few steps, while
    the strided stack alone blurs thin marks.
    """

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        chans = (3, 16, 32, 64)
        # Every layer strides instead of convolving at full size and pooling: 3x3 activations at full size
        # cost the most on a CPU, and the colour path below keeps the full-resolution colour information.
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten())
        colours = 32
        # In-place ReLUs: neither GroupNorm's nor a convolution's backward needs the tensor they overwrite.
        self.colour = nn.Sequential(nn.Conv2d(3, colours, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = nn.Linear(chans[-1] * 4 + colours, out_dim)
        self.hidden_size = out_dim
        self.pretrained = False

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = crops.float() / 127.5 - 1.0
        return self.out(torch.cat([self.body(x), self.colour(x)], -1))


class ClipRegionEncoder(nn.Module):
    """crops uint8 [N, 3, S, S] -> pooled CLIP states [N, H]. S is the tower's image size, or another
    multiple of its patch size (`crop_size`): the tower then interpolates its position embeddings
    (bicubic, transformers' `interpolate_pos_encoding`) to the (S / patch)^2 patches a crop has."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower
        self.hidden_size = tower.config.hidden_size
        self.image_size = tower.config.image_size
        self.patch_size = tower.config.patch_size
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self.pretrained = True

    @classmethod
    def build(cls, folder: str, pretrained: bool = True) -> "ClipRegionEncoder":
        from transformers import CLIPVisionConfig, CLIPVisionModel

        if not (Path(folder) / "config.json").is_file():
            raise ValueError(
                f"vision_encoder=clip:{folder}: no CLIP model folder there (config.json missing). "
                "Download openai/clip-vit-base-patch32 to a local folder and point to it."
            )
        if pretrained:
            return cls(CLIPVisionModel.from_pretrained(folder, local_files_only=True))
        return cls(CLIPVisionModel(CLIPVisionConfig.from_pretrained(folder, local_files_only=True)))

    def crop_size(self, requested: int | None) -> int:
        """The side of this tower's crops for `model.clip_crop_size` = `requested` (None: its own size)."""
        if requested is None:
            return self.image_size
        if requested % self.patch_size:
            below = max(self.patch_size, requested - requested % self.patch_size)
            raise ValueError(f"model.clip_crop_size={requested}: the CLIP tower cuts crops into {self.patch_size} px "
                             f"patches, so the side must be a multiple of {self.patch_size} (e.g. {below} or "
                             f"{below + self.patch_size}; its own size is {self.image_size})")
        return requested

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        pixels = (crops.float() / 255.0 - self.mean) / self.std
        # At the tower's own size the plain position embeddings: no interpolation call, the numerics of before.
        resized = crops.shape[-1] != self.image_size or crops.shape[-2] != self.image_size
        return self.tower(pixel_values=pixels, interpolate_pos_encoding=resized).pooler_output


def build_vision_encoder(name: str, hidden: int, pretrained: bool = True) -> nn.Module | None:
    """The crop encoder for `name`, or None for `features` and `none` (no crops are encoded)."""
    if name == "cnn":
        return CropCNN(hidden)
    if name.startswith("clip:"):
        return ClipRegionEncoder.build(name[len("clip:"):], pretrained=pretrained)
    if name in ("features", "none"):
        return None
    raise ValueError(f"vision_encoder={name!r}: expected cnn, clip:<folder>, features or none")

