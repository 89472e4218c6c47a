"""The package works when installed from its wheel, outside the checkout: the command line, the synthetic
benchmark and a training run from a recipe shipped as package data."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def run(cmd: list, cwd: Path) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_wheel_runs_its_cli_synth_and_a_shipped_recipe_outside_the_checkout(tmp_path):
    # Built from a copy: setuptools writes build/ beside the sources.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "demo_out", "runs", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"))
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist",
         source], cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("mqspn-*.whl"))
    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    # The dependencies (torch, transformers, ...) come from this interpreter's site-packages, appended to
    # the new environment's path; mqspn itself only from the wheel (a .pth inside an appended folder,
    # such as an editable install's, is not processed).
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel], cwd=tmp_path)

    work = tmp_path / "elsewhere"
    work.mkdir()
    location = run([python, "-c", "import mqspn; print(mqspn.__file__)"], cwd=work).strip()
    assert location.startswith(str(site)), location
    assert "demo" in run([env / "bin" / "mqspn", "--help"], cwd=work)
    assert "--epochs" in run([python, "-m", "mqspn.demo", "--help"], cwd=work)
    run([env / "bin" / "mqspn", "synth", "--out", "synth", "--posts", "40", "--workers", "1"], cwd=work)
    assert (work / "synth" / "synth.json").is_file()
    out = run([env / "bin" / "mqspn", "train", "--config", "demo", "--data", "synth", "--out", "run",
               "--set", "train.epochs=1", "--set", "train.progress=false", "--set", "model.text_encoder=tiny"], cwd=work)
    assert set(json.loads(out)) == {"best_epoch", "gmner", "mner", "eeg"}
    saved = json.loads((work / "run" / "best" / "config.json").read_text())
    assert saved["loss"]["max_targets"] == 10 and saved["decode"]["region_vote"] is True  # the demo recipe's
