"""profila's fallback Numba cache in a shared temporary directory is used only when private:
cache files are pickles, so a directory someone else made or can write could run code."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from profila.target import numba_cache_dir


@pytest.fixture
def no_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """HOME and XDG_CACHE_HOME unusable: the temporary directory is the only candidate."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    return {"XDG_CACHE_HOME": str(blocker), "HOME": str(blocker)}


def shared_dir(tmp_path: Path) -> Path:
    return tmp_path / "tmp" / f"profila-{os.getuid()}"


def test_fallback_is_created_private(tmp_path: Path, no_home: dict[str, str]) -> None:
    path = numba_cache_dir(no_home)
    assert path == str(shared_dir(tmp_path) / "numba-cache")
    assert shared_dir(tmp_path).stat().st_mode & 0o777 == 0o700


def test_fallback_writable_by_others_is_not_used(
    tmp_path: Path, no_home: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    shared_dir(tmp_path).mkdir(mode=0o777)
    os.chmod(shared_dir(tmp_path), 0o777)
    path = numba_cache_dir(no_home)
    assert (
        "profila: note: no private directory for profila's Numba cache" in capsys.readouterr().err
    )
    assert not path.startswith(str(shared_dir(tmp_path)))
    assert not os.path.exists(path)  # a path that cannot be made: Numba does without it


def test_fallback_that_is_a_symlink_is_not_used(tmp_path: Path, no_home: dict[str, str]) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    shared_dir(tmp_path).symlink_to(elsewhere)
    assert not numba_cache_dir(no_home).startswith(str(shared_dir(tmp_path)))


def test_fallback_owned_by_someone_else_is_not_used(
    tmp_path: Path, no_home: dict[str, str]
) -> None:
    if os.getuid() != 0:
        pytest.skip("only root can give a directory to another user")
    shared_dir(tmp_path).mkdir(mode=0o700)
    os.chown(shared_dir(tmp_path), 65534, 65534)
    assert not numba_cache_dir(no_home).startswith(str(shared_dir(tmp_path)))
