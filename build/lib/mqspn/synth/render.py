"""Drawing synthetic images.

An image is a muted background with faint clutter and a few `Thing`s: simple shapes drawn from an
`Appearance` (entity looks, or meaningless clutter shapes). A thing's box `(x1, y1, x2, y2)` is in
pixel edges (ints, `0 <= x1 < x2 <= width`): the shape touches all four sides, so the box is tight.
The simulated detector that proposes boxes on these images is `mqspn.synth.detector`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from mqspn.synth.world import PALETTE, PATTERNS, SKIN, Appearance

BoxInt = tuple[int, int, int, int]

#: Width / height of each shape kind (varied +-10% per drawing).
ASPECT = {
    "figure": 0.5, "figure_hat": 0.5, "mountain": 1.5, "building": 0.7, "tower": 0.4, "badge": 1.0,
    "shield": 0.85, "disc": 1.0, "shoe": 1.7, "bottle": 0.45, "gem": 1.1,
    "star": 1.0, "ring": 1.0, "blob": 1.4, "cross": 1.0,
}
CLUTTER_KINDS = ("star", "ring", "blob", "cross")

SIZES = (192, 208, 224, 240, 256)
_DOOR = (45, 35, 30)  # every building has a dark door, which sets it apart from a badge


@dataclass(frozen=True)
class Thing:
    """One object drawn in an image: its look and its tight box in pixel edges."""

    look: Appearance
    box: BoxInt


def clutter_look(rng: np.random.Generator) -> Appearance:
    """A meaningless shape in random palette colours (a distractor that is no entity)."""
    fill, mark = rng.choice(len(PALETTE), size=2, replace=False)
    names = list(PALETTE)
    return Appearance(str(rng.choice(CLUTTER_KINDS)), names[fill], names[mark], str(rng.choice(PATTERNS)))


def image_size(rng: np.random.Generator) -> tuple[int, int]:
    """A random `(width, height)` among `SIZES`."""
    width, height = rng.choice(SIZES, size=2)
    return int(width), int(height)


def place(kinds: list[str], width: int, height: int, rng: np.random.Generator) -> list[BoxInt]:
    """Boxes for shapes of `kinds`, inside the image and overlapping each other little.

    Sizes shrink as more shapes share the image; a shape that finds no free spot in 40 tries is
    shrunk and tried again, and after that placed anyway (a small overlap is still a valid scene).
    """
    shrink = 1.0 / max(1.0, 0.55 * len(kinds)) ** 0.5
    boxes: list[BoxInt] = []
    for kind in kinds:
        scale = rng.uniform(0.35, 0.6) * shrink
        for attempt in range(5):
            h = max(16, int(height * scale * 0.85**attempt))
            w = max(12, min(int(h * ASPECT[kind] * rng.uniform(0.9, 1.1)), int(0.7 * width)))
            h = min(h, int(0.9 * height))
            candidates = [
                (x, y, x + w, y + h)
                for x, y in zip(rng.integers(0, width - w + 1, 40), rng.integers(0, height - h + 1, 40))
            ]
            free = [c for c in candidates if all(_overlap(c, b) < 0.15 for b in boxes)]
            if free or attempt == 4:
                boxes.append(tuple(int(v) for v in (free or candidates)[0]))
                break
    return boxes


def _overlap(a: BoxInt, b: BoxInt) -> float:
    """Intersection over the smaller box's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


