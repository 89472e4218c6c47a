"""Shared test fixtures. Tests on real files use `../shared` and skip with a reason when it is absent."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
GMNER_DIR = SHARED / "twitter-gmner-v2.0"
FMNERG_DIR = SHARED / "twitter-fmnerg"
REAL_SAMPLES = SHARED / "real-samples"

needs_shared = pytest.mark.skipif(
    not GMNER_DIR.is_dir(),
    reason=f"real Twitter-GMNER data not found at {GMNER_DIR} (only present beside the project's own checkout)",
)
