"""Crop sizes: the crop CNN's `model.crop_size`, and a CLIP tower's `model.clip_crop_size` (its own input
size by default; a smaller multiple of its patch size interpolates its position embeddings)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from helpers_model import hand_batch, save_tiny_clip, tiny_config, tiny_model, train_step
from mqspn.checkpoint import from_pretrained, read_config, save_pretrained
from mqspn.config import Config, ModelConfig, load_config
from mqspn.model.mqspn import MQSPN


@pytest.fixture(scope="module")
def clip64(tmp_path_factory):
    """A tiny CLIP tower with 64 px input in 16 px patches (4 x 4 patches)."""
    return save_tiny_clip(tmp_path_factory.mktemp("clip64"), image_size=64, patch_size=16)


def test_a_clip_tower_crops_at_its_own_size_unless_told(clip64):
    assert tiny_model(vision_encoder=f"clip:{clip64}").crop_size == 64
    assert tiny_model(vision_encoder=f"clip:{clip64}", clip_crop_size=32).crop_size == 32
    assert tiny_model(vision_encoder="cnn", crop_size=16).crop_size == 16


def test_a_clip_tower_at_a_smaller_crop_size_encodes_and_trains(clip64):
    model = tiny_model(vision_encoder=f"clip:{clip64}", clip_crop_size=32)
    batch = hand_batch(model)
    regions = sum(batch["region_counts"])
    assert batch["crops"].shape == (regions, 3, 32, 32)
    encoded = model.vision_encoder(batch["crops"])
    assert encoded.shape == (regions, 32) and torch.isfinite(encoded).all()
    assert model._blank_image().shape == (1, 3, 32, 32)
    loss = train_step(model, batch)
    assert torch.isfinite(loss)
    # The interpolated table is a function of the tower's own: its gradient reaches the stored one.
    position = model.vision_encoder.tower.get_submodule("embeddings").position_embedding.weight
    assert position.grad is not None and position.grad.abs().sum() > 0


def test_the_tower_at_its_own_size_computes_as_before(clip64):
    model = tiny_model(vision_encoder=f"clip:{clip64}", clip_crop_size=64).eval()
    crops = hand_batch(model)["crops"]
    pixels = (crops.float() / 255.0 - model.vision_encoder.mean) / model.vision_encoder.std
    with torch.no_grad():
        plain = model.vision_encoder.tower(pixel_values=pixels).pooler_output
        assert torch.equal(model.vision_encoder(crops), plain)


@pytest.mark.parametrize("size, hint", [(40, "32 or 48"), (8, "16 or 32")])
def test_a_clip_crop_size_off_the_patch_grid_is_refused(clip64, size, hint):
    model = tiny_model(vision_encoder=f"clip:{clip64}", clip_crop_size=size)
    with pytest.raises(ValueError, match=rf"model.clip_crop_size={size}: .* 16 px patches, so the side must be a "
                                         rf"multiple of 16 \(e.g. {hint}; its own size is 64\)"):
        hand_batch(model)


def test_each_crop_size_belongs_to_its_encoder():
    with pytest.raises(ValueError, match=r"model.clip_crop_size=128: .* clip:<folder> encoder \(vision_encoder=cnn\).*"
                                         r"the crop CNN's side is model.crop_size"):
        ModelConfig(clip_crop_size=128)
    with pytest.raises(ValueError, match=r"model.crop_size=128 is the crop CNN's and a CLIP encoder does not use it; "
                                         r"set model.clip_crop_size instead"):
        ModelConfig(vision_encoder="clip:/x", crop_size=128)
    with pytest.raises(ValueError, match=r"model.clip_crop_size=0: expected a side in pixels"):
        ModelConfig(vision_encoder="clip:/x", clip_crop_size=0)
    with pytest.raises(ValueError, match=r"model: clip_crop_size='128' should be int"):
        ModelConfig(vision_encoder="clip:/x", clip_crop_size="128")


@pytest.mark.parametrize("crop_size", [32, 48])
def test_a_run_config_saved_before_clip_crop_size_crops_at_the_towers_size(clip64, tmp_path, crop_size):
    # Saved by `mqspn train` before the key existed: crop_size (the CNN's default 32, or whatever it held)
    # sat unused beside the CLIP encoder, whose crops were the tower's own size.
    file = tmp_path / "config.yaml"
    file.write_text(f"model:\n  vision_encoder: clip:{clip64}\n  crop_size: {crop_size}\n  hidden_size: 32\n")
    cfg = load_config(file, resolved=True)
    assert (cfg.model.crop_size, cfg.model.clip_crop_size) == (32, None)
    assert MQSPN(tiny_config(vision_encoder=f"clip:{clip64}", crop_size=cfg.model.crop_size)).crop_size == 64


def test_a_users_config_with_the_cnn_default_beside_clip_keeps_the_towers_size(clip64, tmp_path):
    file = tmp_path / "mine.yaml"
    file.write_text(f"model:\n  vision_encoder: clip:{clip64}\n  crop_size: 32\n")
    assert load_config(file).model.clip_crop_size is None


def test_a_model_directory_keeps_its_clip_crop_size_and_an_older_one_the_towers(clip64, tmp_path):
    model = tiny_model(vision_encoder=f"clip:{clip64}", clip_crop_size=32).eval()
    directory = save_pretrained(model, tmp_path / "m")
    loaded = from_pretrained(directory)
    assert loaded.crop_size == 32
    batch = hand_batch(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch)["layers"][-1]["type_logits"], model(batch)["layers"][-1]["type_logits"])

    old = tmp_path / "old"
    shutil.copytree(directory, old)
    config = json.loads((old / "config.json").read_text())
    del config["model"]["clip_crop_size"]
    (old / "config.json").write_text(json.dumps(config))
    assert read_config(old).model.clip_crop_size is None
    assert from_pretrained(old).crop_size == 64


def test_the_paper_recipe_keeps_clip_at_its_own_size():
    assert load_config("twitter-gmner").model.clip_crop_size is None
    assert Config.from_dict({"model": {"vision_encoder": "clip:/x", "clip_crop_size": 128}}).model.clip_crop_size == 128
