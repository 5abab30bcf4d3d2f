"""Sample another process with ``perf_event_open``: user registers, user stack copies, idle spans.

The controller opens software-clock sampling events on the target (given by PID) through
``ctypes``, maps one ring buffer per event group and drains it from Python; the target is never
stopped.  Every sample carries the user-space ``bp``, ``sp`` and ``ip`` and a copy of the top of
the user stack, so the symboliser can unwind it offline.  The results are the dataclasses of
:mod:`profila.sampling.raw`.

Event
    ``PERF_COUNT_SW_TASK_CLOCK`` (ticks only while the monitored thread is on a CPU), a fixed
    period of ``1e9 / rate_hz`` ns, ``exclude_kernel`` and ``exclude_hv`` (needed under
    ``perf_event_paranoid=2``), ``sample_type = IP|TID|TIME|REGS_USER|STACK_USER`` with
    ``sample_regs_user = BP|SP|IP`` and ``use_clockid`` = ``CLOCK_MONOTONIC`` (so ``time_ns`` is
    comparable with :func:`time.monotonic_ns`).  ``context_switch`` plus ``sample_id_all`` make
    the kernel log every switch of a monitored thread; ``task`` adds FORK/EXIT records.

Design: one event per (thread present at attach, online CPU), with ``inherit=1``
    This is what ``perf record -p`` does.  A per-task event with ``inherit=1`` and ``cpu=-1``
    cannot be mmapped (``EINVAL``), but per-CPU events can, and the kernel writes the records
    of every inherited child event into the ring buffer of its top-level parent.  So all threads
    the target creates later -- including threads that live for a millisecond between two
    ``read()`` calls -- are sampled from their first instruction, which a design that discovers
    threads by scanning ``/proc/PID/task`` cannot do.  Existing threads each need their own
    events (inheritance only reaches threads cloned after the event exists); the events of one
    CPU share that CPU's ring buffer (``PERF_EVENT_IOC_SET_OUTPUT``), so there is one buffer per
    CPU.  When the controller starts the target itself (``enable_on_exec``) there is a single
    thread, hence just one event per CPU.  A thread cloned while the attach is under way by a
    thread whose events are not open yet is caught by a second scan of ``/proc/PID/task`` (a
    thread counts as covered when a FORK record for it has been seen).

    Verified on this kernel (Linux 6.18, x86-64 VM without a hardware PMU, paranoid=2, both as
    root and as an unprivileged user): per-CPU inherited events deliver samples carrying
    registers and stack from every thread, pre-existing and later ones, and switch records for
    all of them; ``perf record -p`` gets samples here as well.  If the per-CPU design is refused
    (``EINVAL``/``EOPNOTSUPP``/``ENODEV`` on open or mmap), the sampler falls back to one event
    per thread (``cpu=-1``, ``inherit=0``, one ring each) and rescans ``/proc/PID/task`` on each
    ``read()``: threads are then picked up late, and threads that live less than a read interval
    are missed.

Idle spans
    A ``PERF_RECORD_SWITCH`` out without ``PERF_RECORD_MISC_SWITCH_OUT_PREEMPT`` (the thread
    blocked or slept) followed by a switch in of the same tid is an :class:`IdleSpan`; preempted
    switch-outs are not idle.  A thread may switch out on one CPU and in on another, and the
    per-CPU buffers are drained one after the other, so switch records are not matched as they
    are read: they wait in a reorder queue and are matched in time order once they are older than
    the moment the drain began (minus a small slack), or at once when the target is gone.  A lost
    record forgets all pending switch-outs; an EXIT forgets that thread's.

Jitter
    The period of every event is redrawn uniformly in +-10 % of the nominal (mean = nominal) with
    ``PERF_EVENT_IOC_PERIOD``.  That ioctl restarts the event's countdown, so redrawing more often
    than every few periods would lose samples (and, if ``read()`` ran faster than the period,
    starve sampling entirely); ``read()`` therefore redraws only when at least
    ``_JITTER_MIN_PERIODS`` (50) nominal periods have passed since the previous redraw.  On this
    kernel the ioctl on a top-level event also retimes its inherited child events (verified:
    setting 10 ms on the parent events moved a running child thread's sample interval from 5 ms
    to 10 ms; without jitter the intervals of a busy thread sit at 5.00 +- 0.05 ms, with it they
    spread over 4.5-5.5 ms).  A kernel that did not propagate it would still give each new
    thread the period its creator's top-level event had at clone time, itself a random draw.

Ring buffers
    ``2**n`` data pages + 1 header page, sized for ~0.1 s of samples at ``rate_hz`` with full
    stacks (2 MiB at 1000 Hz and 16 KiB), at least 1 MiB for the switch records of busy thread
    pools, at most 4 MiB; halved (down to 64 KiB) while the kernel refuses the locked memory
    (``EPERM``: ``perf_event_mlock_kb`` per CPU plus ``RLIMIT_MEMLOCK`` for unprivileged
    users).  A CPU runs one thread at a time and the task
    clock only ticks while a monitored thread runs, so one CPU's buffer receives at most
    ``rate_hz`` samples a second.  The drain reads ``data_head``, parses ``[data_tail,
    data_head)`` in place (copying out only the stacks, and the one record that straddles the
    end of the ring), then stores ``data_tail``.  On x86-64 loads are
    not reordered with loads nor stores with earlier loads, and every step is an opaque C call
    (8-byte aligned ``ctypes`` accesses, single instructions), so no explicit fence is needed.

Cost
    Measured on this VM (2 vCPUs shared with other work, Python 3.11), as CPU time of the thread
    calling ``read()`` every 30 ms while one target thread spins at 1000 Hz with 16 KiB stacks:
    10-15 us per sample, everything included (about 1-1.5 % of a CPU at 1000 samples/s); with
    1 KiB stacks about 11 us.  The fixed part of a ``read()`` with nothing to do is ~2 us (a
    pidfd poll; the period ioctls cost ~50 us each but run only every 50 periods).  Parsing alone
    on warm synthetic records: ~2.5 us per sample, ~4 us with a 16 KiB stack copy -- up to
    ~15 us when glibc has returned the freed heap to the kernel and every copy faults in fresh
    pages (``MALLOC_TRIM_THRESHOLD_`` in the controller avoids that).

Testing
    :func:`parse_records`, :class:`RingReader` and :class:`IdleMatcher` need no kernel.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import errno
import fcntl
import mmap
import os
import platform
import random
import select
import struct
import time
from collections.abc import Iterable
from types import TracebackType

from profila.errors import EnvironmentProblem
from profila.sampling.raw import IdleSpan, LostSamples, RawSample

__all__ = [
    "IdleMatcher",
    "PerfSampler",
    "RingReader",
    "SamplerUnavailable",
    "parse_records",
]

# ---------------------------------------------------------------------------------------------
# Kernel ABI constants (linux/perf_event.h, asm/perf_regs.h for x86-64)

_NR_PERF_EVENT_OPEN_X86_64 = 298
_PERF_FLAG_FD_CLOEXEC = 1 << 3

_PERF_TYPE_SOFTWARE = 1
_PERF_COUNT_SW_CPU_CLOCK = 0
_PERF_COUNT_SW_TASK_CLOCK = 1

_PERF_SAMPLE_IP = 1 << 0
_PERF_SAMPLE_TID = 1 << 1
_PERF_SAMPLE_TIME = 1 << 2
_PERF_SAMPLE_REGS_USER = 1 << 12
_PERF_SAMPLE_STACK_USER = 1 << 13
_SAMPLE_TYPE = (
    _PERF_SAMPLE_IP
    | _PERF_SAMPLE_TID
    | _PERF_SAMPLE_TIME
    | _PERF_SAMPLE_REGS_USER
    | _PERF_SAMPLE_STACK_USER
)

_PERF_REG_X86_BP = 6
_PERF_REG_X86_SP = 7
_PERF_REG_X86_IP = 8
# The kernel writes the selected registers in ascending bit order: bp, sp, ip.
_REGS_MASK = (1 << _PERF_REG_X86_BP) | (1 << _PERF_REG_X86_SP) | (1 << _PERF_REG_X86_IP)

# perf_event_attr flag bits
_ATTR_DISABLED = 1 << 0
_ATTR_INHERIT = 1 << 1
_ATTR_EXCLUDE_KERNEL = 1 << 5
_ATTR_EXCLUDE_HV = 1 << 6
_ATTR_ENABLE_ON_EXEC = 1 << 12
_ATTR_TASK = 1 << 13
_ATTR_SAMPLE_ID_ALL = 1 << 18
_ATTR_USE_CLOCKID = 1 << 25
_ATTR_CONTEXT_SWITCH = 1 << 26

_CLOCK_MONOTONIC = 1
_PERF_ATTR_SIZE = 128  # PERF_ATTR_SIZE_VER7; older kernels accept it (the tail is all zero)

# ioctls: _IO('$', 5) and _IOW('$', 4, __u64)
_PERF_EVENT_IOC_SET_OUTPUT = 0x2405
_PERF_EVENT_IOC_PERIOD = 0x40082404

# record types
PERF_RECORD_LOST = 2
PERF_RECORD_EXIT = 4
PERF_RECORD_FORK = 7
PERF_RECORD_SAMPLE = 9
PERF_RECORD_LOST_SAMPLES = 13
PERF_RECORD_SWITCH = 14
PERF_RECORD_SWITCH_CPU_WIDE = 15
PERF_RECORD_MISC_SWITCH_OUT = 1 << 13
PERF_RECORD_MISC_SWITCH_OUT_PREEMPT = 1 << 14

# struct perf_event_mmap_page: data_head, data_tail, data_offset, data_size
_DATA_HEAD_OFFSET = 1024
_DATA_TAIL_OFFSET = 1032
_DATA_OFFSET_OFFSET = 1040
_DATA_SIZE_OFFSET = 1048

# ---------------------------------------------------------------------------------------------
# Tunables

_JITTER = 0.10  # period drawn uniformly in [1 - _JITTER, 1 + _JITTER] x nominal
_JITTER_MIN_PERIODS = 50  # nominal periods between two redraws (the ioctl restarts the count)
_REORDER_SLACK_NS = 2_000_000  # records younger than (drain start - slack) may still be in flight
_RING_SECONDS = 0.1  # ring buffer capacity, in seconds of samples at rate_hz
_RING_MIN_PAGES = 16  # the floor when the kernel refuses locked memory
# Where sizing starts (1 MiB per CPU, if the kernel allows it): besides samples, the ring takes
# context-switch records, and a thread pool that blocks and wakes thousands of times a second
# (OpenMP with more threads than CPUs) overflowed 256 KiB while the controller waited for a CPU.
_RING_START_PAGES = 256
_RING_MAX_PAGES = 1024
_MIN_PERIOD_NS = 10_000  # the kernel's floor for hrtimer-based software events
_SAMPLE_OVERHEAD = 128  # bytes of a sample record besides the stack copy (rounded up)

# Switch-stream event kinds (IdleMatcher)
SWITCH_IN = 0
SWITCH_OUT = 1  # voluntary: blocked, sleeping, waiting
SWITCH_OUT_PREEMPTED = 2
THREAD_EXIT = 3
RECORDS_LOST = 4

_HEADER = struct.Struct("<IHH")  # type, misc, size
_SAMPLE_HEAD = struct.Struct("<QIIQQ")  # ip, pid, tid, time, regs abi
_REGS_AND_STACK_SIZE = struct.Struct("<QQQQ")  # bp, sp, ip, stack size
_U64 = struct.Struct("<Q")
_U64_PAIR = struct.Struct("<QQ")
_SAMPLE_ID = struct.Struct("<IIQ")  # sample_id_all trailer for TID|TIME: pid, tid, time
_TASK_RECORD = struct.Struct("<IIIIQ")  # FORK/EXIT: pid, ppid, tid, ptid, time

SwitchEvent = tuple[int, int, int]  # (time_ns, tid, kind); tid is -1 for RECORDS_LOST
Item = RawSample | IdleSpan | LostSamples


class SamplerUnavailable(EnvironmentProblem):
    """perf_event_open cannot be used here; str(exc) is a one-line reason a user can act on
    (e.g. names perf_event_paranoid and its value, or EACCES/EPERM/ENOSYS)."""


# ---------------------------------------------------------------------------------------------
# Record parsing (pure, no kernel needed)


def parse_records(
    buf: bytes | bytearray | memoryview,
    out: list[Item],
    switches: list[SwitchEvent],
    forks: set[int] | None = None,
    start: int = 0,
    stop: int | None = None,
    tally: list[int] | None = None,
) -> int:
    """Decode the perf records laid end to end in ``buf[start:stop]``.

    Samples and losses are appended to ``out`` in buffer order; context switches, thread exits
    and losses go to ``switches`` as ``(time_ns, tid, kind)`` for an :class:`IdleMatcher`;
    the tids of FORK records go to ``forks`` when given.  Unknown record types are skipped by
    their header size.  Returns the offset just past the last whole record, which is ``stop``
    unless the range ends inside a record (or at a malformed header).  ``buf`` may be a view
    of the live ring: stacks are copied out, nothing keeps a reference into it.

    A ``PERF_RECORD_LOST`` counts lost records of every type, and a thread pool that blocks and
    wakes thousands of times a second fills the ring with switch records (8 OpenMP threads on
    2 CPUs: ~15k switches/s against ~50 samples/s). Given a ``tally`` (``[samples, other
    records]`` decoded from this ring so far, updated here), its count is turned into an
    estimate of lost *samples*: scaled by the share of samples among the ring's records. Without
    one, the count is passed on as it is.
    """
    end = len(buf) if stop is None else stop
    off = start
    header = _HEADER.unpack_from
    sample_head = _SAMPLE_HEAD.unpack_from
    regs = _REGS_AND_STACK_SIZE.unpack_from
    u64 = _U64.unpack_from
    sample_id = _SAMPLE_ID.unpack_from
    append = out.append
    samples = others = 0
    lost_at: list[tuple[int, int]] = []  # (index in out, lost record count)
    while off + 8 <= end:
        rtype, misc, size = header(buf, off)
        if size < 8 or off + size > end:
            break
        if rtype == PERF_RECORD_SAMPLE:
            samples += 1
            if size < 40:
                off += size  # malformed: too short for what we asked for
                continue
            ip, _pid, tid, t, abi = sample_head(buf, off + 8)
            if abi and size >= 72:
                bp, sp, rip, stack_size = regs(buf, off + 40)
                pos = off + 72
                if stack_size and pos + stack_size + 8 <= off + size:
                    (dyn_size,) = u64(buf, pos + stack_size)
                    stack = bytes(buf[pos : pos + min(dyn_size, stack_size)])
                else:
                    stack = b""
                append(RawSample(tid, t, rip, sp, bp, stack))
            else:  # no user registers (the thread was in the kernel without a user context)
                append(RawSample(tid, t, ip, 0, 0, b""))
        elif rtype in (PERF_RECORD_SWITCH, PERF_RECORD_SWITCH_CPU_WIDE) and size >= 24:
            _pid, tid, t = sample_id(buf, off + size - 16)
            if not misc & PERF_RECORD_MISC_SWITCH_OUT:
                kind = SWITCH_IN
            elif misc & PERF_RECORD_MISC_SWITCH_OUT_PREEMPT:
                kind = SWITCH_OUT_PREEMPTED
            else:
                kind = SWITCH_OUT
            switches.append((t, tid, kind))
        elif rtype == PERF_RECORD_LOST and size >= 24:
            _id, lost = _U64_PAIR.unpack_from(buf, off + 8)
            lost_at.append((len(out), lost))
            append(LostSamples(lost))
            t = sample_id(buf, off + size - 16)[2] if size >= 40 else 0
            switches.append((t, -1, RECORDS_LOST))
        elif rtype == PERF_RECORD_LOST_SAMPLES and size >= 16:
            append(LostSamples(u64(buf, off + 8)[0]))
        elif rtype == PERF_RECORD_EXIT and size >= 32:
            _pid, _ppid, tid, _ptid, t = _TASK_RECORD.unpack_from(buf, off + 8)
            switches.append((t, tid, THREAD_EXIT))
        elif rtype == PERF_RECORD_FORK and forks is not None and size >= 32:
            forks.add(_TASK_RECORD.unpack_from(buf, off + 8)[2])
        if rtype not in (PERF_RECORD_SAMPLE, PERF_RECORD_LOST, PERF_RECORD_LOST_SAMPLES):
            others += 1
        off += size
    if tally is not None:
        tally[0] += samples
        tally[1] += others
        samples, others = tally
    else:
        lost_at = []
    if samples + others:
        for index, lost in lost_at:
            out[index] = LostSamples(-(-lost * samples // (samples + others)))
    return off


class IdleMatcher:
    """Turns switch records from several buffers into :class:`IdleSpan` s, in time order.

    Records of one thread can sit in different per-CPU buffers, which are drained one after the
    other, so a switch-in may be read before the switch-out it ends.  Events therefore wait in a
    queue and are matched only once they are older than a watermark the caller guarantees
    complete (every record up to it has been pushed).
    """

    def __init__(self) -> None:
        self._queue: list[tuple[int, int, int, int]] = []  # (time, seq, tid, kind)
        self._seq = 0
        self._out_since: dict[int, int] = {}  # tid -> time of its pending voluntary switch-out
        self._last: dict[int, int] = {}  # tid -> time of its last matched event

    def push(self, events: Iterable[SwitchEvent]) -> None:
        seq = self._seq
        queue = self._queue
        for t, tid, kind in events:
            queue.append((t, seq, tid, kind))
            seq += 1
        self._seq = seq

    def pending(self) -> int:
        """Number of queued events not yet matched."""
        return len(self._queue)

    def release(self, watermark_ns: int | None) -> list[IdleSpan]:
        """Match queued events with ``time <= watermark_ns`` (all of them if None)."""
        queue = self._queue
        if not queue:
            return []
        queue.sort()
        if watermark_ns is None:
            ready, self._queue = queue, []
        else:
            n = bisect.bisect_right(queue, (watermark_ns, 1 << 62, 0, 0))
            ready, self._queue = queue[:n], queue[n:]
        spans: list[IdleSpan] = []
        out_since = self._out_since
        last = self._last
        for t, _seq, tid, kind in ready:
            if kind == RECORDS_LOST:
                out_since.clear()  # the matching switch-in may be among the lost records
                continue
            prev = last.get(tid)
            if prev is not None and t < prev:
                continue  # arrived after its successors were matched; cannot be placed
            if kind == THREAD_EXIT:
                out_since.pop(tid, None)
                last.pop(tid, None)
                continue
            last[tid] = t
            if kind == SWITCH_IN:
                start = out_since.pop(tid, None)
                if start is not None:
                    spans.append(IdleSpan(tid, start, t))
            elif kind == SWITCH_OUT:
                out_since[tid] = t
            else:
                out_since.pop(tid, None)
        return spans


class RingReader:
    """Consumer side of one perf ring buffer: header page + power-of-two data area.

    ``buf`` is the whole writable mapping (an ``mmap`` in production, a ``bytearray`` in tests).
    """

    def __init__(self, buf: mmap.mmap | bytearray, page_size: int = mmap.PAGESIZE) -> None:
        self._head = ctypes.c_uint64.from_buffer(buf, _DATA_HEAD_OFFSET)
        self._tail = ctypes.c_uint64.from_buffer(buf, _DATA_TAIL_OFFSET)
        offset, size = _U64_PAIR.unpack_from(buf, _DATA_OFFSET_OFFSET)
        if not size:  # kernels before 4.1 leave data_offset/data_size zero
            offset, size = page_size, len(buf) - page_size
        if size <= 0 or size & (size - 1) or offset + size > len(buf):
            raise ValueError(f"bad perf ring layout: data_offset={offset} data_size={size}")
        self._size: int = size
        self._view: memoryview | None = memoryview(buf)[offset : offset + size]
        # [samples, other records] decoded so far; when set, losses become sample estimates
        self.tally: list[int] | None = None

    @property
    def data_size(self) -> int:
        return self._size

    def consume(
        self,
        out: list[Item],
        switches: list[SwitchEvent],
        forks: set[int] | None = None,
    ) -> int:
        """Parse every record the kernel has published (see :func:`parse_records`), then hand
        the space back.  Returns the number of bytes consumed."""
        view = self._view
        if view is None:
            return 0
        head = self._head.value  # read data_head first ...
        tail = self._tail.value
        avail = head - tail
        if avail <= 0:
            return 0
        size = self._size
        if avail > size:  # cannot happen with a writable mapping; resynchronise
            self._tail.value = head
            return 0
        start = tail & (size - 1)
        stop = start + avail
        # ... then the data, in place ...
        if stop <= size:
            parse_records(view, out, switches, forks, start, stop, self.tally)
        else:
            stop -= size
            cut = parse_records(view, out, switches, forks, start, size, self.tally)
            if cut < size:  # one record straddles the end: stitch it together
                piece = view[cut:size].tobytes()
                if len(piece) < 8:
                    piece += view[: 8 - len(piece)].tobytes()
                rsize = _HEADER.unpack_from(piece)[2]
                rest = rsize - (size - cut)
                if rsize >= 8 and 0 <= rest <= stop:
                    record = view[cut:size].tobytes() + view[:rest].tobytes()
                    parse_records(record, out, switches, forks, tally=self.tally)
                    parse_records(view, out, switches, forks, rest, stop, self.tally)
            else:
                parse_records(view, out, switches, forks, 0, stop, self.tally)
        self._tail.value = head  # ... then hand the space back
        return avail

    def close(self) -> None:
        """Drop every reference into the buffer (needed before ``mmap.close``)."""
        if self._view is not None:
            self._view.release()
            self._view = None
        self._head = ctypes.c_uint64(0)  # drops the ctypes views into the mapping
        self._tail = ctypes.c_uint64(0)


# ---------------------------------------------------------------------------------------------
# Kernel access


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _attr_bytes(
    *, config: int, period: int, stack_bytes: int, inherit: bool, enable_on_exec: bool
) -> bytes:
    flags = (
        _ATTR_EXCLUDE_KERNEL
        | _ATTR_EXCLUDE_HV
        | _ATTR_TASK
        | _ATTR_SAMPLE_ID_ALL
        | _ATTR_USE_CLOCKID
        | _ATTR_CONTEXT_SWITCH
    )
    if inherit:
        flags |= _ATTR_INHERIT
    if enable_on_exec:
        flags |= _ATTR_DISABLED | _ATTR_ENABLE_ON_EXEC
    attr = struct.pack(
        "<IIQQQQQIIQQQQIiQIHHIIQ",
        _PERF_TYPE_SOFTWARE,
        _PERF_ATTR_SIZE,
        config,
        period,
        _SAMPLE_TYPE,
        0,  # read_format
        flags,
        0,  # wakeup_events (0: wake when the buffer is half full)
        0,  # bp_type
        0,  # config1
        0,  # config2
        0,  # branch_sample_type
        _REGS_MASK,
        stack_bytes,
        _CLOCK_MONOTONIC,
        0,  # sample_regs_intr
        0,  # aux_watermark
        0,  # sample_max_stack
        0,
        0,  # aux_sample_size
        0,
        0,  # sig_data
    )
    assert len(attr) == _PERF_ATTR_SIZE
    return attr


def _perf_event_open(attr: bytes, pid: int, cpu: int) -> int:
    """Returns the new fd; raises OSError with the errno."""
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = _syscall(
        ctypes.c_long(_NR_PERF_EVENT_OPEN_X86_64),
        buf,
        ctypes.c_long(pid),
        ctypes.c_long(cpu),
        ctypes.c_long(-1),
        ctypes.c_ulong(_PERF_FLAG_FD_CLOEXEC),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(fd)


def _online_cpus() -> list[int]:
    try:
        with open("/sys/devices/system/cpu/online") as f:
            text = f.read().strip()
    except OSError:
        return list(range(os.cpu_count() or 1))
    cpus: list[int] = []
    for part in text.split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def _list_tids(pid: int) -> list[int]:
    """Threads of ``pid`` (the leader first); empty if the process is gone."""
    try:
        tids = sorted(int(name) for name in os.listdir(f"/proc/{pid}/task"))
    except (FileNotFoundError, ProcessLookupError):
        return []
    if pid in tids:
        tids.remove(pid)
        tids.insert(0, pid)
    return tids


def _process_gone(pid: int) -> bool:
    """True once no thread of ``pid`` can run any more (exited, zombie or reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    if state not in (b"Z", b"X"):
        return False
    # A zombie leader can outlive its other threads only while those still run.
    return len(_list_tids(pid)) <= 1


class _ExitWatch:
    """Tells cheaply whether the whole target process has exited (a pidfd turns readable)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._gone = False
        self._fd = -1
        try:
            self._fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._gone = True
        except (OSError, AttributeError):
            pass  # no pidfds (kernel < 5.3): read /proc instead

    def gone(self) -> bool:
        if not self._gone:
            if self._fd >= 0:
                self._gone = bool(select.select([self._fd], [], [], 0)[0])
            else:
                self._gone = _process_gone(self.pid)
        return self._gone

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _unavailable(err: int, pid: int, what: str = "perf_event_open") -> SamplerUnavailable:
    name = errno.errorcode.get(err, str(err))
    if err == errno.ENOSYS:
        msg = (
            f"{what} is not available (ENOSYS): the kernel lacks CONFIG_PERF_EVENTS "
            "or a seccomp filter (container runtime) blocks the syscall"
        )
    elif err in (errno.EACCES, errno.EPERM):
        paranoid = _read_sysctl("perf_event_paranoid")
        msg = (
            f"{what} on process {pid} not permitted ({name}): "
            f"/proc/sys/kernel/perf_event_paranoid is {paranoid} (user-space sampling needs "
            "2 or lower, e.g. sysctl kernel.perf_event_paranoid=2), the target must belong to "
            "your user, and in a container CAP_PERFMON or CAP_SYS_ADMIN may be needed"
        )
    elif err == errno.ESRCH:
        msg = f"process {pid} does not exist or has exited (ESRCH)"
    elif err == errno.EINVAL:
        msg = (
            f"{what} on process {pid} rejected the sampling event (EINVAL); "
            "Linux 4.3 or newer is needed (context_switch, use_clockid, user stack sampling)"
        )
    elif err in (errno.EMFILE, errno.ENFILE):
        msg = f"{what} ran out of file descriptors ({name}): raise the limit with `ulimit -n`"
    else:
        msg = f"{what} on process {pid} failed ({name}: {os.strerror(err)})"
    return SamplerUnavailable(msg)


def _ring_pages(rate_hz: float, stack_bytes: int) -> int:
    need = rate_hz * (stack_bytes + _SAMPLE_OVERHEAD) * _RING_SECONDS / mmap.PAGESIZE
    pages = _RING_START_PAGES
    while pages < need and pages < _RING_MAX_PAGES:
        pages *= 2
    return pages


class _Ring:
    """One mapped ring buffer and the fd that owns it."""

    __slots__ = ("fd", "mm", "reader", "tid")

    def __init__(self, fd: int, mm: mmap.mmap, tid: int) -> None:
        self.fd = fd
        self.mm = mm
        self.reader = RingReader(mm)
        self.reader.tally = [0, 0]  # report lost records as estimated lost samples
        self.tid = tid  # the thread it belongs to (per-thread design), else -1

    def close(self) -> None:
        self.reader.close()
        self.mm.close()


_FALLBACK_ERRNOS = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENODEV, errno.ENOENT)


class _DesignRefused(Exception):
    """The per-CPU inherited design is not supported here; try per-thread events."""


class PerfSampler:
    """Samples every thread of process ``pid`` at ``rate_hz`` (see the module docstring)."""

    def __init__(
        self,
        pid: int,
        rate_hz: float,
        stack_bytes: int = 16384,
        enable_on_exec: bool = False,
        *,
        _design: str = "auto",
    ) -> None:
        """Open sampling events on the target. Raises SamplerUnavailable."""
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be positive, not {rate_hz!r}")
        if not 0 <= stack_bytes <= 65000:
            raise ValueError(f"stack_bytes must be within 0..65000, not {stack_bytes!r}")
        if _design not in ("auto", "cpu", "thread"):
            raise ValueError(f"unknown design {_design!r}")
        self._closed = True  # until everything is set up; makes close() safe in __init__
        self._rings: list[_Ring] = []
        self._event_fds: list[int] = []
        self._thread_fds: dict[int, int] = {}  # per-thread design: tid -> fd
        self.design = ""  # "cpu" or "thread" once open
        self._design_attempt = ""
        self._attr_thread = b""
        if platform.machine() not in ("x86_64", "AMD64"):
            raise SamplerUnavailable(
                f"perf sampling supports x86-64 only (this machine is {platform.machine()})"
            )
        self.pid = pid
        self.rate_hz = rate_hz
        self.stack_bytes = (stack_bytes + 7) & ~7  # the kernel wants a multiple of 8
        self.enable_on_exec = enable_on_exec
        self._period = max(_MIN_PERIOD_NS, round(1e9 / rate_hz))
        self._pages = _ring_pages(rate_hz, self.stack_bytes)
        self._rng = random.Random()
        self._matcher = IdleMatcher()
        self._stash: list[Item] = []
        self._stash_switches: list[SwitchEvent] = []
        self._last_jitter_ns = time.monotonic_ns()
        self._exit_watch = _ExitWatch(pid)
        self._closed = False
        try:
            if _design in ("auto", "cpu"):
                try:
                    self._open_per_cpu()
                    self.design = "cpu"
                except _DesignRefused:
                    if _design == "cpu":
                        raise SamplerUnavailable(
                            "per-CPU inherited perf events are not supported here"
                        ) from None
                    self._close_all()
                    self._closed = False
            if _design == "thread" or not self._rings:
                self._open_per_thread()
                self.design = "thread"
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------------

    def _attr(self, inherit: bool) -> bytes:
        return _attr_bytes(
            config=_PERF_COUNT_SW_TASK_CLOCK,
            period=self._period,
            stack_bytes=self.stack_bytes,
            inherit=inherit,
            enable_on_exec=self.enable_on_exec,
        )

    def _map(self, fd: int, tid: int) -> _Ring:
        pages = self._pages
        while True:
            try:
                mm = mmap.mmap(
                    fd,
                    (pages + 1) * mmap.PAGESIZE,
                    mmap.MAP_SHARED,
                    mmap.PROT_READ | mmap.PROT_WRITE,
                )
            except OSError as exc:
                err = exc.errno or 0
                if err in (errno.EPERM, errno.ENOMEM) and pages > _RING_MIN_PAGES:
                    pages //= 2
                    continue
                if err == errno.EPERM:
                    raise SamplerUnavailable(
                        "cannot map a perf ring buffer (EPERM): locked-memory limit reached; "
                        f"raise `ulimit -l` or /proc/sys/kernel/perf_event_mlock_kb "
                        f"(now {_read_sysctl('perf_event_mlock_kb')})"
                    ) from None
                if err in _FALLBACK_ERRNOS and self._design_attempt == "cpu":
                    raise _DesignRefused from None
                raise _unavailable(err, self.pid, "mmap of the perf ring buffer") from None
            self._pages = pages
            ring = _Ring(fd, mm, tid)
            self._rings.append(ring)
            return ring

    def _open_per_cpu(self) -> None:
        self._design_attempt = "cpu"
        attr = self._attr(inherit=True)
        cpus = _online_cpus()
        owners: dict[int, int] = {}  # cpu -> fd owning that CPU's ring
        covered: set[int] = set()
        forks: set[int] = set()
        for _round in range(4):
            tids = [t for t in _list_tids(self.pid) if t not in covered and t not in forks]
            if not tids:
                break
            for tid in tids:
                if self._open_thread_on_cpus(attr, tid, cpus, owners):
                    covered.add(tid)
            if not owners:
                raise _unavailable(errno.ESRCH, self.pid)
            # FORK records tell which threads cloned meanwhile already inherited the events.
            for ring in self._rings:
                ring.reader.consume(self._stash, self._stash_switches, forks)
        if not covered:
            raise _unavailable(errno.ESRCH, self.pid)

    def _open_thread_on_cpus(
        self, attr: bytes, tid: int, cpus: list[int], owners: dict[int, int]
    ) -> bool:
        """Open ``tid``'s inherited event on every CPU. False if the thread is gone."""
        for cpu in cpus:
            try:
                fd = _perf_event_open(attr, tid, cpu)
            except OSError as exc:
                err = exc.errno or 0
                if err == errno.ESRCH and tid != self.pid:
                    return False
                if err in _FALLBACK_ERRNOS and not self._event_fds:
                    raise _DesignRefused from None
                raise _unavailable(err, self.pid) from None
            self._event_fds.append(fd)
            owner = owners.get(cpu)
            if owner is None:
                self._map(fd, -1)
                owners[cpu] = fd
            else:
                try:
                    fcntl.ioctl(fd, _PERF_EVENT_IOC_SET_OUTPUT, owner)
                except OSError as exc:
                    err = exc.errno or 0
                    raise _unavailable(err, self.pid, "PERF_EVENT_IOC_SET_OUTPUT") from None
        return True

    def _open_per_thread(self) -> None:
        self._design_attempt = "thread"
        self._attr_thread = self._attr(inherit=False)
        tids = _list_tids(self.pid)
        if not tids:
            raise _unavailable(errno.ESRCH, self.pid)
        for tid in tids:
            self._open_one_thread(tid, required=tid == self.pid)
        if not self._rings:
            raise _unavailable(errno.ESRCH, self.pid)

    def _open_one_thread(self, tid: int, required: bool) -> None:
        try:
            fd = _perf_event_open(self._attr_thread, tid, -1)
        except OSError as exc:
            err = exc.errno or 0
            if err == errno.ESRCH and not required:
                return
            raise _unavailable(err, self.pid) from None
        self._event_fds.append(fd)
        self._thread_fds[tid] = fd
        try:
            self._map(fd, tid)
        except BaseException:
            self._event_fds.remove(fd)
            del self._thread_fds[tid]
            os.close(fd)
            raise

    def _rescan_threads(self) -> None:
        """Per-thread design: open events for new threads."""
        for tid in _list_tids(self.pid):
            if tid not in self._thread_fds:
                with contextlib.suppress(SamplerUnavailable):
                    self._open_one_thread(tid, required=False)

    def _drop_thread_ring(self, ring: _Ring) -> None:
        ring.close()
        self._rings.remove(ring)
        self._thread_fds.pop(ring.tid, None)
        self._event_fds.remove(ring.fd)
        os.close(ring.fd)

    # -- reading -------------------------------------------------------------------------------

    def read(self) -> list[RawSample | IdleSpan | LostSamples]:
        """Drain everything the kernel has buffered so far (non-blocking), in order per buffer.
        Also re-randomises the sampling period (jitter) so sampling cannot alias with loops."""
        if self._closed:
            return []
        started = time.monotonic_ns()
        gone = self._exit_watch.gone()
        out = self._stash
        switches = self._stash_switches
        self._stash = []
        self._stash_switches = []
        per_thread = self.design == "thread"
        live: set[int] = set()
        if per_thread and not gone:
            self._rescan_threads()
            live.update(_list_tids(self.pid))
        for ring in list(self._rings):
            ring.reader.consume(out, switches)
            if per_thread and ring.tid not in live:
                self._drop_thread_ring(ring)  # drained for good: the thread has exited
        self._matcher.push(switches)
        out.extend(self._matcher.release(None if gone else started - _REORDER_SLACK_NS))
        if not gone:
            self._jitter(started)
        return out

    def _jitter(self, now_ns: int) -> None:
        if now_ns - self._last_jitter_ns < _JITTER_MIN_PERIODS * self._period:
            return
        self._last_jitter_ns = now_ns
        lo = self._period * (1.0 - _JITTER)
        hi = self._period * (1.0 + _JITTER)
        uniform = self._rng.uniform
        for fd in self._event_fds:
            period = max(_MIN_PERIOD_NS, round(uniform(lo, hi)))
            with contextlib.suppress(OSError):  # the thread may have exited meanwhile
                fcntl.ioctl(fd, _PERF_EVENT_IOC_PERIOD, _U64.pack(period))

    def fileno_list(self) -> list[int]:
        """File descriptors that become readable when a ring buffer is half full."""
        return [ring.fd for ring in self._rings]

    # -- closing -------------------------------------------------------------------------------

    def _close_all(self) -> None:
        for ring in self._rings:
            ring.close()
        self._rings = []
        for fd in self._event_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._event_fds = []
        self._thread_fds = {}
        self._stash = []
        self._stash_switches = []

    def close(self) -> None:
        """Idempotent; unmaps and closes everything."""
        self._close_all()
        watch = getattr(self, "_exit_watch", None)
        if watch is not None:
            watch.close()
        self._closed = True

    def __enter__(self) -> PerfSampler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _read_sysctl(name: str) -> str:
    try:
        with open(f"/proc/sys/kernel/{name}") as f:
            return f.read().strip()
    except OSError:
        return "unknown"
