"""The GMNER metric (H-Index protocol, spec section 4): micro precision / recall / F1 x100 over a split.

A predicted entity is a true positive when its span `(start, end)` equals a gold span of the same post and
- MNER: its type equals the gold type;
- EEG: its region is correct;
- GMNER: both.
Region correct: the gold entity is ungroundable and the prediction's box is None, or the gold entity is
groundable and the predicted box has IoU > 0.5 with at least one of its gold boxes (`boxes.matches_any`).
The three tasks share the denominators: every (deduplicated) prediction counts in `n_pred`, every gold
entity in `n_gold`, so a groundable entity that no proposal covers still caps recall.

Deduplication: a post's predictions are reduced to one per span before scoring. The one kept has the
highest `score` (a missing score counts as lower than any number); among equals the earliest wins, so
predictions without scores keep their first occurrence. Gold spans must already be unique per post
(BIO files cannot produce anything else); a repeated gold span is an error, not silently merged.

Per-type numbers are the same three metrics restricted to one type: gold and predictions of that type
only. For EEG this means a prediction typed T is only compared with gold entities typed T, so the
per-type EEG true positives can sum to less than the overall EEG true positives.

Posts absent from the predictions count as posts with no predictions; predictions for post ids absent
from the gold are an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Optional, Sequence

from mqspn.boxes import matches_any
from mqspn.types import Entity, Post

TASKS = ("gmner", "mner", "eeg")


@dataclass
class Counts:
    """Micro counts of one task: true positives, predictions and gold entities."""

    tp: int = 0
    n_pred: int = 0
    n_gold: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.n_pred + other.n_pred, self.n_gold + other.n_gold)

    def as_dict(self) -> dict[str, float | int]:
        """`{"precision", "recall", "f1"}` x100 (0.0 when undefined) plus the raw counts."""
        # 2PR/(P+R) simplifies to 2tp/(n_pred+n_gold), which is also defined when tp == 0.
        return {
            "precision": 100.0 * self.tp / self.n_pred if self.n_pred else 0.0,
            "recall": 100.0 * self.tp / self.n_gold if self.n_gold else 0.0,
            "f1": 200.0 * self.tp / (self.n_pred + self.n_gold) if self.tp else 0.0,
            "tp": self.tp,
            "n_pred": self.n_pred,
            "n_gold": self.n_gold,
        }


def region_correct(predicted: Entity, gold: Entity) -> bool:
    """Spec 4: both ungroundable, or the predicted box has IoU > 0.5 with one of the gold boxes."""
    if not gold.groundable:
        return predicted.box is None
    return matches_any(predicted.box, gold.boxes)


def deduplicate(predicted: Sequence[Entity]) -> list[Entity]:
    """One prediction per span: the highest score wins, a None score is lowest, ties keep the earliest.

    The result keeps the order in which spans first appear.
    """
    best: dict[tuple[int, int], Entity] = {}
    for entity in predicted:
        kept = best.get(entity.span)
        if kept is None or _rank(entity) > _rank(kept):
            best[entity.span] = entity
    return list(best.values())


def _rank(entity: Entity) -> float:
    return float("-inf") if entity.score is None else entity.score


def post_counts(gold: Sequence[Entity], predicted: Sequence[Entity], where: str = "post") -> dict[str, Counts]:
    """Counts of one post for each task in `TASKS`. Pure: deduplicates `predicted`, checks `gold`.

    Raises `ValueError` (naming `where`) for a repeated gold span or a prediction with several boxes.
    """
    gold_by_span: dict[tuple[int, int], Entity] = {}
    for entity in gold:
        if entity.span in gold_by_span:
            raise ValueError(f"{where}: gold span {list(entity.span)} is listed twice")
        gold_by_span[entity.span] = entity
    predicted = deduplicate(predicted)
    counts = {task: Counts(n_pred=len(predicted), n_gold=len(gold_by_span)) for task in TASKS}
    for entity in predicted:
        if len(entity.boxes) > 1:
            raise ValueError(f"{where}: predicted span {list(entity.span)} has {len(entity.boxes)} boxes, at most 1")
        match = gold_by_span.get(entity.span)
        if match is None:
            continue
        type_ok = entity.type == match.type
        region_ok = region_correct(entity, match)
        counts["mner"].tp += type_ok
        counts["eeg"].tp += region_ok
        counts["gmner"].tp += type_ok and region_ok
    return counts


def map_types(entities: Sequence[Entity], type_map: Mapping[str, str], where: str = "post") -> list[Entity]:
    """Copies of `entities` with `type` replaced through `type_map`; an unmapped type is a `ValueError`."""
    missing = sorted({e.type for e in entities} - set(type_map))
    if missing:
        raise ValueError(f"{where}: type(s) {missing} are not in the type map (it knows {sorted(type_map)})")
    return [replace(e, type=type_map[e.type]) for e in entities]


@dataclass
class Tally:
    """Running micro counts over posts, overall and per type; `result()` gives the metric dictionary.

    Usage (e.g. in a training loop): `tally.add(post.entities, predicted, post.id)` for each post.
    """

    overall: dict[str, Counts] = field(default_factory=lambda: {task: Counts() for task in TASKS})
    per_type: dict[str, dict[str, Counts]] = field(default_factory=dict)

    def add(self, gold: Sequence[Entity], predicted: Sequence[Entity], where: str = "post") -> None:
        # Deduplicate before splitting by type, so a span predicted twice with two types counts once.
        predicted = deduplicate(predicted)
        for task, counts in post_counts(gold, predicted, where).items():
            self.overall[task] += counts
        for type_ in {e.type for e in gold} | {e.type for e in predicted}:
            restricted = post_counts(
                [e for e in gold if e.type == type_], [e for e in predicted if e.type == type_], where
            )
            row = self.per_type.setdefault(type_, {task: Counts() for task in TASKS})
            for task, counts in restricted.items():
                row[task] += counts

    def result(self) -> dict:
        """`{"gmner": {...}, "mner": {...}, "eeg": {...}, "per_type": {TYPE: {"gmner": ..., ...}}}`.

        Each inner dict is `Counts.as_dict()`; types are sorted by name.
        """
        out: dict = {task: self.overall[task].as_dict() for task in TASKS}
        out["per_type"] = {
            type_: {task: row[task].as_dict() for task in TASKS} for type_, row in sorted(self.per_type.items())
        }
        return out


def score(
    gold: Sequence[Post],
    predictions: Mapping[str, Sequence[Entity]],
    type_map: Optional[Mapping[str, str]] = None,
) -> dict:
    """Score `predictions` (post id -> predicted entities) against `gold`; see the module docstring.

    `type_map`, when given, renames the types of gold and predictions alike before scoring (e.g. FMNERG
    fine -> coarse types, see `fine_to_coarse`); a type it lacks is an error.
    Returns `Tally.result()`.
    """
    ids = {post.id for post in gold}
    unknown = [post_id for post_id in predictions if post_id not in ids]
    if unknown:
        raise ValueError(f"predictions name {len(unknown)} post id(s) not in the gold data, e.g. {unknown[:5]}")
    tally = Tally()
    for post in gold:
        where = f"post {post.id}"
        gold_entities = post.entities
        predicted = predictions.get(post.id, [])
        if type_map is not None:
            gold_entities = map_types(gold_entities, type_map, f"{where} (gold)")
            predicted = map_types(predicted, type_map, f"{where} (predictions)")
        tally.add(gold_entities, predicted, where)
    return tally.result()


def fine_to_coarse(fine: Sequence[Post], coarse: Sequence[Post]) -> dict[str, str]:
    """The FMNERG fine -> coarse type map, read off the same posts annotated at both granularities.

    Both sequences must hold the same posts in the same order with the same spans; a fine type seen with
    two coarse types is an error (in Twitter-FMNERG each fine type has exactly one coarse parent).
    """
    if [p.id for p in fine] != [p.id for p in coarse]:
        raise ValueError("fine and coarse gold do not list the same posts in the same order")
    mapping: dict[str, str] = {}
    for fine_post, coarse_post in zip(fine, coarse):
        if [e.span for e in fine_post.entities] != [e.span for e in coarse_post.entities]:
            raise ValueError(f"post {fine_post.id}: fine and coarse gold have different entity spans")
        for f, c in zip(fine_post.entities, coarse_post.entities):
            if mapping.setdefault(f.type, c.type) != c.type:
                raise ValueError(
                    f"post {fine_post.id}: fine type {f.type!r} is under coarse {c.type!r} here "
                    f"but under {mapping[f.type]!r} elsewhere"
                )
    return mapping
