"""Shared pieces of the model tests: a tiny model configuration, hand-made posts with images and
proposals, batches built the way training builds them, and a small synthetic dataset.

Import what a test file needs (`from helpers_model import ...`); pytest picks up the fixtures imported
into a test module.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import torch
from PIL import Image, ImageDraw
from transformers import CLIPVisionConfig, CLIPVisionModel

from mqspn.batching import Example, collate
from mqspn.build import build_criterion, build_examples as build_example_builder
from mqspn.config import Config, DataConfig, LossConfig, ModelConfig, TrainConfig
from mqspn.engine import weighted_total
from mqspn.model.mqspn import MQSPN
from mqspn.synth.generate import MARKER, generate
from mqspn.types import Entity, Post, Region

#: Size of the fake detector features of the hand-made posts (vision_encoder=features).
FEATURE_DIM = 6


def tiny_config(**overrides) -> ModelConfig:
    """The tiny test architecture (random-init tiny BERT, crop CNN, hidden 32, 2 layers, 8 queries). Its type
    queries go through a trained projection, as before the paper's identity became the default, so the
    tests' trained models stay what they were."""
    base = ModelConfig(text_encoder="tiny", vision_encoder="cnn", hidden_size=32, head_size=16, num_heads=2,
                       num_layers=2, num_queries=8, tiny_text_hidden=32, feature_dim=FEATURE_DIM,
                       type_query_projection="trained")
    return dataclasses.replace(base, **overrides)


def tiny_model(seed: int = 0, **overrides) -> MQSPN:
    """A seeded tiny model; `overrides` are `ModelConfig` fields."""
    torch.manual_seed(seed)
    return MQSPN(tiny_config(**overrides))


def save_tiny_clip(folder: Path, image_size: int = 32, patch_size: int = 8) -> Path:
    """A random-init CLIP vision tower (32 x 32 input in 8 px patches, one block) saved as a local model folder."""
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=image_size, patch_size=patch_size)
    torch.manual_seed(0)
    CLIPVisionModel(config).save_pretrained(folder)
    return folder


def scene(size: tuple[int, int] = (120, 90), seed: int = 0) -> Image.Image:
    """A small image with a few coloured shapes, so that crops differ from each other."""
    generator = torch.Generator().manual_seed(seed)
    image = Image.new("RGB", size, (200, 210, 220))
    pen = ImageDraw.Draw(image)
    for _ in range(4):
        x1, y1 = (int(v) for v in torch.randint(0, 60, (2,), generator=generator))
        colour = tuple(int(v) for v in torch.randint(0, 256, (3,), generator=generator))
        pen.rectangle((x1, y1, x1 + 40, y1 + 30), fill=colour)
    return image


def hand_posts() -> list[tuple[Post, list[Region]]]:
    """Three posts of different lengths, each with three candidate regions; groundable and ungroundable
    entities, one post whose groundable entity no candidate covers, and one post without entities."""
    boxes = [(0.0, 0.0, 40.0, 30.0), (50.0, 20.0, 110.0, 80.0), (10.0, 40.0, 60.0, 85.0)]

    def regions(offset: int) -> list[Region]:
        return [Region(box, score=1.0 - 0.1 * i, label="thing",
                       features=torch.linspace(0, 1, FEATURE_DIM).add(offset + i).numpy())
                for i, box in enumerate(boxes)]

    first = Post("p1", "Jordan scored 30 points in Chicago last night".split(), [
        Entity(0, 0, "PER", [(2.0, 1.0, 41.0, 29.0)]),  # covered by candidate 1
        Entity(5, 5, "LOC"),  # ungroundable
    ])
    second = Post("p2", "Nike Air Max launch".split(), [
        Entity(0, 2, "OTHER", [(51.0, 22.0, 108.0, 79.0)]),  # covered by candidate 2
        Entity(3, 3, "ORG", [(200.0, 200.0, 230.0, 230.0)]),  # groundable but covered by no candidate
    ])
    third = Post("p3", "what a day".split(), [])
    return [(first, regions(0)), (second, regions(10)), (third, regions(20))]


def build_examples(model: MQSPN, items=None) -> list[Example]:
    """Examples of `items` ((post, regions) pairs; default `hand_posts()`) for `model`'s configuration."""
    builder = build_example_builder(model)
    return [builder.build(post, regions=regions, image=scene(seed=i))
            for i, (post, regions) in enumerate(items if items is not None else hand_posts())]


def hand_batch(model: MQSPN, items=None) -> dict:
    """The collated batch of `build_examples(model, items)`."""
    return collate(build_examples(model, items))


def train_step(model: MQSPN, batch: dict, loss: LossConfig | None = None) -> torch.Tensor:
    """Forward, the criterion of `loss` (default: the defaults) and backward on `batch` (gradients reset
    first) -> weighted loss."""
    model.zero_grad(set_to_none=True)
    criterion = build_criterion(model.config, loss or LossConfig())
    losses = criterion(model(batch), batch["targets"])
    total = weighted_total(losses, criterion.weight_dict)
    total.backward()
    return total


def synth_dataset(base: Path, posts: int, seed: int, groundable_share: Optional[float] = None) -> Path:
    """The synthetic benchmark under `base`, generated on the first call and reused afterwards.

    `groundable_share` replaces the generator's share of entities drawn in their image (default 0.4,
    as in the real data)."""
    out = base / f"synth-{posts}-{seed}-{groundable_share}"
    marker = out / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("posts") == posts:
        return out
    share = {} if groundable_share is None else {"groundable_share": groundable_share}
    generate(out, posts=posts, seed=seed, progress=False, force=out.exists(), **share)
    return out


def tiny_run_config(root: Path, **train) -> Config:
    """A training configuration of the tiny model on a synthetic dataset at `root`; `train` overrides
    `TrainConfig` fields."""
    settings = dict(epochs=2, batch_size=8, eval_batch_size=32, lr=3e-3, encoder_lr=3e-3, freeze_text_epochs=0,
                    seed=5, progress=False)
    settings.update(train)
    return Config(data=DataConfig(root=str(root)), model=tiny_config(feature_dim=64), train=TrainConfig(**settings))
