"""Pascal-VOC box files (`xml/<id>.xml` of Twitter-GMNER): image size and named boxes.

    <annotation>
      <size><width>500</width><height>706</height><depth>3</depth></size>
      <object>
        <name>Justin Bieber</name>                  <- the entity's surface string
        <bndbox><xmin>132</xmin><ymin>22</ymin><xmax>500</xmax><ymax>706</ymax></bndbox>
      </object>
      ...                                           <- one <object> per box
    </annotation>

Lenient decisions: coordinates may be decimals; a missing `<size>`, or a width or height of 0 (what VOC
tools write when they do not know it), gives size None. Everything else that is missing, non-numeric
or geometrically impossible (x2 <= x1 or y2 <= y1) is a `ValueError` naming the file and the object
(1-based, in file order); names are kept exactly as written.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

from mqspn.types import Box, as_box

_COORDS = ("xmin", "ymin", "xmax", "ymax")


def read_voc(path: str | Path) -> tuple[Optional[tuple[int, int]], list[tuple[str, Box]]]:
    """`((width, height) or None, [(name, box), ...])` of one VOC file, objects in file order."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: not a well-formed XML file ({err})") from err
    objects = []
    for index, obj in enumerate(root.iter("object"), start=1):
        where = f"{path}, object {index}"
        name = obj.findtext("name")
        if not name:
            raise ValueError(f"{where}: missing or empty <name>")
        where = f"{where} ({name!r})"
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ValueError(f"{where}: missing <bndbox>")
        values = [_number(bndbox.findtext(key), f"{where}, <{key}>") for key in _COORDS]
        objects.append((name, as_box(values, where)))
    return _size(root, path), objects


def _size(root: ET.Element, path: Path) -> Optional[tuple[int, int]]:
    size = root.find("size")
    if size is None:
        return None
    width, height = (_number(size.findtext(key), f"{path}, <size><{key}>") for key in ("width", "height"))
    if width == 0 or height == 0:
        return None
    if width < 0 or height < 0 or not width.is_integer() or not height.is_integer():
        raise ValueError(f"{path}: <size> {width} x {height} is not a positive whole number of pixels")
    return int(width), int(height)


def _number(text: Optional[str], where: str) -> float:
    if text is None:
        raise ValueError(f"{where}: missing")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None
