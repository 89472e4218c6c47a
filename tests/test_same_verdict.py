"""One verdict everywhere: unknown entity types and posts past the encoder limit are judged alike by
`mqspn data check`, training, `mqspn evaluate` and prediction; prediction never stops a split for a long post."""
from __future__ import annotations

import json

import pytest

from helpers_data import GOOD, conll, long_post, run_cli, text_only_config, write_dataset
from helpers_model import tiny_model
from mqspn.checkpoint import save_pretrained
from mqspn.config import load_config
from mqspn.predictor import Predictor
from mqspn.trainer import Run
from mqspn.truncation import TruncationWarning, fitting_words

FOO = conll("foo1", [("Acme", "B-FOO"), ("rocks", "O")])
#: 600 words of the tiny character-level encoder: 602 sub-words, past its limit of 512.
LONG = long_post("long1", 600, entity_at=550)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    return save_pretrained(tiny_model(seed=0, vision_encoder="none").eval(), tmp_path_factory.mktemp("m") / "text")


def test_fitting_words_keeps_whole_words_and_the_special_tokens():
    ids = [None, 0, 0, 1, 1, 1, 2, None]
    assert fitting_words(ids, 8) == 3
    assert fitting_words(ids, 7) == 2  # word 2 no longer fits
    assert fitting_words(ids, 5) == 1  # word 1 would be cut in the middle: dropped whole
    assert fitting_words(ids, 4) == 1


# ------------------------------------------------------------------------------------- unknown types

def test_an_unknown_type_is_fatal_in_data_check_with_and_without_a_config(tmp_path, capsys):
    root = write_dataset(tmp_path / "d", {"train": GOOD.format(id="a") + FOO})
    train_txt = root / "txt" / "train.txt"
    code, out, _ = run_cli(capsys, "data", "check", "--data", str(root), "--regions", "none", "--no-progress")
    assert code == 1
    assert f"{train_txt}:8: post foo1: entity type 'FOO' is not among the model's types" in out
    assert "unknown entity types: 1 posts have an entity type outside" in out
    config = text_only_config(tmp_path / "c.yaml", root)
    code, out, _ = run_cli(capsys, "data", "check", "--config", str(config), "--no-progress")
    assert code == 1 and f"{train_txt}:8: post foo1: entity type 'FOO'" in out


def train_on(tmp_path, post: str, name: str = "run", **data) -> dict:
    """Train the tiny text-only model one epoch on a train split of a good post and `post`."""
    root = tmp_path / "d"
    if not root.exists():
        write_dataset(root, {"train": GOOD.format(id="a") + post})
    return Run.start(load_config(text_only_config(tmp_path / f"{name}.yaml", root, **data)), tmp_path / name).run()


def test_training_refuses_an_unknown_type_naming_file_and_line(tmp_path):
    with pytest.raises(ValueError, match=rf"{tmp_path / 'd' / 'txt' / 'train.txt'}:8: post foo1: entity type 'FOO' "
                                         r"is not among the model's types \(PER, LOC, ORG, OTHER\)"):
        train_on(tmp_path, FOO)


def test_evaluate_refuses_an_unknown_gold_type_instead_of_scoring_a_row_for_it(tmp_path, capsys):
    root = write_dataset(tmp_path / "d", {"test": GOOD.format(id="a") + FOO})
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(json.dumps({"id": "a", "entities": []}) + "\n")
    code, out, err = run_cli(capsys, "evaluate", "--data", str(root), "--split", "test", "--predictions",
                             str(predictions))
    assert code == 2 and out == ""
    assert f"{root / 'txt' / 'test.txt'}:8: post foo1: entity type 'FOO' is not among the gmner types" in err


# -------------------------------------------------------------------------------------- long posts

def test_data_check_with_a_config_reports_posts_past_the_encoder_limit(tmp_path, capsys):
    root = write_dataset(tmp_path / "d", {"dev": LONG})
    config = text_only_config(tmp_path / "c.yaml", root)
    code, out, _ = run_cli(capsys, "data", "check", "--config", str(config), "--no-progress")
    assert code == 1
    assert f"{root / 'txt' / 'dev.txt'}:1: post long1: 602 sub-words exceed the text encoder's limit of 512" in out
    assert "posts past the encoder limit: 1 posts (training stops at the first)" in out
    code, out, _ = run_cli(capsys, "data", "check", "--config", str(config), "--set", "data.truncate=true",
                           "--no-progress")
    assert code == 0 and "posts past the encoder limit: 1 posts (data.truncate: training cuts them)" in out


def test_training_refuses_a_long_post_naming_file_and_line_unless_told_to_truncate(tmp_path):
    with pytest.raises(ValueError, match=rf"{tmp_path / 'd' / 'txt' / 'train.txt'}:7: post long1: 602 sub-words "
                                         r"exceed .*data.truncate: true"):
        train_on(tmp_path, LONG)
    with pytest.warns(TruncationWarning, match=r"post long1: longer than the text encoder's limit; kept the first "
                                               r"510 of 600 words \(90 cut; 1 gold entity past the cut"):
        train_on(tmp_path, LONG, "cut", truncate=True)


def test_predicting_a_split_with_json_prints_a_throughput_summary(text_model, tmp_path, capsys):
    root = write_dataset(tmp_path / "d", {"test": GOOD.format(id="a") + GOOD.format(id="b")})
    out_file = tmp_path / "preds.jsonl"
    code, out, err = run_cli(capsys, "predict", "--model", str(text_model), "--data", str(root), "--split", "test",
                             "--out", str(out_file), "--no-progress", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert set(summary) == {"posts", "seconds", "posts_per_s", "out"}
    assert summary["posts"] == 2 and summary["out"] == str(out_file) and summary["posts_per_s"] > 0
    assert "posts/s" in err


def test_predicting_a_split_cuts_a_long_post_with_one_warning_and_writes_every_post(text_model, tmp_path, capsys):
    root = write_dataset(tmp_path / "d", {"test": GOOD.format(id="a") + LONG + GOOD.format(id="b")})
    out_file = tmp_path / "preds.jsonl"
    code, _, err = run_cli(capsys, "predict", "--model", str(text_model), "--data", str(root), "--split", "test",
                           "--out", str(out_file), "--no-progress")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == [f"mqspn predict: warning: {root / 'txt' / 'test.txt'}:7: post long1: longer than the text "
                        "encoder's limit; kept the first 510 of 600 words (90 cut; 1 gold entity past the cut "
                        "cannot be predicted)"]
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["a", "long1", "b"]
    assert all(e["end"] < 510 for e in lines[1]["entities"])


def test_predicting_one_long_post_cuts_it_with_a_warning(text_model):
    predictor = Predictor.from_pretrained(text_model, "cpu")
    with pytest.warns(TruncationWarning, match=r"post input: .*kept the first 510 of 600 words \(90 cut\)"):
        post = predictor.predict(" ".join(["w"] * 600))
    assert len(post.words) == 600 and all(e.end < 510 for e in post.entities)


def test_data_check_without_the_configs_text_encoder_checks_the_rest_and_says_so(tmp_path, capsys):
    root = write_dataset(tmp_path / "d", {"train": GOOD.format(id="a") + FOO})
    config = text_only_config(tmp_path / "c.yaml", root)
    config.write_text(config.read_text().replace("text_encoder: tiny", f"text_encoder: {tmp_path / 'no-bert'}"))
    code, out, err = run_cli(capsys, "data", "check", "--config", str(config), "--no-progress")
    assert code == 1 and "entity type 'FOO'" in out
    assert err.startswith("mqspn data: warning: post lengths are not checked: text_encoder=") and "no-bert" in err
