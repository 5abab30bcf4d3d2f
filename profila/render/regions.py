"""What the text, assembly and HTML views share: which rows to show, and rich's heat colours."""

from __future__ import annotations

from collections.abc import Iterable


def hot_regions(hot: Iterable[int], first: int, last: int, context: int) -> list[tuple[int, int]]:
    """Inclusive ranges in [first, last] covering each hot row with ``context`` rows around it,
    merged where they touch or overlap."""
    regions: list[tuple[int, int]] = []
    for row in sorted(hot):
        start, end = max(first, row - context), min(last, row + context)
        if regions and start <= regions[-1][1] + 1:
            regions[-1] = (regions[-1][0], max(end, regions[-1][1]))
        else:
            regions.append((start, end))
    return regions


def heat(count: int, total: int) -> str:
    """A rich style for a row holding ``count`` of ``total`` samples."""
    fraction = count / total if total else 0.0
    if fraction >= 0.20:
        return "bold red"
    if fraction >= 0.05:
        return "yellow"
    if fraction > 0:
        return "green"
    return "dim"
