"""PerfSampler against the real kernel: a Python child with a busy and a sleeping thread.

Expected sample counts are computed from the CPU time the busy thread really got (it reports
``time.thread_time()``), not from wall time, so a loaded machine does not fail the tests.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from profila.sampling.perf import PerfSampler, SamplerUnavailable
from profila.sampling.raw import IdleSpan, LostSamples, RawSample

pytestmark = pytest.mark.e2e

USER_SPACE_END = 1 << 47

CHILD = r"""
import sys, threading, time
duration = float(sys.argv[1])
if sys.argv[2] == "wait":
    sys.stdin.readline()
lock = threading.Lock()

def say(*words):
    with lock:
        sys.stdout.write(" ".join(map(str, words)) + "\n")
        sys.stdout.flush()

def busy():
    say("busy", threading.get_native_id())
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < duration:
        n += 1
    say("cpu", threading.get_native_id(), time.thread_time())

def sleeper():
    say("sleeper", threading.get_native_id())
    time.sleep(duration)

threads = [threading.Thread(target=busy), threading.Thread(target=sleeper)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


@dataclass
class Outcome:
    pid: int
    busy: int
    sleeper: int
    busy_cpu_s: float
    items: list[RawSample | IdleSpan | LostSamples] = field(default_factory=list)
    started_ns: int = 0
    ended_ns: int = 0

    def samples(self, tid: int) -> list[RawSample]:
        return [x for x in self.items if isinstance(x, RawSample) and x.tid == tid]

    def idle_ns(self, tid: int) -> int:
        return sum(x.end_ns - x.start_ns for x in self.items if isinstance(x, IdleSpan)
                   and x.tid == tid)

    def lost(self) -> int:
        return sum(x.count for x in self.items if isinstance(x, LostSamples))


def open_sampler(pid: int, rate_hz: float, **kwargs: object) -> PerfSampler:
    try:
        return PerfSampler(pid, rate_hz, **kwargs)  # type: ignore[arg-type]
    except SamplerUnavailable as exc:
        pytest.skip(f"perf_event_open not usable here: {exc}")


@contextmanager
def child(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def drain_until_exit(sampler: PerfSampler, proc: subprocess.Popen[str],
                     interval: float = 0.02, timeout: float = 15.0
                     ) -> list[RawSample | IdleSpan | LostSamples]:
    items: list[RawSample | IdleSpan | LostSamples] = []
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "child did not finish"
        time.sleep(interval)
        items += sampler.read()
    items += sampler.read()  # the target is gone: everything still queued comes out
    return items


def parse_child_output(text: str) -> tuple[int, int, float]:
    roles: dict[str, int] = {}
    cpu: dict[int, float] = {}
    for line in text.splitlines():
        words = line.split()
        if words[0] == "cpu":
            cpu[int(words[1])] = float(words[2])
        else:
            roles[words[0]] = int(words[1])
    return roles["busy"], roles["sleeper"], cpu[roles["busy"]]


def run_child(rate_hz: float, *, duration: float = 1.0, attach: str = "before",
              **kwargs: object) -> Outcome:
    """``attach="before"``: the sampler is open before the threads exist (inheritance);
    ``"after"``: the threads run already when it opens."""
    argv = [sys.executable, "-c", CHILD, str(duration), "wait" if attach == "before" else "go"]
    with child(argv) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        early = ""
        if attach == "after":
            early = proc.stdout.readline() + proc.stdout.readline()
        sampler = open_sampler(proc.pid, rate_hz, **kwargs)
        try:
            started = time.monotonic_ns()
            if attach == "before":
                proc.stdin.write("go\n")
                proc.stdin.flush()
            items = drain_until_exit(sampler, proc)
            ended = time.monotonic_ns()
        finally:
            sampler.close()
        busy, sleeper, busy_cpu = parse_child_output(early + proc.stdout.read())
    return Outcome(proc.pid, busy, sleeper, busy_cpu, items, started, ended)


def check_busy_samples(run: Outcome, rate_hz: float, minimum_fraction: float = 0.5) -> None:
    samples = run.samples(run.busy)
    expected = run.busy_cpu_s * rate_hz
    assert expected > 20, f"the busy thread got only {run.busy_cpu_s:.3f} s of CPU"
    assert len(samples) >= minimum_fraction * expected, (len(samples), expected, run.lost())
    assert len(samples) <= 1.3 * expected + 5, (len(samples), expected)
    for s in samples:
        assert 0 < s.ip < USER_SPACE_END, hex(s.ip)
        assert 0 < s.sp < USER_SPACE_END, hex(s.sp)
        assert s.stack, s
        assert run.started_ns - 10**9 <= s.time_ns <= run.ended_ns, "not CLOCK_MONOTONIC?"


def test_busy_and_sleeping_threads_at_200_hz() -> None:
    run = run_child(200)
    check_busy_samples(run, 200)
    assert len(run.samples(run.sleeper)) <= 5
    assert run.idle_ns(run.sleeper) >= 0.5e9, run.idle_ns(run.sleeper)
    spans = [x for x in run.items if isinstance(x, IdleSpan)]
    assert all(x.start_ns <= x.end_ns for x in spans)
    # the main thread waits in join(): idle too, and hardly sampled
    assert run.idle_ns(run.pid) >= 0.5e9


def test_1000_hz() -> None:
    run = run_child(1000)
    check_busy_samples(run, 1000)
    assert run.lost() <= 0.05 * len(run.samples(run.busy))
    assert run.idle_ns(run.sleeper) >= 0.5e9


def test_threads_running_before_the_attach_are_sampled() -> None:
    run = run_child(500, attach="after")
    samples = run.samples(run.busy)
    assert len(samples) >= 20
    assert all(s.sp and s.stack and 0 < s.ip < USER_SPACE_END for s in samples)


def test_per_thread_fallback_design() -> None:
    run = run_child(500, attach="after", _design="thread")
    samples = run.samples(run.busy)
    assert len(samples) >= 20
    assert all(s.sp and s.stack and 0 < s.ip < USER_SPACE_END for s in samples)


def test_enable_on_exec_and_short_lived_threads() -> None:
    """Opened on a process waiting to exec: nothing is sampled until the exec, then every
    thread is, down to threads that live for a few milliseconds."""
    target = r"""
import sys, threading, time
def work():
    start = time.monotonic()
    while time.monotonic() - start < 0.03:
        pass
    sys.stdout.write(f"{threading.get_native_id()}\n")
for _ in range(10):
    t = threading.Thread(target=work)
    t.start()
    t.join()
"""
    launcher = ("import os, sys; sys.stdin.readline(); "
                "os.execv(sys.executable, [sys.executable, '-c', sys.argv[1]])")
    with child([sys.executable, "-c", launcher, target]) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        sampler = open_sampler(proc.pid, 1000, enable_on_exec=True)
        try:
            time.sleep(0.1)
            assert not [x for x in sampler.read() if isinstance(x, RawSample)]
            proc.stdin.write("\n")
            proc.stdin.flush()
            items = drain_until_exit(sampler, proc)
        finally:
            sampler.close()
        tids = [int(line) for line in proc.stdout.read().split()]
    counts = Counter(x.tid for x in items if isinstance(x, RawSample))
    assert len(tids) == 10
    sampled = [t for t in tids if counts[t]]
    assert len(sampled) >= 8, (counts, tids)


def test_read_after_close_and_close_twice() -> None:
    with child([sys.executable, "-c", "import time; time.sleep(3)"]) as proc:
        sampler = open_sampler(proc.pid, 100)
        fds = sampler.fileno_list()
        assert fds and all(isinstance(fd, int) and fd >= 0 for fd in fds)
        assert isinstance(sampler.read(), list)
        sampler.close()
        sampler.close()
        assert sampler.read() == []


def test_missing_process() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(SamplerUnavailable, match="ESRCH"):
        PerfSampler(proc.pid, 100)
