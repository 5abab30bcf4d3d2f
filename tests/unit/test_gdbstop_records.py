"""The gdb sampling records: what gdb_side.py writes is what gdbstop.py reads.

gdb_side.py runs inside gdb, but its packing helpers and constants are plain Python: it is loaded
here from its file (its ``main`` only runs under gdb), so the round trip uses the very code gdb
runs, not a copy of it.
"""

from __future__ import annotations

import importlib.util
import os
import random
from pathlib import Path
from types import ModuleType

import pytest

from profila.aggregate import Aggregator
from profila.sampling import gdbstop
from profila.sampling.gdbstop import GdbStopSampler, RecordStream, StopStats, parse_records
from profila.sampling.raw import IdleSpan, LostSamples, RawSample

GDB_SIDE = Path(__file__).resolve().parents[2] / "profila" / "host" / "gdb_side.py"

# One tick recorded from a real run (50 Hz, 32-byte stacks): the sleeping thread 13719 was idle,
# the main thread 13709 was running; then the tick's STOP record (2 threads, 501 us from tgkill
# to the stop, 60 us of reading).
RECORDED_TICK = bytes.fromhex(
    "677002009735000001000000000000004557196fef05000045d5ae0f657f0000004c540f657f0000"
    "00bb56d870550000677001008d35000001000000200000004557196fef050000bae9cf0f657f0000"
    "10bd1e25fe7f000020b01e10657f0000f86e1710657f0000aa4e750f657f0000e0740110657f0000"
    "0000000000000000677004000000000002000000000000004557196fef050000dba7070000000000"
    "fbe90000000000000000000000000000"
)


