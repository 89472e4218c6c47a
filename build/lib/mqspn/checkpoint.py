"""Model directories (`save_pretrained` / `from_pretrained`) and resumable training state.

A model directory holds `config.json` (the model, loss, decode and data sections of the configuration it
was trained with: the network, how its region logits were trained, its default decoding, and its
dataset's layout and top-k), `model.safetensors` (all weights,
encoders included), `text_encoder/` (the encoder's HF config and tokenizer, so no source folder is
needed to load), `vision_encoder/` for CLIP, and `README.md`, a model card. Directories and files are
written beside their destination and renamed into place, so a kill never leaves a half-written one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mqspn.config import Config, ModelConfig

#: 2: config.json holds model/loss/decode/data sections; 1 (still read): one model section with them all.
FORMAT_VERSION = 2
SAVED_SECTIONS = ("model", "loss", "decode", "data")
TRAINING_STATE = "training_state.pt"


def library_versions() -> dict[str, str]:
    import numpy
    import transformers

    from mqspn import __version__

    return {"mqspn": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def _atomic_dir(target: Path, write) -> None:
    """Call write(tmp_dir) then swap tmp_dir into `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_pretrained(model, directory: str | Path, config: Optional[Config] = None, card: Optional[dict] = None,
                    training_state: Optional[dict] = None) -> Path:
    """Write `model` (an `MQSPN`) to `directory`, with the loss/decode/data sections of `config` (the
    run's configuration; default: the defaults) beside its own model config; optional model-card facts
    and training state."""
    directory = Path(directory)
    config = dataclasses.replace(config or Config(), model=model.config)

    def write(tmp: Path) -> None:
        sections = {name: dataclasses.asdict(getattr(config, name)) for name in SAVED_SECTIONS}
        (tmp / "config.json").write_text(json.dumps({"format_version": FORMAT_VERSION, **sections}, indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        model.text_encoder.backbone.config.save_pretrained(tmp / "text_encoder")
        model.text_encoder.tokenizer.save_pretrained(tmp / "text_encoder")
        if hasattr(model.vision_encoder, "tower"):
            model.vision_encoder.tower.config.save_pretrained(tmp / "vision_encoder")
        (tmp / "README.md").write_text(model_card(model.config, card or {}))
        if training_state is not None:
            torch.save(training_state, tmp / TRAINING_STATE)

    _atomic_dir(directory, write)
    return directory


def model_card(cfg: ModelConfig, facts: dict) -> str:
    lines = ["# MQSPN model", "", "Grounded multimodal NER model trained with the `mqspn` library.", "",
             "## Load", "", "```python", "from mqspn import Predictor",
             "predictor = Predictor.from_pretrained('<this folder>')",
             "print(predictor.predict('text of the post', image='post.jpg', proposals='post.jpg.npz'))", "```", "",
             "## Facts", ""]
    for key, value in {"types": ", ".join(cfg.types), "text encoder": cfg.text_encoder,
                       "vision encoder": cfg.vision_encoder, "queries": cfg.num_queries,
                       "QFNet layers": cfg.num_layers, **facts, "library versions": library_versions()}.items():
        lines.append(f"- **{key}**: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    return "\n".join(lines) + "\n"


def read_config(directory: str | Path) -> Config:
    """The configuration saved in a model directory (its train section: the defaults). A directory of
    format 1 (everything in one model section) is read with its keys moved to their sections."""
    directory = Path(directory)
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a model directory: {path.name} is missing "
                                "(give a folder written by `mqspn train`, e.g. RUN/best)")
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
            raise ValueError("no model section")
        sections = {name: raw[name] for name in SAVED_SECTIONS if name in raw}
        with warnings.catch_warnings():
            # Format 1 is a format of ours, not the user's config file: nothing for them to edit.
            warnings.simplefilter("ignore", FutureWarning)
            return Config.from_dict(sections, where=str(path))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a valid mqspn model config ({err})") from None



def from_pretrained(directory: str | Path, device: str | torch.device = "cpu"):
    """Load an `MQSPN` from a model directory; every file problem is a clear error naming the file."""
    from mqspn.build import build_model

    directory = Path(directory)
    cfg = read_config(directory).model
    build_cfg = dataclasses.replace(cfg, text_encoder=str(directory / "text_encoder"))
    if cfg.vision_encoder.startswith("clip:"):
        build_cfg = dataclasses.replace(build_cfg, vision_encoder=f"clip:{directory / 'vision_encoder'}")
    model = build_model(build_cfg, pretrained=False)
    model.config = cfg
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: the model directory is incomplete")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{weights} is corrupt or truncated ({err}); re-copy or re-train the model") from None
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # tensors of another shape than the configuration builds
        raise ValueError(f"{weights} does not fit the configuration in {directory / 'config.json'}: "
                         f"{str(err).splitlines()[-1].strip()}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{weights} does not fit the configuration in {directory / 'config.json'}: "
                         f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return model.to(device).eval()


def load_training_state(directory: str | Path) -> dict:
    path = Path(directory) / TRAINING_STATE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: nothing to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a damaged pickle/zip
        raise ValueError(f"{path} is corrupt or truncated ({err})") from None
