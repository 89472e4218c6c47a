"""A frozen vision tower's region encodings, computed once and kept on disk (`train.region_cache`).

When CLIP stays frozen for the whole run (the paper's recipe), what the run needs of a post's image is
the tower's pooled output for each of its top-k crops and for the blank image, never the pixels. Holding
the crops (uint8 [k, 3, 224, 224], 2.7 MB a post at k = 18) cost 19 GB for the 7,000 training posts;
their encodings are 55 KB a post, written once to a file that every epoch, a resumed run, and any run
pointed at the same folder read through a memory map.

Layout, under the cache root:
  <encoder key>/index.json       format, encoder key, width, the encodings file, its row count and digest,
                                 and per image: content key, first row, row count, (width, height)
  <encoder key>/encodings-<token>.f32   float32 [rows, H], row 0 the blank image, then each image's regions

The encoder key digests the tower (class, config, every weight), top_k and the crop size, so another
tower, a random-init tower of another seed, or another k gets a folder of its own. An image's content key
digests its image file and its proposal file: when either changes, that image alone is encoded again.
A rewrite goes to a new encodings file and then replaces index.json (a rename), so the index never names
a half-written file. The file's digest is checked on opening: a truncated or damaged cache is rebuilt
with a warning naming the file, never read as features.

float32, not float16: the rows are exactly what the in-memory cache of a frozen tower holds
(`mqspn.model.frozen_cache`), so a run reads the same numbers either way; at paper shapes (k = 18, 768)
the file is about 0.55 GB for the 10,000 posts of Twitter-GMNER.

Opening reads every image and proposal file once to digest it (a few seconds per GB): what keeps a
changed file from being served stale rows, which a check of sizes and dates would not rule out.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

#: Bumped whenever what a row holds changes (the tower's input preprocessing, the blank image, the layout).
FORMAT = 1
DTYPE = np.dtype("<f4")
INDEX = "index.json"
#: Bytes read at a time when digesting a file.
CHUNK = 1 << 22


def applies(train, model) -> Optional[str]:
    """None when a run of `train` (TrainConfig) and `model` (ModelConfig) can read its regions from the
    cache, else why not: the cache holds a pretrained tower's outputs, valid only while it never trains."""
    if not model.vision_encoder.startswith("clip:"):
        return f"model.vision_encoder={model.vision_encoder} is not a pretrained (clip:<folder>) tower"
    if train.freeze_vision_epochs != -1:
        return (f"train.freeze_vision_epochs={train.freeze_vision_epochs} releases the vision tower, "
                "whose encodings then change every step (the cache needs -1: frozen for the whole run)")
    # train.crop_augment needs no check: the trainer never augments the crops of a frozen tower.
    return None


def cache_root(train, model, out: Path) -> Optional[Path]:
    """The cache folder of a run writing to `out`: `train.region_cache` auto -> `region-cache` beside the
    run folder (so the runs of one folder, e.g. the seeds of `mqspn train --seeds`, share it) when the
    cache applies (else None), off -> None, a folder -> it, or a ValueError when it cannot apply."""
    setting = train.region_cache
    if setting == "off":
        return None
    reason = applies(train, model)
    if setting == "auto":
        return None if reason else Path(out).resolve().parent / "region-cache"
    if reason:
        raise ValueError(f"train.region_cache={setting}: this run cannot use a region cache: {reason}; "
                         "set train.region_cache=auto (used only where it applies) or off")
    return Path(setting)


def _update_with_tensor(hasher, tensor: torch.Tensor) -> None:
    hasher.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    hasher.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def encoder_key(encoder: torch.nn.Module, top_k: int, crop_size: int) -> str:
    """Digest of a tower (class, config, every weight) with the top_k and crop size its rows are made at."""
    hasher = hashlib.blake2b(digest_size=12)
    config = getattr(getattr(encoder, "tower", None), "config", None)
    hasher.update(f"{FORMAT}|{type(encoder).__name__}|{top_k}|{crop_size}|".encode())
    hasher.update(config.to_json_string(use_diff=False).encode() if config is not None else b"")
    for name, tensor in encoder.state_dict().items():
        hasher.update(name.encode())
        _update_with_tensor(hasher, tensor)
    return hasher.hexdigest()


def file_digest(path: Path, hasher=None) -> str:
    hasher = hasher or hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def content_key(image: Path, proposals: Path) -> str:
    """Digest of an image file and its proposal file: what an image's crops are cut from."""
    hasher = hashlib.blake2b(digest_size=16)
    for path in (image, proposals):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (the region cache reads every image and proposal file "
                                    "of the dataset)")
        file_digest(path, hasher)
        hasher.update(b"|")
    return hasher.hexdigest()


@dataclass(frozen=True)
class Entry:
    key: str  # `content_key` of the image and its proposal file
    offset: int  # first row
    count: int  # regions (rows)
    size: tuple[int, int]  # (width, height) of the image the regions were fitted to


class RegionCache:
    """One encoder key's cache, opened read-only (copy-on-write map: torch gets writable, zero-copy rows).

    `encoded`: the images encoded when it was opened (0: every row was reused)."""

    def __init__(self, folder: Path, index: dict, entries: dict[str, Entry], encoded: int = 0) -> None:
        self.folder, self.index, self.entries, self.encoded = folder, index, entries, encoded
        self.file = folder / index["file"]
        shape = (index["rows"], index["width"])
        self.array = np.memmap(self.file, dtype=DTYPE, mode="c", shape=shape)
        self.blank = torch.from_numpy(self.array[0])

    def _entry(self, image: str) -> Entry:
        if image not in self.entries:
            raise ValueError(f"region cache {self.folder / INDEX} has no encodings of image {image}")
        return self.entries[image]

    def image_size(self, image: str) -> tuple[int, int]:
        return self._entry(image).size

    def rows(self, image: str, count: int) -> torch.Tensor:
        """-> float32 [count, H], a view of the file, for the `count` regions an image's proposals give."""
        entry = self._entry(image)
        if entry.count != count:
            raise ValueError(f"region cache {self.file}: image {image} has {entry.count} cached regions but its "
                             f"proposals give {count}; delete {self.folder} to rebuild it")
        return torch.from_numpy(self.array[entry.offset: entry.offset + count])


