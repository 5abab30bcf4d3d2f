"""diff, speedscope and HTML on real profiles of the dither example.

One pair of runs serves every test (module fixture): the naive kernel, the same again, and the
optimised kernel, each doing a fixed amount of work (tests/e2e/targets/dither_fixed.py) so that
the shares do not depend on how busy the machine is.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from profila.render import html
from tests.unit.test_render_html import kernel_profile

from .conftest import EXAMPLES, ROOT, profila

TARGET = Path(__file__).resolve().parent / "targets" / "dither_fixed.py"
ROUNDING = "new_value = np.uint8(np.round(old_value / 255)) * 255"
THRESHOLD = "new_value = 0 if old_value < 128 else 255"
FIRST_DIFFUSION = "result[y, x + 1] += error * 7 / 16"
SPEEDSCOPE_SCHEMA = ROOT / "tests" / "data" / "speedscope" / "file-format-schema.json"

# (name, kernel file, images): about 3 s of kernel time each on this machine type, against
# ~1.5 s of imports and compilation; 1000 Hz for ~1 pp sampling error.
RUNS = [
    ("naive", "dither", 1600),
    ("naive_again", "dither", 1600),
    ("optimised", "dither_optimised", 3200),
]


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = {}
    for name, kernel, images in RUNS:
        tmp = tmp_path_factory.mktemp(name)
        run = profila(str(TARGET), kernel, str(images), tmp_path=tmp, options=("--rate", "1000"))
        assert run.returncode == 0, run.stderr.decode()
        paths[name] = tmp / "profile.json"
    return paths


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "profila", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def line_row(doc: dict[str, Any], text: str) -> dict[str, Any]:
    [row] = [r for r in doc["lines"] if r["text"] == text]
    return row


def test_diff_of_naive_and_optimised_dither(profiles: dict[str, Path]) -> None:
    """The rewrite removes the rounding line (its share goes to nothing), adds the threshold
    line, and the first error-diffusion line, now on the loop-carried chain, grows. The two
    files have different names: lines match by function and source text."""
    proc = cli("diff", str(profiles["naive"]), str(profiles["optimised"]), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    rounding = line_row(doc, ROUNDING)
    assert rounding["new"] is None and rounding["base"]["total_share_pp"] > 10
    assert rounding["change_pp"] < -10 and not rounding["within_noise"]
    assert line_row(doc, THRESHOLD)["base"] is None
    diffusion = line_row(doc, FIRST_DIFFUSION)
    assert diffusion["base"]["file"].endswith("dither.py")
    assert diffusion["new"]["file"].endswith("dither_optimised.py")
    assert diffusion["change_pp"] > 0
    text = cli("diff", str(profiles["naive"]), str(profiles["optimised"]))
    assert text.returncode == 0 and ROUNDING in text.stdout and FIRST_DIFFUSION in text.stdout


def test_two_runs_of_the_same_script_pass_fail_above_5(profiles: dict[str, Path]) -> None:
    """Same work twice: no line or function moves by 5 percentage points, so CI stays green."""
    proc = cli("diff", str(profiles["naive"]), str(profiles["naive_again"]), "--fail-above", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "regression" not in proc.stderr


def test_a_regression_fails_ci(profiles: dict[str, Path]) -> None:
    """Going from the optimised kernel to the naive one is a regression: exit 1, and the
    message names the rounding line."""
    proc = cli("diff", str(profiles["optimised"]), str(profiles["naive"]), "--fail-above", "5")
    assert proc.returncode == 1
    assert "regression: line" in proc.stderr and ROUNDING in proc.stderr


def test_speedscope_file_of_a_real_run(profiles: dict[str, Path], tmp_path: Path) -> None:
    """The speedscope file passes speedscope's schema and its heaviest Numba stack ends on the
    rounding line of the naive kernel."""
    jsonschema = pytest.importorskip("jsonschema")
    out = tmp_path / "profile.speedscope.json"
    proc = cli("show", str(profiles["naive"]), "--no-color", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, json.loads(SPEEDSCOPE_SCHEMA.read_text()))
    frames = doc["shared"]["frames"]
    [profile] = doc["profiles"]
    numba = [
        (w, s)
        for w, s in zip(profile["weights"], profile["samples"], strict=True)
        if "file" in frames[s[-1]]
    ]
    heaviest = max(numba)[1]
    rounding_line = 1 + (EXAMPLES / "dither" / "dither.py").read_text().splitlines().index(
        "            " + ROUNDING
    )
    assert frames[heaviest[-1]]["name"] == f"dither (dither.py:{rounding_line})"


def open_in_chromium(page: Path) -> str:
    """The DOM of ``page`` after Chromium loaded it and ran its script; fails on any console
    message (script errors, failed loads)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shown = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    console = [line for line in shown.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    dom = shown.stdout
    assert re.search(r'<body[^>]*data-rendered="yes"', dom)
    assert "data-errors" not in dom
    return dom


def test_html_report_in_a_headless_browser(profiles: dict[str, Path], tmp_path: Path) -> None:
    """Chromium renders the page without console errors, its script ran, and the line marked
    hottest is the rounding line of the naive kernel."""
    report = tmp_path / "report.html"
    proc = cli("show", str(profiles["naive"]), "--no-color", "-o", str(report))
    assert proc.returncode == 0, proc.stderr
    dom = open_in_chromium(report)
    hottest = re.search(r'id="hottest"[^>]*>(.*?)</div>', dom)
    assert hottest is not None
    assert ROUNDING.replace(">", "&gt;").replace("<", "&lt;") in hottest.group(1)


@pytest.mark.parametrize("name", ["report.html", "profile.speedscope.json"])
def test_annotate_writes_html_and_speedscope(tmp_path: Path, name: str) -> None:
    """`annotate -o` picks the format by the file name, also for a run with no Numba code."""
    out = tmp_path / name
    run = profila(
        "-c",
        "sum(range(10**6))",
        tmp_path=tmp_path,
        json_out=False,
        options=("-o", str(out)),
    )
    assert run.returncode == 0, run.stderr.decode()
    text = out.read_text()
    if name.endswith(".html"):
        assert text.startswith("<!DOCTYPE html>")
        assert "No samples landed in Numba-compiled code." in text
    else:
        jsonschema = pytest.importorskip("jsonschema")
        jsonschema.validate(json.loads(text), json.loads(SPEEDSCOPE_SCHEMA.read_text()))


def test_html_with_assembly_in_a_headless_browser(tmp_path: Path) -> None:
    """The assembly view beside the source (and its script) runs without errors too."""
    asm = [
        {
            "name": "k",
            "display_name": "k",
            "instructions": [
                {
                    "address": 4096,
                    "text": "addq $1, %rax",
                    "file": str(tmp_path / "kernel.py"),
                    "line": 33,
                }
            ],
            "counts": {"4096": 5},
        }
    ]
    page = tmp_path / "asm.html"
    page.write_text(html.render(kernel_profile(tmp_path, asm=asm)))
    dom = open_in_chromium(page)
    assert "addq $1, %rax" in dom and 'class="pair"' in dom
