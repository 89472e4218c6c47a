"""`train.num_workers`: training batches collated in DataLoader workers, the same batches as in the
training process, pinned for a GPU, and a crop augmentation that repeats for a seed."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from helpers_model import synth_dataset, tiny_run_config
from mqspn import distributed
from mqspn.build import build_examples, build_model
from mqspn.config import TrainConfig
from mqspn.trainer import Run, read_posts, train_loader
from mqspn.transforms import CropAugment

COMPARED = ("input_ids", "attention_mask", "word_index", "word_mask", "crops")


@pytest.fixture(scope="module")
def run_config(tmp_path_factory):
    root = synth_dataset(tmp_path_factory.getbasetemp(), posts=60, seed=1)
    return tiny_run_config(root, epochs=1, batch_size=8, max_train_posts=24)


def epoch_batches(cfg, workers: int, augment: bool) -> list[dict]:
    """One epoch of training batches from a loader seeded as a run seeds it."""
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, num_workers=workers))
    torch.manual_seed(0)
    builder = build_examples(build_model(cfg.model), cfg.data)
    posts = read_posts(cfg, "train")[: cfg.train.max_train_posts]
    return list(train_loader(posts, builder, cfg, torch.Generator().manual_seed(cfg.train.seed), CropAugment(augment)))


def epoch_batches_loader(cfg):
    """The training loader of `cfg` (not iterated)."""
    builder = build_examples(build_model(cfg.model), cfg.data)
    return train_loader(read_posts(cfg, "train"), builder, cfg, torch.Generator())


def assert_same_batches(first: list[dict], second: list[dict]) -> None:
    assert len(first) == len(second) == 3
    for a, b in zip(first, second):
        assert [p.id for p in a["posts"]] == [p.id for p in b["posts"]]
        for key in COMPARED:
            assert torch.equal(a[key], b[key]), key
        for ta, tb in zip(a["targets"], b["targets"]):
            assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_a_worker_collates_the_same_batches_as_the_training_process(run_config):
    assert_same_batches(epoch_batches(run_config, 0, augment=False), epoch_batches(run_config, 1, augment=False))


def test_augmentation_in_workers_repeats_for_a_seed_and_changes_the_crops(run_config):
    plain = epoch_batches(run_config, 0, augment=False)
    first, second = epoch_batches(run_config, 2, augment=True), epoch_batches(run_config, 2, augment=True)
    assert_same_batches(first, second)
    assert [p.id for b in first for p in b["posts"]] == [p.id for b in plain for p in b["posts"]]
    assert all(b["crops"].dtype == torch.float32 for b in first)  # augmented: float 0..255
    assert not any(torch.equal(a["crops"], b["crops"].float()) for a, b in zip(first, plain))


def test_batches_are_pinned_for_a_gpu_only(run_config, monkeypatch):
    assert not epoch_batches_loader(run_config).pin_memory
    monkeypatch.setattr(distributed, "device", lambda: torch.device("cuda", 0))
    assert epoch_batches_loader(run_config).pin_memory


def test_num_workers_must_not_be_negative():
    with pytest.raises(ValueError, match=r"train.num_workers=-1: expected 0 \(collate in the training process\) "
                                         r"or a number of worker processes"):
        TrainConfig(num_workers=-1)


@pytest.mark.slow  # two short training runs of the tiny model
def test_a_run_with_a_worker_trains_as_one_without_when_crops_are_not_augmented(run_config, tmp_path):
    losses, weights = [], []
    for workers in (0, 1):
        cfg = dataclasses.replace(run_config, train=dataclasses.replace(run_config.train, num_workers=workers,
                                                                        crop_augment=False))
        out = tmp_path / f"w{workers}"
        Run.start(cfg, out).run()
        epoch = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
        losses.append({k: v for k, v in epoch.items() if k.startswith("loss")})
        weights.append(load_file(str(out / "last" / "model.safetensors")))
    assert losses[0] and losses[0] == losses[1]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
