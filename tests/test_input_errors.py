"""Every input error names its file (and line): bytes that are not UTF-8, config values of the wrong type,
decompression bombs, proposals of another image, and text the Python API cannot take."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from helpers_data import GOOD, png_header, run_cli, text_only_config, write_dataset
from helpers_model import scene, tiny_model
from mqspn.checkpoint import save_pretrained, training_data
from mqspn.config import Config, DataConfig, load_config
from mqspn.data.conll import read_conll
from mqspn.data.voc import read_voc
from mqspn.images import load_image
from mqspn.predictions import read_predictions
from mqspn.predictor import Predictor
from mqspn.proposals import BoxesJson, ProposalWarning

BOXES = [[0, 0, 40, 30], [50, 20, 110, 80], [10, 40, 60, 85]]
#: Line 3 of a post file, `Café` written in Latin-1.
LATIN1 = b"IMGID:1\nJordan\tB-PER\nCaf\xe9\tO\n\n"


@pytest.fixture(scope="module")
def crop_model(tmp_path_factory):
    return save_pretrained(tiny_model(seed=0).eval(), tmp_path_factory.mktemp("m") / "crops", Config(data=DataConfig(top_k=5)))


@pytest.fixture(scope="module")
def predictor(crop_model):
    return Predictor.from_pretrained(crop_model, "cpu")


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "post.jpg"
    scene().save(path)  # 120 x 90
    return path


def save_npz(path, boxes, size=None):
    arrays = {"bounding_boxes": np.array(boxes, dtype=np.float32), "scores": np.linspace(0.9, 0.5, len(boxes))}
    if size:
        arrays.update(image_w=np.array(size[0]), image_h=np.array(size[1]))
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------------------------------- UTF-8

def test_readers_name_the_file_and_line_of_a_byte_that_is_not_utf8(tmp_path):
    text = tmp_path / "train.txt"
    text.write_bytes(LATIN1)
    with pytest.raises(ValueError, match=rf"{text}:3: byte 0xe9 at column 4 is not UTF-8"):
        read_conll(text, 1)
    predictions = tmp_path / "p.jsonl"
    predictions.write_bytes(b'{"id": "1", "entities": []}\n{"id": "caf\xe9", "entities": []}\n')
    with pytest.raises(ValueError, match=rf"{predictions}:2: byte 0xe9"):
        read_predictions(predictions)
    boxes = tmp_path / "boxes.json"
    boxes.write_bytes(b'{\n"caf\xe9.jpg": [[0, 0, 5, 5]]}')
    with pytest.raises(ValueError, match=rf"{boxes}:2: byte 0xe9"):
        BoxesJson(boxes)
    xml = tmp_path / "1.xml"
    xml.write_bytes(b"<annotation>\n<object><name>Caf\xe9</name></object></annotation>")
    with pytest.raises(ValueError, match=rf"{xml}: not a well-formed XML file .*line 2"):
        read_voc(xml)


@pytest.mark.parametrize("command", ["data stats", "data check", "evaluate", "predict", "train"])
def test_every_command_names_the_file_and_line_of_a_byte_that_is_not_utf8(command, crop_model, tmp_path, capsys):
    root = write_dataset(tmp_path / "d", {})
    bad = root / "txt" / ("train.txt" if command in ("data stats", "data check", "train") else "test.txt")
    bad.write_bytes(LATIN1)
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("")
    args = {"data stats": ["data", "stats", "--data", str(root)],
            "data check": ["data", "check", "--data", str(root), "--regions", "none", "--no-progress"],
            "evaluate": ["evaluate", "--data", str(root), "--split", "test", "--predictions", str(predictions)],
            "predict": ["predict", "--model", str(crop_model), "--data", str(root), "--split", "test",
                        "--out", str(tmp_path / "out.jsonl")],
            "train": ["train", "--config", str(text_only_config(tmp_path / "c.yaml", root)), "--out",
                      str(tmp_path / "run")]}[command]
    code, out, err = run_cli(capsys, *args)
    assert f"{bad}:3: byte 0xe9 at column 4 is not UTF-8" in out + err
    assert code == (1 if command == "data check" else 2)


# ------------------------------------------------------------------------------------ config, text

def test_a_config_value_of_the_wrong_type_names_the_config_file(tmp_path):
    config = text_only_config(tmp_path / "run.yaml", tmp_path)
    config.write_text(config.read_text().replace("epochs: 1", "epochs: many"))
    with pytest.raises(ValueError, match=rf"^{config}: train: epochs='many' should be int$"):
        load_config(config)


@pytest.mark.parametrize("text, message", [
    (None, "text must be a string or a list of word strings, got NoneType"),
    (["Jordan", ""], "word '': a word must be non-empty and without white space"),
    (["New York", "rocks"], "word 'New York': a word must be non-empty"),
    (["Jordan", 7], "text must be a string or a list of word strings"),
])
def test_predict_refuses_text_a_dataset_file_could_not_hold(predictor, picture, text, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(text, image=picture, proposals=BOXES)


# ------------------------------------------------------------------------------- decompression bombs

def test_a_decompression_bomb_is_a_clear_error_naming_the_file(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(20000, 20000))
    with pytest.raises(ValueError, match=rf"image {bomb} is too large to decode safely"):
        load_image(bomb)


def test_predict_one_post_with_a_bomb_image_is_one_line_and_exit_2(crop_model, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(20000, 20000))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(BOXES))
    code, out, err = run_cli(capsys, "predict", "--model", str(crop_model), "--text", "Jordan", "--image", str(bomb),
                             "--boxes", str(boxes))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"image {bomb} is too large to decode safely" in err


def test_predict_a_split_with_a_bomb_image_is_one_line_and_exit_2(crop_model, tmp_path, capsys):
    root = write_dataset(tmp_path / "d", {"test": GOOD.format(id="a")})
    (root / "images").mkdir()
    (root / "proposals").mkdir()
    (root / "images" / "a.jpg").write_bytes(png_header(20000, 20000))
    save_npz(root / "proposals" / "a.jpg.npz", BOXES)
    code, out, err = run_cli(capsys, "predict", "--model", str(crop_model), "--data", str(root), "--split", "test",
                             "--out", str(tmp_path / "out.jsonl"), "--no-progress")
    assert code == 2 and err.count("\n") == 1
    assert f"image {root / 'images' / 'a.jpg'} is too large to decode safely" in err


# ----------------------------------------------------------------------------- proposals vs. image

def test_proposals_made_for_another_image_size_are_refused_naming_both_files(predictor, picture, tmp_path):
    npz = save_npz(tmp_path / "other.jpg.npz", BOXES, size=(500, 400))
    with pytest.raises(ValueError, match=rf"{npz} was made for a 500x400 image but {picture} is 120x90"):
        predictor.predict("Jordan in Paris", image=picture, proposals=npz)
    rounding = save_npz(tmp_path / "post.jpg.npz", BOXES, size=(121, 88))
    predictor.predict("Jordan in Paris", image=picture, proposals=rounding)


def test_splits_refuse_proposals_of_another_image_size(crop_model, tmp_path, capsys):
    root = write_dataset(tmp_path / "d", {"test": GOOD.format(id="a")})
    (root / "images").mkdir()
    (root / "proposals").mkdir()
    scene().save(root / "images" / "a.jpg")
    npz = save_npz(root / "proposals" / "a.jpg.npz", BOXES, size=(1, 1))
    code, _, err = run_cli(capsys, "predict", "--model", str(crop_model), "--data", str(root), "--split", "test",
                           "--out", str(tmp_path / "out.jsonl"), "--no-progress")
    assert code == 2 and f"{npz} was made for a 1x1 image but {root / 'images' / 'a.jpg'} is 120x90" in err
    code, out, _ = run_cli(capsys, "data", "check", "--data", str(root), "--no-progress")
    assert code == 1 and "proposals of another image size: 1 of 3 posts" in out


@pytest.mark.parametrize("boxes, found", [([], "has no box for"), ([[200, 200, 300, 300]], "has no box inside the 120x90")])
def test_no_box_inside_the_image_is_a_warning_naming_the_file(predictor, picture, tmp_path, boxes, found):
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps(boxes))
    with pytest.warns(ProposalWarning, match=rf"{boxes_file} {found}.* {picture}: every entity of this post is "
                                             r"predicted ungroundable"):
        post = predictor.predict("Jordan in Paris", image=picture, proposals=boxes_file)
    assert all(e.box is None for e in post.entities)


def test_a_one_pixel_image_with_ordinary_boxes_is_a_warning(predictor, tmp_path):
    tiny = tmp_path / "dot.png"
    Image.new("RGB", (1, 1)).save(tiny)
    with pytest.warns(ProposalWarning, match=r"the given boxes has no box inside the 1x1 image"):
        predictor.predict("Jordan in Paris", image=tiny, proposals=[[2, 2, 40, 30]])


# ------------------------------------------------------------------------------------ training data

def test_predict_notes_a_model_trained_on_the_synthetic_benchmark(tmp_path, capsys):
    synth = tmp_path / "synth"
    synth.mkdir()
    (synth / "synth.json").write_text("{}")
    model = tiny_model(vision_encoder="none")
    synthetic = save_pretrained(model, tmp_path / "s", training_data=training_data(synth))
    real = save_pretrained(model, tmp_path / "r", training_data=training_data(tmp_path))
    code, _, err = run_cli(capsys, "predict", "--model", str(synthetic), "--text", "Jordan in Paris")
    assert code == 0 and err.count("was trained on the synthetic benchmark") == 1
    code, _, err = run_cli(capsys, "predict", "--model", str(real), "--text", "Jordan in Paris")
    assert code == 0 and "synthetic" not in err
