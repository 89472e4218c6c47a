"""Can this dataset train? A pre-flight check of the text, xml, images and proposals (`mqspn data check`).

`check_dataset(...)` reads every split, counting xml names that match no entity instead of stopping at
the first (they are fatal all the same: training reads the xml strictly), then for every post decodes its
image and reads its VinVL proposal file, as training will:
- `regions="crops"` needs every image and every proposal file;
- `regions="features"` needs every proposal file, each with `box_features` ([N, D], D = `feature_dim`
  when given); images are checked only when their folder exists, as information;
- `regions="none"` (text only) needs neither; folders that exist are checked, as information.

The text is checked as training reads it, so that `data check` and `train` give one verdict: entity
types the model does not know (`types`; None: the types of the train split, as training with an empty
`model.types` uses) and, given the text encoder's `tokenize`, posts past its sub-word limit (fatal
unless `truncate`, i.e. `data.truncate: true`, when training cuts them).

Images are checked to their last byte, so truncated downloads are caught: JPEGs (and other formats) are
decoded, JPEGs at 1/8 scale via `draft`, which still parses the whole scan; PNGs (some `.jpg` tweet images
are PNGs) are verified, every chunk's CRC, 30x faster than decoding. Decoding relies on PIL's default
`ImageFile.LOAD_TRUNCATED_IMAGES = False`.

The result is a `CheckReport`: per split the counts of `split_stats` plus, over the posts whose proposals
could be read, `proposal_stats` (coverage and oracle at `top_k`: the ceiling these proposals allow) and
per problem kind the number of posts hit; over all splits the total and the first `EXAMPLES` messages of
each problem kind; `fatal` (reasons training cannot run: `ok` is False), `warnings` and `advice`
(what to fix, and where to download what is missing).
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from PIL import Image
from tqdm import tqdm

from mqspn.data.datasets import SPLITS, UnmatchedObject, dataset_types, read_split, split_file, type_problem
from mqspn.images import DECODE_ERRORS
from mqspn.proposals import PROPOSALS_HELP, check_size_fit, read_vinvl
from mqspn.stats import format_table, proposal_stats, split_stats
from mqspn.types import Post, Region

REGION_MODES = ("crops", "features", "none")

#: Messages kept per problem kind (the count is always complete).
EXAMPLES = 5

#: Problem kind -> row label in the report.
PROBLEMS = {
    "missing_image": "missing images",
    "unreadable_image": "unreadable images",
    "missing_proposals": "missing proposal files",
    "malformed_proposals": "malformed proposal files",
    "unmatched_xml": "unmatched xml names",
    "size_mismatch": "size mismatches",
    "proposal_mismatch": "proposals of another image size",
    "unknown_type": "unknown entity types",
    "over_long": "posts past the encoder limit",
}


@dataclass
class Problem:
    """One problem kind over all splits: how many posts have it and the first `EXAMPLES` messages."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(message)


@dataclass
class SplitCheck:
    """One split: its file, the reader's error (then nothing else is known), statistics and problem counts.

    `stats`: `split_stats` keys; when proposals were checked also `proposal_posts` (posts whose proposal
    file could be read) and, when there are any, the `proposal_stats` keys (coverage, oracle) over them and
    `uncovered`: their groundable entities that no top-k proposal covers.
    """

    file: str
    error: Optional[str] = None
    stats: dict[str, Any] = field(default_factory=dict)
    problems: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROBLEMS, 0))


@dataclass
class CheckReport:
    """What `check_dataset` found (module docstring); `ok` means training can run on it."""

    root: str
    format: str
    granularity: str
    regions: str
    top_k: int
    images_dir: Optional[str]
    proposals_dir: Optional[str]
    splits: dict[str, SplitCheck] = field(default_factory=dict)
    problems: dict[str, Problem] = field(default_factory=lambda: {kind: Problem() for kind in PROBLEMS})
    fatal: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    types: Optional[list[str]] = None  # the entity types checked against (None: not checked yet)
    truncate: bool = False  # over-long posts are cut by training (a warning), not refused

    @property
    def ok(self) -> bool:
        return not self.fatal

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **dataclasses.asdict(self)}


@dataclass
class _Checked:
    """The outcome of one post: (kind, message) problems and its proposals (None when unreadable/unchecked)."""

    problems: list[tuple[str, str]]
    regions: Optional[list[Region]]


class _ReadProposals:
    """The proposals already read, served as a `ProposalSource` to `proposal_stats`."""

    def __init__(self, by_image: dict[str, list[Region]]) -> None:
        self.by_image = by_image

    def regions(self, image_name: str) -> list[Region]:
        return self.by_image[image_name]


