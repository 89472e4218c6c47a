"""`mqspn demo`: the end-to-end demo (`mqspn.demo`), runnable from any directory."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from mqspn import demo

    p = sub.add_parser("demo", help="synthetic benchmark -> train the demo recipe -> score -> drawings (CPU, ~10 min)",
                       description=demo.__doc__)
    demo.add_arguments(p)
    p.set_defaults(func=demo.run)
