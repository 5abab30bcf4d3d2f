"""speedscope output: accepted by speedscope's own file-format schema, stacks root first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from profila.model import LineCounts, Profile, StackCounts, StackFrame, Stacks
from profila.render import speedscope

from .test_model import sample_profile

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "speedscope" / "file-format-schema.json"


def check_speedscope(doc: dict[str, Any]) -> None:
    """speedscope's schema, plus what a schema cannot say: indices in range, equal lengths."""
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = doc["shared"]["frames"]
    for p in doc["profiles"]:
        assert p["type"] == "sampled"
        assert len(p["samples"]) == len(p["weights"])
        assert all(0 <= i < len(frames) for s in p["samples"] for i in s)
        assert p["endValue"] == pytest.approx(sum(p["weights"]))


def with_stacks() -> Profile:
    frames = [
        StackFrame("/x/d.py", 17, "dither"),
        StackFrame("/lib/numba/np/arraymath.py", 120, "round_impl"),
        StackFrame("<unknown>", 0, "helper"),
    ]
    stacks = Stacks(frames, [StackCounts((0, 1), 80), StackCounts((0,), 50), StackCounts((2,), 10)])
    return Profile(**{**sample_profile().__dict__, "stacks": stacks})


def test_output_passes_the_speedscope_schema() -> None:
    check_speedscope(json.loads(speedscope.render(with_stacks())))


def test_numba_frames_are_named_by_function_and_line_root_first() -> None:
    """The inlined library frame comes after (inside) the user's line, as on the real stack."""
    doc = json.loads(speedscope.render(with_stacks()))
    names = [f["name"] for f in doc["shared"]["frames"]]
    [profile] = doc["profiles"]
    stacks = [[names[i] for i in s] for s in profile["samples"]]
    assert ["dither (d.py:17)", "round_impl (arraymath.py:120)"] in stacks
    assert ["helper"] in stacks
    weights = dict(zip(map(tuple, stacks), profile["weights"], strict=True))
    assert weights[("dither (d.py:17)", "round_impl (arraymath.py:120)")] == pytest.approx(0.8)
    # The other classes keep their share: 5 python samples at 100 Hz.
    assert weights[("[python interpreter]",)] == pytest.approx(0.05)
    assert not any("idle" in n for n in names)


def test_profile_without_stacks_falls_back_to_self_lines() -> None:
    """An older profile (no stacks field) still converts: each line's self as one frame."""
    p = sample_profile()
    p = Profile(**{**p.__dict__, "lines": [LineCounts("/x/d.py", 17, "dither", 90, 100)]})
    doc = json.loads(speedscope.render(p))
    check_speedscope(doc)
    names = [f["name"] for f in doc["shared"]["frames"]]
    assert "dither (d.py:17)" in names


def test_names_with_markup_or_quotes_stay_valid_json() -> None:
    frames = [StackFrame('/x/"odd" <dir>/d.py', 3, 'f"<script>')]
    p = Profile(**{**sample_profile().__dict__, "stacks": Stacks(frames, [StackCounts((0,), 1)])})
    doc = json.loads(speedscope.render(p))
    check_speedscope(doc)
    assert doc["shared"]["frames"][0]["name"] == 'f"<script> (d.py:3)'


def test_numba_samples_without_a_stack_keep_their_weight() -> None:
    """Dropped stacks and Numba samples without source frames still weigh in the flame graph,
    so its proportions match the report's shares."""
    frames = [StackFrame("/x/d.py", 17, "dither")]
    stacks = Stacks(frames, [StackCounts((0,), 100)], dropped=30)
    p = Profile(**{**sample_profile().__dict__, "stacks": stacks})  # 140 numba samples
    doc = json.loads(speedscope.render(p))
    check_speedscope(doc)
    names = [f["name"] for f in doc["shared"]["frames"]]
    [profile] = doc["profiles"]
    weights = {names[s[0]]: w for s, w in zip(profile["samples"], profile["weights"], strict=True)}
    assert weights["[numba: stack not kept (too many distinct stacks)]"] == pytest.approx(0.3)
    assert weights["[numba: no source frame]"] == pytest.approx(0.1)
    assert profile["endValue"] == pytest.approx(1.48)  # every running sample, at 100 Hz
