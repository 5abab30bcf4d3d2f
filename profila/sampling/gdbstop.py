"""Sample through gdb stops: the fallback when ``perf_event_open`` is not permitted.

gdb already hosts the target (attached with ptrace). Asked to sample (see
``profila/host/gdb_side.py``, "Sampling through stops"), it stops the whole target at the
requested rate with a real-time signal that it never delivers, and for each thread writes one
binary record to a pipe this module reads: registers (ip, sp, bp) and a copy of the top of the
stack for a thread that was running, or just "idle" for one blocked in a syscall. No gdb
backtraces, no MI. The results are the dataclasses of :mod:`profila.sampling.raw`, so the
symboliser and the aggregator cannot tell this sampler from :class:`~profila.sampling.perf.
PerfSampler`.

Use::

    sampler = GdbStopSampler(rate_hz)
    gdb = GdbHost(gdb_path, pid, sampling=sampler.gdb_request())
    ...
    sampler.read()    # non-blocking; RawSample | IdleSpan | LostSamples
    sampler.close()

Differences from the perf sampler
    Each tick samples every thread at once, at a rate in the target's running (wall) time, not
    in each thread's CPU time: a thread that is runnable but waiting for a CPU counts as
    running. An idle thread at a tick becomes ``IdleSpan(tid, t, t + period)`` (one idle tick
    for the aggregator). A thread gdb could not read at a tick, and ticks dropped because the
    controller did not drain the pipe in time (8 MiB backlog inside gdb), are
    :class:`LostSamples`. Every stop costs the target time (see ``stats``): a few hundred
    microseconds plus ~100 us per thread.

Record format (little-endian; ``RECORD``, identical to gdb_side's)
    magic u16 (0x7067), kind u8, flags u8, tid u32, count u32, stack length u32, time_ns u64
    (CLOCK_MONOTONIC, when gdb saw the stop), then three u64: ip, sp, bp for SAMPLE, IDLE and
    LOST; for STOP (one per tick, after that tick's thread records): ns from the tgkill to the
    stop seen by gdb, ns gdb spent reading the threads, 0. A SAMPLE record is followed by
    ``stack length`` bytes of stack starting at sp.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from dataclasses import dataclass, field
from types import TracebackType

from profila.host.gdb import GdbSampling
from profila.sampling.raw import IdleSpan, LostSamples, RawSample

__all__ = [
    "DEFAULT_SIGNAL",
    "GdbStopSampler",
    "RecordStream",
    "StopStats",
    "parse_records",
]

RECORD = struct.Struct("<HBBIIIQQQQ")
MAGIC = 0x7067
KIND_SAMPLE = 1
KIND_IDLE = 2
KIND_LOST = 3
KIND_STOP = 4
DEFAULT_SIGNAL = 62  # SIGRTMAX-2; see gdb_side.py for why
DEFAULT_STACK = 16384
_MAX_STACK = 1 << 20  # anything longer is a corrupt stream, not a stack
_PIPE_BYTES = 4 << 20  # asked for with F_SETPIPE_SZ; the kernel may give less
_READ_CHUNK = 1 << 20

Item = RawSample | IdleSpan | LostSamples


@dataclass
class StopStats:
    """What the stops cost, as gdb measured them (all in ns)."""

    stops: int = 0
    threads: int = 0  # summed over stops
    signal_to_stop_ns: int = 0  # summed: tgkill until gdb had stopped the target
    handling_ns: int = 0  # summed: reading registers and stacks while stopped
    max_signal_to_stop_ns: int = 0
    max_handling_ns: int = 0

    def mean_signal_to_stop_ns(self) -> float:
        return self.signal_to_stop_ns / self.stops if self.stops else 0.0

    def mean_handling_ns(self) -> float:
        return self.handling_ns / self.stops if self.stops else 0.0


class CorruptStream(ValueError):
    """The pipe carried something that is not a record (a bug, never expected)."""


def parse_records(
    buf: bytes | bytearray | memoryview,
    period_ns: int,
    out: list[Item],
    stats: StopStats | None = None,
) -> int:
    """Decode the records laid end to end in ``buf``; append samples, idle ticks and losses to
    ``out``. Returns the offset just past the last whole record (the rest is an incomplete
    record: feed it again with more bytes). Raises CorruptStream on a bad magic or kind."""
    off = 0
    end = len(buf)
    unpack = RECORD.unpack_from
    size = RECORD.size
    append = out.append
    while off + size <= end:
        magic, kind, _flags, tid, count, stack_len, t, a, b, c = unpack(buf, off)
        if magic != MAGIC or stack_len > _MAX_STACK:
            raise CorruptStream(f"bad gdb sample record at offset {off}")
        if kind == KIND_SAMPLE:
            if off + size + stack_len > end:
                break
            stack = bytes(buf[off + size : off + size + stack_len])
            append(RawSample(tid, t, a, b, c, stack))
            off += size + stack_len
            continue
        if kind == KIND_IDLE:
            append(IdleSpan(tid, t, t + period_ns))
        elif kind == KIND_LOST:
            append(LostSamples(count))
        elif kind == KIND_STOP:
            if stats is not None:
                stats.stops += 1
                stats.threads += count
                stats.signal_to_stop_ns += a
                stats.handling_ns += b
                stats.max_signal_to_stop_ns = max(stats.max_signal_to_stop_ns, a)
                stats.max_handling_ns = max(stats.max_handling_ns, b)
        else:
            raise CorruptStream(f"unknown gdb sample record kind {kind} at offset {off}")
        off += size
    return off


@dataclass
class RecordStream:
    """Bytes in, items out; keeps an incomplete record for the next ``feed``."""

    period_ns: int
    stats: StopStats = field(default_factory=StopStats)
    _pending: bytearray = field(default_factory=bytearray)
    corrupt: bool = False

    def feed(self, data: bytes) -> list[Item]:
        out: list[Item] = []
        if self.corrupt:
            return out
        self._pending += data
        try:
            used = parse_records(self._pending, self.period_ns, out, self.stats)
        except CorruptStream:
            # Nothing after this point can be framed again; count what is left as one loss
            # (and whatever else arrives is dropped) instead of inventing samples.
            self.corrupt = True
            self._pending.clear()
            out.append(LostSamples(1))
            return out
        del self._pending[:used]
        return out

    def finish(self) -> list[Item]:
        """The writer is gone: an incomplete record at the end is a lost sample."""
        if self._pending and not self.corrupt:
            self._pending.clear()
            return [LostSamples(1)]
        return []


class GdbStopSampler:
    """Reads what a sampling gdb writes (see the module docstring).

    Make it before starting gdb, give ``gdb_request()`` to ``GdbHost(..., sampling=...)``, then
    ``read()`` as often as the perf sampler's; ``close()`` when done."""

    def __init__(
        self,
        rate_hz: float,
        stack_bytes: int = DEFAULT_STACK,
        *,
        signal: int = DEFAULT_SIGNAL,
        start_on_exec: bool = True,
    ) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be positive, not {rate_hz!r}")
        if not 0 <= stack_bytes <= 65536:
            raise ValueError(f"stack_bytes must be within 0..65536, not {stack_bytes!r}")
        if not 34 <= signal <= 64:
            raise ValueError(f"signal must be a real-time signal (34..64), not {signal!r}")
        self.rate_hz = rate_hz
        self.stack_bytes = stack_bytes
        self.signal = signal
        self.start_on_exec = start_on_exec
        self.period_ns = round(1e9 / rate_hz)
        self._stream = RecordStream(self.period_ns)
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        with contextlib.suppress(OSError):  # a bigger pipe rides out a slow drain
            fcntl.fcntl(self._read_fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        self._eof = False

    @property
    def stats(self) -> StopStats:
        return self._stream.stats

    def gdb_request(self) -> GdbSampling:
        """What GdbHost needs to make gdb sample; hands it the pipe's write end (once)."""
        if self._write_fd < 0:
            raise RuntimeError("the sample pipe was already handed to a gdb")
        fd, self._write_fd = self._write_fd, -1
        return GdbSampling(fd, self.rate_hz, self.stack_bytes, self.signal, self.start_on_exec)

    def read(self) -> list[RawSample | IdleSpan | LostSamples]:
        """Everything gdb has written so far (non-blocking), in tick order."""
        out: list[Item] = []
        if self._read_fd < 0 or self._eof:
            return out
        while True:
            try:
                data = os.read(self._read_fd, _READ_CHUNK)
            except BlockingIOError:
                break
            if not data:
                self._eof = True
                out += self._stream.finish()
                break
            out += self._stream.feed(data)
        return out

    def fileno(self) -> int:
        """Readable when gdb has written records (for select/poll)."""
        return self._read_fd

    def close(self) -> None:
        """Idempotent. A gdb still sampling gets EPIPE and stops writing (it keeps hosting)."""
        for name in ("_read_fd", "_write_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)

    def __enter__(self) -> GdbStopSampler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
