"""Dataset statistics, proposal coverage / oracle, and the `mqspn data stats` command."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import GMNER_DIR, REAL_SAMPLES, needs_shared

from mqspn.cli import main
from mqspn.data import SPLITS, read_dataset
from mqspn.stats import dataset_stats, format_table, proposal_stats, split_stats
from mqspn.types import Entity, Post, Region

BOX = (0.0, 0.0, 100.0, 100.0)
FAR = (200.0, 200.0, 300.0, 300.0)


def toy_posts() -> list[Post]:
    """Post a: a covered and an ungroundable entity; post b: an uncovered one; post c: text only."""
    a = Post("a", ["Ann", "met", "Bob", "and", "Ann"], [
        Entity(0, 0, "PER", [BOX, FAR]),
        Entity(2, 2, "PER"),
        Entity(4, 4, "PER", [BOX, FAR]),  # same string as the first mention: boxes counted once
    ])
    b = Post("b", ["Paris"], [Entity(0, 0, "LOC", [BOX])])
    c = Post("c", ["Rome", "FC"], [Entity(0, 1, "ORG")])
    return [a, b, c]


class FakeProposals:
    """Post a has a proposal overlapping BOX with IoU 0.81; post b only far-away proposals."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def regions(self, image_name: str) -> list[Region]:
        self.asked.append(image_name)
        boxes = {"a.jpg": [(500.0, 500.0, 510.0, 510.0), (0.0, 0.0, 90.0, 90.0)], "b.jpg": [(400.0, 0.0, 500.0, 50.0)]}
        return [Region(box) for box in boxes[image_name]]


def table_rows(table: str, columns: int) -> dict[str, list[str]]:
    """Row label -> cell texts of a `format_table` output with `columns` splits."""
    rows = [line.split() for line in table.splitlines()[1:]]
    return {" ".join(cells[:-columns]): cells[-columns:] for cells in rows}


def test_split_stats_counts():
    assert split_stats(toy_posts()) == {
        "posts": 3,
        "entities": 5,
        "groundable": 3,
        "ungroundable": 2,
        "boxes": 3,
        "types": {"LOC": 1, "ORG": 1, "PER": 3},
    }
    assert split_stats([])["entities"] == 0


def test_proposal_coverage_and_oracle():
    proposals = FakeProposals()
    result = proposal_stats(toy_posts(), proposals)
    # Groundable: two mentions in a (covered), one in b (uncovered) -> 2/3.
    assert result["coverage"] == pytest.approx(2 / 3)
    # Oracle keeps 4 of 5 gold entities, all right: P = 100, R = 80, F1 = 2 * 4 / (4 + 5).
    assert result["oracle"] == pytest.approx({"gmner_f1": 800 / 9, "eeg_f1": 800 / 9, "recall": 80.0})
    # The text-only post needs no proposal file.
    assert proposals.asked == ["a.jpg", "b.jpg"]
    assert proposal_stats([toy_posts()[2]], proposals)["coverage"] is None


def test_format_table():
    stats = {"train": split_stats(toy_posts()), "dev": split_stats([])}
    stats["train"].update(proposal_stats(toy_posts(), FakeProposals()))
    stats["dev"].update(coverage=None, oracle={"gmner_f1": 0.0, "eeg_f1": 0.0, "recall": 0.0})
    table = format_table(stats)
    assert table.splitlines()[0].split() == ["train", "dev"]
    rows = table_rows(table, 2)
    assert rows["entities"] == ["5", "0"] and rows["PER"] == ["3", "0"] and rows["boxes"] == ["3", "0"]
    assert rows["coverage (%)"] == ["66.67", "n/a"] and rows["oracle GMNER F1"] == ["88.89", "0.00"]


def test_stats_arguments_and_missing_split(tmp_path, capsys):
    (tmp_path / "txt").mkdir()
    (tmp_path / "xml").mkdir()
    (tmp_path / "txt" / "train.txt").write_text("IMGID:1\nhi\tO\n", encoding="utf-8")
    assert main(["data", "stats", "--data", str(tmp_path)]) == 2
    assert f"{tmp_path}/txt/dev.txt: dev split not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"need both a proposals folder and top_k"):
        dataset_stats(tmp_path, proposals_dir=tmp_path)


