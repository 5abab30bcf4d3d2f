"""How the profiled program is started: its environment, and what runs in it before user code.

``target_environment(base_env, mode)`` is the environment to run the target with:

* ``"none"``: ``base_env`` unchanged.
* ``"full"``: ``NUMBA_DEBUGINFO=1`` and nothing else (full debug info: Numba marks every
  function ``noinline``, turns bounds checking on and gives variables stack slots; measured
  1.24-1.35x slower).
* ``"lines"``: the shipped machine code plus line tables only. ``PYTHONPATH`` gets
  :data:`BOOT_DIR` in front (its ``sitecustomize`` patches Numba when, and only when, the
  program imports it; see ``profila/target/linetables.py``), ``PROFILA_DEBUGINFO=lines`` turns
  the patch on, and ``NUMBA_CACHE_DIR`` points at profila's own Numba cache, so ``cache=True``
  functions neither load the user's cached builds (which have no line info) nor write
  profila's builds into the user's cache, while a second profiled run reuses the first one's.

The boot code is ignored, as all of ``PYTHONPATH`` is, when the target runs Python with ``-E``,
``-I`` or ``-S``; profila then profiles the build Numba makes without line info.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

BOOT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "boot")
MODES = ("lines", "full", "none")
MODE_VARIABLE = "PROFILA_DEBUGINFO"  # read by the boot sitecustomize


def target_environment(base_env: Mapping[str, str], mode: str) -> dict[str, str]:
    """The environment to run the target with, for debug-info ``mode`` (see module doc)."""
    if mode not in MODES:
        raise ValueError(f"unknown debug-info mode {mode!r}: expected one of {', '.join(MODES)}")
    env = dict(base_env)
    if mode == "full":
        env["NUMBA_DEBUGINFO"] = "1"
    elif mode == "lines":
        env["PYTHONPATH"] = _prepend_path(BOOT_DIR, env.get("PYTHONPATH", ""))
        env[MODE_VARIABLE] = "lines"
        env["NUMBA_CACHE_DIR"] = numba_cache_dir(env)
    return env


def _prepend_path(entry: str, path: str) -> str:
    """``entry`` first on the search path ``path``, which keeps its own entries as they were.

    An empty ``PYTHONPATH`` stays without entries: ``"entry:"`` would add the current directory.
    """
    if not path:
        return entry
    if path.split(os.pathsep)[0] == entry:
        return path  # already there (profila starting profila)
    return entry + os.pathsep + path


def numba_cache_dir(env: Mapping[str, str]) -> str:
    """profila's own persistent Numba cache for line-tables builds (created if needed).

    ``$XDG_CACHE_HOME/profila/numba-cache``, else ``~/.cache/profila/numba-cache``; if that
    cannot be written, a per-user directory under the system's temporary directory.
    """
    candidates = []
    xdg = env.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        candidates.append(os.path.join(xdg, "profila", "numba-cache"))
    home = env.get("HOME") or os.path.expanduser("~")
    if os.path.isabs(home):
        candidates.append(os.path.join(home, ".cache", "profila", "numba-cache"))
    user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    candidates.append(os.path.join(tempfile.gettempdir(), f"profila-{user}", "numba-cache"))
    for candidate in candidates:
        if _writable_dir(candidate):
            return candidate
    return candidates[-1]  # Numba itself falls back to not caching if this fails too


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)