def decode_image(path: Path) -> tuple[int, int]:
    """Decode the image at `path` completely -> its (width, height).

    Raises `FileNotFoundError` when it is missing and `ValueError` naming the file when it cannot be
    decoded (not an image, corrupt or truncated).
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    try:
        with Image.open(path) as image:
            size = image.size
            if image.format == "PNG":
                # Checks every chunk's CRC, which catches truncation and corruption ~30x faster than inflating.
                image.verify()
            else:
                # At 1/8 scale a JPEG's whole scan is still parsed, at a fraction of the cost; others ignore it.
                image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
                image.load()
    except DECODE_ERRORS as err:
        raise ValueError(f"{path}: cannot be decoded ({err})") from None
    return size


def check_dataset(
    root: str | Path,
    format: str = "gmner",
    granularity: str = "coarse",
    xml_dir: Optional[str | Path] = None,
    images_dir: Optional[str | Path] = None,
    proposals_dir: Optional[str | Path] = None,
    top_k: int = 10,
    regions: str = "crops",
    feature_dim: Optional[int] = None,
    progress: bool = True,
    workers: Optional[int] = None,
    types: Optional[Sequence[str]] = None,
    tokenize: Optional[Callable] = None,
    truncate: bool = False,
) -> CheckReport:
    """Check a dataset as `regions` mode training would use it (module docstring) -> `CheckReport`.

    `images_dir`/`proposals_dir`: folders of `<id>.jpg` and `<id>.jpg.npz` (None: not given). Posts are
    checked by `workers` threads (default: the CPU count, at most 8; PIL decodes without the GIL) under a
    tqdm bar per split unless `progress` is False. Raises `ValueError` only for bad arguments.
    """
    if regions not in REGION_MODES:
        raise ValueError(f"unknown region mode {regions!r}; choose one of {list(REGION_MODES)}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    report = CheckReport(
        str(root), format, granularity, regions, top_k,
        None if images_dir is None else str(images_dir), None if proposals_dir is None else str(proposals_dir),
        types=None if types is None else list(types), truncate=truncate,
    )
    need_images, need_proposals = regions == "crops", regions != "none"
    images = _folder(report, "image", images_dir, need_images)
    proposals = _folder(report, "proposal", proposals_dir, need_proposals)
    check_images, check_proposals = need_images or images is not None, need_proposals or proposals is not None
    with_features = regions == "features"

    def check_post(post: Post) -> _Checked:
        problems: list[tuple[str, str]] = []
        sizes = {"xml": post.image_size}
        if check_images:
            try:
                sizes["image"] = decode_image(_file(images, post.image, "image"))
            except FileNotFoundError as err:
                problems.append(("missing_image", str(err)))
            except ValueError as err:
                problems.append(("unreadable_image", str(err)))
        found = None
        if check_proposals:
            try:
                found, sizes["proposals"] = _read_proposals(
                    _file(proposals, f"{post.image}.npz", "proposal"), top_k, with_features, feature_dim
                )
            except FileNotFoundError as err:
                problems.append(("missing_proposals", str(err)))
            except ValueError as err:
                problems.append(("malformed_proposals", str(err)))
        if sizes.get("image") and sizes.get("proposals"):
            try:  # what training refuses: the proposals were made for another image size
                check_size_fit(sizes["proposals"], sizes["image"], str(_file(proposals, f"{post.image}.npz", "proposal")),
                               str(_file(images, post.image, "image")))
            except ValueError as err:
                problems.append(("proposal_mismatch", str(err)))
        known = {source: size for source, size in sizes.items() if size is not None}
        if len(set(known.values())) > 1:
            described = ", ".join(f"{source} {w}x{h}" for source, (w, h) in known.items())
            problems.append(("size_mismatch", f"post {post.id}: image sizes disagree ({described})"))
        return _Checked(problems, found)

    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        for split in SPLITS:
            report.splits[split] = _check_split(
                report, split, xml_dir, check_post, check_proposals, pool, progress, tokenize
            )
    _conclude(report, need_images, need_proposals)
    return report


def _folder(report: CheckReport, what: str, folder: Optional[str | Path], needed: bool) -> Optional[Path]:
    """The folder to look for files in; None skips the checks unless the files are `needed` (then every
    post counts as missing one). A needed folder that is absent is fatal; an unneeded one, a warning."""
    option = {"image": "data.images / --images", "proposal": "data.proposals / --proposals"}[what]
    if folder is not None and Path(folder).is_dir():
        return Path(folder)
    where = "no folder given" if folder is None else f"{folder} not found"
    if not needed:
        report.warnings.append(f"{what} folder: {where}; not needed for regions={report.regions}")
        return None
    report.fatal.append(f"{what} folder: {where} ({option}); regions={report.regions} needs every post's {what} file")
    return None if folder is None else Path(folder)


def _file(folder: Optional[Path], name: str, what: str) -> Path:
    if folder is None:
        raise FileNotFoundError(f"{name}: no {what} folder to find it in")
    return folder / name


def _read_proposals(
    path: Path, top_k: int, with_features: bool, feature_dim: Optional[int]
) -> tuple[list[Region], Optional[tuple[int, int]]]:
    """`read_vinvl`, with the feature size checked and the features dropped (10,000 images x top_k x 2048
    floats would not fit in memory)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    found, size = read_vinvl(path, top_k, with_features)
    if with_features and feature_dim is not None and found and len(found[0].features) != feature_dim:
        raise ValueError(
            f"{path}: box_features have {len(found[0].features)} dimensions, the model expects "
            f"{feature_dim} (model.feature_dim)"
        )
    return [dataclasses.replace(region, features=None) for region in found], size


