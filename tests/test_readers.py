"""Dataset readers: real Twitter-GMNER / Twitter-FMNERG splits and a matrix of malformed inputs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import FMNERG_DIR, GMNER_DIR, needs_shared

from mqspn.data import (
    GMNER_TYPES,
    SPLITS,
    bio_spans,
    dataset_types,
    read_conll,
    read_dataset,
    read_split,
    read_voc,
)

# ----------------------------------------------------------------------------------------------------
# Real data

REAL_SIZES = {"train": 7000, "dev": 1500, "test": 1500}
REAL_ENTITIES = {"train": 11779, "dev": 2450, "test": 2543}
REAL_GROUNDABLE = {"train": 4733, "dev": 991, "test": 1046}
FMNERG_COARSE = ["art", "building", "event", "location", "organization", "other", "person", "product"]


@pytest.fixture(scope="module")
def gmner():
    unmatched: list = []
    return read_dataset(GMNER_DIR, unmatched=unmatched), unmatched


@needs_shared
@pytest.mark.parametrize("split", SPLITS)
def test_real_gmner_split_counts(gmner, split):
    dataset, unmatched = gmner
    posts = dataset[split]
    raw = (GMNER_DIR / "txt" / f"{split}.txt").read_text(encoding="utf-8").splitlines()
    b_tags = sum(1 for line in raw if "\t" in line and line.split("\t")[1].startswith("B-"))
    entities = [e for p in posts for e in p.entities]
    assert len(posts) == REAL_SIZES[split] == sum(line.startswith("IMGID:") for line in raw)
    assert len(entities) == b_tags == REAL_ENTITIES[split]
    assert sum(e.groundable for e in entities) == REAL_GROUNDABLE[split]
    assert dataset_types(posts) == sorted(GMNER_TYPES)
    assert unmatched == []
    # Every post with an xml file gets its image size; the others have no boxes at all.
    for post in posts:
        has_xml = (GMNER_DIR / "xml" / f"{post.id}.xml").is_file()
        assert (post.image_size is not None) == has_xml
        assert has_xml or not any(e.groundable for e in post.entities)


@needs_shared
def test_real_gmner_known_post(gmner):
    post = next(p for p in gmner[0]["train"] if p.id == "1000046")
    assert post.image == "1000046.jpg" and post.image_size == (500, 706)
    grounded = [(e.text(post.words), e.type, e.boxes) for e in post.entities if e.groundable]
    assert grounded == [("Bieber", "PER", [(132.0, 22.0, 500.0, 706.0)])]


@needs_shared
@pytest.mark.parametrize("granularity", ["coarse", "fine"])
def test_real_fmnerg_reads_every_split(gmner, granularity):
    fm = read_dataset(FMNERG_DIR, "fmnerg", granularity, xml_dir=GMNER_DIR / "xml")
    for split in SPLITS:
        # Same posts, spans and boxes as GMNER: only the type labels differ.
        assert [p.id for p in fm[split]] == [p.id for p in gmner[0][split]]
        assert [[(e.span, e.boxes) for e in p.entities] for p in fm[split]] == [
            [(e.span, e.boxes) for e in p.entities] for p in gmner[0][split]
        ]
    types = dataset_types(p for posts in fm.values() for p in posts)
    if granularity == "coarse":
        assert types == FMNERG_COARSE
    else:
        assert len(types) == 51
        # Full names survive (the released code truncated them).
        assert {"sports_team", "film_and_television_works", "educational_institution"} <= set(types)


@needs_shared
def test_real_fmnerg_needs_gmner_xml():
    with pytest.raises(ValueError, match=r"twitter-fmnerg/xml: not found.*Twitter-GMNER v2\.0 xml folder"):
        read_split(FMNERG_DIR, "dev", "fmnerg")


# ----------------------------------------------------------------------------------------------------
# Tiny trees

POST = "IMGID:1\nAngelina\tB-PER\nJolie\tI-PER\nin\tO\nParis\tB-LOC\n\nIMGID:2\nhi\tO\n"
VOC = (
    "<annotation><size><width>600</width><height>300</height></size>{objects}</annotation>"
)
OBJECT = "<object><name>{}</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"


def make_tree(root: Path, text: str = POST, xmls: dict[str, str] | None = None, folder: str = "txt") -> Path:
    """A dataset folder with `text` as every split and the given `<id>.xml` contents."""
    (root / folder).mkdir(parents=True)
    (root / "xml").mkdir()
    for split in SPLITS:
        (root / folder / f"{split}.txt").write_text(text, encoding="utf-8")
    for post_id, content in (xmls or {}).items():
        (root / "xml" / f"{post_id}.xml").write_text(content, encoding="utf-8")
    return root


def voc(*objects: tuple) -> str:
    return VOC.format(objects="".join(OBJECT.format(*obj) for obj in objects))


def test_linking_boxes_by_surface_string(tmp_path):
    text = "IMGID:1\nAngelina\tB-PER\nJolie\tI-PER\nmeets\tO\nAngelina\tB-PER\nJolie\tI-PER\nin\tO\nParis\tB-LOC\n"
    xml = voc(("Angelina Jolie", 10, 20, 110, 220), ("Angelina Jolie", 300, 0, 400, 100))
    post = read_split(make_tree(tmp_path, text, {"1": xml}), "train")[0]
    both = [(10.0, 20.0, 110.0, 220.0), (300.0, 0.0, 400.0, 100.0)]
    assert [(e.span, e.type, e.boxes) for e in post.entities] == [
        ((0, 1), "PER", both),
        ((3, 4), "PER", both),  # same string, same boxes
        ((6, 6), "LOC", []),
    ]
    assert post.image_size == (600, 300)


def test_post_without_xml_is_ungroundable(tmp_path):
    posts = read_split(make_tree(tmp_path), "dev")
    assert [p.id for p in posts] == ["1", "2"]
    assert [(e.span, e.type, e.boxes) for e in posts[0].entities] == [((0, 1), "PER", []), ((3, 3), "LOC", [])]
    assert posts[0].image_size is None and posts[1].entities == []


def test_unmatched_object_is_an_error_or_collected(tmp_path):
    xml = voc(("Angelina", 1, 1, 5, 5), ("Paris", 1, 1, 9, 9))
    root = make_tree(tmp_path, xmls={"1": xml})
    with pytest.raises(ValueError, match=r"xml/1\.xml, object 1 \('Angelina'\): the name matches no entity of post 1"):
        read_split(root, "train")
    unmatched: list = []
    posts = read_split(root, "train", unmatched=unmatched)
    assert [(u.xml.name, u.index, u.name, u.post_id) for u in unmatched] == [("1.xml", 1, "Angelina", "1")]
    assert [e.boxes for e in posts[0].entities] == [[], [(1.0, 1.0, 9.0, 9.0)]]


def test_fmnerg_granularity_picks_the_column(tmp_path):
    text = "IMGID:1\nLakers\tB-organization\tB-sports_team\nwin\tO\tO\n"
    root = make_tree(tmp_path, text, {"1": voc(("Lakers", 0, 0, 4, 4))}, folder="txt_fine")
    coarse, fine = (read_split(root, "test", "fmnerg", g)[0].entities for g in ("coarse", "fine"))
    assert [(e.span, e.type, e.boxes) for e in coarse] == [((0, 0), "organization", [(0.0, 0.0, 4.0, 4.0)])]
    assert [e.type for e in fine] == ["sports_team"]
    with pytest.raises(ValueError, match="coarse types only"):
        read_split(root, "test", "gmner", "fine")


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "IMGID:1\nAngelina\tB-PER\nJolie I-PER\n",
            r"train\.txt:3: expected token<TAB>tag, found no tab in 'Jolie I-PER'",
        ),
        ("IMGID:1\nAngelina\tB-PER\nJolie\tI-LOC\n", r"train\.txt:3: tag 'I-LOC' continues an entity of type 'PER'"),
        (
            "IMGID:1\nAngelina\tB-PER\nJolie\tI-PER\tB-PER\n",
            r"train\.txt:3: expected 2 tab-separated fields .* found 3",
        ),
        ("IMGID:1\nAngelina\tX-PER\n", r"train\.txt:2: tag 'X-PER' is not O, B-<type> or I-<type>"),
        ("IMGID:1\nAngelina\tB-\n", r"train\.txt:2: tag 'B-' is not O"),
        ("IMGID:1\n\tO\n", r"train\.txt:2: empty token"),
        ("Angelina\tB-PER\n", r"train\.txt:1: word line 'Angelina\\tB-PER' outside a post"),
        ("IMGID:1\n\nIMGID:2\nhi\tO\n", r"train\.txt:1: post '1' has no word lines"),
        ("IMGID:1\nhi\tO\n\nIMGID:1\nho\tO\n", r"train\.txt:4: post id '1' was already used at line 1"),
        ("IMGID:a b\nhi\tO\n", r"train\.txt:1: post id 'a b' is empty or contains whitespace"),
    ],
)
def test_malformed_text_names_file_and_line(tmp_path, text, message):
    root = make_tree(tmp_path, text)
    with pytest.raises(ValueError, match=message):
        read_split(root, "train")


@pytest.mark.parametrize(
    "content, message",
    [
        (
            voc(("Paris", 1, 1, 9, 9), ("Angelina Jolie", 50, 0, 50, 10)),
            r"1\.xml, object 2 \('Angelina Jolie'\): box .* x2 <= x1",
        ),
        (voc(("Paris", 1, 1, 9, 9), ("Paris", 5, 1, 2, 9)), r"1\.xml, object 2 \('Paris'\): box .* x2 <= x1"),
        (voc(("Paris", 1, 1, "nine", 9)), r"1\.xml, object 1 \('Paris'\), <xmax>: 'nine' is not a number"),
        (voc(("", 1, 1, 9, 9)), r"1\.xml, object 1: missing or empty <name>"),
        (
            "<annotation><object><name>Paris</name></annotation>",
            r"1\.xml: not a well-formed XML file \(mismatched tag: line 1",
        ),
    ],
)
def test_malformed_xml_names_file_and_object(tmp_path, content, message):
    root = make_tree(tmp_path, xmls={"1": content})
    with pytest.raises(ValueError, match=message):
        read_split(root, "train")


def test_voc_size_zero_means_unknown(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(voc(("Paris", 1.5, 1, 9.25, 9)).replace("<width>600", "<width>0"), encoding="utf-8")
    assert read_voc(path) == (None, [("Paris", (1.5, 1.0, 9.25, 9.0))])


def test_missing_split_file_or_xml_folder(tmp_path):
    root = make_tree(tmp_path)
    (root / "txt" / "dev.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"txt/dev\.txt: dev split not found"):
        read_dataset(root)
    with pytest.raises(FileNotFoundError, match=r"nowhere: xml folder not found"):
        read_split(root, "train", xml_dir=tmp_path / "nowhere")
    fm = make_tree(tmp_path / "fm", "IMGID:1\nhi\tO\tO\n", folder="txt_fine")
    (fm / "xml").rmdir()
    with pytest.raises(ValueError, match=r"fm/xml: not found; Twitter-FMNERG has no boxes of its own"):
        read_split(fm, "train", "fmnerg", "fine")
    with pytest.raises(ValueError, match=r"unknown split 'valid'; choose one of \['train', 'dev', 'test'\]"):
        read_split(root, "valid")


def test_read_conll_keeps_line_numbers(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("\ufeffIMGID:O_1\nA\tB-PER\n\n\n\nIMGID:2\nb\tO\nc\tI-ORG", encoding="utf-8")
    posts = read_conll(path, tag_columns=1)
    assert [(p.id, p.line, p.words, p.column(0), p.lines) for p in posts] == [
        ("O_1", 1, ["A"], ["B-PER"], [2]),
        ("2", 6, ["b", "c"], ["O", "I-ORG"], [7, 8]),
    ]


def test_bio_spans():
    assert bio_spans(["B-PER", "I-PER", "B-PER", "O", "B-sports_team", "I-sports_team"]) == [
        (0, 1, "PER"),
        (2, 2, "PER"),
        (4, 5, "sports_team"),
    ]
    assert bio_spans([]) == [] and bio_spans(["O", "O"]) == []
    with pytest.raises(ValueError, match=re.escape("f.txt:12: tag 'I-ORG' continues an entity of type 'PER'")):
        bio_spans(["B-PER", "I-ORG"], source="f.txt", lines=[11, 12])


def test_i_tag_after_o_starts_an_entity():
    # conlleval's reading, documented as lenient: at the start of a post and after O.
    tags = ["I-LOC", "I-LOC", "O", "I-PER", "B-PER", "I-PER"]
    assert bio_spans(tags) == [(0, 1, "LOC"), (3, 3, "PER"), (4, 5, "PER")]
