"""The region cache (`mqspn.region_cache`) at the paper's shapes: written once, reused, and the host memory
of a run that reads it.

    .venv/bin/python bench/region_cache.py smoke [--posts 40] [--threads 2] [--json]
    .venv/bin/python bench/region_cache.py scale --data DIR [--steps 3] [--threads 2] [--json]

`smoke`: random-weight BERT-base and CLIP ViT-B/32 (configs saved in a temp folder, nothing downloaded)
under the twitter-gmner recipe (hidden 768, u = 60, L = 3, top_k 18, max_targets 45), batch 8, one epoch
of the first 16 training posts of a small synthetic set, dev and test scored: run twice, each in a fresh
process, on one cache folder. The first run fills the cache; the second must encode nothing.

`scale`: the whole split. DIR is a synthetic set of 10,000 posts (7,000 training, 1,500 dev, 1,500 test:
`mqspn synth --out DIR --posts 10000`). ViT-B/32 over its 130,000 crops takes hours on two CPU cores, so
a stand-in tower of the same output width (768: ViT embeddings and layer norms, no block, 32 px crops)
fills the cache in a first process. A second process then builds the run at the recipe's shapes
(BERT-base, batch 16): every example of the three splits, read from the cache, and trains `--steps` steps with BERT frozen and
`--steps` with it released (its gradients and AdamW moments), then writes best/ and scores one test
batch with it loaded, as a run ends (`Run.test`). Beside its peak RSS the report gives, as
computed figures, what the stand-in leaves out (the weights ViT-B/32 has beyond it) and what a whole
frozen epoch adds (the text encoder's cached word states of every post, `mqspn.model.frozen_cache`).

Each run reports: images encoded, vision-tower calls, seconds to open or fill the cache, its size on
disk, and the process's peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`).
"""
from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from mqspn import checkpoint, trainer
from mqspn.config import load_config
from mqspn.data.datasets import read_split
from mqspn.engine import train_one_epoch
from mqspn.model.vision_encoder import ClipRegionEncoder
from step_breakdown import paper_encoders, synthetic

#: The stand-in tower of `scale`: ViT-B/32's width and pooled output (embeddings and the two layer
#: norms) without a transformer block, on 32 px crops. One block streams its 28 MB of weights per image,
#: which on two shared cores made the fill half an hour.
STAND_IN = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=0,
                image_size=32, patch_size=8)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def folder_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2 ** 20, 1)


def recipe(root: Path, text: Path, vision: Path, cache: Path, out_file: Path, **train) -> Path:
    """The twitter-gmner recipe on the synthetic set at `root` with these encoders, saved to `out_file`."""
    overrides = [f"data.root={json.dumps(str(root))}", "data.proposals=proposals",
                 f"model.text_encoder={json.dumps(str(text))}", f"model.vision_encoder={json.dumps(f'clip:{vision}')}",
                 f"train.region_cache={json.dumps(str(cache))}", "train.progress=false",
                 *(f"train.{k}={v}" for k, v in train.items())]
    load_config("twitter-gmner", overrides).save(out_file)
    return out_file


