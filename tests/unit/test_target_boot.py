"""The boot ``sitecustomize``, with a stand-in numba and a stand-in patch (subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from profila.target import BOOT_DIR

FAKE_NUMBA = '''
import builtins, sys
__version__ = "9.9.1"
builtins.NUMBA_INIT_DONE = True
builtins.WATCHERS_DURING_INIT = [type(f).__name__ for f in sys.meta_path]
'''

RECORDING_PATCH = '''
import builtins, sys
def apply():
    builtins.PATCHED = {"after_init": getattr(builtins, "NUMBA_INIT_DONE", False),
                        "numba_loaded": "numba" in sys.modules}
    return True
'''

REPORT = '''
import builtins, json, sys
print(json.dumps({
    "patched": getattr(builtins, "PATCHED", None),
    "patch_loaded": "_profila_linetables" in sys.modules,
    "watchers": [type(f).__name__ for f in sys.meta_path],
    "during_init": getattr(builtins, "WATCHERS_DURING_INIT", None),
    "loader_patched": "numba" in sys.modules
        and "exec_module" in vars(sys.modules["numba"].__spec__.loader),
    "path": sys.path,
}))
'''


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    """A copy of the boot directory next to a stand-in ``linetables.py``; a fake numba."""
    target = tmp_path / "target"
    shutil.copytree(BOOT_DIR, target / "boot", ignore=shutil.ignore_patterns("__pycache__"))
    (target / "linetables.py").write_text(RECORDING_PATCH)
    (tmp_path / "lib" / "numba").mkdir(parents=True)
    (tmp_path / "lib" / "numba" / "__init__.py").write_text(FAKE_NUMBA)
    return target / "boot"


def run(tmp_path: Path, boot: Path, code: str, mode: str | None = "lines",
        user_path: list[Path] | None = None) -> tuple[dict[str, Any], str]:
    paths = [str(boot), *(str(p) for p in user_path or []), str(tmp_path / "lib")]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROFILA_DEBUGINFO")}
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if mode is not None:
        env["PROFILA_DEBUGINFO"] = mode
    proc = subprocess.run([sys.executable, "-c", code + REPORT], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_patch_runs_once_numba_is_imported(tmp_path: Path, boot: Path) -> None:
    report, stderr = run(tmp_path, boot, "import numba\n")
    assert report["patched"] == {"after_init": True, "numba_loaded": True}
    assert "NumbaWatcher" in report["during_init"]  # it was there while numba was imported...
    assert "NumbaWatcher" not in report["watchers"]  # ...and is gone
    assert not report["loader_patched"]
    assert str(boot) not in report["path"]
    assert stderr == ""


def test_nothing_happens_without_numba(tmp_path: Path, boot: Path) -> None:
    report, stderr = run(tmp_path, boot, "import json, email.parser\n")
    assert report["patched"] is None and not report["patch_loaded"]
    assert report["watchers"][0] == "NumbaWatcher"
    assert str(boot) not in report["path"]
    assert stderr == ""


def test_other_modes_only_leave_sys_path(tmp_path: Path, boot: Path) -> None:
    for mode in (None, "full"):
        report, _ = run(tmp_path, boot, "import numba\n", mode=mode)
        assert report["patched"] is None and not report["patch_loaded"]
        assert "NumbaWatcher" not in report["watchers"]
        assert str(boot) not in report["path"]


def test_a_broken_patch_warns_and_the_program_runs(tmp_path: Path, boot: Path) -> None:
    (boot.parent / "linetables.py").write_text("raise RuntimeError('broken')\n")
    report, stderr = run(tmp_path, boot, "import numba\n")
    assert report["patched"] is None
    assert stderr == "profila: line info unavailable for numba 9.9 (RuntimeError: broken)\n"


def test_numba_imported_by_the_shadowed_sitecustomize(tmp_path: Path, boot: Path) -> None:
    user = tmp_path / "usersite"
    user.mkdir()
    (user / "sitecustomize.py").write_text("import numba\n")
    report, stderr = run(tmp_path, boot, "", user_path=[user])
    assert report["patched"] == {"after_init": True, "numba_loaded": True}
    assert stderr == ""


def test_a_failing_shadowed_sitecustomize_fails_as_without_profila(tmp_path: Path,
                                                                   boot: Path) -> None:
    user = tmp_path / "usersite"
    user.mkdir()
    (user / "sitecustomize.py").write_text("raise ValueError('user site is broken')\n")
    report, stderr = run(tmp_path, boot, "import numba\n", user_path=[user])
    assert "Error in sitecustomize" in stderr and "user site is broken" in stderr
    assert report["patched"] == {"after_init": True, "numba_loaded": True}
