"""What reading the Python frames costs the controller.

1. One read of another thread's Python stack, in this process (code objects cached, as after
   the first samples of a run): a thread parked at a depth of 8 and of 40 Python frames, and the
   one-off probe of the interpreter's layout.
2. Whole runs of tests/e2e/targets/python_callers.py at 1000 Hz in this process, with the
   Python frames read and with the reader switched off, interleaved: controller CPU
   (time.process_time: this process only, not gdb or the target) per running sample, and the
   wall time spent inside the stack reads themselves (a direct figure, free of run-to-run noise).

Usage::

    python bench/python_stacks.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profila import session  # noqa: E402
from profila.symbols import python_stacks  # noqa: E402

TARGET = ROOT / "tests" / "e2e" / "targets" / "python_callers.py"


def park(depth: int, go: threading.Event, parked: threading.Event) -> None:
    if depth > 1:
        park(depth - 1, go, parked)
        return
    parked.set()
    go.wait(60.0)


def read_cost(depth: int) -> float:
    go, parked = threading.Event(), threading.Event()
    thread = threading.Thread(target=park, args=(depth - 4, go, parked))  # + Thread's 3, wait's 2
    thread.start()
    parked.wait(10.0)
    stacks = python_stacks.PythonStacks(os.getpid())
    assert thread.native_id is not None
    tid = thread.native_id
    stacks.new_batch()
    got = len(stacks.read(tid))

    def one() -> None:
        stacks.new_batch()  # the thread list is re-walked once per batch: count it too
        stacks.read(tid)

    n = 2000
    best = min(timeit.repeat(one, number=n, repeat=5)) / n
    go.set()
    thread.join()
    stacks.close()
    print(f"  one stack read, {got} frames: {best * 1e6:.1f} us", flush=True)
    return best


READS: list[float] = []  # seconds of each PythonStacks.read during the runs


def timed_read(self: python_stacks.PythonStacks, tid: int) -> tuple[object, ...]:
    t = time.perf_counter()
    try:
        return UNTIMED_READ(self, tid)
    finally:
        READS.append(time.perf_counter() - t)


UNTIMED_READ = python_stacks.PythonStacks.read


def one_run(with_python: bool) -> tuple[float, int]:
    original = session._python_stacks
    if not with_python:
        session._python_stacks = lambda pid: None  # type: ignore[assignment]
    try:
        cpu = time.process_time()
        result = session.run(session.RunRequest([str(TARGET)], rate_hz=1000.0, gdb_path="gdb"))
        cpu = time.process_time() - cpu
    finally:
        session._python_stacks = original  # type: ignore[assignment]
    p = result.profile
    return cpu, p.samples["numba"] + p.samples["python"] + p.samples["native"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    t = time.perf_counter()
    python_stacks.layout()
    print(f"layout probe (once per controller): {(time.perf_counter() - t) * 1e3:.1f} ms")
    read_cost(8)
    read_cost(40)
    python_stacks.PythonStacks.read = timed_read  # type: ignore[assignment,method-assign]
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for with_python in (False, True):
            READS.clear()
            seconds, samples = one_run(with_python)
            cpu[with_python].append(seconds / max(samples, 1))
            print(
                f"  python frames {'on ' if with_python else 'off'}: controller CPU "
                f"{seconds:.3f} s for {samples} running samples; {len(READS)} stack reads "
                f"took {sum(READS) * 1e3:.1f} ms ({sum(READS) / max(samples, 1) * 1e6:.1f} us "
                f"per running sample; median read "
                f"{statistics.median(READS or [0]) * 1e6:.0f} us)",
                flush=True,
            )
    on, off = statistics.median(cpu[True]), statistics.median(cpu[False])
    print(
        f"controller CPU per running sample (median of {args.rounds}): "
        f"off {off * 1e6:.0f} us, on {on * 1e6:.0f} us, difference {(on - off) * 1e6:+.0f} us"
    )


if __name__ == "__main__":
    main()
