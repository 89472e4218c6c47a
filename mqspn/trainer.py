"""A training run: data, model, optimiser and schedule from a `Config`, epochs, dev selection, test once.

Run directory:
  config.yaml          the resolved configuration
  meta.json            git commit, library versions, dataset file hashes, seed
  metrics.jsonl        one line per epoch: mean losses, dev P/R/F1 (GMNER, MNER, EEG), best so far
  last/                model directory + training_state.json/.safetensors (optimizer, scheduler, RNG, epoch): --resume
  best/                model directory of the best dev GMNER F1 epoch
  test_metrics.json    test scores of best/ (computed once, after the last epoch)
  test_predictions.jsonl

Beside it, `../region-cache/`: a frozen vision tower's region encodings, shared by the runs of the same
folder (`train.region_cache: auto`; `mqspn.region_cache`).

Under several processes (`mqspn.distributed`) every process trains a replica on its share of each
batch and scores its share of dev/test; the first process alone writes the run directory.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import random
import subprocess
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from mqspn import checkpoint, distributed
from mqspn.batching import PostDataset, collate, to_device
from mqspn.build import (build_criterion, build_decoder, build_examples, build_model, build_optimizer,
                         build_region_cache, build_scheduler)
from mqspn.config import Config, load_config, resolve
from mqspn.data.datasets import dataset_types, read_split, split_file
from mqspn.engine import predict_batches, train_one_epoch
from mqspn.metric import score
from mqspn.predictions import write_predictions
from mqspn.transforms import CropAugment


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every generator a step draws from; on a GPU dropout draws from the CUDA generators."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_posts(cfg: Config, split: str):
    return read_split(cfg.data.root, split, cfg.data.format, cfg.data.granularity, resolve(cfg.data.root, cfg.data.xml_dir))


def loader(posts, builder, batch_size: int, shuffle: bool, generator: Optional[torch.Generator] = None,
           sampler=None, transform=None, workers: int = 0):
    """Batches of `posts`, collated and transformed in this process or in `workers` worker processes; in
    page-locked memory when the device is a GPU (faster copies to it).

    Workers start anew each epoch (not persistent): they see the examples built before epoch 1 and the
    transform's per-epoch switch (`CropAugment.active`). Torch seeds each one's generators from a number
    that every epoch draws from `generator` (or the global generator), workers or not, so a run repeats
    and the shuffle is the same for any number of workers; only their random draws (crop augmentation)
    differ from the training process's."""
    return torch.utils.data.DataLoader(PostDataset(posts, builder), batch_size=batch_size, shuffle=shuffle,
                                       generator=generator, sampler=sampler, num_workers=workers,
                                       pin_memory=distributed.device().type == "cuda",
                                       collate_fn=functools.partial(collate, transform=transform))


def train_loader(posts, builder, cfg: Config, generator: torch.Generator, transform=None):
    """Shuffled training batches of batch_size / grad_accumulation posts (the micro-batches of a step),
    collated in `train.num_workers` workers; under N processes each takes 1 / N of every one (a sampler
    seeded by seed and epoch: call `sampler.set_epoch`), so the global batch stays the same."""
    world = distributed.world_size()
    micro = cfg.train.batch_size // cfg.train.grad_accumulation  # train.grad_accumulation micro-batches per step
    workers = cfg.train.num_workers
    if world == 1:
        return loader(posts, builder, micro, True, generator, transform=transform, workers=workers)
    if micro % world:
        raise ValueError(f"train.batch_size={cfg.train.batch_size} does not split over {world} processes"
                         f" x {cfg.train.grad_accumulation} micro-batches; use a multiple of {world * cfg.train.grad_accumulation}")
    sampler = torch.utils.data.DistributedSampler(posts, world, distributed.rank(), shuffle=True, seed=cfg.train.seed)
    return loader(posts, builder, micro // world, False, sampler=sampler, transform=transform, workers=workers)


def shard(posts: list) -> list:
    """This process's share of an evaluation split (every post once over all processes)."""
    return posts[distributed.rank()::distributed.world_size()]


def gathered_predictions(model, shard_loader, cfg: Config, device, desc: str) -> dict:
    """Predict this process's shard (a loader over `shard(posts)`); -> the predictions of all posts."""
    decoder = build_decoder(model.config, cfg.decode, cfg.loss)
    local = predict_batches(model, shard_loader, device, decoder, cfg.train.progress and distributed.is_main(), desc)
    merged: dict = {}
    for part in distributed.gather(local):
        merged.update(part)
    return merged


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def file_hashes(cfg: Config) -> dict[str, str]:
    hashes = {}
    for split in ("train", "dev", "test"):
        path = split_file(cfg.data.root, split, cfg.data.format)
        if path.is_file():
            hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def prepare_config(cfg: Config) -> Config:
    """Fill the types from the training split when the config leaves them empty."""
    if cfg.model.types:
        return cfg
    types = dataset_types(read_posts(cfg, "train"))
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, types=types))


