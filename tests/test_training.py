"""Training runs: exact resume, the non-finite loss guard, and a real learning check on synthetic data."""
from __future__ import annotations

import dataclasses
import inspect
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from helpers_model import hand_batch, save_tiny_clip, synth_dataset, tiny_model, tiny_run_config  # noqa: F401
from mqspn import trainer
from mqspn.config import TrainConfig
from mqspn.data.datasets import read_split
from mqspn.engine import NonFiniteLossError, train_one_epoch
from mqspn.metric import score
from mqspn.predictions import read_predictions
from mqspn.trainer import Run

pytestmark = pytest.mark.slow  # training runs (`make test-fast` skips them)


#: Entities drawn in their image. The benchmark's default (40%, as in the real data) makes slot 0
#: ("not in the image") the safe answer for a long time: measured, the tiny model first beats the
#: text-only baseline after ~30 epochs on 800 posts (+5 F1, about 4 minutes). With 80% it learns to
#: ground within 10 epochs on 400 posts.
GROUNDABLE_SHARE = 0.8


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """400 posts (280 train, 60 dev, 60 test), generated once per session."""
    return synth_dataset(tmp_path_factory.getbasetemp(), posts=400, seed=0, groundable_share=GROUNDABLE_SHARE)


class Killed(Exception):
    """Stands for the process being killed."""


