"""The profile: integer counts per sample class, per source line and per function.

Percentages are never stored: renderers derive them. The JSON form is versioned and documented
in docs/json-schema.md; ``to_json``/``from_json`` are its only writer and reader.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from profila.asm import AsmFunction

SCHEMA = "profila.profile"
SCHEMA_VERSION = 1

# Sample classes, in the order reports show them. "total" is their sum.
SAMPLE_CLASSES = ("numba", "python", "compile", "native", "kernel", "idle", "bad")


@dataclass(frozen=True, slots=True)
class LineCounts:
    file: str
    line: int
    function: str
    self: int  # samples whose innermost Numba frame is this line
    total: int  # samples with this line anywhere on the Numba stack (once per sample)


@dataclass(frozen=True, slots=True)
class FunctionCounts:
    file: str
    function: str
    self: int
    total: int


@dataclass(frozen=True, slots=True)
class ThreadCounts:
    tid: int
    samples: int  # every class but idle
    idle: int


@dataclass(frozen=True, slots=True)
class ThreadLineCounts:
    """One thread's share of a source line (``--threads``); summed over tids: LineCounts."""

    file: str
    line: int
    function: str
    tid: int
    self: int
    total: int


@dataclass(frozen=True, slots=True)
class ParallelCounts:
    """How many threads ran a function at once (profila/concurrency.py has the definition)."""

    file: str
    function: str
    ticks: int  # sampling ticks in which at least one thread had it on its Numba stack
    thread_ticks: int  # summed over those ticks: the number of distinct threads in it
    threads: int  # distinct threads seen in it over the run

    @property
    def efficiency(self) -> float:
        """Threads busy in it on average while it ran."""
        return self.thread_ticks / self.ticks if self.ticks else 0.0


@dataclass(frozen=True, slots=True)
class SourceFingerprint:
    """What a source file looked like when the profile was made, to notice later edits."""

    sha256: str | None  # None: the file could not be read at the time


@dataclass(frozen=True, slots=True)
class StackFrame:
    """One source location as it appears in ``Stacks.frames``: a Numba frame (real or inlined)
    or, with ``kind`` "python", a Python frame calling into Numba code or running Python."""

    file: str
    line: int
    function: str
    kind: str = "numba"  # "numba" or "python"; written to JSON only when "python"


@dataclass(frozen=True, slots=True)
class StackCounts:
    frames: tuple[int, ...]  # indices into Stacks.frames, root (outermost) first
    count: int  # samples with exactly this stack


@dataclass(frozen=True)
class Stacks:
    """The distinct stacks of the numba-class samples (Python callers, if read, then Numba
    frames) and of the python-class samples whose Python frames were read (Python frames
    only), with counts. Bounded: numba samples whose stack would exceed the cap on distinct
    stacks are counted in ``dropped``; python samples past it are simply not placed."""

    frames: list[StackFrame] = field(default_factory=list)
    stacks: list[StackCounts] = field(default_factory=list)
    dropped: int = 0


