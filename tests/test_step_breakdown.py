"""`bench/step_breakdown.py --quick --json` reports every part of every shape as a number (never a time
judged: the machine's load decides those)."""
from __future__ import annotations

import json
import subprocess
import sys
from numbers import Real
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "step_breakdown.py"
TRAIN_PARTS = {"data", "text_encoder", "vision_encoder", "qfnet", "heads", "other", "matching", "criterion",
               "backward", "optimizer"}
PREDICT_PARTS = {"data", "text_encoder", "vision_encoder", "qfnet", "heads", "other", "decode"}


def is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


@pytest.mark.slow  # about 15-30 s: two models built, trained and run at reduced shapes
def test_quick_json_has_every_part_of_every_shape_as_a_number():
    out = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", "--threads", "1"], capture_output=True,
                         text=True, timeout=600, check=True).stdout
    result = json.loads(out)
    assert set(result) == {"paper", "paper/recipe", "paper/predict", "demo", "demo/predict", "paper/frozen", "speedups",
                           "paper@16", "paper@16/recipe", "paper@16/frozen", "paper@16/predict"}  # CLIP at 16 of its 32 px
    for name in ("paper", "paper/recipe", "paper/frozen", "demo", "paper@16", "paper@16/recipe", "paper@16/frozen"):
        assert set(result[name]["parts"]) == TRAIN_PARTS
        assert {"step_total", "bare_text_fwd_bwd", "peak_rss_mb"} <= set(result[name])
    assert is_number(result["paper/frozen"]["first_step"])
    for name in ("paper/predict", "demo/predict", "paper@16/predict"):
        assert set(result[name]["parts"]) == PREDICT_PARTS
        assert {"batch_total", "bare_text_fwd", "peak_rss_mb"} <= set(result[name])
    for name, entry in result.items():
        if name == "speedups":
            assert set(entry) == {"blank_slot", "one_vision_call", "clip_crop_fwd_bwd", "clip_crop_fwd"}
            assert all(is_number(v) for side in entry.values() for v in side.values())
        else:
            assert entry["pipeline_posts_per_s"] > 0 and entry["model_posts_per_s"] > 0
            assert all(is_number(v) for v in entry["parts"].values())
            assert all(is_number(v) for k, v in entry.items() if k != "parts")
