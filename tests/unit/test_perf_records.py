"""The perf record parser, ring-buffer reader and idle matcher, on hand-built bytes (no kernel)."""

from __future__ import annotations

import struct

import pytest

from profila.sampling import perf
from profila.sampling.perf import (
    PERF_RECORD_EXIT,
    PERF_RECORD_FORK,
    PERF_RECORD_LOST,
    PERF_RECORD_LOST_SAMPLES,
    PERF_RECORD_MISC_SWITCH_OUT,
    PERF_RECORD_MISC_SWITCH_OUT_PREEMPT,
    PERF_RECORD_SAMPLE,
    PERF_RECORD_SWITCH,
    PERF_RECORD_SWITCH_CPU_WIDE,
    IdleMatcher,
    Item,
    RingReader,
    SwitchEvent,
    parse_records,
)
from profila.sampling.raw import IdleSpan, LostSamples, RawSample

PID = 4000


def record(rtype: int, body: bytes, misc: int = 0) -> bytes:
    assert len(body) % 8 == 0
    return struct.pack("<IHH", rtype, misc, 8 + len(body)) + body


def sample_id(tid: int, t: int) -> bytes:
    return struct.pack("<IIQ", PID, tid, t)


def sample(
    tid: int,
    t: int,
    *,
    ip: int = 0x401000,
    sp: int = 0x7FFF0000,
    bp: int = 0x7FFF0100,
    stack: bytes = b"",
    dyn_size: int | None = None,
    abi: int = 2,
) -> bytes:
    body = struct.pack("<QIIQQ", ip, PID, tid, t, abi)
    if abi:
        body += struct.pack("<QQQ", bp, sp, ip)
        body += struct.pack("<Q", len(stack))
        if stack:
            body += stack + struct.pack("<Q", len(stack) if dyn_size is None else dyn_size)
    else:
        body += struct.pack("<Q", 0)  # no user stack either
    return record(PERF_RECORD_SAMPLE, body)


def switch(tid: int, t: int, *, out: bool, preempt: bool = False, cpu_wide: bool = False) -> bytes:
    misc = (PERF_RECORD_MISC_SWITCH_OUT if out else 0) | (
        PERF_RECORD_MISC_SWITCH_OUT_PREEMPT if preempt else 0
    )
    if cpu_wide:
        return record(
            PERF_RECORD_SWITCH_CPU_WIDE, struct.pack("<II", PID, 1) + sample_id(tid, t), misc
        )
    return record(PERF_RECORD_SWITCH, sample_id(tid, t), misc)


def lost(count: int, t: int) -> bytes:
    return record(PERF_RECORD_LOST, struct.pack("<QQ", 7, count) + sample_id(0, t))


def task(rtype: int, tid: int, t: int) -> bytes:
    return record(rtype, struct.pack("<IIIIQ", PID, PID, tid, PID, t) + sample_id(tid, t))


def parse(data: bytes) -> tuple[list[Item], list[SwitchEvent], set[int], int]:
    out: list[Item] = []
    switches: list[SwitchEvent] = []
    forks: set[int] = set()
    end = parse_records(data, out, switches, forks)
    return out, switches, forks, end


def idle(data: bytes) -> list[IdleSpan]:
    _, switches, _, _ = parse(data)
    matcher = IdleMatcher()
    matcher.push(switches)
    return matcher.release(None)


# --- samples ------------------------------------------------------------------------------------


def test_sample_with_regs_and_stack() -> None:
    stack = bytes(range(256)) * 4  # 1024 bytes asked for
    data = sample(
        11, 123_456, ip=0x7F00_1234, sp=0x7FFD_0000, bp=0x7FFD_0040, stack=stack, dyn_size=200
    )
    out, switches, _, end = parse(data)
    assert end == len(data)
    assert switches == []
    assert out == [RawSample(11, 123_456, 0x7F00_1234, 0x7FFD_0000, 0x7FFD_0040, stack[:200])]
    first = out[0]
    assert isinstance(first, RawSample) and type(first.stack) is bytes


def test_sample_registers_come_in_bp_sp_ip_order() -> None:
    out, *_ = parse(sample(1, 2, ip=0x3, sp=0x2, bp=0x1, stack=b"\0" * 8))
    assert out == [RawSample(1, 2, 3, 2, 1, b"\0" * 8)]