def draw_scene(things: list[Thing], width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A muted gradient background with faint clutter, the things in order, then mild pixel noise."""
    top, bottom = (rng.integers(140, 225, 3) for _ in range(2))
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    background = (top * (1 - ramp) + bottom * ramp).repeat(width, axis=1)
    image = Image.fromarray(background.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(2, 5)):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        faint = tuple(int(v) for v in np.clip(bottom + rng.integers(-25, 26, 3), 0, 255))
        draw.rectangle((x, y, x + int(rng.integers(10, 80)), y + int(rng.integers(10, 80))), fill=faint)
    for thing in things:
        draw_thing(draw, thing.look, thing.box, rng)
    noisy = np.asarray(image, dtype=np.int16) + rng.integers(-6, 7, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def draw_thing(draw: ImageDraw.ImageDraw, look: Appearance, box: BoxInt, rng: np.random.Generator) -> None:
    """Draw one shape of `look.kind` filling `box`, with its mark pattern; colours jittered slightly."""
    fill, mark = _jitter(PALETTE[look.fill], rng), _jitter(PALETTE[look.mark], rng)
    x1, y1 = box[0], box[1]
    x2, y2 = box[2] - 1, box[3] - 1  # PIL coordinates are inclusive
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2
    kind = look.kind
    if kind in ("figure", "figure_hat"):
        d = min(w, int(0.4 * h))
        draw.rounded_rectangle((x1, y1 + int(0.9 * d), x2, y2), radius=max(1, w // 5), fill=fill)
        draw.ellipse((cx - d / 2, y1, cx + d / 2, y1 + d), fill=SKIN[look.skin])
        if kind == "figure_hat":
            draw.rectangle((cx - d / 2, y1, cx + d / 2, y1 + d * 0.3), fill=mark)
        area = (x1, y1 + d, x2, y2)
    elif kind == "mountain":
        draw.polygon([(x1, y2), (cx, y1), (x2, y2)], fill=fill)
        area = (cx - 0.16 * w, y1 + 0.5 * h, cx + 0.16 * w, y1 + 0.85 * h)
    elif kind == "building":
        draw.rectangle((x1, y1, x2, y2), fill=fill)
        draw.rectangle((cx - 0.12 * w, y2 - 0.25 * h, cx + 0.12 * w, y2), fill=_DOOR)
        area = (x1 + 0.2 * w, y1 + 0.15 * h, x2 - 0.2 * w, y2 - 0.35 * h)
    elif kind == "tower":
        draw.polygon([(x1, y1 + 0.25 * h), (cx, y1), (x2, y1 + 0.25 * h)], fill=mark)
        draw.rectangle((x1, y1 + 0.25 * h, x2, y2), fill=fill)
        area = (x1, y1 + 0.35 * h, x2, y2 - 0.1 * h)
    elif kind == "badge":
        draw.rounded_rectangle((x1, y1, x2, y2), radius=max(1, w // 6), fill=fill, outline=mark, width=max(2, w // 12))
        area = (x1 + 0.25 * w, y1 + 0.25 * h, x2 - 0.25 * w, y2 - 0.25 * h)
    elif kind == "shield":
        draw.polygon([(x1, y1), (x2, y1), (x2, y1 + 0.55 * h), (cx, y2), (x1, y1 + 0.55 * h)], fill=fill)
        area = (x1 + 0.2 * w, y1 + 0.15 * h, x2 - 0.2 * w, y1 + 0.6 * h)
    elif kind in ("disc", "blob"):
        draw.ellipse((x1, y1, x2, y2), fill=fill)
        area = (x1 + 0.28 * w, y1 + 0.28 * h, x2 - 0.28 * w, y2 - 0.28 * h)
    elif kind == "shoe":
        draw.polygon(
            [(x1, y2), (x2, y2), (x2, y1 + 0.55 * h), (x1 + 0.55 * w, y1 + 0.35 * h), (x1 + 0.45 * w, y1), (x1, y1)],
            fill=fill,
        )
        area = (x1 + 0.05 * w, y1 + 0.6 * h, x2 - 0.05 * w, y2 - 0.05 * h)
    elif kind == "bottle":
        draw.rectangle((cx - 0.18 * w, y1, cx + 0.18 * w, y1 + 0.3 * h), fill=mark)
        draw.rounded_rectangle((x1, y1 + 0.28 * h, x2, y2), radius=max(1, w // 4), fill=fill)
        area = (x1, y1 + 0.45 * h, x2, y2 - 0.15 * h)
    elif kind == "gem":
        girdle = y1 + 0.35 * h
        draw.polygon([(x1 + 0.25 * w, y1), (x2 - 0.25 * w, y1), (x2, girdle), (cx, y2), (x1, girdle)], fill=fill)
        area = (cx - 0.2 * w, y1 + 0.1 * h, cx + 0.2 * w, y1 + 0.5 * h)
    elif kind == "star":
        angles = np.pi * (np.arange(10) / 5 - 0.5)
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        cy = y1 + h / 2
        points = [(cx + r * w / 2 * np.cos(a), cy + r * h / 2 * np.sin(a)) for r, a in zip(radii, angles)]
        draw.polygon(points, fill=fill)
        area = (cx - 0.12 * w, y1 + 0.4 * h, cx + 0.12 * w, y1 + 0.64 * h)
    elif kind == "ring":
        draw.ellipse((x1, y1, x2, y2), outline=fill, width=max(2, w // 7))
        area = (x1 + 0.35 * w, y1 + 0.35 * h, x2 - 0.35 * w, y2 - 0.35 * h)
    elif kind == "cross":
        draw.rectangle((x1, y1 + 0.35 * h, x2, y2 - 0.35 * h), fill=fill)
        draw.rectangle((x1 + 0.35 * w, y1, x2 - 0.35 * w, y2), fill=fill)
        area = (x1 + 0.38 * w, y1 + 0.38 * h, x2 - 0.38 * w, y2 - 0.38 * h)
    else:
        raise ValueError(f"draw_thing: unknown shape kind {kind!r}; known kinds: {sorted(ASPECT)}")
    _draw_pattern(draw, look.pattern, area, mark)


def _draw_pattern(draw: ImageDraw.ImageDraw, pattern: str, area: tuple[float, ...], colour: tuple[int, ...]) -> None:
    ax1, ay1, ax2, ay2 = area
    aw, ah = ax2 - ax1, ay2 - ay1
    if pattern == "hstripe":
        draw.rectangle((ax1, ay1 + 0.3 * ah, ax2, ay2 - 0.3 * ah), fill=colour)
    elif pattern == "vstripe":
        draw.rectangle((ax1 + 0.33 * aw, ay1, ax2 - 0.33 * aw, ay2), fill=colour)
    elif pattern == "dot":
        r = 0.3 * min(aw, ah)
        cx, cy = (ax1 + ax2) / 2, (ay1 + ay2) / 2
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        raise ValueError(f"draw_thing: unknown pattern {pattern!r}; known patterns: {list(PATTERNS)}")


def _jitter(colour: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, ...]:
    return tuple(int(v) for v in np.clip(np.array(colour) + rng.integers(-12, 13, 3), 0, 255))
