"""Threads: pool waits are idle, per-thread line counts, parallel efficiency, the --threads view."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import shutil
import struct
from pathlib import Path

import pytest

from profila.aggregate import Aggregator
from profila.concurrency import BusyThreads
from profila.model import (
    FunctionCounts,
    LineCounts,
    ParallelCounts,
    Profile,
    ThreadCounts,
    ThreadLineCounts,
)
from profila.render.text import render
from profila.sampling.raw import LostSamples, RawSample
from profila.symbols.demangle import demangle, display_name
from profila.symbols.frames import Sample, SampleKind, SourceFrame
from profila.symbols.symboliser import Symboliser
from profila.symbols.waiting import is_pool_wait_library

from .test_symbols_symboliser import (  # noqa: F401 - the fixture is used by name
    SP,
    TID,
    address_of,
    call_to_leaf,
    caller_frame_stack,
    libpython_address,
    symboliser,
)

BODY = SourceFrame("/src/k.py", 24, "__numba_parfor_gufunc_0x1")
LAUNCH = SourceFrame("/src/k.py", 20, "kernel")
TICK = 10_000_000  # ns at 100 Hz


@pytest.mark.parametrize(
    "path, waits",
    [
        ("/usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0", True),
        ("/opt/intel/lib/libiomp5.so", True),
        ("/usr/lib/libtbb.so.12", True),
        ("/x/site-packages/numba/np/ufunc/workqueue.cpython-311-x86_64-linux-gnu.so", True),
        ("/x/site-packages/numba/np/ufunc/omppool.cpython-311-x86_64-linux-gnu.so", True),
        ("/x/site-packages/numba/np/ufunc/_internal.cpython-311-x86_64-linux-gnu.so", False),
        ("/home/me/workqueue.so", False),
        ("/usr/lib/x86_64-linux-gnu/libm.so.6", False),
        ("/usr/lib/libtbbmalloc.so.2", False),
    ],
)
def test_thread_pool_libraries_are_waiting(path: str, waits: bool) -> None:
    """Only thread pools' and Numba's threading layers' code counts as waiting."""
    assert is_pool_wait_library(path) is waits


def test_gufunc_wrapper_is_a_wrapper() -> None:
    """The gufunc loop around a parfor body and the ufunc loop around a @vectorize kernel are
    wrappers: they name a line only when nothing else does."""
    symbol = (
        "__gufunc__._ZN13_3cdynamic_3e36__numba_parfor_gufunc_0x7f2fec4bbad0B2v2B106c8tJTC_2fWQ"
        "AliW1xhDEoY6EEMEUOEMISPGsAQMVj4QniQ4IXKQEMXwoMGLoQDDVsQR1NHAS2hQ9XgStYwaUTI24JtBVoOCV2Y"
        "U4ogSjUBE5ArrayIyLi1E1C7mutable7alignedE5ArrayIdLi1E1C7mutable7alignedE"
    )
    d = demangle(symbol)
    assert d is not None and d.wrapper == "gufunc"
    assert display_name(symbol) == "__numba_parfor_gufunc_0x7f2fec4bbad0 [gufunc wrapper]"
    ufunc = "__ufunc__._ZN8__main__1fB2v1B52c8tJTIeFImbKsAWlBR0FJMfbgsMFGDwYEQhVCwwAMEsTAA_3d_3dEd"
    assert display_name(ufunc) == "f [ufunc wrapper]"


def test_busy_threads_counts_threads_together_per_tick() -> None:
    """Two threads in the same ticks count 2 per tick; one alone counts 1."""
    busy = BusyThreads(100.0)
    key = {("/src/k.py", "f")}
    for tick in range(10):
        busy.add(tick * TICK + 1, 1, key)
        if tick < 5:
            busy.add(tick * TICK + 5_000_000, 2, key)
    busy.finish()
    assert busy.ticks[("/src/k.py", "f")] == 10
    assert busy.thread_ticks[("/src/k.py", "f")] == 15
    assert busy.threads[("/src/k.py", "f")] == {1, 2}


def test_busy_threads_keeps_a_bounded_window() -> None:
    """Old ticks are folded as time goes on; a sample older than the window is left out."""
    busy = BusyThreads(100.0, window_s=0.1)
    key = {("/src/k.py", "f")}
    for tick in range(1000):
        busy.add(tick * TICK, 1, key)
    assert len(busy._open) <= 12
    busy.add(0, 2, key)
    assert busy.late == 1
    busy.finish()
    assert busy.ticks[("/src/k.py", "f")] == 1000
    assert busy.thread_ticks[("/src/k.py", "f")] == 1000


