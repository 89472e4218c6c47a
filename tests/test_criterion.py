"""The set criterion: named losses per QFNet layer, their behaviour, and gradients reaching the model."""
from __future__ import annotations

import pytest
import torch

from helpers_model import hand_batch, tiny_config, tiny_model, train_step  # noqa: F401
from mqspn.build import build_criterion
from mqspn.config import LossConfig
from mqspn.engine import weighted_total
from mqspn.model.criterion import SetCriterion, adaptive_null_weight, replicate_targets
from mqspn.model.matcher import HungarianMatcher
from mqspn.model.region_scoring import RegionScoring

NEG = torch.finfo(torch.float32).min
TERMS = ("loss_type", "loss_boundary", "loss_region")
P = 4  # types; class P is "no entity"


def head_outputs(batch: int, u: int, n: int, k1: int, seed: int, layers: int = 2) -> dict:
    """Random head outputs for `layers` QFNet layers; no padding."""
    g = torch.Generator().manual_seed(seed)
    layer = lambda: {  # noqa: E731
        "type_logits": torch.randn(batch, u, P + 1, generator=g),
        "start_logits": torch.randn(batch, u, n, generator=g),
        "end_logits": torch.randn(batch, u, n, generator=g),
        "region_logits": torch.randn(batch, u, k1, generator=g),
    }
    return {"layers": [layer() for _ in range(layers)], "text_pad": torch.zeros(batch, n, dtype=torch.bool),
            "region_pad": torch.zeros(batch, k1, dtype=torch.bool)}


def targets_for(n: int, k1: int) -> list[dict]:
    """Post 0: a groundable PER (words 0..1, candidate 2) and an ungroundable LOC (word 4).
    Post 1: one groundable OTHER (word 3) that candidates 1 and 3 both cover."""
    def region(*slots):
        row = torch.zeros(k1)
        row[list(slots)] = 1.0
        return row

    return [
        {"types": torch.tensor([0, 1]), "starts": torch.tensor([0, 4]), "ends": torch.tensor([1, 4]),
         "regions": torch.stack([region(2), region(0)])},
        {"types": torch.tensor([3]), "starts": torch.tensor([3]), "ends": torch.tensor([3]),
         "regions": torch.stack([region(1, 3)])},
    ]


def perfect_outputs(targets: list[dict], u: int, n: int, k1: int, margin: float = 12.0) -> dict:
    """Outputs that state the targets confidently: query i predicts entity i, the other queries 'no entity'."""
    out = head_outputs(len(targets), u, n, k1, seed=0, layers=1)["layers"][0]
    for key in out:
        out[key] = torch.full_like(out[key], -margin)
    out["type_logits"][..., P] = margin
    for b, tgt in enumerate(targets):
        for i in range(len(tgt["types"])):
            out["type_logits"][b, i, P] = -margin
            out["type_logits"][b, i, tgt["types"][i]] = margin
            out["start_logits"][b, i, tgt["starts"][i]] = margin
            out["end_logits"][b, i, tgt["ends"][i]] = margin
            out["region_logits"][b, i] = torch.where(tgt["regions"][i] > 0, margin, -margin)
    return {"layers": [out], "text_pad": torch.zeros(len(targets), n, dtype=torch.bool),
            "region_pad": torch.zeros(len(targets), k1, dtype=torch.bool)}


def criterion(softmax: bool = False, **kwargs) -> SetCriterion:
    """`softmax`: region probabilities as a softmax over the slots (matcher and loss alike)."""
    scoring = RegionScoring("softmax" if softmax else "bce")
    return SetCriterion(P, HungarianMatcher(scoring=scoring), scoring, **kwargs)


REGION_LOSSES = pytest.mark.parametrize("softmax", [False, True], ids=["bce", "softmax"])


@REGION_LOSSES
def test_every_layer_gets_each_named_loss_finite_and_positive_on_random_inputs(softmax):
    u, n, k1 = 8, 6, 4
    losses = criterion(softmax)(head_outputs(2, u, n, k1, seed=1, layers=3), targets_for(n, k1))
    assert set(losses) == {f"{t}{s}" for t in TERMS for s in ("", "_0", "_1")}
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value) and value > 0, name


@REGION_LOSSES
def test_losses_fall_to_almost_zero_when_the_prediction_states_the_target(softmax):
    u, n, k1 = 8, 6, 4
    targets = targets_for(n, k1)
    random = criterion(softmax)(head_outputs(2, u, n, k1, seed=2, layers=1), targets)
    perfect = criterion(softmax)(perfect_outputs(targets, u, n, k1), targets)
    for term in TERMS:
        assert perfect[term] < 1e-3 < random[term] / 100, (term, perfect[term], random[term])


