"""The MQSPN network: encoders -> multi-grained queries -> QFNet -> MSP heads on every layer."""
from __future__ import annotations

import torch
from torch import nn

from mqspn.config import ModelConfig
from mqspn.model.frozen_cache import FrozenCache, crop_keys, text_keys
from mqspn.model.heads import MSPHeads
from mqspn.model.qfnet import QFNet
from mqspn.model.queries import QuerySet, type_words
from mqspn.model.text_encoder import TextEncoder
from mqspn.model.vision_encoder import ClipRegionEncoder, build_vision_encoder
from mqspn.text_features import SHAPES

#: The crop cache's key of the blank image's encoding (crop keys are (shape, dtype, digest) triples).
BLANK_KEY = "blank"


def freeze_below_top_layers(encoder: nn.Module, top: int, name: str) -> None:
    """Freeze the parameters registered before the top `top` blocks of the encoder's layer stack (the
    embeddings and the lower blocks: registration follows the forward order in HF models)."""
    stacks = [m for m in encoder.modules() if isinstance(m, nn.ModuleList) and len(m) > 1]
    if not stacks:
        raise ValueError(f"{name} encoder: no layer stack found, so train.finetune_layers cannot apply; use -1")
    layers = max(stacks, key=len)
    if not 1 <= top <= len(layers):
        raise ValueError(f"train.finetune_layers={top}: the {name} encoder has {len(layers)} layers (use 1..{len(layers)} or -1)")
    first_kept = next(layers[len(layers) - top].parameters())
    for p in encoder.parameters():
        if p is first_kept:
            break
        p.requires_grad_(False)


