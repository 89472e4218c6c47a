"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

`torch.load` of a pickle runs whatever code the file names, so a state file handed over with a run
could take over the machine on `mqspn train --resume`. Here nothing is executed while loading: the
JSON file holds the structure (dicts, lists, tuples, numbers, strings) with each tensor replaced by a
reference into the safetensors file, and numpy arrays (numpy's RNG state) as typed lists.

    training_state.json          {"format": 1, "state": <encoded structure>}
    training_state.safetensors   the tensors, named t0, t1, ...

Encoded forms, besides plain JSON values: `{"$tensor": "t3"}`, `{"$tuple": [...]}`,
`{"$ndarray": [...], "dtype": "uint32"}` and `{"$dict": [[key, value], ...]}` (a dict whose keys are not
all strings, e.g. an optimizer's parameter indices). Anything else is refused, when saving and when
loading; a file not in this form is a `ValueError` naming it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT = 1
JSON_NAME = "training_state.json"
TENSORS_NAME = "training_state.safetensors"

#: numpy dtypes a state may hold (numpy's RNG keeps uint32 words).
_ARRAY_KINDS = "biuf"


def save_state(state: dict, directory: Path) -> None:
    """Write `state` as `directory/training_state.{json,safetensors}`; unsupported values are a `TypeError`."""
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(state, tensors)
    save_file(tensors, str(directory / TENSORS_NAME))
    (directory / JSON_NAME).write_text(json.dumps({"format": FORMAT, "state": encoded}))


def load_state(directory: Path, required: Sequence[str] = ()) -> dict:
    """Read the state written by `save_state`; `required`: top-level keys the caller needs.

    Raises `FileNotFoundError` when either file is missing and `ValueError` naming the file when it is
    damaged, not in the form above, or lacks a required key.
    """
    path, tensor_path = directory / JSON_NAME, directory / TENSORS_NAME
    for needed in (path, tensor_path):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} is missing: nothing to resume from")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # not UTF-8, or not JSON
        raise ValueError(f"{path} is corrupt or truncated: not a JSON training state ({err})") from None
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{tensor_path} is corrupt or truncated ({err})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("state"), dict):
        raise ValueError(f"{path} is not an mqspn training state (format {FORMAT} with a 'state' object)")
    try:
        state = _decode(raw["state"], tensors)
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{path} is not an mqspn training state: {err}") from None
    missing = [key for key in required if key not in state]
    if missing:
        raise ValueError(f"{path} lacks the key(s) {missing}; it was not written by this version of "
                         "`mqspn train`, so the run cannot be resumed exactly")
    return state


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = value.detach().cpu().contiguous().clone()
        return {"$tensor": name}
    if isinstance(value, np.ndarray) and value.dtype.kind in _ARRAY_KINDS:
        return {"$ndarray": value.tolist(), "dtype": value.dtype.name}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v, tensors) for k, v in value.items()}
        return {"$dict": [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    raise TypeError(f"a training state cannot hold a {type(value).__name__} ({value!r:.80})")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    marked = [k for k in value if k.startswith("$")]
    if not marked:
        return {k: _decode(v, tensors) for k, v in value.items()}
    kind = marked[0]
    if kind == "$tensor" and set(value) == {kind}:
        return tensors[value[kind]]
    if kind == "$tuple" and set(value) == {kind} and isinstance(value[kind], list):
        return tuple(_decode(v, tensors) for v in value[kind])
    if kind == "$dict" and set(value) == {kind} and all(isinstance(p, list) and len(p) == 2 for p in value[kind]):
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value[kind]}
    if kind == "$ndarray" and set(value) == {kind, "dtype"} and np.dtype(value["dtype"]).kind in _ARRAY_KINDS:
        return np.asarray(value[kind], dtype=value["dtype"])
    raise ValueError(f"unexpected entry {json.dumps(value)[:80]}")
