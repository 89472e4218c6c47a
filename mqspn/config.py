"""Typed configuration: one YAML file (data / model / train sections) plus `--set key=value` overrides.

The resolved configuration is saved with every run (`config.yaml`) and the model part with every
checkpoint (`config.json`), so a model directory is self-describing.
"""
from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

import yaml


def _yaml11_float(value):
    """YAML 1.1 reads `1e-4` (no dot) as a string: such a string becomes the float it spells."""
    try:
        return float(value)
    except ValueError:
        return value


def check_types(obj, where: str) -> None:
    """ValueError naming the key when a value has the wrong type (YAML and JSON carry any type)."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value, hint = getattr(obj, f.name), hints[f.name]
        if hint is float and isinstance(value, str):
            value = _yaml11_float(value)
            setattr(obj, f.name, value)
        allowed = tuple(t for t in typing.get_args(hint) if t is not type(None)) if typing.get_origin(hint) is typing.Union else (hint,)
        allowed = tuple(typing.get_origin(t) or t for t in allowed)
        if value is None and type(None) in typing.get_args(hint):
            continue
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            names = " or ".join(t.__name__ for t in allowed)
            raise ValueError(f"{where}: {f.name}={value!r} should be {names}")


@dataclass
class DataConfig:
    """Where the posts, images and proposals are, and how regions are represented."""

    root: str = ""
    format: str = "gmner"  # gmner | fmnerg
    granularity: str = "coarse"  # fmnerg only: coarse | fine
    xml_dir: Optional[str] = None  # fmnerg: the GMNER v2.0 xml folder (relative to root, or absolute)
    images: Optional[str] = "images"  # relative to root, or absolute; used by regions=crops
    proposals: Optional[str] = "proposals"  # folder of VinVL-style <image>.npz files
    regions: str = "crops"  # crops (encode each crop) | features (detector box_features) | none (text only)
    truncate: bool = False  # cut posts past the text encoder's limit (with a warning) instead of refusing them

    def __post_init__(self) -> None:
        check_types(self, "data")


@dataclass
class ModelConfig:
    """The MQSPN architecture. Field names follow spec section 3."""

    types: list[str] = field(default_factory=lambda: ["PER", "LOC", "ORG", "OTHER"])
    type_prompts: dict[str, str] = field(default_factory=dict)  # type -> words in the type prompt
    text_encoder: str = "tiny"  # tiny | minilm | <local HF model folder>
    vision_encoder: str = "cnn"  # cnn | clip:<local CLIP folder> | features | none
    ungroundable_slot: str = "blank"  # blank (encoding of a blank image, paper) | learned
    crop_size: int = 32
    crop_augment: bool = False  # training: mirror, shift and re-light each crop (encoders that are trained, not cached)
    top_k: int = 10
    feature_dim: int = 2048  # vision_encoder=features: the detector feature size
    hidden_size: int = 128
    head_size: int = 64
    num_heads: int = 4
    num_layers: int = 3
    num_queries: int = 20
    query_init_std: float = 0.02  # entity-grained queries ~ N(0, std^2); paper 0.02
    dropout: float = 0.1
    tiny_text_hidden: int = 32  # size of the random-init text encoder used by tests
    # Paper-vs-code choices (spec section 3), each switchable.
    type_uses_region: bool = True  # classification features include P_r V (paper) or not (released code)
    region_uses_span: bool = False  # the region scorer sees the query plus the text its boundary pointers select
    bilinear_scores: bool = False  # add a bilinear query-candidate term to the boundary/region scores
    word_shape: bool = False  # add a learned word-shape embedding (casing) to the text states; for uncased encoders
    word_buckets: int = 0  # >0: add a learned embedding of each word's identity, hashed into this many rows
    # Ablations (paper Table 3).
    use_type_queries: bool = True
    learnable_queries: bool = True
    use_cross_attention: bool = True
    use_region_prefix: bool = True
    use_aggregator: bool = True
    bipartite_matching: bool = True
    # Matching and loss.
    cost_type: float = 1.0
    cost_boundary: float = 1.0
    cost_region: float = 1.0
    loss_type: float = 1.0
    loss_boundary: float = 1.0
    loss_region: float = 1.0
    null_weight: float = 0.1
    region_loss: str = "bce"  # bce over the k+1 slots (paper) | softmax (slots compete; multi-positive CE)
    max_targets: int = 0  # replicate the gold set up to this many targets (0: no replication)
    # Decoding (mqspn.model.decode); the defaults are the paper's.
    max_span_words: int = 12  # longest span considered
    entity_threshold: float = 0.0  # drop queries whose type probability is below this
    decode_rank: str = "type"  # type (paper) | joint: type probability x boundary probabilities
    region_vote: bool = False  # region = argmax of the probabilities averaged over the queries on the same span

    def __post_init__(self) -> None:
        check_types(self, "model")
        for name, allowed in (("region_loss", ("bce", "softmax")), ("ungroundable_slot", ("blank", "learned")),
                              ("decode_rank", ("type", "joint"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"model.{name}={getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        if self.word_buckets < 0:
            raise ValueError(f"model.word_buckets={self.word_buckets}: expected 0 (off) or a number of rows")
        if not 0.0 <= self.entity_threshold < 1.0:
            raise ValueError(f"model.entity_threshold={self.entity_threshold}: expected a probability in [0, 1)")


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 16
    eval_batch_size: int = 32
    lr: float = 1e-3  # fusion net and heads
    encoder_lr: float = 2e-5  # pretrained encoders once unfrozen
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of all steps
    clip_norm: float = 1.0
    freeze_epochs: int = 5  # pretrained encoders frozen for these first epochs; -1: always frozen
    finetune_layers: int = -1  # once released, train only the top N blocks of each pretrained encoder; -1: all
    seed: int = 47
    max_train_posts: int = 0  # 0: all; >0: the first N (quick experiments and tests)
    progress: bool = True

    def __post_init__(self) -> None:
        check_types(self, "train")
        if self.finetune_layers == 0 or self.finetune_layers < -1:
            raise ValueError(f"train.finetune_layers={self.finetune_layers}: expected -1 (all layers) or N >= 1; "
                             "to keep the encoders frozen use train.freeze_epochs=-1")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict, where: str = "config") -> "Config":
        raw = dict(raw or {})
        unknown = set(raw) - {"data", "model", "train"}
        if unknown:
            raise ValueError(f"{where}: unknown section(s) {sorted(unknown)}; expected data, model, train")
        return cls(
            data=_build(DataConfig, raw.get("data"), f"{where}: data"),
            model=_build(ModelConfig, raw.get("model"), f"{where}: model"),
            train=_build(TrainConfig, raw.get("train"), f"{where}: train"),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _build(cls, raw: Optional[dict], where: str):
    raw = dict(raw or {})
    names = {f.name for f in fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known keys: {sorted(names)}")
    return cls(**raw)


def resolve(root: str, value: Optional[str]) -> Optional[Path]:
    """A data path of the config: absolute as given, else relative to the dataset root."""
    if value is None:
        return None
    path = Path(value)
    return path if path.is_absolute() else Path(root) / path


def load_config(path: str | Path, overrides: Optional[list[str]] = None) -> Config:
    """Read a YAML config and apply `section.key=value` overrides (values parsed as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with data/model/train sections")
    for item in overrides or []:
        apply_override(raw, item)
    try:
        return Config.from_dict(raw, where=str(path))
    except ValueError as err:  # a section's own check names the key; add the file
        message = str(err)
        raise ValueError(message if message.startswith(f"{path}:") else f"{path}: {message}") from None


def apply_override(raw: dict, item: str) -> None:
    """Apply one `section.key=value` override to a raw config dict in place."""
    if "=" not in item:
        raise ValueError(f"--set {item!r}: expected section.key=value, e.g. train.epochs=3")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or parts[0] not in ("data", "model", "train"):
        raise ValueError(f"--set {item!r}: key must be data.<name>, model.<name> or train.<name>")
    known = {f.name for f in fields({"data": DataConfig, "model": ModelConfig, "train": TrainConfig}[parts[0]])}
    if parts[1] not in known:
        raise ValueError(f"--set {item!r}: unknown key {parts[1]!r} in section {parts[0]}; known: {sorted(known)}")
    raw.setdefault(parts[0], {})
    raw[parts[0]] = dict(raw[parts[0]] or {})
    raw[parts[0]][parts[1]] = yaml.safe_load(value)