def test_sample_without_user_regs_keeps_ip_only() -> None:
    out, *_ = parse(sample(5, 9, ip=0x4242, abi=0))
    assert out == [RawSample(5, 9, 0x4242, 0, 0, b"")]


def test_sample_with_regs_but_no_stack() -> None:
    out, *_ = parse(sample(5, 9, ip=0x10, sp=0x20, bp=0x30, stack=b""))
    assert out == [RawSample(5, 9, 0x10, 0x20, 0x30, b"")]


def test_memoryview_and_offsets() -> None:
    data = b"\xff" * 16 + sample(1, 1, stack=b"a" * 16) + sample(2, 2) + b"\xff" * 8
    out: list[Item] = []
    end = parse_records(memoryview(data), out, [], None, 16, len(data) - 8)
    assert end == len(data) - 8
    assert [s.tid for s in out if isinstance(s, RawSample)] == [1, 2]
    assert out[0] == RawSample(1, 1, 0x401000, 0x7FFF0000, 0x7FFF0100, b"a" * 16)
    first = out[0]
    assert isinstance(first, RawSample) and type(first.stack) is bytes


# --- other records ------------------------------------------------------------------------------


def test_lost_and_lost_samples() -> None:
    data = lost(17, 50) + record(PERF_RECORD_LOST_SAMPLES, struct.pack("<Q", 3) + sample_id(1, 60))
    out, switches, _, _ = parse(data)
    assert out == [LostSamples(17), LostSamples(3)]
    assert switches == [(50, -1, perf.RECORDS_LOST)]


def test_unknown_records_are_skipped_by_size() -> None:
    data = (
        record(99, b"\x01" * 40)
        + record(3, b"comm\0\0\0\0" + sample_id(1, 1))  # COMM: not asked for, still skipped
        + sample(8, 10)
        + record(PERF_RECORD_SWITCH + 100, b"")
    )
    out, switches, _, end = parse(data)
    assert end == len(data)
    assert [type(x) for x in out] == [RawSample]
    assert switches == []


def test_fork_and_exit() -> None:
    out, switches, forks, _ = parse(task(PERF_RECORD_FORK, 77, 5) + task(PERF_RECORD_EXIT, 77, 9))
    assert out == []
    assert forks == {77}
    assert switches == [(9, 77, perf.THREAD_EXIT)]


def test_truncated_or_malformed_input_stops_the_parse() -> None:
    whole = sample(1, 1, stack=b"x" * 64)
    out, _, _, end = parse(whole + whole[:20])
    assert len(out) == 1 and end == len(whole)
    bad = struct.pack("<IHH", PERF_RECORD_SAMPLE, 0, 4)  # size smaller than a header
    out, _, _, end = parse(whole + bad + whole)
    assert len(out) == 1 and end == len(whole)


def test_short_sample_is_skipped_not_misread() -> None:
    data = record(PERF_RECORD_SAMPLE, b"\0" * 16) + sample(3, 4)
    out, *_ = parse(data)
    assert [x.tid for x in out if isinstance(x, RawSample)] == [3]


# --- idle spans ---------------------------------------------------------------------------------


def test_voluntary_switch_out_then_in_is_an_idle_span() -> None:
    assert idle(switch(7, 100, out=True) + switch(7, 350, out=False)) == [IdleSpan(7, 100, 350)]


def test_cpu_wide_switch_records_work_too() -> None:
    data = switch(7, 100, out=True, cpu_wide=True) + switch(7, 350, out=False, cpu_wide=True)
    assert idle(data) == [IdleSpan(7, 100, 350)]


def test_preempted_switch_out_is_not_idle() -> None:
    assert idle(switch(7, 100, out=True, preempt=True) + switch(7, 350, out=False)) == []


def test_switch_in_without_switch_out_is_not_idle() -> None:
    assert idle(switch(7, 350, out=False)) == []


