import hashlib
import os
from pathlib import Path

import pytest

from profila.model import FunctionCounts, LineCounts, Profile, SourceFingerprint, ThreadCounts
from profila.render.text import render

SNAPSHOTS = Path(__file__).with_name("snapshots")
SOURCE = """\
from numba import njit


@njit
def kernel(a):
    total = 0.0
    # a comment
    for x in a:
        total += x * x

    return total
"""


def make_profile(path: Path, fingerprint: str | None = None) -> Profile:
    file = str(path)
    return Profile(
        command=["kernel.py", "arg with space"],
        rate_hz=100.0,
        duration_s=2.0,
        exit_code=0,
        debuginfo="full",
        sampler="perf",
        samples={
            "total": 200,
            "numba": 180,
            "python": 10,
            "compile": 5,
            "native": 3,
            "idle": 2,
            "bad": 0,
        },
        lines=[
            LineCounts(file, 8, "kernel", 30, 40),
            LineCounts(file, 9, "kernel", 140, 150),
            LineCounts(file, 11, "kernel", 10, 10),
        ],
        functions=[FunctionCounts(file, "kernel", 180, 180)],
        threads=[ThreadCounts(1, 198, 2)],
        sources={file: SourceFingerprint(fingerprint)},
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "kernel.py"
    path.write_text(SOURCE)
    return path


def normalise(text: str, path: Path) -> str:
    """Independent of where pytest put the file (column padding follows the path's length)."""
    lines = text.replace(str(path), "<kernel.py>").splitlines()
    return "\n".join(line.rstrip() for line in lines) + "\n"


def test_plain_report_matches_snapshot(source: Path) -> None:
    """The plain-text report: header, function table, hot lines with context; comments and blank
    lines carry no numbers. (Set PROFILA_UPDATE_SNAPSHOTS=1 to rewrite the snapshot.)"""
    fingerprint = hashlib.sha256(source.read_bytes()).hexdigest()
    text = normalise(render(make_profile(source, fingerprint), color=False, width=100), source)
    snapshot = SNAPSHOTS / "report_plain.txt"
    if os.environ.get("PROFILA_UPDATE_SNAPSHOTS"):
        snapshot.write_text(text)
    assert text == snapshot.read_text()


def test_plain_report_has_no_control_codes(source: Path) -> None:
    assert "\x1b" not in render(make_profile(source), color=False)


def test_colour_report_uses_control_codes(source: Path) -> None:
    assert "\x1b[" in render(make_profile(source), color=True)


def test_changed_source_is_not_printed_beside_old_counts(source: Path) -> None:
    """After an edit, the report says so and shows only line numbers and counts."""
    profile = make_profile(source, hashlib.sha256(source.read_bytes()).hexdigest())
    source.write_text(SOURCE.replace("total += x * x", "total += x"))
    text = render(profile)
    assert "changed since the run" in text
    assert "total += x" not in text
    assert " 70.7% " in text  # line 9's self share (140 of 198 running) is still shown


def test_missing_source_is_reported(source: Path) -> None:
    profile = make_profile(source)
    source.unlink()
    assert "source file not found" in render(profile)


def test_empty_profile_renders() -> None:
    """Zero samples is a valid, if short, report."""
    empty = Profile(
        command=["-c", "pass"],
        rate_hz=100,
        duration_s=0.01,
        exit_code=0,
        debuginfo="full",
        sampler="perf",
        samples={"total": 0},
    )
    text = render(empty)
    assert "0 samples" in text and "No samples landed in Numba-compiled code." in text


def test_names_and_commands_are_not_read_as_markup(source: Path) -> None:
    """Square brackets in a function name or the command are printed as they are."""
    profile = make_profile(source)
    profile.functions.append(FunctionCounts("<unknown>", "kernel [cpython wrapper]", 1, 1))
    profile.command.append("[bold]x[/bold]")
    text = render(profile)
    assert "kernel [cpython wrapper]" in text and "[bold]x[/bold]" in text
