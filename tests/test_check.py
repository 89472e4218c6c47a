"""`mqspn data check`: missing, corrupt and truncated files are counted and named; exit 1 when it cannot train."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import GMNER_DIR, REAL_SAMPLES, needs_shared
from PIL import Image

from mqspn.check import EXAMPLES, check_dataset, decode_image, format_report
from mqspn.cli import main

REAL_TEST_IDS = ("111254", "153305", "O_2371", "O_4154")
REAL_TRAIN_ID = "1953977"


def jpeg_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    """A real JPEG with varied content (so its scan data is long enough to cut in half)."""
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def save_proposals(path: Path, boxes: list[list[float]], size=(64, 48), features: bool = True, dim: int = 8) -> None:
    arrays = {
        "num_boxes": np.array(len(boxes)),
        "image_w": np.array(size[0]),
        "image_h": np.array(size[1]),
        "bounding_boxes": np.array(boxes, dtype=np.float32),
        "scores": np.linspace(0.9, 0.5, len(boxes)).astype(np.float32),
        "objects": np.array(["thing"] * len(boxes)),
    }
    if features:
        arrays["box_features"] = np.ones((len(boxes), dim), dtype=np.float32)
    np.savez(path, **arrays)


def make_tree(root: Path) -> Path:
    """A GMNER folder of 5 posts: train a (good, Ann boxed at [0,0,32,24]) and b (corrupt jpg); dev c
    (truncated npz); test d (good, no xml) and e (truncated jpg). Images 64x48, 8-d box features."""
    posts = {"train": ["a", "b"], "dev": ["c"], "test": ["d", "e"]}
    (root / "txt").mkdir(parents=True)
    for folder in ("xml", "images", "proposals"):
        (root / folder).mkdir()
    for split, ids in posts.items():
        (root / "txt" / f"{split}.txt").write_text("".join(f"IMGID:{i}\nAnn\tB-PER\nsmiles\tO\n\n" for i in ids))
    for ids in posts.values():
        for i in ids:
            (root / "images" / f"{i}.jpg").write_bytes(jpeg_bytes())
            save_proposals(root / "proposals" / f"{i}.jpg.npz", [[0, 0, 30, 24], [10, 10, 60, 40]])
    (root / "xml" / "a.xml").write_text(voc_xml([("Ann", (0, 0, 32, 24))]))
    (root / "images" / "b.jpg").write_bytes(b"this is not an image")
    good = jpeg_bytes()
    (root / "images" / "e.jpg").write_bytes(good[: len(good) // 2])
    npz = (root / "proposals" / "c.jpg.npz").read_bytes()
    (root / "proposals" / "c.jpg.npz").write_bytes(npz[: len(npz) // 2])
    return root


def voc_xml(objects: list[tuple[str, tuple[int, int, int, int]]], size=(64, 48)) -> str:
    boxes = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
        f"<ymax>{y2}</ymax></bndbox></object>"
        for name, (x1, y1, x2, y2) in objects
    )
    return f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>{boxes}</annotation>"


def check(root: Path, **kwargs):
    options = {"images_dir": root / "images", "proposals_dir": root / "proposals", "top_k": 5, "progress": False}
    return check_dataset(root, **{**options, **kwargs})


def problem_rows(text: str) -> dict[str, list[str]]:
    """Label -> the three per-split cells of every table row in `format_report` text."""
    rows = {}
    for line in text.splitlines():
        cells = line.rsplit(maxsplit=3)
        if len(cells) == 4 and all(re.fullmatch(r"[\d.]+|n/a", cell) for cell in cells[1:]):
            rows[cells[0].strip()] = cells[1:]
    return rows


def test_decode_image_catches_corrupt_and_truncated_jpegs(tmp_path):
    good, corrupt, truncated = tmp_path / "good.jpg", tmp_path / "corrupt.jpg", tmp_path / "truncated.jpg"
    data = jpeg_bytes((40, 30))
    good.write_bytes(data)
    corrupt.write_bytes(b"\xff\xd8 garbage")
    truncated.write_bytes(data[:-200])
    assert decode_image(good) == (40, 30)
    with pytest.raises(ValueError, match="corrupt.jpg: cannot be decoded"):
        decode_image(corrupt)
    with pytest.raises(ValueError, match="truncated.jpg: cannot be decoded .*truncated"):
        decode_image(truncated)
    # Some tweet "jpg"s are PNGs: those are verified (chunk CRCs), which catches truncation too.
    png, cut_png = io.BytesIO(), tmp_path / "cut_png.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(png, format="PNG")
    (tmp_path / "png.jpg").write_bytes(png.getvalue())
    cut_png.write_bytes(png.getvalue()[:-20])
    assert decode_image(tmp_path / "png.jpg") == (40, 30)
    with pytest.raises(ValueError, match="cut_png.jpg: cannot be decoded"):
        decode_image(cut_png)
    with pytest.raises(FileNotFoundError, match="absent.jpg: not found"):
        decode_image(tmp_path / "absent.jpg")


def test_broken_tree_names_corrupt_jpg_and_truncated_npz(tmp_path):
    root = make_tree(tmp_path / "data")
    report = check(root)
    assert not report.ok
    assert [report.splits[s].problems["unreadable_image"] for s in ("train", "dev", "test")] == [1, 0, 1]
    assert [report.splits[s].problems["malformed_proposals"] for s in ("train", "dev", "test")] == [0, 1, 0]
    unreadable = report.problems["unreadable_image"]
    assert unreadable.count == 2
    assert str(root / "images" / "b.jpg") in unreadable.examples[0]
    assert str(root / "images" / "e.jpg") in unreadable.examples[1] and "truncated" in unreadable.examples[1]
    malformed = report.problems["malformed_proposals"]
    assert malformed.count == 1 and str(root / "proposals" / "c.jpg.npz") in malformed.examples[0]
    assert report.fatal == ["unreadable images: 2 of 5 posts", "malformed proposal files: 1 of 5 posts"]
    assert any("Re-download or replace the unreadable images" in line for line in report.advice)
    # Coverage over the 4 posts whose proposals were read; only post a is groundable, and IoU 0.94 covers it.
    assert report.splits["train"].stats["proposal_posts"] == 2 and report.splits["train"].stats["coverage"] == 1.0
    assert report.splits["dev"].stats["proposal_posts"] == 0 and "coverage" not in report.splits["dev"].stats


def test_cli_exit_codes_and_text(tmp_path, capsys):
    root = make_tree(tmp_path / "data")
    assert main(["data", "check", "--data", str(root), "--top-k", "5", "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert str(root / "images" / "b.jpg") in text and str(root / "proposals" / "c.jpg.npz") in text
    rows = problem_rows(text)
    assert rows["unreadable images"] == ["1", "0", "1"]
    assert rows["malformed proposal files"] == ["0", "1", "0"]
    assert text.rstrip().endswith("NOT OK: fix the fatal problems above (exit code 1)")
    # Text only: the same files are reported, but nothing blocks training.
    assert main(["data", "check", "--data", str(root), "--regions", "none", "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["fatal"] == []
    assert report["problems"]["unreadable_image"]["count"] == 2
    assert "unreadable images: 2 of 5 posts (not needed for regions=none)" in report["warnings"]


def test_features_mode_needs_box_features_of_the_model_size(tmp_path):
    root = make_tree(tmp_path / "data")
    good = jpeg_bytes()
    (root / "images" / "b.jpg").write_bytes(good)
    (root / "images" / "e.jpg").write_bytes(good)
    save_proposals(root / "proposals" / "c.jpg.npz", [[0, 0, 30, 24]], features=False)
    assert check(root).ok  # crops do not read box_features
    report = check(root, regions="features", feature_dim=8)
    assert report.problems["malformed_proposals"].count == 1
    assert "missing key 'box_features'" in report.problems["malformed_proposals"].examples[0]
    save_proposals(root / "proposals" / "c.jpg.npz", [[0, 0, 30, 24]], dim=16)
    report = check(root, regions="features", feature_dim=8)
    assert not report.ok
    assert "box_features have 16 dimensions, the model expects 8" in report.problems["malformed_proposals"].examples[0]
    # features need no images: a missing image folder is only a warning
    report = check(root, regions="features", feature_dim=16, images_dir=tmp_path / "nowhere")
    assert report.problems["malformed_proposals"].count == 4 and report.problems["missing_image"].count == 0
    assert f"image folder: {tmp_path / 'nowhere'} not found; not needed for regions=features" in report.warnings


def test_unmatched_xml_name_and_size_mismatch(tmp_path):
    root = make_tree(tmp_path / "data")
    (root / "xml" / "d.xml").write_text(voc_xml([("Anne", (0, 0, 10, 10))], size=(128, 96)))
    report = check(root, regions="none")
    # The trainer reads the xml strictly, so an unmatched name blocks training even without regions.
    assert report.fatal == [
        "unmatched xml names: 1 xml objects (training reads the xml strictly and stops at the first)"
    ]
    assert report.problems["unmatched_xml"].examples == [
        f"{root / 'xml' / 'd.xml'}, object 1 ('Anne'): the name matches no entity of post d (an object's name "
        "must be an entity's words joined by single spaces)"
    ]
    assert report.problems["size_mismatch"].examples == [
        "post d: image sizes disagree (xml 128x96, image 64x48, proposals 64x48)"
    ]
    assert "size mismatches: 1 of 5 posts (boxes may not line up with the image)" in report.warnings


def test_missing_split_file_is_fatal_with_the_readers_message(tmp_path):
    root = make_tree(tmp_path / "data")
    (root / "txt" / "dev.txt").unlink()
    report = check(root, regions="none")
    error = report.splits["dev"].error
    assert error.endswith("txt/dev.txt: dev split not found (a gmner dataset folder holds txt/dev.txt)")
    assert report.fatal == [f"dev split cannot be read: {error}"]
    assert "train" in format_report(report).splitlines()[4]  # the table shows the readable splits only
    assert "dev" not in format_report(report).splitlines()[4]


def test_examples_are_capped_but_counts_complete(tmp_path):
    root = make_tree(tmp_path / "data")
    report = check(root, images_dir=tmp_path / "no-images")
    assert [split.problems["missing_image"] for split in report.splits.values()] == [2, 1, 2]
    assert report.problems["missing_image"].count == 5
    assert len(report.problems["missing_image"].examples) == EXAMPLES
    assert report.fatal[0].startswith(f"image folder: {tmp_path / 'no-images'} not found (data.images / --images)")


@needs_shared
def test_shared_annotations_report_every_image_missing(capsys):
    assert main(["data", "check", "--data", str(GMNER_DIR), "--no-progress"]) == 1
    text = capsys.readouterr().out
    rows = problem_rows(text)
    assert rows["missing images"] == ["7000", "1500", "1500"]
    assert rows["missing proposal files"] == ["7000", "1500", "1500"]
    assert "missing images: 10000 of 10000 posts" in text
    assert "missing proposal files: 10000 of 10000 posts" in text
    assert "https://github.com/NUSTM/GMNER" in text and "model.vision_encoder=none" in text


def real_samples_tree(root: Path) -> Path:
    """A GMNER folder holding only the real-sample posts: test 111254, 153305, O_2371, O_4154; train
    1953977; dev empty; their xml files (copied) and links to the real images and VinVL files."""
    blocks = {}  # split -> "IMGID:<id>" -> the post's lines
    for split in ("train", "test"):
        text = (GMNER_DIR / "txt" / f"{split}.txt").read_text()
        blocks[split] = {block.split("\n", 1)[0]: block for block in text.split("\n\n")}
    (root / "txt").mkdir(parents=True)
    (root / "xml").mkdir()
    for split, ids in (("train", [REAL_TRAIN_ID]), ("dev", []), ("test", list(REAL_TEST_IDS))):
        (root / "txt" / f"{split}.txt").write_text("".join(blocks[split][f"IMGID:{i}"] + "\n\n" for i in ids))
        for i in ids:
            (root / "xml" / f"{i}.xml").write_bytes((GMNER_DIR / "xml" / f"{i}.xml").read_bytes())
    (root / "images").symlink_to(REAL_SAMPLES / "images")
    (root / "proposals").symlink_to(REAL_SAMPLES / "vinvl")
    return root


@needs_shared
def test_real_samples_pass(tmp_path, capsys):
    root = real_samples_tree(tmp_path / "real")
    assert main(["data", "check", "--data", str(root), "--top-k", "3", "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["fatal"] == []
    assert report["warnings"] == [f"dev split ({root / 'txt' / 'dev.txt'}) has no posts"]
    assert [report["splits"][s]["stats"]["posts"] for s in ("train", "dev", "test")] == [1, 0, 4]
    assert all(problem["count"] == 0 for problem in report["problems"].values())
    # The ceiling at top-3: 2 of the 4 groundable test entities are covered; the ungroundable one is right
    # with None, so the oracle finds 3 of the 5 entities.
    test = report["splits"]["test"]["stats"]
    assert (test["proposal_posts"], test["coverage"], test["uncovered"]) == (4, 0.5, 2)
    assert test["oracle"]["recall"] == pytest.approx(60.0)

    # The same through a training config (top_k from its data section), in features mode (the model's
    # vision encoder): the real files carry 2048-d box_features, the model's default feature_dim.
    config = tmp_path / "config.yaml"
    config.write_text(f"data:\n  root: {root}\n  top_k: 18\nmodel:\n  vision_encoder: features\n")
    assert main(["data", "check", "--config", str(config), "--no-progress"]) == 0
    rows = problem_rows(capsys.readouterr().out)
    assert rows["coverage (%)"] == ["100.00", "n/a", "100.00"]
    assert rows["uncovered entities"] == ["0", "n/a", "0"]