@REGION_LOSSES
def test_losses_fall_step_by_step_toward_the_target(softmax):
    # Half-way between random and perfect outputs, every term lies between the two.
    u, n, k1 = 8, 6, 4
    targets = targets_for(n, k1)
    start = head_outputs(2, u, n, k1, seed=3, layers=1)
    goal = perfect_outputs(targets, u, n, k1)
    middle = dict(start, layers=[{k: (v + goal["layers"][0][k]) / 2 for k, v in start["layers"][0].items()}])
    values = [criterion(softmax)(out, targets) for out in (start, middle, goal)]
    for term in TERMS:
        assert values[0][term] > values[1][term] > values[2][term], term


@REGION_LOSSES
def test_padding_does_not_count(softmax):
    # The same posts at their own size, and padded to 9 words and 6 slots (targets padded with zeros, as
    # `collate` does). Padded words get garbage logits; padded slots get -inf as the heads give them
    # (the softmax matcher normalises over every slot it is given).
    u, n, k1 = 8, 6, 4
    targets = targets_for(n, k1)
    alone = head_outputs(2, u, n, k1, seed=4, layers=1)
    padded = head_outputs(2, u, n + 3, k1 + 2, seed=5, layers=1)
    layer = padded["layers"][0]
    layer["type_logits"] = alone["layers"][0]["type_logits"]
    for key, size in (("start_logits", n), ("end_logits", n), ("region_logits", k1)):
        layer[key][..., :size] = alone["layers"][0][key]
        layer[key][..., size:] = NEG if key == "region_logits" else 5.0
    padded["text_pad"][:, n:] = True
    padded["region_pad"][:, k1:] = True
    wide = [dict(t, regions=torch.cat([t["regions"], torch.zeros(len(t["types"]), 2)], 1)) for t in targets]
    a, b = criterion(softmax)(alone, targets), criterion(softmax)(padded, wide)
    for term in TERMS:
        assert a[term].item() == pytest.approx(b[term].item(), rel=1e-5), term


def test_a_batch_without_entities_has_only_the_type_loss():
    u, n, k1 = 8, 6, 4
    empty = {"types": torch.zeros(0, dtype=torch.int64), "starts": torch.zeros(0, dtype=torch.int64),
             "ends": torch.zeros(0, dtype=torch.int64), "regions": torch.zeros(0, k1)}
    out = head_outputs(2, u, n, k1, seed=6, layers=1)
    out["layers"][0]["type_logits"].requires_grad_(True)
    losses = criterion()(out, [empty, empty])
    assert losses["loss_type"] > 0 and losses["loss_boundary"] == 0 and losses["loss_region"] == 0
    weighted_total(losses, dict.fromkeys(TERMS, 1.0)).backward()
    assert out["layers"][0]["type_logits"].grad.abs().sum() > 0


def test_the_weight_dict_names_every_loss_of_every_layer_with_its_configured_weight():
    model = tiny_model(num_layers=3).train()
    criterion = build_criterion(model.config, LossConfig(loss_type=2.0, loss_boundary=0.5, loss_region=3.0))
    losses = criterion(model(hand_batch(model)), hand_batch(model)["targets"])
    assert set(criterion.weight_dict) == set(losses) == {f"{t}{s}" for t in TERMS for s in ("", "_0", "_1")}
    assert [criterion.weight_dict[f"loss_region{s}"] for s in ("", "_0", "_1")] == [3.0] * 3
    assert criterion.weight_dict["loss_type_1"] == 2.0 and criterion.weight_dict["loss_boundary"] == 0.5
    expected = sum(criterion.weight_dict[k] * v for k, v in losses.items())
    assert weighted_total(losses, criterion.weight_dict).item() == pytest.approx(expected.item())


def test_a_wrong_no_entity_answer_costs_less_than_a_wrong_type():
    # Queries 2..7 are unmatched and say PER instead of "no entity"; the null class weight scales their loss.
    u, n, k1 = 8, 6, 4
    targets = targets_for(n, k1)
    out = perfect_outputs(targets, u, n, k1)
    out["layers"][0]["type_logits"][:, 2:, 0] = 12.0
    out["layers"][0]["type_logits"][:, 2:, P] = -12.0
    light, full = criterion(null_weight=0.1)(out, targets), criterion(null_weight=1.0)(out, targets)
    assert 0 < light["loss_type"] < full["loss_type"] / 2


