"""One profiling run: start the target under gdb, sample it until it ends, build the Profile.

The flow is one-way: sampler (RawSample) -> symboliser (Sample) -> aggregator (counts) ->
Profile. Nothing here renders.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

from profila.aggregate import Aggregator
from profila.asm import AsmFunction, build_records
from profila.errors import EnvironmentProblem
from profila.host.gdb import GdbHost
from profila.host.target import ExitStatus, HeldTarget
from profila.interrupts import Interrupts
from profila.model import Profile
from profila.sampling.gdbstop import GdbStopSampler
from profila.sampling.perf import PerfSampler, SamplerUnavailable
from profila.sampling.raw import IdleSpan, LostSamples, RawSample
from profila.symbols.frames import Sample, SampleKind, SourceFrame
from profila.symbols.python_stacks import PythonStacks
from profila.symbols.symboliser import Symboliser
from profila.target import target_environment

POLL_S = 0.02  # how often the controller drains the kernel's sample buffers
# How often the list of JIT objects is re-walked while running (about 12 us when unchanged).
# The symboliser also re-walks it when a sample lands in code it does not know, and samples are
# symbolised within one POLL_S of arriving, while the target's memory is still there.
JIT_REFRESH_S = 0.1


@dataclass(frozen=True)
class RunRequest:
    python_args: list[str]  # what follows `python` on a plain command line
    rate_hz: float
    gdb_path: str
    debuginfo: str = "lines"  # "lines" (shipped machine code), "full" (NUMBA_DEBUGINFO=1), "none"
    sampler: str = "auto"  # "perf", "gdb", or "auto": perf where the kernel allows it

    @property
    def argv(self) -> list[str]:
        return [sys.executable, *self.python_args]


@dataclass(frozen=True)
class RunResult:
    profile: Profile
    status: ExitStatus


def run(request: RunRequest) -> RunResult:
    target = HeldTarget(request.argv, target_environment(os.environ, request.debuginfo))
    gdb, sampler = _host_and_arm(request, target)
    aggregator = Aggregator(request.rate_hz)
    started = time.monotonic()
    interrupts = Interrupts(target)  # Ctrl-C and SIGTERM: see profila/interrupts.py
    symboliser: Symboliser | None = None
    pystacks: PythonStacks | None = None
    try:
        target.release()
        try:
            # Only after exec: /proc/PID/mem opened earlier would still show the forked image.
            symboliser = Symboliser(target.pid)
        except OSError:
            symboliser = None  # the target is already gone; its samples count as bad
        pystacks = _python_stacks(target.pid)
        _sample_until_exit(target, gdb, sampler, symboliser, aggregator, interrupts, pystacks)
        if target.poll() is None:
            print(
                f"profila: stopped waiting for the target (pid {target.pid} keeps running, "
                "no longer traced)",
                file=sys.stderr,
            )
    finally:
        interrupts.restore()
        duration = time.monotonic() - started
        _consume(sampler.read(), symboliser, aggregator, pystacks)
        sampler.close()
        if pystacks is not None:
            pystacks.close()
        asm = _asm_records(symboliser, aggregator)
        if symboliser is not None:
            symboliser.close()
        # A target still running (second Ctrl-C) must not keep profila waiting for gdb.
        gdb.close(timeout=10.0 if target.poll() is not None else 0.0)
    status = target.poll()
    if isinstance(sampler, PerfSampler):
        # perf samples user space only (exclude_kernel): a tick in a system call or page fault is
        # dropped by the kernel without a record. Count that time from the kernel's accounting.
        aggregator.add_kernel_time(target.system_time_s)
    profile = aggregator.profile(
        command=request.python_args,
        duration_s=duration,
        exit_code=status.shell_code if status else None,
        debuginfo=request.debuginfo,
        sampler="gdb" if isinstance(sampler, GdbStopSampler) else "perf",
    )
    profile = dataclasses.replace(profile, asm=asm)
    # Stopped waiting: profila ends as if interrupted by the signal that made it stop.
    return RunResult(profile, status or ExitStatus(None, interrupts.last_signal))


Sampler = PerfSampler | GdbStopSampler


def _host_and_arm(request: RunRequest, target: HeldTarget) -> tuple[GdbHost, Sampler]:
    """Arm sampling and attach gdb to the waiting child; on failure the target never runs.

    perf_event_open needs no stops; where the kernel refuses it, gdb samples through stops."""
    gdb: GdbHost | None = None
    sampler: Sampler | None = None
    try:
        sampling = None
        if request.sampler in ("auto", "perf"):
            try:
                sampler = PerfSampler(target.pid, request.rate_hz, enable_on_exec=True)
            except SamplerUnavailable as exc:
                if request.sampler == "perf":
                    raise EnvironmentProblem(f"cannot sample with perf_event_open: {exc}") from exc
                print(
                    f"profila: {exc}; sampling through gdb stops instead (slower)", file=sys.stderr
                )
        if sampler is None:
            sampler = GdbStopSampler(request.rate_hz)
            sampling = sampler.gdb_request()
        gdb = GdbHost(request.gdb_path, target.pid, sampling=sampling)
        gdb.wait_attached()
        if sampling is None:
            gdb.close()  # it has detached again and quits: the target will run untraced
    except BaseException:
        target.abandon()
        if sampler is not None:
            sampler.close()
        if gdb is not None:
            gdb.close(timeout=1.0)  # then SIGTERM: gdb detaches (if it got that far) and quits
        raise
    return gdb, sampler


def _sample_until_exit(
    target: HeldTarget,
    gdb: GdbHost,
    sampler: Sampler,
    symboliser: Symboliser | None,
    aggregator: Aggregator,
    interrupts: Interrupts | None = None,
    pystacks: PythonStacks | None = None,
) -> None:
    next_refresh = 0.0
    # Only a sampling gdb stays attached; with perf, gdb detached before the exec and quit.
    gdb_alive = isinstance(sampler, GdbStopSampler)
    while target.poll() is None:
        if interrupts is not None and interrupts.stop_waiting:
            return
        if gdb_alive and gdb.returncode is not None and target.poll() is None:
            gdb_alive = False
            report_gdb_gone(gdb.returncode)
        if gdb.poll_exiting():
            # (Sampling through gdb only.) The target is held at exit_group with its memory
            # intact: read the JIT objects registered since the last refresh, symbolise what is
            # buffered, then let it go.
            if symboliser is not None:
                symboliser.refresh()
            _consume(sampler.read(), symboliser, aggregator, pystacks)
            gdb.release_exit()
            target.wait()
            return
        now = time.monotonic()
        if symboliser is not None and now >= next_refresh:
            symboliser.refresh()
            next_refresh = now + JIT_REFRESH_S
        _consume(sampler.read(), symboliser, aggregator, pystacks)
        time.sleep(POLL_S)


def report_gdb_gone(returncode: int) -> None:
    """A sampling gdb ended while the target runs (killed, crashed): say so once. The kernel
    detached the target when gdb died, so it runs on untraced, without samples."""
    how = f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
    print(
        f"profila: gdb ended during the run ({how}); no samples after this point", file=sys.stderr
    )


def _consume(
    records: Iterable[RawSample | IdleSpan | LostSamples],
    symboliser: Symboliser | None,
    aggregator: Aggregator,
    pystacks: PythonStacks | None = None,
) -> None:
    python = _PythonFrames(pystacks)
    for record in records:
        if isinstance(record, RawSample):
            if symboliser is None:
                aggregator.add_bad(1, record.tid)
            else:
                aggregator.add(python.attach(symboliser.symbolise(record)), record.time_ns)
        elif isinstance(record, IdleSpan):
            aggregator.add_idle(record.tid, record.end_ns - record.start_ns)
        else:
            aggregator.add_bad(record.count)


def _python_stacks(pid: int) -> PythonStacks | None:
    """The reader of the target's Python stacks, or None (said once) where it cannot work."""
    try:
        stacks = PythonStacks(pid)
    except OSError:
        return None  # the target is already gone
    if stacks.unavailable is not None:
        if sys.version_info[:2] == (3, 11):  # other versions: documented as not supported
            print(f"profila: no Python frames in the stacks: {stacks.unavailable}", file=sys.stderr)
        return None
    return stacks


