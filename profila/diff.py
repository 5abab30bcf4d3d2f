"""Comparing two profiles: shares of lines and functions before and after, matched by source.

Addresses and line numbers change between runs, so rows are matched by what they are:

- A file of one profile is paired with the file of the other that has the longest common tail of
  path components (the same path, or the same path relative to each run's own checkout: at least
  the same file name). Paired files count as one file.
- A line matches the line of the paired file with the same function and the same stripped source
  text, wherever it moved; a function matches the function of the same name in the paired file.
- Lines and functions left unmatched then match across differently named files by function name
  and source text (function name alone for functions) when that is unambiguous on both sides:
  this compares ``dither.py`` with its rewrite ``dither_optimised.py``.
- Lines whose text is unknown (an older profile whose source file changed or vanished) match by
  line number within the paired file.

Every comparison is of shares (percentage points of the run's running samples), never of
absolute counts: runs differ in length and machines in speed. The sampling error of a share p
measured on n samples is the binomial standard error sqrt(p(1-p)/n); a change smaller than twice
the combined error of its two shares is within noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath

from profila.model import Profile
from profila.sources import read_source

NOISE_SIGMAS = 2.0  # a change within this many standard errors is called noise


@dataclass(frozen=True, slots=True)
class Counts:
    """One side of a row: where it was and its counts (all zero when absent on that side)."""

    file: str | None = None
    line: int | None = None
    self: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class Row:
    """A line (``text`` set or ``line`` known) or a function (``is_function``) in both runs."""

    is_function: bool
    function: str
    text: str | None
    base: Counts
    new: Counts


@dataclass(frozen=True)
class Diff:
    base: Profile
    new: Profile
    lines: list[Row]
    functions: list[Row]

    def share(self, count: int, base_side: bool) -> float:
        """A count as percentage points of its run's running samples."""
        running = (self.base if base_side else self.new).running
        return 100.0 * count / running if running else 0.0

    def change(self, row: Row) -> float:
        """Change of the row's total share, in percentage points (positive: grew)."""
        return self.share(row.new.total, False) - self.share(row.base.total, True)

    def self_change(self, row: Row) -> float:
        return self.share(row.new.self, False) - self.share(row.base.self, True)

    def error(self, row: Row) -> float:
        """Standard error of ``change(row)`` in percentage points (inf without samples)."""
        return math.hypot(
            share_error(row.base.total, self.base.running),
            share_error(row.new.total, self.new.running),
        )

    def within_noise(self, row: Row) -> bool:
        return abs(self.change(row)) <= NOISE_SIGMAS * self.error(row)

    def grown(self, points: float) -> list[Row]:
        """Functions, then lines, whose total share grew by more than ``points``."""
        rows = [r for r in (*self.functions, *self.lines) if self.change(r) > points]
        return sorted(rows, key=lambda r: (not r.is_function, -self.change(r)))


def share_error(count: int, running: int) -> float:
    """Binomial standard error of the share count/running, in percentage points."""
    if running <= 0:
        return math.inf
    p = count / running
    return 100.0 * math.sqrt(p * (1.0 - p) / running)


