"""The MQSPN network: output shapes and masks, batch independence, ablation switches, frozen encoders."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from helpers_model import (
    build_examples, hand_batch, hand_posts, save_tiny_clip, tiny_config, tiny_model, train_step,
)
from mqspn.batching import collate
from mqspn.config import LossConfig, ModelConfig, TrainConfig
from mqspn.model.decode import Decoder
from mqspn.model.mqspn import MQSPN
from mqspn.model.queries import QUESTIONS, TYPE_PROMPT, QuerySet, handwritten_questions, type_words
from mqspn.transforms import CropAugment, augment_crops
from mqspn.types import Region

HEAD_KEYS = {"start_logits", "end_logits", "region_logits", "type_logits"}


@pytest.mark.parametrize("vision", ["cnn", "features", "none"])
def test_forward_shapes_and_padding_masks(vision):
    model = tiny_model(vision_encoder=vision, num_layers=3).eval()
    batch = hand_batch(model)
    assert len(model(batch)["layers"]) == 1  # eval: the last layer, which decoding reads
    assert len(model.train()(batch)["layers"]) == 3  # training: every layer (deep supervision)
    out = model.eval()(batch, all_layers=True)
    b, n, u = 3, 8, 8  # posts of 8, 4 and 3 words
    k1 = 1 if vision == "none" else 4  # three candidates + the ungroundable slot
    assert len(out["layers"]) == 3
    last = model(batch)["layers"][0]
    assert all(torch.equal(last[key], out["layers"][-1][key]) for key in HEAD_KEYS)
    assert out["text_pad"].tolist() == [[False] * 8, [False] * 4 + [True] * 4, [False] * 3 + [True] * 5]
    assert out["region_pad"].shape == (b, k1) and not out["region_pad"].any()
    for layer in out["layers"]:
        assert set(layer) == HEAD_KEYS
        assert layer["start_logits"].shape == layer["end_logits"].shape == (b, u, n)
        assert layer["region_logits"].shape == (b, u, k1)
        assert layer["type_logits"].shape == (b, u, len(model.config.types) + 1)
        assert all(torch.isfinite(v[~out["text_pad"][:, None, :].expand_as(v)]).all()
                   for v in (layer["start_logits"], layer["end_logits"]))
        # Padded words can never be a boundary: their probability is exactly zero.
        assert torch.sigmoid(layer["start_logits"][1, :, 4:]).max() == 0


def test_one_post_alone_predicts_as_inside_a_batch():
    # Posts of 8, 4 and 3 words with 3, 1 and 3 candidates: inside the batch, post 2 is padded twice.
    model = tiny_model().eval()
    first, (second, regions), third = hand_posts()
    examples = build_examples(model, [first, (second, regions[:1]), third])
    together = model(collate(examples))
    for i, example in enumerate(examples):
        alone = model(collate([example]))
        n, k1 = len(example.post.words), len(example.regions) + 1
        for key in HEAD_KEYS:
            a = alone["layers"][-1][key][0]
            t = together["layers"][-1][key][i]
            t = {"start_logits": t[:, :n], "end_logits": t[:, :n], "region_logits": t[:, :k1]}.get(key, t)
            assert a.shape == t.shape, (i, key)
            torch.testing.assert_close(a, t, atol=1e-5, rtol=1e-4, msg=f"post {i}, {key}")


def test_posts_with_different_candidate_counts_train_in_one_batch():
    model = tiny_model().train()
    (first, regions), (second, _), _ = hand_posts()
    batch = collate(build_examples(model, [(first, regions), (second, regions[:1])]))
    assert batch["targets"][1]["regions"].shape == (2, 4)  # padded from 1 + 1 to 3 + 1 slots
    assert torch.isfinite(train_step(model, batch))
    out = model.eval()(batch)
    assert out["region_pad"].tolist() == [[False] * 4, [False, False, True, True]]


def test_decoding_keeps_the_best_non_overlapping_spans_with_their_candidate_boxes():
    model = tiny_model().eval()
    (first, regions), _, _ = hand_posts()
    moved = [Region((r.box[0] + 3, r.box[1], r.box[2], r.box[3])) for r in regions]  # post 2's own boxes
    batch = collate(build_examples(model, [(first, regions), (first, moved)]))
    with torch.no_grad():
        out = model(batch)
    last = out["layers"][-1]
    last["type_logits"][..., -1] = -1e4  # no query may say "no entity": 8 candidates a post
    last["region_logits"][0, :, 2] = 1e4  # slot 2 = the second candidate of post 1
    last["region_logits"][1, :, 3] = 1e4  # slot 3 = the third candidate of post 2
    decoded = Decoder(model.config.types)(out, [len(p.words) for p in batch["posts"]], batch["regions"])
    assert {e.box for e in decoded[0]} == {regions[1].box} and {e.box for e in decoded[1]} == {moved[2].box}
    for entities in decoded:
        spans = sorted(e.span for e in entities)
        assert all(0 <= s <= e < len(first.words) for s, e in spans)
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:])), "overlapping spans were kept"
        assert [e.score for e in entities] == sorted((e.score for e in entities), reverse=True)
        assert all(e.type in model.config.types for e in entities)
    last["region_logits"][..., 0] = 1e5  # slot 0 wins everywhere: not in the image
    decoded = Decoder(model.config.types)(out, [len(p.words) for p in batch["posts"]], batch["regions"])
    assert all(e.box is None for entities in decoded for e in entities)


def test_a_post_where_every_query_says_no_entity_decodes_to_nothing():
    model = tiny_model().eval()
    batch = hand_batch(model)
    with torch.no_grad():
        out = model(batch)
    out["layers"][-1]["type_logits"][0, :, -1] = 1e4  # post 0: null everywhere; the others unchanged
    decoded = Decoder(model.config.types)(out, [len(p.words) for p in batch["posts"]], batch["regions"])
    assert decoded[0] == [] and len(decoded) == 3


SWITCHES = {
    "no-type-queries": {"use_type_queries": False},
    "handwritten-queries": {"learnable_queries": False},
    "no-cross-attention": {"use_cross_attention": False},
    "no-region-prefix": {"use_region_prefix": False},
    "no-aggregator": {"use_aggregator": False},
    "no-query-self-attention": {"use_query_self_attention": False},
    "query-only-qfnet-no-self-attention": {"refine_states": False, "use_query_self_attention": False},
    "query-only-qfnet": {"refine_states": False},
    "query-only-qfnet-no-prefix": {"refine_states": False, "use_region_prefix": False},
    "type-without-region": {"type_uses_region": False},
    "bilinear-scores": {"bilinear_scores": True},
    "region-uses-span": {"region_uses_span": True},
    "word-shape": {"word_shape": True},
    "word-buckets": {"word_buckets": 64},
    "learned-ungroundable-slot": {"ungroundable_slot": "learned"},
    "projection-none": {"type_query_projection": "none"},
    "projection-frozen": {"type_query_projection": "frozen"},
    "handwritten-queries-frozen-projection": {"learnable_queries": False, "type_query_projection": "frozen"},
    "features": {"vision_encoder": "features"},
    "text-only": {"vision_encoder": "none"},
}
#: Switches of the matching and the loss (`LossConfig`): the network stays the same.
LOSS_SWITCHES = {
    "fixed-order-matching": {"bipartite_matching": False},
    "softmax-region-loss": {"region_loss": "softmax"},
    "replicated-targets": {"max_targets": 8},
}


@pytest.mark.parametrize("name", list(SWITCHES) + list(LOSS_SWITCHES))
def test_each_switch_builds_and_runs_a_training_step(name):
    model = tiny_model(**SWITCHES.get(name, {})).train()
    batch = hand_batch(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    total = train_step(model, batch, LossConfig(**LOSS_SWITCHES.get(name, {})))
    assert torch.isfinite(total) and total > 0
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > 10


def test_every_boolean_switch_of_the_model_and_loss_configs_is_exercised():
    switches = {f.name for cls in (ModelConfig, LossConfig) for f in dataclasses.fields(cls) if f.type in (bool, "bool")}
    assert len(switches) >= 7
    assert switches <= {key for table in (SWITCHES, LOSS_SWITCHES) for overrides in table.values() for key in overrides}


@pytest.mark.parametrize("name", list(SWITCHES))
def test_each_model_switch_changes_the_model(name):
    # Either the switch changes which weights exist, or with the default model's weights it changes the outputs.
    default, switched = tiny_model().eval(), tiny_model(**SWITCHES[name]).eval()
    weights, other = default.state_dict(), switched.state_dict()
    same_weights = set(weights) == set(other) and all(v.shape == other[k].shape for k, v in weights.items())
    outputs_differ = False
    if same_weights:
        switched.load_state_dict(weights)
        a, b = default(hand_batch(default)), switched(hand_batch(switched))
        outputs_differ = not torch.allclose(a["layers"][-1]["type_logits"], b["layers"][-1]["type_logits"])
    assert not same_weights or outputs_differ


def test_crop_augmentation_is_a_batch_transform_that_only_acts_while_active():
    model = tiny_model()
    batch = hand_batch(model)
    augment = CropAugment()
    torch.manual_seed(0)
    first, second = augment(dict(batch))["crops"], augment(dict(batch))["crops"]
    assert first.shape == batch["crops"].shape and not torch.equal(first, second)
    assert not torch.allclose(model(dict(batch, crops=first))["layers"][-1]["region_logits"],
                              model(batch)["layers"][-1]["region_logits"])
    augment.active = False
    assert augment(dict(batch))["crops"] is batch["crops"]
    text_only = tiny_model(vision_encoder="none")
    assert "crops" not in CropAugment()(hand_batch(text_only))


def test_augment_crops_mirrors_shifts_and_relights_within_bounds():
    crops = torch.zeros(64, 3, 8, 8, dtype=torch.uint8)
    crops[:, :, :, :4] = 200  # left half bright
    torch.manual_seed(0)
    out = augment_crops(crops, shift=0, brightness=0.0)
    left_bright = out[:, 0, 0, 0] == 200
    assert out.dtype == torch.float32 and out.shape == crops.shape
    assert 10 < int(left_bright.sum()) < 54  # about half mirrored
    assert torch.equal(out[~left_bright, 0, 0, 4:], torch.full((int((~left_bright).sum()), 4), 200.0))
    lit = augment_crops(crops, shift=2, brightness=0.1)
    assert lit.min() >= 0 and lit.max() <= 220 + 1e-4 and lit.max() > 200
    assert not torch.equal(lit, out)


def test_wrong_switch_values_are_clear_errors():
    with pytest.raises(ValueError, match="ungroundable_slot='nothing'"):
        MQSPN(tiny_config(ungroundable_slot="nothing"))
    with pytest.raises(ValueError, match="region_loss='focal'"):
        LossConfig(region_loss="focal")
    with pytest.raises(ValueError, match="vision_encoder='resnet'"):
        MQSPN(tiny_config(vision_encoder="resnet"))
    with pytest.raises(ValueError, match="num_queries=6 must be divisible"):
        MQSPN(tiny_config(num_queries=6))


class CallCounter:
    """Counts the rows (first dimension of the first argument) a module is run on."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.rows = 0
        module.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:
        self.rows += len(args[0])


