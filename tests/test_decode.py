"""Decoding options on hand-set head outputs: entity threshold, joint ranking, region vote."""
from __future__ import annotations

import pytest
import torch

from mqspn.config import DecodeConfig
from mqspn.model.decode import Decoder
from mqspn.types import Region

TYPES = ["PER", "LOC"]
N_WORDS = 6
REGIONS = [Region((0, 0, 10, 10)), Region((20, 20, 40, 40))]
BIG = 20.0


def outputs(queries: list[dict]) -> dict:
    """One post of N_WORDS words, two candidate regions. Each query: type probabilities over
    (PER, LOC, null), a span with its boundary logit, and the region logits of slots (None, r1, r2)."""
    u = len(queries)
    type_logits = torch.tensor([q["type_p"] for q in queries]).log()
    start = torch.full((u, N_WORDS), -BIG)
    end = torch.full((u, N_WORDS), -BIG)
    for i, q in enumerate(queries):
        s, e = q["span"]
        start[i, s] = end[i, e] = q.get("boundary", BIG)
    region = torch.tensor([q["region"] for q in queries], dtype=torch.float)
    last = {"type_logits": type_logits[None], "start_logits": start[None], "end_logits": end[None],
            "region_logits": region[None]}
    return {"layers": [last]}


def run(queries: list[dict], **options) -> list:
    return Decoder(TYPES, DecodeConfig(**options))(outputs(queries), [N_WORDS], [REGIONS])[0]


def test_entity_threshold_drops_unsure_queries_and_keeps_sure_ones():
    queries = [
        {"type_p": [0.9, 0.05, 0.05], "span": (0, 1), "region": [5.0, 0.0, 0.0]},
        {"type_p": [0.1, 0.55, 0.35], "span": (3, 3), "region": [0.0, 5.0, 0.0]},
    ]
    assert [e.span for e in run(queries)] == [(0, 1), (3, 3)]
    kept = run(queries, entity_threshold=0.6)
    assert [(e.span, e.type, e.box) for e in kept] == [((0, 1), "PER", None)]


def test_joint_ranking_prefers_the_query_surest_of_its_boundaries():
    queries = [  # overlapping spans: the first is surer of its type, the second of its boundaries
        {"type_p": [0.9, 0.05, 0.05], "span": (0, 0), "boundary": 0.0, "region": [5.0, 0.0, 0.0]},
        {"type_p": [0.8, 0.1, 0.1], "span": (0, 1), "region": [5.0, 0.0, 0.0]},
    ]
    assert [e.span for e in run(queries)] == [(0, 0)]
    joint = run(queries, decode_rank="joint")
    assert [e.span for e in joint] == [(0, 1)]
    assert joint[0].score == pytest.approx(0.8, rel=1e-4)  # type 0.8 x P(start) x P(end), both ~1


def test_region_vote_takes_the_average_over_queries_on_the_same_span():
    queries = [  # the top query points at r1, the two others on the same span at r2
        {"type_p": [0.9, 0.05, 0.05], "span": (2, 3), "region": [0.0, 3.0, 0.0]},
        {"type_p": [0.7, 0.2, 0.1], "span": (2, 3), "region": [0.0, 1.0, 4.0]},
        {"type_p": [0.6, 0.3, 0.1], "span": (2, 3), "region": [0.0, 1.0, 4.0]},
        {"type_p": [0.6, 0.3, 0.1], "span": (5, 5), "region": [4.0, 0.0, 0.0]},
    ]
    alone = run(queries)
    voted = run(queries, region_vote=True)
    assert [(e.span, e.box) for e in alone] == [((2, 3), REGIONS[0].box), ((5, 5), None)]
    assert [(e.span, e.box) for e in voted] == [((2, 3), REGIONS[1].box), ((5, 5), None)]


@pytest.mark.parametrize("option, value, message", [
    ("entity_threshold", 1.0, "decode.entity_threshold=1.0: expected a probability in [0, 1)"),
    ("entity_threshold", -0.1, "decode.entity_threshold=-0.1"),
    ("decode_rank", "boundary", "decode.decode_rank='boundary': expected one of type, joint"),
    ("max_span_words", 0, "decode.max_span_words=0: expected at least 1"),
])
def test_bad_decoding_options_are_refused(option, value, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        DecodeConfig(**{option: value})
