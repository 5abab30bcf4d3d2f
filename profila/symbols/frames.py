"""What the symboliser makes of a raw sample: a classified, source-level sample."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SampleKind(enum.Enum):
    """Where a thread was when it was sampled. Decided only in the symboliser."""

    NUMBA = "numba"  # some frame on the stack is Numba-compiled code
    PYTHON = "python"  # in the interpreter (libpython / the python executable)
    COMPILE = "compile"  # in LLVM (libllvmlite): Numba compiling
    NATIVE = "native"  # in any other native code (numpy, libc, ...)
    IDLE = "idle"  # blocked, sleeping or waiting
    BAD = "bad"  # the sample could not be read or made sense of


@dataclass(frozen=True, slots=True)
class SourceFrame:
    """One Numba source location on a stack (a real or an inlined frame)."""

    file: str  # absolute path, or a pseudo-name such as "<string>" when Numba gives no file
    line: int
    function: str  # Numba function name, e.g. "dither" (qualified as Numba names it)


@dataclass(frozen=True, slots=True)
class Sample:
    """A symbolised sample.

    ``frames`` holds the Numba source frames on the stack, innermost first, inlined frames
    included; it is empty unless ``kind`` is NUMBA. ``jit_pc`` is the program counter inside
    the innermost Numba-compiled function (for the per-instruction view), or None.
    ``python_frames`` holds the thread's Python frames (file, line, qualified name), innermost
    first: the callers of the Numba frames, or the Python code being run (see
    profila/symbols/python_stacks.py); empty when not read.
    """

    tid: int
    kind: SampleKind
    frames: tuple[SourceFrame, ...] = ()
    jit_pc: int | None = None
    python_frames: tuple[SourceFrame, ...] = ()
