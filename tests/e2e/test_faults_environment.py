"""A broken environment gives one line naming the fix and a documented exit status, before the
target runs; a merely unusual one (gdb 15, HOME or cwd not writable) does not stop the run."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, have_gdb, profila
from .procs import comm, descendants, wait_gone

GDB = shutil.which("gdb") or "gdb"


def fake_gdb(tmp_path: Path, body: str, mode: int = 0o755) -> Path:
    """A script named gdb; each run appends its PID to bin/pids (see ``fake_pids``)."""
    path = tmp_path / "bin" / "gdb"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\necho $$ >> {path.parent / 'pids'}\n" + body)
    path.chmod(mode)
    return path


def fake_pids(tmp_path: Path) -> list[int]:
    pids = tmp_path / "bin" / "pids"
    return [int(x) for x in pids.read_text().split()] if pids.exists() else []


def annotate(
    tmp_path: Path, *options: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[bytes], Path]:
    """profila annotate OPTIONS -- -c (code that leaves a marker file); returns the marker."""
    marker = tmp_path / "target-ran"
    proc = subprocess.run(
        [sys.executable, "-m", "profila", "annotate", *options, "--",
         "-c", f"open({str(marker)!r}, 'w')"],
        capture_output=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    return proc, marker


def one_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("profila: ")
    return lines[0]


def test_gdb_not_executable(tmp_path: Path) -> None:
    """A gdb path that exists but cannot run is named as such, exit 3, nothing run."""
    gdb = fake_gdb(tmp_path, f'exec {GDB} "$@"\n', mode=0o644)
    proc, marker = annotate(tmp_path, "--gdb", str(gdb))
    assert proc.returncode == 3 and "is not executable" in one_line(proc)
    assert not marker.exists()


@pytest.mark.parametrize(
    "body, says",
    [
        ("exec sleep 60\n", "gave no answer within 2 s (it hangs, printing nothing)"),
        ('exec yes ""\n', "gave no answer within 2 s (it hangs, printing only blank lines)"),
        ("echo 'not a gdb at all'\n", "cannot run Python scripts, printed 'not a gdb at all'"),
    ],
    ids=["hangs", "blank-lines-forever", "garbage"],
)
def test_broken_gdb_is_refused_with_a_deadline(tmp_path: Path, body: str, says: str) -> None:
    """A gdb that hangs, prints blank lines for ever or prints garbage: one line, exit 3,
    within the PROFILA_GDB_TIMEOUT deadline, the target never started, the fake gdb gone."""
    gdb = fake_gdb(tmp_path, body)
    started = time.monotonic()
    proc, marker = annotate(tmp_path, "--gdb", str(gdb), env={"PROFILA_GDB_TIMEOUT": "2"})
    assert time.monotonic() - started < 30
    assert proc.returncode == 3 and says in one_line(proc), proc.stderr
    assert not marker.exists()
    assert fake_pids(tmp_path) and wait_gone(fake_pids(tmp_path), 5) == []


def test_gdb_that_hangs_when_hosting(tmp_path: Path) -> None:
    """A gdb that passes the check but never attaches: exit 3 at the deadline, nothing left."""
    gdb = fake_gdb(tmp_path, f'case "$*" in *gdb_side*) exec sleep 60;; esac\nexec {GDB} "$@"\n')
    proc, marker = annotate(tmp_path, "--gdb", str(gdb), env={"PROFILA_GDB_TIMEOUT": "2"})
    assert proc.returncode == 3
    assert "no answer from gdb within 2 s" in one_line(proc)
    assert not marker.exists()
    assert len(fake_pids(tmp_path)) == 2  # the check, then the host
    assert wait_gone(fake_pids(tmp_path), 5) == []


NUMBA_LOOP = """
import time
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
"""


def test_gdb_15_is_not_refused(tmp_path: Path) -> None:
    """gdb 15 cannot read Numba's in-memory debug info (numba#9817), but profila reads the JIT
    objects itself and asks gdb only to host the target: with a gdb that says it is 15.1 the
    Numba lines are still found."""
    gdb = fake_gdb(
        tmp_path,
        f'case "$1" in --version) echo "GNU gdb (GDB) 15.1"; exit 0;; esac\nexec {GDB} "$@"\n',
    )
    assert b"15.1" in subprocess.run([str(gdb), "--version"], capture_output=True).stdout
    script = tmp_path / "loop.py"
    script.write_text(NUMBA_LOOP)
    run = profila(str(script), tmp_path=tmp_path, options=("--gdb", str(gdb)))
    assert run.returncode == 0, run.stderr
    assert run.profile is not None and run.profile["samples"]["numba"] > 0
    assert run.line(script, "s += (i % 7) * 0.5  # the hot line")["self"] > 0


@contextlib.contextmanager
def tracer_in_the_way(profila_pid: int, started: Path) -> Iterator[subprocess.Popen[str]]:
    """Another tracer (PTRACE_SEIZE from a helper process) on profila's held child before gdb
    gets to it: what a second debugger or profiler on the same process looks like.
    ``started`` appears when profila starts its (slowed-down) gdb host: the child exists."""
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    # The fake gdb's own children (touch, sleep) come and go: wait until only the child is left.
    while True:
        kids = [p for p in descendants(profila_pid) if comm(p) not in ("gdb", "sleep", "touch")]
        if len(kids) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert len(kids) == 1, [(p, comm(p)) for p in kids]
    child = kids[0]
    assert child is not None, "profila never forked its target"
    helper = subprocess.Popen(
        [sys.executable, "-c",
         "import ctypes, sys\n"
         "libc = ctypes.CDLL(None, use_errno=True)\n"
         "print(libc.ptrace(0x4206, int(sys.argv[1]), 0, 0), ctypes.get_errno(), flush=True)\n"
         "sys.stdin.read()\n",
         str(child)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert helper.stdout is not None
        assert helper.stdout.readline().split()[0] == "0", "could not seize the held child"
        yield helper
    finally:
        helper.kill()  # the kernel detaches its tracee
        helper.wait()


def test_target_already_traced(tmp_path: Path) -> None:
    """ptrace refused because another tracer is attached: one line naming it and the fix,
    exit 3, the target never runs. (ptrace_scope and missing CAP_SYS_PTRACE fail the same
    PTRACE_ATTACH with EPERM; they cannot be set up here without changing the machine.)"""
    if not have_gdb():
        pytest.skip("gdb is not installed")
    # gdb is slowed down so that the helper attaches first, deterministically.
    started = tmp_path / "started"
    gdb = fake_gdb(
        tmp_path, f'case "$*" in *gdb_side*) touch {started}; sleep 1.5;; esac\nexec {GDB} "$@"\n'
    )
    marker = tmp_path / "target-ran"
    proc = subprocess.Popen(
        [sys.executable, "-m", "profila", "annotate", "--gdb", str(gdb), "--",
         "-c", f"open({str(marker)!r}, 'w')"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        with tracer_in_the_way(proc.pid, started):
            # The other tracer does not let go: profila must not wait for it for ever.
            out, err = proc.communicate(timeout=60)
    finally:
        kids = descendants(proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        wait_gone(kids, 5)
    assert proc.returncode == 3, err
    line = one_line(subprocess.CompletedProcess([], 3, out, err))
    assert "already traced by PID" in line and "python" in line
    assert not marker.exists()


def test_home_and_cwd_not_writable(tmp_path: Path) -> None:
    """With HOME and the current directory unwritable (/proc, even for root) the run works:
    the line-tables Numba cache falls back to a private (0700) directory under TMPDIR."""
    if not have_gdb():
        pytest.skip("gdb is not installed")
    script = tmp_path / "cached.py"
    script.write_text(NUMBA_LOOP.replace("@njit", "@njit(cache=True)"))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "p.json"
    env = {**os.environ, "HOME": "/proc", "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    env.pop("XDG_CACHE_HOME", None)
    proc = subprocess.run(
        [sys.executable, "-m", "profila", "annotate", "--no-color", "-o", str(out), "--",
         str(script)],
        capture_output=True, cwd="/proc", env=env, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert b"profila: python" in proc.stdout and out.exists()
    private = tmp / f"profila-{os.getuid()}"
    assert (private.stat().st_mode & 0o777) == 0o700
    assert any((private / "numba-cache").rglob("*.nbi"))  # the cache was used, privately
