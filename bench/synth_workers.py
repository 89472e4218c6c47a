"""`mqspn synth` with one process against several, side by side.

    .venv/bin/python bench/synth_workers.py [--posts 600] [--workers 2] [--rounds 3]

Generates the same benchmark (seed 0) into temporary folders with `workers=1` and with `--workers`, in
alternation so that both see the same machine load, checks that the files are the same, and prints the
median seconds of each and their ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mqspn.synth.generate import generate
from side_by_side import report


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[int, list[float]] = {1: [], args.workers: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for workers in times:
                out = Path(tmp) / f"r{r}-w{workers}"
                start = time.perf_counter()
                generate(out, posts=args.posts, seed=0, progress=False, workers=workers)
                times[workers].append(time.perf_counter() - start)
        if files(Path(tmp) / "r0-w1") != files(Path(tmp) / f"r0-w{args.workers}"):
            raise SystemExit("the outputs differ between 1 and several workers")
    report(f"synth of {args.posts} posts, median of {args.rounds} rounds (same files)",
           {"1 process": times[1], f"{args.workers} processes": times[args.workers]},
           "1 process", f"{args.workers} processes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
