"""What profila does with Ctrl-C, SIGTERM and SIGHUP while the target runs.

profila stands between the user and their program, so it behaves as if it were not there:

* Ctrl-C: the terminal sends SIGINT to the whole foreground process group, which the target is
  part of, so the target already has it. profila only keeps waiting for the target to end, then
  reports what it sampled. A second Ctrl-C makes profila stop waiting: it reports, detaches a
  sampling gdb and leaves the target running untraced, as a shell would leave a program that
  ignores Ctrl-C (it never kills it).
* SIGHUP (the terminal closed) is treated like Ctrl-C, as the shell passed it to the whole job;
  when profila is itself the session leader the kernel told it alone, and it passes it on.
* SIGTERM sent to profila (``kill PID``, ``timeout``, a container stopping): the target would
  have received it without profila, so profila passes it on to the target and, as for Ctrl-C,
  waits for it to end and reports. A second SIGTERM is passed on too and stops the waiting.

The handlers only count and forward: the run loop polls :attr:`Interrupts.stop_waiting`, so no
exception can land in the middle of reading samples.
"""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType
from typing import Any

from profila.host.target import HeldTarget

# SIGHUP: the terminal went away; profila still owes the -o profile. A shell passes SIGHUP to
# its whole job, so the target has it already; when profila leads the session itself (`ssh -t
# host profila ...` execs it), the kernel sends it to profila alone and profila passes it on,
# as the target would have got it in profila's place.
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupts:
    """Installed for the time the target runs; :meth:`restore` puts the previous handlers back."""

    def __init__(self, target: HeldTarget) -> None:
        self.target = target
        self.count = 0
        self.last_signal: int | None = None
        self._previous: dict[int, Any] = {}
        self.forwarded = {signal.SIGTERM}
        if os.getsid(0) == os.getpid():
            self.forwarded.add(signal.SIGHUP)
        for signum in HANDLED:
            # Ignored when profila started (a background job of a script, say): it stays so,
            # for profila as for the target, which inherited that from it.
            if signal.getsignal(signum) is not signal.SIG_IGN:
                self._previous[signum] = signal.signal(signum, self._handle)

    @property
    def stop_waiting(self) -> bool:
        """True after the second Ctrl-C, SIGTERM or SIGHUP (in any mix)."""
        return self.count >= 2

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.last_signal = signum
        # Only while the target is not reaped: until then its pid cannot be reused.
        if signum in self.forwarded and self.target.status is None:
            with contextlib.suppress(OSError):
                os.kill(self.target.pid, signum)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


__all__ = ["Interrupts"]
