"""Writing a synthetic grounded benchmark in the exact Twitter-GMNER layout.

    out/
      txt/{train,dev,test}.txt     IMGID:<id>, token<TAB>BIO per word, blank line after each post
      xml/<id>.xml                 Pascal-VOC boxes named by entity string (posts with a visible entity)
      images/<id>.jpg              the post's image (JPEG, quality 90)
      proposals/<id>.jpg.npz       simulated VinVL proposals (keys as VinVL, 64-d features)
      synth.json                   marker and summary (seed, counts, ungroundable share, coverage)

Posts are planned one after another from one random stream (text, which mentions are visible, which
distractors join them); each image is then drawn from its own stream `(seed, 2, index)`, so the output
is byte-identical for a seed. Visibility is balanced on the fly so every split is close to
`1 - groundable_share` ungroundable entities (real data: about 60%).
"""
from __future__ import annotations

import io
import json
import multiprocessing
import shutil
import xml.etree.ElementTree as ET
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image
from tqdm import tqdm

from mqspn.boxes import IOU_THRESHOLD, iou_matrix
from mqspn.synth.detector import detect, detector_arrays
from mqspn.synth.render import Thing, clutter_look, draw_scene, image_size, place
from mqspn.synth.world import Appearance, Mention, World, build_world, compose_post

SPLITS = (("train", 0.70), ("dev", 0.15), ("test", 0.15))
GROUNDABLE_SHARE = 0.40
MAX_VISIBLE = 3  # visible (groundable) entities per image
TWICE = 0.04  # chance that a visible entity is drawn twice (two boxes)
DISTRACTORS = (0.3, 0.45, 0.25)  # P(0, 1, 2 distractor objects)
COVERAGE_TOP_K = 10
MARKER = "synth.json"
LAYOUT = ("txt", "xml", "images", "proposals")
MIN_POSTS = 10


@dataclass
class PlannedPost:
    """What one post says and shows. `drawn` pairs a look with the index of the mention it depicts
    (None for a distractor); `visible[i]` tells whether mention i is drawn (groundable)."""

    index: int
    id: str
    split: str
    words: list[str]
    tags: list[str]
    mentions: list[Mention]
    visible: list[bool]
    drawn: list[tuple[Appearance, Optional[int]]]


@dataclass
class RenderedPost:
    """The files of one post: JPEG bytes, proposal arrays, image size and each mention's gold boxes."""

    jpeg: bytes
    proposals: dict[str, np.ndarray]
    size: tuple[int, int]
    boxes: dict[int, list[tuple[int, int, int, int]]]