class MQSPN(nn.Module):
    """forward(batch) -> {"layers": [head outputs per QFNet layer], "text_pad": [B, n], "region_pad": [B, k+1]}.

    Batch keys (see `mqspn.batching.collate`): input_ids/attention_mask/word_index [B, L],
    word_mask/word_shapes/word_hashes [B, n], region_counts (list of k_i), crops [R, 3, S, S] (uint8, or
    float 0..255 once augmented) or region_features [R, D], or a frozen tower's outputs read from the
    region cache (`mqspn.region_cache`): region_encodings [R, H_v] and blank_encoding [H_v].
    """

    def __init__(self, cfg: ModelConfig, pretrained: bool = True) -> None:
        super().__init__()
        self.config = cfg
        h = cfg.hidden_size
        self.text_encoder = TextEncoder.build(cfg.text_encoder, cfg.tiny_text_hidden, pretrained=pretrained)
        self.text_proj = nn.Sequential(nn.Linear(self.text_encoder.hidden_size, h), nn.LayerNorm(h))
        if cfg.word_shape:
            self.shape_embed = nn.Embedding(len(SHAPES), h)
        if cfg.word_buckets:
            self.word_embed = nn.Embedding(cfg.word_buckets, h)
        self.vision_encoder = build_vision_encoder(cfg.vision_encoder, h, pretrained=pretrained)
        if self.vision_encoder is not None:
            self.region_proj = nn.Sequential(nn.Linear(self.vision_encoder.hidden_size, h), nn.LayerNorm(h))
        elif cfg.vision_encoder == "features":
            self.region_proj = nn.Sequential(nn.Linear(cfg.feature_dim, h), nn.LayerNorm(h))
        if cfg.ungroundable_slot == "learned" or self.vision_encoder is None:
            # Feature and text-only modes have no image to blank out: the slot is learned.
            self.ungroundable = nn.Parameter(torch.randn(h) * 0.02)
        self.queries = QuerySet(cfg.num_queries, len(cfg.types), h, self.text_encoder.hidden_size, cfg.query_init_std,
                                cfg.use_type_queries, cfg.learnable_queries, cfg.type_query_projection)
        if pretrained:
            self.queries.compute_prompts(self.text_encoder, type_words(cfg.types, cfg.type_prompts))
        self.qfnet = QFNet(cfg.num_layers, h, cfg.num_heads, cfg.dropout, cfg.refine_states,
                           use_cross_attention=cfg.use_cross_attention, use_region_prefix=cfg.use_region_prefix,
                           use_aggregator=cfg.use_aggregator, use_query_self_attention=cfg.use_query_self_attention)
        self.heads = MSPHeads(h, cfg.head_size, len(cfg.types), cfg.bilinear_scores, cfg.type_uses_region,
                              cfg.region_uses_span)
        self._caches = {"text": FrozenCache(), "vision": FrozenCache()}
        self.frozen = {name: False for name in self.pretrained_encoders()}

    @property
    def crop_size(self) -> int:
        """Side of the region crops: a CLIP tower's (`config.clip_crop_size`, None: its own input size;
        a side that is not a multiple of its patch size is a ValueError), else `config.crop_size`."""
        if isinstance(self.vision_encoder, ClipRegionEncoder):
            return self.vision_encoder.crop_size(self.config.clip_crop_size)
        return self.config.crop_size

    # -- freezing -----------------------------------------------------------------------------------
    def pretrained_encoders(self) -> dict[str, nn.Module]:
        encoders = {"text": self.text_encoder}
        if self.vision_encoder is not None and self.vision_encoder.pretrained:
            encoders["vision"] = self.vision_encoder
        return encoders

    def set_encoders_frozen(self, *, text: bool, vision: bool, top_layers: int = -1) -> None:
        """Freeze (or release) each pretrained encoder; `vision` is ignored when the vision encoder is not a
        pretrained one (a CNN trained from scratch, features, none). Frozen encoders run in eval mode and
        are cached. Released with `top_layers` = N >= 1, only the top N blocks of an encoder (and what
        follows them, e.g. a final norm) train: the backward pass stops there, so a step costs much less."""
        wanted = {"text": text, "vision": vision}
        for name, module in self.pretrained_encoders().items():
            frozen = wanted[name]
            module.requires_grad_(not frozen)
            if not frozen and top_layers >= 0:
                freeze_below_top_layers(module, top_layers, name)
            if frozen != self.frozen[name]:
                # Cached outputs stay valid while the encoder stays frozen: the trainer calls this every
                # epoch, and re-encoding every post each epoch cost a third of a demo epoch.
                self._caches[name] = FrozenCache()
            self.frozen[name] = frozen
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for name, module in self.pretrained_encoders().items():
            if self.frozen[name]:
                module.eval()  # no dropout in a frozen encoder: its cached outputs must be deterministic
        return self

    # -- encoding -----------------------------------------------------------------------------------
    def encode_text(self, batch) -> torch.Tensor:
        """-> [B, n, H] word states of the text encoder; computed once per post while it is frozen."""
        n = batch["word_mask"].shape[1]
        args = (batch["input_ids"], batch["attention_mask"], batch["word_index"])
        if not self.frozen["text"]:
            return self.text_encoder(*args, n)

        def compute(rows):
            with torch.no_grad():
                out = self.text_encoder(*(a[rows] for a in args), n)
            return [out[j, : int(batch["word_mask"][i].sum())] for j, i in enumerate(rows)]

        states = self._caches["text"].get_or_compute(text_keys(*args), compute)
        padded = nn.utils.rnn.pad_sequence(states, batch_first=True)
        return nn.functional.pad(padded, (0, 0, 0, n - padded.shape[1]))

    def _encode_regions(self, batch) -> torch.Tensor:
        """-> [R, h] for all regions of the batch (R > 0), in order."""
        if self.config.vision_encoder == "features":
            return self.region_proj(batch["region_features"])
        if "region_encodings" in batch:
            return self.region_proj(batch["region_encodings"])
        crops = batch["crops"]
        if not self._vision_cached():
            return self.region_proj(self.vision_encoder(crops))
        bounds = torch.tensor([0] + list(batch["region_counts"])).cumsum(0).tolist()

        def compute(rows):
            with torch.no_grad():
                return [self.vision_encoder(crops[bounds[i]: bounds[i + 1]]) if bounds[i + 1] > bounds[i]
                        else crops.new_zeros(0, self.vision_encoder.hidden_size, dtype=torch.float) for i in rows]

        encoded = self._caches["vision"].get_or_compute(crop_keys(crops, batch["region_counts"]), compute)
        return self.region_proj(torch.cat(encoded, 0))

    def _blank_image(self) -> torch.Tensor:
        """-> uint8 [1, 3, S, S]: a blank (white) crop, whose encoding is the ungroundable slot."""
        size = self.crop_size
        return torch.full((1, 3, size, size), 255, dtype=torch.uint8, device=self.text_proj[0].weight.device)

    def _vision_cached(self) -> bool:
        """Whether the crop encoder is a frozen pretrained one, whose outputs are cached per post."""
        return self.frozen.get("vision", False)

    def _ungroundable_slot(self, batch) -> torch.Tensor:
        """-> [h]: slot 0, the encoding of a blank (white) image or a learned vector. A frozen pretrained
        encoder's blank encoding is the same in every forward: it is kept in the crop cache (a CLIP call
        per step otherwise), or comes with the batch from the region cache."""
        if hasattr(self, "ungroundable"):
            return self.ungroundable
        if "blank_encoding" in batch:
            return self.region_proj(batch["blank_encoding"][None])[0]
        if not self._vision_cached():
            return self.region_proj(self.vision_encoder(self._blank_image()))[0]

        def compute(rows):
            with torch.no_grad():
                return [self.vision_encoder(self._blank_image())[0]]

        return self.region_proj(self._caches["vision"].get_or_compute([BLANK_KEY], compute)[0][None])[0]

    def _slot_and_regions(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (slot 0 [h], the batch's regions [R, h], R > 0). A pretrained crop encoder that trains sees
        the blank image and all the crops in one call: a ViT call has a fixed cost per call, and the
        backward pass a second one. The crop CNN keeps its two calls, whose numerics the demo's are."""
        if (hasattr(self, "ungroundable") or self._vision_cached() or "region_encodings" in batch
                or not getattr(self.vision_encoder, "pretrained", False)):
            return self._ungroundable_slot(batch), self._encode_regions(batch)
        crops = batch["crops"]
        both = self.region_proj(self.vision_encoder(torch.cat([self._blank_image().to(crops.dtype), crops])))
        return both[0], both[1:]

    def _region_states(self, batch, batch_size: int):
        counts = list(batch["region_counts"])
        k = max(counts, default=0)
        slot0, encoded = self._slot_and_regions(batch) if sum(counts) else (self._ungroundable_slot(batch), None)
        regions = slot0.new_zeros(batch_size, k + 1, slot0.shape[-1])
        regions[:, 0] = slot0
        slots = torch.arange(k + 1, device=regions.device)[None, :]
        pad = slots > torch.tensor(counts, device=regions.device)[:, None]
        if encoded is not None:
            # One scatter of all the batch's regions (in order) into the slots 1..k_i of their posts.
            regions = regions.masked_scatter(((slots > 0) & ~pad).unsqueeze(-1), encoded)
        return regions, pad

    def forward(self, batch, all_layers: bool | None = None) -> dict:
        """`all_layers`: heads on every QFNet layer (deep supervision) or on the last one only; by
        default all in training and the last in eval, where decoding reads the last layer alone."""
        b = batch["word_mask"].shape[0]
        text = self.text_proj(self.encode_text(batch))
        if self.config.word_shape:
            text = text + self.shape_embed(batch["word_shapes"])
        if self.config.word_buckets:
            text = text + self.word_embed(batch["word_hashes"] % self.config.word_buckets)
        text_pad = ~batch["word_mask"]
        regions, region_pad = self._region_states(batch, b)
        states = self.qfnet(self.queries(b), text, text_pad, regions, region_pad)
        if not (self.training if all_layers is None else all_layers):
            states = states[-1:]
        # Each layer's heads read that layer's queries, words and regions (refined unless refine_states is off).
        layers = [self.heads(q, t, text_pad, r, region_pad) for q, t, r in states]
        return {"layers": layers, "text_pad": text_pad, "region_pad": region_pad}
