"""Per-instruction records of the Numba functions that ran: disassembly, source lines, counts.

Built once per function at the end of a run (never on the sampling path), from the machine code
the symboliser read when it loaded each JIT object, so the code shown is the code that ran, not
a recompilation, and the target's memory need not exist any more. A record keeps everything the
assembly view needs (address range, instructions with their text and source line, sample counts
per address), so a saved profile re-renders with no target.

Text is AT&T syntax, as objdump and perf print it. Branch and call targets are named
(``<add+0x4b>``, ``<NRT_decref>``); an immediate whose decimal form differs from its hex one
gets it as a comment (``movabsq $0x75bcd15, %rax  # 123456789``), so a folded constant can be
found by the number in the source; a ``movabs`` of a known function's address (the large code
model's call sequence) names the function.

Each instruction's line is the innermost source location the object's line table gives for its
address (``JitObject.source_frames``, the lookup the symboliser uses for samples), so code
inlined from a library shows that library's line, as in ``objdump -S``.
"""

from __future__ import annotations

import bisect
import struct
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from profila.symbols import parfor

if TYPE_CHECKING:
    from profila.symbols.jitobject import JitFunction
    from profila.symbols.symboliser import Symboliser


@dataclass(frozen=True, slots=True)
class AsmInstruction:
    address: int
    text: str  # AT&T syntax, targets named, decimal immediates as comments
    file: str | None  # source file of the innermost line-table location, if any
    line: int  # 0 when the line table has no line for this address


@dataclass(frozen=True)
class AsmFunction:
    """One JIT function's machine code with its per-address sample counts.

    ``counts`` maps an instruction address to the samples whose innermost Numba pc was there
    (for a sample stopped in a callee, the address of the call instruction).
    """

    name: str  # the symbol, as mangled by Numba
    display_name: str  # e.g. "add", "add [cpython wrapper]"
    file: str | None
    line: int  # line of the ``def`` (0 if unknown)
    start: int
    end: int
    instructions: tuple[AsmInstruction, ...]
    counts: dict[int, int] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (docs/json-schema.md): files are listed once, instructions refer to
        them by index, so a long function does not repeat its path on every instruction."""
        files: list[str] = []
        index: dict[str | None, int] = {None: -1}
        rows: list[list[Any]] = []
        for insn in self.instructions:
            if insn.file not in index:
                index[insn.file] = len(files)
                files.append(insn.file)  # type: ignore[arg-type]  # None is pre-indexed
            rows.append([insn.address, insn.text, index[insn.file], insn.line])
        return {
            "name": self.name,
            "display_name": self.display_name,
            "file": self.file,
            "line": self.line,
            "start": self.start,
            "end": self.end,
            "samples": self.samples,
            "counts": [[a, n] for a, n in sorted(self.counts.items())],
            "files": files,
            "instructions": rows,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> AsmFunction:
        files = [str(f) for f in doc["files"]]
        instructions = tuple(
            AsmInstruction(int(a), str(t), files[int(i)] if int(i) >= 0 else None, int(n))
            for a, t, i, n in doc["instructions"]
        )
        return cls(
            name=str(doc["name"]),
            display_name=str(doc["display_name"]),
            file=doc["file"],
            line=int(doc["line"]),
            start=int(doc["start"]),
            end=int(doc["end"]),
            instructions=instructions,
            counts={int(a): int(n) for a, n in doc["counts"]},
        )


class SymbolIndex:
    """Function names by address, for naming branch and call targets."""

    def __init__(self, functions: Iterable[JitFunction]) -> None:
        ordered = sorted(functions, key=lambda f: f.start)
        self._starts = [f.start for f in ordered]
        self._functions = ordered

    def name(self, address: int) -> str | None:
        """``name`` or ``name+0xNN`` for an address inside a known function, else None."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        f = self._functions[i]
        if not f.start <= address < f.end:
            return None
        offset = address - f.start
        return f.display_name if offset == 0 else f"{f.display_name}+{offset:#x}"


_capstone: Any = None


def _disassembler() -> Any:
    """A capstone disassembler for x86-64 in AT&T syntax with operand details (made once)."""
    global _capstone
    if _capstone is None:
        import capstone

        md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        md.syntax = capstone.CS_OPT_SYNTAX_ATT
        md.detail = True
        _capstone = md
    return _capstone


def _text(insn: Any, fn: JitFunction, symbols: SymbolIndex) -> str:
    import capstone
    from capstone import x86

    text = f"{insn.mnemonic} {insn.op_str}".strip()
    immediates = [op.imm for op in insn.operands if op.type == x86.X86_OP_IMM]
    if insn.group(capstone.CS_GRP_JUMP) or insn.group(capstone.CS_GRP_CALL):
        if len(immediates) == 1:
            target = immediates[0]
            if fn.start <= target < fn.end:
                label = f"<+{target - fn.start:#x}>"
            else:
                name = symbols.name(target)
                label = f"{target:#x} <{name}>" if name else f"{target:#x}"
            return f"{insn.mnemonic} {label}"
        return text
    notes = []
    for imm in immediates:
        name = symbols.name(imm) if imm > 0xFFFF else None
        constant = _constant(fn, imm) if imm > 0xFFFF and name is None else None
        if name is not None:
            notes.append(f"<{name}>")
        elif constant is not None:
            notes.append(constant)
        elif abs(imm) >= 10:
            notes.append(str(imm))
    for op in insn.operands:
        if op.type == x86.X86_OP_MEM and op.mem.base == x86.X86_REG_RIP:
            # pc-relative data (small code model, or code LLVM emitted that way): say what is
            # there, as for an address loaded with movabs.
            address = insn.address + insn.size + op.mem.disp
            name = symbols.name(address)
            notes.append(f"<{name}>" if name else _constant(fn, address) or f"{address:#x}")
    return f"{text}  # {', '.join(notes)}" if notes else text