def test_spans_are_matched_per_thread() -> None:
    data = (
        switch(1, 10, out=True)
        + switch(2, 20, out=True, preempt=True)
        + switch(3, 25, out=True)
        + switch(2, 30, out=False)
        + switch(1, 40, out=False)
        + switch(3, 45, out=False)
    )
    assert idle(data) == [IdleSpan(1, 10, 40), IdleSpan(3, 25, 45)]


def test_thread_exit_drops_its_pending_switch_out() -> None:
    data = switch(7, 100, out=True) + task(PERF_RECORD_EXIT, 7, 200) + switch(7, 300, out=False)
    assert idle(data) == []


def test_lost_records_drop_pending_switch_outs() -> None:
    data = switch(7, 100, out=True) + lost(4, 150) + switch(7, 300, out=False)
    assert idle(data) == []
    data = switch(7, 100, out=True) + lost(4, 150) + switch(7, 200, out=True)
    assert idle(data + switch(7, 300, out=False)) == [IdleSpan(7, 200, 300)]


def test_switch_pending_across_buffers_and_reads() -> None:
    """Out on one CPU's buffer, in on another's, read in the wrong order and in two reads."""
    matcher = IdleMatcher()
    cpu0: list[SwitchEvent] = []
    cpu1: list[SwitchEvent] = []
    parse_records(switch(7, 100, out=True) + switch(8, 120, out=True), [], cpu0)
    parse_records(switch(7, 300, out=False), [], cpu1)
    matcher.push(cpu1)  # drained first
    matcher.push(cpu0)
    assert matcher.release(400) == [IdleSpan(7, 100, 300)]
    second: list[SwitchEvent] = []
    parse_records(switch(8, 500, out=False), [], second)
    matcher.push(second)
    assert matcher.release(600) == [IdleSpan(8, 120, 500)]


def test_watermark_holds_back_young_events() -> None:
    matcher = IdleMatcher()
    matcher.push([(100, 7, perf.SWITCH_OUT)])
    assert matcher.release(50) == []
    assert matcher.pending() == 1
    # the switch-in arrives late (another buffer) but in time order before the watermark
    matcher.push([(300, 7, perf.SWITCH_IN), (250, 9, perf.SWITCH_OUT)])
    assert matcher.release(260) == []
    assert matcher.pending() == 1
    assert matcher.release(None) == [IdleSpan(7, 100, 300)]
    assert matcher.pending() == 0


def test_events_older_than_already_matched_ones_are_dropped() -> None:
    matcher = IdleMatcher()
    matcher.push([(100, 7, perf.SWITCH_OUT), (200, 7, perf.SWITCH_IN)])
    assert matcher.release(None) == [IdleSpan(7, 100, 200)]
    matcher.push([(150, 7, perf.SWITCH_OUT), (400, 7, perf.SWITCH_IN)])
    assert matcher.release(None) == []


# --- ring buffer --------------------------------------------------------------------------------

PAGE = 4096


class FakeRing:
    """A bytearray laid out like the kernel's mapping: header page, then ``size`` data bytes."""

    def __init__(self, size: int = 4096, start: int = 0) -> None:
        self.size = size
        self.buf = bytearray(PAGE + size)
        struct.pack_into("<QQ", self.buf, 1040, PAGE, size)  # data_offset, data_size
        self.head = start
        self.set_tail(start)
        self.publish()

    def write(self, data: bytes) -> None:
        for i, byte in enumerate(data):
            self.buf[PAGE + (self.head + i) % self.size] = byte
        self.head += len(data)

    def publish(self) -> None:
        struct.pack_into("<Q", self.buf, 1024, self.head)

    def set_tail(self, tail: int) -> None:
        struct.pack_into("<Q", self.buf, 1032, tail)

    @property
    def tail(self) -> int:
        return int(struct.unpack_from("<Q", self.buf, 1032)[0])


def consume(reader: RingReader) -> tuple[list[Item], list[SwitchEvent]]:
    out: list[Item] = []
    switches: list[SwitchEvent] = []
    reader.consume(out, switches)
    return out, switches


