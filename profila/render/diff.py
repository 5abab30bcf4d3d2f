"""A diff of two profiles, as text for people and as JSON (schema ``profila.diff``) for tools."""

from __future__ import annotations

import json
import math
import shlex
from typing import Any

from profila.diff import NOISE_SIGMAS, Counts, Diff, Row, chance_change, noise_floor
from profila.model import Profile
from profila.render.paths import display_path

DIFF_SCHEMA = "profila.diff"
DIFF_VERSION = 1
TEXT_WIDTH = 60  # source text is cut to this many characters in the text report


def render_text(diff: Diff, names: tuple[str, str], *, limit: int = 25) -> str:
    out: list[str] = [f"profila diff: {names[0]} -> {names[1]}", ""]
    for label, p in (("base", diff.base), ("new", diff.new)):
        out.append(f"{label:>4}: {_run_summary(p)}")
    floors = (noise_floor(diff.base.running), noise_floor(diff.new.running))
    chance = chance_change(diff.base.running, diff.new.running)
    if math.isinf(chance):
        out.append("sampling error: a run has fewer than 2 running samples: nothing to conclude")
    else:
        out.append(
            f"sampling error: at most ±{_pp(floors[0])} (base) and ±{_pp(floors[1])} (new) per "
            f"share, so a change under {chance:.1f} pp can be chance; ~ marks changes within "
            f"{NOISE_SIGMAS:g} standard errors"
        )
    out.append("")
    for title, rows in (("functions", diff.functions), ("lines", diff.lines)):
        out.append(f"{title} by change of total share (percentage points of running samples):")
        if not rows:
            out.append("  none: no samples in Numba-compiled code in either run")
        else:
            out.append(f"  {'base':>6} {'new':>6} {'change':>7} {'±err':>5}    where")
            out.extend(_text_row(diff, r) for r in rows[:limit])
            if len(rows) > limit:
                rest = max(abs(diff.change(r)) for r in rows[limit:])
                out.append(f"  ... {len(rows) - limit} more, each changed by {rest:.1f} pp or less")
        out.append("")
    return "\n".join(out)


def _run_summary(p: Profile) -> str:
    numba = p.samples.get("numba", 0)
    numba_share = f"{100.0 * numba / p.running:.1f}%" if p.running else "n/a"
    return (
        f"{p.duration_s:.2f} s ({cpu_seconds(p):.2f} s on CPU), {p.running} running samples at "
        f"{p.rate_hz:g} Hz, Numba {numba_share}, python {shlex.join(p.command)}"
    )


def cpu_seconds(p: Profile) -> float:
    """Thread time on the CPU (running samples at the sampling rate): for a fixed amount of
    work, less is faster, whatever else the machine was doing."""
    return p.running / p.rate_hz if p.rate_hz > 0 else 0.0


def _pp(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.1f} pp"


def _share(diff: Diff, counts: Counts, base_side: bool) -> str:
    if counts.file is None:
        return "-"
    return f"{diff.share(counts.total, base_side):.1f}%"


def _where(row: Row) -> str:
    side = row.new if row.new.file is not None else row.base
    path = display_path(side.file or "?")
    if row.is_function:
        return f"{row.function}  {path}"
    before, after = (str(c.line) if c.line is not None else "" for c in (row.base, row.new))
    lines = before if before == after else f"{before}->{after}"
    text = row.text if row.text is not None else "(source not available)"
    if len(text) > TEXT_WIDTH:
        text = text[: TEXT_WIDTH - 1] + "…"
    return f"{path}:{lines} {row.function}: {text}"


def _text_row(diff: Diff, row: Row) -> str:
    err = diff.error(row)
    noise = "~" if diff.within_noise(row) else " "
    return (
        f"  {_share(diff, row.base, True):>6} {_share(diff, row.new, False):>6} "
        f"{diff.change(row):+7.1f} {'inf' if math.isinf(err) else f'{err:.1f}':>5} {noise}  "
        f"{_where(row)}"
    )


def describe(diff: Diff, row: Row) -> str:
    """One row for a failure message: what it is and how much it grew."""
    return (
        f"{'function' if row.is_function else 'line'} {_where(row)} grew "
        f"{diff.change(row):+.1f} pp ({_share(diff, row.base, True)} -> "
        f"{_share(diff, row.new, False)}, sampling error ±{diff.error(row):.1f} pp"
        f"{', within noise' if diff.within_noise(row) else ''})"
    )


def render_json(diff: Diff, *, fail_above: float | None = None) -> str:
    doc: dict[str, Any] = {
        "schema": DIFF_SCHEMA,
        "version": DIFF_VERSION,
        "base": _json_run(diff.base),
        "new": _json_run(diff.new),
        "noise_sigmas": NOISE_SIGMAS,
        "functions": [_json_row(diff, r) for r in diff.functions],
        "lines": [_json_row(diff, r) for r in diff.lines],
        "fail_above_pp": fail_above,
        "regressions": (
            [_json_row(diff, r) for r in diff.grown(fail_above)] if fail_above is not None else []
        ),
    }
    return json.dumps(doc, indent=1) + "\n"


def _json_run(p: Profile) -> dict[str, Any]:
    return {
        "command": p.command,
        "duration_s": p.duration_s,
        "cpu_s": round(cpu_seconds(p), 6),
        "rate_hz": p.rate_hz,
        "running": p.running,
        "numba": p.samples.get("numba", 0),
        "max_sampling_error_pp": _finite(noise_floor(p.running)),
    }


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 3)


def _json_row(diff: Diff, row: Row) -> dict[str, Any]:
    def side(c: Counts, base_side: bool) -> dict[str, Any] | None:
        if c.file is None:
            return None
        return {
            "file": c.file,
            "line": c.line,
            "self": c.self,
            "total": c.total,
            "self_share_pp": round(diff.share(c.self, base_side), 3),
            "total_share_pp": round(diff.share(c.total, base_side), 3),
        }

    doc: dict[str, Any] = {"kind": "function" if row.is_function else "line"}
    doc["function"] = row.function
    if not row.is_function:
        doc["text"] = row.text
    doc["base"] = side(row.base, True)
    doc["new"] = side(row.new, False)
    doc["change_pp"] = round(diff.change(row), 3)
    doc["self_change_pp"] = round(diff.self_change(row), 3)
    doc["error_pp"] = _finite(diff.error(row))
    doc["within_noise"] = diff.within_noise(row)
    return doc
