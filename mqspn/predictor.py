"""Inference API: load a model directory and predict quadruples for one post or a whole split.

    from mqspn import Predictor
    predictor = Predictor.from_pretrained("runs/demo/best")
    post = predictor.predict("Jordan scored 30 points", image="post.jpg", proposals="post.jpg.npz")
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from PIL import Image

from mqspn import checkpoint
from mqspn.batching import Example, ExampleBuilder, PostDataset, collate, load_image
from mqspn.engine import predict_batches
from mqspn.proposals import BoxesJson, ProposalSource, read_vinvl
from mqspn.types import Entity, Post, Region, as_box

ProposalsArg = Union[str, Path, ProposalSource, Sequence[Region], Sequence[Sequence[float]], None]


def region_mode(vision_encoder: str) -> str:
    """How a model with this vision encoder represents regions: crops | features | none."""
    return {"features": "features", "none": "none"}.get(vision_encoder, "crops")


class Predictor:
    """A trained MQSPN model ready for inference (eval mode, no gradient)."""

    def __init__(self, model, device: Optional[str] = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.mode = region_mode(model.config.vision_encoder)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: Optional[str] = None) -> "Predictor":
        return cls(checkpoint.from_pretrained(directory), device)

    @property
    def types(self) -> list[str]:
        return list(self.model.config.types)

    def builder(self, proposals: Optional[ProposalSource] = None, image_dir: Optional[Path] = None) -> ExampleBuilder:
        cfg = self.model.config
        return ExampleBuilder(self.model.text_encoder.tokenize, cfg.types, self.mode, self.model.crop_size,
                              proposals, image_dir)

    def _regions(self, proposals: ProposalsArg, image_name: str) -> list[Region]:
        k = self.model.config.top_k
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

    def example(self, text: Union[str, Sequence[str]], image: Union[str, Path, Image.Image, None] = None,
                proposals: ProposalsArg = None, post_id: str = "input") -> Example:
        """One post as a model input; every problem with the input is a `ValueError` here, before the model runs."""
        words = text.split() if isinstance(text, str) else list(text)
        if not words:
            raise ValueError("empty text: nothing to predict")
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
        return self.builder().build(post, regions=regions, image=pil)

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
        examples = [self.example(**item) for item in items]
        ids = [e.post.id for e in examples]
        if len(set(ids)) < len(ids):
            raise ValueError(f"predict_many: every item needs its own post_id, got {ids}")
        entities = predict_batches(self.model, [collate(examples)], self.device, progress=False)
        for example in examples:
            example.post.entities = entities[example.post.id]
        return [example.post for example in examples]

    def predict_posts(self, posts: Sequence[Post], proposals: Optional[ProposalSource] = None,
                      image_dir: Optional[Path] = None, batch_size: int = 32,
                      progress: bool = True) -> dict[str, list[Entity]]:
        """Predict every post of a split; images are read from `image_dir`, regions from `proposals`."""
        loader = torch.utils.data.DataLoader(PostDataset(posts, self.builder(proposals, image_dir)),
                                             batch_size=batch_size, collate_fn=collate)
        return predict_batches(self.model, loader, self.device, progress)
