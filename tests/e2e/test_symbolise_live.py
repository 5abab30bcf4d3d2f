"""Symbolising samples of a live Numba process, taken with ptrace (no gdb, no perf).

The target runs a NUMBA_DEBUGINFO=1 kernel whose loop calls a helper per element (debug info
makes every function noinline, so the call is real). Samples are taken by seizing the main
thread, interrupting it, reading its registers and its stack from /proc/PID/mem, and letting
it go on. Most of the time is in the helper, so most samples must come out as Numba samples
with the helper's line innermost and the kernel's call line above it: that only works if the
unwinder gets through a real JIT-to-JIT call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from profila.sampling.raw import RawSample
from profila.symbols.frames import Sample, SampleKind
from profila.symbols.symboliser import Symboliser

pytestmark = pytest.mark.e2e

TARGET = """
import math
import sys
import time

import numpy as np
from numba import njit


@njit
def helper(x):
    s = 0.0
    for k in range(64):
        s += math.{op}(x + k) * 0.5  # HELPER_LINE
    return s


@njit
def kernel(a, out):
    for i in range(a.shape[0]):
        out[i] = helper(a[i])  # CALL_LINE
    return out


a = np.arange(1.0, 20001.0)
out = np.empty_like(a)
kernel(a, out)
print("ready", flush=True)
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    kernel(a, out)
"""

SAMPLES = 20
STACK_BYTES = 64 * 1024

# ptrace requests and wait flags (linux/ptrace.h, x86-64)
PTRACE_CONT = 7
PTRACE_GETREGS = 12
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000

# struct user_regs_struct (sys/user.h)
# fmt: off
REG_NAMES = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
    "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds",
    "es", "fs", "gs",
)
# fmt: on


class UserRegs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_ulonglong) for name in REG_NAMES]


class PtraceSampler:
    """Stops one thread briefly with PTRACE_INTERRUPT and copies its registers and stack."""

    def __init__(self, tid: int) -> None:
        self.libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.libc.ptrace.restype = ctypes.c_long
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        self.tid = tid
        self._call(PTRACE_SEIZE, "PTRACE_SEIZE")
        self.mem = os.open(f"/proc/{tid}/mem", os.O_RDONLY)

    def _call(self, request: int, what: str, data: ctypes.c_void_p | None = None) -> None:
        if self.libc.ptrace(request, self.tid, None, data) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    def _stop(self) -> None:
        self._call(PTRACE_INTERRUPT, "PTRACE_INTERRUPT")
        os.waitpid(self.tid, WALL)

    def sample(self) -> RawSample:
        self._stop()
        try:
            regs = UserRegs()
            self._call(
                PTRACE_GETREGS, "PTRACE_GETREGS", ctypes.cast(ctypes.byref(regs), ctypes.c_void_p)
            )
            try:
                stack = os.pread(self.mem, STACK_BYTES, regs.rsp)  # short at the stack's top
            except OSError:
                stack = b""
            return RawSample(self.tid, time.monotonic_ns(), regs.rip, regs.rsp, regs.rbp, stack)
        finally:
            self._call(PTRACE_CONT, "PTRACE_CONT")

    def close(self) -> None:
        try:
            self._stop()
            self._call(PTRACE_DETACH, "PTRACE_DETACH")
        finally:
            os.close(self.mem)


def line_of(source: str, tag: str) -> int:
    (n,) = [i for i, text in enumerate(source.splitlines(), 1) if text.endswith("# " + tag)]
    return n


@pytest.fixture
def target(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, Path, str]]:
    source = TARGET.format(op=request.param)
    script = tmp_path / "target.py"
    script.write_text(source)
    env = {**os.environ, "NUMBA_DEBUGINFO": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), "60"], stdout=subprocess.PIPE, env=env, cwd=tmp_path
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        yield proc.pid, script, source
    finally:
        proc.kill()
        proc.wait()


def take_samples(pid: int) -> list[RawSample]:
    try:
        sampler = PtraceSampler(pid)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            pytest.skip(f"ptrace is not permitted here: {exc}")
        raise
    samples = []
    try:
        for _ in range(SAMPLES):
            time.sleep(0.05)
            samples.append(sampler.sample())
    finally:
        sampler.close()
    return samples


def symbolise_all(pid: int, raws: list[RawSample]) -> list[Sample]:
    symboliser = Symboliser(pid)
    try:
        assert any(f.display_name == "helper" for f in symboliser.jit_functions())
        start = time.perf_counter()
        out = [symboliser.symbolise(r) for r in raws]
        cold = (time.perf_counter() - start) / len(raws)
        start = time.perf_counter()
        for r in raws:
            symboliser.symbolise(r)
        warm = (time.perf_counter() - start) / len(raws)
        print(f"symbolise: {cold * 1e6:.0f} us/sample cold, {warm * 1e6:.0f} us/sample warm")
        return out
    finally:
        symboliser.close()


@pytest.mark.parametrize("target", ["sqrt", "sin"], indirect=True)
def test_live_samples_unwind_through_the_jit_call(target: tuple[int, Path, str]) -> None:
    """Most samples are Numba samples: helper's line innermost, kernel's call line above it.

    With math.sqrt the pc is inside the helper itself (sqrtsd is inlined); with math.sin many
    samples stop inside libm, and the helper has to be found by scanning the stack.
    """
    pid, script, source = target
    raws = take_samples(pid)
    samples = symbolise_all(pid, raws)
    helper_line, call_line = line_of(source, "HELPER_LINE"), line_of(source, "CALL_LINE")
    good = 0
    for s in samples:
        if s.kind is not SampleKind.NUMBA:
            continue
        assert s.jit_pc is not None
        assert s.frames, s
        # (A sample in Numba's CPython wrapper, unboxing the arguments, has only that frame.)
        assert all(f.file == str(script) for f in s.frames if f.function in ("helper", "kernel"))
        lines = [(f.function, f.line) for f in s.frames]
        if lines[0] == ("helper", helper_line) and ("kernel", call_line) in lines[1:]:
            good += 1
    kinds = Counter(s.kind for s in samples)
    assert good >= 0.7 * len(samples), (kinds, [s.frames for s in samples])
    if "math.sin" in source:
        # Samples stopped in libm: Numba samples whose JIT pc is the helper's call to sin.
        from_scan = [
            s
            for s, r in zip(samples, raws, strict=True)
            if s.kind is SampleKind.NUMBA and s.jit_pc != r.ip
        ]
        assert from_scan, kinds
