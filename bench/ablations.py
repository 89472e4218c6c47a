"""The paper's Table 3 ablations on the synthetic benchmark: one training run per switch.

    .venv/bin/python bench/ablations.py [--data demo_out/synth] [--out runs/ablations] [--set key=value ...]

Every run uses the demo recipe (`mqspn/configs/demo.yaml`) with the same seed plus one switch, and is scored on the test split
at its best dev epoch. Prints a Markdown table: test GMNER / MNER / EEG F1 and the GMNER change.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mqspn.config import load_config
from mqspn.trainer import Run

REPO = Path(__file__).resolve().parent.parent
SWITCHES = {
    "full model": [],
    "w/o type prompt queries": ["model.use_type_queries=false"],
    "w/o learnable queries (hand-written)": ["model.learnable_queries=false"],
    "w/o query-text cross-attention": ["model.use_cross_attention=false"],
    "w/o query-region prefix": ["model.use_region_prefix=false"],
    "w/o similarity aggregator": ["model.use_aggregator=false"],
    "w/o bipartite matching (fixed order)": ["loss.bipartite_matching=false"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO / "demo_out" / "synth"))
    parser.add_argument("--out", default=str(REPO / "runs" / "ablations"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--only", help="comma-separated row numbers to run (0 = full model)")
    args = parser.parse_args()
    rows = list(SWITCHES.items())
    if args.only:
        rows = [rows[int(i)] for i in args.only.split(",")]
    results = {}
    for name, switch in rows:
        out = Path(args.out) / (name.split(" (")[0].replace(" ", "-").replace("/", ""))
        summary = out / "test_metrics.json"
        if not summary.exists():
            cfg = load_config("demo",
                              [f"data.root={json.dumps(args.data)}", "train.progress=false"] + args.overrides + switch)
            start = time.time()
            Run.start(cfg, out).run()
            (out / "wall_seconds").write_text(f"{time.time() - start:.0f}\n")
        results[name] = (json.loads(summary.read_text()), " ".join(f"--set {s}" for s in switch) or "(none)")
    base = results.get("full model", (None,))[0]
    print("| run | switch | GMNER F1 | MNER F1 | EEG F1 | GMNER change |\n|---|---|---|---|---|---|")
    for name, (r, switch) in results.items():
        delta = f"{r['gmner']['f1'] - base['gmner']['f1']:+.2f}" if base else "n/a"
        print(f"| {name} | `{switch}` | {r['gmner']['f1']:.2f} | {r['mner']['f1']:.2f} | {r['eeg']['f1']:.2f} | {delta} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
