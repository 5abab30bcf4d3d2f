"""Runs inside gdb's embedded Python (gdb -nx -batch -x THIS). Not imported by profila.

gdb hosts the target: it attaches to the forked, waiting child (which proves the target can be
traced and is not traced by anyone else). Unless asked to sample through stops (below), it then
detaches again before the child execs, and quits: perf_event_open samples without stops, and a
traced process is not quite the process the user runs (every signal, even an ignored one, stops
it for the tracer, which can cut a blocking write to a full pipe short: measured with a 1 MB
line under `python -u` and SIGWINCH). When sampling through stops, gdb stays attached, passes
every signal through untouched, asks for no stops but its own ticks (no catchpoints: a syscall
catchpoint would trap every system call), and holds the target at its final exit_group to
flush the last samples.

Protocol on gdb's stdout (the target's own output never goes there: the target inherited the
user's stdin/stdout/stderr from profila, not gdb's):
    @@profila attached            attached; when sampling, running with signals passed through;
                                  otherwise already detached again (gdb then quits)
    @@profila exiting             (sampling through stops only) the target is stopped at
                                  exit_group; waiting for one byte on
                                  the ack fd (EOF counts: a dead controller never blocks exit)
    @@profila error <message>     attaching (or setting up sampling) failed

Sampling through stops (the fallback when perf_event_open is forbidden)
    Asked for with PROFILA_SAMPLE_FD (write end of a pipe the controller reads) and
    PROFILA_SAMPLE_RATE (Hz); optional PROFILA_SAMPLE_STACK (bytes of stack copied per thread,
    default 16384), PROFILA_SAMPLE_SIGNAL (default 62) and PROFILA_SAMPLE_START (``exec``, the
    default: from the target's next execve, like perf's enable_on_exec; ``attach``: at once).

    A timer thread in this Python sends the sampling signal with tgkill to one target thread,
    period x U(0.9, 1.1) after each resume (so time spent stopped does not count, and sampling
    cannot alias with the program's loops), while the main thread sits in ``continue`` (gdb
    releases the Python lock meanwhile). A silent ``catch signal`` catchpoint makes continue
    return; the signal is ``nopass``, so the target never sees it. In all-stop mode every thread
    is stopped by then. For each thread the main thread reads the registers with
    PTRACE_GETREGS (gdb's main thread is the tracer) and the top of its stack with pread on
    /proc/PID/mem, writes one binary record per thread (see ``RECORD``) to the pipe, and
    continues. No gdb frames, no backtraces, no symbol look-ups.

    Why signal 62 (SIGRTMAX-2): glibc reserves 32 and 33, libraries that take a real-time
    signal usually count up from SIGRTMIN, and the very top (SIGRTMAX) is the one most often
    picked "from the top". The stop's siginfo tells our tgkill (si_code SI_TKILL, si_pid = gdb)
    from a signal 62 the target sends itself, which is delivered to it unchanged.

    Syscalls: a thread blocked in a syscall when the target is stopped is interrupted; as gdb
    passes no signal on, the kernel restarts the call (nanosleep/clock_nanosleep with the
    remaining time, read/futex/poll transparently). The calls Linux never restarts after a stop
    (epoll_wait, sigtimedwait, semop, ...: see signal(7)) return EINTR, as under any
    ptrace-based tool, including gdb's own stops; Python retries them (PEP 475).

    A thread whose registers show it inside an interrupted syscall (orig_rax >= 0 and rax one of
    the kernel's restart codes or -EINTR) is idle at that tick; otherwise it was running (or
    runnable) and its registers and stack are sent.

    A tick signal can still be in flight when the target stops for another reason (exit_group).
    Before detaching, such a signal (default action: terminate) is flushed by resuming just the
    thread that has it pending (scheduler-locking) into the catchpoint, so it never reaches the
    target after gdb has gone. (PROFILA_SAMPLE_TEST_PENDING_AT_EXIT=1 makes that race certain,
    for the tests.) EOF on the ack fd while the target runs (the controller stopped waiting or
    died) makes gdb stop at once, flush the same way and detach; the target runs on untraced.
    Were gdb killed instead, a tick in flight could still reach the target: GdbHost.close gives
    a sampling gdb a few seconds to leave by itself.

    If no stop follows a tick (the signalled thread cannot take it, e.g. an exited main thread
    left as a zombie), the timer re-sends to the next thread after max(0.2 s, 20 periods).
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable
from typing import Any

Syscall = Callable[..., int]  # libc's syscall(2) through ctypes

PASS_SIGNALS = ("all", "SIGINT")
EXIT_GROUP = 231  # x86-64 syscall numbers
EXECVE = 59
EXECVEAT = 322

# --- sample records (parsed by profila.sampling.gdbstop; keep both in step) ------------------
# magic u16, kind u8, flags u8, tid u32, count u32, stack length u32, time_ns u64,
# then a, b, c u64: ip, sp, bp for SAMPLE/IDLE/LOST; for STOP: tgkill-to-stop ns, handling ns, 0.
# A SAMPLE record is followed by its stack bytes.
RECORD = struct.Struct("<HBBIIIQQQQ")
MAGIC = 0x7067
KIND_SAMPLE = 1  # the thread was running: registers and stack
KIND_IDLE = 2  # the thread was blocked in a syscall
KIND_LOST = 3  # ``count`` thread samples could not be taken or sent
KIND_STOP = 4  # one per tick, after its thread records: timing of the stop
DEFAULT_SIGNAL = 62
DEFAULT_STACK = 16384
MAX_BACKLOG = 8 << 20  # bytes waiting for the controller; beyond it ticks are counted lost

# user_regs_struct (x86-64), in u64 slots
REGS_SLOTS = 27
R_RBP, R_RAX, R_ORIG_RAX, R_RIP, R_RSP = 4, 10, 15, 16, 19
# Kernel return values of a syscall interrupted by a signal (include/linux/errno.h):
# ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK, and EINTR itself.
INTERRUPTED = frozenset((-512, -513, -514, -516, -4))
PTRACE_GETREGS = 12
PTRACE_GETSIGINFO = 0x4202
SI_TKILL = -6
NR_PTRACE = 101
NR_TGKILL = 234


def pack_sample(tid: int, time_ns: int, ip: int, sp: int, bp: int, stack: bytes) -> bytes:
    return RECORD.pack(MAGIC, KIND_SAMPLE, 0, tid, 1, len(stack), time_ns, ip, sp, bp) + stack


def pack_idle(tid: int, time_ns: int, ip: int, sp: int, bp: int) -> bytes:
    return RECORD.pack(MAGIC, KIND_IDLE, 0, tid, 1, 0, time_ns, ip, sp, bp)


def pack_lost(tid: int, time_ns: int, count: int) -> bytes:
    return RECORD.pack(MAGIC, KIND_LOST, 0, tid, count, 0, time_ns, 0, 0, 0)


def pack_stop(time_ns: int, threads: int, signal_to_stop_ns: int, handling_ns: int) -> bytes:
    return RECORD.pack(
        MAGIC, KIND_STOP, 0, 0, threads, 0, time_ns, signal_to_stop_ns, handling_ns, 0
    )


def is_idle(orig_rax: int, rax: int) -> bool:
    """Registers of a stopped thread -> was it blocked in a syscall? (values as unsigned u64)"""
    if orig_rax >= 1 << 63:  # -1: not in a syscall
        return False
    return (rax - (1 << 64) if rax >= 1 << 63 else rax) in INTERRUPTED


def say(line: str) -> None:
    os.write(1, f"@@profila {line}\n".encode())


def run(command: str) -> str:
    return str(gdb.execute(command, to_string=True))


def main() -> None:
    pid = int(os.environ["PROFILA_TARGET_PID"])
    ack_fd = int(os.environ["PROFILA_ACK_FD"])
    sampling = None
    if "PROFILA_SAMPLE_FD" in os.environ:
        sampling = Sampling.from_environment(pid, ack_fd)
    for setting in (
        "set pagination off",
        "set confirm off",
        "set width 0",
        "set auto-load off",  # no python-gdb.py or other scripts from the target's files
        "set auto-solib-add off",  # read no library symbols: we symbolise in the controller
        "set detach-on-fork on",
        "set follow-fork-mode parent",
    ):
        run(setting)
    try:
        run(f"attach {pid}")
    except gdb.error as exc:
        say("error " + " ".join(str(exc).split()))
        return
    if sampling is None:
        # The child still waits before its exec: detached now, it execs and runs untraced.
        try:
            run("detach")
        except gdb.error as exc:
            say("error " + " ".join(str(exc).split()))
            return
        say("attached")
        return
    # Sampling through stops must hold the target at exit to flush a tick in flight. That is
    # the only catchpoint: any `catch syscall` makes every system call of the target trap into
    # gdb (measured: os.stat 522k/s plainly, 6k/s with the catchpoint; +1.7 s to import
    # numba). The controller refreshes the JIT objects as it goes instead.
    run("catch syscall exit_group")
    # gdb's defaults stop on SIGINT and swallow it, and stop on SIGPIPE and others; profila must
    # change nothing about how the target sees signals. "all" is every signal but SIGTRAP
    # (gdb's own) and SIGINT, which gets its own line.
    for signals in PASS_SIGNALS:
        run(f"handle {signals} nostop noprint pass")
    try:
        sampling.install()
    except (gdb.error, OSError) as exc:
        say("error cannot sample through gdb: " + " ".join(str(exc).split()))
        with contextlib.suppress(gdb.error):
            run("detach")
        return
    say("attached")
    sampling.host()


class Ticker:
    """The timer thread: one tgkill per resume, period x U(0.9, 1.1) after it."""

    def __init__(self, pid: int, period_s: float, signo: int, syscall: Syscall) -> None:
        import random
        import threading

        self.pid = pid
        self.period_s = period_s
        self.signo = signo
        self._syscall = syscall
        self._rng = random.Random()
        self._cond = threading.Condition()
        self._armed = False
        self._generation = 0
        self._resumed_at = 0.0
        self._quit = False
        self.enabled = False
        self.tid = pid  # which thread gets the next signal
        self.sent_ns = 0
        self.detach_requested = False
        self._thread = threading.Thread(target=self._run, name="profila-ticker", daemon=True)
        self._thread.start()

    def arm(self) -> None:
        """Main thread, just before resuming the target."""
        import time

        with self._cond:
            self._generation += 1
            self._armed = self.enabled or self.detach_requested
            self._resumed_at = time.monotonic()
            self.sent_ns = 0
            self._cond.notify()

    def disarm(self) -> int:
        """Main thread, once the target has stopped: no signal after this. Returns the time the
        signal of this resume was sent (monotonic ns), or 0."""
        with self._cond:
            self._armed = False
            sent, self.sent_ns = self.sent_ns, 0
            self._cond.notify()  # ends the watchdog's wait
            return sent

    def request_detach(self) -> None:
        """The controller is gone: make the main thread stop and detach soon."""
        with self._cond:
            self.detach_requested = True
            if self._armed:
                self._send()
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._quit = True
            self._armed = False
            self._cond.notify()
        self._thread.join(5)

    def _run(self) -> None:
        import time

        cond = self._cond
        with cond:
            while not self._quit:
                if not self._armed:
                    cond.wait()
                    continue
                generation = self._generation
                deadline = self._resumed_at + self.period_s * self._rng.uniform(0.9, 1.1)
                if self.detach_requested:
                    deadline = 0.0
                while self._armed and generation == self._generation and not self._quit:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._send()
                        break
                    cond.wait(left)
                # Watchdog: a thread that cannot take the signal (a zombie leader, say) would
                # stop sampling for good. If no stop comes, try the next thread.
                retry = max(0.2, 20 * self.period_s)
                while self.sent_ns and generation == self._generation and not self._quit:
                    if (
                        not cond.wait(retry)
                        and self.sent_ns
                        and generation == self._generation
                        and not self._quit
                    ):
                        self.tid = self._other_tid()
                        self._send()

    def _other_tid(self) -> int:
        try:
            tids = sorted(int(name) for name in os.listdir(f"/proc/{self.pid}/task"))
        except (OSError, ValueError):
            return self.pid
        later = [tid for tid in tids if tid > self.tid]
        return (later or tids or [self.pid])[0]

    def _send(self) -> None:
        """With the lock held. One signal per resume."""
        import time

        self._armed = False
        self.sent_ns = time.monotonic_ns()
        if self._syscall(NR_TGKILL, self.pid, self.tid, self.signo) == 0:
            return
        # The chosen thread has exited: any other thread will do.
        with contextlib.suppress(OSError):
            for name in os.listdir(f"/proc/{self.pid}/task"):
                self.tid = int(name)
                if self._syscall(NR_TGKILL, self.pid, self.tid, self.signo) == 0:
                    return
        self.sent_ns = 0


class AckWatch:
    """Reads the ack fd in a thread: one byte releases the target held at exit_group; EOF means
    the controller is gone (or has stopped waiting), and gdb detaches at the next stop."""

    def __init__(self, ack_fd: int, ticker: Ticker) -> None:
        import threading

        self.released = threading.Event()
        self.controller_gone = False
        self._fd = ack_fd
        self._ticker = ticker
        threading.Thread(target=self._run, name="profila-ack", daemon=True).start()

    def _run(self) -> None:
        try:
            got = os.read(self._fd, 1)
        except OSError:
            got = b""
        if not got:
            self.controller_gone = True
            self._ticker.request_detach()
        self.released.set()


class Sampling:
    def __init__(
        self,
        pid: int,
        ack_fd: int,
        fd: int,
        rate_hz: float,
        stack_bytes: int,
        signo: int,
        start_on_exec: bool,
    ) -> None:
        import ctypes
        import signal

        self.pid = pid
        self.ack_fd = ack_fd
        self.fd = fd
        self.rate_hz = rate_hz
        self.stack_bytes = stack_bytes
        self.signo = signo
        self.start_on_exec = start_on_exec
        self.signame = f"SIG{signo}"
        self.mem_fd = -1
        self.backlog = bytearray()
        self.output_open = True
        self.lost_pending = 0
        libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long
        self._regs = (ctypes.c_uint64 * REGS_SLOTS)()
        self._regs_ref = ctypes.byref(self._regs)
        self._siginfo = (ctypes.c_int32 * 32)()
        self._siginfo_ref = ctypes.byref(self._siginfo)
        self.gdb_pid = os.getpid()
        # A controller that has closed the pipe must not kill gdb (and so abandon the target
        # with a tick signal possibly in flight): get EPIPE instead.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        os.set_blocking(fd, False)
        self.ticker = Ticker(pid, 1.0 / rate_hz, signo, self._syscall)
        self.ack: AckWatch | None = None

    @classmethod
    def from_environment(cls, pid: int, ack_fd: int) -> Sampling:
        env = os.environ
        rate = float(env["PROFILA_SAMPLE_RATE"])
        if not rate > 0:
            raise ValueError(f"PROFILA_SAMPLE_RATE must be positive, not {rate!r}")
        return cls(
            pid,
            ack_fd,
            int(env["PROFILA_SAMPLE_FD"]),
            rate,
            int(env.get("PROFILA_SAMPLE_STACK", DEFAULT_STACK)),
            int(env.get("PROFILA_SAMPLE_SIGNAL", DEFAULT_SIGNAL)),
            env.get("PROFILA_SAMPLE_START", "exec") == "exec",
        )

    def install(self) -> None:
        run(f"catch signal {self.signame}")
        run("commands\nsilent\nend")  # a silent stop prints nothing and builds no frames
        run(f"handle {self.signame} nostop noprint nopass")
        if self.start_on_exec:
            run("catch exec")
            run("commands\nsilent\nend")
        else:
            self._start()

    def _start(self) -> None:
        if self.mem_fd >= 0:
            os.close(self.mem_fd)
        self.mem_fd = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        self.ticker.enabled = True

    # -- the loop ------------------------------------------------------------------------------

    def host(self) -> None:
        import time

        ticker = self.ticker
        self.ack = AckWatch(self.ack_fd, ticker)
        resume = "continue"
        try:
            while True:
                ticker.arm()
                try:
                    run(resume)
                except gdb.error:
                    return  # the target is gone
                stopped_ns = time.monotonic_ns()
                sent_ns = ticker.disarm()
                resume = "continue"
                inferior = gdb.selected_inferior()
                if inferior is None or inferior.pid == 0:
                    return
                lwp = gdb.selected_thread().ptid[1]
                signo, code, sender = self._siginfo_of(lwp)
                if signo == self.signo:
                    if code == SI_TKILL and sender == self.gdb_pid:
                        if ticker.detach_requested:
                            self._detach(lwp)
                            return
                        self._take(inferior, stopped_ns, sent_ns)
                        continue
                    resume = f"signal {self.signame}"  # the target's own: deliver it
                    continue
                orig_rax = self._orig_rax(lwp)
                if orig_rax == EXIT_GROUP:
                    self._exit(lwp)
                    return
                if orig_rax in (EXECVE, EXECVEAT):
                    self._start()
                    continue
                if ticker.detach_requested:
                    self._detach(lwp)
                    return
        finally:
            ticker.stop()
            self._flush(block=True)

    def _siginfo_of(self, lwp: int) -> tuple[int, int, int]:
        info = self._siginfo
        if self._syscall(NR_PTRACE, PTRACE_GETSIGINFO, lwp, 0, self._siginfo_ref) != 0:
            return 0, 0, 0
        return info[0], info[2], info[4]  # si_signo, si_code, si_pid

    def _orig_rax(self, lwp: int) -> int:
        if self._syscall(NR_PTRACE, PTRACE_GETREGS, lwp, 0, self._regs_ref) != 0:
            return -1
        return self._regs[R_ORIG_RAX]

    def _take(self, inferior: Any, stopped_ns: int, sent_ns: int) -> None:
        """One tick: a record per thread, then a STOP record; never blocks on the pipe."""
        import time

        regs = self._regs
        regs_ref = self._regs_ref
        syscall = self._syscall
        mem_fd = self.mem_fd
        stack_bytes = self.stack_bytes
        parts = []
        running = []
        threads = inferior.threads()
        for thread in threads:
            tid = thread.ptid[1]
            if syscall(NR_PTRACE, PTRACE_GETREGS, tid, 0, regs_ref) != 0:
                parts.append(pack_lost(tid, stopped_ns, 1))
                continue
            ip, sp, bp = regs[R_RIP], regs[R_RSP], regs[R_RBP]
            if is_idle(regs[R_ORIG_RAX], regs[R_RAX]):
                parts.append(pack_idle(tid, stopped_ns, ip, sp, bp))
                continue
            try:
                stack = os.pread(mem_fd, stack_bytes, sp) if stack_bytes else b""
            except OSError:
                stack = b""  # sp points at nothing readable: the symboliser judges the pc
            parts.append(pack_sample(tid, stopped_ns, ip, sp, bp, stack))
            running.append(tid)
        # Signal a running thread next time (it is stopped in user code, not in a syscall).
        if running:
            self.ticker.tid = self.pid if self.pid in running else running[0]
        latency = stopped_ns - sent_ns if sent_ns else 0
        handling = time.monotonic_ns() - stopped_ns
        parts.append(pack_stop(stopped_ns, len(threads), latency, handling))
        self._emit(b"".join(parts), len(threads), stopped_ns)

    def _emit(self, data: bytes, samples: int, time_ns: int) -> None:
        if not self.output_open:
            return
        if self.lost_pending and len(self.backlog) < MAX_BACKLOG:
            self.backlog += pack_lost(0, time_ns, self.lost_pending)
            self.lost_pending = 0
        if len(self.backlog) + len(data) > MAX_BACKLOG:
            self.lost_pending += samples  # the controller is not keeping up
        else:
            self.backlog += data
        self._flush(block=False)

    def _flush(self, block: bool) -> None:
        if not self.output_open:
            return
        if block:
            if self.lost_pending:
                self.backlog += pack_lost(0, 0, self.lost_pending)
                self.lost_pending = 0
            os.set_blocking(self.fd, True)
        view = memoryview(self.backlog)
        done = 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except BlockingIOError:
            pass
        except OSError:
            self.output_open = False  # the controller has closed its end: stop writing
        finally:
            view.release()
            del self.backlog[:done]
            if block:
                with contextlib.suppress(OSError):
                    os.set_blocking(self.fd, False)

    # -- leaving -------------------------------------------------------------------------------

    def _exit(self, lwp: int) -> None:
        """Held at exit_group: send what is buffered, say so, wait for the ack, detach."""
        self.ticker.stop()
        if os.environ.get("PROFILA_SAMPLE_TEST_PENDING_AT_EXIT"):
            # Tests only: the race this guards against, made certain. A tick signal queued on
            # a stopped thread that is not the exiting one must not kill the target later.
            for thread in gdb.selected_inferior().threads():
                if thread.ptid[1] != lwp:
                    self._syscall(NR_TGKILL, self.pid, thread.ptid[1], self.signo)
        self._flush(block=True)
        say("exiting")
        if self.ack is not None:
            self.ack.released.wait()
        self._detach(lwp)

    def _detach(self, event_lwp: int) -> None:
        self.ticker.stop()
        self._flush_pending_signals(event_lwp)
        with contextlib.suppress(gdb.error):
            run("detach")

    def _pending_ours(self, tid: int) -> bool:
        bit = 1 << (self.signo - 1)
        try:
            with open(f"/proc/{self.pid}/task/{tid}/status", "rb") as f:
                for line in f:
                    if line.startswith((b"SigPnd:", b"ShdPnd:")) and int(line.split()[1], 16) & bit:
                        return True
        except (OSError, ValueError):
            pass
        return False

    def _flush_pending_signals(self, event_lwp: int) -> None:
        """A tick signal sent just as the target stopped for another reason is still queued in
        the kernel; after detach its default action would kill the target. Let each thread that
        has one take it, alone, into the (nopass) catchpoint. The thread held in exit_group is
        left alone: it never returns to user space, so nothing is delivered to it."""
        inferior = gdb.selected_inferior()
        if inferior is None or inferior.pid == 0:
            return
        for _attempt in range(3):
            pending = [
                t
                for t in inferior.threads()
                if t.ptid[1] != event_lwp and self._pending_ours(t.ptid[1])
            ]
            if not pending:
                return
            for thread in pending:
                try:
                    thread.switch()
                    run("set scheduler-locking on")
                    run("continue")
                except gdb.error:
                    pass
                finally:
                    with contextlib.suppress(gdb.error):
                        run("set scheduler-locking off")
            event = [t for t in inferior.threads() if t.ptid[1] == event_lwp]
            if event:
                event[0].switch()


if __name__ == "__main__":
    import gdb

    main()
