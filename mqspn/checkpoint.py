"""Model directories (`save_pretrained` / `from_pretrained`) and resumable training state.

A model directory holds `config.json` (the model, loss, decode and data sections of the configuration it
was trained with: the network, how its region logits were trained, its default decoding, its dataset's
layout and top-k; and what data trained it), `model.safetensors` (all weights, encoders included),
`checksums.json` (the sha256 of every `.safetensors` file), `text_encoder/` (the encoder's HF config and
tokenizer, so no source folder is needed to load), `vision_encoder/` for CLIP, and `README.md`, a model
card; `last/` of a run adds the training state (`mqspn.state_file`, no pickle). Directories are written
beside their destination and renamed into place, so a kill never leaves a half-written one; they get
the modes the user's umask gives, as any file they write.

Weights are verified against `checksums.json` on loading: a damaged copy that safetensors can still
parse would otherwise predict nonsense (4 MB of 0xFF in the middle of the file predicted no entity at
all). Directories saved before checksums existed load with a `UnverifiedWeightsWarning`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mqspn import state_file
from mqspn.config import Config, ModelConfig, fill_earlier_defaults

#: 2: config.json holds model/loss/decode/data sections; 1 (still read): one model section with them all.
FORMAT_VERSION = 2
SAVED_SECTIONS = ("model", "loss", "decode", "data")
#: The file whose presence marks a directory with a resumable training state.
TRAINING_STATE = state_file.JSON_NAME
#: What older versions wrote (a pickle): never loaded, since loading a pickle runs code.
PICKLED_TRAINING_STATE = "training_state.pt"
CHECKSUMS = "checksums.json"


class UnverifiedWeightsWarning(UserWarning):
    """A model directory without checksums (saved by an older mqspn) was loaded unverified."""


def library_versions() -> dict[str, str]:
    import numpy
    import transformers

    from mqspn import __version__

    return {"mqspn": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def current_umask() -> int:
    umask = os.umask(0o022)  # Python can read the umask only by setting it; set it back at once
    os.umask(umask)
    return umask


def apply_umask(root: Path) -> None:
    """Give `root` and everything under it the modes of a plain `mkdir`/`open`: `tempfile.mkdtemp`
    creates 0700, so a renamed-in directory would otherwise be private to its owner."""
    umask = current_umask()
    os.chmod(root, 0o777 & ~umask)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(Path(folder) / name, 0o777 & ~umask)
        for name in files:
            os.chmod(Path(folder) / name, 0o666 & ~umask)


def _atomic_dir(target: Path, write) -> None:
    """Call write(tmp_dir) then swap tmp_dir into `target` (with the umask's modes)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        apply_umask(tmp)
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks (weights can be gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(directory: Path) -> None:
    """Record the sha256 of every `.safetensors` file of `directory` in `checksums.json`."""
    sums = {p.name: sha256(p) for p in sorted(directory.glob("*.safetensors"))}
    (directory / CHECKSUMS).write_text(json.dumps(sums, indent=2) + "\n")


def verify_checksums(directory: Path, names: Sequence[str]) -> None:
    """Check the files `names` of `directory` against `checksums.json`; a mismatch is a `ValueError`
    naming the file. Without `checksums.json` (saved before checksums existed) warn and go on."""
    listing = directory / CHECKSUMS
    if not listing.is_file():
        warnings.warn(f"{directory} has no {CHECKSUMS} (saved by an older mqspn): its weights are not verified; "
                      "save it again to add checksums", UnverifiedWeightsWarning, stacklevel=3)
        return
    try:
        sums = json.loads(listing.read_text(encoding="utf-8"))
        if not isinstance(sums, dict):
            raise ValueError("expected an object {file name: sha256}")
    except ValueError as err:  # JSON and UTF-8 errors alike
        raise ValueError(f"{listing} is damaged ({err}); re-copy the model directory") from None
    for name in names:
        path = directory / name
        if name not in sums:
            raise ValueError(f"{listing} has no checksum for {name}; re-copy the model directory")
        if sha256(path) != sums[name]:
            raise ValueError(f"{path} is corrupt or truncated: its sha256 differs from the one in {listing} "
                             "(damaged when copied or stored); re-copy or re-train the model, or, if you "
                             "changed the weights on purpose, load with verify=False (mqspn predict --no-verify)")


def training_data(root: str | Path) -> dict:
    """What a model was trained on, for its config.json and card: the dataset folder and whether it is
    the synthetic benchmark (its folder holds the `mqspn synth` marker file)."""
    from mqspn.synth.generate import MARKER

    return {"root": str(root), "synthetic": (Path(root) / MARKER).is_file()}


def read_training_data(directory: str | Path) -> Optional[dict]:
    """The `training_data` recorded in a model directory's config.json (None: not recorded)."""
    path = Path(directory) / "config.json"
    try:
        found = json.loads(path.read_text(encoding="utf-8")).get("training_data")
    except (OSError, ValueError, AttributeError) as err:  # unreadable, not UTF-8 or JSON, not an object
        raise ValueError(f"{path}: not a valid mqspn model config ({err})") from None
    return found if isinstance(found, dict) else None


def save_pretrained(model, directory: str | Path, config: Optional[Config] = None, card: Optional[dict] = None,
                    training_state: Optional[dict] = None, training_data: Optional[dict] = None) -> Path:
    """Write `model` (an `MQSPN`) to `directory`, with the loss/decode/data sections of `config` (the
    run's configuration; default: the defaults) beside its own model config; optional model-card facts,
    training state (`mqspn.state_file`) and `training_data` (see `training_data()`), recorded in
    config.json and the card."""
    directory = Path(directory)
    config = dataclasses.replace(config or Config(), model=model.config)
    facts = dict(card or {}, **({"training data": training_data} if training_data else {}))

    def write(tmp: Path) -> None:
        sections = {name: dataclasses.asdict(getattr(config, name)) for name in SAVED_SECTIONS}
        extra = {"training_data": training_data} if training_data else {}
        (tmp / "config.json").write_text(json.dumps({"format_version": FORMAT_VERSION, **sections, **extra},
                                                    indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        model.text_encoder.backbone.config.save_pretrained(tmp / "text_encoder")
        model.text_encoder.tokenizer.save_pretrained(tmp / "text_encoder")
        if hasattr(model.vision_encoder, "tower"):
            model.vision_encoder.tower.config.save_pretrained(tmp / "vision_encoder")
        (tmp / "README.md").write_text(model_card(model.config, facts))
        if training_state is not None:
            state_file.save_state(training_state, tmp)
        write_checksums(tmp)

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
        sections = fill_earlier_defaults({name: raw[name] for name in SAVED_SECTIONS if name in raw})
        with warnings.catch_warnings():
            # Format 1 is a format of ours, not the user's config file: nothing for them to edit.
            warnings.simplefilter("ignore", FutureWarning)
            return Config.from_dict(sections, where=str(path))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a valid mqspn model config ({err})") from None



def from_pretrained(directory: str | Path, device: str | torch.device = "cpu", verify: bool = True):
    """Load an `MQSPN` from a model directory; every file problem is a clear error naming the file.

    `verify=False` skips the checksum check (for weights edited on purpose)."""
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
    if verify:
        verify_checksums(directory, [weights.name])
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


def load_training_state(directory: str | Path, required: Sequence[str] = ()) -> dict:
    """The training state saved with a model directory (checksum-verified); `required`: the keys the
    caller needs. A pickled state of an older version is refused, never unpickled."""
    directory = Path(directory)
    if not (directory / TRAINING_STATE).is_file() and (directory / PICKLED_TRAINING_STATE).is_file():
        raise ValueError(f"{directory / PICKLED_TRAINING_STATE} is a pickled training state (older mqspn); it is not "
                         "loaded because unpickling can run arbitrary code. Start the run again, or finish it "
                         "with the mqspn version that wrote it")
    if (directory / state_file.TENSORS_NAME).is_file():
        verify_checksums(directory, [state_file.TENSORS_NAME])
    return state_file.load_state(directory, required)
