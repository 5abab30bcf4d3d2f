"""One JIT object as LLVM registered it: functions, line info, inline chains, unwind rows.

What the registered images are (llvmlite 0.50 / LLVM 20 MCJIT, measured): relocatable ELF
(``ET_REL``) files, a copy of the object LLVM compiled, in which RuntimeDyld patched only the
section headers: each loaded section's ``sh_addr`` is its load address. Nothing inside is
relocated:

- code is in ``.ltext`` (Numba uses the large code model) and the copy's bytes are the
  *unrelocated* ones (``movabs rax, 0`` where memory has the callee's address), so the code of
  a function is read from the live process when the object is loaded;
- symbol values stay section-relative (absolute address = ``sh_addr`` + ``st_value``);
- ``.debug_*`` sections are not loaded (``sh_addr`` 0) and carry ``.rela.debug_*`` sections:
  R_X86_64_64 for addresses (``.ltext`` + offset), R_X86_64_32 for offsets into
  ``.debug_abbrev``/``.debug_str``/``.debug_line``/``.debug_frame``;
- ``.eh_frame`` is loaded (has an ``sh_addr``) and uses R_X86_64_PC64 with pointer encoding
  0x1c (pcrel|sdata8); functions LLVM marks nounwind have no ``.eh_frame`` entry but, with debug
  info, one in ``.debug_frame`` (R_X86_64_64 to ``.ltext``, absolute 8-byte addresses);
- a Numba "library" object contains copies of the functions it links in (the helper a kernel
  calls, ``NRT_incref``...) as weak symbols: the same function name appears in several objects
  at different addresses.

Relocations are applied here to every non-code section (S = ``sh_addr`` of the symbol's section
if it is loaded, else 0; P likewise), which makes both pc-relative and absolute forms come out
as absolute addresses. Load cost (the recorded fixture objects, 0.5-15 KB): 0.6-6 ms per object,
most of it pyelftools reading the DWARF; the first object of a process also pays ~30 ms for
importing pyelftools.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from profila.symbols import parfor
from profila.symbols.cfi import CfiRow, FrameTable, parse_frames
from profila.symbols.debuginfo import DebugInfo, load_debug_info
from profila.symbols.demangle import display_name, is_wrapper
from profila.symbols.frames import SourceFrame

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")
_REL = struct.Struct("<QQ")

SHT_SYMTAB = 2
SHT_RELA = 4
SHT_NOBITS = 8
SHT_REL = 9
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
STT_FUNC = 2
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
ET_REL = 1
EM_X86_64 = 62

# x86-64 relocation types: (size in bytes, pc-relative, signed)
_RELOCS: dict[int, tuple[int, bool, bool]] = {
    1: (8, False, False),  # R_X86_64_64
    2: (4, True, True),  # R_X86_64_PC32
    10: (4, False, False),  # R_X86_64_32
    11: (4, False, True),  # R_X86_64_32S
    12: (2, False, False),  # R_X86_64_16
    24: (8, True, True),  # R_X86_64_PC64
}

_MASK64 = (1 << 64) - 1


class JitObjectError(ValueError):
    """The image is not an x86-64 relocatable ELF object we can read."""


@dataclass(frozen=True, slots=True)
class Section:
    index: int
    name: str
    type: int
    flags: int
    address: int  # load address (0 if the section was not loaded)
    offset: int  # offset in the object image
    size: int
    link: int
    info: int
    entsize: int

    @property
    def executable(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)

    @property
    def loaded(self) -> bool:
        return bool(self.flags & SHF_ALLOC) and self.address != 0


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    value: int
    size: int
    type: int
    bind: int
    section: int


@dataclass(frozen=True, eq=False)
class JitFunction:
    """A function in a JIT object, with what a per-instruction view needs.

    ``code`` is the function's machine code as it is in the target's memory (relocated), read
    when the object was loaded; ``object`` gives the object image, its sections and line table.
    """

    name: str  # the symbol, as mangled by Numba
    display_name: str  # e.g. "dither", "dither [cpython wrapper]"
    file: str | None  # source file (absolute) from the debug info, if any
    line: int  # line of the ``def`` (0 if unknown)
    start: int
    end: int
    section: str  # e.g. ".ltext"
    wrapper: bool  # a CPython or C wrapper Numba generated
    object: JitObject = field(repr=False)

    @property
    def code(self) -> bytes:
        return self.object.code_bytes(self.start, self.end)


class ElfImage:
    """Sections and symbols of a little-endian 64-bit ELF image."""

    def __init__(self, data: bytes) -> None:
        if len(data) < _EHDR.size or data[:4] != b"\x7fELF":
            raise JitObjectError("not an ELF image")
        if data[4] != 2 or data[5] != 1:
            raise JitObjectError("not a 64-bit little-endian ELF image")
        hdr = _EHDR.unpack_from(data, 0)
        self.type, self.machine = hdr[1], hdr[2]
        shoff, shentsize, shnum, shstrndx = hdr[6], hdr[11], hdr[12], hdr[13]
        if self.machine != EM_X86_64:
            raise JitObjectError(f"machine {self.machine} is not x86-64")
        if shoff + shnum * shentsize > len(data):
            raise JitObjectError("section headers past the end of the image")
        raw = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
        names = raw[shstrndx] if shstrndx < shnum else None

        def name_at(off: int) -> str:
            if names is None:
                return ""
            start = names[4] + off
            end = data.find(b"\0", start)
            return data[start:end].decode("utf-8", "replace")

        self.data = data
        self.sections = [
            Section(i, name_at(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[9])
            for i, r in enumerate(raw)
        ]
        self.symbols = self._read_symbols()

    def section_data(self, s: Section) -> bytes:
        if s.type == SHT_NOBITS:
            return b""
        return self.data[s.offset : s.offset + s.size]

    def by_name(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def _read_symbols(self) -> list[Symbol]:
        symtab = next((s for s in self.sections if s.type == SHT_SYMTAB), None)
        if symtab is None or symtab.link >= len(self.sections):
            return []
        strtab = self.sections[symtab.link]
        data = self.data
        out: list[Symbol] = []
        entsize = symtab.entsize or _SYM.size
        for off in range(symtab.offset, symtab.offset + symtab.size - entsize + 1, entsize):
            st_name, info, _other, shndx, value, size = _SYM.unpack_from(data, off)
            start = strtab.offset + st_name
            end = data.find(b"\0", start)
            name = data[start:end].decode("utf-8", "replace")
            out.append(Symbol(name, value, size, info & 0xF, info >> 4, shndx))
        return out

    def symbol_address(self, sym: Symbol) -> int:
        """Absolute value of a symbol; 0 for undefined ones (resolved elsewhere)."""
        if sym.section == SHN_ABS:
            return sym.value
        if sym.section == SHN_UNDEF or sym.section >= SHN_LORESERVE:
            return 0
        if sym.section >= len(self.sections):
            return 0
        sec = self.sections[sym.section]
        return (sec.address if sec.loaded else 0) + sym.value


def relocate(image: ElfImage, skip: Callable[[Section], bool]) -> tuple[bytearray, int]:
    """A copy of the image with relocations applied to the sections ``skip`` does not reject.

    Returns (patched image, number of relocations of unsupported types that were left alone).
    """
    out = bytearray(image.data)
    sections = image.sections
    unsupported = 0
    for rs in sections:
        if rs.type not in (SHT_RELA, SHT_REL) or not 0 < rs.info < len(sections):
            continue
        target = sections[rs.info]
        if target.type == SHT_NOBITS or skip(target):
            continue
        if rs.link >= len(sections) or sections[rs.link].type != SHT_SYMTAB:
            continue
        base = target.address if target.loaded else 0
        entry = _RELA if rs.type == SHT_RELA else _REL
        entsize = rs.entsize or entry.size
        for off in range(rs.offset, rs.offset + rs.size - entsize + 1, entsize):
            if rs.type == SHT_RELA:
                r_offset, r_info, addend = _RELA.unpack_from(image.data, off)
            else:
                r_offset, r_info = _REL.unpack_from(image.data, off)
                addend = None
            rtype, sym_index = r_info & 0xFFFFFFFF, r_info >> 32
            spec = _RELOCS.get(rtype)
            if spec is None:
                if rtype != 0:
                    unsupported += 1
                continue
            size, pcrel, _signed = spec
            if r_offset + size > target.size or sym_index >= len(image.symbols):
                unsupported += 1
                continue
            where = target.offset + r_offset
            if addend is None:  # REL: the addend is in place
                addend = int.from_bytes(out[where : where + size], "little", signed=True)
            value = image.symbol_address(image.symbols[sym_index]) + addend
            if pcrel:
                value -= base + r_offset
            value &= (1 << (8 * size)) - 1
            out[where : where + size] = value.to_bytes(size, "little")
    return out, unsupported


class JitObject:
    """A parsed JIT object. ``read_memory(address, size)`` reads the live target (or None)."""

    def __init__(
        self,
        image: bytes,
        symfile_address: int = 0,
        read_memory: Callable[[int, int], bytes | None] | None = None,
    ) -> None:
        self.image = image
        self.symfile_address = symfile_address
        elf = ElfImage(image)
        if elf.type != ET_REL:
            raise JitObjectError("not a relocatable object")
        self.elf = elf
        self.sections = tuple(elf.sections)
        patched, self.unsupported_relocations = relocate(elf, skip=lambda s: s.executable)
        self.patched = bytes(patched)
        self.code_sections = tuple(s for s in self.sections if s.executable and s.loaded and s.size)
        # The code as it is in memory; the image holds it unrelocated (fallback if unreadable).
        self._code: dict[int, tuple[int, bytes]] = {}
        live_ok = read_memory is not None
        for s in self.code_sections:
            live = read_memory(s.address, s.size) if read_memory is not None else None
            if live is None or len(live) != s.size:
                live_ok = False
                live = elf.section_data(s)
            self._code[s.index] = (s.address, live)
        self.code_is_live = live_ok
        self.low = min((s.address for s in self.code_sections), default=0)
        self.high = max((s.address + s.size for s in self.code_sections), default=0)
        self.debug: DebugInfo | None = None
        try:
            self.debug = load_debug_info(self.patched)
        except Exception:  # noqa: BLE001 - malformed DWARF: keep names and unwinding
            self.debug = None
        self.functions = self._functions()
        self._starts = [f.start for f in self.functions]
        self.frames_table = self._frame_table()

    def _functions(self) -> tuple[JitFunction, ...]:
        out: list[JitFunction] = []
        by_index = {s.index: s for s in self.code_sections}
        for sym in self.elf.symbols:
            sec = by_index.get(sym.section)
            if sym.type != STT_FUNC or sec is None or sym.size == 0:
                continue
            start = sec.address + sym.value
            file: str | None = None
            line = 0
            name = display_name(sym.name)
            if self.debug is not None:
                sub = self.debug.subprogram_at(start)
                if sub is not None and sub.low == start:
                    file, line = sub.file, sub.line
                    if sub.name and not is_wrapper(sym.name):
                        name = sub.name
            if file is not None:  # else its frames are named from their own lines
                name = parfor.readable(name, file, line)
            out.append(
                JitFunction(
                    sym.name,
                    name,
                    file,
                    line,
                    start,
                    start + sym.size,
                    sec.name,
                    is_wrapper(sym.name),
                    self,
                )
            )
        out.sort(key=lambda f: f.start)
        return tuple(out)

    def _frame_table(self) -> FrameTable:
        fdes = []
        for name, eh in ((".eh_frame", True), (".debug_frame", False)):
            s = self.elf.by_name(name)
            if s is None or s.type == SHT_NOBITS:
                continue
            data = self.patched[s.offset : s.offset + s.size]
            fdes.extend(parse_frames(data, s.address if s.loaded else 0, eh))
        # Prefer .eh_frame where both describe a pc: keep the first FDE per start address.
        seen: set[int] = set()
        unique = []
        for f in fdes:
            if f.start not in seen:
                seen.add(f.start)
                unique.append(f)
        return FrameTable(unique)

    # -- lookups -------------------------------------------------------------------------

    def contains(self, pc: int) -> bool:
        """True if ``pc`` is in one of this object's code sections."""
        if not self.low <= pc < self.high:
            return False
        return any(s.address <= pc < s.address + s.size for s in self.code_sections)

    def function_at(self, pc: int) -> JitFunction | None:
        i = bisect.bisect_right(self._starts, pc) - 1
        while i >= 0:
            f = self.functions[i]
            if f.start <= pc < f.end:
                return f
            if f.start + (1 << 20) < pc:
                break
            i -= 1
        return None

    def source_frames(self, pc: int) -> tuple[SourceFrame, ...]:
        """Source frames at ``pc`` from the line table and inline info, innermost first."""
        if self.debug is None:
            return ()
        fn = self.function_at(pc)
        frames = self.debug.frames(pc, fn.display_name if fn is not None else "")
        return tuple(parfor.readable_frame(f) for f in frames)

    def cfi_row(self, pc: int) -> CfiRow | None:
        return self.frames_table.row(pc)

    def code_bytes(self, start: int, end: int) -> bytes:
        """Machine code in [start, end), as in memory when the object was loaded."""
        for address, data in self._code.values():
            if address <= start and end <= address + len(data):
                return data[start - address : end - address]
        return b""

    def section_info(self) -> list[tuple[str, int, int, int]]:
        """(name, load address, offset in ``image``, size) of every section."""
        return [(s.name, s.address, s.offset, s.size) for s in self.sections]

    def __repr__(self) -> str:
        return (
            f"<JitObject {self.symfile_address:#x} {len(self.image)} bytes, "
            f"{len(self.functions)} functions, code {self.low:#x}-{self.high:#x}>"
        )
