"""The `mqspn` command line: one sub-module per subcommand, each with `register(subparsers)`."""
from __future__ import annotations

import argparse
import sys

from mqspn.cli import data, evaluate, predict, serve, synth, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqspn",
        description="Grounded multimodal NER (MQSPN): data tools, training, prediction, evaluation, serving.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (data, synth, train, predict, evaluate, serve):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, ImportError, ArithmeticError) as err:
        # Input problems and a diverged run (NonFiniteLossError) are one clear line, not a traceback.
        print(f"mqspn {args.command}: error: {err}", file=sys.stderr)
        return 2