def text_rows_counter(model: MQSPN) -> CallCounter:
    """Posts run through the text encoder (its word embeddings see one row of sub-word ids per post)."""
    return CallCounter(model.text_encoder.backbone.embeddings.word_embeddings)


def test_frozen_text_encoder_is_cached_and_gives_the_same_outputs():
    model = tiny_model().eval()
    batch = hand_batch(model)
    with torch.no_grad():
        reference = model(batch)
    model.set_encoders_frozen(text=True, vision=True)
    model.train()
    assert model.text_encoder.training is False, "a frozen encoder must run without dropout"
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    model.eval()
    rows = text_rows_counter(model)
    first = model(batch)
    assert rows.rows == 3
    again = model(batch)
    assert rows.rows == 3, "cached posts were encoded again"
    for key in HEAD_KEYS:
        torch.testing.assert_close(first["layers"][-1][key], reference["layers"][-1][key], atol=1e-5, rtol=1e-4)
        assert torch.equal(first["layers"][-1][key], again["layers"][-1][key])
    # A batch with one known and one new post encodes only the new one.
    (post, regions), _, _ = hand_posts()
    new = dataclasses.replace(post, id="p9", words=post.words[:-1] + ["tonight"], entities=post.entities)
    model(collate(build_examples(model, [hand_posts()[1], (new, regions)])))
    assert rows.rows == 4
    # The trainer freezes again at every epoch; an encoder that stays frozen keeps its cache.
    model.set_encoders_frozen(text=True, vision=True)
    model(batch)
    assert rows.rows == 4, "freezing an already frozen encoder dropped its cache"
    model.set_encoders_frozen(text=False, vision=False)
    model.set_encoders_frozen(text=True, vision=True)
    model(batch)
    assert rows.rows == 7, "a released and frozen again encoder has new weights: its cache must be new"


