"""Word identities as stable hashes (`ModelConfig.word_buckets`).

A frozen encoder's word vector mixes the word with its context, so a name's identity drifts from post to
post; a learned embedding of the word itself (its lower-cased form, hashed into `word_buckets` rows)
gives every mention of a name the same trainable vector, as fine-tuning the encoder's input embeddings
would. CRC-32, not Python's `hash`, which is salted per process: the rows must mean the same words in a
saved model.
"""
from __future__ import annotations

import zlib
from typing import Sequence


def word_hash(word: str) -> int:
    """A non-negative 31-bit hash of the lower-cased word, the same in every process and on every machine."""
    return zlib.crc32(word.lower().encode("utf-8")) & 0x7FFFFFFF


def word_hashes(words: Sequence[str]) -> list[int]:
    return [word_hash(w) for w in words]
