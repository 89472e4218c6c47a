"""One training epoch and one prediction pass. The engine owns backward, clipping and stepping; it sums
the criterion's losses with the criterion's `weight_dict` and reads no config."""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch
from tqdm import tqdm

from mqspn.batching import to_device
from mqspn.model.criterion import LOSSES
from mqspn.model.decode import Decoder
from mqspn.model.matcher import NonFiniteOutputError
from mqspn.types import Entity


LAST_LAYER = tuple(f"loss_{name}" for name in LOSSES)
PRECISIONS = ("fp32", "bf16")
#: Micro-batches between two updates of the progress bar's mean loss: each update reads the device.
LOG_EVERY = 10


class NonFiniteLossError(ArithmeticError):
    """Training produced a NaN or infinite loss."""


def weighted_total(losses: dict[str, torch.Tensor], weight_dict: dict[str, float]) -> torch.Tensor:
    """sum of losses[k] * weight_dict[k] over the losses that have a weight (DETR's rule)."""
    return sum(weight_dict[name] * value for name, value in losses.items() if name in weight_dict)


def autocast(device: torch.device, precision: str):
    """The forward pass's precision: `fp32` as is, `bf16` under torch.autocast (CUDA and CPU)."""
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def accumulation_groups(loader: Iterable, size: int) -> Iterator[list[tuple[int, dict]]]:
    """(index, batch) pairs of `loader` in groups of `size` consecutive micro-batches, one group per
    optimizer step; the last group of an epoch may be shorter."""
    group: list[tuple[int, dict]] = []
    for item in enumerate(loader):
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def non_finite_error(epoch: int, step: int, detail: str, post_ids: list[str]) -> NonFiniteLossError:
    return NonFiniteLossError(f"non-finite loss at epoch {epoch + 1}, step {step + 1} ({detail}); "
                              "lower train.lr or check the inputs of this batch: " + ", ".join(post_ids))


def train_one_epoch(model, criterion, loader: Iterable, optimizer, scheduler, clip_norm: float,
                    device: torch.device, epoch: int, progress: bool = True, accumulation: int = 1,
                    precision: str = "fp32") -> dict[str, float]:
    """-> mean over the epoch's micro-batches of the weighted total (`loss`) and of each last-layer loss
    (the names without a layer suffix).

    `accumulation`: micro-batches per optimizer step; each one's loss is divided by the number of
    micro-batches of its step, so the gradient is their mean (equal to one batch of them all where each
    micro-batch has as many matched queries: the criterion's terms are means over queries and matched
    pairs). Losses stay on the device: the only read per step is one finiteness flag, checked before
    the update, so a NaN still stops the run before it touches the weights."""
    model.train()
    sums: dict[str, torch.Tensor] = {}
    steps = 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", disable=not progress, leave=False, unit="batch")
    for group in accumulation_groups(bar, accumulation):
        optimizer.zero_grad(set_to_none=True)
        checks = []
        for position, (step, batch) in enumerate(group):
            batch = to_device(batch, device)
            last = position == len(group) - 1
            # Under DistributedDataParallel only the group's last backward averages the gradients.
            sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
            with sync:
                try:
                    with autocast(device, precision):
                        losses = criterion(model(batch), batch["targets"])
                        total = weighted_total(losses, criterion.weight_dict)
                except NonFiniteOutputError as err:  # NaN scores stop the matcher before any loss exists
                    raise non_finite_error(epoch, step, str(err), [p.id for p in batch["posts"]]) from None
                (total / len(group) if len(group) > 1 else total).backward()
            checks.append((torch.isfinite(total), step, losses, [p.id for p in batch["posts"]]))
            steps += 1
            for name, value in (("loss", total), *((n, losses[n]) for n in losses if n in LAST_LAYER)):
                sums[name] = sums.get(name, 0) + value.detach().double()
            if progress and steps % LOG_EVERY == 0:
                bar.set_postfix(loss=f"{sums['loss'].item() / steps:.3f}")
        if not bool(torch.stack([c[0] for c in checks]).all()):
            _, step, losses, post_ids = next(c for c in checks if not bool(c[0]))
            raise non_finite_error(epoch, step, ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items()), post_ids)
        if clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        scheduler.step()
    return {k: v.item() / max(steps, 1) for k, v in sums.items()}


@torch.no_grad()
def predict_batches(model, loader: Iterable, device: torch.device, decoder: Decoder, progress: bool = True,
                    desc: str = "predict") -> dict[str, list[Entity]]:
    """-> predicted entities per post id. The bar's rate is posts per second."""
    model.eval()
    predictions: dict[str, list[Entity]] = {}
    bar = tqdm(desc=desc, total=_posts(loader), disable=not progress, leave=False, unit="post")
    for batch in loader:
        outputs = model(to_device(batch, device))
        decoded = decoder(outputs, [len(p.words) for p in batch["posts"]], batch["regions"])
        for post, entities in zip(batch["posts"], decoded):
            predictions[post.id] = entities
        bar.update(len(batch["posts"]))
    bar.close()
    return predictions


def _posts(loader: Iterable):
    """The number of posts a loader yields, when it knows (a DataLoader over a dataset), else None."""
    dataset = getattr(loader, "dataset", None)
    return len(dataset) if dataset is not None else None
