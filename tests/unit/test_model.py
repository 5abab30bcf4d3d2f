import json

import pytest

from profila.model import (
    FunctionCounts,
    LineCounts,
    Profile,
    SourceFingerprint,
    ThreadCounts,
)


def sample_profile() -> Profile:
    return Profile(
        command=["examples/dither/dither.py", "1"],
        rate_hz=100.0,
        duration_s=1.5,
        exit_code=0,
        debuginfo="full",
        sampler="perf",
        samples={
            "total": 150,
            "numba": 140,
            "python": 5,
            "compile": 2,
            "native": 1,
            "kernel": 0,
            "idle": 2,
            "bad": 0,
        },
        lines=[LineCounts("/x/d.py", 17, "dither", 90, 100)],
        functions=[FunctionCounts("/x/d.py", "dither", 120, 140)],
        threads=[ThreadCounts(7, 148, 2)],
        sources={"/x/d.py": SourceFingerprint("ab" * 32)},
    )


def test_json_round_trips() -> None:
    """A saved profile reads back equal to what was written."""
    p = sample_profile()
    assert Profile.from_json(p.to_json()) == p


def test_json_holds_counts_not_percentages() -> None:
    """Counts are integers; nothing in the document is a share."""
    doc = json.loads(sample_profile().to_json())
    assert doc["schema"] == "profila.profile" and doc["version"] == 1
    assert doc["samples"]["total"] == 150 and doc["ticks"] == 150
    assert doc["lines"][0] == {
        "file": "/x/d.py",
        "line": 17,
        "function": "dither",
        "self": 90,
        "total": 100,
    }
    assert "percent" not in json.dumps(doc)


def test_other_documents_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="not a profila profile"):
        Profile.from_json('{"a": 1}')
    doc = json.loads(sample_profile().to_json())
    doc["version"] = 99
    with pytest.raises(ValueError, match="version 99"):
        Profile.from_json(json.dumps(doc))
