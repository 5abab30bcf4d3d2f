"""The article's findings, asserted as ratios on the example programs under real gdb.

Each test says where the time should go; none asserts an exact percentage.
"""

from __future__ import annotations

import tokenize
from pathlib import Path

import pytest

from .conftest import EXAMPLES, Run, profila

DITHER = EXAMPLES / "dither"
DIFFUSION = [
    "result[y, x + 1] += error * 7 / 16",
    "result[y + 1, x - 1] += error * 3 / 16",
    "result[y + 1, x] += error * 5 / 16",
    "result[y + 1, x + 1] += error * 1 / 16",
]


def quiet_lines(path: Path) -> list[int]:
    """Blank lines and lines holding only a comment: no code, so never any samples."""
    code_lines: set[int] = set()
    with path.open("rb") as f:
        for tok in tokenize.tokenize(f.readline):
            if tok.type not in (
                tokenize.COMMENT,
                tokenize.NL,
                tokenize.NEWLINE,
                tokenize.ENCODING,
                tokenize.ENDMARKER,
                tokenize.INDENT,
                tokenize.DEDENT,
            ):
                code_lines.update(range(tok.start[0], tok.end[0] + 1))
    count = len(path.read_text().splitlines())
    return [n for n in range(1, count + 1) if n not in code_lines]


def assert_quiet_lines_empty(run: Run, path: Path) -> None:
    for n in quiet_lines(path):
        assert run.line_number(path, n) == {"self": 0, "total": 0}, f"line {n} of {path.name}"


@pytest.mark.parametrize(
    "sampler, debuginfo", [("perf", "lines"), ("perf", "full"), ("gdb", "full")]
)
def test_naive_dither_time_goes_to_rounding(tmp_path: Path, sampler: str, debuginfo: str) -> None:
    """np.round dominates the naive version: the rounding line is the hottest line. In the
    NUMBA_DEBUGINFO=1 build np.round's implementation is a real call: it shows up as library
    code (self) while adding to the rounding line's total. In the line-tables build it is
    inlined without an inline record, so its time is the rounding line's own. Both samplers
    (perf_event_open, and stops under gdb) agree."""
    path = DITHER / "dither.py"
    run = profila(
        str(path),
        "2",
        tmp_path=tmp_path,
        # perf samples cheaply: 500 Hz gives enough samples for the ratios on a busy machine.
        options=("--sampler", sampler, "--debuginfo", debuginfo)
        + (("--rate", "500") if sampler == "perf" else ()),
    )
    assert run.returncode == 0, run.stderr.decode()
    assert run.profile is not None
    assert (run.profile["sampler"], run.profile["debuginfo"]) == (sampler, debuginfo)
    rounding = run.line(path, "new_value = np.uint8(np.round(old_value / 255)) * 255")
    others = [
        x["total"]
        for x in run.profile["lines"]
        if x["file"] == str(path) and x["total"] != rounding["total"]
    ]
    assert rounding["total"] > 1.5 * max(others)
    if debuginfo == "full":
        library_self = sum(x["self"] for x in run.profile["lines"] if "/numba/" in x["file"])
        assert library_self > 0
        assert rounding["total"] >= rounding["self"] + library_self * 0.5
    assert_quiet_lines_empty(run, path)


def test_optimised_dither_first_diffusion_line_is_hottest(tmp_path: Path) -> None:
    """Without np.round, the x+1 error line (a dependency from one pixel to the next) is the
    hottest of the four error-diffusion lines."""
    path = DITHER / "dither_optimised.py"
    run = profila(str(path), "2", tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr.decode()
    first, *rest = (run.line(path, text)["total"] for text in DIFFUSION)
    assert first > max(rest)
    assert_quiet_lines_empty(run, path)


def test_constant_folding_leaves_folded_lines_empty(tmp_path: Path) -> None:
    """LLVM folds the three constant additions into one: two of the three lines own no
    instructions, so they get no samples while the loop body does."""
    path = EXAMPLES / "constant_folding" / "add.py"
    run = profila(str(path), "2", tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr.decode()
    assert run.line(path, "orig += 123_000_000") == {"self": 0, "total": 0}
    assert run.line(path, "orig += 456_000") == {"self": 0, "total": 0}
    body = sum(
        run.line(path, text)["total"] for text in ("orig = arr[i]", "orig += 789", "arr[i] = orig")
    )
    assert body > 0
    assert_quiet_lines_empty(run, path)
