"""Inference API: load a model directory and predict quadruples for one post or a whole split.

    from mqspn import Predictor
    predictor = Predictor.from_pretrained("runs/demo/best")
    post = predictor.predict("Jordan scored 30 points", image="post.jpg", proposals="post.jpg.npz")

The decoding saved with the model is the default; `decode=` overrides any of its keys without
retraining, e.g. `Predictor.from_pretrained(dir, decode={"entity_threshold": 0.7})`. `precision="bf16"`
runs the model under bf16 autocast (a GPU's bf16 units; on a CPU it works, seldom faster).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch
from PIL import Image

from mqspn import checkpoint
from mqspn.batching import Example, ExampleBuilder, PostDataset, collate
from mqspn.build import build_decoder, build_examples
from mqspn.config import Config, DataConfig, DecodeConfig
from mqspn.engine import PRECISIONS, autocast, predict_batches
from mqspn.images import load_image
from mqspn.proposals import BoxesJson, ProposalSource, fit_regions, read_vinvl
from mqspn.types import Entity, Post, Region, as_box, text_words

ProposalsArg = Union[str, Path, ProposalSource, Sequence[Region], Sequence[Sequence[float]], None]
DecodeArg = Union[DecodeConfig, Mapping[str, object], None]


def decode_config(base: DecodeConfig, decode: DecodeArg) -> DecodeConfig:
    """`base` with the keys of `decode` replaced (a whole `DecodeConfig`, or a mapping of some keys)."""
    if decode is None or isinstance(decode, DecodeConfig):
        return decode or base
    unknown = set(decode) - {f.name for f in dataclasses.fields(DecodeConfig)}
    if unknown:
        raise ValueError(f"decode: unknown key(s) {sorted(unknown)}; known: {[f.name for f in dataclasses.fields(DecodeConfig)]}")
    return dataclasses.replace(base, **decode)


class Predictor:
    """A trained MQSPN model ready for inference (eval mode, no gradient).

    `config`: the configuration saved with the model (its loss, decode and data sections); `decode`
    overrides keys of its decode section; `training_data`: what the model was trained on
    (`checkpoint.training_data`: root, synthetic), None when unknown; `precision`: fp32, or bf16 (the
    forward and decoding under torch.autocast; scores then carry bf16's 3 significant digits).
    """

    def __init__(self, model, device: Optional[str] = None, config: Optional[Config] = None,
                 decode: DecodeArg = None, training_data: Optional[dict] = None, precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.config = dataclasses.replace(config or Config(), model=model.config)
        self.config.decode = decode_config(self.config.decode, decode)
        self.decoder = build_decoder(model.config, self.config.decode, self.config.loss)
        self.mode = model.config.region_mode
        self.training_data = training_data

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: Optional[str] = None, decode: DecodeArg = None,
                        verify: bool = True, precision: str = "fp32") -> "Predictor":
        """`decode`: keys of the saved decoding to replace; `verify=False` loads weights that differ from
        their recorded checksum (edited on purpose); `precision`: fp32 or bf16."""
        return cls(checkpoint.from_pretrained(directory, verify=verify), device, checkpoint.read_config(directory),
                   decode, checkpoint.read_training_data(directory), precision)

    @property
    def types(self) -> list[str]:
        return list(self.model.config.types)

    @property
    def top_k(self) -> int:
        """Candidate regions per post, as in training."""
        return self.config.data.top_k

    def builder(self, data: Optional[DataConfig] = None, proposals: Optional[ProposalSource] = None,
                image_dir: Optional[Path] = None) -> ExampleBuilder:
        return build_examples(self.model, data, proposals, image_dir, truncate=True)  # one long post never stops a split

    def _regions(self, proposals: ProposalsArg, image_name: str) -> list[Region]:
        k = self.top_k
        if proposals is None:
            raise ValueError("this model grounds entities in candidate regions: give proposals "
                             "(a VinVL .npz file, a boxes JSON file, a list of boxes, or a ProposalSource "
                             "such as mqspn.proposals.SelectiveSearch)")
        if isinstance(proposals, (str, Path)):
            path = Path(proposals)
            if path.suffix == ".npz":
                return read_vinvl(path, k, with_features=self.mode == "features")[0]
            if path.suffix == ".json":
                return BoxesJson(path, k).regions(image_name)
            raise ValueError(f"{path}: proposals must be a VinVL .npz file or a boxes .json file")
        if isinstance(proposals, ProposalSource):
            return proposals.regions(image_name)[:k]
        regions = [r if isinstance(r, Region) else Region(as_box(r, f"proposal {i}"), score=1.0)
                   for i, r in enumerate(proposals)]
        return regions[:k]

    def _prepare(self, text: Union[str, Sequence[str]], image: Union[str, Path, Image.Image, None] = None,
                 proposals: ProposalsArg = None, post_id: str = "input") -> tuple[Post, Example]:
        """(the post as given, its model input); every problem with the input is a `ValueError` here, before
        the model runs. The input's post may be cut to the encoder's limit; the post returned is whole."""
        words = text_words(text)
        name = Path(image).name if isinstance(image, (str, Path)) else f"{post_id}.jpg"
        post = Post(post_id, words, [], image=name)
        regions: list[Region] = []
        pil = None
        if self.mode != "none":
            if self.mode == "crops":
                if image is None:
                    raise ValueError("this model encodes region crops: give the post's image")
                pil = image.convert("RGB") if isinstance(image, Image.Image) else load_image(Path(image))
            regions = self._regions(proposals, name)
            if pil is not None:
                regions = fit_regions(proposals, name, regions, pil.size, str(image) if isinstance(image, (str, Path)) else name)
        return post, self.builder().build(post, regions=regions, image=pil)

    def predict(self, text: Union[str, Sequence[str]], image: Union[str, Path, Image.Image, None] = None,
                proposals: ProposalsArg = None, post_id: str = "input") -> Post:
        """Predict the entities of one post. `text` is a string (split on white space) or a word list.

        Returns a `Post` whose `entities` are the predictions (each with at most one box and a score).
        """
        return self.predict_many([dict(text=text, image=image, proposals=proposals, post_id=post_id)])[0]

    def predict_many(self, items: Sequence[dict]) -> list[Post]:
        """Predict several posts in one model batch; each item holds the keyword arguments of `predict`.

        Batching is what a server gains from concurrent requests; the answers equal one-by-one `predict`s.
        """
        prepared = [self._prepare(**item) for item in items]
        ids = [post.id for post, _ in prepared]
        if len(set(ids)) < len(ids):
            raise ValueError(f"predict_many: every item needs its own post_id, got {ids}")
        entities = self._predict_batches([collate([example for _, example in prepared])], progress=False)
        for post, _ in prepared:
            post.entities = entities[post.id]
        return [post for post, _ in prepared]

    def predict_posts(self, posts: Sequence[Post], data: Optional[DataConfig] = None,
                      proposals: Optional[ProposalSource] = None, image_dir: Optional[Path] = None,
                      batch_size: int = 32, progress: bool = True) -> dict[str, list[Entity]]:
        """Predict every post of a split. Images and proposals come from the folders of the dataset `data`
        (resolved as in training), or from `image_dir` / `proposals` where given."""
        loader = torch.utils.data.DataLoader(PostDataset(posts, self.builder(data, proposals, image_dir)),
                                             batch_size=batch_size, collate_fn=collate)
        return self._predict_batches(loader, progress)

    def _predict_batches(self, batches, progress: bool) -> dict[str, list[Entity]]:
        """`engine.predict_batches` of the model at this predictor's precision."""
        with autocast(self.device, self.precision):
            return predict_batches(self.model, batches, self.device, self.decoder, progress)
