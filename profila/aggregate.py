"""Symbolised samples -> Profile, counted as they arrive so memory stays flat on long runs.

Memory grows with the number of distinct source lines and threads, never with run length.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from profila.concurrency import BusyThreads
from profila.model import (
    SAMPLE_CLASSES,
    FunctionCounts,
    LineCounts,
    ParallelCounts,
    Profile,
    SourceFingerprint,
    StackCounts,
    StackFrame,
    Stacks,
    ThreadCounts,
    ThreadLineCounts,
)
from profila.sources import line_texts
from profila.symbols.frames import Sample, SampleKind, SourceFrame

_LineKey = tuple[str, int, str]  # file, line, function
_FunctionKey = tuple[str, str]  # file, function
# Distinct Numba stacks kept for the stack views (speedscope); samples with a new stack beyond
# this are counted as dropped, so memory stays bounded whatever the program does.
MAX_STACKS = 20_000


class Aggregator:
    """Counts samples by class, by line (self/total) and by function (self/total)."""

    def __init__(self, rate_hz: float) -> None:
        self.rate_hz = rate_hz
        self.classes: Counter[str] = Counter()
        self.line_self: Counter[_LineKey] = Counter()
        self.line_total: Counter[_LineKey] = Counter()
        self.function_self: Counter[_FunctionKey] = Counter()
        self.function_total: Counter[_FunctionKey] = Counter()
        self.thread_samples: Counter[int] = Counter()
        self._idle_ns: Counter[int] = Counter()
        # Samples per innermost Numba pc, for the assembly view (bounded by the code's size).
        self.jit_pcs: Counter[int] = Counter()
        # (Numba frames, Python frames), each innermost first as sampled; root first in the
        # profile. The Python-only stacks of PYTHON samples are kept apart, under a cap of their
        # own, so that a long stretch of pure Python cannot use up the Numba stacks' room.
        self.stacks: Counter[tuple[tuple[SourceFrame, ...], tuple[SourceFrame, ...]]] = Counter()
        self.python_stacks: Counter[tuple[SourceFrame, ...]] = Counter()
        self.stacks_dropped = 0
        # Each source file is fingerprinted when its first sample arrives, while the program
        # runs: a file edited later (even by the program itself) is then seen as changed.
        self._sources: dict[str, SourceFingerprint] = {}
        self._idle_samples: Counter[int] = Counter()  # IDLE samples (spinning in a pool)
        # Per thread: line -> samples of that thread (self / total), for the --threads view.
        self.thread_line_self: Counter[tuple[_LineKey, int]] = Counter()
        self.thread_line_total: Counter[tuple[_LineKey, int]] = Counter()
        self.busy = BusyThreads(rate_hz)

    def add(self, sample: Sample, time_ns: int | None = None) -> None:
        """Count one sample; ``time_ns`` (CLOCK_MONOTONIC) feeds the parallel efficiency."""
        self.classes[sample.kind.value] += 1
        if sample.kind is SampleKind.IDLE:
            self._idle_samples[sample.tid] += 1
            return
        self.thread_samples[sample.tid] += 1
        if sample.kind is SampleKind.PYTHON and sample.python_frames:
            python_stack = sample.python_frames
            if python_stack in self.python_stacks or len(self.python_stacks) < MAX_STACKS:
                self.python_stacks[python_stack] += 1  # past the cap: not placed in a stack
        if sample.kind is not SampleKind.NUMBA or not sample.frames:
            return
        if sample.jit_pc is not None:
            self.jit_pcs[sample.jit_pc] += 1
        for frame in sample.frames:
            if frame.file not in self._sources:
                self._sources[frame.file] = fingerprint(frame.file)
        innermost = sample.frames[0]
        first = (innermost.file, innermost.line, innermost.function)
        # Recursion and repeated inlining put a line on the stack more than once: count it once.
        line_keys = {(f.file, f.line, f.function) for f in sample.frames}
        function_keys = {(f.file, f.function) for f in sample.frames}
        self.line_self[first] += 1
        self.function_self[(innermost.file, innermost.function)] += 1
        for key in line_keys:
            self.line_total[key] += 1
        for fkey in function_keys:
            self.function_total[fkey] += 1
        # Per thread, for the --threads view.
        self.thread_line_self[(first, sample.tid)] += 1
        for key in line_keys:
            self.thread_line_total[(key, sample.tid)] += 1
        if time_ns is not None:
            self.busy.add(time_ns, sample.tid, function_keys)
        stack = (sample.frames, sample.python_frames)
        self.stacks[stack] += 1
        if len(self.stacks) > MAX_STACKS:  # a new stack past the cap: count it as dropped
            del self.stacks[stack]
            self.stacks_dropped += 1

    def add_idle(self, tid: int, duration_ns: int) -> None:
        """A thread spent ``duration_ns`` blocked or sleeping: idle ticks at the sampling rate."""
        self._idle_ns[tid] += max(0, duration_ns)

    def add_kernel_time(self, seconds: float) -> None:
        """Time the target spent in the kernel (system calls, page faults), from the kernel's
        own accounting: the perf sampler cannot sample it (user space only), so it would
        otherwise vanish from the shares. Counted as ticks at the sampling rate."""
        self.classes["kernel"] += round(max(0.0, seconds) * self.rate_hz)

    def add_bad(self, count: int, tid: int = 0) -> None:
        self.classes[SampleKind.BAD.value] += count
        if tid:
            self.thread_samples[tid] += count

    def _idle_ticks(self) -> Counter[int]:
        ticks = Counter({tid: round(ns * self.rate_hz / 1e9) for tid, ns in self._idle_ns.items()})
        return ticks + self._idle_samples

    def _thread_lines(self) -> list[ThreadLineCounts]:
        out = [
            ThreadLineCounts(*key, tid, self=self.thread_line_self.get((key, tid), 0), total=total)
            for (key, tid), total in self.thread_line_total.items()
        ]
        out.sort(key=lambda x: (x.file, x.line, x.function, x.tid))
        return out

    def _parallel(self) -> list[ParallelCounts]:
        self.busy.finish()
        out = [
            ParallelCounts(
                *key,
                ticks=ticks,
                thread_ticks=self.busy.thread_ticks[key],
                threads=len(self.busy.threads.get(key, ())),
            )
            for key, ticks in self.busy.ticks.items()
        ]
        out.sort(key=lambda p: (-p.thread_ticks, p.file, p.function))
        return out

    def profile(
        self,
        *,
        command: list[str],
        duration_s: float,
        exit_code: int | None,
        debuginfo: str,
        sampler: str,
    ) -> Profile:
        idle = self._idle_ticks()
        samples = {k: self.classes.get(k, 0) for k in SAMPLE_CLASSES}
        samples["idle"] += sum(idle.values()) - sum(self._idle_samples.values())
        samples["total"] = sum(samples[k] for k in SAMPLE_CLASSES)
        lines = [
            LineCounts(*key, self=self.line_self.get(key, 0), total=total)
            for key, total in self.line_total.items()
        ]
        lines.sort(key=lambda x: (x.file, x.line, x.function))
        functions = [
            FunctionCounts(*key, self=self.function_self.get(key, 0), total=total)
            for key, total in self.function_total.items()
        ]
        functions.sort(key=lambda f: (-f.total, f.file, f.function))
        tids = sorted(set(self.thread_samples) | set(idle))
        threads = [ThreadCounts(t, self.thread_samples.get(t, 0), idle.get(t, 0)) for t in tids]
        sources = {
            path: self._sources.get(path) or fingerprint(path)
            for path in sorted({x.file for x in lines})
        }
        return Profile(
            command=command,
            rate_hz=self.rate_hz,
            duration_s=duration_s,
            exit_code=exit_code,
            debuginfo=debuginfo,
            sampler=sampler,
            samples=samples,
            lines=lines,
            functions=functions,
            threads=threads,
            sources=sources,
            line_text=_line_text(lines),
            stacks=self._stacks(),
            thread_lines=self._thread_lines(),
            parallel=self._parallel(),
        )

    def _stacks(self) -> Stacks:
        index: dict[tuple[SourceFrame, str], int] = {}
        stacks = []
        every = self.stacks + Counter({((), p): n for p, n in self.python_stacks.items()})
        for (numba, python), count in every.most_common():
            # Root first: the outermost Python frame ... the Python caller, then the Numba
            # function ... its innermost inlined frame.
            keys = [(f, "python") for f in reversed(python)]
            keys += [(f, "numba") for f in reversed(numba)]
            stacks.append(StackCounts(tuple(index.setdefault(k, len(index)) for k in keys), count))
        frames = [StackFrame(f.file, f.line, f.function, kind) for f, kind in index]
        return Stacks(frames, stacks, self.stacks_dropped)


def _line_text(lines: list[LineCounts]) -> dict[str, dict[int, str]]:
    numbers: dict[str, set[int]] = {}
    for x in lines:
        numbers.setdefault(x.file, set()).add(x.line)
    texts = {path: line_texts(path, wanted) for path, wanted in numbers.items()}
    return {path: found for path, found in texts.items() if found}


def fingerprint(path: str) -> SourceFingerprint:
    try:
        return SourceFingerprint(hashlib.sha256(Path(path).read_bytes()).hexdigest())
    except OSError:
        return SourceFingerprint(None)