def _check_split(
    report: CheckReport,
    split: str,
    xml_dir: Optional[str | Path],
    check_post: Callable[[Post], _Checked],
    check_proposals: bool,
    pool: ThreadPoolExecutor,
    progress: bool,
    tokenize: Optional[Callable] = None,
) -> SplitCheck:
    result = SplitCheck(str(split_file(report.root, split, report.format)))
    unmatched: list[UnmatchedObject] = []
    try:
        posts = read_split(report.root, split, report.format, report.granularity, xml_dir, unmatched)
    except (FileNotFoundError, ValueError) as err:
        result.error = str(err)
        return result
    for problem in unmatched:
        _count(report, result, "unmatched_xml", str(problem))
    if report.types is None:  # the train split comes first: its types are what training uses
        report.types = dataset_types(posts)
    for post in posts:  # in this thread: a fast tokenizer must not be called from several at once
        for kind, message in _text_problems(post, report.types, tokenize):
            _count(report, result, kind, message)
    read: dict[str, list[Region]] = {}
    checked = pool.map(check_post, posts)
    for post, outcome in tqdm(zip(posts, checked), total=len(posts), desc=f"{split} check", unit="post",
                              disable=not progress, leave=False):
        for kind, message in outcome.problems:
            _count(report, result, kind, message)
        if outcome.regions is not None:
            read[post.image] = outcome.regions
    result.stats = split_stats(posts)
    if check_proposals:
        with_proposals = [post for post in posts if post.image in read]
        result.stats["proposal_posts"] = len(with_proposals)
        if with_proposals:  # an oracle over no post would read as a ceiling of 0
            result.stats.update(proposal_stats(with_proposals, _ReadProposals(read), desc=f"{split} coverage"))
            groundable = sum(entity.groundable for post in with_proposals for entity in post.entities)
            result.stats["uncovered"] = groundable - round((result.stats["coverage"] or 0.0) * groundable)
    return result


def _text_problems(post: Post, types: Sequence[str], tokenize: Optional[Callable]) -> list[tuple[str, str]]:
    """(kind, message) for an entity type outside `types` and, with `tokenize`, a post past the encoder limit."""
    problems = []
    unknown = type_problem(post, types)
    if unknown:
        problems.append(("unknown_type", unknown))
    if tokenize is not None:
        try:
            tokenize(post.words, post.where)
        except ValueError as err:
            problems.append(("over_long", str(err)))
    return problems


def _count(report: CheckReport, split: SplitCheck, kind: str, message: str) -> None:
    split.problems[kind] += 1
    report.problems[kind].add(message)


