"""The Python frames of a target thread, read from its memory (CPython 3.11 only).

The target runs the same interpreter binary as the controller (``sys.executable``), so the
layout of CPython's structures is discovered once in the controller's own process, by probing
its own objects against values Python reports about them (``id(code.co_filename)``,
``threading.get_native_id()``, ...): nothing is hard-coded but the chain of fields followed.
``_PyRuntime`` is found at the same offset from the start of the same file (the python binary or
libpython) in the target as in the controller.

The chain read per thread: ``_PyRuntime.interpreters.head`` (the main interpreter) ->
``threads.head`` -> ``PyThreadState.next`` ... (matched by ``native_thread_id``) ->
``cframe`` -> ``current_frame`` -> ``_PyInterpreterFrame.previous`` ... Each frame gives its
code object (file, qualified name, first line, location table) and ``prev_instr``, the
instruction it is executing, whose line comes from the location table.

Other Python versions, or any failed probe: ``PythonStacks.available`` is False with a reason,
and every read gives no frames. A read races with the running thread: any inconsistency (an
unreadable pointer, a loop, a code object that does not look like one) ends the walk, keeping
the frames read so far.
"""

from __future__ import annotations

import bisect
import ctypes
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass
from types import CodeType
from typing import Any

from profila.symbols.frames import SourceFrame
from profila.symbols.maps import parse_maps
from profila.symbols.memory import MemoryReadError, ProcessMemory

MAX_DEPTH = 512  # frames read per stack at most (a deeper stack keeps its innermost frames)
_PTR = 8
_U64 = struct.Struct("<Q")
_I32 = struct.Struct("<i")


def _plausible(address: int) -> bool:
    """Whether a word could be a user-space pointer (x86-64: below 2**47, not the first page)."""
    return 4096 <= address < 1 << 47


class ProbeFailed(Exception):
    """The layout of the interpreter's structures could not be worked out."""


@dataclass(frozen=True)
class Layout:
    """Where things are in the interpreter's structures, all offsets in bytes."""

    runtime_file: str  # the file holding _PyRuntime (python binary or libpython)
    runtime_offset: int  # _PyRuntime's address minus that file's lowest mapped address
    interp_head: int  # _PyRuntimeState.interpreters.head
    threads_head: int  # PyInterpreterState.threads.head
    ts_next: int  # PyThreadState.next
    ts_native_id: int  # PyThreadState.native_thread_id
    ts_cframe: int  # PyThreadState.cframe
    cf_current: int  # _PyCFrame.current_frame
    fr_code: int  # _PyInterpreterFrame.f_code
    fr_previous: int  # _PyInterpreterFrame.previous
    fr_prev_instr: int  # _PyInterpreterFrame.prev_instr
    co_filename: int
    co_qualname: int
    co_firstlineno: int
    co_linetable: int
    co_code: int  # first code unit (co_code_adaptive)
    bytes_size: int  # PyBytesObject.ob_size
    bytes_data: int  # PyBytesObject.ob_sval
    str_length: int  # PyASCIIObject.length
    str_state: int  # PyASCIIObject.state (bit fields: kind, compact, ascii)
    str_ascii_data: int  # characters of a compact ASCII string
    str_compact_data: int  # characters of a compact non-ASCII string


# -- the 3.11 location table (co_linetable) -----------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x3F) << shift
        shift += 6
        if not b & 0x40:
            return value, pos


def _svarint(data: bytes, pos: int) -> tuple[int, int]:
    value, pos = _varint(data, pos)
    return (-(value >> 1) if value & 1 else value >> 1), pos


@dataclass(frozen=True)
class LineTable:
    """Code-unit index -> line, from a 3.11 location table. ``ends[i]`` is the first code unit
    after entry i, ``lines[i]`` its line (-1: no line, e.g. the code's preamble)."""

    ends: tuple[int, ...]
    lines: tuple[int, ...]

    def line(self, unit: int) -> int:
        i = bisect.bisect_right(self.ends, unit)
        return self.lines[i] if unit >= 0 and i < len(self.lines) else -1


