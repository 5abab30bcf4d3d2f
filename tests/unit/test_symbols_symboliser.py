"""The Symboliser pointed at this very process: real JIT objects, hand-built samples.

Functions are compiled here with debug info; samples are made of a pc and a stack copy laid
out the way the CPU would leave them, so each case (innermost in JIT code, innermost in libm
under JIT code, plain Python/native/compiler code, garbage) is exercised without a debugger.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import mmap
import os
import struct
from collections.abc import Iterator
from functools import cache

import pytest

from profila.sampling.raw import RawSample
from profila.symbols.cfi import REG_RSP
from profila.symbols.frames import SampleKind
from profila.symbols.jitobject import JitFunction
from profila.symbols.symboliser import Symboliser
from profila.symbols.unwind import call_length

numba = pytest.importorskip("numba")
np = pytest.importorskip("numpy")

SP = 0x7FFE_1234_0000  # where the fake stack copies pretend to live
TID = os.getpid()


@numba.njit(debug=True)
def leaf(x):  # type: ignore[no-untyped-def]
    return math.sin(x) * 2.0  # LEAF_BODY


@numba.njit(debug=True)
def caller(a):  # type: ignore[no-untyped-def]
    s = 0.0
    for i in range(a.shape[0]):
        s += leaf(a[i])  # CALLER_CALL
    return s


def source_line(tag: str) -> int:
    with open(__file__) as f:
        for n, text in enumerate(f, 1):
            if text.rstrip().endswith("# " + tag):
                return n
    raise AssertionError(tag)


def address_of(lib: ctypes.CDLL, name: str) -> int:
    value = ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
    assert value is not None
    return value


@pytest.fixture(scope="module")
def symboliser() -> Iterator[Symboliser]:
    caller(np.arange(4.0))
    s = Symboliser(os.getpid())
    yield s
    s.close()


def functions(s: Symboliser, name: str) -> list[JitFunction]:
    return [f for f in s.jit_functions() if f.display_name == name and f.file == __file__]


@cache
def libpython_address() -> int:
    return address_of(ctypes.pythonapi, "Py_IncRef")


def call_sites(fn: JitFunction) -> Iterator[int]:
    """Return addresses of the `call reg` instructions in ``fn`` (as the code is in memory)."""
    code = fn.code
    for off in range(2, len(code) + 1):
        if code[off - 2] == 0xFF and call_length(code[max(0, off - 15) : off], fn.start + off):
            yield fn.start + off


def caller_frame_stack(s: Symboliser, return_address: int, outer_ra: int) -> bytes:
    """Stack words from the caller's sp up: its frame, with ``outer_ra`` as its return address."""
    obj = s.object_at(return_address)
    assert obj is not None
    row = obj.cfi_row(return_address - 1)
    assert row is not None and row.cfa_register == REG_RSP and row.ra_offset == -8
    frame = bytearray(row.cfa_offset)
    struct.pack_into("<Q", frame, row.cfa_offset - 8, outer_ra)
    return bytes(frame)


def call_to_leaf(s: Symboliser) -> int:
    """A return address in caller, after its call to leaf, on the CALLER_CALL line."""
    (fn,) = functions(s, "caller")
    for ra in call_sites(fn):
        frames = s._pc_info(ra - 1)
        assert frames is not None
        if frames.frames and frames.frames[0].line == source_line("CALLER_CALL"):
            return ra
    raise AssertionError("no call on the call line")


def test_loads_this_process_jit_functions(symboliser: Symboliser) -> None:
    """jit_functions lists the functions compiled here, named, with absolute ranges."""
    (fn,) = functions(symboliser, "caller")
    assert fn.start < fn.end and not fn.wrapper
    assert fn.object.code_is_live
    assert fn.code == ctypes.string_at(fn.start, fn.end - fn.start)
    assert functions(symboliser, "leaf")


def test_innermost_in_jit_code_unwinds_through_the_call(symboliser: Symboliser) -> None:
    """pc at leaf's first instruction: frames are leaf's def line, then the caller's call line."""
    s = symboliser
    ra = call_to_leaf(s)
    outer = libpython_address() + 16
    stack = struct.pack("<Q", ra) + caller_frame_stack(s, ra, outer)
    for leaf_fn in functions(s, "leaf"):
        sample = s.symbolise(RawSample(TID, 0, leaf_fn.start, SP, 0, stack))
        assert sample.kind is SampleKind.NUMBA
        assert sample.jit_pc == leaf_fn.start
        assert [(f.function, f.line) for f in sample.frames] == [
            ("leaf", leaf_fn.line),
            ("caller", source_line("CALLER_CALL")),
        ]
        assert all(f.file == __file__ for f in sample.frames)


