"""Line tables and inline chains from the DWARF of one (relocated) JIT object.

Read with pyelftools once per object, then flattened into sorted arrays so that a pc lookup is a
bisect. What Numba's debug info looks like (DWARF 4, producer "clang (Numba)"): one compile
unit per compiled function's module, its file table giving the source file as directory +
basename; one ``DW_TAG_subprogram`` per function with ``DW_AT_name`` = the function's qualified
name (``dither``, ``outer.<locals>.inner``); ``DW_TAG_inlined_subroutine`` entries for code
LLVM inlined, with ``DW_AT_call_file``/``DW_AT_call_line``.

Line 0 rows (code LLVM could not attribute, e.g. spills and loop glue) are charged to the
nearest real line before them (else after them) in the same sequence and inline scope, so that
a pc just past inlined code is not charged to the inlinee's last line.

Cost: 1-5 ms per object with full NUMBA_DEBUGINFO debug info (mostly pyelftools' DIE parsing);
a lookup (``frames``) ~4 us; the symboliser caches it per pc.
"""

from __future__ import annotations

import bisect
import io
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from profila.symbols.demangle import display_name
from profila.symbols.frames import SourceFrame


@dataclass(frozen=True, slots=True)
class InlineRange:
    """One address range of a DW_TAG_inlined_subroutine."""

    low: int
    high: int
    depth: int  # 1 for code inlined directly into the subprogram, 2 inside that, ...
    name: str  # the inlined function's name
    call_file: str  # where it was inlined (in the function one level out)
    call_line: int
    die: int  # offset of the DW_TAG_inlined_subroutine (one DIE may have several ranges)


@dataclass(slots=True)
class Subprogram:
    """A concrete function in the debug info."""

    low: int
    high: int
    name: str
    linkage_name: str
    file: str
    line: int
    inlines: list[InlineRange] = field(default_factory=list)


class LineTable:
    """pc -> (file, line), from every line program of an object.

    Rows keep DWARF's line 0 ("no source line"); ``lookup`` returns it as is and
    DebugInfo.frames decides what to charge it to.
    """

    def __init__(self, sequences: list[list[tuple[int, str | None, int]]]) -> None:
        # Each sequence: (address, file, line) rows in order, ending with (end, None, 0).
        sequences = sorted((s for s in sequences if s), key=lambda s: s[0][0])
        self.addresses: list[int] = []
        self.locations: list[tuple[str, int] | None] = []
        self.sequence: list[int] = []
        for n, seq in enumerate(sequences):
            for address, file, line in seq:
                self.addresses.append(address)
                self.locations.append((file, line) if file is not None else None)
                self.sequence.append(n)

    def __len__(self) -> int:
        return len(self.addresses)

    def index(self, pc: int) -> int:
        """Index of the row covering ``pc`` (-1 if none); its location may be None."""
        return bisect.bisect_right(self.addresses, pc) - 1

    def lookup(self, pc: int) -> tuple[str, int] | None:
        i = self.index(pc)
        return self.locations[i] if i >= 0 else None

    def lines_in(self, low: int, high: int) -> Iterator[tuple[int, str, int]]:
        """(address, file, line) of the rows in [low, high), for per-instruction views."""
        i = bisect.bisect_left(self.addresses, low)
        while i < len(self.addresses) and self.addresses[i] < high:
            loc = self.locations[i]
            if loc is not None:
                yield self.addresses[i], loc[0], loc[1]
            i += 1


