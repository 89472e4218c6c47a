"""Posts -> model inputs: tokenisation, candidate regions, crops and set-prediction targets.

Every post is turned into an `Example` once and memoised, so crops (the expensive part) are cut and
resized a single time per run, never on every step. With a region cache (`mqspn.region_cache`: a frozen
tower for the whole run) an example holds its regions' encodings, rows of the cache's memory map,
instead of crops.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from mqspn.boxes import IOU_THRESHOLD, iou_matrix
from mqspn.data.datasets import type_problem
from mqspn.images import load_image
from mqspn.proposals import fit_regions
from mqspn.text_features import word_hashes, word_shapes
from mqspn.truncation import cut_post
from mqspn.types import Post, Region


@dataclass
class Example:
    post: Post
    input_ids: list[int]
    word_index: list[int]
    shapes: list[int]  # `mqspn.text_features.word_shape` class per word
    hashes: list[int]  # `mqspn.text_features.word_hash` per word
    regions: list[Region]
    crops: Optional[torch.Tensor]  # uint8 [k, 3, S, S] (vision_encoder cnn/clip)
    features: Optional[torch.Tensor]  # float [k, D] (vision_encoder features)
    target: dict[str, torch.Tensor]  # types/starts/ends [m], regions [m, k+1]
    encodings: Optional[torch.Tensor] = None  # float32 [k, H]: a frozen tower's outputs (region cache)
    blank_encoding: Optional[torch.Tensor] = None  # float32 [H]: its output for the blank image (region cache)


def crop_regions(image: Image.Image, regions: Sequence[Region], size: int) -> torch.Tensor:
    """Crops of `regions` resized to size x size -> uint8 [k, 3, size, size]. Boxes are clipped to the image."""
    w, h = image.size
    out = np.zeros((len(regions), size, size, 3), dtype=np.uint8)
    for i, region in enumerate(regions):
        x1, y1, x2, y2 = region.box
        x1, y1 = min(max(x1, 0), w - 1), min(max(y1, 0), h - 1)
        x2, y2 = max(min(x2, w), x1 + 1), max(min(y2, h), y1 + 1)
        out[i] = np.asarray(image.resize((size, size), Image.BILINEAR, box=(x1, y1, x2, y2)))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def region_labels(post: Post, regions: Sequence[Region]) -> np.ndarray:
    """[m, k+1] multi-hot: candidate j+1 is positive for entity i when IoU(candidate, any gold box) > 0.5;
    an ungroundable entity, or one that no candidate covers, targets slot 0."""
    labels = np.zeros((len(post.entities), len(regions) + 1), dtype=np.float32)
    cand = np.array([r.box for r in regions], dtype=np.float64).reshape(-1, 4)
    for i, ent in enumerate(post.entities):
        if ent.boxes and len(cand):
            labels[i, 1:] = (iou_matrix(cand, np.array(ent.boxes)) > IOU_THRESHOLD).any(1)
        if not labels[i, 1:].any():
            labels[i, 0] = 1.0
    return labels


class ExampleBuilder:
    """Builds `Example`s for one model configuration.

    tokenize(words, where, truncate) -> (ids, word_index); proposals: an object with `regions(image_name)`;
    image_dir: folder of `<image name>` files; mode: crops | features | none; truncate: cut posts past the
    text encoder's limit (`mqspn.truncation`) instead of refusing them; region_cache: a
    `mqspn.region_cache.RegionCache` holding every image's encodings (crops mode): examples then carry
    encodings and no crops, and no image is decoded.
    """

    def __init__(self, tokenize: Callable, types: Sequence[str], mode: str, crop_size: int = 32,
                 proposals=None, image_dir: Optional[Path] = None, truncate: bool = False,
                 region_cache=None) -> None:
        if mode not in ("crops", "features", "none"):
            raise ValueError(f"region mode {mode!r}: expected crops, features or none")
        if region_cache is not None and mode != "crops":
            raise ValueError(f"a region cache holds the encodings of crops; region mode {mode} has none")
        self.tokenize, self.mode, self.crop_size = tokenize, mode, crop_size
        self.type_index = {t: i for i, t in enumerate(types)}
        self.proposals, self.image_dir, self.truncate = proposals, image_dir, truncate
        self.region_cache = region_cache

    def image_path(self, image_name: str) -> Path:
        if self.image_dir is None:
            raise ValueError(f"image {image_name}: no image folder (data.images) to crop its regions from")
        return self.image_dir / image_name

    def _fit(self, image_name: str, regions: list[Region], size: tuple[int, int]) -> list[Region]:
        """`regions` that lie in an image of `size` (`fit_regions`); as given without a proposal source."""
        if self.proposals is None:
            return regions
        return fit_regions(self.proposals, image_name, regions, size, str(self.image_path(image_name)))

    def region_crops(self, image_name: str, regions: Optional[list[Region]] = None
                     ) -> tuple[torch.Tensor, list[Region], tuple[int, int]]:
        """The image's crops uint8 [k, 3, S, S] of its regions (default: its proposals) fitted to it, those
        regions, and the image's (width, height)."""
        image = load_image(self.image_path(image_name))
        regions = self._fit(image_name, self.proposals.regions(image_name) if regions is None else regions, image.size)
        return crop_regions(image, regions, self.crop_size), regions, image.size

    def build(self, post: Post, regions: Optional[list[Region]] = None, image: Optional[Image.Image] = None) -> Example:
        """`regions`/`image` override the proposal source and the image folder (single-example inference)."""
        if not post.words:
            raise ValueError(f"post {post.id}: empty text (no words)")
        ids, word_index = self.tokenize(post.words, post.where, self.truncate)
        post = cut_post(post, max(word_index) + 1)
        if self.mode == "none":
            regions = []
        elif regions is None:
            if self.proposals is None:
                raise ValueError(f"post {post.id}: no proposal source (data.proposals) for its regions; "
                                 "give one, or use model.vision_encoder=none for text only")
            regions = self.proposals.regions(post.image)
        crops = features = encodings = blank = None
        if self.mode == "crops" and self.region_cache is not None:
            regions = self._fit(post.image, regions, self.region_cache.image_size(post.image))
            encodings, blank = self.region_cache.rows(post.image, len(regions)), self.region_cache.blank
        elif self.mode == "crops":
            if image is None:
                crops, regions, _ = self.region_crops(post.image, regions)
            else:
                crops = crop_regions(image, regions, self.crop_size)
        elif self.mode == "features":
            missing = [i for i, r in enumerate(regions) if r.features is None]
            if missing:
                raise ValueError(f"post {post.id}: proposals carry no box_features; use vision_encoder cnn/clip")
            features = torch.from_numpy(np.stack([r.features for r in regions]).astype(np.float32)) if regions else torch.zeros(0, 0)
        return Example(post, ids, word_index, word_shapes(post.words), word_hashes(post.words),
                       list(regions), crops, features,
                       self.target(post, regions), encodings, blank)

    def target(self, post: Post, regions: Sequence[Region]) -> dict[str, torch.Tensor]:
        problem = type_problem(post, self.type_index)
        if problem:
            raise ValueError(problem)
        return {
            "types": torch.tensor([self.type_index[e.type] for e in post.entities], dtype=torch.int64),
            "starts": torch.tensor([e.start for e in post.entities], dtype=torch.int64),
            "ends": torch.tensor([e.end for e in post.entities], dtype=torch.int64),
            "regions": torch.from_numpy(region_labels(post, regions)),
        }