def _read(folder: Path, key: str) -> Optional[RegionCache]:
    """The cache in `folder`, or None when there is none; a damaged one (unreadable index, missing,
    truncated or altered encodings file) is None with a warning naming the file."""
    path = folder / INDEX
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
        entries = {name: Entry(e["key"], int(e["offset"]), int(e["count"]), tuple(e["size"]))
                   for name, e in index["images"].items()}
        if index["format"] != FORMAT or index["encoder"] != key:
            raise ValueError(f"format {index['format']} / encoder {index['encoder']}, expected {FORMAT} / {key}")
        rows, width, file = int(index["rows"]), int(index["width"]), folder / index["file"]
        if any(e.offset < 1 or e.offset + e.count > rows for e in entries.values()):
            raise ValueError("an image's rows lie outside the file")
    except (OSError, ValueError, KeyError, TypeError) as err:
        warnings.warn(f"region cache {path} is unreadable ({err}); rebuilding it", RuntimeWarning, stacklevel=3)
        return None
    expected = rows * width * DTYPE.itemsize
    found = file.stat().st_size if file.is_file() else None
    if found != expected:
        warnings.warn(f"region cache file {file} is {'missing' if found is None else f'{found} bytes'}, "
                      f"expected {expected} ({rows} x {width} float32); rebuilding it", RuntimeWarning, stacklevel=3)
        return None
    if file_digest(file) != index["digest"]:
        warnings.warn(f"region cache file {file} does not match the digest in {path} (damaged or altered); "
                      "rebuilding it", RuntimeWarning, stacklevel=3)
        return None
    return RegionCache(folder, index, entries)


def open_region_cache(root: str | Path, model, builder, images: Sequence[str], top_k: int,
                      progress: bool = False) -> RegionCache:
    """The cache of `model`'s frozen vision tower under `root` holding every image of `images` (names in
    `builder.image_dir`, proposals from `builder.proposals`), encoding only the images it lacks or whose
    image or proposal file changed. On a full hit the tower is not called at all."""
    encoder = model.vision_encoder
    key = encoder_key(encoder, top_k, builder.crop_size)
    folder = Path(root) / key
    names = list(dict.fromkeys(images))
    keys = {name: content_key(builder.image_path(name), builder.proposals.path_for(name))
            for name in tqdm(names, desc="region cache keys", unit="image", leave=False, disable=not progress)}
    old = _read(folder, key)
    if old is not None and all(name in old.entries and old.entries[name].key == keys[name] for name in names):
        return old
    return _rewrite(folder, key, old, model, builder, keys, progress)


@torch.no_grad()
def _rewrite(folder: Path, key: str, old: Optional[RegionCache], model, builder, keys: dict[str, str],
             progress: bool) -> RegionCache:
    """Write a new encodings file: the old rows still valid, the others encoded; then the index. Each
    image is encoded in a call of its own, as the in-memory frozen cache does, so a row does not depend on
    which other images were encoded with it (a rebuilt row equals the first one, bit for bit)."""
    encoder = model.vision_encoder
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()  # no dropout: the rows must be the frozen tower's deterministic outputs
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"encodings-{secrets.token_hex(6)}.f32"
    hasher = hashlib.blake2b(digest_size=16)
    entries: dict[str, Entry] = {}
    kept = {} if old is None else {name: e for name, e in old.entries.items() if keys.get(name, e.key) == e.key}
    todo = [name for name in keys if name not in kept]
    rows = 0

    def write(block: np.ndarray) -> None:
        nonlocal rows
        data = np.ascontiguousarray(block, dtype=DTYPE)
        fh.write(data.tobytes())
        hasher.update(data)
        rows += len(block)

    try:
        with open(file, "wb") as fh:
            write(encoder(model._blank_image()).float().cpu().numpy())
            for name, entry in kept.items():
                entries[name] = Entry(entry.key, rows, entry.count, entry.size)
                write(old.array[entry.offset: entry.offset + entry.count])
            for name in tqdm(todo, desc="region cache", unit="image", disable=not progress):
                crops, regions, size = builder.region_crops(name)
                entries[name] = Entry(keys[name], rows, len(regions), size)
                if len(regions):
                    write(encoder(crops.to(device)).float().cpu().numpy())
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        file.unlink(missing_ok=True)
        raise
    finally:
        encoder.train(was_training)
    width = encoder.hidden_size
    index = {"format": FORMAT, "encoder": key, "width": width, "rows": rows, "file": file.name,
             "digest": hasher.hexdigest(),
             "images": {name: {"key": e.key, "offset": e.offset, "count": e.count, "size": list(e.size)}
                        for name, e in entries.items()}}
    temp = folder / f"{INDEX}.{file.stem}.tmp"
    temp.write_text(json.dumps(index))
    os.replace(temp, folder / INDEX)
    for stale in folder.glob("encodings-*.f32"):
        if stale != file:
            # A run still reading a stale file keeps its map: unlinking does not take the pages away.
            stale.unlink(missing_ok=True)
    return RegionCache(folder, index, entries, encoded=len(todo))
