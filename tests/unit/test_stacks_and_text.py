"""The optional profile fields: aggregated Numba stacks and the text of counted lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profila import aggregate
from profila.aggregate import Aggregator
from profila.model import Profile, StackCounts, StackFrame, Stacks
from profila.symbols.frames import Sample, SampleKind, SourceFrame

from .test_model import sample_profile


def aggregate_samples(samples: list[Sample]) -> Profile:
    agg = Aggregator(rate_hz=100)
    for s in samples:
        agg.add(s)
    return agg.profile(
        command=["x.py"], duration_s=1.0, exit_code=0, debuginfo="lines", sampler="perf"
    )


def test_stacks_are_root_first_with_counts() -> None:
    """Sample frames are innermost first; the stored stacks are root first, one per distinct
    stack, inlined and library frames included; non-Numba samples have no stack."""
    kernel = SourceFrame("/s/k.py", 10, "kernel")
    inner = SourceFrame("/lib/numba/np/arraymath.py", 120, "round_impl")
    samples = [
        Sample(1, SampleKind.NUMBA, (inner, kernel)),
        Sample(1, SampleKind.NUMBA, (inner, kernel)),
        Sample(1, SampleKind.NUMBA, (kernel,)),
        Sample(1, SampleKind.PYTHON),
    ]
    stacks = aggregate_samples(samples).stacks
    assert stacks is not None
    named = {
        tuple((stacks.frames[i].function, stacks.frames[i].line) for i in s.frames): s.count
        for s in stacks.stacks
    }
    assert named == {(("kernel", 10), ("round_impl", 120)): 2, (("kernel", 10),): 1}
    assert stacks.dropped == 0


def test_distinct_stacks_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the cap, samples with a new stack are counted as dropped; known stacks still count."""
    monkeypatch.setattr(aggregate, "MAX_STACKS", 2)
    frames = [SourceFrame("/s/k.py", n, "k") for n in range(1, 5)]
    samples = [Sample(1, SampleKind.NUMBA, (f,)) for f in frames] + [
        Sample(1, SampleKind.NUMBA, (frames[0],))
    ]
    stacks = aggregate_samples(samples).stacks
    assert stacks is not None
    assert sorted(s.count for s in stacks.stacks) == [1, 2] and stacks.dropped == 2


def test_counted_lines_keep_their_text(tmp_path: Path) -> None:
    """The stripped text of each counted line is stored, so a diff needs only the JSON."""
    src = tmp_path / "k.py"
    src.write_text("def k(a):\n    return a + 1\n")
    p = aggregate_samples([Sample(1, SampleKind.NUMBA, (SourceFrame(str(src), 2, "k"),))])
    assert p.line_text == {str(src): {2: "return a + 1"}}
    missing = aggregate_samples([Sample(1, SampleKind.NUMBA, (SourceFrame("/no/x.py", 2, "k"),))])
    assert missing.line_text == {}


def test_optional_fields_round_trip_and_older_profiles_load() -> None:
    p = Profile(
        **{
            **sample_profile().__dict__,
            "line_text": {"/x/d.py": {17: "y = x + 1"}},
            "stacks": Stacks([StackFrame("/x/d.py", 17, "dither")], [StackCounts((0,), 90)], 3),
        }
    )
    doc = json.loads(p.to_json())
    assert doc["line_text"] == {"/x/d.py": {"17": "y = x + 1"}}
    assert doc["stacks"]["stacks"] == [{"frames": [0], "count": 90}]
    assert Profile.from_json(p.to_json()) == p
    older = json.loads(sample_profile().to_json())
    assert "stacks" not in older and "line_text" not in older
    assert Profile.from_json(json.dumps(older)).stacks is None


def test_a_stack_pointing_outside_the_frames_is_refused() -> None:
    doc = json.loads(sample_profile().to_json())
    doc["stacks"] = {"frames": [], "stacks": [{"frames": [0], "count": 1}], "dropped": 0}
    with pytest.raises(ValueError, match="not in stacks.frames"):
        Profile.from_json(json.dumps(doc))
