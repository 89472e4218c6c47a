"""`mqspn predict`: quadruples for a whole split (JSON Lines) or for one post (printed as JSON)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="predict entities for a split or for one text + image",
        description="Either --data/--split/--out (a whole split, written as JSON Lines in the public "
                    "predictions format) or --text [--image ...] (one post, printed as JSON).",
    )
    p.add_argument("--model", required=True, help="model directory (e.g. RUN/best)")
    split = p.add_argument_group("a whole split")
    split.add_argument("--data", help="dataset root (Twitter-GMNER layout)")
    split.add_argument("--split", default="test", choices=("train", "dev", "test"))
    split.add_argument("--out", help="predictions file to write (.jsonl)")
    split.add_argument("--format", choices=("gmner", "fmnerg"), help="default: the model's training data format")
    split.add_argument("--granularity", choices=("coarse", "fine"), help="default: the model's training granularity")
    split.add_argument("--xml", help="xml folder (fmnerg: the GMNER v2.0 xml)")
    split.add_argument("--images", help="image folder (default: DATA/<the model's data.images>, e.g. DATA/images)")
    split.add_argument("--proposals-dir", help="folder of VinVL <image>.npz files (default: DATA/<the model's "
                                               "data.proposals>, e.g. DATA/proposals or DATA/vinvl)")
    one = p.add_argument_group("one post")
    one.add_argument("--text", help="the post's text (words split on white space)")
    one.add_argument("--image", help="the post's image file")
    one.add_argument("--proposals", help="VinVL .npz file of the image")
    one.add_argument("--boxes", help="JSON file of candidate boxes from any detector")
    one.add_argument("--proposer", choices=("selective-search",),
                     help="built-in proposer when there is no proposal file (needs opencv-contrib-python-headless)")
    one.add_argument("--draw", help="write the image with the predicted boxes and labels to this PNG")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="decode.KEY=VALUE",
                   help="override the model's saved decoding, e.g. --set decode.entity_threshold=0.7 (repeatable)")
    split.add_argument("--json", action="store_true",
                       help="print a summary object {posts, seconds, posts_per_s, out} on stdout")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: the model under bf16 autocast (for a GPU's bf16 units; default fp32)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars (the split's shows posts/s)")
    p.add_argument("--no-verify", action="store_true",
                   help="load weights that differ from the checksums saved with them (edited on purpose)")
    p.set_defaults(func=run)


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse wrong argument combinations before the model is loaded (which takes seconds)."""
    if (args.text is None) == (args.data is None):
        raise ValueError("give either --text (one post) or --data with --split and --out (a whole split)")
    if args.data is not None and not args.out:
        raise ValueError("--data needs --out FILE.jsonl for the predictions")
    if args.text is None:
        return
    if args.json:
        raise ValueError("--json summarises a whole split (--data); with --text the answer is JSON already")
    if not args.text.split():
        raise ValueError("empty text: nothing to predict (--text)")
    if sum(bool(x) for x in (args.proposals, args.boxes, args.proposer)) > 1:
        raise ValueError("give only one of --proposals, --boxes and --proposer")
    for flag, value in (("--boxes", args.boxes), ("--proposer", args.proposer), ("--draw", args.draw)):
        if value and not args.image:
            raise ValueError(f"{flag} needs --image")
    for flag, value in (("--image", args.image), ("--proposals", args.proposals), ("--boxes", args.boxes)):
        if value and not Path(value).is_file():
            raise FileNotFoundError(f"{value} not found ({flag})")


def run(args: argparse.Namespace) -> int:
    from mqspn.config import DecodeConfig, apply_override

    check_arguments(args)
    raw: dict = {}
    for item in args.overrides:
        apply_override(raw, item, sections=("decode",))
    DecodeConfig(**raw.get("decode", {}))  # each value checked now, before the model loads
    from mqspn.predictor import Predictor

    predictor = Predictor.from_pretrained(args.model, decode=raw.get("decode"), verify=not args.no_verify,
                                          precision=args.precision)
    if (predictor.training_data or {}).get("synthetic"):
        print(f"mqspn predict: note: {args.model} was trained on the synthetic benchmark "
              f"({predictor.training_data['root']}); on real posts its answers mean little. For real posts use "
              "a model trained on real data (the twitter-gmner recipe on Twitter-GMNER v2.0)", file=sys.stderr)
    return predict_one(predictor, args) if args.text is not None else predict_split(predictor, args)


def predict_one(predictor, args: argparse.Namespace) -> int:
    from mqspn.draw import draw_entities
    from mqspn.images import load_image
    from mqspn.predictions import entity_to_json
    from mqspn.proposals import BoxesJson, SelectiveSearch

    given = [x for x in (args.proposals, args.boxes, args.proposer) if x]
    if predictor.mode != "none" and args.image and not given:
        raise ValueError("no candidate regions: give --proposals FILE.npz, --boxes FILE.json or "
                         "--proposer selective-search (pip install opencv-contrib-python-headless)")
    image = load_image(Path(args.image)) if args.image else None
    top_k = predictor.top_k
    proposals = args.proposals  # the .npz path; the predictor reads it
    if args.boxes:
        # A per-image boxes file is looked up by the image's file name.
        proposals = BoxesJson(args.boxes, top_k).regions(Path(args.image).name)
    elif args.proposer:
        proposals = SelectiveSearch(None, top_k).propose(image)
    post = predictor.predict(args.text, image=image, proposals=proposals)
    print(json.dumps({"words": post.words, "entities": [
        {"text": e.text(post.words), **entity_to_json(e)} for e in post.entities]}, indent=2))
    if args.draw:
        print(f"drew {draw_entities(image, post, args.draw)}", file=sys.stderr)
    return 0


def predict_split(predictor, args: argparse.Namespace) -> int:
    import dataclasses
    import os

    from mqspn.data.datasets import read_split
    from mqspn.predictions import write_predictions

    # The model's own dataset layout (folder names, format, top-k), rooted at --data; flags replace parts.
    flags = {"format": args.format, "granularity": args.granularity,
             **{key: os.path.abspath(value) for key, value in (("images", args.images), ("proposals", args.proposals_dir))
                if value}}
    data = dataclasses.replace(predictor.config.data, root=args.data, **{k: v for k, v in flags.items() if v is not None})
    posts = read_split(data.root, args.split, data.format, data.granularity, args.xml)
    start = time.perf_counter()
    preds = predictor.predict_posts(posts, data, progress=not args.no_progress)
    seconds = time.perf_counter() - start  # examples (crops) and the model: what a split costs
    write_predictions(args.out, ((p.id, preds[p.id]) for p in posts))
    print(f"wrote predictions for {len(posts)} posts to {args.out} ({len(posts) / seconds:.1f} posts/s)", file=sys.stderr)
    if args.json:
        print(json.dumps({"posts": len(posts), "seconds": round(seconds, 3),
                          "posts_per_s": round(len(posts) / seconds, 2), "out": str(args.out)}))
    return 0