def test_replicated_targets_repeat_the_gold_set_without_passing_the_query_count():
    tgt = targets_for(6, 4)[0]  # 2 entities
    assert replicate_targets(tgt, 0, 8) is tgt
    three_times = replicate_targets(tgt, 7, 8)
    assert three_times["types"].tolist() == [0, 1] * 3
    assert three_times["regions"].shape == (6, 4)
    assert torch.equal(three_times["regions"][4:], tgt["regions"])
    assert len(replicate_targets(tgt, 45, 8)["types"]) == 8  # capped by u = 8
    assert len(replicate_targets(tgt, 1, 8)["types"]) == 2  # never fewer than the gold set


def test_replication_trains_more_queries_toward_each_entity():
    # With every query predicting "no entity", each replicated target adds a matched query with a
    # wrong type answer, so the type loss grows.
    u, n, k1 = 8, 6, 4
    targets = targets_for(n, k1)
    out = perfect_outputs([{k: v[:0] for k, v in t.items()} for t in targets], u, n, k1)
    once, replicated = criterion()(out, targets), criterion(max_targets=8)(out, targets)
    assert replicated["loss_type"] > once["loss_type"]


# Pooler of the Hugging Face BERT backbone: built by `AutoModel` but never used (word vectors come from
# the last hidden states), so it legitimately gets no gradient.
UNUSED = {"text_encoder.backbone.pooler.dense.weight", "text_encoder.backbone.pooler.dense.bias"}


@pytest.mark.parametrize("overrides", [{}, {"vision_encoder": "features"}, {"vision_encoder": "none"},
                                       {"learnable_queries": False}, {"ungroundable_slot": "learned"},
                                       {"word_shape": True}, {"word_buckets": 64}, {"region_uses_span": True}],
                         ids=["cnn", "features", "text-only", "handwritten-queries", "learned-slot", "word-shape",
                              "word-buckets", "region-uses-span"])
def test_gradients_reach_every_trainable_parameter(overrides):
    model = tiny_model(**overrides).train()
    train_step(model, hand_batch(model))  # groundable, ungroundable, uncovered entities, a post without any
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert len(trainable) > 20
    missing = sorted(name for name, p in trainable.items() if p.grad is None and name not in UNUSED)
    zero = sorted(name for name, p in trainable.items() if p.grad is not None and not p.grad.abs().sum() > 0)
    assert missing == [] and zero == []


def test_adaptive_null_weight_is_matched_over_unmatched_queries_of_the_batch():
    # 2 posts x 8 queries, 3 of them matched: the null class weighs 3 / (16 - 3), as in the released code.
    u, n, k1 = 8, 6, 4
    targets = targets_for(n, k1)
    out = head_outputs(2, u, n, k1, seed=3, layers=1)["layers"][0]
    indices = [(torch.tensor([5, 1]), torch.tensor([0, 1])), (torch.tensor([2]), torch.tensor([0]))]
    loss = criterion(null_weight="adaptive").loss_type(out, targets, indices)["loss_type"]
    labels = torch.full((2, u), P)
    labels[0, 5], labels[0, 1], labels[1, 2] = 0, 1, 3
    logp = out["type_logits"].log_softmax(-1)
    nll = -logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    weight = torch.where(labels == P, torch.tensor(3 / 13), torch.tensor(1.0))
    torch.testing.assert_close(loss, (weight * nll).sum() / weight.sum())
    assert adaptive_null_weight(3, 16) == 3 / 13
    # One class only (no entity in the batch, or every query matched): any weight gives the plain mean.
    assert adaptive_null_weight(0, 16) == adaptive_null_weight(16, 16) == 1.0
    empty = [(torch.tensor([], dtype=torch.int64), torch.tensor([], dtype=torch.int64))] * 2
    torch.testing.assert_close(criterion(null_weight="adaptive").loss_type(out, targets, empty)["loss_type"],
                               -logp[..., P].mean())


@pytest.mark.parametrize("value, message", [("often", "null_weight='often': expected a number or adaptive"),
                                            (-0.5, "null_weight=-0.5: expected a number >= 0")])
def test_null_weight_is_a_number_or_adaptive(value, message):
    assert LossConfig(null_weight="adaptive").null_weight == "adaptive"
    assert LossConfig(null_weight="1e-2").null_weight == 0.01  # YAML 1.1 reads 1e-2 as a string
    with pytest.raises(ValueError, match=message):
        LossConfig(null_weight=value)