def generate(out_dir: str | Path, posts: int = 3000, seed: int = 0, progress: bool = True, force: bool = False,
             workers: int = 1, groundable_share: float = GROUNDABLE_SHARE) -> dict:
    """Write the benchmark to `out_dir` and return its summary (also saved as `out_dir/synth.json`).

    `out_dir` must be new, empty or (with `force`) a previous synth output, whose layout folders are
    then replaced. `groundable_share`: the share of entities drawn in their image (real data: about
    0.4). `workers` > 1 draws the images in that many processes; the files are the same
    byte for byte, since every image has its own random stream. Summary: `generator`, `complete`, `seed`, `posts`, `world` (entity count, ambiguous
    strings), `splits` (per split: posts, entities, groundable, ungroundable, boxes,
    ungroundable_share), `ungroundable_share` and `proposal_coverage` (share of groundable entities
    with a top-10 proposal of IoU > 0.5 with one of their boxes).
    """
    if posts < MIN_POSTS:
        raise ValueError(f"synth: --posts must be at least {MIN_POSTS} so every split has posts, got {posts}")
    if seed < 0:
        raise ValueError(f"synth: --seed must be a non-negative integer, got {seed}")
    if workers < 1:
        raise ValueError(f"synth: --workers must be at least 1, got {workers}")
    if not 0.0 <= groundable_share <= 1.0:
        raise ValueError(f"synth: groundable_share must be in [0, 1], got {groundable_share}")
    out = Path(out_dir)
    _prepare(out, force)
    world = build_world(np.random.default_rng([seed, 0]))
    plans = plan_posts(world, posts, np.random.default_rng([seed, 1]), groundable_share)
    texts: dict[str, list[str]] = {name: [] for name, _ in SPLITS}
    counts = {name: dict(posts=0, entities=0, groundable=0, ungroundable=0, boxes=0) for name, _ in SPLITS}
    covered = 0
    with _renderer(workers) as render:
        rendered_posts = tqdm(render(render_post, plans, [seed] * len(plans)), total=len(plans), desc="synth",
                              unit="post", disable=not progress)
        for plan, rendered in zip(plans, rendered_posts):
            texts[plan.split].append(_conll(plan))
            _write_post(out, plan, rendered)
            count = counts[plan.split]
            count["posts"] += 1
            count["entities"] += len(plan.mentions)
            count["groundable"] += sum(plan.visible)
            count["boxes"] += sum(len(b) for b in rendered.boxes.values())
            covered += _covered(rendered)
    for name, posts_text in texts.items():
        (out / "txt" / f"{name}.txt").write_text("".join(posts_text), encoding="utf-8")
    for count in counts.values():
        count["ungroundable"] = count["entities"] - count["groundable"]
        count["ungroundable_share"] = round(count["ungroundable"] / max(1, count["entities"]), 4)
    entities = sum(c["entities"] for c in counts.values())
    groundable = sum(c["groundable"] for c in counts.values())
    summary = {
        "generator": "mqspn synth",
        "complete": True,
        "seed": seed,
        "posts": posts,
        "world": {"entities": len(world.entities), "ambiguous": world.ambiguous},
        "splits": counts,
        "ungroundable_share": round(1 - groundable / entities, 4),
        "proposal_coverage": round(covered / max(1, groundable), 4),
    }
    (out / MARKER).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def plan_posts(world: World, posts: int, rng: np.random.Generator,
               groundable_share: float = GROUNDABLE_SHARE) -> list[PlannedPost]:
    """Plan `posts` posts in order: the first 70% train, then 15% dev and 15% test."""
    bounds = np.cumsum([round(posts * share) for _, share in SPLITS[:-1]])
    splits = [SPLITS[int(np.searchsorted(bounds, i, side="right"))][0] for i in range(posts)]
    seen = grounded = 0
    plans = []
    for index in range(posts):
        words, tags, mentions = compose_post(world, rng)
        visible = []
        for _ in mentions:
            # Steer toward the target share: a running deficit raises the chance, a surplus lowers it.
            chance = np.clip(groundable_share + 0.1 * (groundable_share * seen - grounded), 0.05, 0.95)
            visible.append(sum(visible) < MAX_VISIBLE and bool(rng.random() < chance))
            seen += 1
            grounded += visible[-1]
        drawn: list[tuple[Appearance, Optional[int]]] = []
        for i, mention in enumerate(mentions):
            if visible[i]:
                drawn += [(mention.entity.look, i)] * (2 if rng.random() < TWICE else 1)
        others = [e for e in world.entities if all(e is not m.entity for m in mentions)]
        for _ in range(rng.choice(len(DISTRACTORS), p=DISTRACTORS)):
            look = others[rng.integers(len(others))].look if rng.random() < 0.5 else clutter_look(rng)
            drawn.append((look, None))
        plans.append(PlannedPost(index, f"s{index:06d}", splits[index], words, tags, mentions, visible, drawn))
    return plans


def layout(plan: PlannedPost, seed: int):
    """-> (drawn, boxes, (width, height), rng): the post's things in drawing order with their boxes, the
    image size, and the random stream that goes on to draw the image (so a layout is reproducible alone)."""
    rng = np.random.default_rng([seed, 2, plan.index])
    width, height = image_size(rng)
    order = rng.permutation(len(plan.drawn))
    drawn = [plan.drawn[i] for i in order]
    return drawn, place([look.kind for look, _ in drawn], width, height, rng), (width, height), rng


