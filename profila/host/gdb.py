"""Starting gdb as the target's host and talking to it (see gdb_side.py for the other end).

gdb runs in its own session with no terminal, no init files (-nx) and no shell; its output is a
pipe that only profila reads. The target never shares a file descriptor with gdb.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from profila.errors import EnvironmentProblem, ProfilaError
from profila.host.probe import check_executable, gdb_timeout, probe_python

GDB_SIDE = Path(__file__).with_name("gdb_side.py")
MARK = "@@profila "
# With sampling on, gdb needs a moment to stop ticking and flush a tick signal still in flight
# before it detaches (killing it instead could leave that signal to kill the target).
SAMPLING_DETACH_GRACE_S = 3.0
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class GdbSampling:
    """Ask gdb to sample the target through stops (see gdb_side.py, "Sampling through stops").

    ``fd`` is the write end of the pipe the records go to; GdbHost hands it to gdb and closes
    the controller's copy (ownership passes to GdbHost, even when starting gdb fails)."""

    fd: int
    rate_hz: float
    stack_bytes: int
    signal: int
    start_on_exec: bool = True
    test_pending_at_exit: bool = False  # tests only: force the exit race gdb_side must survive

    def environment(self) -> dict[str, str]:
        env = {
            "PROFILA_SAMPLE_FD": str(self.fd),
            "PROFILA_SAMPLE_RATE": repr(float(self.rate_hz)),
            "PROFILA_SAMPLE_STACK": str(self.stack_bytes),
            "PROFILA_SAMPLE_SIGNAL": str(self.signal),
            "PROFILA_SAMPLE_START": "exec" if self.start_on_exec else "attach",
        }
        if self.test_pending_at_exit:
            env["PROFILA_SAMPLE_TEST_PENDING_AT_EXIT"] = "1"
        return env


def find_gdb(requested: str | None = None) -> str:
    """The gdb to use: ``requested``, $PROFILA_GDB, or gdb on PATH. Checks it runs Python."""
    name = requested or os.environ.get("PROFILA_GDB") or "gdb"
    if os.sep in name:
        check_executable(name)
    path = shutil.which(name)
    if path is None:
        raise EnvironmentProblem(
            f"gdb not found ({name!r}): install it (e.g. `apt-get install gdb`) "
            "or point --gdb / PROFILA_GDB at it"
        )
    probe_python(path)
    return path


