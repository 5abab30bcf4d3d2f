"""Sampling through gdb stops, for real: a held Python child hosted by gdb as profila does it.

The child has a busy thread and a sleeping one, and checks from the inside that the sampling
signal never reaches it and never cuts its syscalls short. It writes what it saw to a file
(its stdout is the test runner's).
"""

from __future__ import annotations

import ast
import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from profila.errors import EnvironmentProblem
from profila.host.gdb import GdbHost, GdbSampling
from profila.host.target import ExitStatus, HeldTarget
from profila.sampling.gdbstop import GdbStopSampler
from profila.sampling.raw import IdleSpan, LostSamples, RawSample

pytestmark = pytest.mark.e2e

RATE_HZ = 100.0
USER_SPACE_END = 1 << 47

CHILD = r"""
import ctypes, os, sys, threading, time
out_path, duration, code = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
facts = {}
libc = ctypes.CDLL(None, use_errno=True)

def busy():
    facts["busy"] = threading.get_native_id()
    start = time.monotonic()
    while time.monotonic() - start < duration:
        pass
    facts["busy_cpu_s"] = time.thread_time()

def sleeper():
    facts["sleeper"] = threading.get_native_id()
    time.sleep(duration)

threads = [threading.Thread(target=busy), threading.Thread(target=sleeper)]
for t in threads:
    t.start()

# time.sleep (clock_nanosleep): must not end early.
start = time.monotonic()
time.sleep(0.5)
facts["sleep_s"] = time.monotonic() - start

# A raw relative nanosleep: returns -1/EINTR if a signal cut it short (no PEP 475 retry here).
class timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]
start = time.monotonic()
ret = libc.nanosleep(ctypes.byref(timespec(0, 300_000_000)), None)
facts["nanosleep"] = (ret, ctypes.get_errno(), time.monotonic() - start)

# A raw blocking read on a pipe, fed 0.3 s later: -1/EINTR if a signal interrupted it.
r, w = os.pipe()
threading.Timer(0.3, os.write, (w, b"x")).start()
buf = ctypes.create_string_buffer(1)
ret = libc.read(r, buf, 1)
facts["read"] = (ret, ctypes.get_errno())

for t in threads:
    t.join()
with open(out_path, "w") as f:
    f.write(repr(facts))
sys.exit(code)
"""

OWN_SIGNAL = r"""
import os, signal, sys, threading, time
out_path = sys.argv[1]
got = []
signal.signal(62, lambda signum, frame: got.append(signum))
os.kill(os.getpid(), 62)
signal.pthread_kill(threading.main_thread().ident, 62)
deadline = time.monotonic() + 5
while len(got) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
with open(out_path, "w") as f:
    f.write(repr({"handled": len(got)}))
"""

SLEEPY_THREADS = r"""
import sys, threading, time
for _ in range(3):
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
start = time.monotonic()
while time.monotonic() - start < float(sys.argv[1]):
    pass
sys.exit(int(sys.argv[2]))
"""


@dataclass
class Hosted:
    status: ExitStatus
    items: list[RawSample | IdleSpan | LostSamples] = field(default_factory=list)
    sampler: GdbStopSampler | None = None
    gdb_returncode: int | None = None
    facts: dict[str, object] = field(default_factory=dict)

    def samples(self, tid: object) -> list[RawSample]:
        return [x for x in self.items if isinstance(x, RawSample) and x.tid == tid]

    def idle(self, tid: object) -> list[IdleSpan]:
        return [x for x in self.items if isinstance(x, IdleSpan) and x.tid == tid]

    def lost(self) -> int:
        return sum(x.count for x in self.items if isinstance(x, LostSamples))


def gdb_path() -> str:
    path = shutil.which("gdb")
    if path is None:
        pytest.skip("gdb is not installed")
    return path


def host(
    code: str,
    args: list[str],
    *,
    tweak: Callable[[GdbSampling], GdbSampling] = lambda request: request,
    leave_after_s: float | None = None,
    timeout: float = 60.0,
) -> Hosted:
    """Run ``python -c code *args`` held, hosted and sampled the way profila does; drain like
    session.py. ``leave_after_s``: the controller stops waiting that soon (closes the sampler
    and gdb) and then waits for the target on its own."""
    target = HeldTarget([sys.executable, "-c", code, *args], dict(os.environ))
    sampler = GdbStopSampler(RATE_HZ)
    try:
        gdb = GdbHost(gdb_path(), target.pid, sampling=tweak(sampler.gdb_request()))
        gdb.wait_attached()
    except EnvironmentProblem as exc:
        target.abandon()
        sampler.close()
        pytest.skip(f"gdb cannot host a target here: {exc}")
    except BaseException:
        target.abandon()
        sampler.close()
        raise
    items: list[RawSample | IdleSpan | LostSamples] = []
    started = time.monotonic()
    try:
        target.release()
        while target.poll() is None:
            assert time.monotonic() - started < timeout, "target did not finish"
            if leave_after_s is not None and time.monotonic() - started > leave_after_s:
                break
            if gdb.poll_exiting():
                items += sampler.read()
                gdb.release_exit()
                target.wait()
                break
            items += sampler.read()
            time.sleep(0.02)
    finally:
        items += sampler.read()
        sampler.close()
        gdb.close(timeout=10.0 if target.poll() is not None else 0.0)
    status = target.wait()
    return Hosted(status, items, sampler, gdb.returncode)


