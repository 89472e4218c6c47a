"""The predictions file: round trip, the error matrix, and `mqspn evaluate` end to end."""
from __future__ import annotations

import json
import re

import pytest

from conftest import FMNERG_DIR, GMNER_DIR, needs_shared
from mqspn.predictions import entity_from_json, entity_to_json, read_predictions, write_predictions
from mqspn.types import Entity, Post

GOLD = [Post("a", ["w"] * 5, [Entity(0, 1, "PER", [(1.0, 2.0, 3.0, 4.0)])]), Post("b", ["w"] * 2)]
TYPES = {"PER", "LOC", "ORG", "OTHER"}
GOOD = {"start": 0, "end": 1, "type": "PER", "box": [1, 2, 3, 4], "score": 0.5}


def test_write_then_read_round_trips(tmp_path):
    path = tmp_path / "pred.jsonl"
    items = [
        ("a", [Entity(0, 1, "PER", [(1.5, 2.0, 3.0, 4.0)], 0.93), Entity(3, 4, "LOC")]),
        ("b", []),
    ]
    write_predictions(path, items)
    assert read_predictions(path, GOLD, TYPES) == dict(items)
    assert json.loads(path.read_text().splitlines()[0]) == {
        "id": "a",
        "entities": [
            {"start": 0, "end": 1, "type": "PER", "box": [1.5, 2.0, 3.0, 4.0], "score": 0.93},
            {"start": 3, "end": 4, "type": "LOC", "box": None, "score": None},
        ],
    }
    assert [p.name for p in tmp_path.iterdir()] == ["pred.jsonl"]  # no temp file left behind


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "pred.jsonl"
    path.write_text("old\n")
    with pytest.raises(ValueError, match="post id 'a' given twice"):
        write_predictions(path, [("a", []), ("a", [])])
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["pred.jsonl"]


def test_entity_json_helpers():
    entity = entity_from_json({"start": 2, "end": 2, "type": "ORG", "box": None}, "here")
    assert entity == Entity(2, 2, "ORG")
    assert entity_to_json(entity) == {"start": 2, "end": 2, "type": "ORG", "box": None, "score": None}
    with pytest.raises(ValueError, match="at most one box"):
        entity_to_json(Entity(0, 0, "PER", [(0, 0, 1, 1), (0, 0, 2, 2)]))


ERRORS = [
    ("{not json", "not valid JSON"),
    ('["a"]', "a line must be a JSON object"),
    ('{"id": "a"}', 'needs exactly the keys "id" and "entities"'),
    ('{"id": 7, "entities": []}', "id must be a string"),
    ('{"id": "zz", "entities": []}', "post id 'zz' is not in the gold data"),
    ('{"id": "a", "entities": {}}', "entities must be a list"),
    (json.dumps({"id": "a", "entities": [{"start": 0, "end": 1, "type": "PER"}]}), r"entity 0: entity .* lacks key\(s\) \['box'\]"),
    (json.dumps({"id": "a", "entities": [dict(GOOD, bbox=None)]}), r"unknown key\(s\) \['bbox'\]"),
    (json.dumps({"id": "a", "entities": [dict(GOOD, start=0.0)]}), "start and end must be integers"),
    (json.dumps({"id": "a", "entities": [dict(GOOD, start=2, end=1)]}), r"span \[2, 1\] needs 0 <= start <= end"),
    (json.dumps({"id": "a", "entities": [GOOD, dict(GOOD, start=3, end=5)]}), r"entity 1: span \[3, 5\] is out of range for a post of 5 words"),
    (json.dumps({"id": "a", "entities": [dict(GOOD, type="PERSON")]}), "unknown type 'PERSON'"),
    (json.dumps({"id": "a", "entities": [dict(GOOD, box=[1, 2, 3])]}), "a box needs 4 numbers"),
    (json.dumps({"id": "a", "entities": [dict(GOOD, box=[3, 2, 1, 4])]}), "has x2 <= x1 or y2 <= y1"),
    (json.dumps({"id": "a", "entities": [dict(GOOD, box="1 2 3 4")]}), "box must be null or a list"),
    (json.dumps({"id": "a", "entities": [dict(GOOD, score="high")]}), "score must be a finite number or null"),
    ('{"id": "b", "entities": []}', "post id 'b' already appeared on line 1"),
]


