"""Single-post inference: `Predictor` and `mqspn predict --text` on the real images and VinVL files of
`../shared/data/real-samples` (skipped without them), plus the input errors a user meets first."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import GMNER_DIR, REAL_SAMPLES, needs_shared
from helpers_data import GOOD, write_dataset
from helpers_model import scene, tiny_model  # noqa: F401
from mqspn.checkpoint import save_pretrained
from mqspn.cli import main
from mqspn.config import Config, DataConfig
from mqspn.data.datasets import read_split
from mqspn.predictor import Predictor
from mqspn.proposals import read_vinvl

TOP_K = 10
#: The configuration saved with the test models: their candidate regions per post.
TOP_K_CONFIG = Config(data=DataConfig(top_k=TOP_K))
BOXES = [[0, 0, 40, 30], [50, 20, 110, 80], [10, 40, 60, 85]]
#: The real sample without text in Twitter-GMNER, and the one in the train split, get a made-up text.
MADE_UP = {"70560": "Lionel Messi and Neymar celebrate in Barcelona", "1953977": "Great night with Taylor Swift in London"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny untrained crop-CNN model, saved. Seeded: it predicts entities with boxes on the samples."""
    return save_pretrained(tiny_model(seed=0).eval(), tmp_path_factory.mktemp("model") / "tiny", TOP_K_CONFIG)


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor.from_pretrained(model_dir, "cpu")


@pytest.fixture(scope="module")
def samples() -> list[tuple[str, list[str]]]:
    """(image id, words) of every real sample: GMNER test text where the post has one, else made up."""
    test = {p.id: p.words for p in read_split(GMNER_DIR, "test")}
    ids = sorted(p.name[: -len(".jpg")] for p in (REAL_SAMPLES / "images").glob("*.jpg"))
    return [(i, test[i] if i in test else MADE_UP[i].split()) for i in ids]


def image_and_proposals(image_id: str):
    return REAL_SAMPLES / "images" / f"{image_id}.jpg", REAL_SAMPLES / "vinvl" / f"{image_id}.jpg.npz"


def candidate_boxes(npz, top_k: int = TOP_K) -> set:
    return {r.box for r in read_vinvl(npz, top_k)[0]}


@needs_shared
def test_predicts_on_real_images_with_boxes_among_the_vinvl_proposals(predictor, samples):
    assert len(samples) == 6
    boxed = 0
    for image_id, words in samples:
        image, npz = image_and_proposals(image_id)
        post = predictor.predict(words, image=image, proposals=npz, post_id=image_id)
        assert post.words == words and post.image == f"{image_id}.jpg"
        allowed = candidate_boxes(npz)
        for entity in post.entities:
            assert 0 <= entity.start <= entity.end < len(words)
            assert entity.type in predictor.types and 0 < entity.score <= 1
            assert entity.box is None or entity.box in allowed, (image_id, entity.box)
        boxed += sum(e.box is not None for e in post.entities)
    assert boxed > 0, "no prediction carried a box: the check above tested nothing"


@needs_shared
def test_detector_features_model_predicts_on_real_vinvl_features(tmp_path, samples):
    model = tiny_model(seed=0, vision_encoder="features", feature_dim=2048).eval()
    predictor = Predictor.from_pretrained(save_pretrained(model, tmp_path / "m", TOP_K_CONFIG), "cpu")
    image_id, words = samples[0]
    _, npz = image_and_proposals(image_id)
    post = predictor.predict(words, proposals=npz)
    assert all(e.box is None or e.box in candidate_boxes(npz) for e in post.entities)
    assert post.entities


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "post.jpg"
    scene().save(path)
    return path


@pytest.mark.parametrize("text", ["", "   \n ", []], ids=["empty", "blank", "no-words"])
def test_empty_text_is_an_error(predictor, picture, text):
    with pytest.raises(ValueError, match="empty text"):
        predictor.predict(text, image=picture, proposals=BOXES)


