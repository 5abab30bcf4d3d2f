"""Output formats chosen by the file name (.json, .html, .speedscope.json) for annotate and show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profila.cli import main
from profila.errors import EXIT_USAGE

from .test_model import sample_profile


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "p.json"
    path.write_text(sample_profile().to_json())
    return path


def test_show_writes_html_by_suffix(saved: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["show", str(saved), "--no-color", "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_show_writes_speedscope_by_compound_suffix(saved: Path, tmp_path: Path) -> None:
    """x.speedscope.json is speedscope's format, not the profile's JSON."""
    out = tmp_path / "x.speedscope.json"
    assert main(["show", str(saved), "--no-color", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["$schema"].endswith("speedscope.app/file-format-schema.json")


def test_format_option_overrides_the_suffix(saved: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    assert main(["show", str(saved), "--no-color", "-o", str(out), "--format", "html"]) == 0
    assert "<html" in out.read_text()


def test_unknown_suffix_is_refused(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", str(saved), "-o", str(tmp_path / "r.pdf")]) == EXIT_USAGE
    assert ".speedscope.json" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["report.html", "p.speedscope.json"])
def test_annotate_checks_html_and_speedscope_outputs_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """An unwritable output is refused before the target starts, whatever the format."""
    target = tmp_path / "never.py"
    marker = tmp_path / "ran"
    target.write_text(f"open({str(marker)!r}, 'w').close()\n")
    out = tmp_path / "missing" / name
    assert main(["annotate", "-o", str(out), "--", str(target)]) == EXIT_USAGE
    assert "does not exist" in capsys.readouterr().err
    assert not marker.exists()
