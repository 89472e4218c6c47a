"""The report of a side-by-side timing: the median of each variant and the ratio of two of them."""
from __future__ import annotations

import statistics


def report(title: str, times: dict[str, list[float]], slower: str, faster: str) -> None:
    """Print `title`, each variant's median seconds and the ratio median(slower) / median(faster)."""
    medians = {name: statistics.median(values) for name, values in times.items()}
    width = max(len(name) for name in medians)
    print(title)
    for name, value in medians.items():
        print(f"{name:<{width}s} : {value:7.2f} s")
    print(f"{'ratio':<{width}s} : {medians[slower] / medians[faster]:7.2f}x  ({slower} / {faster})")
