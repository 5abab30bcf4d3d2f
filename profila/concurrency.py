"""How many threads were busy in each function at once: parallel efficiency, counted as it goes.

Definition (docs/json-schema.md, ``parallel``): time is cut into sampling ticks of
``1 / rate_hz`` seconds (by the sample's CLOCK_MONOTONIC time). For a function F, a tick is
*active* if at least one thread had a sample with F on its Numba stack in it, and the tick's
*busy count* is the number of distinct threads that did. F's parallel efficiency is the mean
busy count over its active ticks: ``thread_ticks / ticks``. One thread working alone gives 1.0;
N threads working together for the whole time F ran give N. Idle samples (a thread blocked, or
spinning in the thread pool) never have F on the stack, so a worker waiting at the barrier of an
imbalanced ``prange`` lowers it.

The sampler takes one sample per period of a thread's *CPU* time (jittered by +-10%), so a
thread that runs for a whole tick has one sample in it most of the time and occasionally none or
two: N threads busy throughout read slightly under N (simulated with independent phases and
jitter, tests/unit/test_threads.py: 1.0, 1.95, 3.91, 7.81 for 1, 2, 4, 8 threads). A thread
preempted by other processes is not busy while it waits for a CPU.

Memory stays bounded: only the ticks of the last ``window_s`` seconds of sample time are kept
open (samples arrive out of order by at most a drain interval, per-CPU buffers being drained one
after the other); older ticks are folded into per-function counters. A sample older than the
window (which the session's drain makes rare) is left out of these counts, and counted in
``late``.
"""

from __future__ import annotations

from collections import Counter

Key = tuple[str, str]  # file, function


class BusyThreads:
    """Per-function active ticks and busy thread-ticks, from (time, thread, functions)."""

    def __init__(self, rate_hz: float, window_s: float = 5.0) -> None:
        self.tick_ns = max(1, round(1e9 / rate_hz))
        self._window = max(2, round(window_s * 1e9 / self.tick_ns))
        self._open: dict[int, dict[Key, set[int]]] = {}
        self._closed_below = -1  # ticks below this index are folded
        self.ticks: Counter[Key] = Counter()
        self.thread_ticks: Counter[Key] = Counter()
        self.threads: dict[Key, set[int]] = {}
        self.late = 0

    def add(self, time_ns: int, tid: int, keys: set[Key]) -> None:
        if not keys:
            return
        tick = time_ns // self.tick_ns
        if tick < self._closed_below:
            self.late += 1
            return
        bucket = self._open.setdefault(tick, {})
        for key in keys:
            bucket.setdefault(key, set()).add(tid)
            self.threads.setdefault(key, set()).add(tid)
        if tick - self._window > self._closed_below:
            self._fold_below(tick - self._window)

    def _fold_below(self, limit: int) -> None:
        for tick in [t for t in self._open if t < limit]:
            for key, tids in self._open.pop(tick).items():
                self.ticks[key] += 1
                self.thread_ticks[key] += len(tids)
        self._closed_below = max(self._closed_below, limit)

    def finish(self) -> None:
        """Fold every open tick (at the end of the run, or before reading the counters)."""
        if self._open:
            self._fold_below(max(self._open) + 1)
