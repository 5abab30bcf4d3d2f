"""The annotated per-line report, rendered with rich.

Layout: a header (run, rate, sample classes), a table of Numba functions by total, then for each
function its hot regions: source lines with self and total shares, a heat bar, a few lines of
context, and a note instead of source text when the file changed or vanished since the run.
"""

from __future__ import annotations

import hashlib
import io
import shlex
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from profila.model import SAMPLE_CLASSES, FunctionCounts, LineCounts, Profile
from profila.render import threads as thread_view
from profila.render.common import heat, hot_regions, new_console, share
from profila.render.paths import display_path

CONTEXT = 2  # lines shown around hot lines
BAR_WIDTH = 10
_EIGHTHS = " ▏▎▍▌▋▊▉"

_DEBUGINFO_NAMES = {
    "full": "full debug info (NUMBA_DEBUGINFO=1)",
    "lines": "line tables only (shipped machine code)",
    "none": "no line info",
}


def render(
    profile: Profile, *, color: bool = False, width: int = 100, threads: bool = False
) -> str:
    """The report; ``threads`` adds a column per thread (self share) to each source line."""
    buffer = io.StringIO()
    console = new_console(buffer, color=color, width=width)
    _header(console, profile)
    thread_view.thread_table(console, profile)
    thread_view.efficiency_table(console, profile)
    tids = thread_view.column_tids(profile) if threads else []
    if tids:
        console.print(thread_view.column_legend(tids))
        console.print()
    if profile.functions:
        _function_table(console, profile)
        for function in profile.functions:
            if function.file.startswith("/"):  # no source section for "<unknown>" and the like
                _function_lines(console, profile, function, tids)
    else:
        console.print("No samples landed in Numba-compiled code.")
    return buffer.getvalue()


def _header(console: Console, p: Profile) -> None:
    status = "?" if p.exit_code is None else str(p.exit_code)
    threads = f"{len(p.threads)} thread{'' if len(p.threads) == 1 else 's'}"
    console.print(Text(f"profila: python {shlex.join(p.command)}", style="bold"))
    console.print(
        f"{p.duration_s:.2f} s, {p.total} samples at {p.rate_hz:g} Hz on {threads} "
        f"(effective {p.effective_rate_hz:.1f} Hz), exit status {status}"
    )
    console.print(f"build: {_DEBUGINFO_NAMES.get(p.debuginfo, p.debuginfo)}; sampler: {p.sampler}")
    classes = Text(f"{p.running} running samples: ")
    classes.append_text(
        Text("  ").join(
            Text(
                f"{name} {share(p.samples.get(name, 0), p.running).strip()}",
                style="bold"
                if name == "numba"
                else "red"
                if name == "bad" and p.samples.get(name)
                else "",
            )
            for name in SAMPLE_CLASSES
            if name != "idle"
        )
    )
    console.print(classes)
    idle = p.samples.get("idle", 0)
    if idle:
        console.print(f"{idle} idle samples (threads blocked or sleeping) are not in the shares")
    console.print()


def _function_table(console: Console, p: Profile) -> None:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("total", justify="right")
    table.add_column("self", justify="right")
    table.add_column("function")
    table.add_column("file")
    for f in p.functions:
        table.add_row(
            share(f.total, p.running), share(f.self, p.running), f.function, display_path(f.file)
        )
    console.print(table)
    console.print()


def _bar(count: int, total: int) -> str:
    eighths = round(BAR_WIDTH * 8 * count / total) if total else 0
    full, part = divmod(eighths, 8)
    return ("█" * full + (_EIGHTHS[part] if part else "")).ljust(BAR_WIDTH)


def _source_lines(p: Profile, path: str) -> tuple[list[str] | None, str | None]:
    """The file's lines, or None and why they cannot be shown beside the counts."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None, "source file not found: showing line numbers only"
    recorded = p.sources.get(path)
    if recorded is not None and recorded.sha256 not in (None, hashlib.sha256(data).hexdigest()):
        return None, "source file changed since the run: showing line numbers only"
    return data.decode(errors="replace").splitlines(), None


def _function_lines(
    console: Console, p: Profile, f: FunctionCounts, tids: list[int] | None = None
) -> None:
    lines = [x for x in p.lines if x.file == f.file and x.function == f.function]
    title = Text()
    title.append(f.function, style="bold")
    title.append(f"  {display_path(f.file)}  ")
    title.append(f"total {share(f.total, p.running).strip()}  ")
    title.append(f"self {share(f.self, p.running).strip()}")
    console.print(title)
    source, problem = _source_lines(p, f.file)
    if problem:
        console.print(Text(f"  ({problem})", style="italic"))
    by_line: dict[int, LineCounts] = {x.line: x for x in lines}
    counted = defaultdict(int, {x.line: x.total for x in lines})
    last = len(source) if source is not None else max(by_line, default=0)
    hot = [n for n in by_line if n <= last] if source is not None else list(by_line)
    tids = tids or []
    header = "   line   self  total"
    if tids:
        header += " " * (BAR_WIDTH + 1) + thread_view.column_header(tids)
    console.print(Text(header, style="dim"))
    previous_end = 0
    for start, end in hot_regions(hot, 1, last, CONTEXT):
        if previous_end and start > previous_end + 1:
            console.print(Text("      ⋮", style="dim"))
        for n in range(start, end + 1):
            if source is None and n not in by_line:
                continue
            row = _line_row(p, n, by_line.get(n), counted[n], source if not tids else None)
            if tids:
                # Per-thread columns go before the source text, which may be long.
                row.truncate(8 + 14 + BAR_WIDTH + 1, pad=True)
                row.append(thread_view.line_columns(p, tids, f.file, f.function, n))
                if source is not None:
                    row.append(" " + source[n - 1])
            console.print(row)
        previous_end = end
    console.print()


def _line_row(
    p: Profile, n: int, counts: LineCounts | None, total: int, source: list[str] | None
) -> Text:
    row = Text()
    row.append(f"{n:7d} ", style="dim")
    if counts is None:
        row.append(" " * 14 + " " * BAR_WIDTH + " ")
    else:
        style = heat(counts.self, p.running)
        row.append(share(counts.self, p.running), style=style)
        row.append(" ")
        row.append(share(total, p.running), style=heat(total, p.running))
        row.append(" ")
        row.append(_bar(total, p.running), style=style)
    if source is not None:
        row.append(" " + source[n - 1])
    return row