def _number(raw: bytes) -> str:
    """A constant-pool entry as a number: an integer if small, else the float it encodes."""
    value = int.from_bytes(raw, "little", signed=True)
    if len(raw) == 8 and abs(value) >= 1 << 53:
        return repr(struct.unpack("<d", raw)[0])
    if len(raw) == 4 and abs(value) >= 1 << 24:
        return repr(struct.unpack("<f", raw)[0])
    return str(value)


def _constant(fn: JitFunction, address: int) -> str | None:
    """``[= VALUE]`` if ``address`` is an entry of the object's constant pool (the mergeable
    ``.rodata.cstN`` sections LLVM puts vector and floating-point constants in: a folded
    constant loaded by a vectorised loop lives there, not in an instruction)."""
    for s in fn.object.sections:
        if not (s.loaded and s.name.startswith(".rodata.cst") and s.entsize):
            continue
        if s.address <= address < s.address + s.size:
            start = s.offset + address - s.address
            entry = fn.object.image[start : start + s.entsize]
            if len(entry) != s.entsize:
                return None
            width = s.entsize if s.entsize in (4, 8) else 8
            lanes = [_number(entry[i : i + width]) for i in range(0, len(entry), width)]
            if len(set(lanes)) == 1:
                return f"[= {lanes[0]}]"
            return f"[= {', '.join(lanes)}]"
    return None


def disassemble(
    fn: JitFunction, counts: Mapping[int, int], symbols: SymbolIndex | None = None
) -> AsmFunction:
    """The record of ``fn``: every instruction of its code with text and source line."""
    md = _disassembler()
    symbols = symbols or SymbolIndex([fn])
    code = fn.code
    out: list[AsmInstruction] = []
    offset = 0
    while offset < len(code):
        for insn in md.disasm(code[offset:], fn.start + offset):
            out.append(_instruction(insn.address, _text(insn, fn, symbols), fn))
            offset += insn.size
        if offset < len(code):
            # capstone stops at bytes it cannot decode: show one and go on after it.
            out.append(_instruction(fn.start + offset, f".byte {code[offset]:#04x}", fn))
            offset += 1
    file = _file(fn, out)
    first_line = next((i.line for i in out if i.file == file and i.line), 0)
    return AsmFunction(
        name=fn.name,
        # A parfor body without a subprogram of its own is named from its instructions' lines.
        display_name=parfor.readable(fn.display_name, file, first_line),
        file=file,
        line=fn.line,
        start=fn.start,
        end=fn.end,
        instructions=tuple(out),
        counts={a: n for a, n in sorted(counts.items()) if n},
    )


def _file(fn: JitFunction, instructions: list[AsmInstruction]) -> str | None:
    """The function's source file; without one from the debug info (a line-tables build
    gives leaf functions no subprogram), the file most of its instructions come from."""
    if fn.file and not fn.file.startswith("<"):
        return fn.file
    files = Counter(i.file for i in instructions if i.file and not i.file.startswith("<"))
    return files.most_common(1)[0][0] if files else fn.file


def _instruction(address: int, text: str, fn: JitFunction) -> AsmInstruction:
    frames = fn.object.source_frames(address)
    if not frames:
        return AsmInstruction(address, text, None, 0)
    return AsmInstruction(address, text, frames[0].file, frames[0].line)


# Records kept per profile: the cost (20-30 us per instruction at the end of the run, ~80 bytes
# of JSON per instruction; docs/performance.md) is paid for the hottest functions only.
MAX_RECORDS = 32


def build_records(
    symboliser: Symboliser, pc_counts: Mapping[int, int], limit: int = MAX_RECORDS
) -> list[AsmFunction]:
    """Records of the ``limit`` hottest JIT functions with samples, hottest first.

    ``pc_counts`` is the Aggregator's count of samples per innermost Numba pc; each pc's
    function is the one the symboliser noted when it symbolised the sample, so functions whose
    objects were unregistered since (every object, once the interpreter has exited) still get
    their record. A pc in no known function is left out."""
    by_function: dict[JitFunction, dict[int, int]] = defaultdict(dict)
    for pc, n in pc_counts.items():
        fn = symboliser.sampled_function(pc)
        if fn is not None:
            by_function[fn][pc] = n
    if not by_function:
        return []
    hottest = sorted(by_function, key=lambda f: (-sum(by_function[f].values()), f.start))[:limit]
    known = {f.start: f for f in symboliser.jit_functions()}
    for fn in hottest:
        for f in fn.object.functions:
            known.setdefault(f.start, f)
    symbols = SymbolIndex(known.values())
    records = [disassemble(fn, by_function[fn], symbols) for fn in hottest]
    records.sort(key=lambda r: (-r.samples, r.display_name, r.start))
    return records


__all__ = [
    "MAX_RECORDS",
    "AsmFunction",
    "AsmInstruction",
    "SymbolIndex",
    "build_records",
    "disassemble",
]
