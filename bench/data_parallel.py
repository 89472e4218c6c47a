"""Training steps in one process against the same steps data-parallel in several, side by side.

    .venv/bin/python bench/data_parallel.py [--data demo_out/synth] [--steps 40] [--nproc 2] [--rounds 3]

Each variant starts fresh processes with `mqspn.distributed.launch`: one process with all the
machine's threads, or `--nproc` processes sharing the cores out, each taking its share of every batch
of the demo config (`configs/demo.yaml`, the same global batch). A variant trains `--steps` batches
twice; the first pass cuts the crops and fills the frozen encoder's cache, the second is timed. The
variants alternate so that both see the same machine load; prints the median seconds and their ratio.
Needs the synthetic benchmark (`mqspn synth --out demo_out/synth`).
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from mqspn import distributed
from mqspn.engine import train_one_epoch
from mqspn.trainer import Run
from side_by_side import DEFAULT_DATA, demo_config, report


def timed_steps(cfg, out: Path, result: Path) -> None:
    """Worker: train the run's batches twice; the first process writes the seconds of the second pass."""
    run = Run.start(cfg, out)
    run.model.set_encoders_frozen(text=True, vision=True)
    replica = run.replica()
    for epoch in range(2):
        if hasattr(run.train_loader.sampler, "set_epoch"):
            run.train_loader.sampler.set_epoch(epoch)
        start = time.perf_counter()
        train_one_epoch(replica, run.criterion, run.train_loader, run.optimizer, run.scheduler,
                        cfg.train.clip_norm, run.device, epoch, progress=False)
        seconds = time.perf_counter() - start
    if distributed.is_main():
        result.write_text(str(seconds))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cfg = demo_config(args.data)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_train_posts=args.steps * cfg.train.batch_size))
    names = {1: "1 process", args.nproc: f"{args.nproc} processes"}
    times: dict[str, list[float]] = {name: [] for name in names.values()}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for nproc, name in names.items():
                result = Path(tmp) / f"seconds-{r}-{nproc}"
                distributed.launch(timed_steps, nproc, cfg, Path(tmp) / f"run-{r}-{nproc}", result)
                times[name].append(float(result.read_text()))
    report(f"{args.steps} training steps of configs/demo.yaml (global batch {cfg.train.batch_size}), "
           f"median of {args.rounds} rounds; ratio above 1: the processes are faster", times, names[1], names[args.nproc])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
