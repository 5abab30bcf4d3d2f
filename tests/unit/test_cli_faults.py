"""Bad input caught before anything runs: output paths, gdb paths, the gdb timeout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from profila.cli import main
from profila.errors import EXIT_ENVIRONMENT, EXIT_USAGE


def annotate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *options: str
) -> tuple[int, str, Path]:
    marker = tmp_path / "target-ran"
    code = main(["annotate", *options, "--", "-c", f"open({str(marker)!r}, 'w')"])
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("profila: ")
    assert not marker.exists()
    return code, err, marker


@pytest.mark.parametrize(
    "where, says",
    [
        ("missing/p.json", "directory {tmp}/missing does not exist"),
        ("a-file/p.json", "{tmp}/a-file is not a directory"),
        ("a-dir", "it is a directory"),
        ("/proc/profila-test.json", "cannot write /proc/profila-test.json: "),
    ],
    ids=["missing-dir", "under-a-file", "a-directory", "read-only-proc"],
)
def test_output_path_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str, says: str
) -> None:
    """-o into a missing directory, under a regular file, onto a directory, or into /proc
    (read-only even for root, whom permission bits do not stop): exit 2, target not run."""
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-dir.json").mkdir()
    path = where if where.startswith("/") else str(tmp_path / where)
    if where == "a-dir":
        path = str(tmp_path / "a-dir.json")
    code, err, _ = annotate(capsys, tmp_path, "-o", path)
    assert code == EXIT_USAGE
    assert says.format(tmp=tmp_path) in err


def test_output_check_leaves_no_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Trying the output path for real does not leave an empty file behind on a failure."""
    out = tmp_path / "p.json"
    code, _, _ = annotate(capsys, tmp_path, "-o", str(out), "--gdb", str(tmp_path / "none"))
    assert code == EXIT_ENVIRONMENT
    assert not out.exists()


def test_gdb_path_is_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err, _ = annotate(capsys, tmp_path, "--gdb", str(tmp_path))
    assert code == EXIT_ENVIRONMENT and "is a directory" in err


def test_bad_gdb_timeout(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROFILA_GDB_TIMEOUT", "soon")
    gdb = tmp_path / "gdb"
    gdb.write_text("#!/bin/sh\nexit 1\n")
    gdb.chmod(0o755)
    code, err, _ = annotate(capsys, tmp_path, "--gdb", str(gdb))
    assert code == EXIT_USAGE and "PROFILA_GDB_TIMEOUT='soon'" in err


def test_output_file_that_exists_is_kept_until_the_run_ends(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An existing output file is opened for the check, never truncated by it."""
    out = tmp_path / "p.json"
    out.write_text("previous")
    os.chmod(out, 0o644)
    code, _, _ = annotate(capsys, tmp_path, "-o", str(out), "--gdb", str(tmp_path / "none"))
    assert code == EXIT_ENVIRONMENT
    assert out.read_text() == "previous"


def test_ptrace_refusal_names_the_fix() -> None:
    """gdb's message when the kernel refuses PTRACE_ATTACH (yama ptrace_scope, a container
    without CAP_SYS_PTRACE) becomes one line naming both fixes, exit 3."""
    from profila.host.gdb import attach_error

    error = attach_error("ptrace: Operation not permitted.\n")
    assert error.exit_code == EXIT_ENVIRONMENT
    text = str(error)
    assert "\n" not in text
    assert "ptrace_scope" in text and "SYS_PTRACE" in text


def test_gdb_noise_in_an_attach_error_stays_one_short_line() -> None:
    from profila.host.gdb import attach_error

    error = attach_error("garbage\n" * 10000)
    assert error.exit_code == EXIT_ENVIRONMENT
    assert "\n" not in str(error) and len(str(error)) < 400
