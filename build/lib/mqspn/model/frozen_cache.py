"""Outputs of a frozen encoder, computed once per distinct input and kept while it stays frozen.

The cache owns its keys: they are derived from the encoder's own inputs (a post's sub-word ids and
word alignment, a post's crop pixels), so the data side knows nothing of them and two posts with the
same input share one entry.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Hashable, Sequence

import torch


def text_keys(input_ids: torch.Tensor, attention_mask: torch.Tensor, word_index: torch.Tensor) -> list[Hashable]:
    """One key per post: its real sub-word ids and their word indices (what the encoder and the
    max-pool over sub-words read). input_ids, attention_mask, word_index: [B, L]."""
    lengths = attention_mask.sum(1).tolist()
    ids, words = input_ids.tolist(), word_index.tolist()
    return [(tuple(ids[i][:n]), tuple(words[i][:n])) for i, n in enumerate(lengths)]


def crop_keys(crops: torch.Tensor, counts: Sequence[int]) -> list[Hashable]:
    """One key per post: a digest of its crops' pixels. crops: [R, 3, S, S], the posts' crops in order;
    counts: crops per post."""
    keys, start = [], 0
    for count in counts:
        block = crops[start: start + count].contiguous().cpu()
        keys.append((tuple(block.shape), str(block.dtype), hashlib.blake2b(block.numpy().tobytes(), digest_size=16).digest()))
        start += count
    return keys


class FrozenCache:
    """Encoder outputs by content key (`text_keys`, `crop_keys`), stored detached."""

    def __init__(self) -> None:
        self.store: dict[Hashable, torch.Tensor] = {}

    def get_or_compute(self, keys: Sequence[Hashable], compute: Callable[[list[int]], Sequence[torch.Tensor]]) -> list[torch.Tensor]:
        """`compute(rows)` encodes the rows of the batch whose key is not stored yet (in one call)."""
        missing = [i for i, k in enumerate(keys) if k not in self.store]
        if missing:
            for i, value in zip(missing, compute(missing)):
                self.store[keys[i]] = value.detach()
        return [self.store[k] for k in keys]
