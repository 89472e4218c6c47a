"""Data-parallel training across processes (torch.distributed): one model replica per process, each
step's gradients averaged, so the replicas stay identical.

Two ways in:
  * `torchrun --nproc-per-node N -m mqspn train ...` sets RANK/WORLD_SIZE; `init_from_env` joins the group.
  * `launch(fn, nproc, ...)` starts N local processes itself (what `mqspn train --nproc` uses). Meant for
    GPUs: on the demo's 2-core CPU, two processes of one thread are slower than one process of two
    threads (`bench/data_parallel.py`), so `make demo` trains in one process.

Everything here is a no-op in a single process, so the trainer has one code path.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def gather(obj: Any) -> list[Any]:
    """-> the objects of all processes, by rank (just [obj] in one process)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def mean(values: dict[str, float]) -> dict[str, float]:
    """Average a dict of floats (same keys everywhere) over the processes."""
    if not active():
        return values
    keys = list(values)  # the same insertion order in every process
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device())  # NCCL reduces GPU tensors only
    dist.all_reduce(t)
    return {k: float(v) / world_size() for k, v in zip(keys, t.tolist())}


def device() -> torch.device:
    """This process's device: its own GPU (LOCAL_RANK) when CUDA is present, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank() % torch.cuda.device_count())))
    return torch.device("cpu")


def init_from_env() -> bool:
    """Join the process group that torchrun describes in the environment; False when not under torchrun."""
    if active() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return active()
    if torch.cuda.is_available():
        torch.cuda.set_device(device())
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def _worker(index: int, fn: Callable, args: tuple, nproc: int, rendezvous: str, threads: int) -> None:
    torch.set_num_threads(threads)
    os.environ["LOCAL_RANK"] = str(index)
    if torch.cuda.is_available():
        torch.cuda.set_device(index)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, init_method=f"file://{rendezvous}", rank=index, world_size=nproc)
    try:
        fn(*args)
    except BaseException as err:
        # Hand the exception itself to the parent, so a worker's input error reads as one clear line.
        try:
            Path(f"{rendezvous}.error{index}").write_bytes(pickle.dumps(err))
        except (pickle.PicklingError, TypeError, AttributeError):
            pass
        raise
    finally:
        dist.destroy_process_group()


def launch(fn: Callable, nproc: int, *args) -> None:
    """Run fn(*args) in `nproc` fresh local processes joined in one group (fn must be importable).

    CPU: the cores are shared out (torch threads per process = cores // nproc). GPU: one device each.
    The first worker exception is raised here again; the other workers are stopped.
    """
    if nproc < 1:
        raise ValueError(f"nproc={nproc}: expected 1 or more processes")
    if active() or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("already one of a group of processes (torchrun): drop --nproc, torchrun starts them")
    if torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise ValueError(f"nproc={nproc} but only {torch.cuda.device_count()} GPU(s) are visible")
    threads = max(1, (os.cpu_count() or 1) // nproc)
    with tempfile.TemporaryDirectory(prefix="mqspn-ddp-") as tmp:
        rendezvous = str(Path(tmp) / "rendezvous")
        try:
            torch.multiprocessing.start_processes(_worker, args=(fn, args, nproc, rendezvous, threads),
                                                  nprocs=nproc, join=True, start_method="spawn")
        except (torch.multiprocessing.ProcessRaisedException, torch.multiprocessing.ProcessExitedException):
            # The first error written is the cause; the others are usually peers losing their connection.
            errors = sorted(Path(tmp).glob("rendezvous.error*"), key=lambda p: p.stat().st_mtime_ns)
            if errors:
                raise pickle.loads(errors[0].read_bytes()) from None
            raise
