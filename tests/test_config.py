"""Config loading: YAML files, --set overrides and type errors that name the key."""
from pathlib import Path

import pytest

from mqspn.config import Config, TrainConfig, config_path, load_config, recipes

DEMO = Path(__file__).resolve().parent.parent / "mqspn" / "configs" / "demo.yaml"


def test_set_overrides_reach_the_config():
    cfg = load_config(DEMO, ["train.epochs=3", "model.types=[A, B]", 'data.root="x y"'])
    assert (cfg.train.epochs, cfg.model.types, cfg.data.root) == (3, ["A", "B"], "x y")


def test_exponent_without_a_dot_is_a_float(tmp_path):
    # YAML 1.1 reads 1e-4 as the string "1e-4"; a float field must still get 0.0001.
    cfg = load_config(DEMO, ["train.encoder_lr=1e-4", "train.lr=3E-3"])
    assert cfg.train.encoder_lr == pytest.approx(1e-4) and isinstance(cfg.train.encoder_lr, float)
    assert cfg.train.lr == pytest.approx(3e-3)
    file = tmp_path / "c.yaml"
    file.write_text(DEMO.read_text().replace("lr: 0.001", "lr: 2e-5"))
    assert load_config(file).train.lr == pytest.approx(2e-5)


@pytest.mark.parametrize("item, message", [
    ("train.lr=fast", r"train: lr='fast' should be float"),
    ("train.epochs=2.5", r"train: epochs=2.5 should be int"),
    ("model.bilinear_scores=3", r"bilinear_scores=3 should be bool"),
    ("train.nope=1", r"unknown key 'nope' in section train"),
    ("epochs=1", r"key must be <section>.<name> with section one of data, model, loss, decode, train"),
    ("decode.entity_threshold=1.5", r"decode.entity_threshold=1.5: expected a probability in \[0, 1\)"),
    ("loss.region_loss=focal", r"loss.region_loss='focal': expected one of bce, softmax"),
    ("data.top_k=0", r"data.top_k=0: expected at least 1"),
    ("train.epochs", r"expected section.key=value"),
    ("model.word_buckets=-1", r"model.word_buckets=-1: expected 0 \(off\) or a number of rows"),
])
def test_bad_overrides_name_the_key(item, message):
    with pytest.raises(ValueError, match=message):
        load_config(DEMO, [item])


@pytest.mark.parametrize("path", sorted((DEMO.parent).glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_without_deprecation_warnings(path, recwarn):
    cfg = load_config(path)
    assert cfg.model.num_queries % max(len(cfg.model.types), 1) == 0  # u is a multiple of the type count
    assert [str(w.message) for w in recwarn if issubclass(w.category, FutureWarning)] == []


def test_a_bare_recipe_name_resolves_to_the_shipped_recipe_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert recipes() == sorted(p.stem for p in DEMO.parent.glob("*.yaml"))
    assert config_path("demo") == config_path("demo.yaml") == DEMO
    assert load_config("twitter-gmner").data.proposals == "vinvl"
    (tmp_path / "demo.yaml").write_text("train:\n  epochs: 2\n")
    assert load_config("demo.yaml").train.epochs == 2  # an existing file wins over the recipe
    with pytest.raises(FileNotFoundError, match=r"no shipped recipe has that name \(shipped: demo, "):
        load_config("dmeo")


OLD_LAYOUT = """
data:
  root: somewhere
  regions: crops
model:
  vision_encoder: cnn
  top_k: 7
  crop_augment: true
  max_targets: 10
  null_weight: 0.2
  entity_threshold: 0.5
  region_vote: true
"""


def test_a_config_in_the_pre_split_layout_loads_with_one_warning_per_moved_key(tmp_path):
    file = tmp_path / "old.yaml"
    file.write_text(OLD_LAYOUT)
    with pytest.warns(FutureWarning) as caught:
        cfg = load_config(file, ["model.cost_region=2.0"])
    assert (cfg.data.top_k, cfg.train.crop_augment, cfg.loss.max_targets, cfg.loss.null_weight) == (7, True, 10, 0.2)
    assert (cfg.decode.entity_threshold, cfg.decode.region_vote, cfg.loss.cost_region) == (0.5, True, 2.0)
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 8 and all("\n" not in m and str(file) in m for m in messages)
    assert f"{file}: model.top_k is now data.top_k; move it there" in messages
    assert any("data.regions is no longer needed" in m for m in messages)


def test_an_old_data_regions_that_contradicts_the_vision_encoder_is_an_error(tmp_path):
    file = tmp_path / "old.yaml"
    file.write_text("data:\n  regions: none\nmodel:\n  vision_encoder: cnn\n")
    with pytest.raises(ValueError, match=r"data.regions=none does not fit model.vision_encoder=cnn"):
        load_config(file)


def test_a_key_in_both_its_old_and_new_section_is_an_error():
    with pytest.raises(ValueError, match=r"top_k is set in both model and data; keep data.top_k only"):
        Config.from_dict({"model": {"top_k": 3}, "data": {"top_k": 4}})


def test_the_old_freeze_epochs_sets_both_encoders_with_one_warning_naming_the_new_keys(tmp_path):
    file = tmp_path / "old.yaml"
    file.write_text("train:\n  freeze_epochs: 3\n")
    with pytest.warns(FutureWarning) as caught:
        cfg = load_config(file)
    assert (cfg.train.freeze_text_epochs, cfg.train.freeze_vision_epochs) == (3, 3)
    assert [str(w.message) for w in caught] == [
        f"{file}: train.freeze_epochs is now train.freeze_text_epochs and train.freeze_vision_epochs "
        "(set each to 3 to keep it); replace it"]
    with pytest.raises(ValueError, match=r"train.freeze_epochs and train.freeze_vision_epochs are both set; keep "
                                         r"train.freeze_text_epochs and train.freeze_vision_epochs only"):
        load_config(file, ["train.freeze_vision_epochs=-1"])


def test_each_encoder_is_frozen_for_its_own_epochs():
    train = TrainConfig(freeze_text_epochs=2, freeze_vision_epochs=-1)
    assert [train.frozen_at(e) for e in (0, 1, 2, 49)] == [{"text": True, "vision": True}] * 2 + [
        {"text": False, "vision": True}] * 2
    assert TrainConfig(freeze_text_epochs=0, freeze_vision_epochs=0).frozen_at(0) == {"text": False, "vision": False}
    with pytest.raises(ValueError, match=r"train.freeze_vision_epochs=-2: expected -1 \(always frozen\) or N >= 0"):
        TrainConfig(freeze_vision_epochs=-2)


def test_a_saved_run_config_without_the_projection_key_means_the_trained_projection(tmp_path):
    # Written before model.type_query_projection existed: its models were built with a trained projection.
    file = tmp_path / "config.yaml"
    file.write_text("model:\n  hidden_size: 32\n")
    assert load_config(file, resolved=True).model.type_query_projection == "trained"
    assert load_config(file).model.type_query_projection == "none"  # a user's file gets today's default
    # ... and before QFNet refined the words and regions: the query-only form.
    assert load_config(file, resolved=True).model.refine_states is False
    assert load_config(file).model.refine_states is True


def test_region_mode_follows_the_vision_encoder():
    modes = {v: Config.from_dict({"model": {"vision_encoder": v}}).model.region_mode
             for v in ("cnn", "clip:/x", "features", "none")}
    assert modes == {"cnn": "crops", "clip:/x": "crops", "features": "features", "none": "none"}
