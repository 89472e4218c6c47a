"""Typed configuration: one YAML file (data / model / loss / decode / train sections) plus
`--set section.key=value` overrides.

Each section holds one concern: `ModelConfig` only what defines the network and its weights,
`LossConfig` matching and loss, `DecodeConfig` how outputs become entities (saved with a model as its
default and overridable at prediction time), `TrainConfig` the optimisation, `DataConfig` where the
posts, images and proposals are. How regions are represented (crops, features, none) is not configured
separately: it follows from `model.vision_encoder` (`ModelConfig.region_mode`).

The resolved configuration is saved with every run (`config.yaml`) and with every model directory
(`config.json`). Files written before the split keep loading: a key in its old section moves to its new
one with a one-line `FutureWarning`.
"""
from __future__ import annotations

import typing
import warnings
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Optional, Union

import yaml

SECTIONS = ("data", "model", "loss", "decode", "train")


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


def _check_choice(section: str, obj, name: str, allowed: tuple[str, ...]) -> None:
    if getattr(obj, name) not in allowed:
        raise ValueError(f"{section}.{name}={getattr(obj, name)!r}: expected one of {', '.join(allowed)}")


@dataclass
class DataConfig:
    """Where the posts, images and proposals are, and how many proposals a post keeps."""

    root: str = ""
    format: str = "gmner"  # gmner | fmnerg
    granularity: str = "coarse"  # fmnerg only: coarse | fine
    xml_dir: Optional[str] = None  # fmnerg: the GMNER v2.0 xml folder (relative to root, or absolute)
    images: Optional[str] = "images"  # relative to root, or absolute; read when regions are crops
    proposals: Optional[str] = "proposals"  # folder of VinVL-style <image>.npz files
    top_k: int = 10  # candidate regions per post: the detector's top-k proposals
    truncate: bool = False  # cut posts past the text encoder's limit (with a warning) instead of refusing them

    def __post_init__(self) -> None:
        check_types(self, "data")
        if self.top_k < 1:
            raise ValueError(f"data.top_k={self.top_k}: expected at least 1")


@dataclass
class ModelConfig:
    """The MQSPN network and nothing else: every field changes the weights or how they are used."""

    types: list[str] = field(default_factory=lambda: ["PER", "LOC", "ORG", "OTHER"])
    type_prompts: dict[str, str] = field(default_factory=dict)  # type -> words in the type prompt (paper: Person, ...)
    # How the frozen encoder's [MASK] / question states enter the queries: none adds them as they are (paper,
    # H_Q = H_Q^e + [H_Q^o]^d; needs text hidden == hidden_size) | frozen: a fixed random orthogonal map |
    # trained: a trained linear map (the CPU recipes, whose small hidden size differs from the encoder's).
    type_query_projection: str = "none"
    text_encoder: str = "tiny"  # tiny | minilm | <local HF model folder>
    vision_encoder: str = "cnn"  # cnn | clip:<local CLIP folder> | features | none
    ungroundable_slot: str = "blank"  # blank (encoding of a blank image, paper) | learned
    crop_size: int = 32  # side of the crop CNN's region crops, in pixels (vision_encoder cnn)
    # Side of a CLIP encoder's crops: None, the tower's own input size (224 for ViT-B/32: the paper); a
    # multiple of its patch size, e.g. 128, interpolates its position embeddings (a speed switch: 16
    # patches a crop instead of 49). Its own key: files saved before it hold crop_size 32 beside a CLIP
    # encoder, which meant the tower's size.
    clip_crop_size: Optional[int] = None
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
    # QFNet refines the words and regions with the queries and the heads read them (paper) | false: only the
    # queries are updated and the heads read the encoders' projected states (the CPU demo's faster form).
    refine_states: bool = True
    # Ablations (paper Table 3); "w/o bipartite matching" is loss.bipartite_matching.
    use_type_queries: bool = True
    learnable_queries: bool = True
    use_cross_attention: bool = True
    use_region_prefix: bool = True
    use_aggregator: bool = True
    # The queries' self-attention in every QFNet layer (DETR's, against duplicate predictions): neither the
    # paper nor the released code has one (see README, "Reproducing the paper").
    use_query_self_attention: bool = True

    def __post_init__(self) -> None:
        check_types(self, "model")
        _check_choice("model", self, "ungroundable_slot", ("blank", "learned"))
        _check_choice("model", self, "type_query_projection", ("none", "frozen", "trained"))
        if not self.vision_encoder.startswith("clip:"):
            _check_choice("model", self, "vision_encoder", ("cnn", "features", "none"))
        if self.word_buckets < 0:
            raise ValueError(f"model.word_buckets={self.word_buckets}: expected 0 (off) or a number of rows")
        self._check_crop_sizes()

    def _check_crop_sizes(self) -> None:
        """Each crop size applies to its own encoder; set for another, it would be silently unused. (A
        multiple of the CLIP tower's patch size is checked when the tower is loaded.)"""
        if self.crop_size < 1:
            raise ValueError(f"model.crop_size={self.crop_size}: expected a side in pixels (at least 1)")
        clip = self.vision_encoder.startswith("clip:")
        if self.clip_crop_size is not None and (not clip or self.clip_crop_size < 1):
            raise ValueError(f"model.clip_crop_size={self.clip_crop_size}: expected a side in pixels for a "
                             f"clip:<folder> encoder (vision_encoder={self.vision_encoder}), or null for the "
                             "tower's own input size" + ("; the crop CNN's side is model.crop_size" if not clip else ""))
        if clip and self.crop_size != ModelConfig.crop_size:
            raise ValueError(f"model.crop_size={self.crop_size} is the crop CNN's and a CLIP encoder does not use it; "
                             "set model.clip_crop_size instead (null: the tower's own input size)")

    @property
    def region_mode(self) -> str:
        """How the data side represents regions for this vision encoder: crops (cnn, clip:<folder>),
        features (the detector's box features) or none (text only)."""
        return {"features": "features", "none": "none"}.get(self.vision_encoder, "crops")