def parse_linetable(table: bytes, firstlineno: int) -> LineTable:
    """Each entry: a byte with the top bit set, ``code = (b >> 3) & 15`` and ``length = (b & 7)
    + 1`` code units, then operands by code: 15 no location; 14 line delta (signed varint) and
    end line, column, end column (varints); 13 line delta only; 10-12 line delta ``code - 10``
    and two column bytes; 0-9 same line and one column byte."""
    ends: list[int] = []
    lines: list[int] = []
    line = firstlineno
    unit = pos = 0
    try:
        while pos < len(table):
            first = table[pos]
            pos += 1
            if not first & 0x80:
                break  # not the start of an entry: stop at what was understood
            code = (first >> 3) & 15
            unit += (first & 7) + 1
            here = line
            if code == 15:
                here = -1
            elif code == 14:
                delta, pos = _svarint(table, pos)
                for _ in range(3):
                    _, pos = _varint(table, pos)
                line += delta
                here = line
            elif code == 13:
                delta, pos = _svarint(table, pos)
                line += delta
                here = line
            elif code >= 10:
                line += code - 10
                here = line
                pos += 2
            else:
                pos += 1
            ends.append(unit)
            lines.append(here)
    except IndexError:
        pass  # a truncated table (read while being replaced): keep the complete entries
    return LineTable(tuple(ends), tuple(lines))


# -- discovering the layout in the controller's own process ------------------------------


def _find_word(mem: ProcessMemory, base: int, size: int, value: int, step: int = _PTR) -> int:
    data = mem.read(base, size)
    fmt = _U64 if step == _PTR else _I32
    for off in range(0, size - fmt.size + 1, step):
        if fmt.unpack_from(data, off)[0] == value:
            return off
    raise ProbeFailed(f"value {value:#x} not found within {size} bytes of {base:#x}")


def _file_base(maps_text: str, path: str) -> int | None:
    starts = [m.start for m in parse_maps(maps_text) if m.path == path]
    return min(starts) if starts else None


def _probe_frames(fd: int, tstate: int) -> tuple[int, int, int, int, int]:
    """(ts_cframe, cf_current, fr_code, fr_previous, fr_prev_instr), found from this very call:
    the current frame's code is ``_probe_frames.__code__`` and the previous frame's code is
    the caller's. Memory is read with ``os.pread`` (C code, no Python frame of its own) on
    ``fd``, this process's /proc/self/mem, so that the current frame stays this one."""
    here = sys._getframe()
    caller = here.f_back
    assert caller is not None
    code_here, code_caller = id(here.f_code), id(caller.f_code)
    start = code_here + type(here.f_code).__basicsize__
    end = start + len(here.f_code.co_code)
    ts = os.pread(fd, 512, tstate)
    for ts_cframe in range(0, len(ts), _PTR):
        cframe = _U64.unpack_from(ts, ts_cframe)[0]
        if not _plausible(cframe):
            continue
        for cf_current in range(0, 32, _PTR):
            try:
                frame = _U64.unpack(os.pread(fd, _PTR, cframe + cf_current))[0]
                if not _plausible(frame):
                    continue
                fr = os.pread(fd, 96, frame)
            except (OSError, struct.error):
                continue
            for fr_code in range(0, len(fr) - _PTR + 1, _PTR):
                if _U64.unpack_from(fr, fr_code)[0] != code_here:
                    continue
                for fr_previous in range(0, len(fr) - _PTR + 1, _PTR):
                    prev = _U64.unpack_from(fr, fr_previous)[0]
                    if not _plausible(prev):
                        continue
                    try:
                        if _U64.unpack(os.pread(fd, _PTR, prev + fr_code))[0] != code_caller:
                            continue
                    except (OSError, struct.error):
                        continue
                    for fr_prev_instr in range(0, len(fr) - _PTR + 1, _PTR):
                        if start <= _U64.unpack_from(fr, fr_prev_instr)[0] < end:
                            return ts_cframe, cf_current, fr_code, fr_previous, fr_prev_instr
    raise ProbeFailed("the current frame could not be found from the thread state")


def _other_thread_state() -> tuple[int, threading.Thread, threading.Event]:
    """A thread state that exists alongside this thread's: a parked helper thread's."""
    ready, done = threading.Event(), threading.Event()
    box: list[int] = []
    get = ctypes.pythonapi.PyThreadState_Get
    get.restype = ctypes.c_void_p

    def park() -> None:
        box.append(int(get()))
        ready.set()
        done.wait(5.0)

    helper = threading.Thread(target=park, name="profila-probe", daemon=True)
    helper.start()
    ready.wait(5.0)
    if not box:
        raise ProbeFailed("the probe thread did not start")
    return box[0], helper, done


