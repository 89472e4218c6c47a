"""Dataset statistics per split, and what a proposal set allows at best (`mqspn data stats`).

`split_stats(posts)` -> `{"posts", "entities", "groundable", "ungroundable", "boxes", "types": {TYPE: n}}`
where `boxes` counts annotated boxes (xml objects): mentions sharing a surface string share their boxes,
so each distinct string of a post counts once.

`proposal_stats(posts, proposals)` -> `{"coverage", "oracle": {"gmner_f1", "eeg_f1", "recall"}}`:
- `coverage`: share (0..1) of groundable entities for which at least one proposal has IoU > 0.5 with
  one of its gold boxes; None when the split has no groundable entity.
- `oracle`: the best scores (x100, `mqspn.metric.score`) any model can reach with these proposals:
  gold spans and types, None for ungroundable entities, the best-IoU proposal for covered ones. An
  uncovered groundable entity cannot be right with any region, so the oracle leaves it out: predicting
  it (with a wrong box or with None) would add a false positive and lower precision without raising
  recall. `recall` is therefore the recall cap, precision is 100 and F1 = 2R / (100 + R) x 100. GMNER
  and EEG agree here because the oracle's types are gold.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
from tqdm import tqdm

from mqspn.boxes import IOU_THRESHOLD, iou_matrix
from mqspn.data.datasets import SPLITS, read_dataset
from mqspn.metric import score
from mqspn.types import Entity, Post

if TYPE_CHECKING:
    from mqspn.proposals import ProposalSource


def split_stats(posts: Sequence[Post]) -> dict[str, Any]:
    """Counts of one split (see the module docstring); `types` is sorted by type name."""
    entities = [entity for post in posts for entity in post.entities]
    groundable = sum(entity.groundable for entity in entities)
    boxes = sum(
        len(entity_boxes)
        for post in posts
        for entity_boxes in {entity.text(post.words): entity.boxes for entity in post.entities}.values()
    )
    return {
        "posts": len(posts),
        "entities": len(entities),
        "groundable": groundable,
        "ungroundable": len(entities) - groundable,
        "boxes": boxes,
        "types": dict(sorted(Counter(entity.type for entity in entities).items())),
    }


def proposal_stats(posts: Sequence[Post], proposals: ProposalSource, desc: str = "proposals") -> dict[str, Any]:
    """Coverage and oracle of `proposals` on `posts` (module docstring); a tqdm bar runs over the posts.

    Only posts with a groundable entity need their proposals, so only those files are read.
    """
    covered = groundable = 0
    oracle: dict[str, list[Entity]] = {}
    for post in tqdm(posts, desc=desc, unit="post", leave=False):
        needs_regions = any(entity.groundable for entity in post.entities)
        regions = proposals.regions(post.image) if needs_regions else []
        candidates = np.array([region.box for region in regions], dtype=np.float64).reshape(-1, 4)
        predicted = []
        for entity in post.entities:
            boxes = []
            if entity.groundable:
                groundable += 1
                overlap = iou_matrix(candidates, np.array(entity.boxes)).max(axis=1, initial=0.0)
                if not (overlap > IOU_THRESHOLD).any():
                    continue  # uncovered: any prediction would be a false positive (module docstring)
                covered += 1
                boxes = [tuple(float(v) for v in candidates[int(overlap.argmax())])]
            predicted.append(Entity(entity.start, entity.end, entity.type, boxes))
        oracle[post.id] = predicted
    result = score(posts, oracle)
    return {
        "coverage": covered / groundable if groundable else None,
        "oracle": {
            "gmner_f1": result["gmner"]["f1"],
            "eeg_f1": result["eeg"]["f1"],
            "recall": result["gmner"]["recall"],
        },
    }


def dataset_stats(
    root: str | Path,
    format: str = "gmner",
    granularity: str = "coarse",
    xml_dir: Optional[str | Path] = None,
    proposals_dir: Optional[str | Path] = None,
    top_k: Optional[int] = None,
) -> dict[str, dict[str, Any]]:
    """`{split: split_stats | proposal_stats}` for every split; proposals need both `proposals_dir` and `top_k`."""
    if (proposals_dir is None) != (top_k is None):
        raise ValueError("proposal statistics need both a proposals folder and top_k (--proposals DIR --top-k K)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    dataset = read_dataset(root, format, granularity, xml_dir)
    proposals = None
    if proposals_dir is not None:
        # Imported here so plain statistics never load the proposal reader.
        from mqspn.proposals import VinvlProposals

        proposals = VinvlProposals(proposals_dir, top_k)
    stats = {}
    for split in SPLITS:
        stats[split] = split_stats(dataset[split])
        if proposals is not None:
            stats[split].update(proposal_stats(dataset[split], proposals, desc=f"{split} proposals"))
    return stats


def format_table(stats: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one column per split, one row per count, type, and proposal figure."""
    splits = list(stats)
    types = sorted({type_ for row in stats.values() for type_ in row["types"]})
    rows: list[tuple[str, list[Any]]] = [
        (key, [stats[s][key] for s in splits]) for key in ("posts", "entities", "groundable", "ungroundable", "boxes")
    ]
    rows += [(f"  {type_}", [stats[s]["types"].get(type_, 0) for s in splits]) for type_ in types]
    if all("coverage" in stats[s] for s in splits):
        rows.append(("coverage (%)", [_percent(stats[s]["coverage"]) for s in splits]))
        for key, label in (("gmner_f1", "oracle GMNER F1"), ("eeg_f1", "oracle EEG F1"), ("recall", "oracle recall")):
            rows.append((label, [f"{stats[s]['oracle'][key]:.2f}" for s in splits]))
    width = max(len(label) for label, _ in rows)
    lines = [" " * width + "".join(f"{s:>10}" for s in splits)]
    lines += [f"{label:<{width}}" + "".join(f"{value!s:>10}" for value in values) for label, values in rows]
    return "\n".join(lines)


def _percent(share: Optional[float]) -> str:
    return "n/a" if share is None else f"{100 * share:.2f}"
