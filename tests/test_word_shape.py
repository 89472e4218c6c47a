"""Word shapes: the casing cue an uncased encoder loses."""
import pytest

from mqspn.model.word_shape import SHAPES, word_shape, word_shapes


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
