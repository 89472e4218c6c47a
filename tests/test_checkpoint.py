"""Model directories: save -> load gives identical outputs; damaged directories give errors naming the file."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from helpers_model import hand_batch, hand_posts, save_tiny_clip, scene, tiny_model, train_step  # noqa: F401
from mqspn import checkpoint
from mqspn.checkpoint import from_pretrained, load_training_state, read_config, save_pretrained
from mqspn.config import Config, DataConfig, DecodeConfig, LossConfig
from mqspn.predictor import Predictor


def trained_a_little(model):
    """One SGD step on the hand-made batch, so saved weights differ from any fresh initialisation; the
    null class is then made unlikely, so that the model predicts entities whose outputs can be compared."""
    train_step(model.train(), hand_batch(model))
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    with torch.no_grad():
        model.heads.classify[-1].bias[-1] -= 10.0
    return model.eval()


def assert_same_outputs(a, b) -> None:
    a.eval(), b.eval()
    batch = hand_batch(a)
    with torch.no_grad():
        out_a, out_b = a(batch, all_layers=True), b(batch, all_layers=True)
    for layer_a, layer_b in zip(out_a["layers"], out_b["layers"], strict=True):
        for key, value in layer_a.items():
            assert torch.equal(value, layer_b[key]), key


def entities_json(post) -> list:
    return [(e.start, e.end, e.type, e.box, round(e.score, 6)) for e in post.entities]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = trained_a_little(tiny_model(seed=3))
    directory = save_pretrained(model, tmp_path_factory.mktemp("models") / "tiny")
    return model, directory


def test_model_directory_holds_config_weights_tokenizer_and_card(saved):
    model, directory = saved
    assert sorted(p.name for p in directory.iterdir()) == ["README.md", "checksums.json", "config.json",
                                                          "model.safetensors", "text_encoder"]
    config = json.loads((directory / "config.json").read_text())
    assert config["format_version"] == checkpoint.FORMAT_VERSION
    assert config["model"]["hidden_size"] == 32 and config["model"]["types"] == ["PER", "LOC", "ORG", "OTHER"]
    assert (directory / "text_encoder" / "config.json").is_file()
    assert (directory / "text_encoder" / "tokenizer.json").is_file()
    card = (directory / "README.md").read_text()
    assert "PER, LOC, ORG, OTHER" in card and "torch" in card and "Predictor.from_pretrained" in card


def test_save_then_load_gives_identical_outputs_and_predictions(saved):
    model, directory = saved
    loaded = from_pretrained(directory)
    assert not loaded.training
    assert loaded.config == model.config
    assert_same_outputs(model, loaded)
    (post, regions), _, _ = hand_posts()
    boxes = [list(r.box) for r in regions]
    direct = Predictor(model, "cpu").predict(post.words, image=scene(), proposals=boxes)
    reloaded = Predictor.from_pretrained(directory, "cpu").predict(" ".join(post.words), image=scene(), proposals=boxes)
    assert entities_json(direct) == entities_json(reloaded)
    assert direct.entities, "the test needs at least one prediction to compare"


def test_the_loss_decode_and_data_sections_are_saved_and_decoding_is_overridable_at_predict_time(tmp_path):
    model = trained_a_little(tiny_model(seed=3))
    config = Config(data=DataConfig(root="/data/x", proposals="vinvl", top_k=2), loss=LossConfig(region_loss="softmax"),
                    decode=DecodeConfig(region_vote=True, max_span_words=5))
    directory = save_pretrained(model, tmp_path / "m", config)
    saved = read_config(directory)
    assert (saved.model, saved.loss, saved.decode, saved.data) == (model.config, config.loss, config.decode, config.data)
    predictor = Predictor.from_pretrained(directory, "cpu")
    assert predictor.top_k == 2 and predictor.decoder.scoring.softmax and predictor.decoder.cfg == config.decode
    (post, regions), _, _ = hand_posts()
    boxes = [list(r.box) for r in regions]
    default = entities_json(predictor.predict(post.words, image=scene(), proposals=boxes))
    assert default, "the test needs at least one prediction"
    scores = [score for *_, score in default]
    below, above = min(scores) - 1e-3, max(scores) + 1e-3
    lenient = Predictor.from_pretrained(directory, "cpu", decode={"entity_threshold": below})
    assert lenient.decoder.cfg == DecodeConfig(region_vote=True, max_span_words=5, entity_threshold=below)
    assert entities_json(lenient.predict(post.words, image=scene(), proposals=boxes)) == default
    strict = Predictor.from_pretrained(directory, "cpu", decode=DecodeConfig(entity_threshold=above))
    assert strict.predict(post.words, image=scene(), proposals=boxes).entities == []
    with pytest.raises(ValueError, match=r"decode: unknown key\(s\) \['threshold'\]"):
        Predictor.from_pretrained(directory, "cpu", decode={"threshold": 0.5})


def test_a_model_directory_of_format_1_still_loads_with_its_settings_in_their_new_sections(saved, tmp_path):
    model, directory = saved
    old = tmp_path / "old"
    shutil.copytree(directory, old)
    config = json.loads((old / "config.json").read_text())
    flat = {**config["model"], "top_k": 4, "crop_augment": True, "region_loss": "softmax", "max_targets": 5,
            "entity_threshold": 0.2, "decode_rank": "joint"}
    (old / "config.json").write_text(json.dumps({"format_version": 1, "model": flat}))
    cfg = read_config(old)
    assert (cfg.data.top_k, cfg.loss.region_loss, cfg.loss.max_targets) == (4, "softmax", 5)
    assert (cfg.decode.entity_threshold, cfg.decode.decode_rank, cfg.model) == (0.2, "joint", model.config)
    assert_same_outputs(model, from_pretrained(old))


def test_a_model_directory_saved_before_the_projection_switch_loads_with_its_trained_projection(saved, tmp_path):
    model, directory = saved
    old = tmp_path / "old"
    shutil.copytree(directory, old)
    config = json.loads((old / "config.json").read_text())
    del config["model"]["type_query_projection"]
    (old / "config.json").write_text(json.dumps(config))
    assert read_config(old).model.type_query_projection == "trained"
    assert_same_outputs(model, from_pretrained(old))


def test_a_model_directory_saved_before_qfnet_refined_words_and_regions_loads_in_the_query_only_form(tmp_path):
    model = trained_a_little(tiny_model(seed=5, refine_states=False))
    directory = save_pretrained(model, tmp_path / "m")
    config = json.loads((directory / "config.json").read_text())
    del config["model"]["refine_states"]
    (directory / "config.json").write_text(json.dumps(config))
    assert read_config(directory).model.refine_states is False
    assert_same_outputs(model, from_pretrained(directory))


@pytest.mark.parametrize("overrides", [{"vision_encoder": "features"}, {"vision_encoder": "none"},
                                       {"learnable_queries": False, "use_type_queries": False},
                                       {"ungroundable_slot": "learned", "type_uses_region": False},
                                       {"type_query_projection": "none"}, {"type_query_projection": "frozen"},
                                       {"learnable_queries": False, "type_query_projection": "frozen"},
                                       {"refine_states": False}],
                         ids=["features", "text-only", "handwritten-queries", "learned-slot", "projection-none",
                              "projection-frozen", "handwritten-frozen", "query-only-qfnet"])
def test_round_trip_of_other_configurations(tmp_path, overrides):
    model = trained_a_little(tiny_model(seed=4, **overrides))
    loaded = from_pretrained(save_pretrained(model, tmp_path / "m"))
    assert loaded.config == model.config
    assert_same_outputs(model, loaded)


def test_fine_grained_type_names_survive_the_round_trip(tmp_path):
    types = ["person", "sports_team", "music_group", "award_event"]
    model = tiny_model(types=types)
    loaded = from_pretrained(save_pretrained(model, tmp_path / "m"))
    assert loaded.config.types == types


@pytest.fixture
def clip_model_dir(tmp_path):
    """(model, saved directory) of a tiny model over a random-init CLIP tower whose source folder is deleted."""
    source = save_tiny_clip(tmp_path / "clip")
    model = trained_a_little(tiny_model(vision_encoder=f"clip:{source}"))
    directory = save_pretrained(model, tmp_path / "m")
    shutil.rmtree(source)
    return model, directory


def test_clip_model_loads_without_its_source_folder(clip_model_dir):
    model, directory = clip_model_dir
    assert (directory / "vision_encoder" / "config.json").is_file()
    loaded = from_pretrained(directory)
    assert loaded.config == model.config
    assert_same_outputs(model, loaded)


def test_clip_model_predicts_without_its_source_folder(clip_model_dir):
    _, directory = clip_model_dir
    (post, regions), _, _ = hand_posts()
    Predictor.from_pretrained(directory, "cpu").predict(post.words, image=scene(), proposals=[r.box for r in regions])


def test_saving_again_replaces_the_directory_and_leaves_no_temporary_files(tmp_path):
    first, second = tiny_model(seed=1), trained_a_little(tiny_model(seed=2))
    save_pretrained(first, tmp_path / "m")
    save_pretrained(second, tmp_path / "m", training_state={"epoch": 3})
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    assert_same_outputs(second, from_pretrained(tmp_path / "m"))
    assert load_training_state(tmp_path / "m")["epoch"] == 3


def test_a_failed_save_keeps_the_previous_directory(tmp_path, monkeypatch):
    model = tiny_model(seed=1)
    save_pretrained(model, tmp_path / "m")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(tiny_model(seed=2), tmp_path / "m")
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    assert_same_outputs(model, from_pretrained(tmp_path / "m"))


@pytest.fixture
def copy_of(saved, tmp_path):
    directory = tmp_path / "copy"
    shutil.copytree(saved[1], directory)
    return directory


def test_missing_directory_or_config_json_is_a_clear_error(copy_of, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere is not a model directory: config.json is missing"):
        from_pretrained(tmp_path / "nowhere")
    (copy_of / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"copy is not a model directory: config.json is missing"):
        from_pretrained(copy_of)


@pytest.mark.parametrize("text", ["{not json", json.dumps({"format_version": 1})], ids=["invalid-json", "no-model-section"])
def test_damaged_config_json_is_a_clear_error(copy_of, text):
    (copy_of / "config.json").write_text(text)
    with pytest.raises(ValueError, match=r"copy/config.json"):
        from_pretrained(copy_of)


def test_a_config_value_of_the_wrong_type_is_a_clear_error(copy_of):
    (copy_of / "config.json").write_text(json.dumps({"model": {"hidden_size": "big"}}))
    with pytest.raises(ValueError, match=r"copy/config.json"):
        from_pretrained(copy_of)


def test_missing_weights_file_is_a_clear_error(copy_of):
    (copy_of / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"copy/model.safetensors is missing"):
        from_pretrained(copy_of)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_or_truncated_weights_are_a_clear_error(copy_of, damage):
    weights = copy_of / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x07" * 5000, "empty": b""}[damage])
    with pytest.raises(ValueError, match=r"copy/model.safetensors is corrupt or truncated"):
        from_pretrained(copy_of)


def test_weights_missing_from_the_configured_architecture_are_a_clear_error(tmp_path):
    directory = save_pretrained(tiny_model(use_aggregator=False), tmp_path / "m")
    config = json.loads((directory / "config.json").read_text())
    config["model"]["use_aggregator"] = True
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"model.safetensors does not fit the configuration .*aggregator"):
        from_pretrained(directory)


def test_weights_of_another_size_are_a_clear_error(copy_of):
    config = json.loads((copy_of / "config.json").read_text())
    config["model"]["hidden_size"] = 64
    (copy_of / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"model.safetensors does not fit"):
        from_pretrained(copy_of)


def test_training_state_errors_name_the_file(copy_of):
    with pytest.raises(FileNotFoundError, match=r"copy/training_state.json is missing: nothing to resume from"):
        load_training_state(copy_of)
    save_pretrained(tiny_model(), copy_of, training_state={"epoch": 3})
    (copy_of / checkpoint.TRAINING_STATE).write_text('{"format": 1, "state": {"epoch": ')
    with pytest.raises(ValueError, match=r"copy/training_state.json is corrupt or truncated"):
        load_training_state(copy_of)