def test_frozen_encoders_get_no_gradient_and_released_ones_train_again():
    model = tiny_model()
    batch = hand_batch(model)
    model.set_encoders_frozen(text=True, vision=True)
    model.train()
    train_step(model, batch)
    assert all(p.grad is None for p in model.text_encoder.parameters())
    assert model.text_proj[0].weight.grad is not None
    model.set_encoders_frozen(text=False, vision=False)
    model.train()
    assert model.text_encoder.training
    rows = text_rows_counter(model)
    train_step(model, batch)
    assert rows.rows == 3, "a released encoder must run on every step, not from the cache"
    assert model.text_encoder.backbone.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_released_with_top_layers_only_the_top_blocks_train():
    model = tiny_model()  # the tiny text encoder has 2 blocks
    model.set_encoders_frozen(text=False, vision=False, top_layers=1)
    model.train()
    train_step(model, hand_batch(model))
    backbone = model.text_encoder.backbone
    with_grad = {n for n, p in backbone.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and all(n.startswith("encoder.layer.1.") for n in with_grad)
    assert not any(p.requires_grad for p in backbone.embeddings.parameters())
    assert not any(p.requires_grad for p in backbone.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in backbone.encoder.layer[1].parameters())
    model.set_encoders_frozen(text=False, vision=False)  # -1: every block trains again
    assert all(p.requires_grad for p in backbone.parameters())
    with pytest.raises(ValueError, match=r"finetune_layers=3: the text encoder has 2 layers \(use 1..2 or -1\)"):
        model.set_encoders_frozen(text=False, vision=False, top_layers=3)


@pytest.mark.parametrize("value", [0, -2])
def test_finetune_layers_must_be_all_or_positive(value):
    with pytest.raises(ValueError, match=rf"train.finetune_layers={value}: expected -1"):
        TrainConfig(finetune_layers=value)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


def test_frozen_clip_region_encoder_is_cached_per_image_and_candidates(tiny_clip):
    model = tiny_model(vision_encoder=f"clip:{tiny_clip}").eval()
    batch = hand_batch(model)
    assert batch["crops"].shape == (9, 3, 32, 32)
    with torch.no_grad():
        reference = model(batch)
    model.set_encoders_frozen(text=True, vision=True)
    crops = CallCounter(model.vision_encoder.tower.get_input_embeddings())  # the patch convolution
    first = model(batch)
    rows_first = crops.rows
    again = model(batch)
    # The ungroundable slot (one blank image) and the 9 candidate crops are encoded once.
    assert rows_first == 9 + 1 and crops.rows == rows_first
    for key in HEAD_KEYS:
        torch.testing.assert_close(first["layers"][-1][key], reference["layers"][-1][key], atol=1e-5, rtol=1e-4)
        assert torch.equal(first["layers"][-1][key], again["layers"][-1][key])
    # Other candidates in the same image are another cache entry.
    (post, regions), _, _ = hand_posts()
    moved = [Region((r.box[0] + 1, r.box[1], r.box[2], r.box[3])) for r in regions]
    model(collate(build_examples(model, [(post, moved)])))
    assert crops.rows == rows_first + 3  # the blank slot comes from the cache


def test_released_text_encoder_trains_while_the_frozen_vision_encoder_keeps_its_cache(tiny_clip):
    # The paper's schedule after epoch 5: BERT fine-tuned, CLIP frozen for the whole run.
    model = tiny_model(vision_encoder=f"clip:{tiny_clip}")
    batch = hand_batch(model)
    model.set_encoders_frozen(text=True, vision=True)
    crops = CallCounter(model.vision_encoder.tower.get_input_embeddings())
    model.train()
    train_step(model, batch)
    assert crops.rows == 9 + 1  # the candidates, then the blank image of the ungroundable slot
    model.set_encoders_frozen(text=False, vision=True)
    model.train()
    assert model.text_encoder.training and not model.vision_encoder.training
    rows = text_rows_counter(model)
    train_step(model, batch)
    assert crops.rows == 9 + 1, "releasing the text encoder dropped the frozen vision encoder's cache"
    assert rows.rows == 3, "a released text encoder runs on every step"
    assert model.text_encoder.backbone.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.vision_encoder.parameters())


