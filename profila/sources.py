"""Reading the source files a profile refers to, and noticing when they changed since the run."""

from __future__ import annotations

import hashlib
from pathlib import Path

from profila.model import Profile


def read_source(profile: Profile, path: str) -> tuple[list[str] | None, str | None]:
    """The file's lines as they were at the run, or None and why they cannot be shown."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None, "source file not found: showing line numbers only"
    recorded = profile.sources.get(path)
    if recorded is not None and recorded.sha256 not in (None, hashlib.sha256(data).hexdigest()):
        return None, "source file changed since the run: showing line numbers only"
    return data.decode(errors="replace").splitlines(), None


def line_texts(path: str, numbers: set[int]) -> dict[int, str]:
    """The stripped text of the given lines of ``path`` (none if the file cannot be read)."""
    try:
        lines = Path(path).read_bytes().decode(errors="replace").splitlines()
    except OSError:
        return {}
    return {n: lines[n - 1].strip() for n in sorted(numbers) if 0 < n <= len(lines)}
