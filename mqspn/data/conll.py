"""CoNLL-style post files and BIO tags, read strictly with every word's line number kept.

File layout (UTF-8), one post after another:

    IMGID:797970           <- header: the post id (image `<id>.jpg`)
    RT<TAB>O               <- one line per word: token, then `tag_columns` tag columns
    Pak<TAB>B-LOC             (GMNER: 1 tag column; FMNERG: 2, coarse then fine)
    <blank line>           <- separator

Errors are `ValueError`s of the form `<file>:<line>: <problem>`.

Lenient decisions (each accepts input that has only one sensible reading; none changes data):
- several blank (or whitespace-only) lines in a row, and a missing blank line at the end of the file;
- a UTF-8 byte-order mark at the start of the file, and Windows line endings;
- `bio_spans`: an `I-X` tag at the start of a post or after `O` starts a new `X` entity, as conlleval
  reads it. An `I-X` after a `B-Y`/`I-Y` of another type is an error, not a guess.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from mqspn.textfile import read_text

HEADER = "IMGID:"

Span = tuple[int, int, str]  # (start, end inclusive, type), word indices


@dataclass
class ConllPost:
    """One post of a CoNLL file: id, words, the tag columns of each word and where everything was.

    `tags[i]` holds the `tag_columns` tags of word i; `lines[i]` is its 1-based line in `path`.
    """

    id: str
    path: Path
    line: int  # line of the IMGID header
    words: list[str]
    tags: list[tuple[str, ...]]
    lines: list[int]

    def column(self, k: int) -> list[str]:
        """The k-th tag column (0-based, after the token) of every word."""
        return [tags[k] for tags in self.tags]

    def spans(self, k: int) -> list[Span]:
        """`bio_spans` of tag column k, with errors naming this file and line."""
        return bio_spans(self.column(k), source=str(self.path), lines=self.lines)


def read_conll(path: str | Path, tag_columns: int) -> list[ConllPost]:
    """Read every post of `path`; each word line must have exactly `1 + tag_columns` tab-separated fields.

    Raises `FileNotFoundError` when the file is missing and `ValueError` (`<file>:<line>: ...`) for bytes
    that are not UTF-8, a word line outside a post, a line without a tab or with the wrong number of fields, an empty token,
    an empty or whitespace-holding id, a repeated id or a post without words. Tags are not checked
    here; `bio_spans` checks them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    posts: list[ConllPost] = []
    current: Optional[ConllPost] = None
    seen: dict[str, int] = {}
    # Universal newlines, as a file opened in text mode reads them (Windows line endings are accepted).
    with io.StringIO(read_text(path, "utf-8-sig"), newline=None) as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n")
            where = f"{path}:{number}"
            if not line.strip():
                _finish(current, path)
                current = None
                continue
            if line.startswith(HEADER):
                _finish(current, path)
                post_id = line[len(HEADER) :]
                if not post_id or post_id != "".join(post_id.split()):
                    raise ValueError(f"{where}: post id {post_id!r} is empty or contains whitespace")
                if post_id in seen:
                    raise ValueError(f"{where}: post id {post_id!r} was already used at line {seen[post_id]}")
                seen[post_id] = number
                current = ConllPost(post_id, path, number, [], [], [])
                posts.append(current)
                continue
            if current is None:
                raise ValueError(f"{where}: word line {line!r} outside a post (expected an {HEADER}<id> header first)")
            fields = line.split("\t")
            if len(fields) == 1:
                raise ValueError(f"{where}: expected token<TAB>tag, found no tab in {line!r}")
            if len(fields) != 1 + tag_columns:
                raise ValueError(
                    f"{where}: expected {1 + tag_columns} tab-separated fields (token and {tag_columns} tag "
                    f"column(s)), found {len(fields)} in {line!r}"
                )
            if not fields[0]:
                raise ValueError(f"{where}: empty token in {line!r}")
            current.words.append(fields[0])
            current.tags.append(tuple(fields[1:]))
            current.lines.append(number)
    _finish(current, path)
    return posts


def _finish(post: Optional[ConllPost], path: Path) -> None:
    """Close `post` at a blank line, header or end of file; a post without words is an error."""
    if post is not None and not post.words:
        raise ValueError(f"{path}:{post.line}: post {post.id!r} has no word lines")


def bio_spans(tags: Sequence[str], source: str = "tags", lines: Optional[Sequence[int]] = None) -> list[Span]:
    """Entity spans `(start, end, type)` (word indices, end inclusive) of one post's BIO tags, in order.

    Tags are `O`, `B-<type>` or `I-<type>` with a non-empty type kept verbatim. An `I-` tag at the start
    or after `O` starts an entity (conlleval's reading); an `I-` tag continuing an entity of another type
    and any other tag are `ValueError`s naming `source` and `lines[i]` (or the tag index without lines).
    """
    spans: list[Span] = []
    open_start, open_type = -1, None
    for i, tag in enumerate(tags):
        where = f"{source}:{lines[i]}" if lines is not None else f"{source}, tag {i}"
        prefix, _, type_ = tag.partition("-")
        if tag != "O" and (prefix not in ("B", "I") or not type_):
            raise ValueError(f"{where}: tag {tag!r} is not O, B-<type> or I-<type>")
        if prefix == "I" and open_type is not None and type_ != open_type:
            raise ValueError(
                f"{where}: tag {tag!r} continues an entity of type {open_type!r}; "
                f"an I- tag must follow a B- or I- tag of the same type"
            )
        continues = prefix == "I" and open_type is not None
        if open_type is not None and not continues:
            spans.append((open_start, i - 1, open_type))
            open_type = None
        if tag != "O" and not continues:
            open_start, open_type = i, type_
    if open_type is not None:
        spans.append((open_start, len(tags) - 1, open_type))
    return spans
