"""One self-contained HTML page: run summary, each hot function's source with heat-coloured
self/total bars, cold stretches folded into <details>, and the assembly beside the source when
the profile has it. No network at view time: CSS and the little JavaScript are inline, and every
piece of text from the profile or the sources is escaped.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from profila import __version__
from profila.model import SAMPLE_CLASSES, FunctionCounts, LineCounts, Profile
from profila.render.common import hot_regions
from profila.render.paths import display_path
from profila.sources import read_source

CONTEXT = 2  # lines shown around hot lines; longer cold stretches are folded

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}
code,.src,.asm{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px}
table.summary td,table.summary th{padding:0 .8em 0 0;text-align:left}
td.num,th.num{text-align:right}
.bar{display:inline-block;height:.8em;background:#d9534f;vertical-align:middle}
.barbox{display:inline-block;width:5em;background:#f1f1f1;margin-left:.3em}
.row{display:grid;grid-template-columns:4.5em 5em 5em 9em 1fr;white-space:pre}
.heatbar{display:inline-block;position:relative;width:8em;height:.8em;background:#f1f1f1}
.heatbar .tot{position:absolute;left:0;top:0;bottom:0;background:#f0a8a6}
.heatbar .slf{position:absolute;left:0;top:0;bottom:0;background:#c9302c}
.row .n{color:#888;text-align:right;padding-right:.6em}
.row .s,.row .t{text-align:right;padding-right:.4em}
.head{color:#666;font-weight:bold}
details{margin:.1em 0}summary{color:#888;cursor:pointer}
.note{font-style:italic;color:#a15c00}
.pair{display:flex;gap:1.5em;align-items:flex-start;flex-wrap:wrap}
.pair>div{min-width:0;overflow-x:auto}
.asm .row{grid-template-columns:6em 5.5em minmax(22em,1fr) 9em;column-gap:.6em}
#hottest{outline:2px solid #d9534f}
.linked{outline:2px solid #337ab7}
"""

# Records a script error in the page itself (data-errors), so a headless test can see it.
_SCRIPT = """
window.addEventListener('error',function(e){document.body.dataset.errors=
  (document.body.dataset.errors||'')+e.message+';';});
document.addEventListener('DOMContentLoaded',function(){
  var b=document.getElementById('toggle-cold');
  if(b){b.addEventListener('click',function(){
    var all=document.querySelectorAll('details.cold'),open=b.dataset.open!=='1';
    all.forEach(function(d){d.open=open;});b.dataset.open=open?'1':'0';
    b.textContent=open?'fold cold lines':'unfold cold lines';});}
  // Pointing at an instruction outlines its source line in the same section.
  document.querySelectorAll('section').forEach(function(sec){
    sec.querySelectorAll('.asm .row[data-line]').forEach(function(r){
      function mark(on){
        sec.querySelectorAll('.src .row[data-line="'+r.dataset.line+'"]').forEach(
          function(x){x.classList.toggle('linked',on);});}
      r.addEventListener('mouseenter',function(){mark(true);});
      r.addEventListener('mouseleave',function(){mark(false);});});});
  document.body.dataset.rendered='yes';
});
"""


