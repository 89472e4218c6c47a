"""Text-only MQSPN on the real Twitter-GMNER v2.0 annotations, on CPU; prints the results table.

    .venv/bin/python bench/real_text.py [--data ../shared/data/twitter-gmner-v2.0] [--out runs/real-text]
        [--set key=value ...]

Trains the shipped `twitter-gmner-text` recipe (dev-selected, test scored once at the best dev epoch) and
prints a Markdown table beside the paper's text-only row (BERT-None) and MQSPN's full multimodal row.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAPER = {"BERT-None (paper, text only)": {"gmner": 42.96, "mner": 77.30, "eeg": 47.63},
         "MQSPN (paper, BERT + CLIP + VinVL)": {"gmner": 58.76, "mner": 80.43, "eeg": 62.40}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "twitter-gmner-v2.0"))
    parser.add_argument("--out", default=str(REPO / "runs" / "real-text"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    cmd = [sys.executable, "-m", "mqspn", "train", "--config", "twitter-gmner-text", "--data", args.data,
           "--out", args.out] + [x for o in args.overrides for x in ("--set", o)]
    start = time.time()
    subprocess.run(cmd, check=True)
    minutes = (time.time() - start) / 60
    result = json.loads((Path(args.out) / "test_metrics.json").read_text())
    seed = json.loads((Path(args.out) / "meta.json").read_text())["seed"]
    lines = [f"Command: `{' '.join(['python', 'bench/real_text.py'] + sys.argv[1:])}` "
             f"(seed {seed}, {platform.processor() or platform.machine()}, {minutes:.1f} min wall, best dev epoch "
             f"{result['best_epoch']})", "",
             "| system | GMNER P / R / F1 | MNER P / R / F1 | EEG P / R / F1 |", "|---|---|---|---|"]
    fmt = lambda r: f"{r['precision']:.2f} / {r['recall']:.2f} / {r['f1']:.2f}"
    lines.append(f"| mqspn text-only, MiniLM (this run) | {fmt(result['gmner'])} | {fmt(result['mner'])} | {fmt(result['eeg'])} |")
    for name, row in PAPER.items():
        lines.append(f"| {name} | {row['gmner']:.2f} F1 | {row['mner']:.2f} F1 | {row['eeg']:.2f} F1 |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
