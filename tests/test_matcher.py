"""The Hungarian matcher: its cost, optimal assignments on hand-made costs, batch independence, empty sets."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mqspn.model.matcher import HungarianMatcher
from mqspn.model.region_scoring import RegionScoring

NEG = torch.finfo(torch.float32).min


def outputs_from(type_probs, start_probs, end_probs, region_probs) -> dict:
    """Head outputs of one post whose probabilities are exactly the given ones ([u, p+1], [u, n], [u, n],
    [u, k+1]); type logits are log-probabilities, so their softmax gives the probabilities back."""
    sig = lambda p: torch.tensor(p, dtype=torch.float64).clamp(1e-9, 1 - 1e-9).logit().float()[None]  # noqa: E731
    return {
        "type_logits": torch.tensor(type_probs, dtype=torch.float64).clamp_min(1e-12).log().float()[None],
        "start_logits": sig(start_probs),
        "end_logits": sig(end_probs),
        "region_logits": sig(region_probs),
    }


def target(types, starts, ends, regions) -> dict:
    return {"types": torch.tensor(types, dtype=torch.int64), "starts": torch.tensor(starts, dtype=torch.int64),
            "ends": torch.tensor(ends, dtype=torch.int64), "regions": torch.tensor(regions, dtype=torch.float32)}


def random_outputs(batch: int, u: int, n: int, k1: int, seed: int, classes: int = 5) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "type_logits": torch.randn(batch, u, classes, generator=g),
        "start_logits": torch.randn(batch, u, n, generator=g),
        "end_logits": torch.randn(batch, u, n, generator=g),
        "region_logits": torch.randn(batch, u, k1, generator=g),
    }


def random_target(m: int, n: int, k1: int, seed: int, classes: int = 5) -> dict:
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, n, (m,), generator=g)
    ends = torch.minimum(starts + torch.randint(0, 3, (m,), generator=g), torch.tensor(n - 1))
    regions = torch.zeros(m, k1)
    regions[torch.arange(m), torch.randint(0, k1, (m,), generator=g)] = 1.0
    return {"types": torch.randint(0, classes - 1, (m,), generator=g), "starts": starts, "ends": ends,
            "regions": regions}


def pairs(indices) -> list[tuple[int, int]]:
    pred, tgt = indices
    assert pred.dtype == tgt.dtype == torch.int64
    return sorted(zip(pred.tolist(), tgt.tolist()))


def total_cost(cost: torch.Tensor, assignment: list[tuple[int, int]]) -> float:
    return float(sum(cost[q, t] for q, t in assignment))


def test_cost_is_the_weighted_sum_of_type_boundary_and_best_region_probabilities():
    # u = 2 queries, p = 2 types + null, n = 3 words, k = 2 candidates (+ slot 0).
    out = outputs_from(
        type_probs=[[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]],
        start_probs=[[0.9, 0.2, 0.3], [0.1, 0.8, 0.4]],
        end_probs=[[0.6, 0.5, 0.1], [0.2, 0.3, 0.7]],
        region_probs=[[0.8, 0.1, 0.3], [0.2, 0.6, 0.9]],
    )
    # Entity 0: type 0, words 0..1, ungroundable (slot 0). Entity 1: type 1, words 1..2, both candidates count.
    tgt = target([0, 1], [0, 1], [1, 2], [[1, 0, 0], [0, 1, 1]])
    matcher = HungarianMatcher(cost_type=2.0, cost_boundary=0.5, cost_region=3.0)
    cost = matcher.cost(matcher.probabilities(out), 0, tgt)
    expected = -np.array([
        [2 * 0.7 + 0.5 * (0.9 + 0.5) + 3 * 0.8, 2 * 0.2 + 0.5 * (0.2 + 0.1) + 3 * max(0.1, 0.3)],
        [2 * 0.1 + 0.5 * (0.1 + 0.3) + 3 * 0.2, 2 * 0.6 + 0.5 * (0.8 + 0.7) + 3 * max(0.6, 0.9)],
    ])
    np.testing.assert_allclose(cost.numpy(), expected, atol=1e-5)


def test_assignment_is_optimal_where_greedy_is_not():
    # Only the type term counts. Query 0 is the best query for both entities, but giving it entity 0
    # (greedy) leaves entity 1 to a query that scores 0 for it: total 0.6. Optimal: q0 -> e1, q1 -> e0 (0.9).
    out = outputs_from(
        type_probs=[[0.6, 0.4, 0.0], [0.5, 0.0, 0.5], [0.0, 0.0, 1.0]],
        start_probs=[[0.5, 0.5]] * 3, end_probs=[[0.5, 0.5]] * 3, region_probs=[[0.5, 0.5]] * 3,
    )
    tgt = target([0, 1], [0, 1], [0, 1], [[1, 0], [1, 0]])
    matcher = HungarianMatcher(cost_type=1.0, cost_boundary=0.0, cost_region=0.0)
    assert pairs(matcher(out, [tgt])[0]) == [(0, 1), (1, 0)]


def test_boundary_and_region_terms_decide_between_queries_of_equal_type_scores():
    # Both queries are equally sure of the type; query 1 points at entity 0's span and region.
    out = outputs_from(
        type_probs=[[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]],
        start_probs=[[0.1, 0.1, 0.9, 0.1], [0.9, 0.1, 0.1, 0.1]],
        end_probs=[[0.1, 0.1, 0.1, 0.9], [0.1, 0.9, 0.1, 0.1]],
        region_probs=[[0.9, 0.1, 0.1], [0.1, 0.1, 0.9]],
    )
    tgt = target([0, 0], [0, 2], [1, 3], [[0, 0, 1], [1, 0, 0]])
    assert pairs(HungarianMatcher()(out, [tgt])[0]) == [(0, 1), (1, 0)]
    assert pairs(HungarianMatcher(cost_region=0.0)(out, [tgt])[0]) == [(0, 1), (1, 0)]


@pytest.mark.parametrize("seed", range(5))
def test_assignment_has_the_minimum_total_cost_of_all_assignments(seed):
    u, m = 5, 3
    out = random_outputs(1, u, 6, 4, seed)
    tgt = random_target(m, 6, 4, seed + 100)
    matcher = HungarianMatcher(cost_type=1.0, cost_boundary=0.7, cost_region=1.3)
    cost = matcher.cost(matcher.probabilities(out), 0, tgt)
    found = pairs(matcher(out, [tgt])[0])
    assert len(found) == m and len({q for q, _ in found}) == m and sorted(t for _, t in found) == list(range(m))
    best = min(total_cost(cost, list(zip(queries, range(m)))) for queries in itertools.permutations(range(u), m))
    assert total_cost(cost, found) == pytest.approx(best, abs=1e-6)


def test_one_post_alone_matches_as_inside_a_padded_batch():
    # Three posts of 4, 7 and 5 words: inside the batch each is padded to 7 words (logits -inf there).
    lengths, u, k1 = [4, 7, 5], 6, 4
    batch = random_outputs(3, u, max(lengths), k1, seed=1)
    for b, n in enumerate(lengths):
        batch["start_logits"][b, :, n:] = NEG
        batch["end_logits"][b, :, n:] = NEG
    targets = [random_target(m, n, k1, seed=10 + b) for b, (m, n) in enumerate(zip([2, 3, 1], lengths))]
    matcher = HungarianMatcher()
    together = matcher(batch, targets)
    for b, n in enumerate(lengths):
        alone = {key: value[b : b + 1] for key, value in batch.items()}
        alone["start_logits"] = alone["start_logits"][..., :n]
        alone["end_logits"] = alone["end_logits"][..., :n]
        assert pairs(matcher(alone, [targets[b]])[0]) == pairs(together[b])


@pytest.mark.parametrize("softmax", [False, True], ids=["sigmoid", "softmax"])
def test_a_post_with_fewer_candidates_than_its_batch_matches_as_alone(softmax):
    # Batch: K = 4 candidates. Post 1 has k = 2: its slots 3, 4 are padding (logits -inf, target columns 0,
    # as `collate` pads them).
    u, n = 6, 5
    batch = random_outputs(2, u, n, 5, seed=2)
    batch["region_logits"][1, :, 3:] = NEG
    short = random_target(2, n, 3, seed=4)
    padded = dict(short, regions=torch.cat([short["regions"], torch.zeros(2, 2)], 1))
    alone = {key: value[1:2] for key, value in batch.items()}
    alone["region_logits"] = alone["region_logits"][..., :3]
    matcher = HungarianMatcher(scoring=RegionScoring("softmax" if softmax else "bce"))
    assert pairs(matcher(batch, [random_target(2, n, 5, seed=3), padded])[1]) == pairs(matcher(alone, [short])[0])
    torch.testing.assert_close(matcher.cost(matcher.probabilities(batch), 1, padded),
                               matcher.cost(matcher.probabilities(alone), 0, short))


def test_softmax_region_cost_uses_the_slot_distribution():
    # Region logits log(0.2), log(0.5), log(0.3): as a softmax over the slots these are the probabilities.
    out = outputs_from(type_probs=[[0.5, 0.5, 0.0]], start_probs=[[0.5]], end_probs=[[0.5]],
                       region_probs=[[0.5, 0.5, 0.5]])
    out["region_logits"] = torch.tensor([[[0.2, 0.5, 0.3]]]).log()
    tgt = target([0], [0], [0], [[0, 1, 1]])
    matcher = HungarianMatcher(cost_type=0.0, cost_boundary=0.0, cost_region=1.0, scoring=RegionScoring("softmax"))
    cost = matcher.cost(matcher.probabilities(out), 0, tgt)
    assert cost.item() == pytest.approx(-0.5, abs=1e-6)


@pytest.mark.parametrize("bipartite", [True, False])
def test_empty_targets_give_empty_matches(bipartite):
    out = random_outputs(2, 4, 5, 3, seed=0)
    empty = {"types": torch.zeros(0, dtype=torch.int64), "starts": torch.zeros(0, dtype=torch.int64),
             "ends": torch.zeros(0, dtype=torch.int64), "regions": torch.zeros(0, 3)}
    result = HungarianMatcher(bipartite=bipartite)(out, [empty, random_target(2, 5, 3, seed=1)])
    assert [len(result[0][0]), len(result[0][1])] == [0, 0]
    assert result[0][0].dtype == torch.int64
    assert len(pairs(result[1])) == 2


@pytest.mark.parametrize("bipartite", [True, False])
def test_more_targets_than_queries_match_every_query_once(bipartite):
    u, m = 3, 5
    out = random_outputs(1, u, 6, 3, seed=5)
    found = pairs(HungarianMatcher(bipartite=bipartite)(out, [random_target(m, 6, 3, seed=6)])[0])
    assert sorted(q for q, _ in found) == list(range(u))
    assert len({t for _, t in found}) == u and all(0 <= t < m for _, t in found)


def test_without_bipartite_matching_target_i_goes_to_query_i_whatever_the_cost():
    # The "w/o bipartite matching" ablation: the fixed order ignores that query 1 fits entity 0 perfectly.
    out = outputs_from(
        type_probs=[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        start_probs=[[0.5, 0.5]] * 3, end_probs=[[0.5, 0.5]] * 3, region_probs=[[0.5, 0.5]] * 3,
    )
    tgt = target([0, 1], [0, 1], [0, 1], [[1, 0], [1, 0]])
    assert pairs(HungarianMatcher()(out, [tgt])[0]) == [(1, 0), (2, 1)]
    assert pairs(HungarianMatcher(bipartite=False)(out, [tgt])[0]) == [(0, 0), (1, 1)]
