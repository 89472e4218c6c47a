"""The `mqspn` command line: one sub-module per subcommand, each with `register(subparsers)`."""
from __future__ import annotations

import argparse
import sys
import warnings

from mqspn.cli import data, demo, evaluate, predict, serve, synth, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqspn",
        description="Grounded multimodal NER (MQSPN): data tools, training, prediction, evaluation, serving, "
                    "the demo.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (data, synth, train, predict, evaluate, serve, demo):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        # A warning is about the user's input (a truncated post, an unverified model): one line, no source.
        print(f"mqspn {args.command}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, ImportError, ArithmeticError) as err:
        # Input problems and a diverged run (NonFiniteLossError) are one clear line, not a traceback.
        print(f"mqspn {args.command}: error: {err}", file=sys.stderr)
        return 2

