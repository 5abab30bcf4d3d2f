"""What a sampler hands to the symboliser: registers and a copy of the user stack.

Both sampling back ends (perf_event_open, and stops under gdb) produce these, so
unwinding and symbolisation never need to know where a sample came from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RawSample:
    """One thread caught running user code."""

    tid: int
    time_ns: int  # CLOCK_MONOTONIC
    ip: int
    sp: int
    bp: int
    stack: bytes  # user stack memory starting at ``sp`` (may be shorter than asked for)


@dataclass(frozen=True, slots=True)
class IdleSpan:
    """A thread was off the CPU of its own accord (blocked, sleeping, waiting) for a span."""

    tid: int
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class LostSamples:
    """The kernel (or the sampler) dropped ``count`` samples it could not deliver."""

    count: int