def aggregate(samples: list[tuple[Sample, int | None]], idle_ns: int = 0) -> Profile:
    agg = Aggregator(rate_hz=100)
    for sample, time_ns in samples:
        agg.add(sample, time_ns)
    if idle_ns:
        agg.add_idle(2, idle_ns)
    return agg.profile(
        command=["k.py"], duration_s=1.0, exit_code=0, debuginfo="lines", sampler="perf"
    )


def test_spinning_samples_are_the_threads_idle_time() -> None:
    """IDLE samples (a pool spinning) add to the thread's idle count, not its running count."""
    p = aggregate(
        [(Sample(2, SampleKind.IDLE), 1)] * 3 + [(Sample(2, SampleKind.NUMBA, (BODY,)), 2)],
        idle_ns=2 * TICK,
    )
    (thread,) = p.threads
    assert (thread.samples, thread.idle) == (1, 5)
    assert p.samples["idle"] == 5 and p.samples["total"] == 6 and p.running == 1


def test_per_thread_line_counts_add_up_to_the_line() -> None:
    """Each thread's self/total of a line; summed over threads they are the line's counts."""
    samples = [
        (Sample(1, SampleKind.NUMBA, (BODY, LAUNCH)), 0),
        (Sample(2, SampleKind.NUMBA, (BODY,)), 0),
        (Sample(2, SampleKind.NUMBA, (BODY,)), TICK),
        (Sample(1, SampleKind.NUMBA, (LAUNCH,)), 2 * TICK),
    ]
    p = aggregate(samples)
    by = {(x.line, x.tid): (x.self, x.total) for x in p.thread_lines}
    assert by == {(24, 1): (1, 1), (24, 2): (2, 2), (20, 1): (1, 2)}
    for line in p.lines:
        parts = [x for x in p.thread_lines if x.line == line.line]
        assert sum(x.self for x in parts) == line.self
        assert sum(x.total for x in parts) == line.total
    (body,) = [x for x in p.parallel if x.function == BODY.function]
    assert (body.ticks, body.thread_ticks, body.threads) == (2, 3, 2)
    assert body.efficiency == 1.5


def threaded_profile(path: Path) -> Profile:
    file = str(path)
    return Profile(
        command=["k.py"],
        rate_hz=100.0,
        duration_s=1.0,
        exit_code=0,
        debuginfo="lines",
        sampler="perf",
        samples={"total": 130, "numba": 100, "python": 0, "compile": 0, "native": 0,
                 "kernel": 0, "idle": 30, "bad": 0},
        lines=[LineCounts(file, 3, "body", 100, 100)],
        functions=[FunctionCounts(file, "body", 100, 100)],
        threads=[ThreadCounts(11, 75, 0), ThreadCounts(12, 25, 30)],
        thread_lines=[
            ThreadLineCounts(file, 3, "body", 11, 75, 75),
            ThreadLineCounts(file, 3, "body", 12, 25, 25),
        ],
        parallel=[ParallelCounts(file, "body", 80, 100, 2)],
    )


def test_json_carries_per_thread_counts_and_reads_old_profiles(tmp_path: Path) -> None:
    """thread_lines and parallel round-trip; a profile written without them still reads."""
    p = threaded_profile(tmp_path / "k.py")
    assert Profile.from_json(p.to_json()) == p
    doc = json.loads(p.to_json())
    assert doc["thread_lines"][1] == {
        "file": str(tmp_path / "k.py"), "line": 3, "function": "body", "tid": 12,
        "self": 25, "total": 25,
    }
    assert doc["parallel"][0]["thread_ticks"] == 100
    del doc["thread_lines"], doc["parallel"]
    old = Profile.from_json(json.dumps(doc))
    assert old.thread_lines == [] and old.parallel == []


def test_report_shows_threads_efficiency_and_thread_columns(tmp_path: Path) -> None:
    """Samples per thread, the parallel efficiency, and with --threads one column per thread
    holding that thread's self share of each line."""
    path = tmp_path / "k.py"
    path.write_text("def body():\n    pass\n    x = 1  # the line\n")
    p = threaded_profile(path)
    plain = render(p)
    assert "Samples per thread" in plain and "Parallel efficiency" in plain
    assert " 1.25 " in plain  # 100 thread-ticks over 80 ticks
    assert "T1=" not in plain
    text = render(p, threads=True)
    assert "T1=11  T2=12" in text
    (row,) = [r for r in text.splitlines() if r.rstrip().endswith("# the line")]
    assert " 75.0%  25.0% " in row


