"""Shared by the side-by-side timings: the demo config on a synthetic benchmark, and the report (the
median of each variant and the ratio of two of them)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from mqspn.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = str(REPO / "demo_out" / "synth")


def demo_config(data: str) -> Config:
    """The demo recipe on the synthetic benchmark at `data`, progress bars off; exits when it is missing."""
    if not (Path(data) / "synth.json").is_file():
        raise SystemExit(f"{data}: no synthetic benchmark there; run `mqspn synth --out {data}` first")
    return load_config("demo", [f"data.root={json.dumps(data)}", "train.progress=false"])


def report(title: str, times: dict[str, list[float]], slower: str, faster: str) -> None:
    """Print `title`, each variant's median seconds and the ratio median(slower) / median(faster)."""
    medians = {name: statistics.median(values) for name, values in times.items()}
    width = max(len(name) for name in medians)
    print(title)
    for name, value in medians.items():
        print(f"{name:<{width}s} : {value:7.2f} s")
    print(f"{'ratio':<{width}s} : {medians[slower] / medians[faster]:7.2f}x  ({slower} / {faster})")