@dataclass
class LossConfig:
    """Bipartite matching and the set-prediction losses."""

    cost_type: float = 1.0
    cost_boundary: float = 1.0
    cost_region: float = 1.0
    loss_type: float = 1.0
    loss_boundary: float = 1.0
    loss_region: float = 1.0
    # Weight of the null class in the type loss: a number, or adaptive (released code: N_gt / (B*u - N_gt)
    # per batch, N_gt the matched queries), which keeps the matched and the null queries in balance.
    null_weight: Union[float, str] = 0.1
    region_loss: str = "bce"  # bce over the k+1 slots (paper) | softmax (slots compete; multi-positive CE)
    max_targets: int = 0  # replicate the gold set up to this many targets (0: no replication)
    bipartite_matching: bool = True  # False: the "w/o bipartite matching" ablation (fixed order)

    def __post_init__(self) -> None:
        check_types(self, "loss")
        _check_choice("loss", self, "region_loss", ("bce", "softmax"))
        if isinstance(self.null_weight, str):
            self.null_weight = _yaml11_float(self.null_weight)
        if isinstance(self.null_weight, str) and self.null_weight != "adaptive":
            raise ValueError(f"loss.null_weight={self.null_weight!r}: expected a number or adaptive")
        if not isinstance(self.null_weight, str) and self.null_weight < 0:
            raise ValueError(f"loss.null_weight={self.null_weight}: expected a number >= 0 or adaptive")


