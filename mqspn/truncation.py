"""Posts longer than the text encoder can take: cut after the last word that fits, with a warning.

A post past the encoder's limit (BERT: 512 sub-words) cannot be encoded whole. Training refuses it
unless `data.truncate: true`; prediction always cuts it, so that one long post never stops a whole
split. The cut is at a word boundary; gold entities at or past the cut cannot be predicted and are
counted in the warning (one per post).
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Optional, Sequence

from mqspn.types import Post


class TruncationWarning(UserWarning):
    """A post was cut to the text encoder's limit."""


def fitting_words(word_ids: Sequence[Optional[int]], limit: int) -> int:
    """How many leading words fit in `limit` sub-words, given a tokenisation's `word_ids` (None for the
    special tokens, which are kept)."""
    room = limit - sum(w is None for w in word_ids)
    words = [w for w in word_ids if w is not None]
    # The word of the first sub-word past the room; every word before it fits whole (ids ascend).
    return words[room] if room < len(words) else (words[-1] + 1 if words else 0)


def cut_post(post: Post, kept: int) -> Post:
    """`post` with only its first `kept` words and the gold entities inside them; warns when it cuts."""
    if kept >= len(post.words):
        return post
    inside = [e for e in post.entities if e.end < kept]
    lost = len(post.entities) - len(inside)
    warnings.warn(f"{post.where}: longer than the text encoder's limit; kept the first {kept} of "
                  f"{len(post.words)} words ({len(post.words) - kept} cut"
                  + (f"; {lost} gold entit{'y' if lost == 1 else 'ies'} past the cut cannot be predicted)" if lost else ")"),
                  TruncationWarning, stacklevel=2)
    return dataclasses.replace(post, words=post.words[:kept], entities=inside)
