"""Candidate regions of an image ("proposals"): VinVL `.npz` files, a boxes JSON file, or selective search.

Every source answers `regions(image_name) -> list[Region]`, sorted by score (descending), at most `top_k`;
`image_name` is `Post.image`, e.g. "797970.jpg". Boxes are `(x1, y1, x2, y2)` in original image pixels.

VinVL files (one per image, `<image_name>.npz`, e.g. `797970.jpg.npz`) are plain numpy archives:
- `bounding_boxes`: [N, 4] float, x1 y1 x2 y2 pixels; `scores`: [N] detector scores (required);
- `num_boxes`: int scalar, equal to N (checked when present);
- `image_h`, `image_w`: int scalars, the image size the boxes refer to (optional, both or neither);
- `objects`: [N] class names (optional; labels are "" without it);
- `box_features`: [N, D] float (VinVL: D = 2048), required only when features are asked for;
- `attr_obj`, `attr_scores`, `scores_all`: present in real files, not read.

Files are read lazily, one image at a time, when its regions are first asked for.
"""
from __future__ import annotations

import functools
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from mqspn.textfile import read_text
from mqspn.types import Region, as_box

#: Where users get real proposals and images; quoted by every "file not found" error.
PROPOSALS_HELP = (
    "VinVL proposal files (<image>.npz, e.g. 797970.jpg.npz) and the tweet images are linked from the "
    "NUSTM/GMNER README (https://github.com/NUSTM/GMNER); without them, use a boxes JSON file or the "
    "built-in selective-search proposer"
)

OPENCV_HELP = "pip install opencv-contrib-python-headless (or pip install 'mqspn[proposer]')"

#: Images whose regions each source keeps in memory (VinVL with 2048-d features: ~150 KB an image at k=18).
CACHE_SIZE = 256


@runtime_checkable
class ProposalSource(Protocol):
    """Anything that lists the candidate regions of an image."""

    def regions(self, image_name: str) -> list[Region]:
        """Regions of image `image_name` (e.g. "797970.jpg"), sorted by score descending, at most top_k."""
        ...


def _check_top_k(top_k: Optional[int]) -> None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer (or None for all regions), got {top_k!r}")


# ---------------------------------------------------------------------------------------------- VinVL


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    # allow_pickle stays False (numpy's default): unpickling a downloaded file can run arbitrary code, and
    # the real VinVL files store `objects` as fixed-width unicode arrays, so they never need it.
    try:
        npz = np.load(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable .npz (zip) file, maybe truncated or corrupt ({err})") from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: holds a single array, not an .npz archive of named arrays")
    return npz