class PromptRecorder:
    """Stands for the text encoder in `QuerySet.compute_prompts`: records the sentences it is given and
    answers with a vector per sentence (its index, so each state is recognisable)."""

    def __init__(self, hidden: int) -> None:
        self.hidden, self.sentences = hidden, []
        self.tokenizer = type("Tokenizer", (), {"mask_token": "[MASK]"})()

    def encode_sentence_token(self, text: str, token: str) -> torch.Tensor:
        return self.encode_sentence(text)

    def encode_sentence(self, text: str) -> torch.Tensor:
        self.sentences.append(text)
        return torch.full((self.hidden,), float(len(self.sentences)))


def test_the_type_prompt_spells_the_type_in_words():
    words = type_words(["PER", "LOC", "ORG", "OTHER"],
                       {"PER": "Person", "LOC": "Location", "ORG": "Organization", "OTHER": "Others"})
    recorder = PromptRecorder(8)
    QuerySet(8, 4, 8, 8).compute_prompts(recorder, words)
    assert recorder.sentences == [TYPE_PROMPT.format(w) for w in ("Person", "Location", "Organization", "Others")]
    assert recorder.sentences[0] == "Person is an entity type about [MASK] ."
    assert type_words(["sports_team"], {}) == ["sports team"]  # unmapped: the tag in words
    with pytest.raises(ValueError, match=r"model.type_prompts names \['PERSON'\]"):
        type_words(["PER"], {"PERSON": "Person"})


