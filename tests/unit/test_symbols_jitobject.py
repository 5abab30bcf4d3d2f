"""Parsing JIT objects recorded from a live NUMBA_DEBUGINFO=1 process (tests/data/jit)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from profila.symbols.cfi import REG_RSP
from profila.symbols.jitobject import ElfImage, JitFunction, JitObject, JitObjectError
from profila.symbols.unwind import call_length

DATA = Path(__file__).resolve().parents[1] / "data" / "jit"


@cache
def facts() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / "facts.json").read_text())
    return loaded


@cache
def objects() -> tuple[JitObject, ...]:
    return tuple(
        JitObject((DATA / o["file"]).read_bytes(), o["symfile_address"]) for o in facts()["objects"]
    )


def marker(name: str) -> int:
    line: int = facts()["markers"][name]
    return line


def user_function(qualname: str) -> JitFunction:
    """The user's function as Numba placed it (the object its own dispatcher compiled)."""
    (fact,) = [f for f in facts()["functions"] if f["qualname"] == qualname]
    found = [f for o in objects() for f in o.functions if f.start == fact["address"]]
    assert len(found) == 1
    assert found[0].name == fact["mangled"]
    return found[0]


def lines_in(fn: JitFunction) -> set[int]:
    assert fn.object.debug is not None
    return {line for _, _, line in fn.object.debug.lines.lines_in(fn.start, fn.end) if line}


def test_all_recorded_objects_parse_and_relocate() -> None:
    """Every object parses, with no relocation of a type we do not handle."""
    assert len(objects()) == len(facts()["objects"])
    for obj in objects():
        assert obj.unsupported_relocations == 0
        assert not obj.code_is_live  # no process to read from: the image's bytes are used
        for fn in obj.functions:
            assert obj.low <= fn.start < fn.end <= obj.high
            assert obj.function_at(fn.start) is fn
            assert obj.function_at(fn.end - 1) is fn
            assert len(fn.code) == fn.end - fn.start


def test_code_is_in_ltext_at_its_load_address() -> None:
    """Code sections are .ltext with sh_addr patched to the load address by RuntimeDyld."""
    for obj in objects():
        for s in obj.code_sections:
            assert s.name == ".ltext"
            assert s.address > 0x10000
        for s in obj.sections:
            if s.name.startswith(".debug_"):
                assert s.address == 0  # debug sections are not loaded


def test_user_functions_have_names_files_and_def_lines() -> None:
    """Names come from the debug info; files are absolute; lines are the def lines."""
    for qualname, def_marker in (("helper", "HELPER_DEF"), ("kernel", "KERNEL_DEF")):
        fn = user_function(qualname)
        assert fn.display_name == qualname
        assert fn.file == facts()["source"]
        assert fn.line == marker(def_marker)
        assert not fn.wrapper


def test_helper_lines() -> None:
    """Addresses in helper map to helper's lines, its body line among them."""
    fn = user_function("helper")
    lines = lines_in(fn)
    assert marker("HELPER_BODY") in lines
    assert lines <= {marker("HELPER_DEF"), marker("HELPER_BODY"), marker("HELPER_RETURN")}
    for pc in range(fn.start, fn.end):
        frames = fn.object.source_frames(pc)
        assert len(frames) == 1
        assert frames[0].function == "helper"
        assert frames[0].file == facts()["source"]


def test_kernel_lines_and_the_call_to_helper() -> None:
    """Kernel's rows cover its loop and call lines; the call to helper is on the call line."""
    fn = user_function("kernel")
    lines = lines_in(fn)
    assert {marker("KERNEL_LOOP"), marker("KERNEL_CALL")} <= lines
    assert all(marker("KERNEL_DEF") <= line <= marker("KERNEL_RETURN") for line in lines)
    # Calls in the large code model go through a register: "movabs rax, <callee>; call rax".
    # Looking up a return address minus one lands on the call's line.
    call_lines = set()
    code = fn.code
    for off in range(2, len(code) + 1):
        ra = fn.start + off
        if call_length(code[max(0, off - 15) : off], ra) and code[off - 2] == 0xFF:
            (frame,) = fn.object.source_frames(ra - 1)
            call_lines.add(frame.line)
    assert marker("KERNEL_CALL") in call_lines


