"""Comparing two profiles: matching by source text, shares, sampling error, exit status."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from profila.cli import main
from profila.diff import compare, share_error
from profila.model import FunctionCounts, LineCounts, Profile

ROUND = "new_value = np.uint8(np.round(old_value / 255)) * 255"
THRESHOLD = "new_value = 0 if old_value < 128 else 255"
DIFFUSE = "result[y, x + 1] += error * 7 / 16"


def profile(
    lines: list[tuple[str, int, str, int, str]], running: int, function_total: int | None = None
) -> Profile:
    """lines: (file, line, function, count, text); every count is both self and total."""
    numba = sum(x[3] for x in lines)
    texts: dict[str, dict[int, str]] = {}
    for file, n, _, _, text in lines:
        texts.setdefault(file, {})[n] = text
    functions = []
    for file, function in sorted({(x[0], x[2]) for x in lines}):
        own = sum(x[3] for x in lines if (x[0], x[2]) == (file, function))
        functions.append(FunctionCounts(file, function, own, function_total or own))
    return Profile(
        command=["bench.py"],
        rate_hz=100.0,
        duration_s=running / 100,
        exit_code=0,
        debuginfo="lines",
        sampler="perf",
        samples={"total": running, "numba": numba, "python": running - numba, "idle": 0},
        lines=[LineCounts(f, n, fn, c, c) for f, n, fn, c, _ in lines],
        functions=functions,
        line_text=texts,
    )


def test_a_line_that_moved_still_matches_by_its_text() -> None:
    """Code inserted above a line moves its number, not its identity; shares are compared in
    percentage points of each run's running samples, so run length does not matter."""
    base = profile([("/a/bench.py", 10, "k", 50, DIFFUSE)], running=100)
    new = profile([("/a/bench.py", 14, "k", 100, DIFFUSE)], running=400)
    d = compare(base, new)
    [row] = d.lines
    assert (row.base.line, row.new.line) == (10, 14)
    assert d.change(row) == pytest.approx(25.0 - 50.0)


def test_files_pair_by_their_path_within_each_checkout() -> None:
    """The same file in two checkouts (different roots) is one file."""
    base = profile([("/ci/main/src/bench.py", 5, "k", 10, "x = 1")], running=100)
    new = profile([("/ci/branch/src/bench.py", 5, "k", 30, "x = 1")], running=100)
    [row] = compare(base, new).lines
    assert row.base.file and row.new.file


def test_renamed_file_matches_by_function_and_text() -> None:
    """dither.py against its rewrite dither_optimised.py: the rounding line has no counterpart
    (gone), the threshold line is new, and the unchanged diffusion line is one row that grew."""
    base = profile(
        [("/e/dither.py", 39, "dither", 60, ROUND), ("/e/dither.py", 45, "dither", 10, DIFFUSE)],
        running=100,
    )
    new = profile(
        [
            ("/e/dither_optimised.py", 43, "dither", 20, THRESHOLD),
            ("/e/dither_optimised.py", 49, "dither", 30, DIFFUSE),
        ],
        running=100,
    )
    d = compare(base, new)
    rows = {r.text: r for r in d.lines}
    assert set(rows) == {ROUND, THRESHOLD, DIFFUSE}
    assert rows[ROUND].new.file is None and d.change(rows[ROUND]) == pytest.approx(-60)
    assert rows[THRESHOLD].base.file is None
    assert (rows[DIFFUSE].base.line, rows[DIFFUSE].new.line) == (45, 49)
    assert d.change(rows[DIFFUSE]) == pytest.approx(20)
    [function] = d.functions
    assert function.base.file == "/e/dither.py" and function.new.file == "/e/dither_optimised.py"
    assert d.lines[0].text == ROUND  # sorted by size of change


def test_ambiguous_text_across_files_is_not_matched() -> None:
    """The same function and text in two other files: no guessing which one it is."""
    base = profile([("/a/x.py", 1, "f", 5, "i += 1"), ("/a/z.py", 9, "f", 5, "i += 1")], 100)
    new = profile([("/a/y.py", 1, "f", 5, "i += 1")], 100)
    assert sorted((r.base.total, r.new.total) for r in compare(base, new).lines) == [
        (0, 5),
        (5, 0),
        (5, 0),
    ]


def test_same_text_twice_in_a_function_is_one_row() -> None:
    base = profile([("/a/x.py", 1, "f", 5, "i += 1"), ("/a/x.py", 9, "f", 5, "i += 1")], 100)
    new = profile([("/a/x.py", 2, "f", 4, "i += 1")], 100)
    assert [(r.base.total, r.new.total) for r in compare(base, new).lines] == [(10, 4)]


