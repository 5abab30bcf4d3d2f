"""speedscope's JSON file format: one sampled profile of the Numba stacks plus the other classes.

Each Numba frame (real or inlined) is named by its function and line, each Python frame by its
qualified name and line with a "py " prefix; stacks are listed root first as the format wants:
the Python frames down to the call of the kernel, then the kernel's Numba frames. Samples in the
interpreter whose Python stack was read are stacks of Python frames; the other samples outside
Numba code become one-frame stacks named after their class, so the flame graph's proportions
are the report's shares. Weights are seconds of thread
time: a sample stands for 1/rate of a thread's time.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

from profila import __version__
from profila.model import Profile, StackFrame

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"

_CLASS_FRAMES = {
    "python": "[python interpreter]",
    "compile": "[numba compiling (LLVM)]",
    "native": "[native code]",
    "kernel": "[kernel]",
    "bad": "[unreadable samples]",
}
_DROPPED = "[numba: stack not kept (too many distinct stacks)]"
_NO_FRAME = "[numba: no source frame]"


def frame_name(frame: StackFrame) -> str:
    name = f"py {frame.function}" if frame.kind == "python" else frame.function
    if frame.line <= 0:
        return name
    return f"{name} ({os.path.basename(frame.file)}:{frame.line})"


def render(profile: Profile) -> str:
    frames: list[dict[str, Any]] = []
    index: dict[tuple[str, str, int], int] = {}

    def frame(name: str, file: str | None = None, line: int = 0) -> int:
        key = (name, file or "", line)
        if key not in index:
            index[key] = len(frames)
            entry: dict[str, Any] = {"name": name}
            if file and line > 0:
                entry.update(file=file, line=line)
            frames.append(entry)
        return index[key]

    def numba_frame(f: StackFrame) -> int:
        return frame(frame_name(f), f.file, f.line)

    stacks: list[tuple[list[int], int]] = []
    placed_python = 0  # python-class samples already in a stack of Python frames
    if profile.stacks is not None:
        for s in profile.stacks.stacks:
            frames_of = [profile.stacks.frames[i] for i in s.frames]
            stacks.append(([numba_frame(f) for f in frames_of], s.count))
            if all(f.kind == "python" for f in frames_of):
                placed_python += s.count
        if profile.stacks.dropped:
            stacks.append(([frame(_DROPPED)], profile.stacks.dropped))
        unplaced = profile.samples.get("numba", 0) - (sum(c for _, c in stacks) - placed_python)
        if unplaced > 0:  # Numba samples without any source frame
            stacks.append(([frame(_NO_FRAME)], unplaced))
    else:
        # An older profile without stacks: each line's self samples as a one-frame stack.
        for x in profile.lines:
            if x.self:
                stacks.append(([numba_frame(StackFrame(x.file, x.line, x.function))], x.self))
    for cls, name in _CLASS_FRAMES.items():
        count = profile.samples.get(cls, 0) - (placed_python if cls == "python" else 0)
        if count:
            stacks.append(([frame(name)], count))

    period = 1.0 / profile.rate_hz if profile.rate_hz > 0 else 1.0
    weights = [count * period for _, count in stacks]
    name = f"python {shlex.join(profile.command)}"
    doc = {
        "$schema": SPEEDSCOPE_SCHEMA,
        "name": name,
        "exporter": f"profila {__version__}",
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "seconds",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": [s for s, _ in stacks],
                "weights": weights,
            }
        ],
    }
    return json.dumps(doc) + "\n"
