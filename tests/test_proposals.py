"""Proposal sources: VinVL `.npz` files (real samples and broken ones), boxes JSON, selective search."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import REAL_SAMPLES, needs_shared
from mqspn.boxes import iou
from mqspn.proposals import (
    BoxesJson,
    ProposalSource,
    SelectiveSearch,
    VinvlProposals,
    build_proposals,
    read_vinvl,
)

VINVL = REAL_SAMPLES / "vinvl"
IMAGES = REAL_SAMPLES / "images"
REAL_IDS = ["1953977", "111254", "153305", "O_2371", "O_4154", "70560"]


def write_npz(path, n=3, dim=8, **changes):
    """A valid VinVL-like file with `n` boxes and `dim`-d features; `changes` replace keys (None removes)."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, size=(n, 2))
    arrays = {
        "num_boxes": np.array(n),
        "image_h": np.array(100),
        "image_w": np.array(120),
        "bounding_boxes": np.concatenate([xy, xy + 10], axis=1).astype(np.float32),
        "box_features": rng.normal(size=(n, dim)).astype(np.float32),
        "scores": np.linspace(0.9, 0.1, n).astype(np.float32),
        "objects": np.array([f"thing{i}" for i in range(n)]),
    }
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@needs_shared
@pytest.mark.parametrize("image_id", REAL_IDS)
def test_real_vinvl_files_match_raw_arrays(image_id):
    path = VINVL / f"{image_id}.jpg.npz"
    raw = np.load(path)
    regions, size = read_vinvl(path, with_features=True)
    n = int(raw["num_boxes"])
    assert len(regions) == n == len(raw["bounding_boxes"])
    np.testing.assert_array_equal(np.array([r.box for r in regions], dtype=np.float32), raw["bounding_boxes"])
    np.testing.assert_array_equal(np.array([r.score for r in regions], dtype=np.float32), raw["scores"])
    assert [r.label for r in regions] == raw["objects"].tolist()
    features = np.stack([r.features for r in regions])
    assert features.shape == (n, 2048) and features.dtype == np.float32
    np.testing.assert_array_equal(features, raw["box_features"])
    scores = [r.score for r in regions]
    assert scores == sorted(scores, reverse=True)
    assert size == (int(raw["image_w"]), int(raw["image_h"])) == Image.open(IMAGES / f"{image_id}.jpg").size

    top, top_size = read_vinvl(path, top_k=5)
    assert [r.box for r in top] == [r.box for r in regions[:5]] and top_size == size
    assert all(r.features is None for r in top)


@needs_shared
def test_real_folder_reads_on_demand():
    source = VinvlProposals(VINVL, top_k=9)
    assert isinstance(source, ProposalSource)
    assert source.path_for("111254.jpg") == VINVL / "111254.jpg.npz"
    assert source.exists("153305.jpg") and not source.exists("797970.jpg")
    assert [len(source.regions(f"{i}.jpg")) for i in REAL_IDS] == [9] * 6
    assert source.image_size("153305.jpg") == (450, 600)
    # 111254 has only 10 boxes: a larger top_k returns them all.
    assert len(VinvlProposals(VINVL, top_k=100).regions("111254.jpg")) == 10


def test_top_k_truncates_and_unsorted_scores_are_resorted(tmp_path):
    scores = np.array([0.2, 0.9, 0.5, 0.9], dtype=np.float32)
    path = write_npz(tmp_path / "a.jpg.npz", n=4, scores=scores)
    boxes = np.load(path)["bounding_boxes"]
    regions, size = read_vinvl(path, top_k=3, with_features=True)
    assert size == (120, 100)
    assert [r.score for r in regions] == pytest.approx([0.9, 0.9, 0.5])
    # Stable: the two 0.9s keep the file's order (rows 1 then 3); labels and features follow their boxes.
    assert [r.label for r in regions] == ["thing1", "thing3", "thing2"]
    np.testing.assert_array_equal(np.array([r.box for r in regions], dtype=np.float32), boxes[[1, 3, 2]])
    np.testing.assert_array_equal(np.stack([r.features for r in regions]), np.load(path)["box_features"][[1, 3, 2]])