# Lengths no reference count or pointer is likely to equal.
_PROBE_BYTES = bytes(range(256)) * 7 + b"profila"
_PROBE_STR = "profila-probe-" * 101


def _probe_code(blank_lines: int) -> CodeType:
    """A method's code object (its name and qualified name differ) at a chosen first line."""
    source = "\n" * blank_lines + "class Probe:\n    def method(self):\n        return 1\n"
    space: dict[str, Any] = {}
    exec(compile(source, "<profila-probe>", "exec"), space)
    code: CodeType = space["Probe"].method.__code__
    return code


def discover_layout() -> Layout:
    """Work out the Layout in this process; ProbeFailed if anything does not check out."""
    if sys.version_info[:2] != (3, 11):
        raise ProbeFailed(f"Python frames are read for CPython 3.11 only, not {sys.version}")
    api = ctypes.pythonapi
    for name, res, args in (
        ("PyThreadState_Get", ctypes.c_void_p, []),
        ("PyInterpreterState_Head", ctypes.c_void_p, []),
        ("PyInterpreterState_ThreadHead", ctypes.c_void_p, [ctypes.c_void_p]),
        ("PyThreadState_Next", ctypes.c_void_p, [ctypes.c_void_p]),
    ):
        getattr(api, name).restype = res
        getattr(api, name).argtypes = args
    runtime = ctypes.addressof(ctypes.c_void_p.in_dll(api, "_PyRuntime"))
    with open("/proc/self/maps") as f:
        maps_text = f.read()
    holder = next((m for m in parse_maps(maps_text) if m.start <= runtime < m.end), None)
    if holder is None or not holder.file_backed:
        raise ProbeFailed("_PyRuntime is not in a mapped file")
    base = _file_base(maps_text, holder.path)
    assert base is not None
    mem = ProcessMemory(os.getpid())
    try:
        interp = int(api.PyInterpreterState_Head())
        interp_head = _find_word(mem, runtime, 256, interp)
        helper_ts, helper, done = _other_thread_state()
        try:
            head = int(api.PyInterpreterState_ThreadHead(interp))
            threads_head = _find_word(mem, interp, 256, head)
            nxt = api.PyThreadState_Next(helper_ts)
            if not nxt:
                raise ProbeFailed("the probe thread's state has no next thread state")
            ts_next = _find_word(mem, helper_ts, 256, int(nxt))
        finally:
            done.set()
            helper.join(5.0)
        tstate = int(api.PyThreadState_Get())
        ts_native_id = _find_word(mem, tstate, 512, threading.get_native_id())
        fd = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)
        try:
            frames = _probe_frames(fd, tstate)
        finally:
            os.close(fd)
        code, other = _probe_code(4242), _probe_code(7777)
        # The code type's fixed part ends where the bytecode starts (co_code_adaptive).
        co_code = type(code).__basicsize__
        co_firstlineno = _find_word(mem, id(code), co_code, code.co_firstlineno, 4)
        if mem.read(id(other) + co_firstlineno, 4) != _I32.pack(other.co_firstlineno):
            raise ProbeFailed("co_firstlineno not at one offset")
        if mem.read(id(code) + co_code, len(code.co_code)) != code.co_code:
            raise ProbeFailed("the bytecode does not follow the code object's fixed part")
        lay = Layout(
            runtime_file=holder.path,
            runtime_offset=runtime - base,
            interp_head=interp_head,
            threads_head=threads_head,
            ts_next=ts_next,
            ts_native_id=ts_native_id,
            ts_cframe=frames[0],
            cf_current=frames[1],
            fr_code=frames[2],
            fr_previous=frames[3],
            fr_prev_instr=frames[4],
            co_filename=_find_word(mem, id(code), co_code, id(code.co_filename)),
            co_qualname=_find_word(mem, id(code), co_code, id(code.co_qualname)),
            co_firstlineno=co_firstlineno,
            co_linetable=_find_word(mem, id(code), co_code, id(code.co_linetable)),
            co_code=co_code,
            bytes_size=_find_word(mem, id(_PROBE_BYTES), 32, len(_PROBE_BYTES)),
            bytes_data=bytes.__basicsize__ - 1,
            str_length=_find_word(mem, id(_PROBE_STR), 32, len(_PROBE_STR)),
            # state follows length and hash; _check decodes file names through it
            str_state=_find_word(mem, id(_PROBE_STR), 32, len(_PROBE_STR)) + 2 * _PTR,
            str_ascii_data=sys.getsizeof("") - 1,
            str_compact_data=sys.getsizeof("\u00e9") - 2,
        )
        _check(lay, mem)
        return lay
    finally:
        mem.close()


