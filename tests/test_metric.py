"""The GMNER metric on hand-computed cases, and gold-as-prediction on the real test split."""
from __future__ import annotations

import pytest

from conftest import FMNERG_DIR, GMNER_DIR, needs_shared
from mqspn.metric import Tally, deduplicate, fine_to_coarse, post_counts, score
from mqspn.types import Entity, Post

GOLD_BOX = (0.0, 0.0, 10.0, 10.0)  # area 100: a box (0, 0, 10, h) inside it has IoU h / 10


def one_post(gold: list[Entity], predicted: list[Entity]) -> dict:
    return score([Post("p", ["w"] * 8, gold)], {"p": predicted})


def tp(result: dict) -> tuple[int, int, int]:
    return result["gmner"]["tp"], result["mner"]["tp"], result["eeg"]["tp"]


def test_iou_just_above_half_is_correct_and_just_below_is_not():
    gold = [Entity(0, 1, "PER", [GOLD_BOX])]
    assert tp(one_post(gold, [Entity(0, 1, "PER", [(0.0, 0.0, 10.0, 5.1)])])) == (1, 1, 1)
    assert tp(one_post(gold, [Entity(0, 1, "PER", [(0.0, 0.0, 10.0, 4.9)])])) == (0, 1, 0)
    # Exactly 0.5 is not enough: the protocol needs IoU strictly above the threshold.
    assert tp(one_post(gold, [Entity(0, 1, "PER", [(0.0, 0.0, 10.0, 5.0)])])) == (0, 1, 0)


def test_ungroundable_gold_predicted_with_a_box_is_an_mner_hit_only():
    result = one_post([Entity(2, 2, "LOC")], [Entity(2, 2, "LOC", [GOLD_BOX])])
    assert tp(result) == (0, 1, 0)
    for task in ("gmner", "eeg"):
        # One false positive and one false negative: P = R = F1 = 0.
        assert result[task] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "n_pred": 1, "n_gold": 1}
    assert result["mner"]["f1"] == 100.0


def test_groundable_gold_predicted_as_none_misses_the_region():
    result = one_post([Entity(2, 3, "ORG", [GOLD_BOX])], [Entity(2, 3, "ORG")])
    assert tp(result) == (0, 1, 0)


def test_any_of_several_gold_boxes_counts():
    gold = [Entity(0, 0, "PER", [GOLD_BOX, (100.0, 100.0, 110.0, 110.0)])]
    assert tp(one_post(gold, [Entity(0, 0, "PER", [(101.0, 100.0, 110.0, 110.0)])])) == (1, 1, 1)


def test_duplicate_spans_keep_the_highest_score_then_the_first():
    gold = [Entity(0, 0, "PER")]
    by_score = [Entity(0, 0, "LOC", score=0.4), Entity(0, 0, "PER", score=0.9), Entity(0, 0, "ORG", score=0.9)]
    result = one_post(gold, by_score)
    assert result["mner"]["n_pred"] == 1 and tp(result) == (1, 1, 1)
    # The dropped LOC/ORG duplicates leave no trace in the per-type rows either.
    assert sorted(result["per_type"]) == ["PER"]
    assert tp(one_post(gold, [Entity(0, 0, "LOC"), Entity(0, 0, "PER")])) == (0, 0, 1)
    assert [e.type for e in deduplicate([Entity(0, 0, "LOC"), Entity(0, 0, "PER", score=0.1)])] == ["PER"]


def test_empty_predictions_score_zero_with_the_gold_counted():
    gold = [Post("a", ["w"] * 3, [Entity(0, 0, "PER"), Entity(2, 2, "LOC")]), Post("b", ["w"], [Entity(0, 0, "ORG")])]
    result = score(gold, {})
    for task in ("gmner", "mner", "eeg"):
        assert result[task] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "n_pred": 0, "n_gold": 3}
    assert {t: row["mner"]["n_gold"] for t, row in result["per_type"].items()} == {"LOC": 1, "ORG": 1, "PER": 1}


def small_corpus() -> tuple[list[Post], dict[str, list[Entity]]]:
    gold = [
        Post(
            "A",
            ["w"] * 6,
            [
                Entity(0, 1, "PER", [GOLD_BOX]),
                Entity(2, 2, "PER"),
                Entity(3, 3, "LOC"),
                Entity(5, 5, "ORG", [(20.0, 20.0, 40.0, 40.0)]),
            ],
        ),
        Post("B", ["w"] * 3, [Entity(0, 0, "OTHER")]),  # no predictions at all
        Post("C", ["w"] * 4, []),
    ]
    predictions = {
        "A": [
            Entity(0, 1, "PER", [(0.0, 0.0, 10.0, 9.0)]),  # all right
            Entity(2, 2, "PER", [(1.0, 1.0, 5.0, 5.0)]),  # type right, region wrong (gold ungroundable)
            Entity(3, 3, "ORG"),  # type wrong, region right
            Entity(5, 5, "ORG"),  # type right, region wrong
            Entity(4, 4, "PER"),  # no such gold span
        ],
        "C": [Entity(1, 2, "LOC")],
    }
    return gold, predictions


