"""`Predictor(..., precision="bf16")` and `mqspn predict --precision bf16`: the model under bf16 autocast
(on a CPU here: the path, not its speed)."""
from __future__ import annotations

import json

import pytest
import torch

from helpers_model import hand_posts, scene, tiny_model
from mqspn.checkpoint import save_pretrained
from mqspn.cli import main
from mqspn.predictor import Predictor


def predict_with_logits(predictor: Predictor) -> tuple[list, torch.Tensor]:
    """(the entities of the first hand-made post, the last layer's type logits of its forward)."""
    seen = []
    hook = predictor.model.heads.register_forward_hook(lambda module, args, output: seen.append(output["type_logits"]))
    (post, regions), _, _ = hand_posts()
    try:
        result = predictor.predict(post.words, image=scene(), proposals=[list(r.box) for r in regions])
    finally:
        hook.remove()
    return result.entities, seen[-1]


def test_bf16_prediction_runs_under_autocast_and_stays_near_fp32():
    model = tiny_model(seed=3).eval()
    with torch.no_grad():
        model.heads.classify[-1].bias[-1] -= 10.0  # make the null class unlikely: entities to compare
    full, full_logits = predict_with_logits(Predictor(model, "cpu"))
    half, half_logits = predict_with_logits(Predictor(model, "cpu", precision="bf16"))
    assert full_logits.dtype == torch.float32 and half_logits.dtype == torch.bfloat16
    torch.testing.assert_close(half_logits.float(), full_logits, atol=0.1, rtol=0.05)
    assert full and len(half) == len(full)
    assert all(0.0 <= e.score <= 1.0 for e in half)
    assert next(model.parameters()).dtype == torch.float32  # autocast leaves the weights as they are


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match=r"precision='fp16': expected one of fp32, bf16"):
        Predictor(tiny_model(), "cpu", precision="fp16")


def test_cli_predict_takes_precision(tmp_path, capsys):
    directory = save_pretrained(tiny_model(seed=3).eval(), tmp_path / "m")
    image = tmp_path / "post.png"
    scene().save(image)
    (post, regions), _, _ = hand_posts()
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"post.png": [list(r.box) for r in regions]}))
    assert main(["predict", "--model", str(directory), "--text", " ".join(post.words), "--image", str(image),
                 "--boxes", str(boxes), "--precision", "bf16", "--no-progress"]) == 0
    assert '"entities"' in capsys.readouterr().out
