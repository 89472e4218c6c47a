"""`mqspn synth`: write the synthetic grounded benchmark (Twitter-GMNER layout, no download needed).

    mqspn synth --out DIR [--seed S] [--posts N] [--workers W] [--force]

Writes `DIR/txt/{train,dev,test}.txt`, `DIR/xml/`, `DIR/images/` and `DIR/proposals/` (see
`mqspn.synth.generate`) and prints per-split counts, the ungroundable share and proposal coverage.
"""
from __future__ import annotations

import argparse
import os

from mqspn.synth.generate import COVERAGE_TOP_K, generate


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write the synthetic grounded benchmark (Twitter-GMNER layout)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (new, empty, or a synth output with --force)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; equal seeds give byte-identical files (default 0)"
    )
    parser.add_argument("--posts", type=int, default=3000, help="number of posts, split 70/15/15 (default 3000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes drawing the images; the files do not depend on it (default: all CPUs)")
    parser.add_argument("--force", action="store_true", help="overwrite a previous synth output in DIR")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = generate(args.out, posts=args.posts, seed=args.seed, force=args.force, workers=args.workers)
    print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    """A small table: one row per split, then the overall ungroundable share and proposal coverage."""
    rows = [f"{'split':<6} {'posts':>6} {'entities':>9} {'groundable':>11} {'boxes':>6} {'ungroundable':>13}"]
    for name, c in summary["splits"].items():
        rows.append(
            f"{name:<6} {c['posts']:>6} {c['entities']:>9} {c['groundable']:>11} {c['boxes']:>6} "
            f"{100 * c['ungroundable_share']:>12.1f}%"
        )
    rows.append(
        f"ungroundable {100 * summary['ungroundable_share']:.1f}%, proposal coverage at top-{COVERAGE_TOP_K} "
        f"{100 * summary['proposal_coverage']:.1f}% "
        f"(seed {summary['seed']}, {summary['world']['entities']} world entities)"
    )
    return "\n".join(rows)
