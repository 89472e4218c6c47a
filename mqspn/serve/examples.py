"""Example posts for the web page, drawn by `mqspn.synth` when first asked for (no image files to ship).

They are the first posts of the synthetic benchmark (seed 0) that show an entity, with the simulated
detector's boxes as proposals: the same kind of input the demo model was trained on.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

COUNT = 3
SEED = 0


@dataclass(frozen=True)
class ExamplePost:
    id: str
    text: str
    jpeg: bytes
    boxes: list[list[float]]  # the simulated detector's boxes, best first


@functools.cache
def example_posts() -> dict[str, ExamplePost]:
    """-> {id: example}; drawn once (about 0.3 s), then kept."""
    from mqspn.synth.generate import plan_posts, render_post
    from mqspn.synth.world import build_world

    world = build_world(np.random.default_rng([SEED, 0]))
    # Seeds as `mqspn.synth.generate.generate` uses them, so these are the benchmark's own first posts.
    plans = [p for p in plan_posts(world, 20, np.random.default_rng([SEED, 1])) if any(p.visible)][:COUNT]
    examples = {}
    for plan in plans:
        rendered = render_post(plan, SEED)
        boxes = rendered.proposals["bounding_boxes"].astype(np.float64).round(1).tolist()  # float32 prints 48.79999
        examples[plan.id] = ExamplePost(plan.id, " ".join(plan.words), rendered.jpeg, boxes)
    return examples