class _PythonFrames:
    """Python frames for the samples of one drained batch: each thread's stack is read once,
    when its first NUMBA or PYTHON sample of the batch comes (docs/how-it-works.md says how
    stale that can be)."""

    def __init__(self, pystacks: PythonStacks | None) -> None:
        self.pystacks = pystacks
        self.read: dict[int, tuple[SourceFrame, ...]] = {}
        if pystacks is not None:
            pystacks.new_batch()

    def attach(self, sample: Sample) -> Sample:
        if self.pystacks is None or sample.kind not in (SampleKind.NUMBA, SampleKind.PYTHON):
            return sample
        frames = self.read.get(sample.tid)
        if frames is None:
            frames = self.read[sample.tid] = self.pystacks.read(sample.tid)
        return dataclasses.replace(sample, python_frames=frames) if frames else sample


def _asm_records(symboliser: Symboliser | None, aggregator: Aggregator) -> list[AsmFunction]:
    """Disassembly of the sampled JIT functions, once each, after sampling has ended (the code
    was read when its object was loaded). A failure here costs the view, never the run."""
    if symboliser is None:
        return []
    try:
        return build_records(symboliser, aggregator.jit_pcs)
    except Exception as exc:  # noqa: BLE001 - e.g. capstone missing or broken
        print(f"profila: no assembly view: {exc}", file=sys.stderr)
        return []


__all__ = ["RunRequest", "RunResult", "run"]
