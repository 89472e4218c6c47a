"""What the crop resolution costs in accuracy: the demo recipe trained at several crop sizes, same seed.

    .venv/bin/python bench/crop_accuracy.py --data demo_out/synth [--sizes 32 18] [--posts 1000] [--epochs 6]

The demo's crop encoder is its CNN (`model.crop_size`, 32 px), not CLIP: no pretrained CLIP can be
loaded here, and a random one grounds nothing. 18 px is 32 px scaled as CLIP's 128 px crops are scaled
from its 224 (x 0.57), so the gap between 32 and 18 bounds what the synthetic task loses to coarser crops.
Each size trains the recipe on the first `--posts` training posts for `--epochs` epochs (one run each,
one thread) and prints the test scores of its best dev epoch, one JSON line per size.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from mqspn.config import load_config
from mqspn.trainer import Run


def train_at(size: int, data: str, posts: int, epochs: int, out: Path) -> dict:
    """Test scores (GMNER / MNER / EEG F1) of the demo recipe at crop size `size`."""
    overrides = [f"data.root={json.dumps(data)}", f"model.crop_size={size}", f"train.max_train_posts={posts}",
                 f"train.epochs={epochs}", "train.progress=false"]
    start = time.perf_counter()
    scores = Run.start(load_config("demo", overrides), out / f"crop{size}").run()
    return {"crop_size": size, "posts": posts, "epochs": epochs, "seconds": round(time.perf_counter() - start),
            **{f"{task}_f1": round(scores[task]["f1"], 2) for task in ("gmner", "mner", "eeg")}}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a synthetic benchmark folder (mqspn synth; make demo's demo_out/synth)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 18], help="crop sizes (default: 32 18)")
    parser.add_argument("--posts", type=int, default=1000, help="training posts (default 1000)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs (default 6)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            print(json.dumps(train_at(size, str(Path(args.data).resolve()), args.posts, args.epochs, Path(tmp))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