def test_sampling_error_is_the_binomial_standard_error() -> None:
    assert share_error(50, 100) == pytest.approx(5.0)
    assert share_error(0, 100) == 0.0
    assert math.isinf(share_error(0, 0))
    base = profile([("/a/b.py", 1, "k", 50, "y = 2")], running=100)
    new = profile([("/a/b.py", 1, "k", 52, "y = 2")], running=100)
    d = compare(base, new)
    [row] = d.lines
    assert d.error(row) == pytest.approx(math.hypot(5.0, share_error(52, 100)))
    assert d.within_noise(row)


def test_profiles_without_line_text_read_unchanged_sources(tmp_path: Path) -> None:
    """An older profile (no line_text) takes the text from the file if it did not change."""
    src = tmp_path / "bench.py"
    src.write_text("a = 1\nb = 2\n")
    base = profile([(str(src), 2, "k", 10, "b = 2")], running=100)
    base = Profile(**{**base.__dict__, "line_text": {}})
    new = profile([(str(src), 1, "k", 10, "b = 2")], running=100)
    [row] = compare(base, new).lines
    assert (row.base.line, row.new.line) == (2, 1)


def write(tmp_path: Path, name: str, p: Profile) -> str:
    path = tmp_path / name
    path.write_text(p.to_json())
    return str(path)


def test_fail_above_exits_1_and_names_what_grew(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write(tmp_path, "b.json", profile([("/a/b.py", 3, "k", 10, DIFFUSE)], 1000))
    new = write(tmp_path, "n.json", profile([("/a/b.py", 3, "k", 200, DIFFUSE)], 1000))
    assert main(["diff", base, new, "--fail-above", "5"]) == 1
    err = capsys.readouterr().err
    assert "regression: line" in err and DIFFUSE in err and "+19.0 pp" in err
    assert "regression: function k" in err
    assert main(["diff", base, new, "--fail-above", "20"]) == 0
    assert main(["diff", base, new]) == 0


def test_json_diff_for_tools(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "b.json", profile([("/a/b.py", 3, "k", 10, DIFFUSE)], 1000))
    new = write(tmp_path, "n.json", profile([("/a/b.py", 4, "k", 200, DIFFUSE)], 1000))
    assert main(["diff", base, new, "--format", "json", "--fail-above", "5"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "profila.diff" and doc["version"] == 1
    [line] = doc["lines"]
    assert line["text"] == DIFFUSE and line["change_pp"] == pytest.approx(19.0)
    assert (line["base"]["line"], line["new"]["line"]) == (3, 4)
    assert line["within_noise"] is False
    assert {r["kind"] for r in doc["regressions"]} == {"line", "function"}


def test_text_diff_has_the_runs_and_the_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write(tmp_path, "b.json", profile([("/a/b.py", 3, "k", 10, DIFFUSE)], 1000))
    new = write(tmp_path, "n.json", profile([("/a/b.py", 3, "k", 20, DIFFUSE)], 500))
    assert main(["diff", base, new]) == 0
    out = capsys.readouterr().out
    assert "base: 10.00 s (10.00 s on CPU), 1000 running samples" in out
    assert "new: 5.00 s (5.00 s on CPU), 500" in out
    assert "1.0%   4.0%    +3.0" in out and DIFFUSE in out


def test_too_few_samples_are_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With 20 samples a share can move by 20 pp by chance: the user is told so."""
    base = write(tmp_path, "b.json", profile([("/a/b.py", 3, "k", 10, DIFFUSE)], 20))
    new = write(tmp_path, "n.json", profile([("/a/b.py", 3, "k", 10, DIFFUSE)], 20))
    assert main(["diff", base, new, "--fail-above", "5"]) == 0
    assert "too few samples for --fail-above 5" in capsys.readouterr().err


def test_unreadable_profile_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    assert main(["diff", str(bad), str(bad)]) == 2
    assert "is not a readable profila profile" in capsys.readouterr().err
    assert main(["diff", str(tmp_path / "none.json"), str(bad)]) == 2


def test_profiles_without_samples_diff_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Zero running samples: no rows, no division by zero, and a warning that nothing can be
    concluded."""
    empty = write(tmp_path, "e.json", profile([], running=0))
    assert main(["diff", empty, empty, "--fail-above", "5"]) == 0
    out, err = capsys.readouterr()
    assert "none: no samples in Numba-compiled code in either run" in out
    assert "too few samples" in err
    assert main(["diff", empty, empty, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["lines"] == [] and doc["base"]["max_sampling_error_pp"] is None