class DebugInfo:
    """Everything source-level about one JIT object."""

    def __init__(self, lines: LineTable, subprograms: list[Subprogram]) -> None:
        self.lines = lines
        self.subprograms = sorted(subprograms, key=lambda s: s.low)
        self._lows = [s.low for s in self.subprograms]

    def subprogram_at(self, pc: int) -> Subprogram | None:
        i = bisect.bisect_right(self._lows, pc) - 1
        while i >= 0:
            s = self.subprograms[i]
            if s.low <= pc < s.high:
                return s
            if pc - s.low > 1 << 24:
                break
            i -= 1
        return None

    def _chain(self, sub: Subprogram | None, pc: int) -> list[InlineRange]:
        """Inline ranges containing ``pc``, innermost first."""
        if sub is None:
            return []
        found = [r for r in sub.inlines if r.low <= pc < r.high]
        found.sort(key=lambda r: -r.depth)
        return found

    def _location(
        self, pc: int, sub: Subprogram | None, chain: list[InlineRange]
    ) -> tuple[str, int] | None:
        """The line row at ``pc``; a line-0 row is charged to the nearest real line before it
        (else after it) in the same sequence and the same inline scope."""
        table = self.lines
        i = table.index(pc)
        if i < 0:
            return None
        loc = table.locations[i]
        if loc is None or loc[1] != 0:
            return loc
        scope = tuple(r.die for r in chain)
        seq = table.sequence[i]
        for step in (-1, 1):
            j = i + step
            while 0 <= j < len(table) and table.sequence[j] == seq:
                other = table.locations[j]
                if other is not None and other[1] != 0:
                    addr = table.addresses[j]
                    if tuple(r.die for r in self._chain(sub, addr)) == scope:
                        return other
                j += step
        return loc

    def frames(self, pc: int, fallback_name: str) -> tuple[SourceFrame, ...]:
        """Source frames at ``pc``, innermost (inlined) first; () if there is no line info."""
        sub = self.subprogram_at(pc)
        chain = self._chain(sub, pc)
        loc = self._location(pc, sub, chain)
        if loc is None:
            if sub is None:
                return ()
            loc = (sub.file, sub.line)
        outer_name = sub.name if sub is not None and sub.name else fallback_name
        out: list[SourceFrame] = []
        file, line = loc
        for r in chain:
            out.append(SourceFrame(file, line, r.name))
            file, line = r.call_file, r.call_line
        out.append(SourceFrame(file, line, outer_name))
        return tuple(out)


def _absolute(directory: str, name: str, comp_dir: str) -> str:
    if name.startswith("<"):
        return name  # "<string>", "<dynamic>", ...: Numba's pseudo-files (numba#9412)
    path = posixpath.join(directory, name) if directory else name
    if not posixpath.isabs(path) and comp_dir:
        path = posixpath.join(comp_dir, path)
    return os.path.normpath(path)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _file_table(lineprog: Any, comp_dir: str) -> dict[int, str]:
    header = lineprog.header
    version = header["version"]
    dirs = [_text(d.name if hasattr(d, "name") else d) for d in header["include_directory"]]
    files: dict[int, str] = {}
    for i, entry in enumerate(header["file_entry"]):
        dir_index = entry.dir_index
        if version >= 5:
            directory = dirs[dir_index] if dir_index < len(dirs) else ""
            index = i
        else:
            directory = (
                comp_dir
                if dir_index == 0
                else (dirs[dir_index - 1] if dir_index - 1 < len(dirs) else "")
            )
            index = i + 1
        files[index] = _absolute(directory, _text(entry.name), comp_dir)
    return files


def _sequences(lineprog: Any, files: dict[int, str]) -> list[list[tuple[int, str | None, int]]]:
    seqs: list[list[tuple[int, str | None, int]]] = []
    current: list[tuple[int, str | None, int]] = []
    for entry in lineprog.get_entries():
        state = entry.state
        if state is None:
            continue
        if state.end_sequence:
            if current:
                current.append((state.address, None, 0))
                seqs.append(current)
            current = []
            continue
        current.append((state.address, files.get(state.file, "<unknown>"), state.line))
    if current:
        seqs.append(current)
    return seqs