def render(profile: Profile) -> str:
    title = f"profila: python {shlex.join(profile.command)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style>",
        f"<script>{_SCRIPT}</script></head><body>",
        f"<h1>{escape(title)}</h1>",
        *_summary(profile),
    ]
    hottest = max(profile.lines, key=lambda x: (x.self, x.total), default=None)
    asm = _asm_by_function(getattr(profile, "asm", None))
    if profile.functions:
        parts.extend(_function_table(profile))
        parts.append('<p><button id="toggle-cold" type="button">unfold cold lines</button></p>')
        for number, f in enumerate(profile.functions):
            parts.extend(_function_section(profile, f, number, hottest, asm.pop(f.function, [])))
    else:
        parts.append("<p>No samples landed in Numba-compiled code.</p>")
    for name, entries in asm.items():  # assembly of functions without a source section
        parts.append(f"<h2>assembly: {escape(name)}</h2>")
        parts.extend(_asm_view(profile, entries))
    parts.append(f'<p style="color:#888">made by profila {escape(__version__)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _pct(count: int, total: int) -> float:
    return 100.0 * count / total if total else 0.0


def _bar(count: int, total: int) -> str:
    return (
        f'<span class="barbox"><span class="bar" style="width:{_pct(count, total):.1f}%">'
        "</span></span>"
    )


def _summary(p: Profile) -> list[str]:
    status = "?" if p.exit_code is None else str(p.exit_code)
    rows = [
        f"<p>{p.duration_s:.2f} s, {p.total} samples at {p.rate_hz:g} Hz on {len(p.threads)} "
        f"thread(s) (effective {p.effective_rate_hz:.1f} Hz), exit status {escape(status)}; "
        f"build: {escape(p.debuginfo)}; sampler: {escape(p.sampler)}</p>",
        '<table class="summary"><tr><th>class</th><th class="num">samples</th>'
        '<th class="num">share of running</th></tr>',
    ]
    for name in SAMPLE_CLASSES:
        if name == "idle":
            continue
        count = p.samples.get(name, 0)
        rows.append(
            f'<tr><td>{name}</td><td class="num">{count}</td>'
            f'<td class="num">{_pct(count, p.running):.1f}%{_bar(count, p.running)}</td></tr>'
        )
    rows.append("</table>")
    idle = p.samples.get("idle", 0)
    if idle:
        rows.append(
            f"<p>{idle} idle samples (threads blocked or sleeping) are not in the shares</p>"
        )
    return rows


def _function_table(p: Profile) -> list[str]:
    rows = [
        "<h2>Numba functions</h2>",
        '<table class="summary"><tr><th class="num">total</th><th class="num">self</th>'
        "<th>function</th><th>file</th></tr>",
    ]
    for number, f in enumerate(p.functions):
        rows.append(
            f'<tr><td class="num">{_pct(f.total, p.running):.1f}%{_bar(f.total, p.running)}</td>'
            f'<td class="num">{_pct(f.self, p.running):.1f}%</td>'
            f'<td><a href="#fn-{number}">{escape(f.function)}</a></td>'
            f"<td>{escape(display_path(f.file))}</td></tr>"
        )
    rows.append("</table>")
    return rows


def _heat(count: int, total: int) -> str:
    """A background from white (no samples) to red (the whole run on this line)."""
    fraction = min(1.0, count / total) if total else 0.0
    if fraction <= 0:
        return ""
    lightness = 96 - round(40 * min(1.0, fraction * 2.5))
    return f' style="background:hsl(5,80%,{lightness}%)"'


def _function_section(
    p: Profile,
    f: FunctionCounts,
    number: int,
    hottest: LineCounts | None,
    asm: list[Any],
) -> list[str]:
    out = [
        f'<section id="fn-{number}"><h2>{escape(f.function)} '
        f"<small><code>{escape(display_path(f.file))}</code> total "
        f"{_pct(f.total, p.running):.1f}% self {_pct(f.self, p.running):.1f}%</small></h2>"
    ]
    source_view = _source_view(p, f, hottest)
    if asm:
        out.append('<div class="pair"><div>')
        out.extend(source_view)
        out.append("</div><div>")
        out.extend(_asm_view(p, asm, f.file))
        out.append("</div></div>")
    else:
        out.extend(source_view)
    out.append("</section>")
    return out


def _source_view(p: Profile, f: FunctionCounts, hottest: LineCounts | None) -> list[str]:
    by_line = {x.line: x for x in p.lines if x.file == f.file and x.function == f.function}
    if not by_line:
        return ["<p>No line information for this function.</p>"]
    source, problem = read_source(p, f.file) if f.file.startswith("/") else (None, None)
    out = [f'<p class="note">{escape(problem)}</p>'] if problem else []
    known = p.line_text.get(f.file, {})
    last = len(source) if source is not None else max(by_line)
    out.append('<div class="src"><div class="row head"><span class="n">line</span>')
    out.append(
        '<span class="s">self</span><span class="t">total</span><span title="dark: self, '
        'light: total, as shares of running samples">bar</span><span>source</span></div>'
    )
    regions = hot_regions([n for n in by_line if n <= last], 1, last, CONTEXT)
    previous_end = regions[0][0] - 1 if regions else 0
    for start, end in regions:
        if source is not None and start > previous_end + 1:
            out.append(_cold(p, previous_end + 1, start - 1, source))
        for n in range(start, end + 1):
            if source is None and n not in by_line:
                continue
            text = source[n - 1] if source is not None else known.get(n, "")
            out.append(_line_row(p, n, by_line.get(n), text, by_line.get(n) is hottest))
        previous_end = end
    out.append("</div>")
    return out


def _cold(p: Profile, start: int, end: int, source: list[str]) -> str:
    rows = "".join(_line_row(p, n, None, source[n - 1], False) for n in range(start, end + 1))
    label = f"line {start}" if start == end else f"lines {start}-{end}"
    return f'<details class="cold"><summary>{label}: no samples</summary>{rows}</details>'


def _line_row(p: Profile, n: int, counts: LineCounts | None, text: str, hottest: bool) -> str:
    ident = ' id="hottest"' if hottest else ""
    if counts is None:
        cells = '<span class="s"></span><span class="t"></span><span></span>'
        heat = ""
    else:
        self_pct, total_pct = _pct(counts.self, p.running), _pct(counts.total, p.running)
        cells = (
            f'<span class="s">{self_pct:.1f}%</span><span class="t">{total_pct:.1f}%</span>'
            f'<span><span class="heatbar"><span class="tot" style="width:{total_pct:.1f}%">'
            f'</span><span class="slf" style="width:{self_pct:.1f}%"></span></span></span>'
        )
        heat = _heat(counts.self, p.running)
    return (
        f'<div class="row line"{ident}{heat} data-line="{n}"><span class="n">{n}</span>'
        f"{cells}<span>{escape(text)}</span></div>"
    )


def _field(obj: Any, name: str, default: Any = None) -> Any:
    """Read an assembly entry written as a mapping (JSON) or as an object (dataclass)."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _asm_by_function(asm: Any) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    if not asm:
        return grouped
    for entry in asm.values() if isinstance(asm, Mapping) else asm:
        # display_name is the name the function has in `functions` ("add [cpython wrapper]");
        # name may be the mangled symbol.
        name = _field(entry, "display_name") or _field(entry, "name")
        if name is not None:
            grouped.setdefault(str(name), []).append(entry)
    return grouped


def _address(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _asm_view(p: Profile, entries: list[Any], source_file: str | None = None) -> list[str]:
    """Instructions with their samples; stretches without samples, away from sampled
    instructions, are folded like cold source lines."""
    out = ['<div class="asm"><div class="row head"><span>offset</span><span>samples</span>']
    out.append("<span>instruction</span><span>source</span></div>")
    for entry in entries:
        counts = _field(entry, "counts") or {}
        # {address: n}, with int or string keys, or a list of [address, n] pairs.
        pairs = counts.items() if isinstance(counts, Mapping) else counts
        by_address = {_address(k): int(v) for k, v in pairs}
        rows: list[tuple[int, str]] = []
        for ins in _field(entry, "instructions") or []:
            address = _field(ins, "address")
            number = _address(address)
            count = by_address.get(number, 0) if number is not None else 0
            start = _address(_field(entry, "start"))
            address = f"{number:#x}" if number is not None else str(address)
            # Offsets, as in the text view (short and stable); the address is the tooltip.
            shown = f"+{number - start:#x}" if number is not None and start is not None else address
            file, line = _field(ins, "file"), _field(ins, "line")
            if file and line and file == source_file:
                where = f"line {line}"
            elif file and line:
                where = f"{Path(str(file)).name}:{line}"
            else:
                where = ""
            share = f"{_pct(count, p.running):.1f}%" if count else ""
            link = f' data-line="{int(line)}"' if file == source_file and line else ""
            rows.append(
                (
                    count,
                    f'<div class="row"{link}{_heat(count, p.running)}>'
                    f'<span title="{escape(str(address))}">{escape(shown)}</span>'
                    f"<span>{share}</span><span>{escape(str(_field(ins, 'text', '')))}</span>"
                    f"<span>{escape(where)}</span></div>",
                )
            )
        hot = [i + 1 for i, (count, _) in enumerate(rows) if count]
        shown_until = 0
        for start, end in hot_regions(hot or [1], 1, len(rows), CONTEXT) if rows else []:
            if start > shown_until + 1:
                out.append(_fold([r for _, r in rows[shown_until : start - 1]]))
            out.extend(r for _, r in rows[start - 1 : end])
            shown_until = end
        if shown_until < len(rows):
            out.append(_fold([r for _, r in rows[shown_until:]]))
    out.append("</div>")
    return out


def _fold(rows: list[str]) -> str:
    label = f"{len(rows)} instruction{'' if len(rows) == 1 else 's'} without samples"
    return f'<details class="cold"><summary>{label}</summary>{"".join(rows)}</details>'
