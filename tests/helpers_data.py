"""Small hand-written datasets on disk (Twitter-GMNER layout) and the CLI runner the input-error tests use."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Optional

import yaml

from mqspn.cli import main

#: A post of four words with a PER entity, as one CoNLL block.
GOOD = "IMGID:{id}\nJordan\tB-PER\nscored\tO\nin\tO\nChicago\tB-LOC\n\n"


def conll(post_id: str, tags: list[tuple[str, str]]) -> str:
    return f"IMGID:{post_id}\n" + "".join(f"{word}\t{tag}\n" for word, tag in tags) + "\n"


def long_post(post_id: str, words: int, entity_at: Optional[int] = None) -> str:
    """A post of `words` one-letter words (one sub-word each for the tiny encoder), with a PER entity at
    word `entity_at`."""
    return conll(post_id, [("w", "B-PER" if i == entity_at else "O") for i in range(words)])


def write_dataset(root: Path, splits: dict[str, str]) -> Path:
    """`root/txt/<split>.txt` for each given split (the others get one good post) and an empty xml/."""
    (root / "txt").mkdir(parents=True)
    (root / "xml").mkdir()
    for split in ("train", "dev", "test"):
        (root / "txt" / f"{split}.txt").write_text(splits.get(split, GOOD.format(id=f"{split}0")), encoding="utf-8")
    return root


def text_only_config(path: Path, root: Path, **data) -> Path:
    """A training config of the tiny text-only model on `root`, written to `path`."""
    raw = {"data": {"root": str(root), **data},
           "model": {"text_encoder": "tiny", "vision_encoder": "none", "hidden_size": 32, "head_size": 16,
                     "num_heads": 2, "num_layers": 1, "num_queries": 8, "tiny_text_hidden": 32},
           "train": {"epochs": 1, "batch_size": 4, "eval_batch_size": 8, "progress": False, "freeze_text_epochs": 0}}
    path.write_text(yaml.safe_dump(raw))
    return path


def png_header(width: int, height: int) -> bytes:
    """A PNG file that declares `width` x `height` pixels but holds no pixel data (a decompression bomb's
    header: PIL refuses it on opening, past twice `Image.MAX_IMAGE_PIXELS`)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
