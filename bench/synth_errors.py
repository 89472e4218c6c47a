"""Where a model's groundings go wrong on the synthetic benchmark, judged against the generator's scenes.

    .venv/bin/python bench/synth_errors.py RUN [--synth demo_out/synth] [--split test]

RUN is a training run directory (its `<split>_predictions.jsonl`, e.g. `test_predictions.jsonl`) or a
predictions file. The benchmark is planned again from `synth.json`'s seed and post count (byte-identical
by construction), so every predicted box can be traced to the object drawn there. Each prediction whose
span matches a mention is counted as one of:

    ok box / ok None              correct grounding
    visible, predicted None       the entity is drawn, the model says "not in the image"
    <G|U>: <what it grounded to>  G: the entity is visible, U: it is not; the box lies on another mention's
                                  object, on another entity's look (a distractor; same type or other type),
                                  or on meaningless clutter
    own object, poor IoU          the right object, but a box with IoU <= 0.5 (a looser or shifted proposal)
    box on nothing                a box that overlaps no drawn object
    span wrong                    no mention has the predicted span
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from mqspn.boxes import IOU_THRESHOLD, iou_matrix
from mqspn.predictions import read_predictions
from mqspn.synth.generate import MARKER, layout, plan_posts
from mqspn.synth.world import build_world


def classify(plan, drawn, boxes, entity, looks: dict) -> str:
    """The error class (module docstring) of one predicted entity of a planned post."""
    index = next((i for i, m in enumerate(plan.mentions) if (m.start, m.end) == entity.span), None)
    if index is None:
        return "span wrong"
    own = [box for (_, mention), box in zip(drawn, boxes) if mention == index]
    if entity.box is None:
        return "visible, predicted None" if own else "ok None"
    if own and (iou_matrix(np.array([entity.box]), np.array(own)) > IOU_THRESHOLD).any():
        return "ok box"
    overlap = iou_matrix(np.array([entity.box]), np.array(boxes))[0]
    if overlap.max() < 0.3:
        return "box on nothing"
    look, mention = drawn[int(overlap.argmax())]
    if mention == index:
        return "own object, poor IoU"
    owner_type = looks.get(look)
    entity_type = plan.mentions[index].entity.type
    if mention is not None:
        what = "another mention's object"
    elif owner_type is None:
        what = "clutter"
    else:
        what = "another entity's look"
    if owner_type is not None:
        what += ", same type" if owner_type == entity_type else ", other type"
    return f"{'G' if own else 'U'}: {what}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory or predictions .jsonl")
    parser.add_argument("--synth", default="demo_out/synth", help="the benchmark folder (holds synth.json)")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    summary = json.loads((Path(args.synth) / MARKER).read_text())
    if not summary.get("complete"):
        raise SystemExit(f"{args.synth}: {MARKER} marks an incomplete synthetic benchmark; generate it again")
    run = Path(args.run)
    predictions = read_predictions(run / f"{args.split}_predictions.jsonl" if run.is_dir() else run)
    seed = summary["seed"]
    world = build_world(np.random.default_rng([seed, 0]))
    looks = {e.look: e.type for e in world.entities}
    counts: Counter = Counter()
    for plan in plan_posts(world, summary["posts"], np.random.default_rng([seed, 1])):
        if plan.split != args.split:
            continue
        drawn, boxes, _, _ = layout(plan, seed)
        for entity in predictions.get(plan.id, []):
            counts[classify(plan, drawn, boxes, entity, looks)] += 1
    width = max(len(k) for k in counts)
    for name, count in counts.most_common():
        print(f"{count:6d}  {name:{width}s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
