"""`--asm`, `--asm=NAME` and `--asm-all` on `show` (and how annotate reads them)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from profila.cli import _bare_asm
from profila.errors import EXIT_USAGE

from .test_cli import run
from .test_model import sample_profile
from .test_render_asm import kernel_record


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    source = tmp_path / "kernel.py"
    source.write_text("def kernel(a):\n    pass\n")
    path = tmp_path / "p.json"
    profile = dataclasses.replace(sample_profile(), asm=[kernel_record(source)])
    path.write_text(profile.to_json())
    return path


def test_show_asm_renders_the_saved_records(
    capsys: pytest.CaptureFixture[str], saved: Path
) -> None:
    """The assembly view comes after the report, from the profile alone; plain stays plain."""
    code, out, _ = run(capsys, "show", str(saved), "--asm", "--no-color")
    assert code == 0
    assert out.index("150 samples at 100 Hz") < out.index("121 samples in this function")
    assert "vaddsd %xmm1, %xmm0, %xmm0" in out and "pushq %rbp" not in out
    assert "\x1b" not in out


def test_bare_asm_before_the_profile_takes_no_value(
    capsys: pytest.CaptureFixture[str], saved: Path
) -> None:
    code, out, _ = run(capsys, "show", "--asm", str(saved), "--asm-all", "--no-color")
    assert code == 0 and "pushq %rbp" in out


def test_asm_by_name_and_unknown_name(capsys: pytest.CaptureFixture[str], saved: Path) -> None:
    code, out, _ = run(capsys, "show", str(saved), "--asm=kernel", "--no-color")
    assert code == 0 and "121 samples in this function" in out
    code, out, err = run(capsys, "show", str(saved), "--asm=nothing")
    assert code == EXIT_USAGE and out == ""
    assert err == (
        "profila: no sampled Numba function named 'nothing' for --asm "
        "(functions with samples: kernel)\n"
    )


def test_without_asm_options_there_is_no_assembly(
    capsys: pytest.CaptureFixture[str], saved: Path
) -> None:
    code, out, _ = run(capsys, "show", str(saved), "--no-color")
    assert code == 0 and "samples in this function" not in out


def test_annotate_bare_asm_never_swallows_the_target() -> None:
    """Without `--`, the target starts at the first word that is not an option or an option's
    value, and its own arguments are left alone."""
    assert _bare_asm(["annotate", "--asm", "s.py", "--asm"], False) == [
        "annotate",
        "--asm=",
        "s.py",
        "--asm",
    ]
    assert _bare_asm(["annotate", "--rate", "50", "--asm", "-o", "p.json", "s.py"], False) == [
        "annotate",
        "--rate",
        "50",
        "--asm=",
        "-o",
        "p.json",
        "s.py",
    ]
    assert _bare_asm(["annotate", "--asm", "--asm=f"], True) == ["annotate", "--asm=", "--asm=f"]


def test_annotate_parses_asm_options(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad name is only known after the run; the options themselves parse before it."""
    code, _, err = run(capsys, "annotate", "--asm-all", "--asm=f", "--", "no/such/script.py")
    assert code == EXIT_USAGE and "script not found" in err


def test_annotate_unknown_name_keeps_the_targets_exit_status(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """After the run, a name with no samples is said on stderr; profila still exits with the
    target's status, and the report is printed."""
    from profila import session
    from profila.host import gdb
    from profila.host.target import ExitStatus

    source = tmp_path / "kernel.py"
    source.write_text("def kernel(a):\n    pass\n")
    profile = dataclasses.replace(sample_profile(), asm=[kernel_record(source)])
    monkeypatch.setattr(gdb, "find_gdb", lambda path: "gdb")
    monkeypatch.setattr(
        session, "run", lambda request: session.RunResult(profile, ExitStatus(7, None))
    )
    code, out, err = run(capsys, "annotate", "--asm=nothing", "--no-color", "--", "-c", "pass")
    assert code == 7
    assert "150 samples at 100 Hz" in out and "samples in this function" not in out
    assert "no sampled Numba function named 'nothing'" in err
    code, out, _ = run(capsys, "annotate", "--asm", "--no-color", "--", "-c", "pass")
    assert code == 7 and "121 samples in this function" in out
