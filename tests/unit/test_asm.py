"""Per-instruction records: disassembly of recorded JIT objects and of hand-made code, JSON."""

from __future__ import annotations

import dataclasses
import json
import struct
from collections import Counter
from typing import Any

from profila.aggregate import Aggregator
from profila.asm import AsmFunction, AsmInstruction, SymbolIndex, build_records, disassemble
from profila.model import Profile
from profila.symbols.frames import Sample, SampleKind, SourceFrame
from profila.symbols.jitobject import JitFunction, Section

from .test_model import sample_profile
from .test_symbols_jitobject import marker, objects, user_function


def all_functions() -> list[JitFunction]:
    return [f for o in objects() for f in o.functions]


def test_recorded_kernel_is_disassembled_whole_with_its_lines() -> None:
    """Every byte of the kernel is covered by one instruction, in AT&T syntax, each with a line
    of the kernel from the object's line table."""
    kernel = user_function("kernel")
    record = disassemble(kernel, {}, SymbolIndex(all_functions()))
    insns = record.instructions
    assert insns[0].address == kernel.start and insns[0].text == "pushq %rbp"
    ends = [b.address for b in insns[1:]] + [kernel.end]
    assert all(a.address < end for a, end in zip(insns, ends, strict=True))
    assert insns[-1].text == "retq"
    assert not any(i.text.startswith(".byte") for i in insns)
    lines = {i.line for i in insns}
    body = {marker(m) for m in ("KERNEL_DEF", "KERNEL_LOOP", "KERNEL_CALL", "KERNEL_RETURN")}
    assert lines <= body and {marker("KERNEL_LOOP"), marker("KERNEL_CALL")} <= lines
    assert {i.file for i in insns} == {kernel.file}


def test_local_jumps_name_an_instruction_of_the_function() -> None:
    """A jump inside the function reads <+0xNN>, and 0xNN starts an instruction."""
    record = disassemble(user_function("kernel"), {})
    starts = {i.address - record.start for i in record.instructions}
    jumps = [i.text for i in record.instructions if i.text.startswith("j")]
    assert jumps
    for text in jumps:
        label = text.split("<+", 1)[1].rstrip(">")
        assert int(label, 16) in starts


def test_counts_are_kept_per_address() -> None:
    kernel = user_function("kernel")
    pc = kernel.start + 0x2A
    record = disassemble(kernel, {pc: 5, kernel.start: 0})
    assert record.counts == {pc: 5} and record.samples == 5


class FakeObject:
    """Just enough of a JitObject for synthetic code: bytes, a constant pool, two lines."""

    def __init__(self, code: bytes, start: int, pool: bytes, pool_address: int) -> None:
        self.code, self.start = code, start
        self.image = b"\0" * 64 + pool
        self.sections = (Section(1, ".rodata.cst8", 1, 0x12, pool_address, 64, len(pool), 0, 0, 8),)

    def code_bytes(self, start: int, end: int) -> bytes:
        return self.code[start - self.start : end - self.start]

    def source_frames(self, pc: int) -> tuple[SourceFrame, ...]:
        if pc - self.start >= 0x20:
            return ()
        return (SourceFrame("/src/k.py", 10 if pc - self.start < 10 else 11, "k"),)


def synthetic(code: bytes, start: int = 0x10000, pool_address: int = 0x50000) -> JitFunction:
    pool = struct.pack("<q", 123456789) + struct.pack("<d", 0.5)
    obj: Any = FakeObject(code, start, pool, pool_address)
    return JitFunction("_Z1k", "k", "/src/k.py", 9, start, start + len(code), ".ltext", False, obj)


def test_immediates_calls_and_constants_are_readable() -> None:
    """A folded constant is findable in decimal, in an instruction or in the constant pool; a
    call through a register names the callee; a call to a known function names it; bytes
    capstone cannot decode are shown one by one and decoding goes on; pc-relative data is
    resolved like an address in an immediate."""
    helper_start = 0x20000
    code = (
        bytes.fromhex("4805")
        + struct.pack("<i", 123456789)  # addq $0x75bcd15, %rax
        + bytes.fromhex("48b8")
        + struct.pack("<Q", helper_start)  # movabsq $helper, %rax
        + bytes.fromhex("ffd0")  # callq *%rax
        + bytes.fromhex("49b8")
        + struct.pack("<Q", 0x50000)  # movabsq $pool, %r8
        + bytes.fromhex("49b9")
        + struct.pack("<Q", 0x50008)  # movabsq $pool+8, %r9
        + bytes.fromhex("06")  # not an x86-64 instruction
        + bytes.fromhex("e8")
        + struct.pack("<i", helper_start + 0x10 - (0x10000 + 0x2C))
        + bytes.fromhex("c5fb1005")  # vmovsd pool+8(%rip), %xmm0
        + struct.pack("<i", 0x50008 - (0x10000 + 0x34))
        + bytes.fromhex("c3")  # retq
    )
    fn = synthetic(code)
    helper = JitFunction(
        "_Z1h", "helper", None, 0, helper_start, helper_start + 0x40, "", False, fn.object
    )
    record = disassemble(fn, {}, SymbolIndex([fn, helper]))
    texts = [i.text for i in record.instructions]
    assert texts[0] == "addq $0x75bcd15, %rax  # 123456789"
    assert texts[1].endswith("# <helper>") and texts[2] == "callq *%rax"
    assert texts[3].endswith("# [= 123456789]") and texts[4].endswith("# [= 0.5]")
    assert texts[5] == ".byte 0x06"
    assert texts[6] == f"callq {helper_start + 0x10:#x} <helper+0x10>"
    assert texts[7] == "vmovsd 0x3ffd4(%rip), %xmm0  # [= 0.5]"
    assert texts[8] == "retq"
    assert [(i.file, i.line) for i in record.instructions][:3] == [
        ("/src/k.py", 10),
        ("/src/k.py", 10),
        ("/src/k.py", 11),
    ]
    assert record.instructions[-1].file is None and record.instructions[-1].line == 0