def test_exact_numbers_on_a_small_corpus():
    result = score(*small_corpus())
    # 6 predictions, 5 gold; true positives GMNER 1, MNER 3, EEG 2.
    assert result["gmner"] == pytest.approx(
        {"precision": 100 / 6, "recall": 20.0, "f1": 200 / 11, "tp": 1, "n_pred": 6, "n_gold": 5}
    )
    assert result["mner"] == pytest.approx(
        {"precision": 50.0, "recall": 60.0, "f1": 600 / 11, "tp": 3, "n_pred": 6, "n_gold": 5}
    )
    assert result["eeg"] == pytest.approx(
        {"precision": 100 / 3, "recall": 40.0, "f1": 400 / 11, "tp": 2, "n_pred": 6, "n_gold": 5}
    )


def test_per_type_numbers_on_a_small_corpus():
    per_type = score(*small_corpus())["per_type"]
    counts = {t: {task: (c["tp"], c["n_pred"], c["n_gold"]) for task, c in row.items()} for t, row in per_type.items()}
    assert counts == {
        "LOC": {"gmner": (0, 1, 1), "mner": (0, 1, 1), "eeg": (0, 1, 1)},
        # The ORG prediction on the LOC span is not compared with LOC gold: per-type EEG finds 0 here.
        "ORG": {"gmner": (0, 2, 1), "mner": (1, 2, 1), "eeg": (0, 2, 1)},
        "OTHER": {"gmner": (0, 0, 1), "mner": (0, 0, 1), "eeg": (0, 0, 1)},
        "PER": {"gmner": (1, 3, 2), "mner": (2, 3, 2), "eeg": (1, 3, 2)},
    }
    assert per_type["PER"]["mner"] == pytest.approx(
        {"precision": 200 / 3, "recall": 100.0, "f1": 80.0, "tp": 2, "n_pred": 3, "n_gold": 2}
    )


def test_tally_over_posts_equals_score():
    gold, predictions = small_corpus()
    tally = Tally()
    for post in gold:
        tally.add(post.entities, predictions.get(post.id, []), post.id)
    assert tally.result() == score(gold, predictions)
    assert post_counts(gold[0].entities, predictions["A"])["gmner"].tp == 1


def test_type_map_scores_fine_predictions_at_coarse_level():
    gold = [Post("p", ["w"] * 4, [Entity(0, 0, "politician"), Entity(2, 3, "city")])]
    predictions = {"p": [Entity(0, 0, "athlete"), Entity(2, 3, "city")]}
    type_map = {"politician": "person", "athlete": "person", "city": "location"}
    assert score(gold, predictions)["mner"]["tp"] == 1
    coarse = score(gold, predictions, type_map)
    assert coarse["mner"]["tp"] == 2 and sorted(coarse["per_type"]) == ["location", "person"]
    with pytest.raises(ValueError, match=r"post p \(predictions\): type\(s\) \['athlete'\] are not in the type map"):
        score(gold, predictions, {"politician": "person", "city": "location"})


def test_fine_to_coarse_reads_the_map_and_rejects_conflicts():
    fine = [Post("p", ["w"] * 3, [Entity(0, 0, "athlete"), Entity(2, 2, "city")])]
    coarse = [Post("p", ["w"] * 3, [Entity(0, 0, "person"), Entity(2, 2, "location")])]
    assert fine_to_coarse(fine, coarse) == {"athlete": "person", "city": "location"}
    clash = [Post("q", ["w"] * 2, [Entity(0, 0, "athlete")])]
    with pytest.raises(ValueError, match="fine type 'athlete' is under coarse 'organization' here"):
        fine_to_coarse(fine + clash, coarse + [Post("q", ["w"] * 2, [Entity(0, 0, "organization")])])


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match=r"1 post id\(s\) not in the gold data, e.g. \['zz'\]"):
        score([Post("p", ["w"])], {"zz": []})
    with pytest.raises(ValueError, match=r"post p: gold span \[0, 0\] is listed twice"):
        score([Post("p", ["w"], [Entity(0, 0, "PER"), Entity(0, 0, "LOC")])], {})
    with pytest.raises(ValueError, match=r"post p: predicted span \[0, 0\] has 2 boxes"):
        score([Post("p", ["w"])], {"p": [Entity(0, 0, "PER", [GOLD_BOX, GOLD_BOX])]})


def gold_as_predictions(gold: list[Post]) -> dict[str, list[Entity]]:
    return {post.id: [Entity(e.start, e.end, e.type, e.boxes[:1]) for e in post.entities] for post in gold}


@needs_shared
def test_gold_as_prediction_scores_100_on_the_real_test_split():
    from mqspn.data.datasets import read_split

    gold = read_split(GMNER_DIR, "test")
    result = score(gold, gold_as_predictions(gold))
    n_gold = sum(len(post.entities) for post in gold)
    for task in ("gmner", "mner", "eeg"):
        assert result[task] == {"precision": 100.0, "recall": 100.0, "f1": 100.0, "tp": n_gold, "n_pred": n_gold, "n_gold": n_gold}
    assert sorted(result["per_type"]) == ["LOC", "ORG", "OTHER", "PER"]


@needs_shared
def test_fine_to_coarse_on_real_fmnerg():
    from mqspn.data.datasets import read_split

    read = dict(format="fmnerg", xml_dir=GMNER_DIR / "xml")
    mapping = fine_to_coarse(
        read_split(FMNERG_DIR, "dev", granularity="fine", **read),
        read_split(FMNERG_DIR, "dev", granularity="coarse", **read),
    )
    assert mapping["politician"] == "person" and mapping["sports_team"] == "organization"
    assert set(mapping.values()) <= {"person", "location", "building", "organization", "product", "art", "event", "other"}
