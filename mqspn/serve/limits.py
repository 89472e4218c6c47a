"""What a request may hold, checked before any expensive work, with errors that name the offending field.

Every refusal is a `RequestError` (a `ValueError`), which the app turns into a 4xx JSON answer
`{"error": message, "field": name}`: a caller sees which field to fix, never a traceback.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

#: Formats PIL decodes safely and browsers send; anything else is refused before decoding.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")


class RequestError(ValueError):
    """A bad request: `field` names the part of the request to fix, `status` is the HTTP code to answer."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field, self.status = field, status


@dataclass(frozen=True)
class Limits:
    """Upper bounds on one request (the `mqspn serve` options of the same names)."""

    max_image_bytes: int = 10_000_000
    max_pixels: int = 40_000_000  # a 10 MB PNG can hold gigapixels; decoding one would exhaust memory
    max_text_chars: int = 5_000
    max_boxes: int = 100
    max_proposals_bytes: int = 20_000_000  # a VinVL .npz with 2048-d features is ~8 KB a box

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"limit {name} must be a positive integer, got {value!r}")

    @property
    def max_json_bytes(self) -> int:
        """A JSON body carries the image in base64 (4 bytes per 3) beside the text and the boxes."""
        return self.max_image_bytes * 4 // 3 + 4 * self.max_text_chars + 64 * self.max_boxes + 65_536


def check_size(field: str, data: bytes, limit: int) -> bytes:
    if len(data) > limit:
        raise RequestError(field, f"{field}: more than the limit of {limit} bytes", 413)
    return data


def check_text(text: Any, limits: Limits) -> list[str]:
    """The post's words; empty, non-string and over-long texts are refused."""
    if not isinstance(text, str):
        raise RequestError("text", f"text: must be a string, got {type(text).__name__}")
    if len(text) > limits.max_text_chars:
        raise RequestError("text", f"text: {len(text)} characters, more than the limit of {limits.max_text_chars}")
    words = text.split()
    if not words:
        raise RequestError("text", "text: empty; send the post's text")
    return words


def open_image(data: bytes, limits: Limits, field: str = "image") -> Image.Image:
    """Decode an uploaded image as RGB. Size and format are read from the header first, so a
    decompression bomb (small file, huge canvas) is refused without decoding a pixel."""
    check_size(field, data, limits.max_image_bytes)
    try:
        image = Image.open(io.BytesIO(data))  # lazy: reads the header only
    except Image.DecompressionBombError as err:
        raise RequestError(field, f"{field}: too many pixels ({err})", 413) from None
    except (UnidentifiedImageError, OSError):
        raise RequestError(field, f"{field}: not an image of a supported format ({', '.join(IMAGE_FORMATS)})", 415) from None
    if image.format not in IMAGE_FORMATS:
        raise RequestError(field, f"{field}: format {image.format} is not supported; send one of {', '.join(IMAGE_FORMATS)}", 415)
    width, height = image.size
    if width * height > limits.max_pixels:
        raise RequestError(field, f"{field}: {width} x {height} pixels, more than the limit of {limits.max_pixels}", 413)
    try:
        return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise RequestError(field, f"{field}: the {image.format} data cannot be decoded ({err})") from None


def decode_base64(field: str, value: Any, limit: int) -> bytes:
    if not isinstance(value, str):
        raise RequestError(field, f"{field}: must be a base64 string, got {type(value).__name__}", 400)
    if "," in value[:100] and value.startswith("data:"):
        value = value.split(",", 1)[1]  # a data URL, as a browser's FileReader writes it
    if len(value) > limit * 4 // 3 + 4:
        raise RequestError(field, f"{field}: more than the limit of {limit} bytes", 413)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(field, f"{field}: not valid base64 ({err})", 400) from None


def parse_json(field: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(field, f"{field}: not valid JSON ({err})", 400) from None


def check_box_count(field: str, count: int, limits: Limits) -> None:
    if count > limits.max_boxes:
        raise RequestError(field, f"{field}: {count} boxes, more than the limit of {limits.max_boxes}")