@dataclass
class DecodeConfig:
    """How the last layer's outputs become entities (`mqspn.model.decode`); the defaults are the paper's."""

    max_span_words: int = 12  # longest span considered
    entity_threshold: float = 0.0  # drop queries whose type probability is below this
    decode_rank: str = "type"  # type (paper) | joint: type probability x boundary probabilities
    region_vote: bool = False  # region = argmax of the probabilities averaged over the queries on the same span

    def __post_init__(self) -> None:
        check_types(self, "decode")
        _check_choice("decode", self, "decode_rank", ("type", "joint"))
        if not 0.0 <= self.entity_threshold < 1.0:
            raise ValueError(f"decode.entity_threshold={self.entity_threshold}: expected a probability in [0, 1)")
        if self.max_span_words < 1:
            raise ValueError(f"decode.max_span_words={self.max_span_words}: expected at least 1")


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
    # Each pretrained encoder is frozen for its first N epochs (-1: always frozen, and its outputs cached).
    # Paper: the text encoder for 5 epochs, the visual encoder for the whole run.
    freeze_text_epochs: int = 5
    freeze_vision_epochs: int = -1
    finetune_layers: int = -1  # once released, train only the top N blocks of each pretrained encoder; -1: all
    crop_augment: bool = False  # mirror, shift and re-light each crop of a trained (not frozen) vision encoder
    seed: int = 47
    max_train_posts: int = 0  # 0: all; >0: the first N (quick experiments and tests)
    grad_accumulation: int = 1  # micro-batches per optimizer step; each holds batch_size / N posts
    precision: str = "fp32"  # fp32 | bf16 (torch.autocast on CUDA and CPU)
    # Where a vision tower frozen for the whole run keeps its region encodings (`mqspn.region_cache`):
    # auto (region-cache beside the run folder, where it applies) | off (crops in memory) | <folder>.
    region_cache: str = "auto"
    # Training batches collated (and crop-augmented) in N DataLoader worker processes; 0: in the training
    # process. N > 0 draws the augmentation from per-worker generators seeded from train.seed (runs repeat),
    # another stream than N = 0's.
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.region_cache is False:  # YAML 1.1 reads a bare `off` as false
            self.region_cache = "off"
        check_types(self, "train")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name}={getattr(self, name)}: expected at least 1")
        if self.num_workers < 0:
            raise ValueError(f"train.num_workers={self.num_workers}: expected 0 (collate in the training process) "
                             "or a number of worker processes")
        if self.finetune_layers == 0 or self.finetune_layers < -1:
            raise ValueError(f"train.finetune_layers={self.finetune_layers}: expected -1 (all layers) or N >= 1; "
                             "to keep an encoder frozen use train.freeze_text_epochs=-1 / freeze_vision_epochs=-1")
        for name in ("freeze_text_epochs", "freeze_vision_epochs"):
            if getattr(self, name) < -1:
                raise ValueError(f"train.{name}={getattr(self, name)}: expected -1 (always frozen) or N >= 0 epochs")
        self._check_accumulation_and_precision()

    def _check_accumulation_and_precision(self) -> None:
        _check_choice("train", self, "precision", ("fp32", "bf16"))
        if self.grad_accumulation < 1:
            raise ValueError(f"train.grad_accumulation={self.grad_accumulation}: expected at least 1")
        if self.batch_size % self.grad_accumulation:
            raise ValueError(f"train.batch_size={self.batch_size} does not split into "
                             f"train.grad_accumulation={self.grad_accumulation} micro-batches; use a multiple of it")

    def frozen_at(self, epoch: int) -> dict[str, bool]:
        """Whether each pretrained encoder ("text", "vision") is frozen in `epoch` (0-based)."""
        return {name: n < 0 or epoch < n for name, n in (("text", self.freeze_text_epochs),
                                                          ("vision", self.freeze_vision_epochs))}


CLASSES = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "decode": DecodeConfig, "train": TrainConfig}

#: Keys that lived in another section before the configs were split: (old section, key) -> new section.
MOVED = {
    **{("model", key): "loss" for key in (f.name for f in fields(LossConfig))},
    **{("model", key): "decode" for key in (f.name for f in fields(DecodeConfig))},
    ("model", "crop_augment"): "train",
    ("model", "top_k"): "data",
}
#: Keys whose default changed, with the value older versions built with: a resolved config saved by one of
#: them (a run's config.yaml, a model directory's config.json) lacks the key and means that value.
EARLIER_DEFAULTS = {("model", "type_query_projection"): "trained", ("model", "refine_states"): False,
                    ("train", "region_cache"): "off"}
#: Keys replaced by several new ones: (section, old key) -> the keys that each take its value.
SPLIT = {("train", "freeze_epochs"): ("freeze_text_epochs", "freeze_vision_epochs")}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict, where: str = "config") -> "Config":
        raw = migrate(raw, where)
        unknown = set(raw) - set(SECTIONS)
        if unknown:
            raise ValueError(f"{where}: unknown section(s) {sorted(unknown)}; expected {', '.join(SECTIONS)}")
        return cls(**{name: _build(CLASSES[name], raw.get(name), f"{where}: {name}") for name in SECTIONS})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def fill_earlier_defaults(raw: dict) -> dict:
    """A resolved config dict (saved by `mqspn train`) with the keys it lacks set as its version built them."""
    model = raw.get("model")
    if isinstance(model, dict) and "clip_crop_size" not in model and str(model.get("vision_encoder", "")).startswith("clip:"):
        # Saved before model.clip_crop_size: the crops were the tower's size (what the missing key means)
        # and crop_size, the CNN's, went unused whatever it held.
        raw["model"] = dict(model, crop_size=ModelConfig.crop_size)
    for (section, key), value in EARLIER_DEFAULTS.items():
        if isinstance(raw.get(section), dict):
            raw[section] = {key: value, **raw[section]}
    return raw


