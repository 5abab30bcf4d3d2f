"""Ctrl-C, SIGTERM, SIGKILL and a dying gdb: the target sees what it would see without profila,
the profile so far is reported, and nothing is left running, stopped or traced."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT
from .procs import (
    Launched,
    alive,
    comm,
    descendants,
    launched,
    running_untraced,
    status,
    wait_gone,
)

# A pure-Python busy loop (samples land in "python"): prints a handshake, then spins.
SPIN = """
import os, signal, sys, time
{setup}
print("ready", os.getpid(), flush=True)
t = time.time()
while time.time() - t < {seconds}:
    sum(range(1000))
print("spun out", flush=True)
"""


def spin(tmp_path: Path, seconds: float, setup: str = "") -> str:
    script = tmp_path / "spin.py"
    script.write_text(SPIN.format(setup=setup, seconds=seconds))
    return str(script)


def tree(run: Launched, sampler: str = "perf") -> tuple[list[int], int]:
    """([gdb pid] or [], target pid) once the target is running; remembered for the clean-up.

    Only the gdb sampler keeps a gdb: with perf, gdb detached before the exec and quit, and
    the target runs untraced."""
    kids = descendants(run.pid)
    run.extra.extend(kids)
    gdbs = [p for p in kids if comm(p).startswith("gdb")]
    targets = [p for p in kids if p not in gdbs]
    assert len(gdbs) == (1 if sampler == "gdb" else 0), [(p, comm(p)) for p in kids]
    assert len(targets) == 1, [(p, comm(p)) for p in kids]
    if sampler != "gdb":
        assert running_untraced(targets[0]), status(targets[0])
    return gdbs, targets[0]


def assert_partial_profile(run: Launched, stdout: bytes) -> None:
    assert b"profila: python" in stdout  # the text report
    profile = json.loads(run.out.read_text())  # and the -o file
    assert profile["samples"]["total"] > 0


@pytest.mark.parametrize("sampler", ["perf", "gdb"])
def test_ctrl_c_reaches_the_target_and_the_profile_is_reported(
    tmp_path: Path, sampler: str
) -> None:
    """Ctrl-C: the target gets KeyboardInterrupt as in a plain run; profila reports what it
    sampled, writes -o, exits 130 (128+SIGINT), and leaves no process behind."""
    options = ("--sampler", sampler)
    with launched(spin(tmp_path, 60), tmp_path=tmp_path, options=options) as run:
        run.read_until(b"ready")
        gdb, target = tree(run, sampler)
        time.sleep(0.5)
        run.ctrl_c()
        code, out, err = run.finish()
        assert code == 130
        assert b"KeyboardInterrupt" in err and b"Traceback" in err
        assert b"profila: interrupted" not in err  # not profila's own traceback or message
        assert_partial_profile(run, out)
        assert wait_gone([*gdb, target]) == []


def test_targets_own_sigint_handler_decides(tmp_path: Path) -> None:
    """A target that handles SIGINT runs its handler once and ends as it chooses."""
    setup = (
        "def on_int(s, f):\n"
        "    print('handled SIGINT', flush=True); sys.exit(5)\n"
        "signal.signal(signal.SIGINT, on_int)"
    )
    with launched(spin(tmp_path, 60, setup), tmp_path=tmp_path) as run:
        run.read_until(b"ready")
        time.sleep(0.3)
        run.ctrl_c()
        code, out, _ = run.finish()
        assert code == 5
        assert out.count(b"handled SIGINT") == 1
        assert_partial_profile(run, out)


@pytest.mark.parametrize("sampler", ["perf", "gdb"])
def test_second_ctrl_c_stops_waiting_and_leaves_the_target_running_untraced(
    tmp_path: Path, sampler: str
) -> None:
    """A target that ignores Ctrl-C keeps running, as it would without profila; the second
    Ctrl-C makes profila report and leave, with the target neither stopped nor traced."""
    setup = "signal.signal(signal.SIGINT, signal.SIG_IGN)"
    options = ("--sampler", sampler)
    with launched(spin(tmp_path, 60, setup), tmp_path=tmp_path, options=options) as run:
        run.read_until(b"ready")
        gdb, target = tree(run, sampler)
        time.sleep(0.3)
        run.ctrl_c()
        time.sleep(1.0)
        assert run.proc.poll() is None, "profila stopped waiting after one Ctrl-C"
        run.ctrl_c()
        code, out, err = run.finish(timeout=30)
        assert code == 130
        assert b"stopped waiting for the target" in err
        assert_partial_profile(run, out)
        assert json.loads(run.out.read_text())["exit_code"] is None  # still running
        assert wait_gone(gdb) == []
        assert running_untraced(target), status(target)
        time.sleep(0.3)
        assert running_untraced(target), status(target)  # and stays so


def test_sigint_ignored_from_the_start_stays_ignored(tmp_path: Path) -> None:
    """Started with SIGINT ignored (a background job of a script), profila and the target keep
    ignoring it, as a plain run would: SIGINTs change nothing."""
    with launched(spin(tmp_path, 2.0), tmp_path=tmp_path, sigint_ignored=True) as run:
        run.read_until(b"ready")
        run.ctrl_c()
        time.sleep(0.2)
        run.ctrl_c()
        code, out, err = run.finish()
        assert code == 0, err
        assert b"spun out" in out and b"stopped waiting" not in err
        assert_partial_profile(run, out)


def test_sigterm_to_profila_is_passed_on_and_the_profile_written(tmp_path: Path) -> None:
    """`kill PID` on profila: the target gets SIGTERM once (as if profila were not there), and
    when it ends the partial profile is still reported and written."""
    setup = (
        "def on_term(s, f):\n"
        "    print('handled SIGTERM', flush=True); sys.exit(7)\n"
        "signal.signal(signal.SIGTERM, on_term)"
    )
    with launched(spin(tmp_path, 60, setup), tmp_path=tmp_path) as run:
        run.read_until(b"ready")
        gdb, target = tree(run)
        time.sleep(0.3)
        os.kill(run.pid, signal.SIGTERM)
        code, out, _ = run.finish()
        assert code == 7
        assert out.count(b"handled SIGTERM") == 1
        assert_partial_profile(run, out)
        assert wait_gone([*gdb, target]) == []


def test_sigterm_kills_a_default_target_and_profila_reports_143(tmp_path: Path) -> None:
    """A target with SIGTERM's default action dies of it; profila exits 128+15 with a report."""
    with launched(spin(tmp_path, 60), tmp_path=tmp_path) as run:
        run.read_until(b"ready")
        time.sleep(0.3)
        os.kill(run.pid, signal.SIGTERM)
        code, out, _ = run.finish()
        assert code == 143
        assert_partial_profile(run, out)


