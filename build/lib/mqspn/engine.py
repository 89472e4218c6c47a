"""One training epoch and one prediction pass. The engine owns backward, clipping and stepping; it sums
the criterion's losses with the criterion's `weight_dict` and reads no config."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

import torch
from tqdm import tqdm

from mqspn.batching import to_device
from mqspn.model.criterion import LOSSES
from mqspn.model.decode import Decoder
from mqspn.model.matcher import NonFiniteOutputError
from mqspn.types import Entity


LAST_LAYER = tuple(f"loss_{name}" for name in LOSSES)


class NonFiniteLossError(ArithmeticError):
    """Training produced a NaN or infinite loss."""


def weighted_total(losses: dict[str, torch.Tensor], weight_dict: dict[str, float]) -> torch.Tensor:
    """sum of losses[k] * weight_dict[k] over the losses that have a weight (DETR's rule)."""
    return sum(weight_dict[name] * value for name, value in losses.items() if name in weight_dict)


def train_one_epoch(model, criterion, loader: Iterable, optimizer, scheduler, clip_norm: float,
                    device: torch.device, epoch: int, progress: bool = True) -> dict[str, float]:
    """-> mean over the epoch of the weighted total (`loss`) and of each last-layer loss (the names
    without a layer suffix)."""
    model.train()
    sums: dict[str, float] = defaultdict(float)
    steps = 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", disable=not progress, leave=False, unit="batch")
    for step, batch in enumerate(bar):
        batch = to_device(batch, device)
        try:
            losses = criterion(model(batch), batch["targets"])
            total = weighted_total(losses, criterion.weight_dict)
            finite = math.isfinite(total.item())
            detail = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
        except NonFiniteOutputError as err:  # NaN scores stop the matcher before any loss exists
            finite, detail = False, str(err)
        if not finite:
            raise NonFiniteLossError(
                f"non-finite loss at epoch {epoch + 1}, step {step + 1} ({detail}); "
                "lower train.lr or check the inputs of this batch: " + ", ".join(p.id for p in batch["posts"])
            )
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        scheduler.step()
        steps += 1
        sums["loss"] += total.item()
        for name in (n for n in losses if n in LAST_LAYER):
            sums[name] += losses[name].item()
        bar.set_postfix(loss=f"{sums['loss'] / steps:.3f}")
    return {k: v / max(steps, 1) for k, v in sums.items()}


@torch.no_grad()
def predict_batches(model, loader: Iterable, device: torch.device, decoder: Decoder, progress: bool = True,
                    desc: str = "predict") -> dict[str, list[Entity]]:
    """-> predicted entities per post id."""
    model.eval()
    predictions: dict[str, list[Entity]] = {}
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
        outputs = model(to_device(batch, device))
        decoded = decoder(outputs, [len(p.words) for p in batch["posts"]], batch["regions"])
        for post, entities in zip(batch["posts"], decoded):
            predictions[post.id] = entities
    return predictions