@pytest.mark.parametrize("bad_line, message", ERRORS, ids=[m[:30] for _, m in ERRORS])
def test_every_bad_line_is_named_by_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "pred.jsonl"
    # The bad line is line 3, after a valid line and a blank one.
    path.write_text('{"id": "b", "entities": []}\n\n' + bad_line + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: ") + ".*" + message):
        read_predictions(path, GOLD, TYPES)


def test_without_gold_or_types_only_the_format_is_checked(tmp_path):
    path = tmp_path / "pred.jsonl"
    path.write_text(json.dumps({"id": "zz", "entities": [dict(GOOD, end=99, type="anything")]}) + "\n")
    assert read_predictions(path) == {"zz": [Entity(0, 99, "anything", [(1.0, 2.0, 3.0, 4.0)], 0.5)]}


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    from mqspn.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@needs_shared
def test_evaluate_cli_gold_as_prediction_is_100_and_errors_are_one_line(tmp_path, capsys):
    from mqspn.data.datasets import read_split

    gold = read_split(GMNER_DIR, "test")
    path = tmp_path / "gold.jsonl"
    write_predictions(path, [(p.id, [Entity(e.start, e.end, e.type, e.boxes[:1]) for e in p.entities]) for p in gold])
    base = ["evaluate", "--data", str(GMNER_DIR), "--split", "test", "--predictions", str(path)]

    code, out, _ = run_cli(base + ["--json"], capsys)
    result = json.loads(out)
    assert code == 0
    assert {task: result[task]["f1"] for task in ("gmner", "mner", "eeg")} == {"gmner": 100.0, "mner": 100.0, "eeg": 100.0}
    assert sorted(result["per_type"]) == ["LOC", "ORG", "OTHER", "PER"]

    code, out, _ = run_cli(base, capsys)
    assert code == 0
    assert re.search(r"^GMNER\s+100\.00\s+100\.00\s+100\.00", out, re.M)
    assert re.search(r"^  PER\s+100\.00", out, re.M)

    path.write_text(path.read_text().splitlines()[0] + "\n")
    code, out, err = run_cli(base + ["--json"], capsys)
    assert code == 0 and json.loads(out)["mner"]["n_gold"] == result["mner"]["n_gold"]
    assert err == f"note: 1499 of 1500 test posts have no line in {path}; they count as posts without predictions\n"

    path.write_text('{"id": "not-a-post", "entities": []}\n')
    code, out, err = run_cli(base, capsys)
    assert code == 2 and out == ""
    assert err == f"mqspn evaluate: error: {path}:1: post id 'not-a-post' is not in the gold data\n"


@needs_shared
def test_evaluate_cli_scores_fine_fmnerg_predictions_at_coarse_level(tmp_path, capsys):
    from mqspn.data.datasets import read_split

    xml = GMNER_DIR / "xml"
    fine = read_split(FMNERG_DIR, "dev", format="fmnerg", granularity="fine", xml_dir=xml)
    path = tmp_path / "fine.jsonl"
    write_predictions(path, [(p.id, [Entity(e.start, e.end, e.type, e.boxes[:1]) for e in p.entities]) for p in fine])
    base = ["evaluate", "--data", str(FMNERG_DIR), "--xml", str(xml), "--split", "dev", "--format", "fmnerg"]
    base += ["--predictions", str(path), "--json"]

    code, out, err = run_cli(base, capsys)
    coarse = json.loads(out)
    assert code == 0 and err == "" and coarse["gmner"]["f1"] == 100.0
    assert sorted(coarse["per_type"]) == ["art", "building", "event", "location", "organization", "other", "person", "product"]

    code, out, _ = run_cli(base + ["--granularity", "fine"], capsys)
    assert code == 0 and json.loads(out)["gmner"]["f1"] == 100.0 and len(json.loads(out)["per_type"]) == 51