@pytest.mark.parametrize("sampler", ["perf", "gdb"])
def test_sigkill_to_profila_leaves_the_target_running_untraced(
    tmp_path: Path, sampler: str
) -> None:
    """profila killed outright: gdb detaches and quits, the target runs on, never stopped."""
    options = ("--sampler", sampler)
    with launched(spin(tmp_path, 60), tmp_path=tmp_path, options=options) as run:
        run.read_until(b"ready")
        gdb, target = tree(run, sampler)
        time.sleep(0.3)
        os.kill(run.pid, signal.SIGKILL)
        run.proc.wait(10)
        assert wait_gone(gdb) == []
        assert running_untraced(target), status(target)


def test_gdb_dying_mid_run_leaves_the_target_to_finish(tmp_path: Path) -> None:
    """A sampling gdb killed while the target runs: one line says so, the target finishes as it
    would, its exit status passes through, and the report is printed."""
    options = ("--sampler", "gdb")
    with launched(spin(tmp_path, 2.0), tmp_path=tmp_path, options=options) as run:
        run.read_until(b"ready")
        gdb, target = tree(run, "gdb")
        os.kill(gdb[0], signal.SIGKILL)
        code, out, err = run.finish()
        assert code == 0
        assert b"spun out" in out
        assert b"profila: gdb ended during the run (killed by signal 9)" in err
        assert b"profila: python" in out
        assert not alive(target)


def test_signals_the_target_sends_itself_are_unchanged(tmp_path: Path) -> None:
    """A target that sends itself SIGINT, SIGUSR1 and SIGTERM (with handlers) sees each once,
    exactly as in a plain run."""
    script = tmp_path / "selfsig.py"
    script.write_text(
        "import os, signal, sys\n"
        "seen = []\n"
        "for s in (signal.SIGUSR1, signal.SIGTERM):\n"
        "    signal.signal(s, lambda n, f: seen.append(signal.Signals(n).name))\n"
        "for s in (signal.SIGUSR1, signal.SIGTERM): os.kill(os.getpid(), s)\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    import time; time.sleep(1)\n"
        "except KeyboardInterrupt:\n"
        "    seen.append('KeyboardInterrupt')\n"
        "print(seen, flush=True)\n"
        "signal.signal(signal.SIGUSR2, signal.SIG_DFL)\n"
        "os.kill(os.getpid(), signal.SIGUSR2)\n"
    )
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=30, cwd=ROOT)
    with launched(str(script), tmp_path=tmp_path) as run:
        code, out, _ = run.finish()
    assert plain.returncode == -signal.SIGUSR2
    assert code == 128 + signal.SIGUSR2
    assert out.split(b"\n", 1)[0] == plain.stdout.strip()
    assert plain.stdout.strip() == b"['SIGUSR1', 'SIGTERM', 'KeyboardInterrupt']"


