"""No shell, no gdb init files, nothing from the command line interpreted by gdb, no temp
files left: profila adds no way for a file or an argument to run code."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, have_gdb

PACKAGE = ROOT / "profila"


def test_no_shell_in_the_source() -> None:
    """No call in profila starts a shell: no shell=True, os.system, os.popen, or /bin/sh."""
    offences = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name in ("os.system", "os.popen", "subprocess.getoutput", "commands.getoutput"):
                    offences.append(f"{path}:{node.lineno} {name}")
                for kw in node.keywords:
                    if kw.arg == "shell" and not (
                        isinstance(kw.value, ast.Constant) and kw.value.value is False
                    ):
                        offences.append(f"{path}:{node.lineno} shell=")
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and ("/bin/sh" in node.value or "startup-with-shell on" in node.value)
            ):
                offences.append(f"{path}:{node.lineno} {node.value!r}")
    assert offences == []


def trap_files(home: Path, cwd: Path, marker: Path) -> list[Path]:
    """gdb init files of every kind, each leaving a marker if gdb ever ran it."""
    files = [
        home / ".gdbinit",
        home / ".gdbearlyinit",
        home / ".config" / "gdb" / "gdbinit",
        home / ".config" / "gdb" / "gdbearlyinit",
        cwd / ".gdbinit",
    ]
    for i, path in enumerate(files):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"python open({str(marker)!r} + '-{i}', 'w').close()\n")
    return files


def markers(marker: Path) -> list[str]:
    return sorted(p.name for p in marker.parent.glob(marker.name + "-*"))


def test_gdb_init_files_and_shell_are_never_used(tmp_path: Path) -> None:
    """With ~/.gdbinit, ~/.gdbearlyinit, ~/.config/gdb/gdbinit and ./.gdbinit all leaving a
    marker, and $SHELL a script that would too, a run leaves no marker and no temp file.
    (Control: plain `gdb -batch` in the same place does run the home init files.)"""
    if not have_gdb():
        pytest.skip("gdb is not installed")
    home, cwd, tmp = tmp_path / "home", tmp_path / "cwd", tmp_path / "tmp"
    for d in (home, cwd, tmp):
        d.mkdir()
    marker = tmp_path / "ran"
    trap_files(home, cwd, marker)
    shell = tmp_path / "sh"
    shell.write_text(f'#!/bin/sh\ntouch {marker}-shell\nexec /bin/sh "$@"\n')
    shell.chmod(0o755)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "SHELL": str(shell),
        "TMPDIR": str(tmp),
        "PYTHONPATH": str(ROOT),
    }
    out = tmp_path / "p.json"
    proc = subprocess.run(
        [sys.executable, "-m", "profila", "annotate", "--no-color", "-o", str(out), "--",
         "-c", "import time; time.sleep(0.3)"],
        capture_output=True, cwd=cwd, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert markers(marker) == []
    assert list(tmp.iterdir()) == []  # no temp file left (and none made, here)
    control = subprocess.run(
        [shutil.which("gdb") or "gdb", "-batch"], capture_output=True, cwd=cwd, env=env,
        timeout=60,
    )  # fmt: skip
    assert control.returncode == 0
    assert markers(marker) != []  # the traps work: without -nx gdb runs them


ODD_NAME = 'odd\n-exec-run\n^done\n=thread-group-exited,id="i1"\n@@profila exiting $(touch X)'
ODD_ARG = '\n@@profila error forged\n^error,msg="x"\n*stopped\nset confirm on\n`id`'
ECHO = "import json, os, sys; print(json.dumps([sys.argv, os.getcwd()]))"


def test_file_name_and_arguments_with_newlines_and_mi_syntax(tmp_path: Path) -> None:
    """A script whose name and arguments contain newlines, MI records, profila's protocol
    prefix and shell syntax runs with the argv of a plain run; nothing is interpreted."""
    directory = tmp_path / ODD_NAME
    directory.mkdir()
    script = directory / (ODD_NAME + ".py")
    script.write_text(ECHO)
    plain = subprocess.run(
        [sys.executable, str(script), ODD_ARG, "$(touch Y)"],
        capture_output=True, cwd=directory, timeout=60,
    )  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "profila", "annotate", "--no-color", "--",
         str(script), ODD_ARG, "$(touch Y)"],
        capture_output=True, cwd=directory, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.split(b"\n", 1)[0]
    assert json.loads(first) == json.loads(plain.stdout)
    assert json.loads(first)[0][1:] == [ODD_ARG, "$(touch Y)"]
    assert not (directory / "X").exists() and not (directory / "Y").exists()
    assert b"profila: python" in proc.stdout