def metric_lines(run_dir) -> list[dict]:
    """metrics.jsonl without the wall-clock field."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


@pytest.mark.parametrize("freeze_text_epochs", [0, -1], ids=["encoders-trained", "encoders-frozen-and-cached"])
def test_resume_after_epoch_1_gives_the_same_metrics_and_bit_identical_weights(synth, tmp_path, monkeypatch,
                                                                               freeze_text_epochs):
    cfg = tiny_run_config(synth, epochs=2, max_train_posts=48, freeze_text_epochs=freeze_text_epochs)
    whole = Run.start(cfg, tmp_path / "whole").run()

    real = trainer.train_one_epoch

    def killed_in_epoch_2(*args, **kwargs):
        if inspect.signature(real).bind(*args, **kwargs).arguments["epoch"] == 1:
            raise Killed()
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", killed_in_epoch_2)
    with pytest.raises(Killed):
        Run.start(cfg, tmp_path / "resumed").run()
    assert len(metric_lines(tmp_path / "resumed")) == 1
    monkeypatch.setattr(trainer, "train_one_epoch", real)
    resumed = Run.resume(tmp_path / "resumed").run()

    first, second = metric_lines(tmp_path / "whole"), metric_lines(tmp_path / "resumed")
    assert [line["epoch"] for line in first] == [1, 2]
    assert second == first
    assert resumed == whole
    # A frozen encoder's cached outputs depend (at 1e-7) on the padding of the batch that first encoded
    # them; the resumed run re-encodes in the same batches, so the weights match bit for bit.
    weights = [load_file(str(tmp_path / run / "last" / "model.safetensors")) for run in ("whole", "resumed")]
    assert [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])] == []


def test_starting_over_an_existing_run_is_refused(synth, tmp_path):
    cfg = tiny_run_config(synth, epochs=1, max_train_posts=8)
    Run.start(cfg, tmp_path / "run").run()
    with pytest.raises(ValueError, match=r"already holds a run; continue it with --resume"):
        Run.start(cfg, tmp_path / "run")


def test_a_non_finite_loss_stops_before_any_update_with_a_clear_message():
    model = tiny_model().train()
    batch = hand_batch(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def criterion(outputs, targets):
        nan = outputs["layers"][-1]["type_logits"].sum() * float("nan")
        return {"loss_type": nan, "loss_boundary": nan.detach() * 0, "loss_region": nan.detach() * 0}

    criterion.weight_dict = {"loss_type": 1.0, "loss_boundary": 1.0, "loss_region": 1.0}

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 3, step 1 \(loss_type=nan.*\); "
                                                 r"lower train.lr or check the inputs of this batch: p1, p2, p3"):
        train_one_epoch(model, criterion, [batch], optimizer, scheduler, 1.0, torch.device("cpu"), epoch=2,
                        progress=False)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_diverging_training_stops_with_the_non_finite_loss_message(synth, tmp_path):
    cfg = tiny_run_config(synth, epochs=1, max_train_posts=32, lr=1e30, encoder_lr=1e30)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 1, step \d+ .*lower train.lr"):
        Run.start(cfg, tmp_path / "run").run()


#: GMNER F1 points by which the trained model must beat its own predictions with every box removed.
#: Measured with the current crop CNN over 6 (dataset seed, model seed) pairs: +5.7 to +25.3; this
#: test's pair (0, 5) gives +9.2.
MARGIN = 5.0


def test_short_training_clearly_beats_the_text_only_baseline(synth, tmp_path):
    cfg = tiny_run_config(synth, epochs=10, batch_size=4, seed=5)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, crop_size=16, dropout=0.0))
    result = Run.start(cfg, tmp_path / "run").run()
    # The text-only baseline: the same entities, every one predicted as not in the image.
    gold = read_split(synth, "test")
    predictions = read_predictions(tmp_path / "run" / "test_predictions.jsonl", gold)
    text_only = score(gold, {pid: [dataclasses.replace(e, boxes=[]) for e in ents] for pid, ents in predictions.items()})
    assert result["mner"]["f1"] == text_only["mner"]["f1"] > 25
    assert sum(e.box is not None for ents in predictions.values() for e in ents) > 20
    assert result["gmner"]["f1"] > text_only["gmner"]["f1"] + MARGIN, (result["gmner"], text_only["gmner"])


@pytest.mark.parametrize("damage", ["unreadable-test-image", "unknown-test-type", "missing-dev-proposals"])
def test_a_bad_dev_or_test_split_fails_before_the_first_epoch(synth, tmp_path, damage):
    data = tmp_path / "data"
    shutil.copytree(synth, data)
    test_txt = data / "txt" / "test.txt"
    first_test_id = test_txt.read_text().split("\n", 1)[0].removeprefix("IMGID:")
    first_dev_id = (data / "txt" / "dev.txt").read_text().split("\n", 1)[0].removeprefix("IMGID:")
    if damage == "unreadable-test-image":
        (data / "images" / f"{first_test_id}.jpg").write_bytes(b"not a jpeg")
        expected = rf"test split: image .*{first_test_id}\.jpg cannot be read"
    elif damage == "unknown-test-type":
        lines = test_txt.read_text().split("\n")
        first = next(i for i, line in enumerate(lines) if "\tB-" in line)
        word, tag = lines[first].split("\t")
        lines[first] = f"{word}\tB-FOO"
        for i in range(first + 1, len(lines)):  # the entity's I- lines follow it
            if not lines[i].endswith("\tI-" + tag[2:]):
                break
            lines[i] = lines[i].rsplit("\t", 1)[0] + "\tI-FOO"
        test_txt.write_text("\n".join(lines))
        expected = r"test split: \S+test\.txt:\d+: post \S+: entity type 'FOO' is not among the model's types"
    else:
        (data / "proposals" / f"{first_dev_id}.jpg.npz").unlink()
        expected = rf"dev split: .*{first_dev_id}\.jpg\.npz"
    cfg = tiny_run_config(data, epochs=1)
    with pytest.raises((ValueError, FileNotFoundError), match=expected):
        Run.start(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # no epoch ran


@pytest.mark.parametrize("key", ["epochs", "batch_size", "eval_batch_size"])
def test_non_positive_epochs_and_batch_sizes_are_refused_by_name(key):
    with pytest.raises(ValueError, match=rf"train.{key}=0: expected at least 1"):
        TrainConfig(**{key: 0})


def test_paper_freezing_never_trains_clip_and_releases_the_text_encoder_after_its_epochs(synth, tmp_path):
    # The paper's schedule in small: text encoder frozen for 1 epoch then fine-tuned, CLIP frozen throughout.
    clip = save_tiny_clip(tmp_path / "clip")
    cfg = tiny_run_config(synth, epochs=2, max_train_posts=32, freeze_text_epochs=1, freeze_vision_epochs=-1,
                          crop_augment=True)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vision_encoder=f"clip:{clip}"))
    run = Run.start(cfg, tmp_path / "run")
    tower = run.model.vision_encoder.tower
    initial = {k: v.clone() for k, v in tower.state_dict().items()}
    steps = []

    def before_step(optimizer, args, kwargs):
        steps.append({"vision": [p.grad for p in tower.parameters() if p.grad is not None],
                      "text": any(p.grad is not None and p.grad.abs().sum() > 0 for p in run.model.text_encoder.parameters()),
                      "augment": run.augment.active})

    run.optimizer.register_step_pre_hook(before_step)
    run.run()
    per_epoch = len(run.train_loader)
    assert len(steps) == 2 * per_epoch
    assert all(step["vision"] == [] for step in steps), "the frozen CLIP tower got a gradient"
    assert [step["text"] for step in steps] == [False] * per_epoch + [True] * per_epoch
    assert not any(step["augment"] for step in steps), "crops were augmented for a frozen, cached CLIP tower"
    assert all(torch.equal(v, initial[k]) for k, v in tower.state_dict().items())
