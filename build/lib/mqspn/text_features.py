"""Per-word text features that the model embeds beside its encoder states: shapes and identity hashes.

Both are computed by the data side when an example is built (`mqspn.batching`) and embedded by the
model (`ModelConfig.word_shape`, `ModelConfig.word_buckets`).

Word shapes: the casing and form of each word as a small class id. An uncased encoder (the offline
MiniLM) lowercases its input and so never sees "Apple" vs "apple", the strongest single cue for names in
tweets; a learned embedding of the shape gives the cue back.

Word hashes: a frozen encoder's word vector mixes the word with its context, so a name's identity drifts
from post to post; a learned embedding of the word itself (its lower-cased form, hashed into
`word_buckets` rows) gives every mention of a name the same trainable vector, as fine-tuning the
encoder's input embeddings would. CRC-32, not Python's `hash`, which is salted per process: the rows must
mean the same words in a saved model.
"""
from __future__ import annotations

import zlib
from typing import Sequence

SHAPES = ("lower", "title", "upper", "mixed", "number", "alnum", "mention", "hashtag", "url", "other")
_INDEX = {name: i for i, name in enumerate(SHAPES)}


def word_shape(word: str) -> int:
    """The index in `SHAPES` of one word's shape."""
    if word.startswith("@") and len(word) > 1:
        name = "mention"
    elif word.startswith("#") and len(word) > 1:
        name = "hashtag"
    elif word.lower().startswith(("http:", "https:", "www.")):
        name = "url"
    elif word.isdigit() or word.replace(",", "").replace(".", "").isdigit():
        name = "number"
    elif not any(c.isalpha() for c in word):
        name = "other"
    elif any(c.isdigit() for c in word):
        name = "alnum"
    elif word.islower():
        name = "lower"
    elif word.isupper():
        name = "upper" if sum(c.isalpha() for c in word) > 1 else "title"
    elif word[0].isupper() and word[1:] == word[1:].lower():
        name = "title"
    else:
        name = "mixed"
    return _INDEX[name]


def word_shapes(words: Sequence[str]) -> list[int]:
    return [word_shape(w) for w in words]


def word_hash(word: str) -> int:
    """A non-negative 31-bit hash of the lower-cased word, the same in every process and on every machine."""
    return zlib.crc32(word.lower().encode("utf-8")) & 0x7FFFFFFF


def word_hashes(words: Sequence[str]) -> list[int]:
    return [word_hash(w) for w in words]
