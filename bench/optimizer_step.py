"""AdamW step time, per-tensor loop against the fused kernel, side by side on the same parameters.

    .venv/bin/python bench/optimizer_step.py [--config configs/twitter-gmner-text.yaml] [--repeats 20]

Builds the config's model (the text-only recipe: MiniLM fine-tuned, 23M parameters), gives every
trainable parameter a random gradient, and times `optimizer.step()` for both optimizers in alternation,
so that both see the same machine load. Prints the median of each and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from mqspn.config import load_config
from mqspn.model.mqspn import MQSPN

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "twitter-gmner-text.yaml"))
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    model = MQSPN(load_config(args.config).model)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    optimizers = {"per-tensor": torch.optim.AdamW(params, lr=1e-4, foreach=False),
                  "fused": torch.optim.AdamW(params, lr=1e-4, fused=True)}
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(args.repeats + 2):  # the first two rounds warm up (state allocation)
        for name, optimizer in optimizers.items():
            start = time.perf_counter()
            optimizer.step()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t[2:]) for name, t in times.items()}
    print(f"{sum(p.numel() for p in params) / 1e6:.1f}M parameters, {torch.get_num_threads()} torch threads, "
          f"{args.repeats} steps each")
    for name, value in median.items():
        print(f"{name:>10s}: {value * 1000:7.1f} ms per step (median)")
    print(f"fused is {median['per-tensor'] / median['fused']:.1f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