def test_zero_area_boxes_are_kept_and_optional_keys_may_be_absent(tmp_path):
    boxes = np.array([[5, 5, 5, 20], [0, 0, 10, 10]], dtype=np.float32)
    path = write_npz(tmp_path / "z.npz", n=2, bounding_boxes=boxes, objects=None, image_h=None, image_w=None,
                     num_boxes=None, box_features=None)
    regions, size = read_vinvl(path)
    assert size is None
    assert [r.box for r in regions] == [(5.0, 5.0, 5.0, 20.0), (0.0, 0.0, 10.0, 10.0)]
    assert [r.label for r in regions] == ["", ""]


def test_construction_is_lazy_and_regions_are_cached(tmp_path, monkeypatch):
    (tmp_path / "bad.jpg.npz").write_bytes(b"this is not a zip archive")
    write_npz(tmp_path / "good.jpg.npz", n=4)
    calls = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: calls.append(a[0]) or real_load(*a, **k))

    source = VinvlProposals(tmp_path, top_k=2)
    assert calls == []
    assert len(source.regions("good.jpg")) == 2
    assert len(source.regions("good.jpg")) == 2
    assert calls == [tmp_path / "good.jpg.npz"]
    with pytest.raises(ValueError, match=r"bad\.jpg\.npz: not a readable \.npz"):
        source.regions("bad.jpg")


@needs_shared
def test_truncated_real_file_names_file_and_problem(tmp_path):
    data = (VINVL / "153305.jpg.npz").read_bytes()
    path = tmp_path / "153305.jpg.npz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"153305\.jpg\.npz: not a readable \.npz \(zip\) file, maybe truncated"):
        read_vinvl(path)


@pytest.mark.parametrize(
    "changes, with_features, message",
    [
        ({"bounding_boxes": None}, False, r"missing key 'bounding_boxes'; the file has \['box_features', .*'scores'\]"),
        ({"scores": None}, False, r"missing key 'scores'"),
        ({"box_features": None}, True, r"missing key 'box_features'"),
        ({"bounding_boxes": np.zeros((3, 5), np.float32)}, False, r"'bounding_boxes' must be N x 4.*\(3, 5\)"),
        ({"scores": np.ones(2, np.float32)}, False, r"'scores' has shape \(2,\), expected \(3,\)"),
        ({"box_features": np.ones((2, 8), np.float32)}, True, r"'box_features' has shape \(2, 8\), expected \(3, D\)"),
        ({"num_boxes": np.array(5)}, False, r"num_boxes = 5 but 'bounding_boxes' has 3 rows"),
        ({"scores": np.array([0.5, np.nan, 0.1], np.float32)}, False, r"'scores' has a non-finite value at index \[1\]"),
        ({"bounding_boxes": np.array([[0, 0, 9, 9], [5, 5, 4, 9], [0, 0, 1, 1]], np.float32)}, False,
         r"box 1 \[5\.0, 5\.0, 4\.0, 9\.0\] has x2 < x1"),
        ({"objects": np.array(["a", None, "c"], dtype=object)}, False, r"cannot read array 'objects'.*pickled object arrays are refused"),
        ({"image_w": None}, False, r"has 'image_h' but not its partner"),
    ],
)
def test_malformed_files_name_file_and_problem(tmp_path, changes, with_features, message):
    path = write_npz(tmp_path / "x.jpg.npz", **changes)
    with pytest.raises(ValueError, match=r"x\.jpg\.npz: " + message):
        read_vinvl(path, with_features=with_features)


def test_missing_file_and_folder_say_where_proposals_come_from(tmp_path):
    source = VinvlProposals(tmp_path, top_k=5)
    with pytest.raises(FileNotFoundError, match=r"797970\.jpg\.npz does not exist.*NUSTM/GMNER README"):
        source.regions("797970.jpg")
    with pytest.raises(FileNotFoundError, match=r"proposal folder .*nowhere does not exist.*NUSTM/GMNER"):
        VinvlProposals(tmp_path / "nowhere", top_k=5)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        VinvlProposals(tmp_path, top_k=0)