class _CuReader:
    """Walks the DIEs of one compile unit collecting subprograms and inline ranges."""

    def __init__(self, dwarf: Any, cu: Any, files: dict[int, str]) -> None:
        self.dwarf = dwarf
        self.cu = cu
        self.files = files
        top = cu.get_top_DIE()
        low = top.attributes.get("DW_AT_low_pc")
        self.base = int(low.value) if low is not None else 0
        self.subprograms: list[Subprogram] = []
        self._names: dict[int, str] = {}

    def run(self) -> list[Subprogram]:
        top = self.cu.get_top_DIE()
        for child in top.iter_children():
            self._visit(child, None, 0)
        return self.subprograms

    def _ranges(self, die: Any) -> list[tuple[int, int]]:
        attrs = die.attributes
        low = attrs.get("DW_AT_low_pc")
        high = attrs.get("DW_AT_high_pc")
        if low is not None and high is not None:
            lo = int(low.value)
            hi = int(high.value)
            if high.form != "DW_FORM_addr":
                hi = lo + hi
            return [(lo, hi)] if hi > lo else []
        rng = attrs.get("DW_AT_ranges")
        if rng is None:
            return []
        lists = self.dwarf.range_lists()
        if lists is None:
            return []
        out: list[tuple[int, int]] = []
        base = self.base
        for entry in lists.get_range_list_at_offset(rng.value, cu=self.cu):
            if hasattr(entry, "base_address"):
                base = entry.base_address
                continue
            lo, hi = entry.begin_offset, entry.end_offset
            if not entry.is_absolute:
                lo, hi = lo + base, hi + base
            if hi > lo:
                out.append((lo, hi))
        return out

    def _name(self, die: Any, depth: int = 0) -> str:
        cached = self._names.get(die.offset)
        if cached is not None:
            return cached
        attrs = die.attributes
        name = ""
        if "DW_AT_name" in attrs:
            name = _text(attrs["DW_AT_name"].value)
        elif depth < 8:
            for ref in ("DW_AT_abstract_origin", "DW_AT_specification"):
                if ref in attrs:
                    try:
                        target = die.get_DIE_from_attribute(ref)
                    except Exception:  # noqa: BLE001 - a bad reference only loses a name
                        continue
                    name = self._name(target, depth + 1)
                    if name:
                        break
        if not name and "DW_AT_linkage_name" in attrs:
            name = display_name(_text(attrs["DW_AT_linkage_name"].value))
        self._names[die.offset] = name
        return name

    def _decl(self, die: Any, depth: int = 0) -> tuple[str, int]:
        attrs = die.attributes
        if "DW_AT_decl_file" in attrs:
            line = attrs["DW_AT_decl_line"].value if "DW_AT_decl_line" in attrs else 0
            return self.files.get(attrs["DW_AT_decl_file"].value, "<unknown>"), int(line)
        if depth < 8:
            for ref in ("DW_AT_abstract_origin", "DW_AT_specification"):
                if ref in attrs:
                    try:
                        return self._decl(die.get_DIE_from_attribute(ref), depth + 1)
                    except Exception:  # noqa: BLE001
                        continue
        return "<unknown>", 0

    def _linkage(self, die: Any, depth: int = 0) -> str:
        attrs = die.attributes
        if "DW_AT_linkage_name" in attrs:
            return _text(attrs["DW_AT_linkage_name"].value)
        if depth < 8:
            for ref in ("DW_AT_abstract_origin", "DW_AT_specification"):
                if ref in attrs:
                    try:
                        return self._linkage(die.get_DIE_from_attribute(ref), depth + 1)
                    except Exception:  # noqa: BLE001
                        continue
        return ""

    def _visit(self, die: Any, sub: Subprogram | None, depth: int) -> None:
        tag = die.tag
        if tag == "DW_TAG_subprogram":
            ranges = self._ranges(die)
            if ranges:
                file, line = self._decl(die)
                name, linkage = self._name(die), self._linkage(die)
                for lo, hi in ranges:
                    s = Subprogram(lo, hi, name, linkage, file, line)
                    self.subprograms.append(s)
                # Inline ranges are shared between the pieces of a split function.
                shared = self.subprograms[-1]
                for extra in self.subprograms[-len(ranges) : -1]:
                    extra.inlines = shared.inlines
                sub, depth = shared, 0
            else:
                return  # a declaration or an abstract (inlined-only) instance
        elif tag == "DW_TAG_inlined_subroutine" and sub is not None:
            attrs = die.attributes
            call_file = self.files.get(
                attrs["DW_AT_call_file"].value if "DW_AT_call_file" in attrs else -1, "<unknown>"
            )
            call_line = int(attrs["DW_AT_call_line"].value) if "DW_AT_call_line" in attrs else 0
            depth += 1
            name = self._name(die)
            for lo, hi in self._ranges(die):
                sub.inlines.append(
                    InlineRange(lo, hi, depth, name, call_file, call_line, die.offset)
                )
        elif sub is None:
            if tag != "DW_TAG_namespace":
                return  # types and globals
        elif tag != "DW_TAG_lexical_block":
            return  # variables, parameters, labels
        if die.has_children:
            for child in die.iter_children():
                self._visit(child, sub, depth)


def load_debug_info(patched_object: bytes) -> DebugInfo | None:
    """Read the (already relocated) DWARF of an ELF object; None if it has none."""
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(patched_object))
    if (
        elf.get_section_by_name(".debug_line") is None
        and elf.get_section_by_name(".debug_info") is None
    ):
        return None
    dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)
    seqs: list[list[tuple[int, str | None, int]]] = []
    subprograms: list[Subprogram] = []
    for cu in dwarf.iter_CUs():
        top = cu.get_top_DIE()
        comp_dir_attr = top.attributes.get("DW_AT_comp_dir")
        comp_dir = _text(comp_dir_attr.value) if comp_dir_attr is not None else ""
        lineprog = dwarf.line_program_for_CU(cu)
        files: dict[int, str] = {}
        if lineprog is not None:
            files = _file_table(lineprog, comp_dir)
            seqs.extend(_sequences(lineprog, files))
        subprograms.extend(_CuReader(dwarf, cu, files).run())
    return DebugInfo(LineTable(seqs), subprograms)
