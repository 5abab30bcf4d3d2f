"""The assembly view rendered from a hand-built profile (no target, no capstone)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

from profila.asm import AsmFunction, AsmInstruction
from profila.model import Profile
from profila.render.asm import CONTEXT, render, select

from .test_render_text import SNAPSHOTS, SOURCE, make_profile, normalise

START = 0x7F0000001000


def kernel_record(path: Path) -> AsmFunction:
    """A loop on lines 8-9 of SOURCE, with 24 lines of filler after it so that hot regions
    leave instructions out."""
    file = str(path)
    rows = [
        (0x0, "pushq %rbp", 5),
        (0x1, "xorl %eax, %eax", 6),
        (0x3, "vxorpd %xmm0, %xmm0, %xmm0", 6),
        (0x7, "testq %rsi, %rsi", 8),
        (0xA, "jle <+0x30>", 8),
        (0x10, "vmovsd (%rdi,%rax,8), %xmm1", 9),
        (0x15, "vmulsd %xmm1, %xmm1, %xmm1", 9),
        (0x19, "vaddsd %xmm1, %xmm0, %xmm0", 9),
        (0x1D, "incq %rax", 8),
        (0x20, "cmpq %rax, %rsi", 8),
        (0x23, "jne <+0x10>", 8),
        (0x30, "popq %rbp", 11),
        (0x31, "retq", 11),
    ]
    rows += [(0x40 + i, "nop", 11) for i in range(24)]
    instructions = tuple(AsmInstruction(START + a, t, file, n) for a, t, n in rows)
    counts = {START + 0x15: 10, START + 0x19: 90, START + 0x23: 20, START + 0x40 + 12: 1}
    return AsmFunction("_Z6kernel", "kernel", file, 5, START, START + 0x58, instructions, counts)


def asm_profile(path: Path, fingerprint: str | None = None) -> Profile:
    wrapper = AsmFunction(
        "_Z6kernel_wrap",
        "kernel [cpython wrapper]",
        str(path),
        5,
        START + 0x100,
        START + 0x101,
        (AsmInstruction(START + 0x100, "retq", None, 0),),
        {START + 0x100: 1},
    )
    return dataclasses.replace(make_profile(path, fingerprint), asm=[kernel_record(path), wrapper])


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "kernel.py"
    path.write_text(SOURCE)
    return path


def test_hot_regions_match_snapshot(source: Path) -> None:
    """Hot instructions with context, a source header at each change of line, counts and
    shares of the function's samples. (PROFILA_UPDATE_SNAPSHOTS=1 rewrites the snapshot.)"""
    fingerprint = hashlib.sha256(source.read_bytes()).hexdigest()
    profile = asm_profile(source, fingerprint)
    text = normalise(render(profile, select(profile), color=False, width=100), source)
    snapshot = SNAPSHOTS / "asm_plain.txt"
    if os.environ.get("PROFILA_UPDATE_SNAPSHOTS"):
        snapshot.write_text(text)
    assert text == snapshot.read_text()


def test_hot_view_leaves_out_cold_code_and_whole_view_does_not(source: Path) -> None:
    profile = asm_profile(source)
    record = profile.asm[0]
    hot = render(profile, [record])
    whole = render(profile, [record], whole=True)
    assert "pushq %rbp" not in hot and "⋮" in hot
    assert "pushq %rbp" in whole and "⋮" not in whole
    assert whole.count("nop") == 24 and hot.count("nop") == 2 + 2 * CONTEXT + 1
    assert "121 samples in this function" in hot


def test_source_header_each_time_the_line_changes(source: Path) -> None:
    text = render(asm_profile(source), [asm_profile(source).asm[0]], whole=True)
    headers = [line for line in text.splitlines() if "kernel.py:" in line and "0x" not in line]
    assert [h.split("kernel.py:")[1].split()[0] for h in headers] == ["5", "6", "8", "9", "8", "11"]
    assert any("total += x * x" in h for h in headers)


def test_changed_source_shows_numbers_only(source: Path) -> None:
    profile = asm_profile(source, hashlib.sha256(source.read_bytes()).hexdigest())
    source.write_text(SOURCE.replace("total += x * x", "total += x"))
    text = render(profile, select(profile))
    assert "kernel.py:9" in text and "total += x" not in text


def test_plain_has_no_control_codes_and_colour_has(source: Path) -> None:
    profile = asm_profile(source)
    assert "\x1b" not in render(profile, select(profile), color=False)
    assert "\x1b[" in render(profile, select(profile), color=True)


def test_selection_by_name_hottest_first(source: Path) -> None:
    """No name: the hottest functions; a name matches the display name or the symbol; a
    wrapper is found by its function's name only when nothing else has that name."""
    profile = asm_profile(source)
    assert [r.display_name for r in select(profile)] == ["kernel", "kernel [cpython wrapper]"]
    assert [r.display_name for r in select(profile, top=1)] == ["kernel"]
    assert [r.name for r in select(profile, "kernel")] == ["_Z6kernel"]
    assert [r.name for r in select(profile, "_Z6kernel_wrap")] == ["_Z6kernel_wrap"]
    assert select(profile, "nothing") == []
    only_wrapper = dataclasses.replace(profile, asm=profile.asm[1:])
    assert [r.name for r in select(only_wrapper, "kernel")] == ["_Z6kernel_wrap"]


def test_no_records_is_said_plainly(source: Path) -> None:
    """A profile from before the assembly view (or without Numba samples) says so."""
    profile = dataclasses.replace(asm_profile(source), asm=[])
    assert "the profile has no records" in render(profile, select(profile))