def test_debug_info_addresses_are_relocated() -> None:
    """Subprogram ranges and line rows are absolute addresses equal to the symbols'."""
    for obj in objects():
        if obj.debug is None:
            continue
        starts = {f.start for f in obj.functions}
        for sub in obj.debug.subprograms:
            assert sub.low in starts
        assert obj.debug.lines.addresses
        assert all(obj.low <= a <= obj.high for a in obj.debug.lines.addresses)


def test_cfi_rows_for_kernel() -> None:
    """At entry CFA = rsp+8 with the return address at CFA-8; in the body CFA = rsp+N."""
    fn = user_function("kernel")
    entry = fn.object.cfi_row(fn.start)
    assert entry is not None
    assert (entry.cfa_register, entry.cfa_offset, entry.ra_offset) == (REG_RSP, 8, -8)
    assert entry.bp_offset is None
    body_rows = [fn.object.cfi_row(pc) for pc in range(fn.start + 16, fn.end - 16)]
    offsets = {r.cfa_offset for r in body_rows if r is not None}
    assert all(r is not None and r.cfa_register == REG_RSP for r in body_rows)
    assert max(offsets) > 8 and max(offsets) % 8 == 0
    assert all(r is not None and r.ra_offset == -8 for r in body_rows)
    # kernel saves rbp (as a callee-saved register) in its prologue
    assert any(r is not None and r.bp_offset is not None for r in body_rows)


def test_eh_frame_fdes_start_at_functions() -> None:
    """Relocated .eh_frame/.debug_frame FDEs start exactly at function symbols."""
    for obj in objects():
        starts = {f.start for f in obj.functions}
        for fde in obj.frames_table.fdes:
            assert fde.start in starts
            assert fde.end <= obj.high


def test_debug_frame_only_objects_unwind_too() -> None:
    """Objects whose functions are nounwind carry only .debug_frame: rows still come out."""
    seen = False
    for obj in objects():
        names = {s.name for s in obj.sections}
        if ".debug_frame" in names and ".eh_frame" not in names:
            for fn in obj.functions:
                row = obj.cfi_row(fn.start)
                assert row is not None and row.cfa_offset == 8
                seen = True
    assert seen


def test_inlined_code_gives_inline_chains() -> None:
    """Code LLVM inlined reports the inlinee innermost, then the line it was inlined at."""
    (obj,) = [o for o in objects() if any(f.display_name == "round_ndigits" for f in o.functions)]
    chains = set()
    for fn in obj.functions:
        for pc in range(fn.start, fn.end):
            frames = obj.source_frames(pc)
            if len(frames) > 1:
                chains.add(tuple((f.function, Path(f.file).name) for f in frames))
    assert (
        ("int_power_impl.<locals>.int_power", "numbers.py"),
        ("round_ndigits", "arraymath.py"),
    ) in chains


def test_objects_without_debug_info_still_name_functions() -> None:
    """Numba's NRT helper module has no debug info: names from the symbol table only."""
    (obj,) = [o for o in objects() if any(f.name == "nrt_atomic_add" for f in o.functions)]
    assert obj.debug is None
    fn = next(f for f in obj.functions if f.name == "NRT_decref")
    assert obj.source_frames(fn.start) == ()
    leaf = next(f for f in obj.functions if f.name == "nrt_atomic_add")
    assert obj.cfi_row(leaf.start) is None  # nounwind leaf without debug info: no CFI


def test_section_info_describes_the_image() -> None:
    """jit_functions' objects expose sections for a later disassembly view."""
    fn = user_function("kernel")
    info = {name: (addr, off, size) for name, addr, off, size in fn.object.section_info()}
    addr, off, size = info[".ltext"]
    assert addr <= fn.start < fn.end <= addr + size
    assert fn.object.image[off + fn.start - addr : off + fn.end - addr] == fn.code


def test_rejects_what_is_not_a_jit_object() -> None:
    with pytest.raises(JitObjectError):
        JitObject(b"not an elf file at all, not even close......................")
    with pytest.raises(JitObjectError):
        ElfImage(b"\x7fELF\x01\x01" + bytes(64))  # 32-bit
