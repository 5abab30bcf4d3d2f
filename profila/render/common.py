"""What the text views (report, assembly, threads) and the HTML view share: their rich console,
how a share is printed, heat colours, and which rows to show."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

from rich.console import Console


def new_console(file: TextIO, *, color: bool, width: int) -> Console:
    """A console that prints text as given: no markup (names like "f [cpython wrapper]" are
    text), no highlighting, and long source lines run on rather than wrap into the next row."""
    return Console(
        file=file,
        width=width,
        force_terminal=color,
        color_system="standard" if color else None,
        highlight=False,
        emoji=False,
        soft_wrap=True,
        markup=False,
    )


def share(count: int, total: int) -> str:
    """``count`` as a percentage of ``total``, 6 characters wide."""
    return f"{100.0 * count / total:5.1f}%" if total else "  0.0%"


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