def render_post(plan: PlannedPost, seed: int) -> RenderedPost:
    """Draw the post's image, run the simulated detector and collect the gold boxes of its mentions."""
    drawn, boxes, (width, height), rng = layout(plan, seed)
    things = [Thing(look, box) for (look, _), box in zip(drawn, boxes)]
    image = draw_scene(things, width, height, rng)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    pixels = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    proposals = detector_arrays(detect(things, width, height, rng), pixels)
    gold: dict[int, list[tuple[int, int, int, int]]] = {}
    for (_, mention), box in zip(drawn, boxes):
        if mention is not None:
            gold.setdefault(mention, []).append(box)
    return RenderedPost(buffer.getvalue(), proposals, (width, height), gold)


def _covered(rendered: RenderedPost) -> int:
    """How many of the post's groundable entities a top-k proposal covers (IoU > 0.5 with a gold box)."""
    top = rendered.proposals["bounding_boxes"][:COVERAGE_TOP_K]
    return sum(bool((iou_matrix(top, np.array(boxes)) > IOU_THRESHOLD).any()) for boxes in rendered.boxes.values())


@contextmanager
def _renderer(workers: int):
    """-> a `map` (in order): the built-in one, or a pool of `workers` processes. Spawned, not forked:
    the caller may have started torch's threads, and a forked copy of a threaded process can hang."""
    if workers == 1:
        yield map
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield lambda fn, *iterables: pool.map(fn, *iterables, chunksize=16)


def _prepare(out: Path, force: bool) -> None:
    """Make `out` ready: new or empty is fine; a previous synth output is replaced only with `force`."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ValueError(
                f"{out}: directory is not empty and holds no synthetic dataset (no {MARKER}); "
                f"refusing to write into it, choose a new or empty directory"
            )
        if not force:
            raise ValueError(f"{out}: already holds a synthetic dataset; pass --force (force=True) to overwrite it")
        for name in LAYOUT:
            shutil.rmtree(out / name, ignore_errors=True)
    for name in LAYOUT:
        (out / name).mkdir(parents=True, exist_ok=True)
    # Written first so that an interrupted run is still recognised (and overwritable) as synth output.
    (out / MARKER).write_text(json.dumps({"generator": "mqspn synth", "complete": False}) + "\n", encoding="utf-8")


def _conll(plan: PlannedPost) -> str:
    lines = [f"IMGID:{plan.id}"] + [f"{word}\t{tag}" for word, tag in zip(plan.words, plan.tags)]
    return "\n".join(lines) + "\n\n"


def _write_post(out: Path, plan: PlannedPost, rendered: RenderedPost) -> None:
    (out / "images" / f"{plan.id}.jpg").write_bytes(rendered.jpeg)
    # String arrays are `<U`, never objects, so the file loads with allow_pickle=False.
    np.savez(out / "proposals" / f"{plan.id}.jpg.npz", **rendered.proposals)
    if rendered.boxes:
        (out / "xml" / f"{plan.id}.xml").write_text(_voc(plan, rendered), encoding="utf-8")


def _voc(plan: PlannedPost, rendered: RenderedPost) -> str:
    """The Pascal-VOC xml of a post: one `<object>` per gold box, named by the mention's string."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = f"{plan.id}.jpg"
    size = ET.SubElement(root, "size")
    for key, value in zip(("width", "height", "depth"), (*rendered.size, 3)):
        ET.SubElement(size, key).text = str(value)
    for mention_index, boxes in sorted(rendered.boxes.items()):
        mention = plan.mentions[mention_index]
        for box in boxes:
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = " ".join(plan.words[mention.start : mention.end + 1])
            bndbox = ET.SubElement(obj, "bndbox")
            for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
                ET.SubElement(bndbox, key).text = str(value)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"

