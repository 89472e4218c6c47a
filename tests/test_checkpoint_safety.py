"""Model directories are safe to load: no pickle, verified weights, ordinary file modes, recorded data."""
from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import stat

import numpy as np
import pytest
import torch

from helpers_model import tiny_model
from mqspn import checkpoint
from mqspn.checkpoint import UnverifiedWeightsWarning, from_pretrained, load_training_state, save_pretrained
from mqspn.predictor import Predictor


class Exploit:
    """A pickle that, when loaded, creates a file."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save_pretrained(tiny_model(seed=3), tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def copy_of(saved, tmp_path):
    directory = tmp_path / "copy"
    shutil.copytree(saved, directory)
    return directory


def full_state() -> dict:
    """A state of the shapes `mqspn train` saves: optimizer (int keys, tuples), RNGs (numpy arrays, tuples)."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return {"optimizer": optimizer.state_dict(), "generator": torch.Generator().manual_seed(3).get_state(),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
            "epoch": 2, "best": {"epoch": 1, "gmner_f1": -1.0}}


def assert_equal(a, b) -> None:
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_equal(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_equal(x, y)
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    else:
        assert a == b


def test_training_state_round_trips_without_pickle(tmp_path):
    state = full_state()
    directory = save_pretrained(tiny_model(), tmp_path / "m", training_state=state)
    assert not list(directory.glob("*.pt"))
    loaded = load_training_state(directory, required=("optimizer", "rng"))
    assert_equal(loaded, state)
    random.setstate(loaded["rng"]["python"])
    np.random.set_state(loaded["rng"]["numpy"])


@pytest.mark.parametrize("name", ["training_state.pt", "training_state.json", "training_state.safetensors"])
def test_a_malicious_pickle_is_never_executed_and_the_error_names_the_file(copy_of, tmp_path, name):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Exploit(marker))
    if name != "training_state.pt":  # the new layout, one of its files replaced by the pickle
        save_pretrained(tiny_model(), copy_of, training_state=full_state())
    (copy_of / name).write_bytes(payload)
    with pytest.raises(ValueError, match=rf"copy/{name} "):
        load_training_state(copy_of)
    assert not marker.exists()


def test_a_training_state_without_the_needed_keys_is_refused_naming_them(tmp_path):
    directory = save_pretrained(tiny_model(), tmp_path / "m", training_state={"epoch": 3})
    with pytest.raises(ValueError, match=r"m/training_state.json lacks the key\(s\) \['optimizer', 'rng'\]"):
        load_training_state(directory, required=("optimizer", "epoch", "rng"))


def test_a_training_state_of_another_form_is_refused(tmp_path):
    directory = save_pretrained(tiny_model(), tmp_path / "m", training_state={"epoch": 3})
    (directory / "training_state.json").write_text(json.dumps({"format": 1, "state": {"x": {"$call": "os.system"}}}))
    with pytest.raises(ValueError, match=r"m/training_state.json is not an mqspn training state"):
        load_training_state(directory)


def test_weights_damaged_in_the_middle_are_refused_naming_the_file(copy_of):
    weights = copy_of / "model.safetensors"
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = b"\xff" * 4096  # still parses as safetensors: only values change
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"copy/model.safetensors is corrupt or truncated: its sha256 differs"):
        from_pretrained(copy_of)
    with pytest.raises(ValueError, match=r"sha256 differs"):
        Predictor.from_pretrained(copy_of, "cpu")
    from_pretrained(copy_of, verify=False)
    Predictor.from_pretrained(copy_of, "cpu", verify=False)


def test_a_directory_saved_without_checksums_loads_with_a_warning(copy_of):
    (copy_of / "checksums.json").unlink()
    with pytest.warns(UnverifiedWeightsWarning, match=r"copy has no checksums.json"):
        from_pretrained(copy_of)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_directories_get_the_modes_of_the_umask(tmp_path, umask):
    before = os.umask(umask)
    try:
        directory = save_pretrained(tiny_model(), tmp_path / "m", training_state={"epoch": 1})
    finally:
        os.umask(before)
    paths = [directory, *directory.rglob("*")]
    assert any(p.is_dir() for p in paths[1:]) and any(p.is_file() for p in paths)
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o777 if path.is_dir() else 0o666) & ~umask, (path, oct(mode))


def test_training_data_is_recorded_in_config_and_card(tmp_path):
    synth = tmp_path / "synth"
    synth.mkdir()
    (synth / "synth.json").write_text("{}")
    directory = save_pretrained(tiny_model(), tmp_path / "m", training_data=checkpoint.training_data(synth))
    assert json.loads((directory / "config.json").read_text())["training_data"] == {"root": str(synth),
                                                                                      "synthetic": True}
    assert '"synthetic": true' in (directory / "README.md").read_text()
    assert Predictor.from_pretrained(directory, "cpu").training_data == {"root": str(synth), "synthetic": True}
    assert checkpoint.training_data(tmp_path)["synthetic"] is False
    assert Predictor.from_pretrained(save_pretrained(tiny_model(), tmp_path / "n"), "cpu").training_data is None


def test_resuming_from_a_state_without_the_needed_keys_names_the_file_and_keys(tmp_path):
    from mqspn.config import Config
    from mqspn.trainer import Run

    Config().save(tmp_path / "config.yaml")
    save_pretrained(tiny_model(), tmp_path / "last", training_state={"epoch": 1})
    with pytest.raises(ValueError, match=r"last/training_state.json lacks the key\(s\) \['optimizer', 'scheduler', "
                                         r"'generator', 'rng', 'best'\]"):
        Run.resume(tmp_path)
