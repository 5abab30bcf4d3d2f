"""Helpers for the fault tests: profila started as a terminal would start it, process trees."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import ROOT, have_gdb


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children of all its threads, recursively)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            with contextlib.suppress(OSError), open(f"/proc/{parent}/task/{tid}/children") as f:
                kids = [int(x) for x in f.read().split()]
                found.extend(kids)
                todo.extend(kids)
    return found


def status(pid: int) -> dict[str, str] | None:
    """/proc/PID/status as a dict, or None once the process is gone (zombies count as gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return None
    fields = {k: v.strip() for k, v in fields.items()}
    if fields.get("State", "").startswith(("Z", "X")):
        return None
    return fields


def alive(pid: int) -> bool:
    return status(pid) is not None


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def wait_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    """Wait until none of ``pids`` is alive; returns those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def running_untraced(pid: int) -> bool:
    """Alive, not stopped (T/t) and traced by nobody."""
    fields = status(pid)
    return (
        fields is not None
        and not fields["State"].startswith(("T", "t"))
        and fields["TracerPid"] == "0"
    )


@dataclass
class Launched:
    """profila running in its own process group, as a shell's foreground job is."""

    proc: subprocess.Popen[bytes]
    out: Path  # the -o profile
    stdout: Path  # files, not pipes: a target left running would keep a pipe open
    stderr: Path
    extra: list[int] = field(default_factory=list)  # more pids to clean up

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_until(self, marker: bytes, timeout: float = 90.0) -> bytes:
        """Wait for a line starting with ``marker`` on stdout (the target's handshake)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stdout.read_bytes().splitlines(keepends=True):
                if line.startswith(marker) and line.endswith(b"\n"):
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(
            f"no {marker!r} from the target; got {self.stdout.read_bytes()!r} "
            f"{self.stderr.read_bytes()!r}"
        )

    def ctrl_c(self) -> None:
        """What a terminal does on Ctrl-C: SIGINT to the whole foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def finish(self, timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        code = self.proc.wait(timeout)
        return code, self.stdout.read_bytes(), self.stderr.read_bytes()


def _foreground_job() -> None:
    # A non-interactive shell starts background jobs with SIGINT ignored, and an ignored signal
    # stays ignored across exec: reset it, or the test would not see what a terminal user sees.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setpgid(0, 0)


def _background_job() -> None:
    # What `profila ... &` in a script gets: SIGINT ignored from the start.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.setpgid(0, 0)


@contextlib.contextmanager
def launched(
    *args: str,
    tmp_path: Path,
    options: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    sigint_ignored: bool = False,
) -> Iterator[Launched]:
    """profila annotate ARGS started in a new process group; everything it started is killed
    on the way out, whatever the test did."""
    if not have_gdb():
        pytest.skip("gdb is not installed")
    out = tmp_path / "profile.json"
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    argv = [sys.executable, "-m", "profila", "annotate", "--no-color", "-o", str(out)]
    with stdout.open("wb") as o, stderr.open("wb") as e:
        proc = subprocess.Popen(
            [*argv, *options, "--", *args],
            stdin=subprocess.DEVNULL,
            stdout=o,
            stderr=e,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            preexec_fn=_background_job if sigint_ignored else _foreground_job,
        )
    run = Launched(proc, out, stdout, stderr)
    seen: set[int] = set()
    try:
        yield run
    finally:
        seen.update(run.extra)
        seen.update(descendants(proc.pid))
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        for pid in seen:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
