"""A simulated VinVL-like detector on the synthetic images (`mqspn.synth.render`).

`detect` proposes, per thing, a jittered box (usually IoU > 0.5 with the truth, sometimes a poor one,
and with probability `MISS` none at all), sometimes a looser duplicate and a part box (a head, a
logo's inner mark; IoU < 0.5 by construction), then false boxes on the background, with detector-like
labels and scores. `detector_arrays` turns this into the arrays of a VinVL `.npz` file, sorted by
score, with a cheap 64-d colour-histogram feature per box instead of VinVL's 2048-d one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mqspn.synth.render import Thing
from mqspn.synth.world import PALETTE

#: Detector class names per kind: whole object, then a part of it.
_LABELS = {
    "figure": (("man", "woman", "person", "boy", "girl"), ("head", "face", "shirt")),
    "figure_hat": (("man", "woman", "person"), ("hat", "head", "face")),
    "mountain": (("mountain", "hill"), ("snow", "rock")),
    "building": (("building", "house"), ("window", "wall")),
    "tower": (("tower", "building"), ("roof", "window")),
    "badge": (("sign", "logo"), ("letter", "logo")),
    "shield": (("logo", "shield", "sign"), ("logo", "letter")),
    "disc": (("logo", "circle", "sign"), ("letter", "dot")),
    "shoe": (("shoe", "sneaker"), ("logo", "lace")),
    "bottle": (("bottle",), ("label", "cap")),
    "gem": (("diamond", "jewel"), ("light",)),
    "star": (("star",), ("dot",)),
    "ring": (("ring", "circle"), ("dot",)),
    "blob": (("ball", "balloon"), ("light",)),
    "cross": (("sign", "cross"), ("line",)),
}
_BACKGROUND_LABELS = ("sky", "wall", "background", "floor", "grass", "cloud")
#: The detector's class list (the columns of `scores_all`).
CLASSES = tuple(sorted({name for whole, part in _LABELS.values() for name in whole + part} | set(_BACKGROUND_LABELS)))

MISS = 0.06  # chance that a thing gets no good proposal (keeps the oracle ceiling below 100)
POOR = 0.12  # chance that the main proposal is strongly jittered (often IoU < 0.5)
LABEL_NOISE = 0.1
MAX_BOXES = 16


@dataclass
class Detections:
    """Simulated detector output, unsorted: boxes [N, 4] float32 (x1 y1 x2 y2), scores [N], labels."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: list[str]


def detect(things: list[Thing], width: int, height: int, rng: np.random.Generator) -> Detections:
    """Simulated proposals for an image holding `things` (see the module docstring): at least 10 boxes,
    of which `detector_arrays` keeps the `MAX_BOXES` best."""
    boxes: list[np.ndarray] = []
    scores: list[float] = []
    labels: list[str] = []

    def add(box: np.ndarray, score: float, names: tuple[str, ...]) -> None:
        noisy = rng.random() < LABEL_NOISE
        boxes.append(box)
        scores.append(score)
        labels.append(str(rng.choice(CLASSES if noisy else names)))

    for thing in things:
        truth = np.array(thing.box, dtype=np.float64)
        whole, part = _LABELS[thing.look.kind]
        if rng.random() >= MISS:
            sigma = 0.2 if rng.random() < POOR else 0.05
            main_score = rng.uniform(0.45, 0.98)
            add(_jittered(truth, sigma, width, height, rng), main_score, whole)
            if rng.random() < 0.4:
                add(_jittered(truth, 0.12, width, height, rng), main_score * rng.uniform(0.4, 0.9), whole)
        if rng.random() < 0.5:
            add(_part(truth, rng), rng.uniform(0.2, 0.8), part)
    for _ in range(max(2, int(rng.integers(10, MAX_BOXES + 1)) - len(boxes))):
        add(_random_box(width, height, rng), rng.uniform(0.05, 0.55), _BACKGROUND_LABELS)
    return Detections(np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(scores, dtype=np.float32), labels)


