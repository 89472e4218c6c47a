"""A predict request -> the keyword arguments of `Predictor.predict`, every problem a `RequestError`.

Two ways in, one way out: a multipart form (`text`, `image` file, optional `proposals` .npz or `boxes`
JSON file) or a JSON body (`text`, `image_base64`, optional `boxes`). All checks happen here, before
the request joins a model batch, so a bad request never costs the others anything.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from PIL import Image

from mqspn.proposals import OPENCV_HELP, BoxesJson, SelectiveSearch, read_vinvl
from mqspn.serve.limits import (Limits, RequestError, check_box_count, check_size, check_text, decode_base64,
                                open_image, parse_json)
from mqspn.types import Region, as_box

JSON_KEYS = ("text", "image_base64", "boxes")


@dataclass(frozen=True)
class ModelNeeds:
    """What the served model needs beside the text: mode crops | features | none (`Predictor.mode`)."""

    mode: str
    top_k: int


@dataclass
class Upload:
    """One uploaded file of a multipart form."""

    filename: str
    data: bytes


def from_json(body: Any, needs: ModelNeeds, limits: Limits) -> dict:
    if not isinstance(body, dict):
        raise RequestError("body", f"body: a JSON object with keys {list(JSON_KEYS)} expected, got {type(body).__name__}", 400)
    unknown = sorted(set(body) - set(JSON_KEYS))
    if unknown:
        raise RequestError(unknown[0], f"{unknown[0]}: unknown key; a JSON body has {list(JSON_KEYS)}", 400)
    words = check_text(body.get("text"), limits)
    image = None
    if body.get("image_base64") is not None and needs.mode != "none":
        image = open_image(decode_base64("image_base64", body["image_base64"], limits.max_image_bytes), limits,
                           "image_base64")
    regions = None if body.get("boxes") is None else boxes_from_list(body["boxes"], "boxes", limits)
    return _item(words, image, "image_base64", regions, None, needs)


def from_form(text: Any, image: Optional[Upload], proposals: Optional[Upload], boxes: Optional[Upload],
              needs: ModelNeeds, limits: Limits) -> dict:
    words = check_text(text, limits)
    if proposals is not None and boxes is not None:
        raise RequestError("boxes", "boxes: send either proposals (a VinVL .npz file) or boxes (a JSON file), not both", 400)
    pil = None if image is None or needs.mode == "none" else open_image(image.data, limits)
    name = Path(image.filename).name if image is not None and image.filename else "input.jpg"
    regions, source = None, None
    if proposals is not None and needs.mode != "none":
        regions, source = vinvl_regions(proposals.data, needs, limits), "proposals"
    elif boxes is not None and needs.mode != "none":
        regions, source = boxes_file_regions(boxes.data, name, needs, limits), "boxes"
    return _item(words, pil, "image", regions, source, needs)


def _item(words: list[str], image: Optional[Image.Image], image_field: str, regions: Optional[list[Region]],
          source: Optional[str], needs: ModelNeeds) -> dict:
    """Check what the model needs is there, and fill in the built-in proposer's regions."""
    if needs.mode == "none":
        return dict(text=words)
    if needs.mode == "features" and source != "proposals":
        raise RequestError("proposals", "proposals: this model reads detector features; send a VinVL .npz file "
                                        "with box_features")
    if needs.mode == "crops" and image is None:
        raise RequestError(image_field, f"{image_field}: this model looks at the post's image; send it")
    if regions is None:
        regions = propose(image, needs)
    return dict(text=words, image=image, proposals=regions)


def propose(image: Image.Image, needs: ModelNeeds) -> list[Region]:
    """Candidate regions from the built-in selective-search proposer, when OpenCV is installed."""
    try:
        proposer = SelectiveSearch(None, needs.top_k)
    except ImportError:
        raise RequestError("proposals", "proposals: no candidate regions and no built-in proposer on this server; "
                                        "send proposals (a VinVL .npz file) or boxes (a boxes JSON file, or "
                                        f"\"boxes\" in a JSON body), or install it on the server: {OPENCV_HELP}") from None
    return proposer.propose(image)


def boxes_from_list(value: Any, field: str, limits: Limits) -> list[Region]:
    if not isinstance(value, list):
        raise RequestError(field, f"{field}: a list of boxes [[x1, y1, x2, y2], ...] expected, got {type(value).__name__}")
    check_box_count(field, len(value), limits)
    regions = []
    for i, box in enumerate(value):
        if not isinstance(box, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            raise RequestError(field, f"{field}[{i}]: a box is a list of 4 numbers [x1, y1, x2, y2], got {box!r}")
        try:
            regions.append(Region(as_box(box, f"{field}[{i}]")))
        except ValueError as err:
            raise RequestError(field, str(err)) from None
    return regions


def vinvl_regions(data: bytes, needs: ModelNeeds, limits: Limits) -> list[Region]:
    check_size("proposals", data, limits.max_proposals_bytes)
    regions = _read_as_file("proposals", ".npz", data,
                            lambda path: read_vinvl(path, None, with_features=needs.mode == "features")[0])
    check_box_count("proposals", len(regions), limits)
    return regions


def boxes_file_regions(data: bytes, image_name: str, needs: ModelNeeds, limits: Limits) -> list[Region]:
    check_size("boxes", data, limits.max_proposals_bytes)
    parsed = parse_json("boxes", data)
    entries = parsed if isinstance(parsed, list) else parsed.get(image_name, []) if isinstance(parsed, dict) else []
    check_box_count("boxes", len(entries), limits)
    return _read_as_file("boxes", ".json", data, lambda path: BoxesJson(path, None).regions(image_name))


def _read_as_file(field: str, suffix: str, data: bytes, read: Callable[[Path], list[Region]]) -> list[Region]:
    """Run a file reader of `mqspn.proposals` on uploaded bytes; its errors name the field, not a temp path."""
    with tempfile.TemporaryDirectory(prefix="mqspn-serve-") as folder:
        path = Path(folder) / f"{field}{suffix}"
        path.write_bytes(data)
        try:
            return read(path)
        except ValueError as err:
            raise RequestError(field, str(err).replace(str(path), field)) from None
