"""Draw predicted (or gold) entities on their image: one coloured box and a label per grounded entity."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from mqspn.types import Post

COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"]


def draw_entities(image: Image.Image, post: Post, out: str | Path) -> Path:
    """Save `image` with the boxes of `post.entities` labelled "<words> / <type>" to `out` (PNG).

    Ungroundable entities are listed in a strip under the image, so every prediction is visible.
    """
    ungrounded = [e for e in post.entities if e.box is None]
    strip = 14 * (len(ungrounded) + 1)
    canvas = Image.new("RGB", (image.width, image.height + strip), "white")
    canvas.paste(image.convert("RGB"), (0, 0))
    pen = ImageDraw.Draw(canvas)
    for i, ent in enumerate(e for e in post.entities if e.box is not None):
        colour = COLOURS[i % len(COLOURS)]
        x1, y1, x2, y2 = ent.box
        label = f"{ent.text(post.words)} / {ent.type}"
        pen.rectangle((x1, y1, x2, y2), outline=colour, width=2)
        tx, ty = x1 + 2, max(0, y1 - 12)
        pen.rectangle(pen.textbbox((tx, ty), label), fill=colour)
        pen.text((tx, ty), label, fill="white")
    pen.text((2, image.height + 1), "not in the image:" if ungrounded else "all entities grounded", fill="black")
    for i, ent in enumerate(ungrounded):
        pen.text((2, image.height + 14 * (i + 1)), f"{ent.text(post.words)} / {ent.type}", fill="black")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out
