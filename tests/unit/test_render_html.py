"""The self-contained HTML report: summary, source with bars, folded cold lines, assembly."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

from profila.model import FunctionCounts, LineCounts, Profile, SourceFingerprint
from profila.render import html

from .test_model import sample_profile


class _Checker(HTMLParser):
    """Collects tags and the ids of elements, and fails on unbalanced block tags."""

    VOID = {"meta", "br", "img", "link", "input", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls.extend(v or "" for k, v in attrs if k in ("src", "href"))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def parse(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    return checker


def kernel_profile(tmp_path: Path, *, asm: object = None) -> Profile:
    src = tmp_path / "kernel.py"
    body = ["def k(a):", "    s = 0"] + [f"    s += {i}  # filler" for i in range(30)]
    body += ["    return s < 1 and '<b>' or \"&\""]
    src.write_text("\n".join(body) + "\n")
    lines = [
        LineCounts(str(src), 2, "k", 5, 5),
        LineCounts(str(src), 33, "k", 80, 90),
    ]
    p = Profile(
        **{
            **sample_profile().__dict__,
            "lines": lines,
            "functions": [FunctionCounts(str(src), "k", 85, 95)],
            "sources": {str(src): SourceFingerprint(None)},
        }
    )
    if asm is not None:
        object.__setattr__(p, "asm", asm)  # the field another change adds to the model
    return p


def test_page_is_self_contained_and_well_formed(tmp_path: Path) -> None:
    page = html.render(kernel_profile(tmp_path))
    checker = parse(page)
    assert checker.tags[0] == "html"
    assert all(url.startswith("#") for url in checker.urls), checker.urls  # no network
    assert "<style>" in page and "<script>" in page


def test_source_is_escaped_and_hottest_line_marked(tmp_path: Path) -> None:
    page = html.render(kernel_profile(tmp_path))
    assert "&lt;b&gt;" in page and "&amp;" in page and "<b>" not in page
    hottest = re.search(r'<div class="row line" id="hottest"[^>]*>(.*?)</div>', page)
    assert hottest is not None and "return s &lt; 1" in hottest.group(1)
    assert "54.1%" in hottest.group(1)  # 80 self of 148 running samples (sample_profile)


def test_cold_stretch_is_folded(tmp_path: Path) -> None:
    """Lines 5-30 carry no samples and lie between two hot regions: one <details> fold."""
    page = html.render(kernel_profile(tmp_path))
    assert page.count('<details class="cold">') == 1
    assert "lines 5-30: no samples" in page


def test_changed_source_is_not_shown_beside_the_counts(tmp_path: Path) -> None:
    p = kernel_profile(tmp_path)
    p = Profile(**{**p.__dict__, "sources": {f: SourceFingerprint("0" * 64) for f in p.sources}})
    page = html.render(p)
    assert "source file changed since the run" in page and "filler" not in page


def test_assembly_is_shown_beside_the_source_when_present(tmp_path: Path) -> None:
    src = str(tmp_path / "kernel.py")
    asm = [
        {
            "name": "k",
            "display_name": "k",
            "start": 4096,
            "end": 4104,
            "instructions": [
                {"address": 4096, "text": "vmulsd xmm0, xmm1, <x>", "file": src, "line": 33},
                {"address": 4100, "text": "ret", "file": src, "line": 33},
            ],
            "counts": {"4096": 70},
        }
    ]
    page = html.render(kernel_profile(tmp_path, asm=asm))
    parse(page)
    assert '<div class="pair">' in page
    assert "0x1000" in page and "vmulsd xmm0, xmm1, &lt;x&gt;" in page
    assert "47.3%" in page  # 70 of 148 running samples on that instruction
    # Instructions of the function's own file point at their source line (hover outlines it).
    row = r'<div class="row" data-line="33"[^>]*><span title="0x1000">\+0x0</span>'
    assert re.search(row, page)


def test_assembly_records_as_objects_with_display_names(tmp_path: Path) -> None:
    """The model's own records (objects, mangled name plus display name, int-keyed counts)
    are shown beside the function they belong to."""
    src = str(tmp_path / "kernel.py")
    instruction = SimpleNamespace(address=0x2000, text="addq $1, %rax", file=src, line=2)
    record = SimpleNamespace(
        name="_ZN8__main__1kB2v1E",
        display_name="k",
        start=0x2000,
        end=0x2004,
        instructions=(instruction,),
        counts={0x2000: 37},
    )
    page = html.render(kernel_profile(tmp_path, asm=[record]))
    parse(page)
    assert '<div class="pair">' in page and "0x2000" in page and "addq $1, %rax" in page
    assert "25.0%" in page  # 37 of 148


def test_no_numba_samples(tmp_path: Path) -> None:
    p = Profile(**{**sample_profile().__dict__, "lines": [], "functions": []})
    page = html.render(p)
    parse(page)
    assert "No samples landed in Numba-compiled code." in page


def test_long_cold_assembly_is_folded(tmp_path: Path) -> None:
    """Only the instructions near sampled ones are open; the rest fold into <details>."""
    src = str(tmp_path / "kernel.py")
    instructions = [
        {"address": 0x1000 + 4 * i, "text": f"nop{i}", "file": src, "line": 33} for i in range(40)
    ]
    asm = [{"name": "k", "instructions": instructions, "counts": {str(0x1000 + 4 * 20): 9}}]
    page = html.render(kernel_profile(tmp_path, asm=asm))
    parse(page)
    assert "18 instructions without samples" in page and "17 instructions without samples" in page
    folded = re.findall(r"<details class=\"cold\">(.*?)</details>", page, re.S)
    assert not any("nop20<" in f for f in folded)
    assert any("nop0<" in f for f in folded) and any("nop39<" in f for f in folded)
