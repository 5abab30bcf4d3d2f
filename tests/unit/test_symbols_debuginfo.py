"""Line lookups and inline chains on hand-built tables (no DWARF parsing involved)."""

from __future__ import annotations

from profila.symbols.debuginfo import DebugInfo, InlineRange, LineTable, Subprogram
from profila.symbols.frames import SourceFrame

F = "/src/user.py"
LIB = "/lib/numba/np/arraymath.py"


def table() -> DebugInfo:
    seq = [
        (0x100, F, 10),
        (0x104, F, 0),  # compiler glue after line 10
        (0x108, F, 11),
        (0x110, LIB, 50),  # inlined library code...
        (0x118, LIB, 0),  # ...and glue inside it
        (0x11C, F, 0),  # glue back in the caller, just after the inlined code
        (0x120, F, 12),
        (0x130, None, 0),  # end of sequence
    ]
    inline = InlineRange(0x110, 0x11C, 1, "impl", F, 11, die=0x40)
    sub = Subprogram(0x100, 0x130, "kernel", "_ZN8__main__6kernelB2v1Ed", F, 9, [inline])
    leading_zero = [(0x200, F, 0), (0x204, F, 30), (0x210, None, 0)]
    return DebugInfo(LineTable([seq, leading_zero]), [sub])


def test_plain_rows() -> None:
    d = table()
    assert d.frames(0x100, "?") == (SourceFrame(F, 10, "kernel"),)
    assert d.frames(0x10F, "?") == (SourceFrame(F, 11, "kernel"),)
    assert d.frames(0x125, "?") == (SourceFrame(F, 12, "kernel"),)


def test_line_zero_goes_to_the_previous_line_of_the_same_scope() -> None:
    """Glue after line 10 is line 10; glue after inlined code is the caller's line, not the
    inlinee's last line."""
    d = table()
    assert d.frames(0x106, "?") == (SourceFrame(F, 10, "kernel"),)
    assert d.frames(0x11D, "?") == (SourceFrame(F, 11, "kernel"),)
    assert d.frames(0x119, "?") == (SourceFrame(LIB, 50, "impl"), SourceFrame(F, 11, "kernel"))


def test_inline_chain_innermost_first() -> None:
    d = table()
    assert d.frames(0x112, "?") == (SourceFrame(LIB, 50, "impl"), SourceFrame(F, 11, "kernel"))


def test_a_sequence_starting_with_line_zero_uses_the_next_line() -> None:
    """No subprogram covers 0x200 (line tables only, a leaf): the symbol's name is used."""
    d = table()
    assert d.frames(0x200, "leaf") == (SourceFrame(F, 30, "leaf"),)


def test_outside_every_sequence() -> None:
    d = table()
    assert d.frames(0x50, "x") == ()
    assert d.frames(0x130, "x") == ()  # end of sequence
    assert d.frames(0x1000, "x") == ()


def test_lines_in_lists_rows_for_a_range() -> None:
    d = table()
    assert list(d.lines.lines_in(0x100, 0x110)) == [(0x100, F, 10), (0x104, F, 0), (0x108, F, 11)]