def test_record_json_round_trips_and_lists_files_once() -> None:
    record = disassemble(user_function("kernel"), {user_function("kernel").start + 0x2A: 3})
    doc = json.loads(json.dumps(record.to_dict()))
    assert doc["files"] == [user_function("kernel").file]
    assert doc["samples"] == 3
    assert AsmFunction.from_dict(doc) == record


def test_profile_json_keeps_asm_and_older_profiles_still_load() -> None:
    """The asm section is optional: written only when there is one, read when present."""
    insn = AsmInstruction(0x1000, "retq", None, 0)
    record = AsmFunction("_Z1k", "k", None, 0, 0x1000, 0x1001, (insn,), {0x1000: 2})
    with_asm = dataclasses.replace(sample_profile(), asm=[record])
    assert Profile.from_json(with_asm.to_json()).asm == [record]
    plain = sample_profile().to_json()
    assert "asm" not in json.loads(plain)
    assert Profile.from_json(plain).asm == []


def test_aggregator_counts_innermost_numba_pcs_only() -> None:
    agg = Aggregator(100.0)
    frame = (SourceFrame("/a.py", 3, "f"),)
    agg.add(Sample(1, SampleKind.NUMBA, frame, 0x1000))
    agg.add(Sample(1, SampleKind.NUMBA, frame, 0x1000))
    agg.add(Sample(1, SampleKind.NUMBA, frame, 0x1004))
    agg.add(Sample(1, SampleKind.PYTHON, (), None))
    agg.add(Sample(1, SampleKind.NUMBA, frame, None))
    assert agg.jit_pcs == Counter({0x1000: 2, 0x1004: 1})


class FakeSymboliser:
    """Functions noted at sampling time; ``loaded``: those still registered at the end."""

    def __init__(self, functions: list[JitFunction], loaded: list[JitFunction]) -> None:
        self.functions, self.loaded = functions, loaded

    def sampled_function(self, pc: int) -> JitFunction | None:
        for f in self.functions:
            if f.start <= pc < f.end:
                return f
        return None

    def jit_functions(self) -> list[JitFunction]:
        return self.loaded


def test_records_are_built_for_sampled_functions_only_hottest_first() -> None:
    kernel, helper = user_function("kernel"), user_function("helper")
    counts = {kernel.start + 0x2A: 1, helper.start: 3, helper.start + 1: 1, 0x10: 7}
    symboliser: Any = FakeSymboliser(all_functions(), all_functions())
    records = build_records(symboliser, counts)
    assert [r.display_name for r in records] == ["helper", "kernel"]
    assert [r.samples for r in records] == [4, 1]
    # Every object unregistered by the end (the interpreter has exited): same records.
    gone: Any = FakeSymboliser(all_functions(), [])
    assert build_records(gone, counts) == records
    # Only the hottest functions get a record when there are more than the limit.
    assert [r.display_name for r in build_records(symboliser, counts, limit=1)] == ["helper"]


def test_live_records_survive_the_unregistering_of_objects() -> None:
    """In this process: a sample's function is noted when it is symbolised, so its record is
    still built after every JIT object has left the symboliser (as when the target's
    interpreter exits before the run ends), from the code read at load time."""
    import os

    from profila.sampling.raw import RawSample
    from profila.symbols.symboliser import Symboliser

    from . import test_symbols_symboliser as live

    live.caller(live.np.arange(4.0))
    with Symboliser(os.getpid()) as s:
        ra = live.call_to_leaf(s)
        stack = struct.pack("<Q", ra) + live.caller_frame_stack(
            s, ra, live.libpython_address() + 16
        )
        (leaf, *_) = live.functions(s, "leaf")
        sample = s.symbolise(RawSample(live.TID, 0, leaf.start, live.SP, 0, stack))
        assert sample.jit_pc == leaf.start and s.sampled_function(leaf.start) is leaf
        s._objects.clear()  # what refresh() does when the target unregisters them
        s._rebuild_index()
        assert s.object_at(leaf.start) is None and s.jit_functions() == []
        (record,) = build_records(s, {leaf.start: 3})
    assert record.display_name == "leaf" and record.counts == {leaf.start: 3}
    assert record.instructions[0].address == leaf.start
    assert record.instructions[-1].text.startswith("ret")
    assert {i.line for i in record.instructions if i.file == live.__file__} >= {
        live.source_line("LEAF_BODY")
    }
