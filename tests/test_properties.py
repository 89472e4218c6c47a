"""Property-based tests (hypothesis) of the readers, the metric and the box utilities."""
from __future__ import annotations

import dataclasses
import string
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqspn.boxes import IOU_THRESHOLD, iou, iou_matrix, matches_any
from mqspn.data.conll import bio_spans, read_conll
from mqspn.data.voc import read_voc
from mqspn.metric import score
from mqspn.types import Entity, Post

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

TYPES = ["PER", "LOC", "ORG", "OTHER"]
# Tokens: anything printable without white space (tabs and newlines separate fields and lines).
token = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="\ufeff\x85"),
                min_size=1, max_size=8).filter(lambda t: t == "".join(t.split()))
post_id = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=8)


@st.composite
def bio_tags(draw, n: int) -> list[str]:
    """Valid BIO tags of n words (an I- tag only continues an entity of its own type)."""
    tags, open_type = [], None
    for _ in range(n):
        choice = draw(st.sampled_from(["O", "B", "I"] if open_type else ["O", "B"]))
        if choice == "O":
            tags.append("O")
            open_type = None
        elif choice == "B":
            open_type = draw(st.sampled_from(TYPES))
            tags.append(f"B-{open_type}")
        else:
            tags.append(f"I-{open_type}")
    return tags


@st.composite
def posts(draw) -> list[tuple[str, list[str], list[str]]]:
    ids = draw(st.lists(post_id, min_size=1, max_size=5, unique=True))
    result = []
    for pid in ids:
        words = draw(st.lists(token, min_size=1, max_size=6))
        result.append((pid, words, draw(bio_tags(len(words)))))
    return result


def conll_lines(items) -> list[str]:
    lines = []
    for pid, words, tags in items:
        lines += [f"IMGID:{pid}", *(f"{w}\t{t}" for w, t in zip(words, tags)), ""]
    return lines


def write(lines: list[str], name: str = "split.txt") -> Path:
    path = Path(tempfile.mkdtemp()) / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@FAST
@given(posts())
def test_valid_conll_lines_round_trip(items):
    read = read_conll(write(conll_lines(items)), 1)
    assert [(p.id, p.words, p.column(0)) for p in read] == items
    for post in read:  # word lines follow their header (what Post.entity_where relies on)
        assert post.lines == list(range(post.line + 1, post.line + 1 + len(post.words)))
        assert all(0 <= start <= end < len(post.words) for start, end, _ in post.spans(0))


INVALID = ["token-without-tab", "a\tO\textra", "\tO"]


@FAST
@given(posts(), st.data())
def test_any_invalid_line_is_an_error_naming_its_line(items, data):
    lines = conll_lines(items)
    at = data.draw(st.integers(0, len(lines)))
    lines.insert(at, data.draw(st.sampled_from(INVALID)))
    path = write(lines)
    with pytest.raises(ValueError, match=rf"^{path}:{at + 1}: "):
        read_conll(path, 1)


@FAST
@given(st.integers(1, 8).flatmap(bio_tags), st.data())
def test_an_invalid_tag_is_an_error_naming_its_line(tags, data):
    at = data.draw(st.integers(0, len(tags)))
    tags.insert(at, data.draw(st.sampled_from(["X-PER", "B-", "PER", "o"])))
    lines = list(range(10, 10 + len(tags)))
    with pytest.raises(ValueError, match=rf"^f.txt:{lines[at]}: tag "):
        bio_spans(tags, source="f.txt", lines=lines)


coordinate = st.integers(0, 2000)


@st.composite
def boxes(draw) -> tuple[float, float, float, float]:
    x1, y1 = draw(coordinate), draw(coordinate)
    return (float(x1), float(y1), float(x1 + draw(st.integers(1, 500))), float(y1 + draw(st.integers(1, 500))))


names = st.text(string.ascii_letters + string.digits + " &<>'\"#-", min_size=1, max_size=12).filter(str.strip)


@FAST
@given(st.lists(st.tuples(names, boxes()), max_size=6), st.integers(1, 3000), st.integers(1, 3000))
def test_valid_voc_objects_round_trip(objects, width, height):
    body = "".join(f"<object><name>{escape(name)}</name><bndbox><xmin>{b[0]:g}</xmin><ymin>{b[1]:g}</ymin>"
                   f"<xmax>{b[2]:g}</xmax><ymax>{b[3]:g}</ymax></bndbox></object>" for name, b in objects)
    path = write([f"<annotation><size><width>{width}</width><height>{height}</height></size>{body}</annotation>"],
                 "post.xml")
    assert read_voc(path) == ((width, height), objects)


@FAST
@given(st.lists(st.tuples(names, boxes()), min_size=1, max_size=4), st.data())
def test_a_voc_object_with_a_bad_coordinate_names_the_object(objects, data):
    bad = data.draw(st.integers(0, len(objects) - 1))
    body = "".join(f"<object><name>{escape(name)}</name><bndbox><xmin>{'x' if i == bad else int(b[0])}</xmin>"
                   f"<ymin>{int(b[1])}</ymin><xmax>{int(b[2])}</xmax><ymax>{int(b[3])}</ymax></bndbox></object>"
                   for i, (name, b) in enumerate(objects))
    path = write([f"<annotation>{body}</annotation>"], "post.xml")
    with pytest.raises(ValueError, match=rf"^{path}, object {bad + 1} .*<xmin>: 'x' is not a number"):
        read_voc(path)