def _array(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except KeyError:
        raise ValueError(f"{path}: missing key {key!r}; the file has {sorted(npz.files)}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        hint = (
            " (pickled object arrays are refused because loading them can run arbitrary code; "
            "save class names as a string array)" if "allow_pickle" in str(err) else ""
        )
        raise ValueError(f"{path}: cannot read array {key!r}: {err}{hint}") from err


def _scalar_int(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> int:
    value = _array(npz, key, path)
    if value.size != 1 or value.dtype.kind not in "iu":
        raise ValueError(f"{path}: {key!r} must be one integer, got {value!r}")
    return int(value.item())


def _numeric(value: np.ndarray, key: str, shape: str, path: Path) -> np.ndarray:
    if value.dtype.kind not in "iuf":
        raise ValueError(f"{path}: {key!r} must be numbers ({shape}), got dtype {value.dtype}")
    if not np.isfinite(value).all():
        bad = np.argwhere(~np.isfinite(value))[0].tolist()
        raise ValueError(f"{path}: {key!r} has a non-finite value at index {bad}")
    return value


def _image_size(npz: np.lib.npyio.NpzFile, path: Path) -> Optional[tuple[int, int]]:
    present = [key for key in ("image_w", "image_h") if key in npz.files]
    if not present:
        return None
    if len(present) == 1:
        raise ValueError(f"{path}: has {present[0]!r} but not its partner; give both image_w and image_h or neither")
    width, height = _scalar_int(npz, "image_w", path), _scalar_int(npz, "image_h", path)
    if width < 1 or height < 1:
        raise ValueError(f"{path}: image size {width} x {height} is not positive")
    return (width, height)


def read_vinvl(
    path: str | Path, top_k: Optional[int] = None, with_features: bool = False
) -> tuple[list[Region], Optional[tuple[int, int]]]:
    """Read one VinVL-style `.npz` file (format in the module docstring).

    Returns (regions, (width, height) or None): the `top_k` best regions (all when None), sorted by score
    descending. Files whose scores are not sorted are re-sorted (stable, so ties keep the file's order).
    With `with_features`, each region carries its `box_features` row ([D] float32 view).
    Boxes of zero width or height are kept as they are: detectors that count pixels inclusively write a
    one-pixel box that way, and IoU with them is 0, so they are never a positive. Inverted boxes
    (x2 < x1 or y2 < y1), shape or count mismatches and non-finite numbers raise `ValueError` naming
    the file; a missing file raises `FileNotFoundError`.
    """
    path = Path(path)
    _check_top_k(top_k)
    with _open_npz(path) as npz:
        boxes = _numeric(_array(npz, "bounding_boxes", path), "bounding_boxes", "[N, 4]", path)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{path}: 'bounding_boxes' must be N x 4 (x1 y1 x2 y2), got shape {boxes.shape}")
        n = len(boxes)
        scores = _numeric(_array(npz, "scores", path), "scores", "[N]", path)
        if scores.shape != (n,):
            raise ValueError(f"{path}: 'scores' has shape {scores.shape}, expected ({n},) for {n} boxes")
        num_boxes = _scalar_int(npz, "num_boxes", path) if "num_boxes" in npz.files else n
        if num_boxes != n:
            raise ValueError(f"{path}: num_boxes = {num_boxes} but 'bounding_boxes' has {n} rows")
        labels = [""] * n
        if "objects" in npz.files:
            objects = _array(npz, "objects", path)
            if objects.dtype.kind not in "US" or objects.shape != (n,):
                raise ValueError(
                    f"{path}: 'objects' must be {n} strings, got dtype {objects.dtype}, shape {objects.shape}"
                )
            labels = [o.decode() if isinstance(o, bytes) else str(o) for o in objects.tolist()]
        features = None
        if with_features:
            features = _numeric(_array(npz, "box_features", path), "box_features", "[N, D]", path)
            if features.ndim != 2 or len(features) != n:
                raise ValueError(f"{path}: 'box_features' has shape {features.shape}, expected ({n}, D) for {n} boxes")
        size = _image_size(npz, path)

    inverted = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if len(inverted):
        i = int(inverted[0])
        raise ValueError(f"{path}: box {i} {boxes[i].tolist()} has x2 < x1 or y2 < y1 ({len(inverted)} such boxes)")
    order = np.argsort(-scores, kind="stable")[:top_k]
    if features is not None:
        features = np.asarray(features[order], dtype=np.float32)
    regions = [
        Region(
            box=tuple(float(v) for v in boxes[i]),
            score=float(scores[i]),
            label=labels[i],
            features=None if features is None else features[rank],
        )
        for rank, i in enumerate(order)
    ]
    return regions, size


class VinvlProposals(ProposalSource):
    """VinVL proposals from a folder of `<image_name>.npz` files, read on demand (recent images cached).

    Constructing it opens no file, so a folder of 9,000 images costs nothing until regions are asked for.
    """

    def __init__(self, directory: str | Path, top_k: int, with_features: bool = False) -> None:
        _check_top_k(top_k)
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"proposal folder {self.directory} does not exist; {PROPOSALS_HELP}")
        self.top_k, self.with_features = top_k, with_features
        self._read = functools.lru_cache(maxsize=CACHE_SIZE)(self._read_uncached)

    def path_for(self, image_name: str) -> Path:
        return self.directory / f"{image_name}.npz"

    def exists(self, image_name: str) -> bool:
        return self.path_for(image_name).is_file()

    def _read_uncached(self, image_name: str) -> tuple[tuple[Region, ...], Optional[tuple[int, int]]]:
        path = self.path_for(image_name)
        if not path.is_file():
            raise FileNotFoundError(f"no proposals for image {image_name}: {path} does not exist; {PROPOSALS_HELP}")
        regions, size = read_vinvl(path, self.top_k, self.with_features)
        return tuple(regions), size

    def regions(self, image_name: str) -> list[Region]:
        return list(self._read(image_name)[0])

    def image_size(self, image_name: str) -> Optional[tuple[int, int]]:
        """(width, height) the file's boxes refer to, or None when the file does not say."""
        return self._read(image_name)[1]


# ------------------------------------------------------------------------------------ fit to the image

#: Pixels by which the image size a proposal file records may differ from the image (rounding).
SIZE_TOLERANCE = 2


class ProposalWarning(UserWarning):
    """A post's proposals give its entities no region to be grounded in."""


def check_size_fit(proposal_size: Optional[tuple[int, int]], image_size: tuple[int, int], proposals: str,
                   image: str) -> None:
    """Refuse proposals made for an image of another size (another image, or another copy of it): their
    boxes would point at the wrong pixels. A difference of up to `SIZE_TOLERANCE` pixels is rounding."""
    if proposal_size is None:
        return
    if any(abs(a - b) > SIZE_TOLERANCE for a, b in zip(proposal_size, image_size)):
        raise ValueError(f"{proposals} was made for a {proposal_size[0]}x{proposal_size[1]} image but {image} is "
                         f"{image_size[0]}x{image_size[1]}: its boxes do not belong to this image; use the "
                         "proposals made for it")


def fit_regions(proposals: Any, image_name: str, regions: list[Region], image_size: tuple[int, int],
                image: str) -> list[Region]:
    """The `regions` of `proposals` (a `ProposalSource`, a file path, or a list of boxes) that overlap the
    image they are used with. A size mismatch is a `ValueError` naming both files (`check_size_fit`). Boxes
    entirely outside the image are dropped (no entity can be there); when none is left, or there was none,
    a `ProposalWarning` names the file: every entity of the post can only be None."""
    size, where = None, "the given boxes"
    if isinstance(proposals, VinvlProposals):
        size, where = proposals.image_size(image_name), str(proposals.path_for(image_name))
    elif isinstance(proposals, BoxesJson):
        where = str(proposals.path)
    elif isinstance(proposals, (str, Path)):
        where = str(proposals)
        if Path(proposals).suffix == ".npz":
            with _open_npz(Path(proposals)) as npz:
                size = _image_size(npz, Path(proposals))
    check_size_fit(size, image_size, where, image)
    width, height = image_size
    inside = [r for r in regions if r.box[0] < width and r.box[1] < height and r.box[2] > 0 and r.box[3] > 0]
    if not inside:
        found = "has no box" if not regions else f"has no box inside the {width}x{height} image"
        warnings.warn(f"{where} {found} for {image}: every entity of this post is predicted ungroundable (None)",
                      ProposalWarning, stacklevel=2)
    return inside


# ----------------------------------------------------------------------------------------- boxes JSON


def _region_from_entry(entry: Any, where: str) -> Region:
    if isinstance(entry, dict):
        unknown = set(entry) - {"box", "score", "label"}
        if unknown or "box" not in entry:
            raise ValueError(
                f"{where}: an object entry needs 'box' and may have 'score', 'label'; got keys {sorted(entry)}"
            )
        score, label = entry.get("score", 1.0), entry.get("label", "")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not np.isfinite(score):
            raise ValueError(f"{where}: 'score' must be a finite number, got {score!r}")
        if not isinstance(label, str):
            raise ValueError(f"{where}: 'label' must be a string, got {label!r}")
        return Region(box=_box_from_json(entry["box"], where), score=float(score), label=label)
    return Region(box=_box_from_json(entry, where))


def _box_from_json(values: Any, where: str):
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{where}: a box is a list of 4 numbers [x1, y1, x2, y2], got {values!r}")
    return as_box(values, where)


class BoxesJson(ProposalSource):
    """Boxes from any detector, in one JSON file (read and validated when constructed).

    Either `{"<image name>": [entry, ...], ...}` or a plain `[entry, ...]` that applies to every image
    (for predicting on one image). An entry is `[x1, y1, x2, y2]` (pixels) or
    `{"box": [x1, y1, x2, y2], "score": s, "label": "..."}`; a missing score counts as 1.0, and the sort
    by score is stable, so entries without scores keep the file's order.
    """

    def __init__(self, path: str | Path, top_k: Optional[int] = None) -> None:
        _check_top_k(top_k)
        self.path, self.top_k = Path(path), top_k
        try:
            data = json.loads(read_text(self.path))
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.path}: line {err.lineno}: not valid JSON ({err.msg})") from err
        self._single: Optional[list[Region]] = None
        self._by_image: dict[str, list[Region]] = {}
        if isinstance(data, list):
            self._single = self._parse(data, f"{self.path}: entry")
        elif isinstance(data, dict):
            for name, entries in data.items():
                if not isinstance(entries, list):
                    raise ValueError(f"{self.path}: image {name!r} must map to a list of boxes, got {entries!r}")
                self._by_image[name] = self._parse(entries, f"{self.path}: image {name!r}, entry")
        else:
            raise ValueError(
                f"{self.path}: expected a list of boxes or an object {{image name: boxes}}, "
                f"got {type(data).__name__}"
            )

    def _parse(self, entries: list, where: str) -> list[Region]:
        regions = [_region_from_entry(entry, f"{where} {i}") for i, entry in enumerate(entries)]
        return sorted(regions, key=lambda r: -r.score)[: self.top_k]

    def regions(self, image_name: str) -> list[Region]:
        if self._single is not None:
            return list(self._single)
        if image_name not in self._by_image:
            names = sorted(self._by_image)
            raise ValueError(
                f"{self.path}: no boxes for image {image_name!r}; the file names {len(names)} images "
                f"(e.g. {names[:5]}); keys are image file names such as '797970.jpg'"
            )
        return list(self._by_image[image_name])


