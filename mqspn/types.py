"""The data model every module speaks: a post, its entities and the candidate regions of its image.

Word indices are 0-based and `end` is inclusive. Boxes are `(x1, y1, x2, y2)` in original image pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

Box = tuple[float, float, float, float]


def as_box(values: Sequence[float], where: str = "box") -> Box:
    """Validate and convert four numbers into a `Box`; raises `ValueError` naming `where`."""
    if len(values) != 4:
        raise ValueError(f"{where}: a box needs 4 numbers [x1, y1, x2, y2], got {list(values)!r}")
    x1, y1, x2, y2 = (float(v) for v in values)
    if not all(np.isfinite([x1, y1, x2, y2])):
        raise ValueError(f"{where}: box {[x1, y1, x2, y2]} has a non-finite coordinate")
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"{where}: box {[x1, y1, x2, y2]} has x2 <= x1 or y2 <= y1")
    return (x1, y1, x2, y2)


def text_words(text: object) -> list[str]:
    """The words of a post given as a string (split on white space) or a word list; `ValueError` for
    anything a dataset file could not hold: no words, an empty word, a word with white space, a non-string."""
    if isinstance(text, str):
        words = text.split()
    elif isinstance(text, (list, tuple)) and all(isinstance(w, str) for w in text):
        words = list(text)
        bad = [w for w in words if not w or w != "".join(w.split())]
        if bad:
            raise ValueError(f"word {bad[0]!r}: a word must be non-empty and without white space "
                             "(give the text as one string to split it on white space)")
    else:
        raise ValueError(f"text must be a string or a list of word strings, got {type(text).__name__}")
    if not words:
        raise ValueError("empty text: nothing to predict")
    return words


@dataclass
class Entity:
    """A named entity mention: words `start..end` (inclusive) of a post, its type and its image boxes.

    Gold entities carry every annotated box (`boxes`, empty when ungroundable). A predicted entity has at
    most one box and a `score`.
    """

    start: int
    end: int
    type: str
    boxes: list[Box] = field(default_factory=list)
    score: Optional[float] = None

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)

    @property
    def groundable(self) -> bool:
        return bool(self.boxes)

    @property
    def box(self) -> Optional[Box]:
        """The single box of a prediction (the first gold box for a gold entity), or None."""
        return self.boxes[0] if self.boxes else None

    def text(self, words: Sequence[str]) -> str:
        """The surface string: the entity's words joined by single spaces (as the xml names are)."""
        return " ".join(words[self.start : self.end + 1])


@dataclass
class Region:
    """A candidate image region from a detector: box in pixels, detector score and class label.

    `features` holds the detector's own feature vector (VinVL: 2048-d) when the source provides one.
    """

    box: Box
    score: float = 1.0
    label: str = ""
    features: Optional[np.ndarray] = None


@dataclass
class Post:
    """A post: its id, its words, its gold entities and the file name of its image (`<id>.jpg`)."""

    id: str
    words: list[str]
    entities: list[Entity] = field(default_factory=list)
    image: Optional[str] = None
    image_size: Optional[tuple[int, int]] = None  # (width, height) from the xml, when known
    # Where the post was read (set by the dataset readers), so that errors met later name the file and line.
    source: Optional[str] = field(default=None, compare=False, repr=False)
    line: Optional[int] = field(default=None, compare=False, repr=False)  # the IMGID header's line

    def __post_init__(self) -> None:
        if self.image is None:
            self.image = f"{self.id}.jpg"

    @property
    def where(self) -> str:
        """`<file>:<line>: post <id>` for a post read from a file, else `post <id>`."""
        return f"{self.source}:{self.line}: post {self.id}" if self.source else f"post {self.id}"

    def entity_where(self, entity: Entity) -> str:
        """`<file>:<line>` of the entity's first word (word lines follow the header), else `post <id>`."""
        return f"{self.source}:{self.line + 1 + entity.start}" if self.source else f"post {self.id}"

    def __str__(self) -> str:
        ents = ", ".join(
            f"{e.text(self.words)!r}/{e.type}/{'None' if e.box is None else [round(v) for v in e.box]}"
            for e in self.entities
        )
        return f"Post {self.id}: {' '.join(self.words)} -> [{ents}]"
