"""The assembly view on the constant-folding example, under real gdb.

LLVM folds ``+ 123_000_000``, ``+ 456_000`` and ``+ 789`` into one addition of 123456789: the
constant must be findable in the instructions of a line that survived (the addition, or the
store LLVM fused it into), the two folded lines must own no instruction, and the samples must
sit in the loops of the machine code. The saved profile must re-render the same view.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import EXAMPLES, ROOT, profila

ADD = EXAMPLES / "constant_folding" / "add.py"


def line_of(text: str) -> int:
    (number,) = [i for i, s in enumerate(ADD.read_text().splitlines(), 1) if s.strip() == text]
    return number


def loops(record: dict[str, Any]) -> list[tuple[int, int]]:
    """Address ranges [target, jump] of the backward jumps: the machine code's loops."""
    out = []
    for address, text, _, _ in record["instructions"]:
        if text.startswith("j") and "<+0x" in text:
            target = record["start"] + int(text.split("<+")[1].rstrip(">"), 16)
            if target <= address:
                out.append((target, address))
    return out


def asm_part(stdout: bytes) -> str:
    text = stdout.decode()
    return text[text.index("\nadd  ") :]


@pytest.mark.parametrize("sampler", ["perf", "gdb"])
def test_constant_folding_in_the_assembly_view(tmp_path: Path, sampler: str) -> None:
    """(With gdb, the target's JIT objects are all unregistered by the time it is held at exit:
    the records must come from what was noted while sampling.)"""
    options = ("--asm=add", "--sampler", sampler)
    run = profila(str(ADD), "1.5", tmp_path=tmp_path, options=options)
    assert run.returncode == 0, run.stderr.decode()
    assert run.profile is not None
    (record,) = [r for r in run.profile["asm"] if r["display_name"] == "add"]
    files = record["files"]
    instructions = [
        (address, text, files[i] if i >= 0 else None, line)
        for address, text, i, line in record["instructions"]
    ]
    here = {line for _, _, file, line in instructions if file == str(ADD)}

    # The folded constant, in decimal, on a line that owns the surviving addition.
    survivors = {line_of("orig += 789"), line_of("arr[i] = orig")}
    assert any("123456789" in text and line in survivors for _, text, _, line in instructions)
    # The two folded lines own no instruction.
    assert line_of("orig += 123_000_000") not in here
    assert line_of("orig += 456_000") not in here
    assert survivors <= here

    # The samples are in the loops: far more inside them than in the code around them.
    counts = {address: n for address, n in record["counts"]}
    ranges = loops(record)
    assert ranges
    inside = sum(n for a, n in counts.items() if any(lo <= a <= hi for lo, hi in ranges))
    assert record["samples"] == sum(counts.values()) > 0
    assert inside > 4 * (record["samples"] - inside)

    # The view is printed after the report, with source headers.
    view = asm_part(run.stdout)
    assert (
        f"add.py:{line_of('orig += 789')}  orig += 789" in view
        and "samples in this function" in view
    )

    # `show --asm` of the saved profile prints the same view, with no target.
    shown = subprocess.run(
        [sys.executable, "-m", "profila", "show", str(tmp_path / "profile.json"), "--asm=add"],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert asm_part(shown.stdout) == view
