"""The target process: forked by profila and held before exec until it is safe to run.

profila is the target's real parent, so the target inherits the user's stdin, stdout, stderr,
process group and terminal exactly as a plain ``python script.py`` would, and its exit status
comes straight from waitpid. It waits (blocked in read) before exec so that gdb can attach and
sampling can be armed before the first instruction of the target program runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass

from profila.errors import ProfilaError


@dataclass(frozen=True, slots=True)
class ExitStatus:
    code: int | None  # exit code, when the target exited
    signal: int | None  # the signal that killed it, otherwise

    @property
    def shell_code(self) -> int:
        """What a shell reports: the exit code, or 128+N for a death by signal N."""
        if self.code is not None:
            return self.code
        return 128 + (self.signal or 0)


class HeldTarget:
    """A forked child that will exec ``argv`` with ``env`` once released."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        go_read, self._go_write = os.pipe()
        failed_read, failed_write = os.pipe()  # close-on-exec: EOF on it means exec happened
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - runs in the child, which then execs
            _child(go_read, (self._go_write, failed_read), failed_write, argv, env)
        os.close(go_read)
        os.close(failed_write)
        self._failed_read = failed_read
        self.status: ExitStatus | None = None
        # Kernel (system) CPU time of all the target's threads, known once it has been reaped.
        self.system_time_s = 0.0

    def release(self) -> None:
        """Let the child exec the target; raise if the exec failed."""
        # The child may already be gone (Ctrl-C before the start): its status says how.
        with contextlib.suppress(BrokenPipeError):
            os.write(self._go_write, b"g")
        os.close(self._go_write)
        with os.fdopen(self._failed_read, "rb") as failed:
            message = failed.read()
        if message:
            self.wait()
            raise ProfilaError(f"could not start the target: {message.decode(errors='replace')}")

    def abandon(self, timeout: float = 5.0) -> None:
        """The target must not run after all: end the waiting child (it never ran user code).

        Killed, not asked: a child held by another tracer (the reason gdb could not attach)
        would never read the pipe. Its status comes after that tracer's, so the wait is
        bounded; a child not reaped by then is left to init when profila exits."""
        with contextlib.suppress(OSError):
            os.close(self._go_write)
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)

    def poll(self) -> ExitStatus | None:
        if self.status is None:
            pid, raw, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.status = _decode(raw)
                self.system_time_s = usage.ru_stime
        return self.status

    def wait(self) -> ExitStatus:
        while self.status is None:
            try:
                _, raw, usage = os.wait4(self.pid, 0)
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            self.status = _decode(raw)
            self.system_time_s = usage.ru_stime
        return self.status


def _decode(raw: int) -> ExitStatus:
    if os.WIFSIGNALED(raw):
        return ExitStatus(None, os.WTERMSIG(raw))
    return ExitStatus(os.WEXITSTATUS(raw), None)


def _child(
    go_read: int,
    parent_ends: tuple[int, int],
    failed_write: int,
    argv: list[str],
    env: dict[str, str],
) -> None:
    try:
        for fd in parent_ends:  # so that a dead parent means EOF on go_read
            os.close(fd)
        # Python ignores SIGPIPE and SIGXFSZ for itself; a plain run of the target would not.
        for signum in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)
        # profila's Python handler for Ctrl-C would raise in here; exec would reset it to the
        # default anyway (an ignored SIGINT stays ignored, as in a plain run).
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        if os.read(go_read, 1) != b"g":
            os._exit(126)  # profila gave up before starting the target
        os.close(go_read)
        os.execve(argv[0], argv, env)
    except BaseException as exc:  # noqa: BLE001 - anything here must end the child
        try:
            os.write(failed_write, f"{argv[0]}: {exc}".encode())
        finally:
            os._exit(127)
