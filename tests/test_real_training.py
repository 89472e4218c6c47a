"""Training on the real annotations (no images): text-only GMNER and FMNERG at both granularities.

Tiny random-init models and a few steps: these check that the real files flow through training,
prediction and the standard metric, not the scores themselves (see bench/real_text.py for those).
"""
from __future__ import annotations

import pytest
import yaml

from conftest import FMNERG_DIR, GMNER_DIR, needs_shared
from mqspn.config import Config, DataConfig, ModelConfig, TrainConfig
from mqspn.data.datasets import read_split
from mqspn.metric import score
from mqspn.predictions import read_predictions
from mqspn.trainer import Run

pytestmark = [needs_shared, pytest.mark.slow]


def text_only_config(root, queries: int, **data) -> Config:
    return Config(
        data=DataConfig(root=str(root), images=None, proposals=None, **data),
        model=ModelConfig(types=[], text_encoder="tiny", vision_encoder="none", hidden_size=32, head_size=16,
                          num_heads=2, num_layers=1, num_queries=queries, tiny_text_hidden=32),
        train=TrainConfig(epochs=1, batch_size=16, eval_batch_size=128, max_train_posts=64, progress=False),
    )


def test_text_only_training_on_the_real_gmner_split_scores_with_the_standard_metric(tmp_path):
    result = Run.start(text_only_config(GMNER_DIR, queries=8), tmp_path / "run").run()
    test = read_split(GMNER_DIR, "test")
    preds = read_predictions(tmp_path / "run" / "test_predictions.jsonl", gold=test)
    assert len(preds) == 1500
    assert all(e.box is None for ents in preds.values() for e in ents)  # text only: every region None
    rescored = score(test, preds)
    assert rescored["gmner"] == result["gmner"] and rescored["mner"]["n_gold"] == 2543
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


@pytest.mark.parametrize("granularity,types", [("fine", 51), ("coarse", 8)])
def test_fmnerg_trains_at_both_granularities(tmp_path, granularity, types):
    cfg = text_only_config(FMNERG_DIR, queries=types, format="fmnerg", granularity=granularity,
                           xml_dir=str(GMNER_DIR / "xml"))
    result = Run.start(cfg, tmp_path / granularity).run()
    resolved = (tmp_path / granularity / "config.yaml").read_text()
    assert f"granularity: {granularity}" in resolved
    test = read_split(FMNERG_DIR, "test", "fmnerg", granularity, GMNER_DIR / "xml")
    assert result["mner"]["n_gold"] == sum(len(p.entities) for p in test)
    preds = read_predictions(tmp_path / granularity / "test_predictions.jsonl", gold=test)
    predicted_types = {e.type for ents in preds.values() for e in ents}
    gold_types = {e.type for p in test for e in p.entities}
    learned = read_types(tmp_path / granularity)
    assert len(learned) == types and gold_types <= set(learned) and predicted_types <= set(learned)
    if granularity == "fine":
        assert "sports_team" in learned  # full type names, never truncated


def read_types(run_dir) -> list[str]:
    """The types a run resolved from its training split (config.yaml)."""
    return yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["types"]