def test_ring_reads_published_records_and_advances_tail() -> None:
    ring = FakeRing()
    reader = RingReader(ring.buf, PAGE)
    assert reader.data_size == 4096
    assert consume(reader) == ([], [])
    ring.write(sample(1, 1, stack=b"s" * 32))
    ring.write(sample(2, 2))  # written but not published yet
    head_before = ring.head
    ring.head -= len(sample(2, 2))
    ring.publish()
    ring.head = head_before
    out, _ = consume(reader)
    assert [x.tid for x in out if isinstance(x, RawSample)] == [1]
    assert ring.tail == len(sample(1, 1, stack=b"s" * 32))
    ring.publish()
    out, _ = consume(reader)
    assert [x.tid for x in out if isinstance(x, RawSample)] == [2]
    assert ring.tail == ring.head
    reader.close()


@pytest.mark.parametrize("start", [4096 - 40, 4096 - 8, 4096 - 96, 4096 * 5 - 200])
def test_ring_record_wrapping_around_the_end(start: int) -> None:
    """A sample whose bytes straddle the end of the data area is stitched back together."""
    ring = FakeRing(start=start)
    reader = RingReader(ring.buf, PAGE)
    stack = bytes(range(200))
    records = [
        switch(7, 10, out=True),
        sample(3, 11, stack=stack, dyn_size=150),
        switch(7, 12, out=False),
        lost(2, 13),
    ]
    for rec in records:
        ring.write(rec)
    ring.publish()
    assert (start % 4096) + sum(map(len, records)) > 4096  # it does wrap
    out, switches = consume(reader)
    assert out == [RawSample(3, 11, 0x401000, 0x7FFF0000, 0x7FFF0100, stack[:150]), LostSamples(2)]
    assert switches == [
        (10, 7, perf.SWITCH_OUT),
        (12, 7, perf.SWITCH_IN),
        (13, -1, perf.RECORDS_LOST),
    ]
    assert ring.tail == ring.head
    reader.close()


def test_ring_many_laps() -> None:
    ring = FakeRing(size=1024)
    reader = RingReader(ring.buf, PAGE)
    seen: list[int] = []
    t = 0
    for _lap in range(40):
        for _ in range(3):
            t += 1
            ring.write(sample(t, t, stack=bytes([t % 256]) * (8 * (t % 20))))
        ring.publish()
        out, _ = consume(reader)
        for x in out:
            assert isinstance(x, RawSample)
            assert x.stack == bytes([x.tid % 256]) * (8 * (x.tid % 20))
            seen.append(x.tid)
    assert seen == list(range(1, t + 1))
    assert ring.head > 10 * 1024


def test_ring_layout_from_page_size_when_header_fields_are_zero() -> None:
    buf = bytearray(PAGE + 2048)
    reader = RingReader(buf, PAGE)
    assert reader.data_size == 2048
    reader.close()


def test_ring_rejects_bad_layout() -> None:
    buf = bytearray(PAGE + 3000)
    with pytest.raises(ValueError):
        RingReader(buf, PAGE)


# --- the attribute block ------------------------------------------------------------------------


def test_attr_layout() -> None:
    attr = perf._attr_bytes(
        config=1, period=5_000_000, stack_bytes=16384, inherit=True, enable_on_exec=True
    )
    assert len(attr) == 128
    rtype, size, config, period, sample_type = struct.unpack_from("<IIQQQ", attr, 0)
    assert (rtype, size, config, period) == (1, 128, 1, 5_000_000)
    assert sample_type == 1 | 2 | 4 | (1 << 12) | (1 << 13)  # IP TID TIME REGS_USER STACK_USER
    (flags,) = struct.unpack_from("<Q", attr, 40)
    for bit in (0, 1, 5, 6, 12, 18, 25, 26):  # disabled inherit excl_kernel excl_hv
        assert flags >> bit & 1, bit  # enable_on_exec sample_id_all use_clockid context_switch
    assert not flags >> 4 & 1  # exclude_user
    regs_user, stack_user, clockid = struct.unpack_from("<QIi", attr, 80)
    assert regs_user == (1 << 6) | (1 << 7) | (1 << 8)  # BP SP IP
    assert (stack_user, clockid) == (16384, 1)  # CLOCK_MONOTONIC

    plain = perf._attr_bytes(config=1, period=1, stack_bytes=8, inherit=False, enable_on_exec=False)
    (flags,) = struct.unpack_from("<Q", plain, 40)
    assert not flags & 0b11 and not flags >> 12 & 1
