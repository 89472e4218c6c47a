"""`make demo`: synthetic benchmark -> train the demo config -> score test -> table -> drawings.

Run as `mqspn demo` or `python -m mqspn.demo [--out demo_out] [--posts 3000] [--epochs N]`, from any
directory (the demo recipe ships with the package). Everything lands in `--out`:
`synth/` (the benchmark, reused when present), `run/` (the training run), `drawings/` (test posts with
their predicted boxes).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

from mqspn.config import config_path, load_config
from mqspn.metric import score

RECIPE = "demo"


def text_only(predictions: dict) -> dict:
    """The same spans and types with every region None: what the model is worth without the image."""
    return {pid: [dataclasses.replace(e, boxes=[]) for e in ents] for pid, ents in predictions.items()}


def table(rows: dict[str, dict]) -> str:
    """Rows of test scores; an oracle row (from `proposal_stats`) has GMNER/EEG F1 only."""
    width = max(len(name) for name in rows)
    lines = [f"{'system':{width}s}  {'GMNER P':>7s} {'GMNER R':>7s} {'GMNER F1':>8s}  {'MNER F1':>7s}  {'EEG F1':>6s}"]
    for name, r in rows.items():
        if "gmner" in r:
            g = r["gmner"]
            lines.append(f"{name:{width}s}  {g['precision']:7.2f} {g['recall']:7.2f} {g['f1']:8.2f}  "
                         f"{r['mner']['f1']:7.2f}  {r['eeg']['f1']:6.2f}")
        else:
            lines.append(f"{name:{width}s}  {'':7s} {'':7s} {r['gmner_f1']:8.2f}  {100.0:7.2f}  {r['eeg_f1']:6.2f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out in the working directory)")
    parser.add_argument("--posts", type=int, default=3000, help="posts in the synthetic benchmark (default 3000)")
    parser.add_argument("--epochs", type=int, help="override the demo recipe's epochs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mqspn.demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    start = time.time()
    out = Path(args.out)
    data = out / "synth"

    from mqspn.data.datasets import read_split
    from mqspn.draw import draw_entities
    from mqspn.images import load_image
    from mqspn.predictions import read_predictions
    from mqspn.proposals import VinvlProposals
    from mqspn.stats import proposal_stats
    from mqspn.synth.generate import generate
    from mqspn.trainer import Run

    if not (data / "synth.json").is_file():
        print(f"== generating the synthetic benchmark ({args.posts} posts) in {data}", flush=True)
        generate(data, posts=args.posts, seed=0, workers=os.cpu_count() or 1)
    overrides = [f"data.root={json.dumps(str(data))}"] + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    cfg = load_config(RECIPE, overrides)
    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"== training {config_path(RECIPE).name} into {run_dir}", flush=True)
    result = Run.start(cfg, run_dir).run()

    test = read_split(data, "test")
    preds = read_predictions(run_dir / "test_predictions.jsonl", gold=test)
    oracle = proposal_stats(test, VinvlProposals(data / "proposals", cfg.data.top_k))["oracle"]
    rows = {
        f"MQSPN (this run, best dev epoch {result['best_epoch']})": result,
        "same spans, every region None": score(test, text_only(preds)),
        f"oracle ceiling (gold, top-{cfg.data.top_k} proposals)": oracle,
    }
    print("\n== synthetic test split\n" + table(rows))
    print(f"GMNER F1 / oracle ceiling = {100 * result['gmner']['f1'] / oracle['gmner_f1']:.1f}%")

    drawings = out / "drawings"
    shutil.rmtree(drawings, ignore_errors=True)
    by_id = {p.id: p for p in test}
    shown = [pid for pid, ents in preds.items() if any(e.box for e in ents)][:4]
    for pid in shown:
        post = dataclasses.replace(by_id[pid], entities=preds[pid])
        draw_entities(load_image(data / "images" / post.image), post, drawings / f"{pid}.png")
    print(f"drew {len(shown)} test predictions to {drawings}/")
    print(f"model: {run_dir / 'best'}   wall time: {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
