"""Checking that a gdb is usable before anything runs, without trusting it to behave.

A broken "gdb" may hang, or print without end: the probe gives it a deadline
(``PROFILA_GDB_TIMEOUT`` seconds, default 30, also used for gdb's attach handshake), keeps only
the start of what it prints, and always leaves it dead.
"""

from __future__ import annotations

import os
import select
import subprocess
import time

from profila.errors import EnvironmentProblem, UsageError

TIMEOUT_VARIABLE = "PROFILA_GDB_TIMEOUT"
DEFAULT_TIMEOUT_S = 30.0
KEEP_BYTES = 64 << 10
PYTHON_OK = b"profila-python-ok"


def gdb_timeout() -> float:
    """Seconds to wait for gdb to answer (the probe, the attach handshake)."""
    raw = os.environ.get(TIMEOUT_VARIABLE, "")
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < 3600:
        raise UsageError(f"{TIMEOUT_VARIABLE}={raw!r}: give seconds between 0 and 3600")
    return value


def check_executable(path: str) -> None:
    """A path given explicitly that exists but cannot run is its own problem, not 'missing'."""
    if os.path.isdir(path):
        raise EnvironmentProblem(f"gdb path {path} is a directory: give the gdb executable")
    if os.path.exists(path) and not os.access(path, os.X_OK):
        raise EnvironmentProblem(
            f"gdb at {path} is not executable: `chmod +x {path}` or point --gdb at another gdb"
        )


def probe_python(path: str) -> None:
    """Run ``gdb -nx -batch -ex 'python print(...)'``; raise unless it prints the marker."""
    timeout = gdb_timeout()
    argv = [path, "-nx", "-batch", "-ex", f"python print('{PYTHON_OK.decode()}')"]
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise EnvironmentProblem(
            f"gdb at {path} does not start ({exc.strerror}): reinstall gdb or point --gdb at "
            "a working one"
        ) from exc
    output, finished = _read_bounded(proc, timeout)
    if not finished:
        raise EnvironmentProblem(
            f"gdb at {path} gave no answer within {timeout:g} s (it hangs{_printed(output)}): "
            f"check that `{path} -nx -batch` returns, or point --gdb at a working gdb"
        )
    if PYTHON_OK not in output:
        raise EnvironmentProblem(
            f"gdb at {path} cannot run Python scripts{_printed(output)}: install a gdb built "
            "with Python (Debian/Ubuntu: apt-get install gdb)"
        )


def _read_bounded(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, bool]:
    """(the first KEEP_BYTES of its output, whether it ended in time); it is dead after."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    kept = bytearray()
    deadline = time.monotonic() + timeout
    finished = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                finished = True
                break
            if len(kept) < KEEP_BYTES:
                kept += chunk[: KEEP_BYTES - len(kept)]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    return bytes(kept), finished


def _printed(output: bytes) -> str:
    """', it printed '...'' with the first non-blank line, shortened; or nothing."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        return ", printing nothing" if not output else ", printing only blank lines"
    first = lines[0].decode(errors="replace")
    return f", printed {first[:60]!r}" + ("..." if len(first) > 60 else "")
