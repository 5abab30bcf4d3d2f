"""Short, readable names for source files in reports."""

from __future__ import annotations

import os
import sys
import sysconfig


def _library_roots() -> list[str]:
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    roots.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return sorted((os.path.join(r, "") for r in roots if r), key=len, reverse=True)


_ROOTS = _library_roots()


def display_path(path: str, cwd: str | None = None) -> str:
    """Relative to the working directory when under it; library files from their package."""
    if not os.path.isabs(path):
        return path
    here = os.path.join(cwd or os.getcwd(), "")
    if path.startswith(here):
        return path[len(here) :]
    for root in _ROOTS:
        if path.startswith(root):
            return path[len(root) :]
    return path