@dataclass(frozen=True)
class Profile:
    command: list[str]
    rate_hz: float
    duration_s: float
    exit_code: int | None
    debuginfo: str  # which build was profiled: "full" (NUMBA_DEBUGINFO=1), "lines", "none"
    sampler: str  # "perf" or "gdb"
    samples: dict[str, int]  # SAMPLE_CLASSES -> count, plus "total"
    lines: list[LineCounts] = field(default_factory=list)
    functions: list[FunctionCounts] = field(default_factory=list)
    threads: list[ThreadCounts] = field(default_factory=list)
    sources: dict[str, SourceFingerprint] = field(default_factory=dict)
    # Per-instruction records of the JIT functions with samples (optional; docs/asm.md).
    asm: list[AsmFunction] = field(default_factory=list)
    # Optional (absent from older profiles): the stripped text of each counted line, so a diff
    # can match lines from the JSON alone; and the aggregated Numba stacks (for speedscope).
    line_text: dict[str, dict[int, str]] = field(default_factory=dict)
    stacks: Stacks | None = None
    # Optional in the JSON (absent in profiles written before them): per-thread line counts and
    # parallel efficiency.
    thread_lines: list[ThreadLineCounts] = field(default_factory=list)
    parallel: list[ParallelCounts] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.samples.get("total", 0)

    @property
    def running(self) -> int:
        """Samples of threads that were running (every class but idle): the base of shares."""
        return self.total - self.samples.get("idle", 0)

    @property
    def effective_rate_hz(self) -> float:
        """Samples per second of run time on the busiest thread (running or idle)."""
        if self.duration_s <= 0 or not self.threads:
            return 0.0
        busiest = max(t.samples + t.idle for t in self.threads)
        return busiest / self.duration_s

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "command": self.command,
            "rate_hz": self.rate_hz,
            "duration_s": round(self.duration_s, 6),
            "exit_code": self.exit_code,
            "debuginfo": self.debuginfo,
            "sampler": self.sampler,
            "ticks": self.total,
            "samples": {k: self.samples.get(k, 0) for k in ("total", *SAMPLE_CLASSES)},
            "threads": [asdict(t) for t in self.threads],
            "functions": [asdict(f) for f in self.functions],
            "lines": [asdict(x) for x in self.lines],
            "sources": {path: asdict(fp) for path, fp in self.sources.items()},
            "thread_lines": [asdict(x) for x in self.thread_lines],
            "parallel": [asdict(x) for x in self.parallel],
        }
        if self.asm:
            doc["asm"] = [a.to_dict() for a in self.asm]
        _add_optional_fields(self, doc)
        return json.dumps(doc, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Profile:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise ValueError('not a profila profile (no "schema": "profila.profile")')
        if doc.get("version") != SCHEMA_VERSION:
            raise ValueError(
                f"profile schema version {doc.get('version')} is not supported "
                f"(this profila reads version {SCHEMA_VERSION})"
            )
        return cls(
            command=list(doc["command"]),
            rate_hz=float(doc["rate_hz"]),
            duration_s=float(doc["duration_s"]),
            exit_code=doc["exit_code"],
            debuginfo=str(doc["debuginfo"]),
            sampler=str(doc["sampler"]),
            samples={k: int(v) for k, v in doc["samples"].items()},
            lines=[LineCounts(**x) for x in doc["lines"]],
            functions=[FunctionCounts(**f) for f in doc["functions"]],
            threads=[ThreadCounts(**t) for t in doc["threads"]],
            sources={p: SourceFingerprint(**fp) for p, fp in doc["sources"].items()},
            asm=[AsmFunction.from_dict(a) for a in doc.get("asm", [])],
            **_read_optional_fields(doc),
            thread_lines=[ThreadLineCounts(**x) for x in doc.get("thread_lines", [])],
            parallel=[ParallelCounts(**x) for x in doc.get("parallel", [])],
        )


def _add_optional_fields(profile: Profile, doc: dict[str, Any]) -> None:
    """line_text and stacks: written only when present, so older readers see nothing new."""
    if profile.line_text:
        doc["line_text"] = {
            path: {str(n): text for n, text in sorted(lines.items())}
            for path, lines in profile.line_text.items()
        }
    if profile.stacks is not None:
        doc["stacks"] = {
            "frames": [_stack_frame_dict(f) for f in profile.stacks.frames],
            "stacks": [{"frames": list(s.frames), "count": s.count} for s in profile.stacks.stacks],
            "dropped": profile.stacks.dropped,
        }


def _stack_frame_dict(frame: StackFrame) -> dict[str, Any]:
    out = asdict(frame)
    if frame.kind == "numba":
        del out["kind"]  # the default: stacks written before Python frames look the same
    return out


def _read_optional_fields(doc: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "line_text" in doc:
        fields["line_text"] = {
            str(path): {int(n): str(text) for n, text in lines.items()}
            for path, lines in doc["line_text"].items()
        }
    if "stacks" in doc:
        raw = doc["stacks"]
        frames = [StackFrame(**f) for f in raw["frames"]]
        stacks = [
            StackCounts(tuple(int(i) for i in s["frames"]), int(s["count"])) for s in raw["stacks"]
        ]
        for s in stacks:
            if any(not 0 <= i < len(frames) for i in s.frames):
                raise ValueError("a stack refers to a frame that is not in stacks.frames")
        fields["stacks"] = Stacks(frames, stacks, int(raw.get("dropped", 0)))
    return fields