@pytest.fixture(scope="module")
def side() -> ModuleType:
    spec = importlib.util.spec_from_file_location("profila_gdb_side_under_test", GDB_SIDE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_sides_agree_on_the_format(side: ModuleType) -> None:
    """The struct layout, magic, record kinds and default signal are the same on both ends."""
    assert side.RECORD.format == gdbstop.RECORD.format
    assert side.RECORD.size == gdbstop.RECORD.size == 48
    assert side.MAGIC == gdbstop.MAGIC
    assert (side.KIND_SAMPLE, side.KIND_IDLE, side.KIND_LOST, side.KIND_STOP) == (
        gdbstop.KIND_SAMPLE,
        gdbstop.KIND_IDLE,
        gdbstop.KIND_LOST,
        gdbstop.KIND_STOP,
    )
    assert side.DEFAULT_SIGNAL == gdbstop.DEFAULT_SIGNAL
    assert side.DEFAULT_STACK == gdbstop.DEFAULT_STACK


def test_recorded_tick_parses() -> None:
    """A tick captured from a real gdb: an idle thread, a running one with its stack, stats."""
    out: list[RawSample | IdleSpan | LostSamples] = []
    stats = StopStats()
    used = parse_records(RECORDED_TICK, 20_000_000, out, stats)
    assert used == len(RECORDED_TICK)
    idle, sample = out
    assert idle == IdleSpan(13719, 6525919254341, 6525919254341 + 20_000_000)
    assert isinstance(sample, RawSample)
    assert sample.tid == 13709 and sample.time_ns == 6525919254341
    assert (sample.ip, sample.sp, sample.bp) == (0x7F650FCFE9BA, 0x7FFE251EBD10, 0x7F65101EB020)
    assert len(sample.stack) == 32 and sample.stack[:8] == bytes.fromhex("f86e1710657f0000")
    assert stats.stops == 1 and stats.threads == 2
    assert stats.signal_to_stop_ns == 501_723 and stats.handling_ns == 59_899


def _ticks(side: ModuleType, rng: random.Random, count: int) -> tuple[bytes, list[object]]:
    """``count`` ticks packed by gdb_side's helpers, and the items the controller should get."""
    period = 10_000_000
    data = bytearray()
    expected: list[object] = []
    t = 1_000_000_000
    for _ in range(count):
        t += period
        for tid in (101, 102, 103):
            what = rng.choice(("sample", "idle", "lost"))
            ip, sp, bp = rng.getrandbits(47), rng.getrandbits(47), rng.getrandbits(47)
            if what == "sample":
                stack = rng.randbytes(rng.choice((0, 1, 7, 4096, 16384)))
                data += side.pack_sample(tid, t, ip, sp, bp, stack)
                expected.append(RawSample(tid, t, ip, sp, bp, stack))
            elif what == "idle":
                data += side.pack_idle(tid, t, ip, sp, bp)
                expected.append(IdleSpan(tid, t, t + period))
            else:
                data += side.pack_lost(tid, t, 1)
                expected.append(LostSamples(1))
        data += side.pack_stop(t, 3, 400_000, 80_000)
    return bytes(data), expected


def test_round_trip_in_arbitrary_chunks(side: ModuleType) -> None:
    """Records split anywhere by the pipe come out whole and in order, nothing invented."""
    rng = random.Random(7)
    data, expected = _ticks(side, rng, 50)
    stream = RecordStream(10_000_000)
    got: list[object] = []
    pos = 0
    while pos < len(data):
        step = rng.choice((1, 5, 47, 48, 49, 1000, 20000))
        got += stream.feed(data[pos : pos + step])
        pos += step
    got += stream.finish()
    assert got == expected
    assert stream.stats.stops == 50
    assert stream.stats.mean_signal_to_stop_ns() == 400_000
    assert stream.stats.mean_handling_ns() == 80_000


def test_a_cut_off_record_at_the_end_is_a_lost_sample(side: ModuleType) -> None:
    """gdb died mid-record: the fragment counts as one bad sample, never as a sample."""
    whole = side.pack_idle(5, 10, 0, 0, 0)
    cut = side.pack_sample(6, 20, 1, 2, 3, b"x" * 100)[:-10]
    stream = RecordStream(1000)
    assert stream.feed(whole + cut) == [IdleSpan(5, 10, 1010)]
    assert stream.finish() == [LostSamples(1)]


def test_garbage_is_counted_once_and_the_stream_stops(side: ModuleType) -> None:
    """A corrupt stream (a bug) gives one lost sample and no made-up records after it."""
    stream = RecordStream(1000)
    good = side.pack_idle(5, 10, 0, 0, 0)
    assert stream.feed(good + b"\0" * 48) == [IdleSpan(5, 10, 1010), LostSamples(1)]
    assert stream.feed(good) == []


def test_lost_records_carry_their_count(side: ModuleType) -> None:
    """Ticks gdb had to drop (controller too slow) arrive as one LostSamples with the count."""
    out: list[RawSample | IdleSpan | LostSamples] = []
    parse_records(side.pack_lost(0, 99, 37), 1000, out)
    assert out == [LostSamples(37)]


@pytest.mark.parametrize(
    "orig_rax, rax, idle",
    [
        (2**64 - 1, 0, False),  # not in a syscall: interrupted in user code
        (230, 2**64 - 516, True),  # clock_nanosleep, ERESTART_RESTARTBLOCK
        (0, 2**64 - 512, True),  # read, ERESTARTSYS
        (7, 2**64 - 514, True),  # poll, ERESTARTNOHAND
        (232, 2**64 - 4, True),  # epoll_wait, EINTR
        (1, 5, False),  # write just returned 5: was running
        (202, 2**64 - 38, False),  # syscall-entry stop (-ENOSYS): about to run a syscall
    ],
)
def test_idle_means_interrupted_in_a_syscall(
    side: ModuleType, orig_rax: int, rax: int, idle: bool
) -> None:
    """A thread counts as idle only when its registers show a blocking syscall cut short."""
    assert side.is_idle(orig_rax, rax) is idle


def test_idle_ticks_count_one_each_in_the_aggregator(side: ModuleType) -> None:
    """Each idle record is one idle tick for the aggregator, whatever the rate."""
    for rate in (97.0, 100.0, 997.0):
        sampler = GdbStopSampler(rate)
        request = sampler.gdb_request()
        try:
            for i in range(250):
                os.write(request.fd, side.pack_idle(42, i * sampler.period_ns, 0, 0, 0))
            items = sampler.read()
        finally:
            os.close(request.fd)
            sampler.close()
        aggregator = Aggregator(rate)
        for item in items:
            assert isinstance(item, IdleSpan)
            aggregator.add_idle(item.tid, item.end_ns - item.start_ns)
        assert aggregator._idle_ticks()[42] == 250


def test_sampler_read_is_non_blocking_and_ends_at_eof(side: ModuleType) -> None:
    """read() returns what is there without waiting; after gdb's end closes, read() is empty."""
    sampler = GdbStopSampler(100.0)
    request = sampler.gdb_request()
    assert sampler.read() == []
    os.write(request.fd, side.pack_idle(1, 5, 0, 0, 0))
    assert sampler.read() == [IdleSpan(1, 5, 5 + 10_000_000)]
    os.close(request.fd)
    assert sampler.read() == []
    assert sampler.read() == []
    sampler.close()
    sampler.close()


def test_the_pipe_end_is_handed_over_once() -> None:
    """gdb_request() gives the write end away; a second request is a programming error."""
    sampler = GdbStopSampler(100.0, stack_bytes=4096, signal=60, start_on_exec=False)
    request = sampler.gdb_request()
    try:
        assert (request.rate_hz, request.stack_bytes, request.signal) == (100.0, 4096, 60)
        assert request.environment()["PROFILA_SAMPLE_START"] == "attach"
        with pytest.raises(RuntimeError):
            sampler.gdb_request()
    finally:
        os.close(request.fd)
        sampler.close()


@pytest.mark.parametrize("kwargs", [{"rate_hz": 0}, {"rate_hz": 100, "signal": 15}])
def test_bad_arguments_are_refused(kwargs: dict[str, float]) -> None:
    """A non-positive rate, or a signal that is not real-time, is refused up front."""
    with pytest.raises(ValueError):
        GdbStopSampler(**kwargs)  # type: ignore[arg-type]
