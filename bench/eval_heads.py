"""A dev prediction pass with the heads on every QFNet layer against the heads on the last layer only.

    .venv/bin/python bench/eval_heads.py [--data demo_out/synth] [--rounds 3]

Decoding reads the last layer alone, so in eval `MQSPN.forward` runs the heads on that layer only
(`all_layers=True` runs them on every layer, as training does for deep supervision). This times the
demo config's (`configs/demo.yaml`, untrained) forward and decoding over the dev split both ways, in
alternation so that both see the same machine load, after a first pass that cuts the crops and fills the
frozen encoder's cache, checks that both decode the same entities, and prints the median seconds and
their ratio. Needs the synthetic benchmark (`mqspn synth --out demo_out/synth`).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from mqspn.model.decode import decode
from mqspn.trainer import Run
from side_by_side import DEFAULT_DATA, demo_config, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cfg = demo_config(args.data)
    with tempfile.TemporaryDirectory() as out:
        run = Run.start(cfg, out)
        model = run.model
        model.set_encoders_frozen(True)
        model.eval()

        @torch.no_grad()
        def dev_pass(all_layers: bool) -> tuple[float, list]:
            start = time.perf_counter()
            entities = []
            for batch in run.dev_loader:
                outputs = model(batch, all_layers=all_layers)
                entities += decode(outputs, [len(p.words) for p in batch["posts"]], batch["regions"], model.config)
            return time.perf_counter() - start, entities

        dev_pass(False)  # cuts the crops and fills the cache
        times: dict[str, list[float]] = {"every layer": [], "last layer": []}
        for _ in range(args.rounds):
            seconds, every = dev_pass(True)
            times["every layer"].append(seconds)
            seconds, last = dev_pass(False)
            times["last layer"].append(seconds)
            if every != last:
                raise SystemExit("the two passes decoded different entities")
    report(f"dev pass ({len(run.dev_posts)} posts) of configs/demo.yaml, heads on every layer or the last only, "
           f"median of {args.rounds} rounds "
           "(same entities)", times, "every layer", "last layer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