def _jittered(box: np.ndarray, sigma: float, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """`box` with each edge moved by N(0, sigma * side), clipped to the image, at least 4 px wide/high."""
    w, h = box[2] - box[0], box[3] - box[1]
    moved = box + rng.normal(0.0, sigma, 4) * np.array([w, h, w, h])
    return _valid(moved, width, height)


def _part(box: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sub-box covering 15-40% of `box`'s area, so its IoU with `box` stays below 0.5."""
    w, h = box[2] - box[0], box[3] - box[1]
    fw = rng.uniform(0.4, 0.8)
    fh = rng.uniform(0.15, 0.4) / fw
    x1 = box[0] + rng.uniform(0, 1 - fw) * w
    y1 = box[1] + rng.uniform(0, 1 - min(fh, 1.0)) * h
    return np.array([x1, y1, x1 + fw * w, y1 + min(fh, 1.0) * h])


def _random_box(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    w, h = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
    x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
    return np.array([x1, y1, x1 + w, y1 + h])


def _valid(box: np.ndarray, width: int, height: int) -> np.ndarray:
    x1, y1 = np.clip(box[:2], 0, [width - 4, height - 4])
    x2, y2 = np.clip(box[2:], [x1 + 4, y1 + 4], [width, height])
    return np.array([x1, y1, x2, y2])


def box_features(pixels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """A 4x4x4 RGB histogram of each box's pixels, summing to 1. pixels: [H, W, 3] uint8, boxes: [N, 4] -> [N, 64].

    This stands in for VinVL's 2048-d region feature: cheap, but computed from the real pixels.
    """
    bins = (pixels // 64).astype(np.int64)
    codes = bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]
    out = np.zeros((len(boxes), 64), dtype=np.float32)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        crop = codes[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))]
        counts = np.bincount(crop.ravel(), minlength=64)
        out[i] = counts / max(1, counts.sum())
    return out


def detector_arrays(detections: Detections, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of a VinVL `.npz` file for `detections` on `pixels` ([H, W, 3] uint8), by score.

    Keys: `num_boxes`, `image_h`, `image_w` (int64 scalars), `bounding_boxes` [N, 4] float32,
    `box_features` [N, 64] float32 (`box_features`), `scores` [N] float32 (descending), `objects` [N]
    str, `attr_obj` [N] str ("<colour> <object>", the palette colour nearest the box's mean colour),
    `attr_scores` [N, 1] float32 and `scores_all` [N, len(CLASSES)] float32 (the score on the label's
    class, the rest spread evenly). At most `MAX_BOXES` boxes are kept.
    """
    order = np.argsort(-detections.scores, kind="stable")[:MAX_BOXES]
    boxes = detections.boxes[order]
    scores = detections.scores[order]
    labels = [detections.labels[i] for i in order]
    features = box_features(pixels, boxes)
    colours = _colour_names(features)
    scores_all = np.repeat(((1 - scores) / (len(CLASSES) - 1))[:, None], len(CLASSES), axis=1).astype(np.float32)
    scores_all[np.arange(len(labels)), [CLASSES.index(name) for name in labels]] = scores
    return {
        "num_boxes": np.int64(len(boxes)),
        "image_h": np.int64(pixels.shape[0]),
        "image_w": np.int64(pixels.shape[1]),
        "bounding_boxes": boxes,
        "box_features": features,
        "scores": scores,
        "objects": np.array(labels, dtype=str),
        "attr_obj": np.array([f"{c} {name}" for c, name in zip(colours, labels)], dtype=str),
        "attr_scores": (0.3 + 0.6 * scores[:, None]).astype(np.float32),
        "scores_all": scores_all,
    }


def _colour_names(features: np.ndarray) -> list[str]:
    """The palette colour nearest each box's mean colour, estimated from its histogram ([N, 64])."""
    levels = np.arange(4) * 64 + 32
    centres = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(64, 3)
    means = features @ centres
    palette = np.array(list(PALETTE.values()))
    nearest = ((means[:, None, :] - palette[None]) ** 2).sum(axis=-1).argmin(axis=1)
    return [list(PALETTE)[i] for i in nearest]
