"""Data-parallel training in local processes (gloo on the CPU): the replicas stay equal, the run
directory is complete, and errors in a worker come back as themselves."""
from __future__ import annotations

import hashlib
import json

import pytest

from helpers_model import synth_dataset, tiny_run_config
from mqspn import distributed
from mqspn.data.datasets import read_split
from mqspn.trainer import Run

pytestmark = pytest.mark.slow  # training runs (`make test-fast` skips them)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """120 posts (84 train, 18 dev, 18 test)."""
    return synth_dataset(tmp_path_factory.getbasetemp(), posts=120, seed=3)


def train_and_digest(cfg, out) -> None:
    """Worker: train, then write this process's digest of the model weights."""
    run = Run.start(cfg, out)
    run.run()
    weights = b"".join(p.detach().contiguous().numpy().tobytes() for p in run.model.parameters())
    (out / f"digest-{distributed.rank()}.txt").write_text(hashlib.sha256(weights).hexdigest())


def fail_in_process_1() -> None:
    if distributed.rank() == 1:
        raise ValueError("bad input seen by process 1")
    distributed.barrier()  # process 0 waits here until it is stopped


@pytest.fixture(scope="module")
def two_process_run(synth, tmp_path_factory):
    # The text encoder frozen in epoch 1 and released in epoch 2: the DDP wrapper must follow the change.
    cfg = tiny_run_config(synth, epochs=2, batch_size=8, freeze_text_epochs=1)
    out = tmp_path_factory.mktemp("ddp") / "run"
    distributed.launch(train_and_digest, 2, cfg, out)
    return out


def test_replicas_end_identical_and_the_run_directory_is_complete(synth, two_process_run):
    out = two_process_run
    assert (out / "digest-0.txt").read_text() == (out / "digest-1.txt").read_text()
    assert json.loads((out / "meta.json").read_text())["processes"] == 2
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert all(0.0 <= line["dev_gmner_f1"] <= 100.0 and line["loss"] > 0 for line in lines)
    # Each process predicted half of the test split; the file holds every post once.
    test_ids = [p.id for p in read_split(synth, "test")]
    written = [json.loads(line)["id"] for line in (out / "test_predictions.jsonl").read_text().splitlines()]
    assert written == test_ids
    result = json.loads((out / "test_metrics.json").read_text())
    assert result["gmner"]["n_gold"] == sum(len(p.entities) for p in read_split(synth, "test"))
    assert (out / "last" / "training_state.json").is_file() and (out / "best" / "model.safetensors").is_file()


def test_resuming_with_another_number_of_processes_is_refused(two_process_run):
    with pytest.raises(ValueError, match=r"trained by 2 process\(es\); resume it with as many .*--nproc 2"):
        Run.resume(two_process_run)


def test_an_error_in_one_worker_is_raised_again_in_the_launcher():
    with pytest.raises(ValueError, match="bad input seen by process 1"):
        distributed.launch(fail_in_process_1, 2)


def test_a_batch_that_does_not_split_over_the_processes_is_refused(synth, tmp_path):
    cfg = tiny_run_config(synth, batch_size=3)
    with pytest.raises(ValueError, match=r"train.batch_size=3 does not split over 2 processes"):
        distributed.launch(train_and_digest, 2, cfg, tmp_path / "run")


def test_launch_needs_at_least_one_process():
    with pytest.raises(ValueError, match="nproc=0"):
        distributed.launch(fail_in_process_1, 0)