def phase(config: Path, out: Path, steps: int) -> dict:
    """One run in this process: `steps` = 0 the whole run (`Run.run`), else `steps` training steps with the
    text encoder frozen and `steps` with it released."""
    cfg = load_config(config)
    calls, timing = [], {}
    forward, open_cache = ClipRegionEncoder.forward, trainer.build_region_cache

    def counted(self, crops):
        calls.append(len(crops))
        return forward(self, crops)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        cache = open_cache(*args, **kwargs)
        timing["cache_s"] = round(time.perf_counter() - start, 1)
        return cache

    ClipRegionEncoder.forward, trainer.build_region_cache = counted, timed
    start = time.perf_counter()
    run = trainer.Run.start(cfg, out)
    timing["setup_s"] = round(time.perf_counter() - start, 1)
    result = {"images_encoded": run.region_cache.encoded, "vision_calls_at_setup": len(calls),
              "cache_mb": folder_mb(run.region_cache.folder), "cache_rows": int(run.region_cache.array.shape[0]),
              "cache_file": str(run.region_cache.file)}
    calls.clear()
    start = time.perf_counter()
    if steps == 0:
        test = run.run()
        result.update(loss=json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["loss"],
                      test_gmner_f1=round(test["gmner"]["f1"], 2))
    else:
        losses = []
        for epoch in (0, cfg.train.freeze_text_epochs):  # BERT frozen (its states cached), then released
            run.model.set_encoders_frozen(**cfg.train.frozen_at(epoch), top_layers=cfg.train.finetune_layers)
            losses.append(train_one_epoch(run.model, run.criterion, itertools.islice(run.train_loader, steps),
                                          run.optimizer, run.scheduler, cfg.train.clip_norm, run.device, epoch,
                                          False)["loss"])
        result.update(loss_frozen_text=round(losses[0], 4), loss_released_text=round(losses[1], 4),
                      train_posts=len(run.train_posts), dev_posts=len(run.dev_posts), test_posts=len(run.test_posts),
                      peak_rss_mb_steps=peak_rss_mb())
        # The end of a run: best/ written, then loaded beside the trained model to score the test split
        # (one batch of it here), the moment a run holds two copies of the weights.
        checkpoint.save_pretrained(run.model, out / "best", cfg)
        run.test_posts = run.test_posts[: cfg.train.eval_batch_size]
        run.test_loader = trainer.loader(run.test_posts, run.builder, cfg.train.eval_batch_size, False)
        run.test()
    result.update(timing, run_s=round(time.perf_counter() - start, 1), vision_calls_in_run=len(calls),
                  peak_rss_mb=peak_rss_mb())
    return result


def child(config: Path, out: Path, steps: int, threads: int) -> dict:
    """`phase` in a fresh process, so each figure of peak RSS is that run's alone."""
    command = [sys.executable, __file__, "_phase", str(config), str(out), str(steps), "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def smoke(posts: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        root = synthetic(folder, posts)
        text, vision = paper_encoders(folder, root, quick=False)
        config = recipe(root, text, vision, folder / "cache", folder / "config.yaml", epochs=1, max_train_posts=16,
                        batch_size=8)
        first = child(config, folder / "first", 0, threads)
        second = child(config, folder / "second", 0, threads)
    return {"first": first, "second": second}


def scale(data: Path, steps: int, threads: int) -> dict:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        text, vit = paper_encoders(folder, data, quick=False)
        stand_in = folder / "stand-in"
        torch.manual_seed(0)
        CLIPVisionModel(CLIPVisionConfig(**STAND_IN)).save_pretrained(stand_in)
        missing_mb = ((vit / "model.safetensors").stat().st_size - (stand_in / "model.safetensors").stat().st_size) / 2 ** 20
        config = recipe(data, text, stand_in, folder / "cache", folder / "config.yaml")
        fill = child(config, folder / "fill", 1, threads)
        train = child(config, folder / "train", steps, threads)
    posts = [p for split in ("train", "dev", "test") for p in read_split(data, split)]
    text_cache_mb = sum(len(p.words) for p in posts) * 768 * 4 / 2 ** 20
    bound = train["peak_rss_mb"] + missing_mb + text_cache_mb
    return {"fill": fill, "train": train, "vit_b32_weights_beyond_stand_in_mb": round(missing_mb, 1),
            "frozen_text_states_of_all_posts_mb": round(text_cache_mb, 1),
            "peak_rss_bound_mb": round(bound, 1), "target_mb": 4096, "under_target": bound < 4096}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("smoke", "scale", "_phase"))
    parser.add_argument("args", nargs="*", help="_phase: CONFIG OUT STEPS (internal)")
    parser.add_argument("--posts", type=int, default=40, help="smoke: synthetic posts (70/15/15)")
    parser.add_argument("--data", type=Path, help="scale: a synthetic set of 10,000 posts")
    parser.add_argument("--steps", type=int, default=3, help="scale: training steps with BERT frozen, then released")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.mode == "_phase":
        config, out, steps = args.args
        print(json.dumps(phase(Path(config), Path(out), int(steps))))
        return 0
    if args.mode == "scale" and args.data is None:
        parser.error("scale needs --data DIR (mqspn synth --out DIR --posts 10000)")
    result = smoke(args.posts, args.threads) if args.mode == "smoke" else scale(args.data, args.steps, args.threads)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
