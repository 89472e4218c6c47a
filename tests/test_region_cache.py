"""The on-disk region cache of a frozen CLIP tower (`mqspn.region_cache`): written once, reused by later
epochs and runs without a vision call, equal to the crops held in memory, rebuilt for exactly what changed,
and never read when damaged."""
from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers_model import save_tiny_clip, synth_dataset, tiny_run_config
from mqspn import trainer
from mqspn.build import build_examples, build_model, build_region_cache
from mqspn.config import ModelConfig, TrainConfig, load_config
from mqspn.model.vision_encoder import ClipRegionEncoder
from mqspn.region_cache import INDEX, cache_root, encoder_key
from mqspn.trainer import Run, read_posts


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """60 posts (42 train, 9 dev, 9 test)."""
    return synth_dataset(tmp_path_factory.getbasetemp(), posts=60, seed=11)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture
def vision_calls(monkeypatch):
    """Counts the crops (blank image included) that the CLIP tower encodes."""
    calls = []
    real = ClipRegionEncoder.forward

    def counted(self, crops):
        calls.append(len(crops))
        return real(self, crops)

    monkeypatch.setattr(ClipRegionEncoder, "forward", counted)
    return calls


def clip_config(synth, clip, **train):
    cfg = tiny_run_config(synth, **{"epochs": 2, "max_train_posts": 16, "freeze_vision_epochs": -1, **train})
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vision_encoder=f"clip:{clip}"))


def weights(run_dir):
    return load_file(str(run_dir / "last" / "model.safetensors"))


def posts_images(run):
    return [p.image for p in (*run.train_posts, *run.dev_posts, *run.test_posts)]


def test_the_cache_is_written_once_and_later_epochs_and_runs_make_no_vision_call(synth, clip, tmp_path, vision_calls):
    cfg = clip_config(synth, clip, region_cache=str(tmp_path / "cache"))
    first = Run.start(cfg, tmp_path / "first")
    images = set(posts_images(first))
    assert first.region_cache.encoded == len(images)
    assert len(vision_calls) == len(images) + 1  # one call per image, one for the blank image
    vision_calls.clear()
    first.run()
    assert vision_calls == [], "training from the cache called the tower"
    file = first.region_cache.file
    stamp = file.stat().st_mtime_ns

    second = Run.start(cfg, tmp_path / "second")
    second.run()
    assert vision_calls == [] and second.region_cache.encoded == 0
    assert second.region_cache.file == file and file.stat().st_mtime_ns == stamp
    assert "crops" not in next(iter(second.train_loader))  # no pixels held
    assert metric_lines(tmp_path / "first") == metric_lines(tmp_path / "second")


def metric_lines(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_training_from_the_cache_matches_the_crops_held_in_memory(synth, clip, tmp_path):
    results, runs = {}, {setting: tmp_path / setting / "run" for setting in ("off", "auto")}
    for setting, run_dir in runs.items():
        results[setting] = Run.start(clip_config(synth, clip, region_cache=setting), run_dir).run()
    # auto: beside the run folder, so the runs of one folder (the seeds of --seeds) share it
    assert (tmp_path / "auto" / "region-cache").is_dir() and not (tmp_path / "off" / "region-cache").exists()
    for a, b in zip(metric_lines(runs["off"]), metric_lines(runs["auto"])):
        assert a.keys() == b.keys()
        assert all(a[k] == pytest.approx(b[k], abs=1e-4) for k in a)
    off, auto = weights(runs["off"]), weights(runs["auto"])
    assert all(torch.allclose(off[k], auto[k], atol=1e-5) for k in off)
    assert results["off"] == results["auto"]


def test_resume_from_the_cache_is_bit_identical(synth, clip, tmp_path, monkeypatch):
    cfg = clip_config(synth, clip)
    Run.start(cfg, tmp_path / "whole").run()
    real = trainer.train_one_epoch

    def killed_in_epoch_2(*args, **kwargs):
        if inspect.signature(real).bind(*args, **kwargs).arguments["epoch"] == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        Run.start(cfg, tmp_path / "resumed").run()
    monkeypatch.setattr(trainer, "train_one_epoch", real)
    Run.resume(tmp_path / "resumed").run()
    whole, resumed = weights(tmp_path / "whole"), weights(tmp_path / "resumed")
    assert [k for k in whole if not torch.equal(whole[k], resumed[k])] == []


@pytest.fixture
def filled(synth, clip, tmp_path):
    """(model, config, images, cache) of a cache filled under tmp_path/cache."""
    cfg = clip_config(synth, clip, region_cache=str(tmp_path / "cache"))
    model = build_model(cfg.model)
    images = sorted(p.name for p in (synth / "images").iterdir())[:12]
    return model, cfg, images, build_region_cache(model, cfg, tmp_path, images)


def rows(cache, images):
    return {name: cache.array[cache.entries[name].offset: cache.entries[name].offset + cache.entries[name].count].copy()
            for name in images}


def test_a_changed_proposal_file_invalidates_that_image_alone(filled, synth, tmp_path, vision_calls):
    model, cfg, images, cache = filled
    before = rows(cache, images)
    changed = images[3]
    path = synth / "proposals" / f"{changed}.npz"
    original = path.read_bytes()
    try:
        with np.load(path) as npz:
            arrays = dict(npz)
        arrays["bounding_boxes"] = arrays["bounding_boxes"][::-1].copy()  # the same boxes, another order
        np.savez(path, **arrays)
        again = build_region_cache(model, cfg, tmp_path, images)
    finally:
        path.write_bytes(original)
    assert again.encoded == 1 and len(vision_calls) == 2  # the blank image and the changed image
    after = rows(again, images)
    assert not np.array_equal(after[changed], before[changed])
    assert all(np.array_equal(after[n], before[n]) for n in images if n != changed)
    assert not cache.file.exists() and again.file.exists()  # the old file is replaced, not grown


def test_a_second_open_reuses_every_row_and_a_new_image_is_added(filled, synth, tmp_path, vision_calls):
    model, cfg, images, cache = filled
    assert build_region_cache(model, cfg, tmp_path, images).encoded == 0 and vision_calls == []
    extra = sorted(p.name for p in (synth / "images").iterdir())[12]
    grown = build_region_cache(model, cfg, tmp_path, [*images, extra])
    assert grown.encoded == 1
    assert all(np.array_equal(a, b) for a, b in zip(rows(grown, images).values(), rows(cache, images).values()))


def test_another_tower_or_top_k_uses_another_cache(filled, tmp_path):
    model, cfg, images, cache = filled
    tower = model.vision_encoder
    key = encoder_key(tower, cfg.data.top_k, 32)
    assert cache.folder.name == key
    assert encoder_key(tower, cfg.data.top_k + 1, 32) != key
    other = build_model(cfg.model)
    with torch.no_grad():
        next(other.vision_encoder.parameters()).add_(1e-3)
    assert encoder_key(other.vision_encoder, cfg.data.top_k, 32) != key
    smaller = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, top_k=2))
    fewer = build_region_cache(model, smaller, tmp_path, images)
    assert fewer.folder != cache.folder and fewer.encoded == len(images)
    assert max(e.count for e in fewer.entries.values()) <= 2