class PostDataset(torch.utils.data.Dataset):
    """A split's posts as memoised `Example`s."""

    def __init__(self, posts: Sequence[Post], builder: ExampleBuilder) -> None:
        self.posts, self.builder = list(posts), builder
        self._cache: dict[int, Example] = {}

    def __len__(self) -> int:
        return len(self.posts)

    def __getitem__(self, i: int) -> Example:
        if i not in self._cache:
            self._cache[i] = self.builder.build(self.posts[i])
        return self._cache[i]


def pad_region_targets(target: dict[str, torch.Tensor], slots: int) -> dict[str, torch.Tensor]:
    """Widen a post's region targets [m, k_i+1] to the batch's [m, slots] with zeros (padding slots)."""
    regions = target["regions"]
    if regions.shape[1] == slots:
        return target
    return dict(target, regions=torch.nn.functional.pad(regions, (0, slots - regions.shape[1])))


def collate(examples: Sequence[Example], transform: Optional[Callable[[dict], dict]] = None) -> dict:
    """-> batch dict (see `mqspn.model.mqspn.MQSPN.forward`), plus `targets`, `posts`, `regions`;
    `transform` (e.g. `mqspn.transforms.CropAugment` in training) is applied to it last.

    Region targets are padded to the batch's k_max + 1 slots, so posts with fewer proposals batch too.
    """
    b = len(examples)
    k_max = max(len(e.regions) for e in examples)
    length = max(len(e.input_ids) for e in examples)
    n = max(len(e.post.words) for e in examples)
    input_ids = torch.zeros(b, length, dtype=torch.int64)
    attention = torch.zeros(b, length, dtype=torch.int64)
    word_index = torch.full((b, length), -1, dtype=torch.int64)
    word_mask = torch.zeros(b, n, dtype=torch.bool)
    shapes = torch.zeros(b, n, dtype=torch.int64)
    hashes = torch.zeros(b, n, dtype=torch.int64)
    for i, e in enumerate(examples):
        input_ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        attention[i, : len(e.input_ids)] = 1
        word_index[i, : len(e.word_index)] = torch.tensor(e.word_index)
        word_mask[i, : len(e.post.words)] = True
        shapes[i, : len(e.shapes)] = torch.tensor(e.shapes)
        hashes[i, : len(e.hashes)] = torch.tensor(e.hashes)
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention,
        "word_index": word_index,
        "word_mask": word_mask,
        "word_shapes": shapes,
        "word_hashes": hashes,
        "region_counts": [len(e.regions) for e in examples],
        "targets": [pad_region_targets(e.target, k_max + 1) for e in examples],
        "posts": [e.post for e in examples],
        "regions": [e.regions for e in examples],
    }
    if examples[0].crops is not None:
        batch["crops"] = torch.cat([e.crops for e in examples])
    if examples[0].encodings is not None:
        batch["region_encodings"] = torch.cat([e.encodings for e in examples])
        batch["blank_encoding"] = examples[0].blank_encoding
    if examples[0].features is not None:
        batch["region_features"] = torch.cat([e.features for e in examples if len(e.regions)]) if sum(batch["region_counts"]) else torch.zeros(0, 1)
    return transform(batch) if transform is not None else batch


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a batch (and of its targets) to `device`."""
    moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    moved["targets"] = [{k: v.to(device) for k, v in t.items()} for t in batch["targets"]]
    return moved
