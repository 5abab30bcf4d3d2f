"""What profila costs a multi-threaded Numba program: overhead at 100 Hz with 1, 2, 4, 8 threads.

The target is this file run with ``--target MODE N SECONDS``: it compiles its kernel, then N
threads work for SECONDS and it prints ``work/sec: X``, the throughput of that timed window only
(compile time and profila's start-up are outside it).

    MODE python   N Python threads, each calling a ``nogil=True`` kernel over and over
    MODE prange   the main thread calling a ``parallel=True`` prange kernel over and over, with
                  ``NUMBA_NUM_THREADS=N`` and the ``workqueue`` threading layer (OpenMP's
                  spin-waits make its CPU time depend on how the threads get scheduled, which
                  other processes on a shared 2-CPU machine decide)

For each N, rounds alternate a plain run and a run under ``python -m profila annotate --rate
100`` (A B, A B, ...) so that noise from the rest of the machine falls on both alike. The
slowdown of a round is plain work/sec over profiled work/sec; the table gives medians over the
rounds. On a shared machine the wall-clock throughput of either run depends on what else runs,
so two figures that other processes barely touch are given as well: the target's own CPU time
(``time.process_time``, all its threads) per unit of work in the timed window, profiled over
plain; and the extra CPU time of the whole profiled command tree (profila's controller, gdb,
the target) over the plain run, from ``getrusage(RUSAGE_CHILDREN)``. Then the sampling figures
of the profiled runs (from their JSON profiles): running samples per second of run time over
all threads, and the largest share of bad samples.

Usage::

    python bench/threads.py [--rounds R] [--seconds S] [--modes python,prange]
                            [--threads 1,2,4,8] [--rate HZ]

Prints a Markdown block on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WORK_RE = re.compile(r"^work/sec: ([0-9.]+) cpu-ms/work: ([0-9.]+)", re.MULTILINE)
SIZE = 50_000  # elements per nogil kernel call: ~0.1 ms per call here, many calls per tick
PRANGE_SIZE = 2_000_000  # elements per prange call: ~3 ms of work, split over the threads
PRANGE_LAYER = "workqueue"  # blocking waits: libgomp's spinning makes CPU per work noisy


def run_target(mode: str, count: int, seconds: float) -> None:
    """The benchmarked program."""
    import numpy as np
    from numba import njit, prange

    @njit(nogil=True)
    def kernel(data):  # type: ignore[no-untyped-def]
        acc = 0.0
        for x in data:
            acc += np.sqrt(x) * 1.0001
        return acc

    @njit(parallel=True)
    def parallel_kernel(data, out):  # type: ignore[no-untyped-def]
        for i in prange(out.shape[0]):
            acc = 0.0
            for j in range(i * 1000, (i + 1) * 1000):
                acc += np.sqrt(data[j]) * 1.0001
            out[i] = acc

    data = np.random.default_rng(0).random(SIZE)
    big = np.random.default_rng(0).random(PRANGE_SIZE)
    out = np.empty(PRANGE_SIZE // 1000)
    kernel(data)
    parallel_kernel(big, out)
    calls = [0] * count
    if mode == "python":
        deadline = [0.0]
        ready = threading.Barrier(count + 1)

        def worker(index: int) -> None:
            ready.wait()
            n = 0
            while time.perf_counter() < deadline[0]:
                kernel(data)
                n += 1
            calls[index] = n

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        start, cpu_start = time.perf_counter(), time.process_time()
        deadline[0] = start + seconds
        ready.wait()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    else:
        start, cpu_start = time.perf_counter(), time.process_time()
        n = 0
        while time.perf_counter() < start + seconds:
            parallel_kernel(big, out)
            n += 1
        elapsed = time.perf_counter() - start
        calls[0] = n
    cpu = time.process_time() - cpu_start
    work = max(1, sum(calls))
    print(f"work/sec: {work / elapsed:.2f} cpu-ms/work: {1000 * cpu / work:.5f}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def one_run(
    mode: str, count: int, seconds: float, rate: float | None, tmp: Path
) -> tuple[float, float, float, dict[str, Any] | None]:
    """(work/s, target CPU ms per unit of work, CPU s of the whole command tree, profile)."""
    target = [str(Path(__file__).resolve()), "--target", mode, str(count), str(seconds)]
    env = dict(os.environ)
    if mode == "prange":
        env["NUMBA_NUM_THREADS"] = str(count)
        env["NUMBA_THREADING_LAYER"] = PRANGE_LAYER
    out = tmp / "p.json"
    if rate is None:
        argv = [sys.executable, *target]
    else:
        argv = [sys.executable, "-m", "profila", "annotate", "--rate", str(rate), "--no-color",
                "-o", str(out), "--", *target]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=seconds * 10 + 120
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tree = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    match = WORK_RE.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"{argv} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    profile = json.loads(out.read_text()) if rate is not None else None
    return float(match.group(1)), float(match.group(2)), tree, profile


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", nargs=3, metavar=("MODE", "N", "SECONDS"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--modes", default="python,prange")
    parser.add_argument("--threads", default="1,2,4,8")
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args()
    if args.target:
        run_target(args.target[0], int(args.target[1]), float(args.target[2]))
        return 0
    counts = [int(x) for x in args.threads.split(",")]
    modes = args.modes.split(",")
    load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    with tempfile.TemporaryDirectory(prefix="profila-bench-threads-") as tmp:
        for mode in modes:
            for count in counts:
                ratios, plain, profiled, rates, bad = [], [], [], [], []
                cpu_ratios, extra_cpu = [], []
                for r in range(args.rounds):
                    a, a_cpu, a_tree, _ = one_run(mode, count, args.seconds, None, Path(tmp))
                    b, b_cpu, b_tree, p = one_run(mode, count, args.seconds, args.rate, Path(tmp))
                    assert p is not None
                    ratios.append(a / b)
                    cpu_ratios.append(b_cpu / a_cpu)
                    extra_cpu.append(b_tree - a_tree)
                    plain.append(a)
                    profiled.append(b)
                    running = p["samples"]["total"] - p["samples"]["idle"]
                    rates.append(running / p["duration_s"])
                    bad.append(p["samples"]["bad"] / max(1, running))
                    log(f"{mode} N={count} round {r + 1}: plain {a:.1f}/s, profiled {b:.1f}/s, "
                        f"x{a / b:.3f}, cpu x{b_cpu / a_cpu:.3f}, +{b_tree - a_tree:.2f} s CPU, "
                        f"{running / p['duration_s']:.0f} samples/s")
                rows.append((mode, count, statistics.median(plain), statistics.median(profiled),
                             statistics.median(ratios), min(ratios), max(ratios),
                             statistics.median(cpu_ratios), statistics.median(extra_cpu),
                             statistics.median(rates), max(bad)))
    load_end = os.getloadavg()
    import numba

    print(f"Run {started}: `python bench/threads.py --rounds {args.rounds} --seconds "
          f"{args.seconds} --modes {args.modes} --threads {args.threads} --rate {args.rate:g}`; "
          f"{os.cpu_count()} CPUs, load average {load_start[0]:.2f} at start, "
          f"{load_end[0]:.2f} at end; Linux {platform.release()}, Python "
          f"{platform.python_version()}, numba {numba.__version__}, prange threading layer "
          f"{PRANGE_LAYER}.")
    print()
    print("| mode | threads | plain work/s | profiled work/s | slowdown (median) | min-max over "
          "rounds | target CPU per work, profiled / plain | extra CPU per run (profila + gdb) "
          "| running samples/s | bad (max) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode, count, a, b, ratio, lo, hi, cpu_ratio, extra, rate, bad_share in rows:
        print(f"| {mode} | {count} | {a:.1f} | {b:.1f} | {ratio:.3f}x | {lo:.3f}-{hi:.3f} | "
              f"{cpu_ratio:.3f}x | {extra:+.2f} s | {rate:.0f} | {100 * bad_share:.2f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
