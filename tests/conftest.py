"""Shared test fixtures. Tests on real files use `../shared` and skip with a reason when it is absent."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
GMNER_DIR = SHARED / "twitter-gmner-v2.0"
FMNERG_DIR = SHARED / "twitter-fmnerg"
REAL_SAMPLES = SHARED / "real-samples"

@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """Run torch on one thread. The test models are far too small to gain from threads, and when other
    processes share the cores, OpenMP threads spin-wait on each other (measured: one epoch 43 s on two
    threads, 2 s on one)."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


needs_shared = pytest.mark.skipif(
    not GMNER_DIR.is_dir(),
    reason=f"real Twitter-GMNER data not found at {GMNER_DIR} (only present beside the project's own checkout)",
)