@needs_shared
def test_real_stats_json_agrees_with_reader(capsys):
    assert main(["data", "stats", "--data", str(GMNER_DIR), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    dataset = read_dataset(GMNER_DIR)
    assert list(stats) == list(SPLITS)
    for split, posts in dataset.items():
        entities = [e for p in posts for e in p.entities]
        assert stats[split]["posts"] == len(posts)
        assert stats[split]["entities"] == len(entities) == sum(stats[split]["types"].values())
        assert stats[split]["groundable"] == sum(e.groundable for e in entities)
        assert stats[split]["ungroundable"] == sum(not e.groundable for e in entities)
        # Every annotated box is one <object> in the xml of a post of this split.
        objects = sum(
            (GMNER_DIR / "xml" / f"{p.id}.xml").read_text(encoding="utf-8").count("<object>")
            for p in posts
            if (GMNER_DIR / "xml" / f"{p.id}.xml").is_file()
        )
        assert stats[split]["boxes"] == objects
    assert stats["test"] == {
        "posts": 1500,
        "entities": 2543,
        "groundable": 1046,
        "ungroundable": 1497,
        "boxes": 1242,
        "types": {"LOC": 404, "ORG": 638, "OTHER": 397, "PER": 1104},
    }
    assert [stats[s]["boxes"] for s in SPLITS] == [5652, 1164, 1242]


def real_sample_tree(root: Path) -> Path:
    """GMNER-layout folder holding only the posts that have real VinVL proposals (dev left empty)."""
    wanted = {"train": ["1953977"], "dev": [], "test": ["111254", "153305", "O_2371", "O_4154"]}
    (root / "txt").mkdir(parents=True)
    (root / "xml").mkdir()
    for split, ids in wanted.items():
        blocks = (GMNER_DIR / "txt" / f"{split}.txt").read_text(encoding="utf-8").split("\n\n")
        kept = [block for block in blocks if block.split("\n", 1)[0].removeprefix("IMGID:") in ids]
        assert len(kept) == len(ids)
        (root / "txt" / f"{split}.txt").write_text("\n\n".join(kept) + "\n", encoding="utf-8")
        for post_id in ids:
            shutil.copy(GMNER_DIR / "xml" / f"{post_id}.xml", root / "xml")
    return root


@needs_shared
def test_real_proposal_coverage(tmp_path, capsys):
    root = real_sample_tree(tmp_path / "gmner")
    vinvl = str(REAL_SAMPLES / "vinvl")
    assert main(["data", "stats", "--data", str(root), "--proposals", vinvl, "--top-k", "5", "--json"]) == 0
    top5 = json.loads(capsys.readouterr().out)
    # Best IoU in the top 5: 1953977 0.31 (train); 111254 0.88, 153305 0.88, O_2371 0.17, O_4154 0.93 (test).
    assert (top5["train"]["groundable"], top5["test"]["groundable"], top5["test"]["ungroundable"]) == (1, 4, 1)
    assert top5["train"]["coverage"] == 0.0 and top5["train"]["oracle"]["gmner_f1"] == 0.0
    assert top5["test"]["coverage"] == 0.75
    assert top5["test"]["oracle"] == pytest.approx({"gmner_f1": 800 / 9, "eeg_f1": 800 / 9, "recall": 80.0})
    assert top5["dev"]["posts"] == 0 and top5["dev"]["coverage"] is None
    # With 9 proposals every groundable entity is covered (1953977 reaches 0.91, O_2371 0.96).
    assert main(["data", "stats", "--data", str(root), "--proposals", vinvl, "--top-k", "9"]) == 0
    table = table_rows(capsys.readouterr().out, 3)
    assert table["coverage (%)"] == ["100.00", "n/a", "100.00"]
    assert table["oracle GMNER F1"] == ["100.00", "0.00", "100.00"]
