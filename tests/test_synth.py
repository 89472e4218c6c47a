"""The synthetic benchmark: deterministic, readable by the real-data reader, and shaped like the real data."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mqspn.boxes import iou_matrix
from mqspn.cli import main
from mqspn.data.datasets import SPLITS, read_split
from mqspn.data.voc import read_voc
from mqspn.synth import build_world, generate
from mqspn.synth.detector import CLASSES
from mqspn.synth.world import ENTITIES_PER_TYPE

NPZ_KEYS = {
    "num_boxes", "image_h", "image_w", "bounding_boxes", "box_features", "scores", "objects", "attr_obj",
    "attr_scores", "scores_all",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "data"
    return out, generate(out, posts=300, seed=3, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path):
    first = _files_of(tmp_path / "a", seed=7)
    second = _files_of(tmp_path / "b", seed=7)
    other = _files_of(tmp_path / "c", seed=8)
    assert len(first) == 1 + 3 + 60 + 60 + sum(name.startswith("xml/") for name in first)
    assert first == second
    assert first["txt/train.txt"] != other["txt/train.txt"]
    assert first["images/s000000.jpg"] != other["images/s000000.jpg"]


def _files_of(out: Path, seed: int, workers: int = 1) -> dict[str, bytes]:
    generate(out, posts=60, seed=seed, progress=False, workers=workers)
    return _files(out)


def test_drawing_in_worker_processes_writes_the_same_bytes(tmp_path):
    alone, pooled = _files_of(tmp_path / "alone", 4), _files_of(tmp_path / "pooled", 4, workers=2)
    assert len(alone) > 150 and alone == pooled


def test_layout_reads_back_with_the_summary_counts(corpus):
    out, summary = corpus
    assert [summary["splits"][s]["posts"] for s in SPLITS] == [210, 45, 45]
    for split in SPLITS:
        posts = read_split(out, split)
        counts = summary["splits"][split]
        assert len(posts) == counts["posts"]
        assert sum(len(p.entities) for p in posts) == counts["entities"]
        assert sum(e.groundable for p in posts for e in p.entities) == counts["groundable"]
        assert sum(len(e.boxes) for p in posts for e in p.entities) == counts["boxes"]
        assert all(1 <= len(p.entities) <= 4 for p in posts)
        assert {e.type for p in posts for e in p.entities} == {"PER", "LOC", "ORG", "OTHER"}


def test_about_sixty_percent_of_entities_are_ungroundable_in_every_split(corpus):
    _, summary = corpus
    assert 0.55 <= summary["ungroundable_share"] <= 0.65
    for split in SPLITS:
        assert 0.55 <= summary["splits"][split]["ungroundable_share"] <= 0.65, split


def test_gold_boxes_lie_inside_their_image_and_xml_names_are_entity_strings(corpus):
    out, _ = corpus
    xml_files = sorted((out / "xml").glob("*.xml"))
    assert len(xml_files) > 100
    texts = {p.id: {e.text(p.words) for e in p.entities} for s in SPLITS for p in read_split(out, s)}
    for xml in xml_files:
        size, objects = read_voc(xml)
        assert Image.open(out / "images" / f"{xml.stem}.jpg").size == size
        for name, (x1, y1, x2, y2) in objects:
            assert name in texts[xml.stem]
            assert 0 <= x1 < x2 <= size[0] and 0 <= y1 < y2 <= size[1], (xml, name)
    # Posts with no groundable entity have no xml file, as in Twitter-GMNER.
    posts = [p for s in SPLITS for p in read_split(out, s)]
    assert {p.id for p in posts if any(e.groundable for e in p.entities)} == {x.stem for x in xml_files}


def test_proposal_files_have_vinvl_keys_consistent_shapes_and_sorted_scores(corpus):
    out, _ = corpus
    for path in sorted((out / "proposals").glob("*.npz"))[:40]:
        with np.load(path, allow_pickle=False) as data:
            assert set(data.files) == NPZ_KEYS
            n = int(data["num_boxes"])
            assert 10 <= n <= 16
            width, height = Image.open(out / "images" / path.name[: -len(".npz")]).size
            assert (int(data["image_w"]), int(data["image_h"])) == (width, height)
            boxes = data["bounding_boxes"]
            assert boxes.shape == (n, 4) and boxes.dtype == np.float32
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            assert data["box_features"].shape == (n, 64)
            np.testing.assert_allclose(data["box_features"].sum(axis=1), 1.0, rtol=1e-5)
            scores = data["scores"]
            assert scores.shape == (n,) and (np.diff(scores) <= 0).all()
            assert data["objects"].shape == data["attr_obj"].shape == (n,)
            assert set(data["objects"]) <= set(CLASSES)
            assert data["attr_scores"].shape == (n, 1)
            assert data["scores_all"].shape == (n, len(CLASSES))
            np.testing.assert_allclose(data["scores_all"].max(axis=1), scores)


def test_proposals_cover_most_but_not_all_groundable_entities(corpus):
    out, summary = corpus
    covered = total = 0
    for split in SPLITS:
        for post in read_split(out, split):
            top = np.load(out / "proposals" / f"{post.id}.jpg.npz")["bounding_boxes"][:10]
            for entity in (e for e in post.entities if e.groundable):
                total += 1
                covered += bool((iou_matrix(top, np.array(entity.boxes)) > 0.5).any())
    assert covered / total == pytest.approx(summary["proposal_coverage"], abs=1e-4)
    assert 0.85 <= covered / total < 0.98


def test_an_ambiguous_string_takes_several_types_depending_on_context(corpus):
    out, summary = corpus
    types = defaultdict(set)
    for split in SPLITS:
        for post in read_split(out, split):
            for entity in post.entities:
                types[entity.text(post.words)].add(entity.type)
    shared = {text for text, kinds in types.items() if len(kinds) > 1}
    assert shared and shared <= set(summary["world"]["ambiguous"])


def test_world_senses_and_same_type_entities_look_different():
    world = build_world(np.random.default_rng(0))
    by_text = defaultdict(list)
    for entity in world.entities:
        by_text[entity.text].append(entity)
    for text in world.ambiguous:
        senses = by_text[text]
        assert len({e.type for e in senses}) == len(senses) >= 2
        assert len({e.look for e in senses}) == len(senses)
    for type_ in ("PER", "LOC", "ORG", "OTHER"):
        colours = [(e.look.fill, e.look.mark) for e in world.of_type(type_)]
        assert len(set(colours)) == len(colours) >= ENTITIES_PER_TYPE[type_]


def test_refuses_foreign_or_existing_output_unless_forced(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no synthetic dataset"):
        generate(foreign, posts=20, progress=False)
    with pytest.raises(ValueError, match="not empty and holds no synthetic dataset"):
        generate(foreign, posts=20, progress=False, force=True)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    out = tmp_path / "out"
    generate(out, posts=30, progress=False)
    with pytest.raises(ValueError, match="--force"):
        generate(out, posts=20, progress=False)
    summary = generate(out, posts=20, progress=False, force=True)
    assert summary["posts"] == 20
    # Nothing of the larger previous run is left behind.
    assert len(list((out / "images").iterdir())) == len(list((out / "proposals").iterdir())) == 20


def test_rejects_too_few_posts_negative_seeds_and_no_workers(tmp_path):
    with pytest.raises(ValueError, match="at least 10"):
        generate(tmp_path / "x", posts=5, progress=False)
    with pytest.raises(ValueError, match="non-negative"):
        generate(tmp_path / "y", posts=20, seed=-1, progress=False)
    with pytest.raises(ValueError, match="--workers must be at least 1, got 0"):
        generate(tmp_path / "z", posts=20, workers=0)


def test_command_line_writes_the_layout_and_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synth", "--out", str(out), "--posts", "20", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "train" in printed and "ungroundable" in printed and "coverage at top-10" in printed
    assert sorted(p.name for p in (out / "txt").iterdir()) == ["dev.txt", "test.txt", "train.txt"]
    assert main(["synth", "--out", str(out), "--posts", "20"]) == 2
    assert "--force" in capsys.readouterr().err
