"""Twitter-GMNER v2.0 and Twitter-FMNERG splits as lists of `Post`s with gold entities and boxes.

Folder layouts (spec section 2):
- `format="gmner"`: `root/txt/{split}.txt` (`token<TAB>tag`, types PER/LOC/ORG/OTHER) and
  `root/xml/<id>.xml` (one Pascal-VOC object per box, named by the entity's surface string).
- `format="fmnerg"`: `root/txt_fine/{split}.txt` (`token<TAB>coarse-tag<TAB>fine-tag`); `granularity`
  picks the column. FMNERG has no boxes of its own: they come from the GMNER v2.0 xml folder
  (`xml_dir`, default `root/xml` when it exists).

Linking: an entity's boxes are those of the xml objects whose name equals its surface string (words
joined by single spaces), in file order; mentions with the same string share them. A post without an xml
file has only ungroundable entities. Types are kept verbatim (e.g. `sports_team`, never truncated).

An xml object whose name is no entity string of its post is never dropped silently: by default it is a
`ValueError`; a caller that wants to go on (e.g. `mqspn data check`, which counts them) passes a list as
`unmatched` and receives one `UnmatchedObject` per such object.

Lenient decisions are those of `conll` (blank lines, I- after O starts an entity) and `voc` (decimal
coordinates, size 0 = unknown); everything else malformed is an error naming the file and line/object.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterable, Optional

from mqspn.data.conll import ConllPost, read_conll
from mqspn.data.voc import read_voc
from mqspn.types import Box, Entity, Post

SPLITS = ("train", "dev", "test")
GMNER_TYPES = ("PER", "LOC", "ORG", "OTHER")
FORMATS = ("gmner", "fmnerg")
GRANULARITIES = ("coarse", "fine")

_TEXT_DIR = {"gmner": "txt", "fmnerg": "txt_fine"}
_TAG_COLUMNS = {"gmner": 1, "fmnerg": 2}


@dataclass(frozen=True)
class UnmatchedObject:
    """An xml object whose name matches no entity surface string of its post (1-based `index`)."""

    xml: Path
    index: int
    name: str
    post_id: str

    def __str__(self) -> str:
        return (
            f"{self.xml}, object {self.index} ({self.name!r}): the name matches no entity of post "
            f"{self.post_id} (an object's name must be an entity's words joined by single spaces)"
        )


def split_file(root: str | Path, split: str, format: str = "gmner") -> Path:
    """The text file of `split`: `root/txt/{split}.txt` (gmner) or `root/txt_fine/{split}.txt` (fmnerg)."""
    _check_choice("split", split, SPLITS)
    _check_choice("format", format, FORMATS)
    return Path(root) / _TEXT_DIR[format] / f"{split}.txt"


def xml_folder(root: str | Path, format: str = "gmner", xml_dir: Optional[str | Path] = None) -> Path:
    """The folder of `<id>.xml` box files: `xml_dir` when given, else `root/xml`; errors when missing."""
    if xml_dir is not None:
        if not Path(xml_dir).is_dir():
            raise FileNotFoundError(f"{xml_dir}: xml folder not found")
        return Path(xml_dir)
    default = Path(root) / "xml"
    if default.is_dir():
        return default
    if format == "fmnerg":
        raise ValueError(
            f"{default}: not found; Twitter-FMNERG has no boxes of its own, pass the Twitter-GMNER v2.0 "
            f"xml folder (xml_dir=..., or --xml DIR on the command line)"
        )
    raise ValueError(f"{default}: xml folder not found; pass the folder of <id>.xml box files (--xml DIR)")


def read_split(
    root: str | Path,
    split: str,
    format: str = "gmner",
    granularity: str = "coarse",
    xml_dir: Optional[str | Path] = None,
    unmatched: Optional[list[UnmatchedObject]] = None,
) -> list[Post]:
    """Read one split (see the module docstring) into posts in file order.

    `granularity` is "coarse" or "fine" (fine only for fmnerg). Raises `FileNotFoundError` for a missing
    split file or `xml_dir`, `ValueError` for malformed input or an unmatched xml object unless
    `unmatched` is a list, which then collects them.
    """
    _check_choice("granularity", granularity, GRANULARITIES)
    path = split_file(root, split, format)
    if format == "gmner" and granularity == "fine":
        raise ValueError("Twitter-GMNER has coarse types only; fine types need format 'fmnerg'")
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: {split} split not found (a {format} dataset folder holds {_TEXT_DIR[format]}/{split}.txt)"
        )
    boxes_dir = xml_folder(root, format, xml_dir)
    column = GRANULARITIES.index(granularity)
    return [_post(conll, column, boxes_dir, unmatched) for conll in read_conll(path, _TAG_COLUMNS[format])]


def read_dataset(
    root: str | Path,
    format: str = "gmner",
    granularity: str = "coarse",
    xml_dir: Optional[str | Path] = None,
    unmatched: Optional[list[UnmatchedObject]] = None,
) -> dict[str, list[Post]]:
    """`{split: read_split(...)}` for every split in `SPLITS`; a missing split file is an error."""
    return {split: read_split(root, split, format, granularity, xml_dir, unmatched) for split in SPLITS}


def dataset_types(posts: Iterable[Post]) -> list[str]:
    """The sorted entity types found in `posts` (a stable order for label indices)."""
    return sorted({entity.type for post in posts for entity in post.entities})


def type_problem(post: Post, types: Collection[str], known: str = "the model's types") -> Optional[str]:
    """The message for the first entity of `post` whose type is not in `types` (named `known`), or None.

    Training, `mqspn evaluate` and `mqspn data check` share it, so an unknown type gets one verdict."""
    for entity in post.entities:
        if entity.type not in types:
            return (f"{post.entity_where(entity)}: post {post.id}: entity type {entity.type!r} is not among "
                    f"{known} ({', '.join(types)})")
    return None


def _post(conll: ConllPost, column: int, xml_dir: Path, unmatched: Optional[list[UnmatchedObject]]) -> Post:
    spans = conll.spans(column)
    texts = [" ".join(conll.words[start : end + 1]) for start, end, _ in spans]
    xml = xml_dir / f"{conll.id}.xml"
    size, objects = read_voc(xml) if xml.is_file() else (None, [])
    boxes: dict[str, list[Box]] = defaultdict(list)
    for index, (name, box) in enumerate(objects, start=1):
        if name not in texts:
            problem = UnmatchedObject(xml, index, name, conll.id)
            if unmatched is None:
                raise ValueError(f"{problem}; entity strings: {texts}")
            unmatched.append(problem)
        boxes[name].append(box)
    entities = [Entity(start, end, type_, list(boxes.get(text, []))) for (start, end, type_), text in zip(spans, texts)]
    return Post(conll.id, list(conll.words), entities, image_size=size, source=str(conll.path), line=conll.line)


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {list(choices)}")
