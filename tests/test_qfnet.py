"""QFNet: the heads read each layer's refined queries, words and regions; padding never leaks; each
Table-3 switch removes exactly its mechanism."""
from __future__ import annotations

import pytest
import torch

from helpers_model import hand_batch, tiny_model
from mqspn.model.qfnet import QFNet

B, U, N, K1, H = 2, 5, 6, 4, 16


def qfnet(**options) -> QFNet:
    torch.manual_seed(0)
    return QFNet(2, H, 2, 0.0, **options).eval()


def inputs():
    g = torch.Generator().manual_seed(1)
    q0, text, regions = (torch.randn(B, m, H, generator=g) for m in (U, N, K1))
    text_pad = torch.zeros(B, N, dtype=torch.bool)
    text_pad[1, 4:] = True  # post 1: 4 words
    region_pad = torch.zeros(B, K1, dtype=torch.bool)
    region_pad[1, 2:] = True  # post 1: slot 0 and one candidate
    return q0, text, text_pad, regions, region_pad


def run(net, q0, text, text_pad, regions, region_pad):
    with torch.no_grad():
        return net(q0, text, text_pad, regions, region_pad)[-1]


def capture_heads_and_qfnet(model, batch):
    seen = {"heads": []}
    model.heads.register_forward_hook(lambda m, args, out: seen["heads"].append(args))
    model.qfnet.register_forward_hook(lambda m, args, out: seen.update(qfnet_in=args, qfnet_out=out))
    model.train()(batch)
    return seen


def test_heads_read_each_layers_refined_words_and_regions():
    model = tiny_model(num_layers=3)
    seen = capture_heads_and_qfnet(model, hand_batch(model))
    _, text_in, _, regions_in, _ = seen["qfnet_in"]
    assert len(seen["heads"]) == len(seen["qfnet_out"]) == 3
    for (q, t, text_pad, r, region_pad), refined in zip(seen["heads"], seen["qfnet_out"]):
        assert all(a is b for a, b in zip((q, t, r), refined))
        assert t.shape == text_in.shape and r.shape == regions_in.shape
        assert not torch.allclose(t, text_in) and not torch.allclose(r, regions_in)
    texts = [args[1] for args in seen["heads"]]
    assert not torch.allclose(texts[0], texts[-1])  # every layer refines further


def test_query_only_form_keeps_the_encoder_states_for_the_heads():
    model = tiny_model(num_layers=2, refine_states=False)
    seen = capture_heads_and_qfnet(model, hand_batch(model))
    _, text_in, _, regions_in, _ = seen["qfnet_in"]
    for _, t, _, r, _ in seen["heads"]:
        assert t is text_in and r is regions_in


def test_padded_words_and_slots_reach_no_state():
    net = qfnet()
    q0, text, text_pad, regions, region_pad = inputs()
    q, t, r = run(net, q0, text, text_pad, regions, region_pad)
    text2, regions2 = text.clone(), regions.clone()
    text2[text_pad] = 1e3
    regions2[region_pad] = -1e3
    q2, t2, r2 = run(net, q0, text2, text_pad, regions2, region_pad)
    assert torch.allclose(q, q2, atol=1e-5)
    assert torch.allclose(t[~text_pad], t2[~text_pad], atol=1e-5)
    assert torch.allclose(r[~region_pad], r2[~region_pad], atol=1e-5)


def changed(net, which: str, index: int):
    """Which outputs (queries, words, regions) move when the valid words or regions are perturbed."""
    args = list(inputs())
    before = run(net, *args)
    args[index] = args[index] + torch.randn_like(args[index])
    after = run(net, *args)
    return {name for name, a, b in zip(("queries", "words", "regions"), before, after) if not torch.allclose(a, b, atol=1e-5)}


TEXT, REGIONS = 1, 3


@pytest.mark.parametrize("options, text_reaches, regions_reach", [
    ({}, {"queries", "words", "regions"}, {"queries", "regions"}),
    # w/o QCT, aggregator off too: the queries read the words nowhere (only the regions' prefix does).
    ({"use_cross_attention": False, "use_aggregator": False}, {"words", "regions"}, {"regions"}),
    # w/o QRPI: the regions read neither the words nor the queries; the aggregator still reads both.
    ({"use_region_prefix": False}, {"queries", "words"}, {"queries", "regions"}),
    # w/o the aggregator: regions reach the queries no other way; words still do by cross-attention.
    ({"use_aggregator": False}, {"queries", "words", "regions"}, {"regions"}),
])
def test_each_switch_removes_exactly_its_path(options, text_reaches, regions_reach):
    net = qfnet(**options)
    assert changed(net, "text", TEXT) == text_reaches
    assert changed(net, "regions", REGIONS) == regions_reach


@pytest.mark.parametrize("refine_states", [True, False])
def test_without_self_attention_no_query_reads_another(refine_states):
    # With the region prefix off as well, no other path carries one query's state to another (through the
    # prefix the regions, or in the query-only form the queries, read every query).
    args = list(inputs())
    moved = [a.clone() for a in args]
    moved[0][:, 0] += 1.0  # query 0's initial state
    for self_attention in (True, False):
        net = qfnet(refine_states=refine_states, use_region_prefix=False, use_query_self_attention=self_attention)
        before, after = run(net, *args)[0], run(net, *moved)[0]
        assert not torch.allclose(before[:, 0], after[:, 0], atol=1e-5)
        assert torch.allclose(before[:, 1:], after[:, 1:], atol=1e-6) is not self_attention
    assert not any("self_attn" in name for name, _ in net.named_parameters())


def test_the_words_are_refined_without_the_queries():
    # The words attend to words only: the queries never enter the words' states (released code's mask).
    net = qfnet()
    assert changed(net, "queries", 0) == {"queries", "regions"}
