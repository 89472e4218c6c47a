"""Reading a text file as UTF-8 with decoding errors that name the file and line.

Python's own message (`'utf-8' codec can't decode byte 0xe9 in position 105`) names neither the file
nor the line, and for a file read line by line the position is within a buffer, not the file. Every
reader of a dataset, proposal or predictions file goes through `read_text`.
"""
from __future__ import annotations

from pathlib import Path


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """The whole text of `path` (`encoding`: utf-8, or utf-8-sig to drop a byte-order mark); a byte that is
    not UTF-8 is a `ValueError` `<file>:<line>: ...` naming the byte and its column."""
    data = Path(path).read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ValueError(f"{path}:{line}: byte 0x{data[err.start]:02x} at column {column} is not UTF-8 "
                         "(save the file as UTF-8)") from None