class GdbHost:
    """gdb attached to the held target. With ``sampling`` it stays attached and reports when the
    target reaches exit_group; without, it detaches before the target execs, and quits.

    With ``sampling``, gdb also samples the target through stops and writes the records to
    ``sampling.fd`` (read them with profila.sampling.gdbstop.GdbStopSampler)."""

    def __init__(self, gdb_path: str, pid: int, sampling: GdbSampling | None = None) -> None:
        self._pid = pid
        ack_read, self._ack_write = os.pipe()
        env = dict(os.environ, PROFILA_TARGET_PID=str(pid), PROFILA_ACK_FD=str(ack_read))
        env.pop("PYTHONPATH", None)  # gdb's embedded Python is not the target's Python
        env.pop("PYTHONHOME", None)
        for name in [k for k in env if k.startswith("PROFILA_SAMPLE_")]:
            del env[name]  # only an explicit request turns sampling on
        pass_fds = [ack_read]
        if sampling is not None:
            env.update(sampling.environment())
            pass_fds.append(sampling.fd)
        self.sampling = sampling
        try:
            self._proc = subprocess.Popen(
                [gdb_path, "-nx", "-q", "-batch", "-x", str(GDB_SIDE)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=pass_fds,
                env=env,
                start_new_session=True,  # the terminal's Ctrl-C is for the target, not for gdb
                # A sampling gdb already detaches when the ack fd reports the controller gone;
                # an attach-only gdb (perf) never reads it: should profila die while it is
                # attaching, it gets SIGTERM (it detaches and quits).
                preexec_fn=_quit_with_parent(os.getpid()) if sampling is None else None,
            )
        except BaseException:
            os.close(self._ack_write)
            raise
        finally:
            os.close(ack_read)
            if sampling is not None:
                os.close(sampling.fd)  # gdb holds the write end now: EOF when gdb is gone
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._log: list[str] = []  # gdb's own output, kept for error messages
        threading.Thread(target=self._read_output, name="profila-gdb-output", daemon=True).start()
        self.exiting = False
        self._closed = False

    def _read_output(self) -> None:
        assert self._proc.stdout is not None
        # Lines are bounded: a broken gdb printing without newlines cannot fill memory.
        while raw := self._proc.stdout.readline(65536):
            self._lines.put(raw.decode(errors="replace").rstrip("\n"))
        self._lines.put(None)

    def _next_mark(self, timeout: float) -> str | None:
        """The next protocol line from gdb, or None on timeout or when gdb has gone."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0:
                    line = self._lines.get(timeout=remaining)
                else:
                    line = self._lines.get_nowait()
            except queue.Empty:
                return None
            if line is None:
                self._lines.put(None)  # stay at end-of-output for later callers
                return None
            if line.startswith(MARK):
                return line[len(MARK) :]
            self._log.append(line)
            del self._log[:-50]

    def wait_attached(self, timeout: float | None = None) -> None:
        wait_s = gdb_timeout() if timeout is None else timeout
        mark = self._next_mark(wait_s)
        if mark == "attached":
            return
        detail = mark[len("error ") :] if mark and mark.startswith("error ") else None
        if detail is None and self._proc.poll() is None:
            detail = f"no answer from gdb within {wait_s:g} s (PROFILA_GDB_TIMEOUT)"
            if self._log:
                detail += "; it printed: " + " ".join(self._log[-3:])
        detail = detail or " ".join(self._log[-3:]) or "no answer from gdb"
        tracer = other_tracer(self._pid, self._proc.pid)
        if tracer is not None:
            raise EnvironmentProblem(
                f"the target is already traced by {tracer}: another debugger or profiler is "
                "attached; stop it, or run profila without it"
            )
        raise attach_error(detail)

    def poll_exiting(self) -> bool:
        """True once the target is held at its exit_group (call release_exit() after)."""
        if not self.exiting and self._next_mark(0) == "exiting":
            self.exiting = True
        return self.exiting

    def release_exit(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._ack_write, b"k")

    @property
    def returncode(self) -> int | None:
        """gdb's exit status once it has ended (negative: killed by that signal)."""
        return self._proc.poll()

    def close(self, timeout: float = 10.0) -> None:
        """Let gdb finish (it detaches); kill it if it does not. Never leaves it running.

        EOF on the ack fd lets a gdb waiting at exit_group detach; a sampling gdb detaches on it
        at its next tick even while the target runs, and gets at least a short grace to do so."""
        if self._closed:
            return  # closed already (with perf, right after attaching: gdb has detached)
        self._closed = True
        with contextlib.suppress(OSError):
            os.close(self._ack_write)
        if self.sampling is not None:
            timeout = max(timeout, SAMPLING_DETACH_GRACE_S)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # On SIGTERM gdb detaches from the target and quits; failing that, the kernel
            # detaches a dead tracer's tracees and they run on.
            self._proc.terminate()
            try:
                self._proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def _quit_with_parent(parent: int) -> Callable[[], None]:
    """For the gdb child, before exec: SIGTERM when profila dies (even by SIGKILL), so that gdb
    detaches instead of staying attached to the target until it ends."""
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: after fork, only the call

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # profila died before the prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def other_tracer(pid: int, ours: int) -> str | None:
    """'PID N (name)' of a tracer of ``pid`` other than gdb ``ours``, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        tracer = int(fields["TracerPid"])
    except (OSError, KeyError, ValueError):
        return None
    if tracer in (0, ours):
        return None
    try:
        with open(f"/proc/{tracer}/comm") as f:
            name = f.read().strip()
    except OSError:
        name = "?"
    return f"PID {tracer} ({name})"


def attach_error(detail: str) -> ProfilaError:
    detail = " ".join(detail.split())  # one line, whatever gdb printed
    if len(detail) > 300:
        detail = detail[:300] + "..."
    if re.search(r"Operation not permitted|ptrace", detail):
        return EnvironmentProblem(
            "gdb may not attach to the target (ptrace not permitted: "
            f"{detail}); set /proc/sys/kernel/yama/ptrace_scope to 0 or 1, or in a container "
            "add the SYS_PTRACE capability (docker run --cap-add=SYS_PTRACE)"
        )
    return EnvironmentProblem(f"gdb could not host the target: {detail}")
