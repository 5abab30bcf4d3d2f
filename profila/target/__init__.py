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
import stat
import sys
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
    cannot be written (HOME read-only or missing), a private (0700) per-user directory under
    the system's temporary directory, used only if it is ours and only we can write it.
    """
    candidates = []
    xdg = env.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        candidates.append(os.path.join(xdg, "profila", "numba-cache"))
    home = env.get("HOME") or os.path.expanduser("~")
    if os.path.isabs(home):
        candidates.append(os.path.join(home, ".cache", "profila", "numba-cache"))
    user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    shared = os.path.join(tempfile.gettempdir(), f"profila-{user}")
    candidates.append(os.path.join(shared, "numba-cache"))
    for candidate in candidates:
        if candidate.startswith(shared) and not _private_dir(shared):
            # Numba's cache files are pickles: a directory in a shared /tmp that someone else
            # made (or can write) could feed the target code. Such a cache is never used.
            break
        if _writable_dir(candidate):
            return candidate
    # Nowhere safe to cache: a path that cannot be created. Numba then caches next to the
    # program's source (__pycache__), where the line-tables marker keeps the files apart.
    print(
        "profila: note: no private directory for profila's Numba cache (HOME not writable, "
        f"{shared} not private): cache=True functions are cached next to their source",
        file=sys.stderr,
    )
    return os.path.join(os.devnull, "profila-numba-cache")


def _private_dir(path: str) -> bool:
    """``path`` is (made, if missing) a real directory of ours that only we can write."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return False
    owner_ok = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    return stat.S_ISDIR(st.st_mode) and owner_ok and not st.st_mode & 0o022


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)
