"""Training steps with the frozen text encoder's cache kept across epochs against a cache started afresh.

    .venv/bin/python bench/frozen_cache.py [--data demo_out/synth] [--steps 40] [--rounds 3]

The trainer calls `set_encoders_frozen` at the start of every epoch. It used to start the caches afresh
each time, so every epoch encoded every post with MiniLM again; now a cache lives as long as its encoder
stays frozen. This times the same `--steps` training steps of the demo config (`configs/demo.yaml`) both
ways, in alternation so that both see the same machine load: "kept" calls `set_encoders_frozen(True)` on
the frozen model (what an epoch start does now), "fresh" releases and freezes again (an empty cache, what
every epoch start did before). Crops and examples are built before the clock starts. Prints the median
seconds of each and their ratio. Needs the synthetic benchmark (`mqspn synth --out demo_out/synth`).
"""
from __future__ import annotations

import argparse
import tempfile
import time

from mqspn.engine import loss_weights, weighted_total
from mqspn.trainer import Run
from side_by_side import DEFAULT_DATA, demo_config, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cfg = demo_config(args.data)
    with tempfile.TemporaryDirectory() as out:
        run = Run.start(cfg, out)
        model, weights = run.model, loss_weights(cfg.model)
        loader = iter(run.train_loader)
        batches = [next(loader) for _ in range(args.steps)]  # cuts the crops once, outside the clock

        def steps() -> float:
            model.train()
            start = time.perf_counter()
            for batch in batches:
                total = weighted_total(run.criterion(model(batch), batch["targets"]), weights)
                run.optimizer.zero_grad(set_to_none=True)
                total.backward()
                run.optimizer.step()
            return time.perf_counter() - start

        model.set_encoders_frozen(True)
        steps()  # warm-up: fills the cache
        times: dict[str, list[float]] = {"kept": [], "fresh": []}
        for _ in range(args.rounds):
            model.set_encoders_frozen(True)
            times["kept"].append(steps())
            model.set_encoders_frozen(False)
            model.set_encoders_frozen(True)
            times["fresh"].append(steps())
    report(f"{args.steps} training steps of configs/demo.yaml, median of {args.rounds} rounds",
           {"cache kept across epochs": times["kept"], "cache started afresh": times["fresh"]},
           "cache started afresh", "cache kept across epochs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