def _conclude(report: CheckReport, need_images: bool, need_proposals: bool) -> None:
    """Fill `fatal`, `warnings` and `advice` from the counts."""
    count = {kind: problem.count for kind, problem in report.problems.items()}
    posts = sum(split.stats.get("posts", 0) for split in report.splits.values())
    for split, result in report.splits.items():
        if result.error:
            report.fatal.append(f"{split} split cannot be read: {result.error}")
        elif not result.stats["posts"]:
            report.warnings.append(f"{split} split ({result.file}) has no posts")
    needed = {"missing_image": need_images, "unreadable_image": need_images,
              "missing_proposals": need_proposals, "malformed_proposals": need_proposals,
              "proposal_mismatch": need_images}
    for kind, label in PROBLEMS.items():
        if not count[kind]:
            continue
        if kind == "unmatched_xml":
            report.fatal.append(f"{label}: {count[kind]} xml objects (training reads the xml strictly and stops "
                                f"at the first)")
        elif kind == "unknown_type":
            report.fatal.append(f"{label}: {count[kind]} posts have an entity type outside {report.types} "
                                "(training stops at the first)")
        elif kind == "over_long":
            if report.truncate:
                report.warnings.append(f"{label}: {count[kind]} posts (data.truncate: training cuts them)")
            else:
                report.fatal.append(f"{label}: {count[kind]} posts (training stops at the first)")
        elif kind == "size_mismatch":
            report.warnings.append(f"{label}: {count[kind]} of {posts} posts (boxes may not line up with the image)")
        elif needed[kind]:
            report.fatal.append(f"{label}: {count[kind]} of {posts} posts")
        else:
            report.warnings.append(f"{label}: {count[kind]} of {posts} posts (not needed for regions={report.regions})")

    advice = report.advice
    if any(result.error for result in report.splits.values()):
        layout = ("txt_fine/{train,dev,test}.txt, and takes its boxes from the Twitter-GMNER v2.0 xml/ folder "
                  "(--xml / data.xml_dir)" if report.format == "fmnerg" else "txt/{train,dev,test}.txt and xml/")
        advice.append(f"Fix what the split errors above name (a file and line, or a folder): a {report.format} "
                      f"dataset folder holds {layout}.")
    missing = (need_images and count["missing_image"]) or (need_proposals and count["missing_proposals"])
    if missing:
        advice.append(f"Download what is missing: {PROPOSALS_HELP} (for single posts: mqspn predict --boxes / "
                      f"--proposer).")
        advice.append(f"Put the images in {report.images_dir or 'a folder'} as <id>.jpg and the proposals in "
                      f"{report.proposals_dir or 'a folder'} as <id>.jpg.npz, or point data.images / "
                      f"data.proposals (--images / --proposals) at the folders that hold them.")
    if need_proposals and (missing or count["unreadable_image"] or count["malformed_proposals"]):
        advice.append("Without images and proposals, train text-only with model.vision_encoder=none (--regions none): "
                      "every region is None, as in the BERT-None baseline.")
    if count["unreadable_image"]:
        advice.append("Re-download or replace the unreadable images listed (usually an interrupted download).")
    if count["malformed_proposals"]:
        advice.append("Re-download the malformed proposal files listed."
                      + (" regions=features needs box_features of the model's size in every file; without "
                         "them use regions=crops." if report.regions == "features" else ""))
    if count["unmatched_xml"]:
        advice.append("Rename each listed xml <name> to its entity's words joined by single spaces, exactly as "
                      "in the txt file, or delete the object.")
    if count["unknown_type"]:
        advice.append("Fix the listed tags, or list every type in the config's model.types (empty: the train "
                      "split's types).")
    if count["over_long"] and not report.truncate:
        advice.append("Shorten the listed posts, or set data.truncate: true to cut them to the encoder's limit.")
    if count["size_mismatch"]:
        advice.append("Size mismatches mean boxes drawn on another copy of the image: use the images the "
                      "xml and proposals were made from.")


def format_report(report: CheckReport) -> str:
    """The report as text: settings, a statistics table, a problem table, examples, fatal, warnings, advice."""
    lines = [
        f"dataset   {report.root} ({report.format}, {report.granularity}), regions={report.regions}, "
        f"top_k={report.top_k}",
        f"images    {report.images_dir}",
        f"proposals {report.proposals_dir}",
        "",
    ]
    readable = {split: result.stats for split, result in report.splits.items() if not result.error}
    if readable:
        # Coverage goes in the second table, where a split without readable proposals shows "n/a".
        lines += [format_table({split: _without(stats, "coverage") for split, stats in readable.items()}), ""]
        rows = [
            (label, [report.splits[split].problems[kind] for split in readable]) for kind, label in PROBLEMS.items()
        ]
        if any("proposal_posts" in stats for stats in readable.values()):
            rows[:0] = [
                ("posts with proposals", [stats.get("proposal_posts", "-") for stats in readable.values()]),
                ("uncovered entities", [stats.get("uncovered", "n/a") for stats in readable.values()]),
                ("coverage (%)", [_percent(stats.get("coverage")) for stats in readable.values()]),
                ("oracle GMNER F1", [f"{stats['oracle']['gmner_f1']:.2f}" if "oracle" in stats else "n/a"
                                     for stats in readable.values()]),
            ]
        width = max(len(label) for label, _ in rows)
        lines.append(" " * width + "".join(f"{split:>10}" for split in readable))
        lines += [f"{label:<{width}}" + "".join(f"{value!s:>10}" for value in values) for label, values in rows]
        lines.append("")
    for kind, problem in report.problems.items():
        if problem.count:
            lines.append(f"{PROBLEMS[kind]} ({problem.count}; first {len(problem.examples)}):")
            lines += [f"  {example}" for example in problem.examples]
    for title, items in (("FATAL (cannot train)", report.fatal), ("warnings", report.warnings),
                         ("what to do", report.advice)):
        if items:
            lines.append(f"{title}:")
            lines += [f"  - {item}" for item in items]
    lines.append("OK: this dataset can train" if report.ok else "NOT OK: fix the fatal problems above (exit code 1)")
    return "\n".join(lines)


def _without(stats: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in stats.items() if name != key}


def _percent(share: Optional[float]) -> str:
    return "n/a" if share is None else f"{100 * share:.2f}"
