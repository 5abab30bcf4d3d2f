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
100 --sampler S`` for each sampler asked for (A B C, A B C, ...) so that noise from the rest of
the machine falls on all alike. The gdb sampler stops every thread at each tick, so its cost
grows with the thread count; the perf sampler never stops the target. The
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
                            [--threads 1,2,4,8] [--rate HZ] [--samplers perf,gdb]

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
    mode: str, count: int, seconds: float, rate: float | None, tmp: Path, sampler: str = "perf"
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
                "--sampler", sampler, "-o", str(out), "--", *target]
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
    parser.add_argument("--samplers", default="perf", help="perf, gdb or both: perf,gdb")
    args = parser.parse_args()
    if args.target:
        run_target(args.target[0], int(args.target[1]), float(args.target[2]))
        return 0
    counts = [int(x) for x in args.threads.split(",")]
    modes = args.modes.split(",")
    samplers = args.samplers.split(",")
    load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    with tempfile.TemporaryDirectory(prefix="profila-bench-threads-") as tmp:
        for mode in modes:
            for count in counts:
                stats: dict[str, dict[str, list[float]]] = {
                    name: {k: [] for k in ("ratio", "plain", "profiled", "rate", "bad", "cpu",
                                           "extra")}
                    for name in samplers
                }
                for r in range(args.rounds):
                    a, a_cpu, a_tree, _ = one_run(mode, count, args.seconds, None, Path(tmp))
                    for name in samplers:
                        b, b_cpu, b_tree, p = one_run(
                            mode, count, args.seconds, args.rate, Path(tmp), name
                        )
                        assert p is not None
                        running = p["samples"]["total"] - p["samples"]["idle"]
                        st = stats[name]
                        st["ratio"].append(a / b)
                        st["cpu"].append(b_cpu / a_cpu)
                        st["extra"].append(b_tree - a_tree)
                        st["plain"].append(a)
                        st["profiled"].append(b)
                        st["rate"].append(running / p["duration_s"])
                        st["bad"].append(p["samples"]["bad"] / max(1, running))
                        log(f"{mode} N={count} {name} round {r + 1}: plain {a:.1f}/s, "
                            f"profiled {b:.1f}/s, x{a / b:.3f}, cpu x{b_cpu / a_cpu:.3f}, "
                            f"+{b_tree - a_tree:.2f} s CPU, "
                            f"{running / p['duration_s']:.0f} samples/s")
                for name in samplers:
                    st = stats[name]
                    med = statistics.median
                    rows.append((mode, count, name, med(st["plain"]), med(st["profiled"]),
                                 med(st["ratio"]), min(st["ratio"]), max(st["ratio"]),
                                 med(st["cpu"]), med(st["extra"]), med(st["rate"]),
                                 max(st["bad"])))
    load_end = os.getloadavg()
    import numba

    print(f"Run {started}: `python bench/threads.py --rounds {args.rounds} --seconds "
          f"{args.seconds} --modes {args.modes} --threads {args.threads} --rate {args.rate:g} "
          f"--samplers {args.samplers}`; "
          f"{os.cpu_count()} CPUs, load average {load_start[0]:.2f} at start, "
          f"{load_end[0]:.2f} at end; Linux {platform.release()}, Python "
          f"{platform.python_version()}, numba {numba.__version__}, prange threading layer "
          f"{PRANGE_LAYER}.")
    print()
    print("| mode | threads | sampler | plain work/s | profiled work/s | slowdown (median) | "
          "min-max over rounds | target CPU per work, profiled / plain | extra CPU per run "
          "(profila + gdb) | running samples/s | bad (max) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for mode, count, name, a, b, ratio, lo, hi, cpu_ratio, extra, rate, bad_share in rows:
        print(f"| {mode} | {count} | {name} | {a:.1f} | {b:.1f} | {ratio:.3f}x | "
              f"{lo:.3f}-{hi:.3f} | {cpu_ratio:.3f}x | {extra:+.2f} s | {rate:.0f} | "
              f"{100 * bad_share:.2f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