class Run:
    """Train `cfg` into `out`; `Run.resume(out)` continues an interrupted run exactly."""

    def __init__(self, cfg: Config, out: str | Path, resume_state: Optional[dict] = None) -> None:
        self.cfg, self.out = cfg, Path(out)
        self.device = distributed.device()
        self.world = distributed.world_size()
        seed_everything(cfg.train.seed)
        self.model = build_model(cfg.model).to(self.device)
        if self.world > 1:
            # The replicas start equal (same seed); dropout and crop augmentation then differ per process.
            seed_everything(cfg.train.seed + distributed.rank())
        self.augment = CropAugment(cfg.train.crop_augment)
        self.train_posts = read_posts(cfg, "train")
        if cfg.train.max_train_posts > 0:
            self.train_posts = self.train_posts[: cfg.train.max_train_posts]
        self.dev_posts, self.test_posts = read_posts(cfg, "dev"), read_posts(cfg, "test")
        self.region_cache = self._open_region_cache()
        self.builder = build_examples(self.model, cfg.data, region_cache=self.region_cache)
        self.generator = torch.Generator().manual_seed(cfg.train.seed)
        self.train_loader = train_loader(self.train_posts, self.builder, cfg, self.generator, self.augment)
        self.dev_loader = loader(shard(self.dev_posts), self.builder, cfg.train.eval_batch_size, False)
        self.test_loader = loader(shard(self.test_posts), self.builder, cfg.train.eval_batch_size, False)
        self._build_examples()
        self._replica, self._replica_params = None, None
        self.criterion = build_criterion(cfg.model, cfg.loss).to(self.device)
        self.optimizer = build_optimizer(self.model, cfg.train)
        steps_per_epoch = math.ceil(len(self.train_loader) / cfg.train.grad_accumulation)
        self.scheduler = build_scheduler(self.optimizer, cfg.train.epochs * steps_per_epoch, cfg.train.warmup)
        self.epoch, self.best = 0, {"epoch": None, "gmner_f1": -1.0}
        if resume_state is not None:
            self._restore(resume_state)

    def _open_region_cache(self):
        """The run's region cache (`mqspn.region_cache`), filled with the images of the three splits, or
        None where the run holds crops instead."""
        images = [post.image for post in (*self.train_posts, *self.dev_posts, *self.test_posts)]
        progress = self.cfg.train.progress and distributed.is_main()
        cache = build_region_cache(self.model, self.cfg, self.out, images, progress) if distributed.is_main() else None
        distributed.barrier()  # the first process has filled it: the others find every image there
        return cache or build_region_cache(self.model, self.cfg, self.out, images)

    def _build_examples(self) -> None:
        """Every example of the three splits, before epoch 1: a bad image, proposal file, entity type or
        over-long post in any split fails now, not after the last epoch. Examples are memoised, so this
        moves the work, it does not add any."""
        splits = {"train": self.train_loader, "dev": self.dev_loader, "test": self.test_loader}
        progress = self.cfg.train.progress and distributed.is_main()
        for split, split_loader in splits.items():
            dataset = split_loader.dataset
            for i in tqdm(range(len(dataset)), desc=f"{split} examples", unit="post", leave=False, disable=not progress):
                try:
                    dataset[i]
                except (ValueError, FileNotFoundError) as err:
                    raise type(err)(f"{split} split: {err} (`mqspn data check` lists every problem of a dataset "
                                    "at once)") from None

    @classmethod
    def start(cls, cfg: Config, out: str | Path) -> "Run":
        out = Path(out)
        if (out / "metrics.jsonl").exists():
            raise ValueError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")
        cfg = prepare_config(cfg)
        distributed.barrier()  # every process has checked `out` before the first one writes there
        if distributed.is_main():
            out.mkdir(parents=True, exist_ok=True)
            cfg.save(out / "config.yaml")
            meta = {"git_commit": git_commit(), "versions": checkpoint.library_versions(), "seed": cfg.train.seed,
                    "processes": distributed.world_size(), "dataset_files": file_hashes(cfg),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
            (out / "meta.json").write_text(json.dumps(meta, indent=2))
        return cls(cfg, out)

    @classmethod
    def resume(cls, out: str | Path) -> "Run":
        out = Path(out)
        cfg = load_config(out / "config.yaml", resolved=True)
        required = ("optimizer", "scheduler", "generator", "rng", "epoch", "best")
        return cls(cfg, out, checkpoint.load_training_state(out / "last", required))

    def _restore(self, state: dict) -> None:
        weights = checkpoint.from_pretrained(self.out / "last", self.device).state_dict()
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        if len(rngs) != self.world:
            raise ValueError(f"{self.out} was trained by {len(rngs)} process(es); resume it with as many "
                             f"(mqspn train --nproc {len(rngs)}, or torchrun), not {self.world}")
        self.epoch, self.best = state["epoch"], state["best"]
        self._refill_frozen_text_cache()
        set_rng_state(rngs[distributed.rank()])
        distributed.barrier()  # every process has read the run before the first one rewrites metrics.jsonl
        if not distributed.is_main():
            return
        # Epoch lines written after the saved state (a kill between the two writes) are dropped.
        lines = (self.out / "metrics.jsonl").read_text().splitlines() if (self.out / "metrics.jsonl").exists() else []
        (self.out / "metrics.jsonl").write_text("".join(l + "\n" for l in lines[: self.epoch]))

    @torch.no_grad()
    def _refill_frozen_text_cache(self) -> None:
        """Encode the texts again in the batches that first encoded them (epoch 1's training batches, then
        the first dev pass), when the text encoder has been frozen since epoch 1. A frozen encoder's
        cached states depend, at the 1e-7 level, on the padding of the batch that computed them; encoded
        in the batches of the resumed epoch instead, they would make the weights drift from those of an
        uninterrupted run. (Crop encodings are computed per post, so they need no replay.)"""
        frozen = self.cfg.train.frozen_at(self.epoch)
        if self.epoch == 0 or not (self.cfg.train.frozen_at(0)["text"] and frozen["text"]):
            return
        self.model.set_encoders_frozen(**frozen, top_layers=self.cfg.train.finetune_layers)
        first_epoch = train_loader(self.train_posts, self.builder, self.cfg, torch.Generator().manual_seed(self.cfg.train.seed))
        if isinstance(first_epoch.sampler, torch.utils.data.DistributedSampler):
            first_epoch.sampler.set_epoch(0)
        progress = self.cfg.train.progress and distributed.is_main()
        for batch in tqdm([*first_epoch, *self.dev_loader], desc="re-encoding frozen texts", leave=False, disable=not progress):
            self.model.encode_text(to_device(batch, self.device))

    def replica(self):
        """The module a training step runs: the model, or under several processes its DDP wrapper, rebuilt
        when the set of trained parameters changes (DDP only averages what trained when it was built)."""
        if self.world == 1:
            return self.model
        trained = tuple(name for name, p in self.model.named_parameters() if p.requires_grad)
        if trained != self._replica_params:
            # Parameters a batch does not reach (no regions, no entities) vary from step to step; PyTorch
            # warns once when the first step happens to reach them all.
            self._replica = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
            self._replica_params = trained
        return self._replica

    def run(self) -> dict:
        main = distributed.is_main()
        progress = self.cfg.train.progress and main
        for epoch in range(self.epoch, self.cfg.train.epochs):
            start = time.time()
            frozen = self.cfg.train.frozen_at(epoch)
            self.model.set_encoders_frozen(**frozen, top_layers=self.cfg.train.finetune_layers)
            # A frozen pretrained vision encoder is cached per crop: it must see the crops themselves.
            self.augment.active = self.cfg.train.crop_augment and not self.model.frozen.get("vision", False)
            if isinstance(self.train_loader.sampler, torch.utils.data.DistributedSampler):
                self.train_loader.sampler.set_epoch(epoch)
            losses = train_one_epoch(self.replica(), self.criterion, self.train_loader, self.optimizer, self.scheduler,
                                     self.cfg.train.clip_norm, self.device, epoch, progress,
                                     self.cfg.train.grad_accumulation, self.cfg.train.precision)
            losses = distributed.mean(losses)
            dev = score(self.dev_posts, gathered_predictions(self.model, self.dev_loader, self.cfg, self.device, "dev"))
            improved = dev["gmner"]["f1"] > self.best["gmner_f1"]
            if improved:
                self.best = {"epoch": epoch + 1, "gmner_f1": dev["gmner"]["f1"]}
                if main:
                    checkpoint.save_pretrained(self.model, self.out / "best", self.cfg, card=self._card(dev),
                                               training_data=checkpoint.training_data(self.cfg.data.root))
            record = {"epoch": epoch + 1, **{k: round(v, 5) for k, v in losses.items()},
                      **{f"dev_{task}_{m}": dev[task][m] for task in ("gmner", "mner", "eeg") for m in ("precision", "recall", "f1")},
                      "best_epoch": self.best["epoch"], "seconds": round(time.time() - start, 1)}
            self.epoch = epoch + 1
            rngs = distributed.gather(rng_state())
            if not main:
                continue
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "generator": self.generator.get_state(), "rng": rngs if self.world > 1 else rngs[0],
                     "epoch": self.epoch, "best": self.best}
            checkpoint.save_pretrained(self.model, self.out / "last", self.cfg, card=self._card(dev),
                                       training_state=state, training_data=checkpoint.training_data(self.cfg.data.root))
            if progress:
                print(f"epoch {epoch + 1}/{self.cfg.train.epochs}  loss {losses['loss']:.4f}  dev GMNER F1 "
                      f"{dev['gmner']['f1']:.2f}  MNER {dev['mner']['f1']:.2f}  EEG {dev['eeg']['f1']:.2f}"
                      f"{'  (best)' if improved else ''}  {record['seconds']}s", flush=True)
        return self.test()

    def _card(self, dev: dict) -> dict:
        return {"dataset": self.cfg.data.root, "training": dataclasses.asdict(self.cfg.train),
                "dev scores (this checkpoint)": {t: dev[t]["f1"] for t in ("gmner", "mner", "eeg")}}

    def test(self) -> dict:
        """Score the test split once, with the best-dev checkpoint."""
        distributed.barrier()  # the first process has written best/
        # Training is over and its state is in last/: its gradients and AdamW moments (1.3 GB at paper shapes
        # once BERT trains) make room for best/, whose loading holds a second copy of the weights.
        self.model.zero_grad(set_to_none=True)
        self.optimizer.state.clear()
        best = checkpoint.from_pretrained(self.out / "best", self.device)
        test_posts = self.test_posts
        preds = gathered_predictions(best, self.test_loader, self.cfg, self.device, "test")
        result = {"best_epoch": self.best["epoch"], "dev_gmner_f1": self.best["gmner_f1"], **score(test_posts, preds)}
        if distributed.is_main():
            write_predictions(self.out / "test_predictions.jsonl", ((p.id, preds.get(p.id, [])) for p in test_posts))
            (self.out / "test_metrics.json").write_text(json.dumps(result, indent=2))
        return result