@pytest.mark.parametrize("damage", ["truncated", "altered", "index"])
def test_a_damaged_cache_is_rebuilt_with_a_warning_naming_its_file(filled, tmp_path, damage):
    model, cfg, images, cache = filled
    before = rows(cache, images)
    if damage == "truncated":
        cache.file.write_bytes(cache.file.read_bytes()[:-100])
        named = cache.file.name
    elif damage == "altered":
        data = bytearray(cache.file.read_bytes())
        data[200] ^= 0xFF
        cache.file.write_bytes(bytes(data))
        named = cache.file.name
    else:
        (cache.folder / INDEX).write_text("{not json")
        named = INDEX
    with pytest.warns(RuntimeWarning, match=rf"region cache.*{named}.*rebuilding"):
        rebuilt = build_region_cache(model, cfg, tmp_path, images)
    assert rebuilt.encoded == len(images)
    assert all(np.array_equal(a, b) for a, b in zip(rows(rebuilt, images).values(), before.values()))


def test_examples_from_the_cache_carry_the_rows_and_no_crops(filled):
    model, cfg, images, cache = filled
    builder = build_examples(model, cfg.data, region_cache=cache)
    crops_builder = build_examples(model, cfg.data)
    post = next(p for p in read_posts(cfg, "train") if p.image in images)
    cached, held = builder.build(post), crops_builder.build(post)
    assert cached.crops is None and held.crops is not None
    assert [r.box for r in cached.regions] == [r.box for r in held.regions]
    model.eval()
    with torch.no_grad():
        assert torch.equal(cached.encodings, model.vision_encoder(held.crops))
        assert torch.equal(cached.blank_encoding, model.vision_encoder(model._blank_image())[0])


@pytest.mark.parametrize("model, train, reason", [
    ("clip:/x", {"freeze_vision_epochs": 3}, "freeze_vision_epochs=3"),
    ("cnn", {}, "vision_encoder=cnn"),
])
def test_an_explicit_cache_folder_that_cannot_apply_is_refused(tmp_path, model, train, reason):
    train_cfg, model_cfg = TrainConfig(region_cache=str(tmp_path), **train), ModelConfig(vision_encoder=model)
    with pytest.raises(ValueError, match=rf"train.region_cache=.*{reason}"):
        cache_root(train_cfg, model_cfg, tmp_path)
    auto = dataclasses.replace(train_cfg, region_cache="auto")
    assert cache_root(auto, model_cfg, tmp_path) is None  # auto: held in memory where it cannot apply


def test_a_run_saved_before_the_cache_resumes_without_it_and_a_bare_off_reads_as_off(tmp_path):
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text("train:\n  epochs: 1\n")
    assert load_config(cfg_file, resolved=True).train.region_cache == "off"
    assert load_config(cfg_file).train.region_cache == "auto"
    assert load_config(cfg_file, ["train.region_cache=off"]).train.region_cache == "off"  # YAML 1.1: false
    assert load_config(cfg_file, [f"train.region_cache={tmp_path}"]).train.region_cache == str(tmp_path)