def test_missing_image_is_an_error_naming_the_file(predictor, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image .*nowhere\.jpg not found"):
        predictor.predict("Jordan in Paris", image=tmp_path / "nowhere.jpg", proposals=BOXES)


def test_unreadable_image_is_an_error_naming_the_file(predictor, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    with pytest.raises(ValueError, match=r"image .*bad\.jpg cannot be read"):
        predictor.predict("Jordan in Paris", image=bad, proposals=BOXES)


def test_a_crop_model_needs_an_image_and_proposals(predictor, picture):
    with pytest.raises(ValueError, match="give the post's image"):
        predictor.predict("Jordan in Paris", proposals=BOXES)
    with pytest.raises(ValueError, match="give proposals"):
        predictor.predict("Jordan in Paris", image=picture)
    with pytest.raises(ValueError, match=r"proposal 1: box .* x2 <= x1"):
        predictor.predict("Jordan in Paris", image=picture, proposals=[[0, 0, 5, 5], [9, 0, 3, 5]])


def test_a_pil_image_and_a_box_list_give_the_same_prediction_as_files(predictor, picture, tmp_path):
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps(BOXES))
    words = "Jordan scored 30 points in Chicago".split()
    from_files = predictor.predict(words, image=picture, proposals=boxes_file)
    from_objects = predictor.predict(words, image=Image.open(picture), proposals=BOXES)
    assert [(e.span, e.type, e.box) for e in from_files.entities] == [(e.span, e.type, e.box) for e in from_objects.entities]
    assert all(e.box is None or list(e.box) in BOXES for e in from_files.entities)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["predict", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@needs_shared
def test_cli_prints_json_and_draws_a_png(model_dir, samples, tmp_path, capsys):
    image_id, words = next(s for s in samples if s[0] == "O_2371")
    image, npz = image_and_proposals(image_id)
    drawing = tmp_path / "out" / "drawn.png"
    code, out, err = run_cli(capsys, "--model", str(model_dir), "--text", " ".join(words), "--image", str(image),
                             "--proposals", str(npz), "--draw", str(drawing))
    assert code == 0, err
    result = json.loads(out)
    assert result["words"] == words
    allowed = {tuple(float(v) for v in box) for box in candidate_boxes(npz)}
    for entity in result["entities"]:
        assert set(entity) == {"text", "start", "end", "type", "box", "score"}
        assert entity["text"] == " ".join(words[entity["start"] : entity["end"] + 1])
        assert entity["box"] is None or tuple(entity["box"]) in allowed
    assert result["entities"]
    with Image.open(drawing) as png:
        assert png.format == "PNG"
        assert png.width == Image.open(image).width and png.height > Image.open(image).height
    assert str(drawing) in err


@needs_shared
def test_cli_takes_candidate_boxes_from_a_json_file(model_dir, tmp_path, capsys):
    image, npz = image_and_proposals("153305")
    boxes = [[40, 28, 296, 600], [0, 0, 200, 200], [100, 100, 400, 500]]
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps(boxes))
    code, out, err = run_cli(capsys, "--model", str(model_dir), "--text", "And here he is as Clark Kent",
                             "--image", str(image), "--boxes", str(boxes_file))
    assert code == 0, err
    entities = json.loads(out)["entities"]
    assert entities and all(e["box"] is None or e["box"] in boxes for e in entities)
    assert any(e["box"] is not None for e in entities)


def test_cli_reads_a_per_image_boxes_file_by_the_image_name(model_dir, picture, tmp_path, capsys):
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps({"post.jpg": BOXES, "other.jpg": [[1, 1, 2, 2]]}))
    code, out, err = run_cli(capsys, "--model", str(model_dir), "--text", "Jordan in Paris", "--image", str(picture),
                             "--boxes", str(boxes_file))
    assert code == 0, err


def test_cli_set_overrides_the_saved_decoding_and_only_decoding(model_dir, picture, tmp_path, capsys):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(BOXES))
    args = ["--model", str(model_dir), "--text", "Jordan scored in Paris", "--image", str(picture), "--boxes", str(boxes)]
    code, out, err = run_cli(capsys, *args)
    entities = json.loads(out)["entities"]
    assert code == 0 and entities, err
    above = max(e["score"] for e in entities) + 1e-3
    code, out, err = run_cli(capsys, *args, "--set", f"decode.entity_threshold={above}")
    assert code == 0 and json.loads(out)["entities"] == [], err
    code, out, err = run_cli(capsys, *args, "--set", "model.hidden_size=8")
    assert code == 2 and "key must be <section>.<name> with section one of decode" in err