def test_ctrl_c_before_the_target_starts(tmp_path: Path) -> None:
    """Ctrl-C while gdb is still starting: one line, exit 130, the target never ran, nothing
    left behind (a gdb that takes its time to start is simulated by a wrapper)."""
    slow_gdb, starting = tmp_path / "gdb", tmp_path / "starting"
    slow_gdb.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *gdb_side*) touch {starting}; exec sleep 30;; esac\n'
        'exec gdb "$@"\n'
    )
    slow_gdb.chmod(0o755)
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w')"
    options = ("--gdb", str(slow_gdb))
    with launched("-c", code, tmp_path=tmp_path, options=options) as run:
        deadline = time.monotonic() + 60
        while not starting.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        kids = descendants(run.pid)
        run.extra.extend(kids)
        run.ctrl_c()
        code_, _, err = run.finish(timeout=30)
        assert code_ == 130
        assert err.splitlines()[-1] == b"profila: interrupted"
        assert b"Traceback" not in err
        assert wait_gone(kids) == []
        assert not marker.exists()


def test_ctrl_c_typed_on_a_real_terminal(tmp_path: Path) -> None:
    """The real thing: profila in a pseudo-terminal, ^C typed on it. The terminal's line
    discipline signals the foreground job; the target stops with KeyboardInterrupt, the report
    follows on the terminal, profila exits 130 and the -o profile is written."""
    import pty
    import select

    out = tmp_path / "p.json"
    argv = [sys.executable, "-m", "profila", "annotate", "--no-color", "-o", str(out)]
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs
        os.chdir(ROOT)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execv(sys.executable, [*argv, "--", spin(tmp_path, 60)])
    seen = b""
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the terminal's last user has gone
                    break
                if not chunk:
                    break
                if b"ready" in chunk and not kids:
                    kids = descendants(pid)
                    time.sleep(0.3)
                    os.write(master, b"\x03")
                seen += chunk
        _, raw = os.waitpid(pid, 0)
    finally:
        os.close(master)
        for kid in kids:
            with contextlib.suppress(OSError):
                os.kill(kid, signal.SIGKILL)
    assert kids, seen
    assert os.waitstatus_to_exitcode(raw) == 130, seen
    assert b"KeyboardInterrupt" in seen and b"profila: python" in seen
    assert json.loads(out.read_text())["samples"]["total"] > 0
    assert wait_gone(kids) == []


def test_terminal_closed_mid_run_still_writes_the_profile(tmp_path: Path) -> None:
    """The terminal goes away (SIGHUP to the job): the target ends as it would (killed by
    SIGHUP), profila cannot print any more but still writes -o and exits 129."""
    import pty

    out = tmp_path / "p.json"
    argv = [sys.executable, "-m", "profila", "annotate", "--no-color", "-o", str(out)]
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs
        os.chdir(ROOT)
        os.execv(sys.executable, [*argv, "--", spin(tmp_path, 60)])
    kids: list[int] = []
    try:
        seen = b""
        deadline = time.monotonic() + 90
        while b"ready" not in seen and time.monotonic() < deadline:
            seen += os.read(master, 65536)
        kids = descendants(pid)
        time.sleep(0.3)
    finally:
        os.close(master)  # hang up: the kernel sends SIGHUP to the foreground job
    try:
        _, raw = os.waitpid(pid, 0)
    finally:
        for kid in kids:
            with contextlib.suppress(OSError):
                os.kill(kid, signal.SIGKILL)
    assert os.waitstatus_to_exitcode(raw) == 128 + signal.SIGHUP
    profile = json.loads(out.read_text())
    assert profile["samples"]["total"] > 0 and profile["exit_code"] == 128 + signal.SIGHUP
    assert wait_gone(kids) == []
