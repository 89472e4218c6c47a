"""Config loading: YAML files, --set overrides and type errors that name the key."""
from pathlib import Path

import pytest

from mqspn.config import load_config

DEMO = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


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
    ("epochs=1", r"key must be data.<name>, model.<name> or train.<name>"),
    ("train.epochs", r"expected section.key=value"),
    ("model.word_buckets=-1", r"model.word_buckets=-1: expected 0 \(off\) or a number of rows"),
])
def test_bad_overrides_name_the_key(item, message):
    with pytest.raises(ValueError, match=message):
        load_config(DEMO, [item])


@pytest.mark.parametrize("path", sorted((DEMO.parent).glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.model.num_queries % max(len(cfg.model.types), 1) == 0  # u is a multiple of the type count
    assert (cfg.data.regions == "none") == (cfg.model.vision_encoder == "none")