def test_boxes_json_per_image_form(tmp_path):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({
        "1.jpg": [[0, 0, 10, 10], {"box": [1, 2, 30, 40], "score": 3.5, "label": "person"},
                  {"box": [5, 5, 6, 6], "score": 2}],
        "2.jpg": [],
    }))
    source = BoxesJson(path, top_k=2)
    regions = source.regions("1.jpg")
    assert [(r.box, r.score, r.label) for r in regions] == [((1.0, 2.0, 30.0, 40.0), 3.5, "person"),
                                                            ((5.0, 5.0, 6.0, 6.0), 2.0, "")]
    assert source.regions("2.jpg") == []
    with pytest.raises(ValueError, match=r"boxes\.json: no boxes for image '3\.jpg'.*names 2 images"):
        source.regions("3.jpg")


def test_boxes_json_plain_list_applies_to_any_image(tmp_path):
    path = tmp_path / "one.json"
    path.write_text("[[0, 0, 5, 5], [1, 1, 2, 3.5]]")
    source = build_proposals("boxes", path=path)
    assert [r.box for r in source.regions("anything.jpg")] == [(0.0, 0.0, 5.0, 5.0), (1.0, 1.0, 2.0, 3.5)]
    assert source.regions("other.jpg") == source.regions("anything.jpg")


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"1.jpg": [[0, 0, 5, 5], [4, 0, 2, 5]]}', r"image '1\.jpg', entry 1: box .* has x2 <= x1"),
        ('[[0, 0, 5]]', r"entry 0: a box needs 4 numbers"),
        ('[[0, 0, "5", 5]]', r"entry 0: a box is a list of 4 numbers"),
        ('[{"box": [0, 0, 5, 5], "scor": 1}]', r"entry 0: an object entry needs 'box'.*got keys \['box', 'scor'\]"),
        ('[{"box": [0, 0, 5, 5], "score": NaN}]', r"entry 0: 'score' must be a finite number"),
        ('{"1.jpg": [[0, 0, 5, 5]],\n "2.jpg": [[0, 0, 5, 5]]]}', r"line 2: not valid JSON"),
        ('{"1.jpg": [0, 0, 5, 5]}', r"image '1\.jpg', entry 0: a box is a list of 4 numbers"),
        ('"boxes"', r"expected a list of boxes or an object"),
    ],
)
def test_boxes_json_errors_name_file_and_entry(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"bad\.json: " + message):
        BoxesJson(path)


def test_selective_search_without_opencv_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    with pytest.raises(ImportError, match="pip install opencv-contrib-python-headless"):
        SelectiveSearch(None, top_k=5)


def test_build_proposals_names_the_known_kinds(tmp_path):
    assert isinstance(build_proposals("vinvl", directory=tmp_path, top_k=3), VinvlProposals)
    with pytest.raises(ValueError, match=r"unknown proposal source 'yolo'; choose one of \['boxes', 'selective-search', 'vinvl'\]"):
        build_proposals("yolo")


def check_proposals(regions, size, top_k, min_size_frac):
    width, height = size
    boxes = np.array([r.box for r in regions])
    assert 0 < len(regions) <= top_k
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] - boxes[:, 0] >= min_size_frac * width).all()
    assert (boxes[:, 3] - boxes[:, 1] >= min_size_frac * height).all()
    assert [r.score for r in regions] == [1 / (1 + r) for r in range(len(regions))]


def test_selective_search_finds_drawn_rectangles():
    pytest.importorskip("cv2")
    image = Image.new("RGB", (160, 120), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([20, 30, 69, 89], fill="red")
    draw.rectangle([100, 10, 149, 59], fill="blue")
    source = SelectiveSearch(None, top_k=10)
    regions = source.propose(image)
    check_proposals(regions, image.size, 10, 0.05)
    ious = [max(iou(r.box, target) for r in regions) for target in [(20, 30, 70, 90), (100, 10, 150, 60)]]
    assert min(ious) > 0.8
    with pytest.raises(ValueError, match="no image folder"):
        source.regions("x.jpg")


@needs_shared
def test_selective_search_on_a_real_image_is_deterministic():
    pytest.importorskip("cv2")
    source = build_proposals("selective-search", image_dir=IMAGES, top_k=18)
    regions = source.regions("153305.jpg")
    check_proposals(regions, (450, 600), 18, 0.05)
    with Image.open(IMAGES / "153305.jpg") as image:
        assert [r.box for r in source.propose(image)] == [r.box for r in regions]
    with pytest.raises(FileNotFoundError, match=r"797970\.jpg not found"):
        source.regions("797970.jpg")
