"""Programs that do unusual things still run as they would without profila, and the report
stays honest: no samples at all, children by fork and multiprocessing, a source edited while
the program runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, profila


@pytest.mark.parametrize("sampler", ["perf", "gdb"])
def test_zero_samples_give_a_valid_report_and_profile(tmp_path: Path, sampler: str) -> None:
    """A run too short for a single sample: an empty report, a JSON profile with zero counts
    that `profila show` reads back."""
    run = profila("-c", "pass", tmp_path=tmp_path, options=("--rate", "1", "--sampler", sampler))
    assert run.returncode == 0, run.stderr
    assert run.profile is not None
    running = run.profile["samples"]["total"] - run.profile["samples"]["idle"]
    assert running == 0 and run.profile["lines"] == []
    assert b"No samples landed in Numba-compiled code." in run.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "profila", "show", "--no-color", str(tmp_path / "profile.json")],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert shown.returncode == 0 and b"No samples landed" in shown.stdout


CHILDREN = """
import json, multiprocessing as mp, os, sys, threading

def square(x):
    return x * x

def main():
    out = {}
    for method in ("fork", "spawn", "forkserver"):
        with mp.get_context(method).Pool(2) as pool:
            out[method] = sum(pool.map(square, range(100)))
    pid = os.fork()
    if pid == 0:
        os._exit(42)
    out["fork_status"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    box = []
    t = threading.Thread(target=lambda: box.append(sum(range(10**6))))
    t.start(); t.join()
    out["thread"] = box[0]
    print(json.dumps(out), flush=True)
    sys.exit(9)

if __name__ == "__main__":
    main()
"""


def test_fork_multiprocessing_and_threads_run_as_without_profila(tmp_path: Path) -> None:
    """Children made by fork, and by multiprocessing's three start methods, and threads, give
    the results and exit statuses of a plain run."""
    script = tmp_path / "children.py"
    script.write_text(CHILDREN)
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=120)
    assert plain.returncode == 9, plain.stderr
    run = profila(str(script), tmp_path=tmp_path)
    assert run.returncode == 9, run.stderr
    assert json.loads(run.stdout.splitlines()[0]) == json.loads(plain.stdout)
    assert json.loads(plain.stdout)["fork_status"] == 42


SELF_EDITING = """
import time
from pathlib import Path
from numba import njit

@njit
def spin(n):
    s = 0.0
    for i in range(n):
        s += (i % 7) * 0.5  # the hot line
    return s

spin(10)
t = time.time()
while time.time() - t < 1.0:
    spin(200_000)
# Edit this very file before profila renders: lines move down by three.
path = Path(__file__)
path.write_text("# one\\n# two\\n# three\\n" + path.read_text())
"""


def test_source_edited_during_the_run_is_not_shown_beside_old_counts(tmp_path: Path) -> None:
    """The program rewrites its own source before it ends: the report says the file changed
    and shows line numbers only, never the new text beside the old counts."""
    script = tmp_path / "self_editing.py"
    script.write_text(SELF_EDITING)
    run = profila(str(script), tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.profile is not None and run.profile["samples"]["numba"] > 0
    assert script.read_text().startswith("# one\n")
    assert b"source file changed since the run" in run.stdout
    assert b"# the hot line" not in run.stdout