def train_seeds(cfg: Config, out: str | Path, seeds: list[int]) -> dict:
    """One run per seed under `out/seed-<s>`; `out/summary.json` holds mean and std of the test scores."""
    if not seeds:
        raise ValueError("no seeds given")
    out = Path(out)
    results = {}
    for seed in seeds:
        run_dir = out / f"seed-{seed}"
        seeded = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
        run = Run.resume(run_dir) if (run_dir / "last" / checkpoint.TRAINING_STATE).exists() else Run.start(seeded, run_dir)
        results[seed] = run.run()
    summary: dict = {"seeds": seeds}
    for task in ("gmner", "mner", "eeg"):
        summary[task] = {}
        for m in ("precision", "recall", "f1"):
            values = np.array([results[s][task][m] for s in seeds])
            summary[task][m] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                                "values": values.tolist()}
    if distributed.is_main():
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def train(cfg: Optional[Config], out: str | Path, resume: bool = False, seeds: Optional[list[int]] = None) -> dict:
    """The `mqspn train` job, in this process or in each process of a group (`distributed.launch`):
    continue the run in `out`, or one run per seed (-> summary), or one run (-> test scores)."""
    if resume:
        return Run.resume(out).run()
    if seeds:
        return train_seeds(cfg, out, seeds)
    return Run.start(cfg, out).run()


def launch_train(nproc: int, cfg: Optional[Config], out: str | Path, resume: bool = False,
                 seeds: Optional[list[int]] = None) -> dict:
    """`train` in `nproc` local data-parallel processes (1: this process, or torchrun's group when
    launched by torchrun); -> what `train` returns, read back from the run directory."""
    if nproc == 1:
        distributed.init_from_env()
        return train(cfg, out, resume, seeds)
    distributed.launch(train, nproc, cfg, out, resume, seeds)
    return json.loads((Path(out) / ("summary.json" if seeds and not resume else "test_metrics.json")).read_text())
