"""`mqspn evaluate`: score a predictions file against a gold split (spec section 4).

    mqspn evaluate --data DIR --split test --predictions pred.jsonl [--format gmner|fmnerg]
                   [--granularity coarse|fine] [--xml DIR] [--json]

Prints a table (GMNER / MNER / EEG, then one row per type) or, with `--json`, the dictionary of
`mqspn.metric.score` as one JSON object. With `--format fmnerg --granularity coarse` the predictions may
carry coarse types or fine types; fine ones are scored as their coarse parent, the fine -> coarse map
being read off the dataset's text files.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from mqspn.data.conll import read_conll
from mqspn.data.datasets import (FORMATS, GMNER_TYPES, GRANULARITIES, SPLITS, dataset_types, read_split, split_file,
                                 type_problem)
from mqspn.metric import TASKS, fine_to_coarse, score
from mqspn.predictions import read_predictions
from mqspn.types import Entity, Post


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a predictions file (GMNER / MNER / EEG micro P, R, F1)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--data", required=True, help="dataset folder (Twitter-GMNER v2.0 or Twitter-FMNERG)")
    parser.add_argument("--split", required=True, choices=SPLITS, help="gold split to score against")
    parser.add_argument("--predictions", required=True, help="predictions file (JSON Lines, see the README)")
    parser.add_argument("--format", default="gmner", choices=FORMATS, help="dataset format (default: gmner)")
    parser.add_argument(
        "--granularity", default="coarse", choices=GRANULARITIES, help="FMNERG type level (default: coarse)"
    )
    parser.add_argument("--xml", default=None, help="xml box folder (FMNERG: the Twitter-GMNER v2.0 xml folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    gold = read_split(args.data, args.split, format=args.format, granularity=args.granularity, xml_dir=args.xml)
    types, type_map = _vocabulary(args.data, args.format, args.granularity)
    for post in gold:  # a gold type outside the vocabulary would be scored as a row of its own
        problem = type_problem(post, types, f"the {args.format} types")
        if problem:
            raise ValueError(problem)
    predictions = read_predictions(args.predictions, gold, types)
    missing = sum(post.id not in predictions for post in gold)
    if missing:
        print(
            f"note: {missing} of {len(gold)} {args.split} posts have no line in {args.predictions}; "
            f"they count as posts without predictions",
            file=sys.stderr,
        )
    result = score(gold, predictions, type_map)
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def _vocabulary(root: str, format: str, granularity: str) -> tuple[list[str], Optional[dict[str, str]]]:
    """The types a prediction may carry, and the type map to score with (None: types are used as they are).

    FMNERG types are those of every split file present; at coarse level fine types are accepted too and
    mapped to their coarse parent (coarse types map to themselves).
    """
    if format == "gmner":
        return list(GMNER_TYPES), None
    coarse, fine = _text_posts(root, 0), _text_posts(root, 1)
    if granularity == "fine":
        return dataset_types(fine), None
    type_map = fine_to_coarse(fine, coarse)
    type_map.update({t: t for t in dataset_types(coarse)})
    return sorted(type_map), type_map


def _text_posts(root: str, column: int) -> list[Post]:
    """Posts of every present FMNERG split with the entities of tag column 0 (coarse) or 1 (fine), no boxes.

    Only the text files are read: the types do not depend on the boxes, and parsing every xml is slow.
    """
    posts = []
    for split in SPLITS:
        path = split_file(root, split, "fmnerg")
        if path.is_file():
            posts += [Post(c.id, c.words, [Entity(*span) for span in c.spans(column)]) for c in read_conll(path, 2)]
    return posts


def format_table(result: dict) -> str:
    """Overall P / R / F1 and counts per task, then P / R / F1 of every task for each type."""
    lines = [f"{'':8}{'P':>8}{'R':>8}{'F1':>8}{'tp':>8}{'pred':>8}{'gold':>8}"]
    for task in TASKS:
        c = result[task]
        lines.append(
            f"{task.upper():8}{c['precision']:8.2f}{c['recall']:8.2f}{c['f1']:8.2f}"
            f"{c['tp']:8d}{c['n_pred']:8d}{c['n_gold']:8d}"
        )
    width = max([len("per type")] + [len(t) + 2 for t in result["per_type"]])
    lines += ["", f"{'per type':{width}}" + "".join(f"{task.upper():^24}" for task in TASKS) + f"{'gold':>8}"]
    lines.append(f"{'':{width}}" + f"{'P':>8}{'R':>8}{'F1':>8}" * len(TASKS))
    for type_, row in result["per_type"].items():
        cells = "".join(f"{row[t]['precision']:8.2f}{row[t]['recall']:8.2f}{row[t]['f1']:8.2f}" for t in TASKS)
        lines.append(f"{'  ' + type_:{width}}{cells}{row['gmner']['n_gold']:8d}")
    return "\n".join(lines)
