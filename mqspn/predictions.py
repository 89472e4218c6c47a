"""The predictions file: the project's public output format, read by `mqspn evaluate`.

JSON Lines, UTF-8, one post per line:

    {"id": "16_05_01_36", "entities": [{"start": 4, "end": 5, "type": "PER", "box": [12.0, 30.5, 200.0, 310.0], "score": 0.93}]}

- `id`: the post id (string), at most one line per id.
- `entities`: a list, possibly empty. Each entity has exactly the keys `start`, `end` (integer word
  indices, 0-based, `end` inclusive), `type` (string), `box` (`[x1, y1, x2, y2]` in original image
  pixels with x2 > x1 and y2 > y1, or null when the entity is predicted ungroundable) and, optionally,
  `score` (a number or null).
- Blank lines are ignored. Every other problem is a `ValueError` naming the file and line.
"""
from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any, Collection, Iterable, Optional, Sequence

from mqspn.textfile import read_text
from mqspn.types import Entity, Post, as_box

_REQUIRED = ("start", "end", "type", "box")
_OPTIONAL = ("score",)


def entity_to_json(entity: Entity) -> dict[str, Any]:
    """The JSON object of one predicted entity; an entity with several boxes is a `ValueError`."""
    if len(entity.boxes) > 1:
        raise ValueError(
            f"entity {entity.span} {entity.type}: a prediction has at most one box, got {len(entity.boxes)}"
        )
    return {
        "start": entity.start,
        "end": entity.end,
        "type": entity.type,
        "box": None if entity.box is None else [float(v) for v in entity.box],
        "score": None if entity.score is None else float(entity.score),
    }


def _is_number(value: Any) -> bool:
    # bool is an int subclass in Python but never a valid coordinate, index or score.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def entity_from_json(obj: Any, where: str) -> Entity:
    """Parse and check one entity object (format above); `where` prefixes every error message.

    Checks keys and value types and the box geometry; it does not know the post, so the span's range
    against the post's words and the type's membership are checked by `check_entity`.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: an entity must be a JSON object, got {type(obj).__name__}")
    missing = [key for key in _REQUIRED if key not in obj]
    if missing:
        raise ValueError(f"{where}: entity {obj} lacks key(s) {missing}")
    unknown = sorted(set(obj) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ValueError(f"{where}: entity has unknown key(s) {unknown}; allowed: {list(_REQUIRED + _OPTIONAL)}")
    start, end, type_, box, score = obj["start"], obj["end"], obj["type"], obj["box"], obj.get("score")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise ValueError(f"{where}: start and end must be integers, got {start!r} and {end!r}")
    if not 0 <= start <= end:
        raise ValueError(f"{where}: span [{start}, {end}] needs 0 <= start <= end")
    if not isinstance(type_, str) or not type_:
        raise ValueError(f"{where}: type must be a non-empty string, got {type_!r}")
    if box is not None and not (isinstance(box, list) and all(_is_number(v) for v in box)):
        raise ValueError(f"{where}: box must be null or a list [x1, y1, x2, y2] of numbers, got {box!r}")
    if score is not None and not (_is_number(score) and math.isfinite(score)):
        raise ValueError(f"{where}: score must be a finite number or null, got {score!r}")
    boxes = [] if box is None else [as_box(box, where)]
    return Entity(start, end, type_, boxes, None if score is None else float(score))


def check_entity(entity: Entity, n_words: Optional[int], types: Optional[Collection[str]], where: str) -> None:
    """Raise `ValueError` when the span runs past `n_words` or the type is not in `types` (None: skip)."""
    if n_words is not None and entity.end >= n_words:
        raise ValueError(f"{where}: span [{entity.start}, {entity.end}] is out of range for a post of {n_words} words")
    if types is not None and entity.type not in types:
        raise ValueError(f"{where}: unknown type {entity.type!r}; expected one of {sorted(types)}")


def read_predictions(
    path: str | os.PathLike,
    gold: Optional[Sequence[Post]] = None,
    types: Optional[Collection[str]] = None,
) -> dict[str, list[Entity]]:
    """Read a predictions file into `{post id: [Entity, ...]}` (file order), checking every line.

    With `gold`, ids must be gold post ids and spans must lie inside the post's words; with `types`,
    entity types must be among them. Posts of `gold` without a line are simply absent from the result.
    """
    path = Path(path)
    n_words = None if gold is None else {post.id: len(post.words) for post in gold}
    result: dict[str, list[Entity]] = {}
    first_line: dict[str, int] = {}
    with io.StringIO(read_text(path), newline=None) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
            post_id, raw_entities = _read_post_object(obj, where)
            if post_id in first_line:
                raise ValueError(f"{where}: post id {post_id!r} already appeared on line {first_line[post_id]}")
            if n_words is not None and post_id not in n_words:
                raise ValueError(f"{where}: post id {post_id!r} is not in the gold data")
            entities = []
            for index, raw in enumerate(raw_entities):
                entity_where = f"{where}: entity {index}"
                entity = entity_from_json(raw, entity_where)
                check_entity(entity, None if n_words is None else n_words[post_id], types, entity_where)
                entities.append(entity)
            first_line[post_id] = number
            result[post_id] = entities
    return result


def _read_post_object(obj: Any, where: str) -> tuple[str, list]:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: a line must be a JSON object, got {type(obj).__name__}")
    if set(obj) != {"id", "entities"}:
        raise ValueError(f'{where}: a line needs exactly the keys "id" and "entities", got {sorted(obj)}')
    if not isinstance(obj["id"], str):
        raise ValueError(f"{where}: id must be a string, got {obj['id']!r}")
    if not isinstance(obj["entities"], list):
        raise ValueError(f"{where}: entities must be a list, got {type(obj['entities']).__name__}")
    return obj["id"], obj["entities"]


def write_predictions(path: str | os.PathLike, items: Iterable[tuple[str, Sequence[Entity]]]) -> None:
    """Write `(post id, entities)` pairs as a predictions file, atomically (temp file + `os.replace`).

    A repeated post id is a `ValueError` and leaves any existing file at `path` untouched.
    """
    path = Path(path)
    # A sibling temp file (not tempfile's, which is created mode 0600) so the result gets the usual mode.
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    seen: set[str] = set()
    try:
        with temp.open("w", encoding="utf-8") as handle:
            for post_id, entities in items:
                if post_id in seen:
                    raise ValueError(f"{path}: post id {post_id!r} given twice")
                seen.add(post_id)
                record = {"id": post_id, "entities": [entity_to_json(e) for e in entities]}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
