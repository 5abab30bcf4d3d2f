"""The assembly view: per-instruction sample counts with the source interleaved (docs/asm.md).

For each chosen function: a header (name, file, address range, its samples and their share of
the run), then its instructions, each with its count and its share of the function's samples,
heat-coloured. A source line (file:line and its text) is printed above the instructions each
time the line changes, as ``objdump -S`` and ``perf annotate`` do. By default only the hot
regions are shown, with CONTEXT instructions around each hot one; ``whole`` shows everything.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from rich.console import Console
from rich.text import Text

from profila.asm import AsmFunction, AsmInstruction
from profila.model import Profile
from profila.render.common import heat, hot_regions, new_console, share
from profila.render.paths import display_path

CONTEXT = 4  # instructions shown around each hot instruction
TOP = 3  # functions shown when none is named


def select(profile: Profile, name: str | None = None, top: int = TOP) -> list[AsmFunction]:
    """The functions to show: those whose display name (or symbol) is ``name``, else the
    ``top`` hottest. Wrappers match by their function's name too (``add`` matches
    ``add [cpython wrapper]``) only when nothing else does."""
    records = sorted(profile.asm, key=lambda r: (-r.samples, r.display_name, r.start))
    if not name:
        return records[:top]
    exact = [r for r in records if name in (r.display_name, r.name)]
    if exact:
        return exact
    return [r for r in records if r.display_name.split(" [")[0] == name]


def names(profile: Profile) -> list[str]:
    """Display names of the functions that have a record, hottest first, without repeats."""
    seen: dict[str, None] = {}
    for r in sorted(profile.asm, key=lambda r: -r.samples):
        seen.setdefault(r.display_name, None)
    return list(seen)


def render(
    profile: Profile,
    functions: list[AsmFunction],
    *,
    whole: bool = False,
    color: bool = False,
    width: int = 100,
) -> str:
    buffer = io.StringIO()
    console = new_console(buffer, color=color, width=width)
    if not profile.asm:
        console.print(
            "No assembly to show: the profile has no records (no sample landed in JIT code, "
            "or it was written by a profila without the assembly view)."
        )
    elif not functions:
        console.print("No assembly to show: no function was chosen.")
    sources = _Sources(profile)
    for record in functions:
        _function(console, profile, record, whole, sources)
    return buffer.getvalue()


class _Sources:
    """Source text by file, only when the file is as it was at the run (else numbers only)."""

    def __init__(self, profile: Profile) -> None:
        self._profile = profile
        self._cache: dict[str, list[str] | None] = {}

    def line(self, file: str, line: int) -> str | None:
        if file not in self._cache:
            self._cache[file] = self._read(file)
        lines = self._cache[file]
        if lines is None or not 0 < line <= len(lines):
            return None
        return lines[line - 1].strip()

    def _read(self, file: str) -> list[str] | None:
        try:
            data = Path(file).read_bytes()
        except OSError:
            return None
        recorded = self._profile.sources.get(file)
        if recorded is not None and recorded.sha256 not in (None, hashlib.sha256(data).hexdigest()):
            return None
        return data.decode(errors="replace").splitlines()


def _function(console: Console, p: Profile, r: AsmFunction, whole: bool, sources: _Sources) -> None:
    total = r.samples
    title = Text()
    title.append(r.display_name, style="bold")
    if r.file:
        title.append(f"  {display_path(r.file)}" + (f":{r.line}" if r.line else ""))
    title.append(
        f"  {r.start:#x}-{r.end:#x} ({r.end - r.start} bytes, {len(r.instructions)} instructions)"
    )
    console.print(title)
    console.print(
        f"{total} samples in this function, {share(total, p.running).strip()} of the run's "
        f"running samples; the % column is of these {total}"
    )
    instructions = r.instructions
    last = len(instructions) - 1
    if whole:
        regions = [(0, last)] if instructions else []
    else:
        hot = [i for i, insn in enumerate(instructions) if r.counts.get(insn.address)]
        regions = hot_regions(hot, 0, last, CONTEXT)
    console.print(Text("  samples      %   offset  instruction", style="dim"))
    previous_end = -1
    for start, end in regions:
        if start > previous_end + 1:
            skipped = start - previous_end - 1
            console.print(Text(f"      ⋮ {skipped} instructions", style="dim"))
        where: tuple[str | None, int] | None = None
        for insn in instructions[start : end + 1]:
            if (insn.file, insn.line) != where:
                where = (insn.file, insn.line)
                console.print(_source_header(insn, sources))
            console.print(_row(insn, r, total))
        previous_end = end
    if previous_end < last:
        console.print(Text(f"      ⋮ {last - previous_end} instructions", style="dim"))
    unplaced = total - sum(r.counts.get(i.address, 0) for i in instructions)
    if unplaced:
        # A pc between instruction boundaries: the sampled code was not what was read.
        console.print(Text(f"  ({unplaced} samples at addresses that start no instruction)"))
    console.print()


def _source_header(insn: AsmInstruction, sources: _Sources) -> Text:
    header = Text("  ")
    if insn.file is None or insn.line == 0:
        header.append("(no source line)", style="cyan")
        return header
    header.append(f"{display_path(insn.file)}:{insn.line}", style="bold cyan")
    text = sources.line(insn.file, insn.line)
    if text:
        header.append(f"  {text}", style="cyan")
    return header


def _row(insn: AsmInstruction, r: AsmFunction, total: int) -> Text:
    count = r.counts.get(insn.address, 0)
    row = Text()
    if count:
        style = heat(count, total)
        row.append(f"  {count:7d} {share(count, total)}", style=style)
    else:
        row.append(" " * 16)
    row.append(f"  {f'+{insn.address - r.start:#x}':>7}  ", style="dim")
    row.append(insn.text, style=heat(count, total) if count else "")
    return row


__all__ = ["CONTEXT", "TOP", "names", "render", "select"]
