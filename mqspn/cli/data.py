"""`mqspn data ACTION`: dataset tools. Each action is added by an `add_<action>(actions)` function.

    mqspn data stats --data DIR [--format gmner|fmnerg] [--granularity coarse|fine] [--xml DIR]
                     [--proposals DIR --top-k K] [--json]
    mqspn data check [--config FILE|RECIPE] [--set KEY=VALUE ...] [--data DIR] [--format ...] [--granularity ...]
                     [--xml DIR] [--images DIR] [--proposals DIR] [--top-k K] [--regions crops|features|none]
                     [--json] [--no-progress]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import warnings

from mqspn.check import REGION_MODES, check_dataset, format_report
from mqspn.data.datasets import FORMATS, GMNER_TYPES, GRANULARITIES
from mqspn.stats import dataset_stats, format_table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="dataset tools (statistics, pre-training check)", description=__doc__)
    actions = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    add_stats(actions)
    add_check(actions)


def add_dataset_arguments(parser: argparse.ArgumentParser, data_required: bool = True) -> None:
    """The options naming a dataset on disk, shared by every `data` action (`--data` optional where a
    config file can name the dataset instead)."""
    parser.add_argument(
        "--data", required=data_required, metavar="DIR", help="dataset folder (holding txt/ or txt_fine/)"
    )
    parser.add_argument("--format", choices=FORMATS, default="gmner", help="gmner: txt/ + xml/; fmnerg: txt_fine/")
    parser.add_argument(
        "--granularity", choices=GRANULARITIES, default="coarse", help="FMNERG type column (gmner: coarse only)"
    )
    parser.add_argument(
        "--xml", metavar="DIR", default=None, help="folder of <id>.xml boxes (default DIR/xml; FMNERG: the GMNER xml/)"
    )


def add_stats(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "stats",
        help="per-split counts; with proposals, their coverage and oracle F1",
        description="Posts, entities, groundable/ungroundable entities, boxes and entities per type for every "
        "split; with --proposals, the share of groundable entities covered by a top-k proposal (IoU > 0.5) and "
        "the oracle GMNER/EEG F1 these proposals allow.",
    )
    add_dataset_arguments(parser)
    parser.add_argument(
        "--proposals", metavar="DIR", default=None, help="folder of VinVL <image>.npz proposal files"
    )
    parser.add_argument(
        "--top-k", type=int, default=None, metavar="K", help="proposals kept per image (with --proposals)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    stats = dataset_stats(args.data, args.format, args.granularity, args.xml, args.proposals, args.top_k)
    print(json.dumps(stats, indent=2) if args.json else format_table(stats))
    return 0


def add_check(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "check",
        help="can this dataset train? images, proposals, xml names, coverage; exit 1 when not",
        description="Check a dataset before training on it: missing or undecodable images, missing or malformed "
        "proposal files, xml names that match no entity, image sizes that disagree, and the share of "
        "groundable entities the top-k proposals cover (the ceiling). Says what to fix and where to download "
        "what is missing. Paths come from a training config (--config; its data paths are relative to "
        "data.root) and/or the options below, which override the config. Exit code 0: "
        "the dataset can train with this region mode; 1: it cannot.",
    )
    parser.add_argument("--config", metavar="FILE", help="training config (YAML, or a shipped recipe's name) whose "
                                                         "dataset to check")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set model.vision_encoder=none (repeatable)")
    add_dataset_arguments(parser, data_required=False)
    # None = not given, so that a config's format and granularity are kept.
    parser.set_defaults(format=None, granularity=None)
    parser.add_argument("--images", metavar="DIR", default=None, help="image folder (default DIR/images)")
    parser.add_argument("--proposals", metavar="DIR", default=None,
                        help="folder of VinVL <image>.npz proposal files (default DIR/proposals)")
    parser.add_argument("--top-k", type=int, default=None, metavar="K",
                        help="proposals kept per image (default: the config's data.top_k, 10 without a config)")
    parser.add_argument("--regions", choices=REGION_MODES, default=None,
                        help="how training reads regions: crops needs images and proposals, features needs "
                        "proposals with box_features, none (text only) needs neither (default: what the config's "
                        "model.vision_encoder reads, crops without a config)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from mqspn.config import Config, apply_override, load_config, resolve

    if args.config:
        cfg = load_config(args.config, args.overrides)
    else:
        raw: dict = {}
        for item in args.overrides:
            apply_override(raw, item)
        cfg = Config.from_dict(raw, where="--set")
    # Folders given on the command line are relative to the working directory, as --data is.
    flags = {
        "root": args.data, "format": args.format, "granularity": args.granularity, "top_k": args.top_k,
        **{key: os.path.abspath(value) for key, value in
           (("xml_dir", args.xml), ("images", args.images), ("proposals", args.proposals)) if value is not None},
    }
    data = dataclasses.replace(cfg.data, **{key: value for key, value in flags.items() if value is not None})
    if not data.root:
        raise ValueError("give the dataset: --data DIR, or --config FILE whose data.root names it")
    report = check_dataset(
        data.root, data.format, data.granularity, resolve(data.root, data.xml_dir), resolve(data.root, data.images),
        resolve(data.root, data.proposals), data.top_k, args.regions or cfg.model.region_mode, cfg.model.feature_dim,
        progress=not args.no_progress, truncate=data.truncate, **model_checks(cfg if args.config else None, data.format),
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0 if report.ok else 1


def model_checks(cfg, format: str) -> dict:
    """What the model a config trains imposes on the text: its entity types (empty: the train split's) and
    its text encoder's sub-word limit. Without a config: the Twitter-GMNER types for a gmner dataset."""
    if cfg is None:
        return {"types": list(GMNER_TYPES) if format == "gmner" else None}
    from mqspn.model.text_encoder import TextEncoder

    try:
        # The architecture only (no weights are read): the tokenizer and the position limit are all that is needed.
        encoder = TextEncoder.build(cfg.model.text_encoder, cfg.model.tiny_text_hidden, pretrained=False)
    except ValueError as err:  # e.g. the encoder is not downloaded yet: the rest of the check still helps
        warnings.warn(f"post lengths are not checked: {err}")
        return {"types": cfg.model.types or None}
    return {"types": cfg.model.types or None, "tokenize": encoder.tokenize}