def read_facts(path: Path) -> dict[str, object]:
    facts = ast.literal_eval(path.read_text())
    assert isinstance(facts, dict)
    return facts


@pytest.fixture(scope="module")
def two_threads(tmp_path_factory: pytest.TempPathFactory) -> Hosted:
    out = tmp_path_factory.mktemp("gdbstop") / "facts"
    run = host(CHILD, [str(out), "1.0", "7"])
    run.facts = read_facts(out)
    return run


def test_busy_thread_is_sampled_with_its_stack(two_threads: Hosted) -> None:
    """The busy thread gets about one sample per tick, each with registers and a stack copy."""
    samples = two_threads.samples(two_threads.facts["busy"])
    # ~1 s of spinning at 100 Hz; stops and a loaded machine stretch the ticks, never halve them
    assert len(samples) >= 40, len(samples)
    for s in samples:
        assert 0 < s.ip < USER_SPACE_END and 0 < s.sp < USER_SPACE_END
        assert 0 < len(s.stack) <= 16384
    # Stacks are copied from sp on: the innermost return addresses are there for the unwinder.
    assert sum(len(s.stack) == 16384 for s in samples) >= len(samples) // 2
    assert two_threads.lost() == 0


def test_sleeping_thread_is_idle(two_threads: Hosted) -> None:
    """A thread blocked in sleep is idle at (almost) every tick, one period per idle tick."""
    sleeper = two_threads.facts["sleeper"]
    idle = two_threads.idle(sleeper)
    assert len(idle) >= 40, len(idle)
    assert len(two_threads.samples(sleeper)) <= max(3, len(idle) // 10)
    assert all(x.end_ns - x.start_ns == 10_000_000 for x in idle)


def test_exit_code_passes_through(two_threads: Hosted) -> None:
    """sys.exit(7) under gdb sampling ends with status 7, not a death by the sampling signal."""
    assert two_threads.status == ExitStatus(7, None)


def test_syscalls_are_not_cut_short(two_threads: Hosted) -> None:
    """Ticks land while the target sleeps and reads: time.sleep(0.5) still lasts 0.5 s, and a
    raw nanosleep and a raw pipe read complete instead of failing with EINTR."""
    facts = two_threads.facts
    sleep_s = facts["sleep_s"]
    assert isinstance(sleep_s, float) and 0.5 <= sleep_s < 1.5
    nanosleep = facts["nanosleep"]
    assert isinstance(nanosleep, tuple)
    assert nanosleep[:2] == (0, 0) and nanosleep[2] >= 0.3
    assert facts["read"] == (1, 0)
    stats = two_threads.sampler.stats if two_threads.sampler else None
    assert stats is not None and stats.stops >= 40  # so the calls above were stopped many times


def test_targets_own_signal_62_still_reaches_it(tmp_path: Path) -> None:
    """A target that uses signal 62 itself still gets it (process- and thread-directed)."""
    out = tmp_path / "facts"
    run = host(OWN_SIGNAL, [str(out)])
    assert run.status == ExitStatus(0, None)
    assert read_facts(out) == {"handled": 2}


def test_tick_in_flight_at_exit_does_not_kill_the_target() -> None:
    """A tick signal queued on another thread while the target is held at exit_group is flushed
    before gdb detaches: the exit status stays the target's."""
    run = host(
        SLEEPY_THREADS,
        ["0.3", "5"],
        tweak=lambda request: dataclasses.replace(request, test_pending_at_exit=True),
    )
    assert run.status == ExitStatus(5, None)


def test_controller_leaving_early_detaches_cleanly() -> None:
    """When profila stops waiting (second Ctrl-C), gdb detaches at its next tick and the target
    runs on untraced to its own exit status."""
    run = host(SLEEPY_THREADS, ["1.5", "3"], leave_after_s=0.6)
    assert run.gdb_returncode == 0  # it detached and ended by itself, it was not killed
    assert run.status == ExitStatus(3, None)
    assert any(isinstance(x, RawSample) for x in run.items)