# ------------------------------------------------------------------------------------ selective search


def _import_cv2():
    try:
        import cv2
    except ImportError as err:
        raise ImportError(
            f"the selective-search proposer needs OpenCV with its contrib modules: {OPENCV_HELP}"
        ) from err
    if not hasattr(cv2, "ximgproc"):
        raise ImportError(f"the installed OpenCV lacks the contrib module ximgproc (selective search): {OPENCV_HELP}")
    return cv2


class SelectiveSearch(ProposalSource):
    """Built-in proposer that needs no downloaded weights: OpenCV's selective search (fast mode).

    The image is shrunk to at most `max_side` pixels a side for speed (selective search costs ~0.5 s on
    a 300 x 225 image and ~3 s on 600 x 450, on two CPU cores; boxes are scaled back to original pixels). Boxes
    narrower than `min_size_frac` of the image width or shorter than that share of its height are
    dropped, as are boxes overlapping a larger kept one with IoU > `nms_iou`. OpenCV's own output order
    is random (libc `rand()` times the merge level, not seedable from Python), so boxes are ranked by
    area, largest first, and scored by rank: the region at rank r (0-based) gets score 1 / (r + 1).
    """

    def __init__(
        self,
        image_dir: Optional[str | Path],
        top_k: int,
        min_size_frac: float = 0.05,
        max_side: int = 300,
        nms_iou: float = 0.7,
    ) -> None:
        _check_top_k(top_k)
        if not 0 <= min_size_frac < 1:
            raise ValueError(f"min_size_frac must be in [0, 1), got {min_size_frac}")
        if not 0 < nms_iou <= 1:
            raise ValueError(f"nms_iou must be in (0, 1], got {nms_iou}")
        if max_side < 16:
            raise ValueError(f"max_side must be at least 16 pixels, got {max_side}")
        self._cv2 = _import_cv2()  # fail at construction, not on the first image
        self.image_dir = None if image_dir is None else Path(image_dir)
        self.top_k, self.min_size_frac, self.max_side, self.nms_iou = top_k, min_size_frac, max_side, nms_iou
        self._regions = functools.lru_cache(maxsize=CACHE_SIZE)(self._regions_uncached)

    def propose(self, image: Image.Image) -> list[Region]:
        """Regions of `image` (any PIL mode), boxes in its pixels, at most top_k, best first."""
        cv2 = self._cv2
        rgb = image.convert("RGB")
        small = rgb.copy()
        small.thumbnail((self.max_side, self.max_side))
        search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        search.setBaseImage(np.ascontiguousarray(np.asarray(small)[:, :, ::-1]))  # OpenCV expects BGR
        search.switchToSelectiveSearchFast()
        rects = search.process().astype(np.float64).reshape(-1, 4)  # x, y, w, h in the small image
        width, height = rgb.size
        scale = np.array([width / small.width, height / small.height] * 2)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) * scale
        boxes = np.minimum(boxes, [width, height, width, height])
        sizes = boxes[:, 2:] - boxes[:, :2]
        boxes = boxes[(sizes[:, 0] >= self.min_size_frac * width) & (sizes[:, 1] >= self.min_size_frac * height)]
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        # Coordinates break area ties, so the ranking never depends on OpenCV's random order.
        boxes = boxes[np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], -area))]
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        rank_scores = 1.0 / (1.0 + np.arange(len(boxes)))
        keep = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), rank_scores.tolist(), 0.0, self.nms_iou), dtype=int).ravel()
        keep = np.sort(keep)[: self.top_k]
        return [Region(box=tuple(float(v) for v in boxes[i]), score=1.0 / (1 + r)) for r, i in enumerate(keep)]

    def _regions_uncached(self, image_name: str) -> tuple[Region, ...]:
        if self.image_dir is None:
            raise ValueError("this SelectiveSearch has no image folder: give one, or call propose(image) directly")
        path = self.image_dir / image_name
        if not path.is_file():
            raise FileNotFoundError(f"image {path} not found; {PROPOSALS_HELP}")
        with Image.open(path) as image:
            return tuple(self.propose(image))

    def regions(self, image_name: str) -> list[Region]:
        return list(self._regions(image_name))


# ---------------------------------------------------------------------------------------------- factory

SOURCES: dict[str, Callable[..., ProposalSource]] = {
    "vinvl": VinvlProposals,
    "boxes": BoxesJson,
    "selective-search": SelectiveSearch,
}


def build_proposals(kind: str, **kwargs: Any) -> ProposalSource:
    """Build a proposal source by name: "vinvl" (directory, top_k, with_features), "boxes" (path, top_k)
    or "selective-search" (image_dir, top_k, ...); keyword arguments go to that class."""
    if kind not in SOURCES:
        raise ValueError(f"unknown proposal source {kind!r}; choose one of {sorted(SOURCES)}")
    return SOURCES[kind](**kwargs)
