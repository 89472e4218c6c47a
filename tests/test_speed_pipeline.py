"""The GPU-ready training pieces: gradient accumulation, bf16 autocast, losses kept on the device."""
from __future__ import annotations

import math

import pytest
import torch

from helpers_model import build_examples, hand_posts, tiny_model, tiny_run_config
from mqspn.batching import collate
from mqspn.build import build_criterion
from mqspn.config import LossConfig, TrainConfig
from mqspn.engine import NonFiniteLossError, train_one_epoch
from mqspn.trainer import train_loader
from mqspn.types import Post


def renamed(items, suffix: str):
    return [(Post(post.id + suffix, post.words, post.entities, image=post.image), regions) for post, regions in items]


def accumulated_gradients(model, batches: list[dict], accumulation: int) -> tuple[dict, dict]:
    """(the gradients train_one_epoch leaves after its last step, the epoch's mean losses); lr 0 and no
    clipping, so the weights never move."""
    criterion = build_criterion(model.config, LossConfig())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    losses = train_one_epoch(model, criterion, batches, optimizer, scheduler, 0.0, torch.device("cpu"), 0,
                             progress=False, accumulation=accumulation)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, losses


def test_two_accumulated_micro_batches_give_the_gradient_of_one_batch_of_both():
    model = tiny_model(dropout=0.0)
    model.set_encoders_frozen(text=True, vision=True)  # the tiny BERT's own dropout off: the same forward in both runs
    # Two micro-batches with as many entities per post (the criterion's terms are means over queries and
    # matched pairs, so 1/2 of each mean is the mean over both only when their counts agree).
    first = build_examples(model, hand_posts())
    second = build_examples(model, renamed(hand_posts()[::-1], "-b"))
    micro, micro_losses = accumulated_gradients(model, [collate(first), collate(second)], accumulation=2)
    whole, whole_losses = accumulated_gradients(model, [collate(first + second)], accumulation=1)
    assert micro.keys() == whole.keys() and len(whole) > 10
    for name in whole:
        torch.testing.assert_close(micro[name], whole[name], atol=1e-6, rtol=1e-4, msg=name)
    assert math.isclose(micro_losses["loss"], whole_losses["loss"], rel_tol=1e-5)


def test_bf16_autocast_trains_on_the_cpu_with_finite_losses():
    model = tiny_model()
    batch = collate(build_examples(model))
    criterion = build_criterion(model.config, LossConfig())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = train_one_epoch(model, criterion, [batch, batch], optimizer, scheduler, 1.0, torch.device("cpu"), 0,
                             progress=False, precision="bf16")
    assert set(losses) == {"loss", "loss_type", "loss_boundary", "loss_region"}
    assert all(math.isfinite(v) for v in losses.values())
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_non_finite_micro_batch_stops_before_the_update_and_names_its_step():
    model = tiny_model().train()
    batch = collate(build_examples(model))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    real = build_criterion(model.config, LossConfig())
    calls = []

    def criterion(outputs, targets):
        losses = real(outputs, targets)
        calls.append(1)
        return {k: v * float("nan") for k, v in losses.items()} if len(calls) == 2 else losses

    criterion.weight_dict = real.weight_dict
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 1, step 2 \(loss_type_0=nan.*p1, p2, p3"):
        train_one_epoch(model, criterion, [batch, batch], optimizer, scheduler, 1.0, torch.device("cpu"), 0,
                        progress=False, accumulation=2)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_the_training_loader_yields_micro_batches(tmp_path):
    cfg = tiny_run_config(tmp_path, batch_size=8, grad_accumulation=2)
    assert train_loader(list(range(20)), None, cfg, torch.Generator()).batch_size == 4


@pytest.mark.parametrize("settings, message", [
    ({"precision": "fp16"}, r"train.precision='fp16': expected one of fp32, bf16"),
    ({"grad_accumulation": 0}, r"train.grad_accumulation=0: expected at least 1"),
    ({"batch_size": 16, "grad_accumulation": 3}, r"train.batch_size=16 does not split into train.grad_accumulation=3"),
])
def test_speed_keys_are_checked_naming_the_key(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)