# -------------------------------------------------------------------------------------------- metric

@st.composite
def corpus(draw) -> list[Post]:
    """Posts with gold entities on distinct spans, groundable (1-2 boxes) or not."""
    result = []
    for i in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 8))
        starts = sorted(draw(st.sets(st.integers(0, n - 1), max_size=n)))
        entities = [Entity(s, s + draw(st.integers(0, n - 1 - s)), draw(st.sampled_from(TYPES)),
                           draw(st.lists(boxes(), max_size=2))) for s in starts]
        unique = {e.span: e for e in entities}  # distinct spans, as a BIO file gives
        result.append(Post(f"p{i}", ["w"] * n, list(unique.values())))
    return result


def as_predictions(gold: list[Post]) -> dict[str, list[Entity]]:
    return {p.id: [dataclasses.replace(e, boxes=e.boxes[:1], score=1.0) for e in p.entities] for p in gold}


def all_numbers(result: dict) -> list[float]:
    rows = [result[t] for t in ("gmner", "mner", "eeg")]
    rows += [row[t] for row in result["per_type"].values() for t in ("gmner", "mner", "eeg")]
    return [row[m] for row in rows for m in ("precision", "recall", "f1")]


@FAST
@given(corpus(), st.data())
def test_scores_lie_between_0_and_100(gold, data):
    predictions = {}
    for post in gold:
        n = len(post.words)
        predictions[post.id] = [Entity(s, s + data.draw(st.integers(0, n - 1 - s)), data.draw(st.sampled_from(TYPES)),
                                       data.draw(st.lists(boxes(), max_size=1)))
                                for s in data.draw(st.lists(st.integers(0, n - 1), max_size=3))]
    assert all(0.0 <= value <= 100.0 for value in all_numbers(score(gold, predictions)))


@FAST
@given(corpus().filter(lambda gold: any(p.entities for p in gold)))
def test_gold_as_prediction_scores_100(gold):
    result = score(gold, as_predictions(gold))
    assert all(result[t][m] == 100.0 for t in ("gmner", "mner", "eeg") for m in ("precision", "recall", "f1"))


@FAST
@given(corpus(), st.data())
def test_adding_a_wrong_prediction_never_raises_precision(gold, data):
    # Some of the gold entities as predictions: any precision from 0 to 100.
    predictions = {pid: [e for e in entities if data.draw(st.booleans())] for pid, entities in as_predictions(gold).items()}
    post = data.draw(st.sampled_from(gold))
    n = len(post.words)
    gold_spans = {e.span for e in post.entities}
    free = [(s, e) for s in range(n) for e in range(s, n) if (s, e) not in gold_spans]
    if not free:
        return
    start, end = data.draw(st.sampled_from(free))
    wrong = Entity(start, end, data.draw(st.sampled_from(TYPES)), data.draw(st.lists(boxes(), max_size=1)),
                   data.draw(st.one_of(st.none(), st.floats(0, 1))))
    before = score(gold, predictions)
    after = score(gold, {**predictions, post.id: predictions[post.id] + [wrong]})
    for task in ("gmner", "mner", "eeg"):
        assert after[task]["precision"] <= before[task]["precision"]
        assert after[task]["recall"] == before[task]["recall"]


# --------------------------------------------------------------------------------------------- boxes

@FAST
@given(st.lists(boxes(), max_size=5), st.lists(boxes(), max_size=5))
def test_iou_matrix_is_symmetric_and_between_0_and_1(a, b):
    forward, backward = iou_matrix(np.array(a), np.array(b)), iou_matrix(np.array(b), np.array(a))
    assert forward.shape == (len(a), len(b))
    assert np.allclose(forward, backward.T)
    assert ((forward >= 0) & (forward <= 1 + 1e-12)).all()


@FAST
@given(boxes(), boxes(), st.integers(1, 50), st.integers(1, 50))
def test_iou_of_a_box_with_itself_is_1_and_shifting_keeps_it(a, b, dx, dy):
    assert iou(a, a) == pytest.approx(1.0)
    shift = np.array([dx, dy, dx, dy], dtype=np.float64)
    assert iou(np.array(a) + shift, np.array(b) + shift) == pytest.approx(iou(a, b))
    far = (a[2] + 1, a[3] + 1, a[2] + 2, a[3] + 2)
    assert iou(a, far) == 0.0


@FAST
@given(boxes(), st.lists(boxes(), max_size=4))
def test_matches_any_agrees_with_the_largest_iou(box, gold):
    expected = bool(gold) and max(iou(box, g) for g in gold) > IOU_THRESHOLD
    assert matches_any(box, gold) == expected
    assert matches_any(None, gold) is False
