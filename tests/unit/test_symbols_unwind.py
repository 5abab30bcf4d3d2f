"""Unwinding pieces on synthetic stacks: CFI steps, stack scans, call detection, CFI parsing,
and /proc/PID/maps parsing."""

from __future__ import annotations

import struct

from profila.symbols.cfi import REG_RBP, REG_RSP, CfiRow, FrameTable, parse_frames
from profila.symbols.maps import parse_maps
from profila.symbols.unwind import RangeSet, Registers, StepEnd, call_length, read_stack, step

BASE = 0x7FFC_0000_1000


def words(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


def test_step_with_an_rsp_based_cfa() -> None:
    """CFA = rsp + 32: return address at CFA-8, saved rbp at CFA-16, caller's sp = CFA."""
    stack = words(1, 2, 0xBEEF, 0x1234)
    row = CfiRow(REG_RSP, 32, -8, -16)
    assert step(row, Registers(0x1000, BASE, 7), stack, BASE) == Registers(
        0x1234, BASE + 32, 0xBEEF
    )


def test_step_keeps_rbp_when_it_was_not_saved() -> None:
    row = CfiRow(REG_RSP, 8, -8, None)
    assert step(row, Registers(0x1000, BASE, 99), words(0x4321), BASE) == Registers(
        0x4321, BASE + 8, 99
    )


def test_step_with_an_rbp_based_cfa() -> None:
    """A frame-pointer function: CFA = rbp + 16."""
    stack = words(0, 0, BASE + 0x40, 0x5555)  # saved rbp at bp, return address above it
    row = CfiRow(REG_RBP, 16, -8, -16)
    regs = Registers(0x1000, BASE, BASE + 16)
    assert step(row, regs, stack, BASE) == Registers(0x5555, BASE + 32, BASE + 0x40)


def test_step_stops_cleanly_or_not() -> None:
    """Past the copy: END_OF_COPY; undefined return address: OUTERMOST; nonsense: INVALID."""
    regs = Registers(0x1000, BASE, 0)
    assert step(CfiRow(REG_RSP, 64, -8, None), regs, words(1), BASE) is StepEnd.END_OF_COPY
    assert step(CfiRow(REG_RSP, 8, None, None), regs, words(1), BASE) is StepEnd.OUTERMOST
    assert step(CfiRow(3, 8, -8, None), regs, words(1), BASE) is StepEnd.INVALID
    assert step(CfiRow(REG_RSP, 0, -8, None), regs, words(1), BASE) is StepEnd.INVALID
    assert step(CfiRow(REG_RSP, 8, -8, None), regs, words(0), BASE) is StepEnd.OUTERMOST


def test_read_stack_bounds() -> None:
    stack = words(1, 2)
    assert read_stack(stack, BASE, BASE + 8) == 2
    assert read_stack(stack, BASE, BASE + 9) is None
    assert read_stack(stack, BASE, BASE - 8) is None


def test_range_scan_finds_words_in_ranges_in_stack_order() -> None:
    ranges = RangeSet([(0x5000, 0x6000), (0x1000, 0x2000)])
    stack = words(0x1000, 0x2000, 0x0FFF, 0x5FFF, 7, 0x1800, 2**64 - 1) + b"\x01\x02"
    assert list(ranges.scan(stack, BASE)) == [
        (BASE, 0x1000),
        (BASE + 24, 0x5FFF),
        (BASE + 40, 0x1800),
    ]
    assert list(ranges.scan(stack, BASE, skip_bytes=9)) == [
        (BASE + 24, 0x5FFF),
        (BASE + 40, 0x1800),
    ]
    assert list(RangeSet([]).scan(stack, BASE)) == []
    assert not RangeSet([])


def test_call_length_recognises_call_encodings() -> None:
    """The bytes before a return address end with a call (and its length is known)."""
    pad = b"\x90" * 10
    assert call_length(pad + b"\xff\xd0", 0x1000) == 2  # call rax
    assert call_length(pad + b"\x41\xff\xd3", 0x1000) == 3  # call r11
    assert call_length(pad + b"\xe8\x10\x00\x00\x00", 0x1000) == 5  # call rel32
    assert call_length(pad + b"\xff\x15\x00\x10\x00\x00", 0x1000) == 6  # call [rip+x]
    assert call_length(pad + b"\xff\x54\x24\x08", 0x1000) == 4  # call [rsp+8] (capstone)
    assert call_length(pad + b"\x48\x89\xc7", 0x1000) == 0  # mov rdi, rax
    assert call_length(b"", 0x1000) == 0


def _eh_frame(section_address: int, function: int, size: int) -> bytes:
    """A minimal .eh_frame as LLVM writes it: CIE "zR" pcrel|sdata8, one FDE."""
    cie_body = (
        struct.pack("<I", 0)  # CIE id
        + b"\x01zR\x00"  # version, augmentation
        + b"\x01\x78\x10"  # code align 1, data align -8, return address column 16
        + b"\x01\x1c"  # augmentation data: FDE pointers are pcrel|sdata8
        + b"\x0c\x07\x08\x90\x01"  # def_cfa rsp+8; offset r16 (rip) at cfa-8
    )
    cie_body += b"\x00" * (-len(cie_body) % 8 + 4)
    cie = struct.pack("<I", len(cie_body)) + cie_body
    fde_pos = len(cie)
    pc_field = fde_pos + 8
    insns = (
        b"\x41\x0e\x10"  # advance 1; def_cfa_offset 16
        + b"\x86\x02"  # offset r6 (rbp) at cfa-16
        + b"\x44\x0e\x40"  # advance 4; def_cfa_offset 64
    )
    body = (
        struct.pack("<I", pc_field - 4)  # CIE pointer: back to offset 0
        + struct.pack("<q", function - (section_address + pc_field))
        + struct.pack("<q", size)
        + b"\x00"  # augmentation data length
        + insns
    )
    body += b"\x00" * (-(len(body) + 4) % 8)
    return cie + struct.pack("<I", len(body)) + body + struct.pack("<I", 0)


def test_cfi_rows_from_a_hand_built_eh_frame() -> None:
    """pc-relative FDE addresses come out absolute; rows follow the advance_loc steps."""
    section, fn = 0x7F00_0000_2000, 0x7F00_0000_1000
    table = FrameTable(parse_frames(_eh_frame(section, fn, 0x40), section, eh=True))
    assert len(table) == 1
    assert (table.fdes[0].start, table.fdes[0].end) == (fn, fn + 0x40)
    assert table.row(fn) == CfiRow(REG_RSP, 8, -8, None)
    assert table.row(fn + 1) == CfiRow(REG_RSP, 16, -8, -16)
    assert table.row(fn + 4) == CfiRow(REG_RSP, 16, -8, -16)
    assert table.row(fn + 5) == CfiRow(REG_RSP, 64, -8, -16)
    assert table.row(fn + 0x3F) == CfiRow(REG_RSP, 64, -8, -16)
    assert table.row(fn + 0x40) is None
    assert table.row(fn - 1) is None


def test_parse_maps() -> None:
    text = (
        "55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234   /usr/bin/python3.11\n"
        "7f0000000000-7f0000021000 r-xp 00001000 08:01 99     /lib/libm.so.6\n"
        "7f0000100000-7f0000101000 rwxp 00000000 00:00 0 \n"
        "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]\n"
        "garbage line\n"
        "7f0000200000-7f0000201000 r-xp 00000000 08:01 5 /tmp/a file with spaces.so\n"
    )
    maps = parse_maps(text)
    assert [m.path for m in maps] == [
        "/usr/bin/python3.11",
        "/lib/libm.so.6",
        "",
        "/tmp/a file with spaces.so",
        "[stack]",
    ]
    libm = maps[1]
    assert libm.executable and libm.file_backed and not libm.anonymous
    assert libm.offset == 0x1000
    anon = maps[2]
    assert anon.anonymous and anon.executable and not anon.file_backed
    assert not maps[4].anonymous and not maps[4].file_backed
