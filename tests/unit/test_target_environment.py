"""The target's environment for each debug-info mode."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from profila.target import BOOT_DIR, numba_cache_dir, target_environment


@pytest.fixture
def base(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin", "LANG": "C.UTF-8"}


def test_none_is_the_environment_unchanged(base: dict[str, str]) -> None:
    env = target_environment(base, "none")
    assert env == base
    assert env is not base


def test_full_adds_numba_debuginfo_only(base: dict[str, str]) -> None:
    assert target_environment(base, "full") == {**base, "NUMBA_DEBUGINFO": "1"}


def test_lines(base: dict[str, str]) -> None:
    env = target_environment(base, "lines")
    assert env["PYTHONPATH"] == BOOT_DIR
    assert env["PROFILA_DEBUGINFO"] == "lines"
    assert env["NUMBA_CACHE_DIR"] == os.path.join(base["HOME"], ".cache", "profila",
                                                  "numba-cache")
    assert os.path.isdir(env["NUMBA_CACHE_DIR"])
    assert "NUMBA_DEBUGINFO" not in env
    assert {k: v for k, v in env.items() if k in base} == base
    assert set(env) - set(base) == {"PYTHONPATH", "PROFILA_DEBUGINFO", "NUMBA_CACHE_DIR"}


def test_boot_dir_holds_sitecustomize() -> None:
    assert os.path.isfile(os.path.join(BOOT_DIR, "sitecustomize.py"))
    assert os.path.isabs(BOOT_DIR)


def test_lines_keeps_the_users_pythonpath_after_the_boot_dir(base: dict[str, str]) -> None:
    user = os.pathsep.join(["/opt/lib", "relative/dir", ""])
    env = target_environment({**base, "PYTHONPATH": user}, "lines")
    assert env["PYTHONPATH"] == BOOT_DIR + os.pathsep + user


def test_lines_with_an_empty_pythonpath_adds_no_empty_entry(base: dict[str, str]) -> None:
    """An empty entry would put the current directory on the target's sys.path."""
    env = target_environment({**base, "PYTHONPATH": ""}, "lines")
    assert env["PYTHONPATH"] == BOOT_DIR


def test_lines_twice_adds_the_boot_dir_once(base: dict[str, str]) -> None:
    once = target_environment({**base, "PYTHONPATH": "/opt/lib"}, "lines")
    assert target_environment(once, "lines") == once


def test_lines_overrides_the_users_numba_cache_dir(base: dict[str, str], tmp_path: Path) -> None:
    env = target_environment({**base, "NUMBA_CACHE_DIR": str(tmp_path / "mine")}, "lines")
    assert env["NUMBA_CACHE_DIR"] != str(tmp_path / "mine")


def test_lines_keeps_the_users_numba_debuginfo(base: dict[str, str]) -> None:
    """A user who ships NUMBA_DEBUGINFO=1 builds gets them profiled (with full debug info)."""
    env = target_environment({**base, "NUMBA_DEBUGINFO": "1"}, "lines")
    assert env["NUMBA_DEBUGINFO"] == "1"


def test_unknown_mode(base: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="lines, full, none"):
        target_environment(base, "dwarf")


def test_cache_dir_prefers_xdg_cache_home(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    assert numba_cache_dir(env) == str(tmp_path / "xdg" / "profila" / "numba-cache")


def test_cache_dir_ignores_a_relative_xdg_cache_home(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": "relative", "HOME": str(tmp_path / "home")}
    assert numba_cache_dir(env) == str(tmp_path / "home" / ".cache" / "profila" / "numba-cache")


def test_cache_dir_falls_back_when_not_writable(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env = {"XDG_CACHE_HOME": str(blocker), "HOME": str(blocker)}
    path = numba_cache_dir(env)
    assert path.startswith(str(tmp_path / "tmp"))
    assert os.path.isdir(path) and os.access(path, os.W_OK)
    assert os.path.basename(path) == "numba-cache"