def test_pool_wait_is_idle_even_below_a_jit_frame(symboliser: Symboliser) -> None:  # noqa: F811
    """pc in libgomp with a JIT caller on the stack (the launching thread at the end-of-region
    barrier): idle, not the prange line."""
    s = symboliser
    try:
        gomp = ctypes.CDLL("libgomp.so.1")
    except OSError:
        pytest.skip("libgomp is not installed")
    ra = call_to_leaf(s)
    stack = struct.pack("<Q", ra) + caller_frame_stack(s, ra, libpython_address() + 16)
    ip = address_of(gomp, "GOMP_barrier")
    sample = s.symbolise(RawSample(TID, 0, ip, SP, 0, stack))
    assert sample.kind is SampleKind.IDLE and sample.frames == ()


def test_jit_caller_called_from_a_library_loaded_later(tmp_path: Path) -> None:
    """A worker's JIT frames are called from a library loaded after the maps were read (Numba
    loads its threading layer at the first parallel launch): the walk is still accepted."""
    s = Symboliser(TID)
    try:
        libm = ctypes.util.find_library("m")
        assert libm is not None
        source = Path(ctypes.CDLL(libm)._name)
        resolved = next(
            (Path(p) for p in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu")
             if (Path(p) / source.name).exists()),
            None,
        )
        if resolved is None:
            pytest.skip("libm not found on disk")
        copy = tmp_path / "liblaterloaded.so"
        shutil.copy(resolved / source.name, copy)
        late = ctypes.CDLL(str(copy))
        outer = address_of(late, "sin") + 16
        assert s._maps.lookup(outer) is None  # not in the table read before the load
        ra = call_to_leaf(s)
        stack = struct.pack("<Q", ra) + caller_frame_stack(s, ra, outer)
        sin = address_of(ctypes.CDLL(libm), "sin")
        sample = s.symbolise(RawSample(TID, 0, sin + 4, SP, 0, stack))
        assert sample.kind is SampleKind.NUMBA
    finally:
        s.close()


def test_lost_switch_records_are_not_counted_as_lost_samples() -> None:
    """A thread pool's switch records fill the ring: a loss of 100 records, where 1 record in
    10 was a sample, is an estimated 10 lost samples, not 100; without a tally, the raw count."""
    from profila.sampling.perf import parse_records

    from .test_perf_records import lost, sample, switch

    data = sample(5, 1)
    for t in range(2, 11):
        data += switch(5, t, out=t % 2 == 0)
    data += lost(100, 11)
    out: list[object] = []
    tally = [0, 0]
    parse_records(data, out, [], tally=tally)  # type: ignore[arg-type]
    assert tally == [1, 9]
    assert out[-1] == LostSamples(10)
    raw: list[object] = []
    parse_records(data, raw, [])  # type: ignore[arg-type]
    assert raw[-1] == LostSamples(100)


def test_show_threads_splits_lines_by_thread(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`profila show --threads FILE` renders the per-thread columns from a saved profile."""
    from profila.cli import main

    path = tmp_path / "k.py"
    path.write_text("def body():\n    pass\n    x = 1  # the line\n")
    saved = tmp_path / "p.json"
    saved.write_text(threaded_profile(path).to_json())
    assert main(["show", "--threads", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "T1=11  T2=12" in out
    assert main(["show", str(saved)]) == 0
    assert "T1=" not in capsys.readouterr().out


def test_efficiency_of_jittered_busy_threads_is_near_their_count() -> None:
    """Threads busy all the time, each sampled every period +-10% from its own phase, read as
    nearly their number: the tick buckets do not need the samples aligned."""
    import random

    rng = random.Random(5)
    for count in (1, 2, 4):
        busy = BusyThreads(100.0)
        events = []
        for tid in range(count):
            t = rng.randrange(TICK)
            while t < 3_000 * TICK:
                events.append((t, tid))
                t += int(TICK * rng.uniform(0.9, 1.1))
        for t, tid in sorted(events):
            busy.add(t, tid, {("/src/k.py", "f")})
        busy.finish()
        assert busy.late == 0
        efficiency = busy.thread_ticks[("/src/k.py", "f")] / busy.ticks[("/src/k.py", "f")]
        assert 0.93 * count <= efficiency <= count, (count, efficiency)


def test_thread_table_sums_the_quiet_threads_in_one_row(tmp_path: Path) -> None:
    """Past MAX_THREAD_ROWS threads, the rest are one summed row; busy is running / (running +
    idle) of each thread."""
    from profila.render import threads as thread_view

    p = threaded_profile(tmp_path / "k.py")
    many = [ThreadCounts(100 + i, 1, 9) for i in range(thread_view.MAX_THREAD_ROWS + 3)]
    p = Profile(**{**p.__dict__, "threads": [*p.threads, *many]})
    text = render(p)
    assert "5 more" in text
    row = next(r for r in text.splitlines() if r.strip().startswith("12 "))
    assert row.split()[-1] == "45.5%"  # 25 running, 30 idle