@pytest.mark.parametrize("case", ["missing-image", "empty-text", "no-proposals", "two-proposal-sources", "no-model"])
def test_cli_input_errors_are_one_line_and_exit_code_2(model_dir, picture, tmp_path, capsys, case):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(BOXES))
    args = {
        "missing-image": ["--model", str(model_dir), "--text", "Jordan", "--image", str(tmp_path / "gone.jpg"),
                          "--boxes", str(boxes)],
        "empty-text": ["--model", str(model_dir), "--text", " ", "--image", str(picture), "--boxes", str(boxes)],
        "no-proposals": ["--model", str(model_dir), "--text", "Jordan", "--image", str(picture)],
        "two-proposal-sources": ["--model", str(model_dir), "--text", "Jordan", "--image", str(picture),
                                 "--boxes", str(boxes), "--proposals", str(tmp_path / "x.npz")],
        "no-model": ["--model", str(tmp_path / "no-model"), "--text", "Jordan", "--image", str(picture),
                     "--boxes", str(boxes)],
    }[case]
    expected = {"missing-image": "gone.jpg not found", "empty-text": "empty text",
                "no-proposals": "no candidate regions", "two-proposal-sources": "only one of",
                "no-model": "config.json is missing"}[case]
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("mqspn predict: error: ") and expected in err and err.count("\n") == 1


@pytest.mark.parametrize("args, expected", [
    (["--text", " "], "empty text"),
    (["--data", "somewhere"], "--data needs --out"),
    (["--text", "Jordan", "--data", "somewhere", "--out", "x.jsonl"], "give either --text"),
    (["--text", "Jordan", "--boxes", "b.json", "--proposer", "selective-search", "--image", "x.jpg"], "only one of"),
    (["--text", "Jordan", "--draw", "out.png"], "--draw needs --image"),
    (["--text", "Jordan", "--json"], "--json summarises a whole split"),
    (["--text", "Jordan", "--image", "gone.jpg", "--boxes", "b.json"], "gone.jpg not found (--image)"),
    (["--text", "Jordan", "--set", "decode.entity_threshold=2"], "decode.entity_threshold=2"),
])
def test_argument_errors_come_before_the_model_is_loaded(args, expected, monkeypatch, capsys):
    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(Predictor, "from_pretrained", no_load)
    code, out, err = run_cli(capsys, "--model", "unused", *args)
    assert code == 2 and expected in err, err


def test_predict_on_a_split_reads_the_proposal_folder_saved_with_the_model(tmp_path, capsys):
    # A model trained with data.proposals: vinvl (the twitter-gmner recipe) reads DIR/vinvl under --data DIR.
    saved = Config(data=DataConfig(top_k=TOP_K, proposals="vinvl"))
    model = save_pretrained(tiny_model(seed=0).eval(), tmp_path / "model", saved)
    root = write_dataset(tmp_path / "d", {"test": GOOD.format(id="a") + GOOD.format(id="b")})
    (root / "images").mkdir()
    (root / "vinvl").mkdir()
    for seed, post_id in enumerate("ab"):
        scene(seed=seed).save(root / "images" / f"{post_id}.jpg")
        np.savez(root / "vinvl" / f"{post_id}.jpg.npz", bounding_boxes=np.array(BOXES, dtype=np.float32),
                 scores=np.linspace(0.9, 0.5, len(BOXES)))
    args = ["--model", str(model), "--data", str(root), "--split", "test", "--out", str(tmp_path / "f.jsonl"),
            "--no-progress"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    lines = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["a", "b"]
    assert all(e["box"] is None or e["box"] in BOXES for line in lines for e in line["entities"])
    shutil.rmtree(root / "vinvl")  # the folder it read, and no other (DIR/proposals never existed)
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and f"proposal folder {root / 'vinvl'} not found" in err
