"""The target runs as it would without profila: same argv, stdin, output and exit status."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, profila

ECHO = Path(__file__).with_name("targets") / "echo.py"
ODD_ARGS = ["a b", "'quoted'", '"double"', "$(echo no)", "line\nbreak", "naïve ☃", "", "--x"]


def plain(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, str(ECHO), *args], input=stdin, capture_output=True, cwd=ROOT, timeout=60
    )


def target_output(stdout: bytes) -> dict[str, object]:
    return dict(json.loads(stdout.split(b"\n", 1)[0]))


def test_argv_stdin_and_output_are_untouched(tmp_path: Path) -> None:
    """Odd arguments arrive byte-identical and stdin is the user's, byte for byte; the target's
    output comes first, the report after it."""
    stdin = bytes(range(256)) * 4
    expected = plain("exit:0", *ODD_ARGS, stdin=stdin)
    run = profila(str(ECHO), "exit:0", *ODD_ARGS, tmp_path=tmp_path, stdin=stdin)
    got = target_output(run.stdout)
    want = target_output(expected.stdout)
    assert got["argv"] == want["argv"]
    assert got["stdin"] == want["stdin"] == stdin.hex()
    assert got["cwd"] == want["cwd"]
    assert run.stderr.startswith(b"to stderr\n")
    assert run.stdout.index(b"profila: python") > run.stdout.index(b'"argv"')
    assert run.returncode == 0


@pytest.mark.parametrize(
    "how, code", [("exit:7", 7), ("raise", 1), (f"signal:{int(signal.SIGTERM)}", 128 + 15)]
)
def test_exit_status_is_the_targets(tmp_path: Path, how: str, code: int) -> None:
    """sys.exit(N) gives N, an exception 1 with its traceback, a death by signal N 128+N; the
    report and the JSON profile are still produced."""
    run = profila(str(ECHO), how, tmp_path=tmp_path)
    assert run.returncode == code
    assert b"profila: python" in run.stdout
    assert run.profile is not None and run.profile["exit_code"] == code
    if how == "raise":
        assert b"RuntimeError: target failed on purpose" in run.stderr


def test_module_and_code_forms(tmp_path: Path) -> None:
    """`-c code` and `-m module` run like `python -c` and `python -m`."""
    run = profila(
        "-c", "import sys; print('c-ok', sys.argv[1:]); sys.exit(3)", "x y", tmp_path=tmp_path
    )
    assert run.stdout.startswith(b"c-ok ['x y']\n") and run.returncode == 3
    run = profila("-m", "json.tool", "--help", tmp_path=tmp_path)
    assert run.returncode == 0 and b"usage:" in run.stdout


def test_short_run_gives_a_valid_empty_report(tmp_path: Path) -> None:
    """A run too short for any sample still produces a report and a valid profile."""
    run = profila("-c", "pass", tmp_path=tmp_path)
    assert run.returncode == 0
    assert run.profile is not None and run.profile["samples"]["total"] >= 0
    assert b"No samples landed in Numba-compiled code." in run.stdout


def test_no_processes_left_behind(tmp_path: Path) -> None:
    """After profila returns, neither gdb nor the target is running."""
    marker = f"profila-leftover-check-{tmp_path.name}"
    profila("-c", f"import time; time.sleep(0.2)  # {marker}", tmp_path=tmp_path)
    ps = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True)
    assert marker not in ps.stdout


def test_console_script(tmp_path: Path) -> None:
    """`profila` (the installed console script) works like `python -m profila`."""
    exe = shutil.which("profila")
    if exe is None:
        pytest.skip("the profila console script is not installed (pip install -e .)")
    proc = subprocess.run(
        [exe, "annotate", "--no-color", "--", "-c", "print('hi')"],
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.startswith(b"hi\n")
    assert b"profila: python -c" in proc.stdout


def test_missing_gdb_is_an_actionable_error(tmp_path: Path) -> None:
    """Without gdb: one line naming the fix, exit 3, and the target never ran."""
    marker = tmp_path / "ran"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "profila",
            "annotate",
            "--gdb",
            str(tmp_path / "no-gdb"),
            "--",
            "-c",
            f"open({str(marker)!r}, 'w')",
        ],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 3
    assert proc.stderr.count(b"\n") == 1 and b"gdb not found" in proc.stderr
    assert not marker.exists()


def test_time_in_system_calls_is_counted_not_lost(tmp_path: Path) -> None:
    """perf samples user space only; a loop of system calls still shows its kernel time."""
    code = "import os, time\nt = time.time()\nwhile time.time() - t < 0.5: os.stat('/')"
    run = profila("-c", code, tmp_path=tmp_path)
    assert run.returncode == 0 and run.profile is not None
    if run.profile["sampler"] == "perf":
        assert run.profile["samples"]["kernel"] > 0.1 * run.profile["samples"]["total"]