@pytest.mark.parametrize("u, p", [(60, 4), (64, 8), (8, 4), (51, 51)])
def test_handwritten_questions_are_distinct_and_each_asks_about_its_type(u, p):
    words = [f"type{i}" for i in range(p)]
    questions = handwritten_questions(words, u)
    assert len(questions) == len(set(questions)) == u
    # Query j carries type j mod p, as the tiled type queries do.
    assert all(words[j % p] in q and sum(w in q.split() for w in words) == 1 for j, q in enumerate(questions))
    with pytest.raises(ValueError, match="lower model.num_queries"):
        handwritten_questions(words, p * (len(QUESTIONS) + 1))


def test_without_learnable_queries_the_u_queries_are_u_distinct_encoded_questions():
    recorder = PromptRecorder(8)
    queries = QuerySet(8, 4, 8, 8, use_type_queries=False, learnable=False)
    queries.compute_prompts(recorder, ["person", "location", "organization", "others"])
    assert len(set(recorder.sentences)) == 8
    assert queries(1)[0, :, 0].tolist() == [float(i) for i in range(1, 9)]  # identity: the states as encoded


def test_projection_none_adds_the_mask_state_exactly_frozen_never_trains_trained_does():
    mask_states = torch.randn(4, 16)
    for kind in ("none", "frozen", "trained"):
        torch.manual_seed(0)
        queries = QuerySet(8, 4, 16, 16, projection=kind)
        queries.type_states.copy_(mask_states)
        out = queries(2)
        if kind == "none":
            assert torch.equal(out[0], queries.entity + mask_states.repeat(2, 1))
        out.sum().backward()
        trained = [name for name, p in queries.named_parameters() if p.grad is not None]
        assert trained == (["entity", "project.weight", "project.bias"] if kind == "trained" else ["entity"]), kind
    frozen = QuerySet(8, 4, 32, 16, projection="frozen")  # text states of 16 into queries of 32
    assert "project.weight" in dict(frozen.named_buffers())  # a buffer: saved, never optimised
    weight = frozen.project.weight
    torch.testing.assert_close(weight.T @ weight, torch.eye(16))  # orthogonal: keeps norms and angles


def test_projection_none_needs_the_text_encoder_size():
    with pytest.raises(ValueError, match=r"type_query_projection=none .* \(size 32\) .*model.hidden_size=16\b.*"
                                         r"set model.hidden_size=32, or model.type_query_projection to frozen or trained"):
        tiny_model(hidden_size=16, type_query_projection="none")
    tiny_model(hidden_size=16, type_query_projection="none", use_type_queries=False)  # no [MASK] state to add
    with pytest.raises(ValueError, match="type_query_projection='linear'"):
        ModelConfig(type_query_projection="linear")


def test_a_trained_clip_encoder_sees_the_blank_image_and_all_crops_in_one_call(tiny_clip):
    model = tiny_model(vision_encoder=f"clip:{tiny_clip}").eval()
    batch = hand_batch(model)
    calls = []
    model.vision_encoder.register_forward_hook(lambda module, args, output: calls.append(len(args[0])))
    with torch.no_grad():
        together = model(batch)
    assert calls == [1 + 9]
    # Encoded apart, as the frozen path does, the outputs agree.
    model.set_encoders_frozen(text=True, vision=True)
    with torch.no_grad():
        apart = model(batch)
    for key in HEAD_KEYS:
        torch.testing.assert_close(together["layers"][-1][key], apart["layers"][-1][key], atol=1e-5, rtol=1e-4)
