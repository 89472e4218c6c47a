"""`mqspn train`: train a model from a YAML config (or continue a run with --resume)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train MQSPN from a config file",
        description="Train MQSPN. The run directory gets config.yaml, meta.json, metrics.jsonl (one line per "
                    "epoch), best/ and last/ model directories, test_metrics.json and test_predictions.jsonl.",
    )
    p.add_argument("--config", help="YAML config file, or the name of a recipe shipped with the package "
                                    "(demo, twitter-gmner, twitter-gmner-text, twitter-fmnerg, twitter-fmnerg-coarse)")
    p.add_argument("--data", help="dataset root; replaces the config's data.root")
    p.add_argument("--out", help="run directory (default: runs/<config name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--resume", metavar="RUN", help="continue the interrupted run in RUN exactly where it stopped")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 41,42,43: one run each under OUT/seed-S and "
                                   "OUT/summary.json with mean and std of the test scores")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train data-parallel in N local processes, each on 1/N of every batch (CPU: the cores are "
                        "shared out; GPU: one device each). Under torchrun leave it out: torchrun starts them")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mqspn import distributed
    from mqspn.config import load_config
    from mqspn.trainer import launch_train

    if args.resume:
        if args.config or args.overrides or args.data or args.seeds:
            raise ValueError("--resume continues a run with its saved config.yaml; drop --config/--set/--data/--seeds")
        result = launch_train(args.nproc, None, args.resume, resume=True)
    else:
        if not args.config:
            raise ValueError("give --config FILE or a recipe name (e.g. --config demo), or --resume RUN")
        overrides = list(args.overrides) + ([f"data.root={json.dumps(str(args.data))}"] if args.data else [])
        cfg = load_config(args.config, overrides)
        out = Path(args.out or Path("runs") / Path(args.config).stem)
        if args.seeds:
            try:
                seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
            except ValueError:
                raise ValueError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 41,42,43") from None
            summary = launch_train(args.nproc, cfg, out, seeds=seeds)
            if distributed.is_main():
                print(json.dumps(summary, indent=2))
            return 0
        result = launch_train(args.nproc, cfg, out)
    if not distributed.is_main():
        return 0
    print(json.dumps({k: result[k] for k in ("best_epoch", "gmner", "mner", "eeg")}, indent=2))
    return 0