def test_innermost_in_libm_finds_the_jit_caller(symboliser: Symboliser) -> None:
    """pc in libm's sin called from JIT code: the return address is found by scanning."""
    s = symboliser
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    sin = address_of(libm, "sin")
    ra = call_to_leaf(s)
    (caller_fn,) = functions(s, "caller")
    # sin's own frame: a few locals, one of them pointing into JIT code but not after a call.
    native = struct.pack("<4Q", 0, caller_fn.start, 12345, SP + 0x100)
    stack = native + struct.pack("<Q", ra) + caller_frame_stack(s, ra, libpython_address() + 16)
    sample = s.symbolise(RawSample(TID, 0, sin + 4, SP, 0, stack))
    assert sample.kind is SampleKind.NUMBA
    assert [(f.function, f.line) for f in sample.frames] == [("caller", source_line("CALLER_CALL"))]
    assert sample.jit_pc is not None and ra - 15 <= sample.jit_pc < ra  # the call instruction
    again = s.symbolise(RawSample(TID, 0, sin + 4, SP, 0, stack))  # cached slot: same answer
    assert again == sample


def test_runtime_helpers_count_like_native_code(symboliser: Symboliser) -> None:
    """pc in a JIT copy of NRT_decref (C-named, no debug info): no frame of its own; the
    caller's line is innermost, as for a call into libm."""
    s = symboliser
    ra = call_to_leaf(s)
    stack = struct.pack("<Q", ra) + caller_frame_stack(s, ra, libpython_address() + 16)
    helpers = [f for f in s.jit_functions() if f.name == "NRT_decref"]
    assert helpers
    for fn in helpers:
        sample = s.symbolise(RawSample(TID, 0, fn.start, SP, 0, stack))
        assert sample.kind is SampleKind.NUMBA
        assert sample.jit_pc == fn.start
        assert [(f.function, f.line) for f in sample.frames] == [
            ("caller", source_line("CALLER_CALL"))
        ]


def test_stale_return_address_is_rejected(symboliser: Symboliser) -> None:
    """A JIT return address whose frame leads nowhere sensible is not taken as a caller."""
    s = symboliser
    getpid = address_of(ctypes.CDLL(None), "getpid")
    ra = call_to_leaf(s)
    stack = struct.pack("<Q", ra) + caller_frame_stack(s, ra, 0x1234)
    sample = s.symbolise(RawSample(TID, 0, getpid, SP, 0, stack))
    assert sample.kind is SampleKind.NATIVE
    assert sample.frames == () and sample.jit_pc is None


def test_kinds_outside_jit_code(symboliser: Symboliser) -> None:
    """Python, native, compiler code are classified by mapping; garbage is BAD."""
    s = symboliser
    stack = bytes(256)
    cases = {
        libpython_address(): SampleKind.PYTHON,
        address_of(ctypes.CDLL(None), "getpid"): SampleKind.NATIVE,
        0x10: SampleKind.BAD,
    }
    from llvmlite.binding import ffi

    cases[address_of(ffi.lib._lib_handle, "LLVMPY_GetProcessTriple")] = SampleKind.COMPILE
    for ip, kind in cases.items():
        assert s.symbolise(RawSample(TID, 0, ip, SP, 0, stack)).kind is kind, hex(ip)
    assert s.symbolise(RawSample(TID, 0, 0, SP, 0, stack)).kind is SampleKind.BAD
    assert s.symbolise(RawSample(TID, 0, libpython_address(), SP, 0, b"")).kind is SampleKind.BAD


def test_unknown_anonymous_code_is_bad(symboliser: Symboliser) -> None:
    """A pc in anonymous executable memory that is no JIT object: BAD (after a refresh)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
    libc.mmap.argtypes += [ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = mmap.PAGESIZE
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    start = libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_EXEC, flags, -1, 0)
    assert start not in (None, ctypes.c_void_p(-1).value)
    try:
        symboliser._maps.refresh(force=True)
        sample = symboliser.symbolise(RawSample(TID, 0, start + 8, SP, 0, bytes(64)))
        assert sample.kind is SampleKind.BAD
    finally:
        libc.munmap(start, size)


def test_refresh_picks_up_new_functions(symboliser: Symboliser) -> None:
    """Functions compiled after the symboliser started appear after refresh()."""

    @numba.njit(debug=True)
    def compiled_later(x):  # type: ignore[no-untyped-def]
        return x + 1

    compiled_later(1)
    assert not functions(symboliser, "test_refresh_picks_up_new_functions.<locals>.compiled_later")
    symboliser.refresh()
    assert functions(symboliser, "test_refresh_picks_up_new_functions.<locals>.compiled_later")
    count = len(symboliser.objects())
    symboliser.refresh()
    assert len(symboliser.objects()) == count


def test_never_raises_on_nonsense(symboliser: Symboliser) -> None:
    """Odd-length stacks, huge pcs and sps give a Sample, not an exception."""
    for ip, sp, stack in [
        (2**64 - 1, 2**64 - 8, b"\xff" * 13),
        (libpython_address(), 0, b"\x01" * 7),
        (1, 1, os.urandom(4096)),
    ]:
        sample = symboliser.symbolise(RawSample(TID, 0, ip, sp, 2**64 - 1, stack))
        assert sample.tid == TID