def _check(lay: Layout, mem: ProcessMemory) -> None:
    """Read this thread's own stack with the layout: it must give this function's line."""
    reader = _StackReader(lay, mem, runtime_address(lay))
    line = sys._getframe().f_lineno + 1
    frames = reader.read(threading.get_native_id())
    # The innermost frames are the reader's own; this function's frame comes next.
    mine = [f for f in frames if f.function == "_check" and f.file == __file__]
    if [f.line for f in mine] != [line]:
        raise ProbeFailed(f"reading this thread's stack gave {frames[:6]}, not _check:{line}")


def runtime_address(lay: Layout, pid: int | None = None) -> int:
    """_PyRuntime's address in process ``pid`` (default: this one)."""
    with open(f"/proc/{pid or 'self'}/maps") as f:
        base = _file_base(f.read(), lay.runtime_file)
    if base is None:
        raise ProbeFailed(f"{lay.runtime_file} is not mapped in process {pid}")
    return base + lay.runtime_offset


# -- reading a target's stacks -------------------------------------------------------------

# What a read racing with the running thread can run into: freed memory, reused memory holding
# anything, a half-written structure.
_RACES = (MemoryReadError, ValueError, OverflowError, IndexError, KeyError, struct.error)


class _CheckedMemory:
    """ProcessMemory that refuses addresses no user-space pointer can have (a word read from
    reused memory can be anything)."""

    def __init__(self, mem: ProcessMemory) -> None:
        self.mem = mem

    def read(self, address: int, size: int) -> bytes:
        if not _plausible(address) or not 0 <= size <= 1 << 20:
            raise MemoryReadError(0, f"not a pointer: {address:#x}")
        return self.mem.read(address, size)

    def read_u64(self, address: int) -> int:
        value: int = _U64.unpack(self.read(address, 8))[0]
        return value