def noise_floor(running: int) -> float:
    """The largest standard error any share of this run can have (at a share of 50%), in pp."""
    return share_error(running // 2, running) if running > 1 else math.inf


def chance_change(base_running: int, new_running: int) -> float:
    """The largest change of a share, in pp, that these sample counts can produce by chance
    (NOISE_SIGMAS combined standard errors at a 50% share); inf without samples."""
    return NOISE_SIGMAS * math.hypot(noise_floor(base_running), noise_floor(new_running))


def compare(base: Profile, new: Profile) -> Diff:
    files = _pair_files(_files(base), _files(new))
    lines = _match(
        _line_rows(base, lambda f: f),
        _line_rows(new, lambda f: files.get(f, f)),
        is_function=False,
    )
    functions = _match(
        _function_rows(base, lambda f: f),
        _function_rows(new, lambda f: files.get(f, f)),
        is_function=True,
    )
    diff = Diff(base, new, lines, functions)
    order = lambda r: (-abs(diff.change(r)), r.function, r.text or "")  # noqa: E731
    lines.sort(key=order)
    functions.sort(key=order)
    return diff


def _files(p: Profile) -> set[str]:
    return {x.file for x in p.lines} | {f.file for f in p.functions}


def _pair_files(base: set[str], new: set[str]) -> dict[str, str]:
    """new file -> the base file it is, by the longest common tail of path components."""
    pairs = {f: f for f in new & base}
    free_base = base - new
    for f in sorted(new - base):
        best, best_len = [], 0
        for b in free_base:
            n = _common_tail(f, b)
            if n > best_len:
                best, best_len = [b], n
            elif n == best_len and n:
                best.append(b)
        if len(best) == 1:
            pairs[f] = best[0]
            free_base.discard(best[0])
    return pairs


def _common_tail(a: str, b: str) -> int:
    n = 0
    for x, y in zip(reversed(PurePath(a).parts), reversed(PurePath(b).parts), strict=False):
        if x != y:
            break
        n += 1
    return n


# A row before matching: key (paired file, function, text or line number) -> counts.
_Key = tuple[str, str, str | int]
_Rows = dict[_Key, tuple[str | None, Counts]]
_FileKey = Callable[[str], str]  # a file -> the name it is matched under
_Loose = tuple[str, str | None]  # function, text: the key across differently named files


def _add(rows: _Rows, key: _Key, text: str | None, counts: Counts) -> None:
    # The same text twice in one function: the lines are compared together.
    if key in rows:
        old = rows[key][1]
        counts = Counts(old.file, old.line, old.self + counts.self, old.total + counts.total)
    rows[key] = (text, counts)


def _line_rows(p: Profile, file_key: _FileKey) -> _Rows:
    rows: _Rows = {}
    texts = {x.file: _texts_of(p, x.file) for x in p.lines}
    for x in p.lines:
        text = texts[x.file].get(x.line)
        key: _Key = (file_key(x.file), x.function, x.line if text is None else text)
        _add(rows, key, text, Counts(x.file, x.line, x.self, x.total))
    return rows


def _texts_of(p: Profile, path: str) -> dict[int, str]:
    """The profile's stored texts of a file's lines, else those of the unchanged file."""
    if path in p.line_text:
        return p.line_text[path]
    source, _ = read_source(p, path)
    return {n: text.strip() for n, text in enumerate(source or [], 1)}


def _function_rows(p: Profile, file_key: _FileKey) -> _Rows:
    rows: _Rows = {}
    for f in p.functions:
        _add(rows, (file_key(f.file), f.function, ""), None, Counts(f.file, None, f.self, f.total))
    return rows


def _match(base: _Rows, new: _Rows, *, is_function: bool) -> list[Row]:
    rows: list[Row] = []
    for key in base.keys() & new.keys():
        rows.append(Row(is_function, key[1], base[key][0], base[key][1], new[key][1]))
    left = {k: v for k, v in base.items() if k not in new}
    right = {k: v for k, v in new.items() if k not in base}
    # Across differently named files: by (function, text) when unique on both sides.
    loose_left = _unique_by(left, is_function)
    loose_right = _unique_by(right, is_function)
    for loose, lkey in loose_left.items():
        rkey = loose_right.get(loose)
        if rkey is None:
            continue
        rows.append(Row(is_function, lkey[1], left[lkey][0], left[lkey][1], right[rkey][1]))
        del left[lkey], right[rkey]
    rows.extend(Row(is_function, k[1], text, c, Counts()) for k, (text, c) in left.items())
    rows.extend(Row(is_function, k[1], text, Counts(), c) for k, (text, c) in right.items())
    return rows


def _unique_by(rows: _Rows, is_function: bool) -> dict[_Loose, _Key]:
    """(function, text) -> row key, for the keys that only one row has (lines without text and
    blank lines never match loosely)."""
    seen: dict[_Loose, _Key | None] = {}
    for key, (text, _) in rows.items():
        if is_function or text:
            loose = (key[1], text)
            seen[loose] = None if loose in seen else key
    return {loose: key for loose, key in seen.items() if key is not None}
