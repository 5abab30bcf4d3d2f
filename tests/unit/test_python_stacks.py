"""Python frames: the 3.11 location-table parser, the probed layout, reading a live thread's
stack, and how the frames travel through the aggregator, the JSON profile and speedscope."""

from __future__ import annotations

import dis
import json
import os
import sys
import threading
import types
from collections.abc import Iterator

import pytest

from profila import aggregate
from profila.aggregate import Aggregator
from profila.model import Profile
from profila.render import speedscope
from profila.symbols import python_stacks
from profila.symbols.frames import Sample, SampleKind, SourceFrame
from profila.symbols.python_stacks import PythonStacks, parse_linetable

from .test_render_speedscope import check_speedscope

needs_311 = pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="CPython 3.11 layout")


def all_code(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from all_code(const)


@needs_311
def test_linetable_parser_agrees_with_co_positions() -> None:
    """Every code unit of every function of a few stdlib modules (loops, multi-line
    expressions, comprehensions, try/except) gets the line co_positions() gives it."""
    import argparse
    import json.decoder

    checked = 0
    for module in (dis, argparse, json.decoder):
        assert module.__file__ is not None
        with open(module.__file__) as f:
            top = compile(f.read(), module.__file__, "exec")
        for code in all_code(top):
            table = parse_linetable(code.co_linetable, code.co_firstlineno)
            for unit, (line, *_) in enumerate(code.co_positions()):
                assert table.line(unit) == (-1 if line is None else line), (code, unit)
                checked += 1
    assert checked > 10_000


def test_linetable_parser_tolerates_a_truncated_table() -> None:
    """A table cut short (read while being replaced) keeps its complete entries, no error."""
    code = test_linetable_parser_agrees_with_co_positions.__code__
    whole = parse_linetable(code.co_linetable, code.co_firstlineno)
    cut = parse_linetable(code.co_linetable[:7], code.co_firstlineno)
    assert 0 < len(cut.ends) < len(whole.ends)
    assert cut.lines == whole.lines[: len(cut.lines)]
    assert cut.line(10**6) == -1


@needs_311
def test_layout_is_probed_from_this_interpreter() -> None:
    """The probe finds distinct offsets for the fields it needs and _PyRuntime in a real file."""
    lay = python_stacks.layout()
    assert os.path.exists(lay.runtime_file)
    assert lay.co_code == type(test_layout_is_probed_from_this_interpreter.__code__).__basicsize__
    fields = {lay.co_filename, lay.co_qualname, lay.co_linetable, lay.co_firstlineno}
    assert len(fields) == 4
    assert len({lay.fr_code, lay.fr_previous, lay.fr_prev_instr}) == 3


class Parked:
    def wait_here(self, go: threading.Event, parked: threading.Event) -> None:
        parked.set()
        go.wait(10.0)  # the thread sits here while its stack is read

    def outer(self, go: threading.Event, parked: threading.Event) -> None:
        self.wait_here(go, parked)


@needs_311
def test_a_parked_threads_stack_is_read_innermost_first() -> None:
    """Another thread of this process, blocked in Event.wait inside Parked.wait_here called by
    Parked.outer: its Python frames come back with qualified names, this file and the lines."""
    go, parked = threading.Event(), threading.Event()
    thread = threading.Thread(target=Parked().outer, args=(go, parked))
    thread.start()
    try:
        assert parked.wait(10.0)
        stacks = PythonStacks(os.getpid())
        assert stacks.available, stacks.unavailable
        assert thread.native_id is not None
        stacks.new_batch()
        frames = stacks.read(thread.native_id)
        stacks.close()
    finally:
        go.set()
        thread.join()
    names = [f.function for f in frames]
    assert names[:4] == ["Condition.wait", "Event.wait", "Parked.wait_here", "Parked.outer"]
    assert names[-1] == "Thread._bootstrap"
    lines = Parked.wait_here.__code__.co_firstlineno, Parked.outer.__code__.co_firstlineno
    assert (frames[2].line, frames[3].line) == (lines[0] + 2, lines[1] + 1)
    assert frames[2].file == frames[3].file == __file__


def test_no_frames_for_a_process_that_is_gone() -> None:
    """A reader for a process that has gone is unavailable and reads nothing, without error."""
    stacks = PythonStacks(2**22 + 12345)  # above the default pid_max: no such process
    assert not stacks.available and stacks.unavailable
    assert stacks.read(1) == ()


def profile_of(samples: list[Sample]) -> Profile:
    agg = Aggregator(rate_hz=100)
    for s in samples:
        agg.add(s)
    return agg.profile(
        command=["x.py"], duration_s=1.0, exit_code=0, debuginfo="lines", sampler="perf"
    )


MAIN = SourceFrame("/s/x.py", 30, "main")
RUN = SourceFrame("/s/x.py", 20, "run")
KERNEL = SourceFrame("/s/x.py", 10, "kernel")
INLINED = SourceFrame("/lib/numba/np/math.py", 5, "sqrt_impl")
HOT = SourceFrame("/s/x.py", 40, "hot")


def example() -> Profile:
    return profile_of(
        [
            Sample(1, SampleKind.NUMBA, (INLINED, KERNEL), python_frames=(RUN, MAIN)),
            Sample(1, SampleKind.NUMBA, (INLINED, KERNEL), python_frames=(RUN, MAIN)),
            Sample(1, SampleKind.NUMBA, (KERNEL,)),  # Python frames not read
            Sample(1, SampleKind.PYTHON, python_frames=(HOT, MAIN)),
            Sample(1, SampleKind.PYTHON),
        ]
    )


def test_python_frames_are_the_outer_part_of_stacks_but_not_lines() -> None:
    """Stacks are root first: Python frames (kind python) then Numba frames; python-class
    samples with frames are Python-only stacks; lines and functions stay Numba-only."""
    p = example()
    assert p.stacks is not None
    named = {
        tuple((p.stacks.frames[i].function, p.stacks.frames[i].kind) for i in s.frames): s.count
        for s in p.stacks.stacks
    }
    assert named == {
        (("main", "python"), ("run", "python"), ("kernel", "numba"), ("sqrt_impl", "numba")): 2,
        (("kernel", "numba"),): 1,
        (("main", "python"), ("hot", "python")): 1,
    }
    assert {x.function for x in p.lines} == {"kernel", "sqrt_impl"}
    assert {f.function for f in p.functions} == {"kernel", "sqrt_impl"}


def test_python_frame_kind_survives_json_and_numba_frames_have_no_kind_key() -> None:
    """kind is written only for Python frames, and read back."""
    p = example()
    doc = json.loads(p.to_json())
    kinds = [f.get("kind") for f in doc["stacks"]["frames"]]
    assert set(kinds) == {None, "python"}
    assert Profile.from_json(p.to_json()).stacks == p.stacks


def test_speedscope_marks_python_frames_and_keeps_class_weights() -> None:
    """Python frames are named 'py name (file:line)'; the python samples placed in a stack are
    not counted again as '[python interpreter]'; every sample keeps its weight once."""
    p = example()
    doc = json.loads(speedscope.render(p))
    check_speedscope(doc)
    names = [f["name"] for f in doc["shared"]["frames"]]
    prof = doc["profiles"][0]
    by_stack = {
        " > ".join(names[i] for i in s): round(w * p.rate_hz)
        for s, w in zip(prof["samples"], prof["weights"], strict=True)
    }
    assert by_stack == {
        "py main (x.py:30) > py run (x.py:20) > kernel (x.py:10) > sqrt_impl (math.py:5)": 2,
        "kernel (x.py:10)": 1,
        "py main (x.py:30) > py hot (x.py:40)": 1,
        "[python interpreter]": 1,
    }


def test_python_only_stacks_do_not_use_up_the_numba_stacks_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Distinct pure-Python stacks past the cap are not placed, and leave the Numba stacks'
    room alone: a new Numba stack after them is kept, none dropped."""
    monkeypatch.setattr(aggregate, "MAX_STACKS", 2)
    python = [
        Sample(1, SampleKind.PYTHON, python_frames=(SourceFrame("/s/x.py", n, "f"),))
        for n in (1, 1, 1, 2, 3, 4)
    ]
    numba = [
        Sample(1, SampleKind.NUMBA, (KERNEL,), python_frames=(RUN,)),
        Sample(1, SampleKind.NUMBA, (INLINED,)),
    ]
    p = profile_of(python + numba)
    assert p.stacks is not None and p.stacks.dropped == 0
    # Numba: two stacks of 1; Python: x.py:1 three times and x.py:2 once, 3 and 4 not placed.
    assert sorted(s.count for s in p.stacks.stacks) == [1, 1, 1, 3]