class _StackReader:
    def __init__(self, lay: Layout, mem: ProcessMemory, runtime: int) -> None:
        self.lay = lay
        self.mem = _CheckedMemory(mem)
        self.runtime = runtime
        self._code_span = max(lay.co_filename, lay.co_qualname, lay.co_linetable) + _PTR
        # code address -> (the words identifying it, its file, name, line table)
        self._codes: dict[int, tuple[bytes, str, str, LineTable]] = {}

    def thread_states(self) -> dict[int, int]:
        """Native thread id -> PyThreadState address, for the main interpreter's threads."""
        lay, mem = self.lay, self.mem
        out: dict[int, int] = {}
        interp = mem.read_u64(self.runtime + lay.interp_head)
        if not interp:
            return out  # not initialised yet, or finalised
        ts = mem.read_u64(interp + lay.threads_head)
        seen: set[int] = set()
        while ts and ts not in seen and len(seen) < 4096:
            seen.add(ts)
            out[mem.read_u64(ts + lay.ts_native_id)] = ts
            ts = mem.read_u64(ts + lay.ts_next)
        return out

    def read(self, tid: int, tstate: int | None = None) -> tuple[SourceFrame, ...]:
        lay, mem = self.lay, self.mem
        if tstate is None:
            tstate = self.thread_states().get(tid)
            if tstate is None:
                return ()
        frames: list[SourceFrame] = []
        try:
            frame = mem.read_u64(mem.read_u64(tstate + lay.ts_cframe) + lay.cf_current)
            seen: set[int] = set()
            size = max(lay.fr_code, lay.fr_previous, lay.fr_prev_instr) + _PTR
            while frame and frame not in seen and len(frames) < MAX_DEPTH:
                seen.add(frame)
                raw = mem.read(frame, size)
                code = _U64.unpack_from(raw, lay.fr_code)[0]
                instr = _U64.unpack_from(raw, lay.fr_prev_instr)[0]
                frame = _U64.unpack_from(raw, lay.fr_previous)[0]
                info = self._code(code)
                unit = (instr - code - lay.co_code) // 2
                if unit < 0:
                    continue  # not started yet (an incomplete frame)
                frames.append(SourceFrame(info[1], info[3].line(unit), info[2]))
        except _RACES:
            pass  # the thread moved on under the read: keep what was consistent
        return tuple(frames)

    def _code(self, code: int) -> tuple[bytes, str, str, LineTable]:
        lay, mem = self.lay, self.mem
        head = mem.read(code, self._code_span)
        key = (
            head[lay.co_filename : lay.co_filename + _PTR]
            + head[lay.co_qualname : lay.co_qualname + _PTR]
            + head[lay.co_linetable : lay.co_linetable + _PTR]
            + head[lay.co_firstlineno : lay.co_firstlineno + 4]
        )
        cached = self._codes.get(code)
        if cached is not None and cached[0] == key:
            return cached
        table_at = _U64.unpack_from(head, lay.co_linetable)[0]
        size = mem.read_u64(table_at + lay.bytes_size)
        if size > 1 << 20:
            raise ValueError("not a location table")
        table = mem.read(table_at + lay.bytes_data, size)
        first = _I32.unpack_from(head, lay.co_firstlineno)[0]
        info = (
            key,
            self._string(_U64.unpack_from(head, lay.co_filename)[0]),
            self._string(_U64.unpack_from(head, lay.co_qualname)[0]),
            parse_linetable(table, first),
        )
        if len(self._codes) > 65536:
            self._codes.clear()
        self._codes[code] = info
        return info

    def _string(self, address: int) -> str:
        lay, mem = self.lay, self.mem
        head = mem.read(address, lay.str_ascii_data)
        length = _U64.unpack_from(head, lay.str_length)[0]
        state = struct.unpack_from("<I", head, lay.str_state)[0]
        kind, compact, ascii_ = (state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1
        if not compact or kind not in (1, 2, 4) or length > 4096:
            raise ValueError("not a compact string")
        if ascii_:
            return mem.read(address + lay.str_ascii_data, length).decode("ascii")
        data = mem.read(address + lay.str_compact_data, length * kind)
        return data.decode({1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind])


_LAYOUT: Layout | None = None
_LAYOUT_ERROR: str | None = None


def layout() -> Layout:
    """The Layout of this interpreter, probed once per controller process."""
    global _LAYOUT, _LAYOUT_ERROR
    if _LAYOUT is None and _LAYOUT_ERROR is None:
        try:
            _LAYOUT = discover_layout()
        except (ProbeFailed, MemoryReadError, OSError, AttributeError) as exc:
            _LAYOUT_ERROR = str(exc) or type(exc).__name__
    if _LAYOUT is None:
        raise ProbeFailed(_LAYOUT_ERROR or "no layout")
    return _LAYOUT


class PythonStacks:
    """Python stacks of the threads of process ``pid``, innermost frame first.

    Made right after the target's exec, before the dynamic loader may have mapped libpython:
    the file holding ``_PyRuntime`` is looked for in the target's maps at each batch (at most
    every RETRY_S) until it is there."""

    RETRY_S = 0.05

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.unavailable: str | None = None  # why no Python frames are read, if so
        self._layout: Layout | None = None
        self._reader: _StackReader | None = None
        self._mem: ProcessMemory | None = None
        self._next_look = 0.0
        try:
            self._layout = layout()
            self._mem = ProcessMemory(pid)
        except (ProbeFailed, OSError) as exc:
            self.unavailable = str(exc)
            self.close()
        self._states: dict[int, int] | None = None

    @property
    def available(self) -> bool:
        return self._mem is not None

    def new_batch(self) -> None:
        """Forget the thread list: threads may have started or ended since the last batch."""
        self._states = None
        if self._reader is None and self._mem is not None and self._layout is not None:
            now = time.monotonic()
            if now < self._next_look:
                return
            self._next_look = now + self.RETRY_S
            try:
                runtime = runtime_address(self._layout, self.pid)
            except (ProbeFailed, OSError):
                return  # not mapped yet (or the process is gone)
            self._reader = _StackReader(self._layout, self._mem, runtime)

    def read(self, tid: int) -> tuple[SourceFrame, ...]:
        if self._reader is None:
            return ()
        if self._states is None:
            try:
                self._states = self._reader.thread_states()
            except _RACES:
                self._states = {}
        tstate = self._states.get(tid)
        return self._reader.read(tid, tstate) if tstate is not None else ()

    def close(self) -> None:
        if self._mem is not None:
            self._mem.close()
            self._mem = None
        self._reader = None
