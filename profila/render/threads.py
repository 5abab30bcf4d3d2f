"""The parts of the text report about threads: samples per thread, parallel efficiency, and the
per-thread columns of the ``--threads`` view. Used by :mod:`profila.render.text`.

Shares are of the profile's running samples (every thread, every class but idle), like every
other share in the report, so a line's per-thread shares add up to its ``self`` share.
"""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table
from rich.text import Text

from profila.model import ParallelCounts, Profile
from profila.render.common import share
from profila.render.paths import display_path

MAX_THREAD_ROWS = 16  # the busiest threads; the rest are summed in one row
MAX_THREAD_COLUMNS = 6  # --threads: columns for the threads with the most Numba samples


def thread_table(console: Console, p: Profile) -> None:
    """Samples per thread: running (share of all running samples), idle, and busy fraction."""
    if len(p.threads) < 2:
        return
    numba: Counter[int] = Counter()
    for x in p.thread_lines:
        numba[x.tid] += x.self
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for name in ("thread", "running", "numba", "idle", "busy"):
        table.add_column(name, justify="right")
    ordered = sorted(p.threads, key=lambda t: (-t.samples, t.tid))
    for t in ordered[:MAX_THREAD_ROWS]:
        table.add_row(
            str(t.tid),
            share(t.samples, p.running),
            share(numba[t.tid], p.running) if p.thread_lines else "-",
            str(t.idle),
            share(t.samples, t.samples + t.idle),
        )
    rest = ordered[MAX_THREAD_ROWS:]
    if rest:
        samples = sum(t.samples for t in rest)
        idle = sum(t.idle for t in rest)
        table.add_row(
            f"{len(rest)} more",
            share(samples, p.running),
            "",
            str(idle),
            share(samples, samples + idle),
        )
    console.print(
        Text(
            "Samples per thread (running: share of all running samples; busy: running / "
            "(running + idle) of that thread)",
            style="dim",
        )
    )
    console.print(table)
    console.print()


def parallel_functions(p: Profile) -> list[ParallelCounts]:
    """Functions that more than one thread ran (parfor bodies, nogil kernels called from several
    threads), busiest first."""
    return [x for x in p.parallel if x.threads >= 2]


def efficiency_table(console: Console, p: Profile) -> None:
    rows = parallel_functions(p)
    if not rows:
        return
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("busy threads", justify="right")
    table.add_column("threads", justify="right")
    table.add_column("ticks", justify="right")
    table.add_column("function")
    table.add_column("file")
    for x in rows:
        table.add_row(
            f"{x.efficiency:.2f}", str(x.threads), str(x.ticks), x.function, display_path(x.file)
        )
    console.print(
        Text(
            "Parallel efficiency (busy threads: mean number of threads in the function over the "
            "sampling ticks in which any thread was in it)",
            style="dim",
        )
    )
    console.print(table)
    console.print()


def column_tids(p: Profile) -> list[int]:
    """Threads given a column in the --threads view: those with the most Numba samples."""
    numba: Counter[int] = Counter()
    for x in p.thread_lines:
        numba[x.tid] += x.self
    ordered = sorted(numba, key=lambda tid: (-numba[tid], tid))
    return ordered[:MAX_THREAD_COLUMNS]


def column_legend(tids: list[int]) -> Text:
    legend = "  ".join(f"T{i + 1}={tid}" for i, tid in enumerate(tids))
    return Text(f"--threads: self share per thread, {legend}", style="dim")


def column_header(tids: list[int]) -> str:
    return "".join(f"{'T' + str(i + 1):>7}" for i in range(len(tids)))


def line_columns(p: Profile, tids: list[int], file: str, function: str, line: int) -> str:
    """This line's self share in each column's thread ("      ." for none)."""
    counts = {
        x.tid: x.self
        for x in p.thread_lines
        if x.line == line and x.file == file and x.function == function
    }
    return "".join(
        " " + share(counts[t], p.running) if counts.get(t) else f"{'.':>7}" for t in tids
    )