def migrate(raw: Optional[dict], where: str) -> dict:
    """A copy of a raw config dict with the keys of the pre-split layout moved to their sections, each
    with a one-line FutureWarning. `data.regions` is dropped: it follows from model.vision_encoder."""
    raw = {name: dict(section or {}) if isinstance(section, dict) else section for name, section in (raw or {}).items()}
    for (old, key), new in MOVED.items():
        if not isinstance(raw.get(old), dict) or key not in raw[old]:
            continue
        target = raw.setdefault(new, {})
        if key in (target or {}):
            raise ValueError(f"{where}: {key} is set in both {old} and {new}; keep {new}.{key} only")
        raw[new] = dict(target or {}, **{key: raw[old].pop(key)})
        warnings.warn(f"{where}: {old}.{key} is now {new}.{key}; move it there", FutureWarning, stacklevel=2)
    for (section, key), new_keys in SPLIT.items():
        if not isinstance(raw.get(section), dict) or key not in raw[section]:
            continue
        both = [k for k in new_keys if k in raw[section]]
        if both:
            raise ValueError(f"{where}: {section}.{key} and {section}.{both[0]} are both set; keep "
                             f"{' and '.join(f'{section}.{k}' for k in new_keys)} only")
        value = raw[section].pop(key)
        raw[section].update({k: value for k in new_keys})
        warnings.warn(f"{where}: {section}.{key} is now {' and '.join(f'{section}.{k}' for k in new_keys)} "
                      f"(set each to {value!r} to keep it); replace it", FutureWarning, stacklevel=2)
    data = raw.get("data")
    if isinstance(data, dict) and "regions" in data:
        regions = data.pop("regions")
        vision = (raw.get("model") or {}).get("vision_encoder", ModelConfig.vision_encoder)
        derived = ModelConfig(vision_encoder=vision).region_mode if isinstance(vision, str) else None
        if derived is not None and regions != derived:
            raise ValueError(f"{where}: data.regions={regions} does not fit model.vision_encoder={vision} "
                             f"(which reads regions as {derived}); remove data.regions, it follows from the encoder")
        warnings.warn(f"{where}: data.regions is no longer needed (it follows from model.vision_encoder); remove it",
                      FutureWarning, stacklevel=2)
    return raw


def _build(cls, raw: Optional[dict], where: str):
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping of keys to values, got {raw!r}")
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


def recipes() -> list[str]:
    """The names of the recipes shipped with the package (`mqspn/configs/<name>.yaml`)."""
    folder = resources.files("mqspn") / "configs"
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def config_path(name: str | Path) -> Path:
    """A config file: an existing path as given, else the shipped recipe of that bare name (`demo`,
    `twitter-gmner`, ...), so recipes work from any directory once the package is installed."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = Path(str(resources.files("mqspn") / "configs" / f"{path.stem}.yaml"))
    if path.parent == Path(".") and path.suffix in ("", ".yaml") and shipped.is_file():
        return shipped
    raise FileNotFoundError(f"config file {path} does not exist, and no shipped recipe has that name "
                            f"(shipped: {', '.join(recipes())})")


def load_config(path: str | Path, overrides: Optional[list[str]] = None, resolved: bool = False) -> Config:
    """Read a YAML config (a path or a shipped recipe's name) and apply `section.key=value` overrides
    (values parsed as YAML). `resolved`: the file is a run's saved config (`fill_earlier_defaults`)."""
    path = config_path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with {', '.join(SECTIONS)} sections")
    if resolved:
        fill_earlier_defaults(raw)
    for item in overrides or []:
        apply_override(raw, item)
    try:
        return Config.from_dict(raw, where=str(path))
    except ValueError as err:  # a section's own check names the key; add the file
        message = str(err)
        raise ValueError(message if message.startswith(f"{path}:") else f"{path}: {message}") from None


def apply_override(raw: dict, item: str, sections: tuple[str, ...] = SECTIONS) -> None:
    """Apply one `section.key=value` override to a raw config dict in place (`sections`: those allowed)."""
    if "=" not in item:
        raise ValueError(f"--set {item!r}: expected section.key=value, e.g. train.epochs=3")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or parts[0] not in sections:
        raise ValueError(f"--set {item!r}: key must be <section>.<name> with section one of {', '.join(sections)}")
    known = {f.name for f in fields(CLASSES[parts[0]])} | {k for (s, k) in [*MOVED, *SPLIT] if s == parts[0]}
    if parts[0] == "data":
        known.add("regions")
    if parts[1] not in known:
        raise ValueError(f"--set {item!r}: unknown key {parts[1]!r} in section {parts[0]}; known: {sorted(known)}")
    raw.setdefault(parts[0], {})
    raw[parts[0]] = dict(raw[parts[0]] or {})
    raw[parts[0]][parts[1]] = yaml.safe_load(value)
