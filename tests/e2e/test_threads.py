"""Threads and parallel Numba under the perf sampler: every thread's work, on the right lines.

Targets are examples/parallel/*.py; each says in its docstring where its time goes. The machine
running the tests may be shared: assertions are ratios with margins, and shares are compared
with the threads' CPU time (what the sampler counts), not their wall time.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .conftest import EXAMPLES, Run, profila

PARALLEL = EXAMPLES / "parallel"
HOT_BODY = PARALLEL / "hot_body.py"
KERNEL = "kernel"  # the @njit(parallel=True) function of hot_body.py
IMBALANCED = PARALLEL / "imbalanced.py"
TWO_THREADS = PARALLEL / "two_threads.py"


def have_tbb() -> bool:
    """Numba's tbb threading layer loads (it needs the tbb package's libtbb.so.12)."""
    try:
        importlib.import_module("numba.np.ufunc.tbbpool")
    except ImportError:
        return False
    return True


def line_of(path: Path, fragment: str) -> int:
    numbers = [i for i, src in enumerate(path.read_text().splitlines(), 1) if fragment in src]
    assert len(numbers) == 1, f"{fragment!r} is not on exactly one line of {path}"
    return numbers[0]


def per_thread(profile: dict[str, Any], path: Path, line: int) -> Counter[int]:
    """Self samples of one line, by thread."""
    counts: Counter[int] = Counter()
    for x in profile["thread_lines"]:
        if x["file"] == str(path) and x["line"] == line:
            counts[x["tid"]] += x["self"]
    return counts


def run_ok(
    tmp_path: Path,
    *args: str,
    env: dict[str, str],
    options: tuple[str, ...] = (),
    sampler: str = "perf",
) -> Run:
    run = profila(*args, tmp_path=tmp_path, env=env, options=("--sampler", sampler, *options))
    assert run.returncode == 0, run.stderr.decode()
    assert run.profile is not None
    return run


@pytest.mark.parametrize(
    "layer, sampler",
    [("omp", "perf"), ("workqueue", "perf"), ("omp", "gdb"), ("tbb", "perf")],
)
def test_prange_body_line_gets_the_work(tmp_path: Path, layer: str, sampler: str) -> None:
    """The hot line of a prange body gets the samples, from both threads of the pool; the
    prange line (launch and wait) gets little: waiting threads are idle, not work. Both
    samplers agree."""
    if layer == "tbb" and not have_tbb():
        pytest.skip("Numba's tbb threading layer is not available (pip install tbb)")
    env = {"NUMBA_THREADING_LAYER": layer, "NUMBA_NUM_THREADS": "2"}
    run = run_ok(tmp_path, str(HOT_BODY), "1.5", env=env, sampler=sampler)
    assert run.profile is not None
    hot_line = line_of(HOT_BODY, "# hot:")
    hot = run.line_number(HOT_BODY, hot_line)
    prange = run.line_number(HOT_BODY, line_of(HOT_BODY, "for i in prange("))
    assert hot["self"] > 3 * prange["total"], (hot, prange)
    assert hot["self"] > 0.5 * run.profile["samples"]["numba"]
    workers = per_thread(run.profile, HOT_BODY, line_of(HOT_BODY, "# hot:"))
    assert len([t for t, n in workers.items() if n >= 3]) == 2, workers
    # No wrapper frame charges the prange line for the body's work.
    assert prange["total"] == prange["self"]
    text = run.stdout.decode()
    assert "Samples per thread" in text and "Parallel efficiency" in text
    # The body is named after the function holding the prange, the same in every run.
    hot_function = {x["function"] for x in run.profile["lines"] if x["line"] == hot_line}
    assert hot_function == {f"{KERNEL} [prange body]"}, hot_function


def test_one_thread_does_all_the_work(tmp_path: Path) -> None:
    """NUMBA_NUM_THREADS=1: the body still lands on its line, from a single thread."""
    env = {"NUMBA_NUM_THREADS": "1"}
    run = run_ok(tmp_path, str(HOT_BODY), "1", env=env)
    workers = per_thread(run.profile or {}, HOT_BODY, line_of(HOT_BODY, "# hot:"))
    assert sum(workers.values()) > 20
    assert max(workers.values()) >= 0.95 * sum(workers.values()), workers
    efficiency = [p for p in (run.profile or {})["parallel"] if p["threads"] >= 2]
    assert not efficiency


def test_imbalanced_prange_shows_the_idle_worker(tmp_path: Path) -> None:
    """One chunk does 3x the work of the other: the thread with the small chunk waits most of
    the time, counted idle (blocked or spinning in libgomp), and the parallel function had
    fewer than 2 threads busy on average."""
    env = {"NUMBA_THREADING_LAYER": "omp", "NUMBA_NUM_THREADS": "2"}
    run = run_ok(tmp_path, str(IMBALANCED), "1.5", env=env, options=("--threads",))
    profile = run.profile or {}
    work = Counter[int]()
    for x in profile["thread_lines"]:
        if x["file"] == str(IMBALANCED) and x["function"] == "work":
            work[x["tid"]] += x["self"]
    assert len(work) == 2, work
    (big, big_n), (small, small_n) = work.most_common()
    assert big_n > 1.5 * small_n, work
    threads = {t["tid"]: t for t in profile["threads"]}
    assert threads[small]["idle"] > 1.2 * threads[small]["samples"], threads[small]
    (body,) = [p for p in profile["parallel"] if p["function"] == "work"]
    assert body["threads"] == 2
    assert body["thread_ticks"] < 1.8 * body["ticks"], body
    text = run.stdout.decode()
    assert re.search(rf"T1={big}\s+T2={small}", text), text


def test_python_threads_nogil_kernels_match_measured_shares(tmp_path: Path) -> None:
    """Two Python threads run different nogil kernels for 1.2 s and 0.4 s: each kernel's share
    of the samples matches its share of the CPU time the threads measured themselves, within
    5 percentage points. On an unloaded machine CPU time equals the measured wall time, and the
    shares must then match those too. 1000 Hz keeps the sampling error near 1.5 points."""
    run = run_ok(tmp_path, str(TWO_THREADS), "1.2", "0.4", env={}, options=("--rate", "1000"))
    out = run.stdout.decode()
    measured = {
        m["name"]: (float(m["wall"]), float(m["cpu"]))
        for m in re.finditer(r"(?P<name>\w+) seconds: (?P<wall>[0-9.]+) cpu: (?P<cpu>[0-9.]+)", out)
    }
    assert set(measured) == {"alpha", "beta"}, out
    profile = run.profile or {}
    samples = Counter[str]()
    tids: dict[str, set[int]] = {"kernel_alpha": set(), "kernel_beta": set()}
    for x in profile["thread_lines"]:
        if x["function"] in tids:
            samples[x["function"]] += x["self"]
            tids[x["function"]].add(x["tid"])
    assert len(tids["kernel_alpha"]) == 1 and tids["kernel_alpha"] != tids["kernel_beta"]
    share = samples["kernel_alpha"] / (samples["kernel_alpha"] + samples["kernel_beta"])
    cpu = measured["alpha"][1] / (measured["alpha"][1] + measured["beta"][1])
    assert abs(share - cpu) < 0.05, (share, cpu, measured)
    if all(c >= 0.9 * w for w, c in measured.values()):
        wall = measured["alpha"][0] / (measured["alpha"][0] + measured["beta"][0])
        assert abs(share - wall) < 0.05, (share, wall, measured)


def test_parallel_ufunc_work_lands_on_the_kernel_line(tmp_path: Path) -> None:
    """@vectorize(target="parallel"): the kernel's hot line gets the samples from both threads;
    the ufunc loop wrapper does not put them all on the `def` line too."""
    path = PARALLEL / "parallel_ufunc.py"
    env = {"NUMBA_NUM_THREADS": "2"}
    run = run_ok(tmp_path, str(path), "1.5", env=env)
    hot = run.line_number(path, line_of(path, "# hot:"))
    define = run.line_number(path, line_of(path, "def kernel(x):"))
    assert hot["self"] > 0.5 * (run.profile or {})["samples"]["numba"]
    assert define["total"] < 0.2 * hot["self"], (define, hot)
    workers = per_thread(run.profile or {}, path, line_of(path, "# hot:"))
    assert len([t for t, n in workers.items() if n >= 3]) == 2, workers
