"""Per-word features: shapes (the casing cue an uncased encoder loses) and identity hashes
(stable across processes, case-blind, spread over the buckets)."""
import subprocess
import sys

import pytest

from mqspn.text_features import SHAPES, word_hash, word_hashes, word_shape, word_shapes


@pytest.mark.parametrize("word, shape", [
    ("apple", "lower"), ("Apple", "title"), ("A", "title"), ("NASA", "upper"), ("iPhone", "mixed"),
    ("McDonald", "mixed"), ("2017", "number"), ("1,000", "number"), ("3.5", "number"), ("R2D2", "alnum"),
    ("@nasa", "mention"), ("#WorldCup", "hashtag"), ("http://t.co/x", "url"), ("https://t", "url"),
    ("!", "other"), ("@", "other"), ("#", "other"), ("-", "other"), ("é", "lower"), ("Émile", "title"),
])
def test_each_shape(word, shape):
    assert SHAPES[word_shape(word)] == shape


def test_a_post_gets_one_shape_per_word():
    assert [SHAPES[i] for i in word_shapes(["RT", "@jo", ":", "Obama", "visits", "Paris"])] == \
        ["upper", "mention", "other", "title", "lower", "title"]


def test_the_hash_is_the_same_in_another_process():
    # Python's own hash() is salted per process; a saved model's embedding rows must keep their words.
    code = "from mqspn.text_features import word_hash; print(word_hash('Kellan'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == word_hash("Kellan")


def test_case_is_ignored_and_words_differ():
    assert word_hash("Kellan") == word_hash("KELLAN") == word_hash("kellan")
    assert word_hash("Kellan") != word_hash("Kellam")
    assert word_hashes(["RT", "rt", "Paris"]) == [word_hash("rt")] * 2 + [word_hash("paris")]


def test_hashes_are_non_negative_and_spread_over_buckets():
    words = [f"w{i}" for i in range(2000)]
    hashes = word_hashes(words)
    assert min(hashes) >= 0 and max(hashes) < 2 ** 31
    assert len({h % 64 for h in hashes}) == 64  # 2000 words leave no bucket of 64 empty
