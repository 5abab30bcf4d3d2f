"""Running profila for real: gdb, perf_event_open, a Python target."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.e2e


@dataclass
class Run:
    returncode: int
    stdout: bytes
    stderr: bytes
    profile: dict[str, Any] | None

    def line(self, path: Path, text: str) -> dict[str, int]:
        """Self and total counts of the line of ``path`` whose stripped text is ``text``."""
        numbers = [
            i for i, src in enumerate(path.read_text().splitlines(), 1) if src.strip() == text
        ]
        assert len(numbers) == 1, f"{text!r} is not exactly one line of {path}"
        return self.line_number(path, numbers[0])

    def line_number(self, path: Path, number: int) -> dict[str, int]:
        assert self.profile is not None
        counts = {"self": 0, "total": 0}
        for x in self.profile["lines"]:
            if x["file"] == str(path) and x["line"] == number:
                counts["self"] += x["self"]
                counts["total"] += x["total"]
        return counts


def have_gdb() -> bool:
    return shutil.which("gdb") is not None


def profila(
    *args: str,
    tmp_path: Path,
    stdin: bytes = b"",
    timeout: float = 180,
    env: dict[str, str] | None = None,
    json_out: bool = True,
    options: tuple[str, ...] = (),
) -> Run:
    """Run ``python -m profila annotate [--no-color -o p.json] ARGS`` and load the profile."""
    if not have_gdb():
        pytest.skip("gdb is not installed")
    out = tmp_path / "profile.json"
    flags = ["--no-color", "-o", str(out)] if json_out else ["--no-color"]
    argv = [sys.executable, "-m", "profila", "annotate", *flags, *options, "--", *args]
    proc = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    if b"perf_event_open" in proc.stderr and proc.returncode == 3:
        pytest.skip(proc.stderr.decode().strip())
    profile = json.loads(out.read_text()) if json_out and out.exists() else None
    return Run(proc.returncode, proc.stdout, proc.stderr, profile)
