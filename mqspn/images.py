"""Opening images: the one place that turns an image file into pixels, with errors naming the file.

Every reader (training examples, prediction, the demo's drawings) goes through `load_image`, so an
unreadable file or a decompression bomb (an image whose pixel count is past PIL's limit,
`Image.MAX_IMAGE_PIXELS`: a small PNG can declare 20000 x 20000 pixels and take gigabytes to decode) is
one `ValueError` naming the file wherever it is met, never a PIL traceback.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

#: PIL's errors for a file that is not a decodable image (SyntaxError: some broken PNG/GIF headers).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

MISSING_HELP = ("Download the dataset's images (see the README, 'Reproducing the paper'), "
                "or train text-only with model.vision_encoder=none")


def load_image(path: Path) -> Image.Image:
    """Open an image as RGB; `FileNotFoundError` when it is missing, `ValueError` naming the file when it
    cannot be decoded or is too large to decode safely."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} not found. {MISSING_HELP}")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Image.DecompressionBombError as err:
        raise ValueError(f"image {path} is too large to decode safely ({err}); shrink it first") from None
    except DECODE_ERRORS as err:
        raise ValueError(f"image {path} cannot be read ({err}); re-download or replace it") from None
