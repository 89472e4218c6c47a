"""Word shapes: the casing and form of each word as a small class id (`ModelConfig.word_shape`).

An uncased encoder (the offline MiniLM) lowercases its input and so never sees "Apple" vs "apple",
the strongest single cue for names in tweets. A learned embedding of the shape gives the cue back.
"""
from __future__ import annotations

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
