from pathlib import Path

import pytest

from profila.cli import main
from profila.errors import EXIT_USAGE

from .test_model import sample_profile


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_missing_script_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A script that does not exist: one line naming it, exit 2, nothing started."""
    code, out, err = run(capsys, "annotate", "--", "no/such/script.py")
    assert code == EXIT_USAGE
    assert err == "profila: script not found: no/such/script.py\n"


def test_missing_module_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "annotate", "--", "-m", "no_such_module_profila_xyz")
    assert code == EXIT_USAGE and "no module named 'no_such_module_profila_xyz'" in err


def test_nothing_to_profile(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "annotate", "--")
    assert code == EXIT_USAGE and "nothing to profile" in err


def test_unwritable_output_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The output path is checked before the target starts, not after it ran for an hour."""
    code, _, err = run(
        capsys, "annotate", "-o", str(tmp_path / "missing" / "p.json"), "--", "-c", "pass"
    )
    assert code == EXIT_USAGE and "does not exist" in err


def test_unknown_output_extension(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "annotate", "-o", str(tmp_path / "p.xyz"), "--", "-c", "pass")
    assert code == EXIT_USAGE and "--format" in err


def test_rate_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "annotate", "--rate", "0", "--", "-c", "pass")
    assert code == EXIT_USAGE and "--rate" in err


def test_show_renders_a_saved_profile(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    saved = tmp_path / "p.json"
    saved.write_text(sample_profile().to_json())
    code, out, _ = run(capsys, "show", str(saved), "--no-color")
    assert code == 0
    assert "150 samples at 100 Hz" in out and "dither" in out
    assert "\x1b" not in out


def test_show_writes_json_again(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    saved = tmp_path / "p.json"
    saved.write_text(sample_profile().to_json())
    code, _, _ = run(capsys, "show", str(saved), "-o", str(tmp_path / "copy.json"))
    assert code == 0 and (tmp_path / "copy.json").read_text() == saved.read_text()


def test_show_refuses_a_file_that_is_not_a_profile(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    code, _, err = run(capsys, "show", str(bad))
    assert code == EXIT_USAGE and "not a readable profila profile" in err
    code, _, err = run(capsys, "show", str(tmp_path / "none.json"))
    assert code == EXIT_USAGE and "cannot read" in err
