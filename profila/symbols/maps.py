"""The target's memory mappings, from ``/proc/PID/maps``: which file a program counter is in.

Parsing a ~400-line maps file (a process with numpy and numba loaded) takes ~0.4 ms; a lookup is
a bisect, ~0.5 us. The table is re-read when a pc falls outside every known mapping (a library
was loaded, or LLVM mapped fresh memory for new code): at most once per ``min_interval`` seconds,
and a page found unmapped is not asked about again until the table changes (or a second has
passed), so that a stream of garbage pcs cannot make every sample pay for a re-read.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Mapping:
    """One line of ``/proc/PID/maps``."""

    start: int
    end: int
    perms: str  # e.g. "r-xp"
    offset: int  # file offset of ``start``
    inode: int
    path: str  # "" for anonymous memory; pseudo-names such as "[stack]" kept as they are

    @property
    def executable(self) -> bool:
        return "x" in self.perms

    @property
    def file_backed(self) -> bool:
        """True for a mapping of a real file (not anonymous memory, [stack], [vdso], ...)."""
        return self.inode != 0 and self.path.startswith("/")

    @property
    def anonymous(self) -> bool:
        return self.inode == 0 and not self.path.startswith("[")


def parse_maps(text: str) -> list[Mapping]:
    """Mappings from the text of a maps file, in address order. Malformed lines are skipped."""
    out: list[Mapping] = []
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        try:
            lo, _, hi = fields[0].partition("-")
            start, end = int(lo, 16), int(hi, 16)
            offset = int(fields[2], 16)
            inode = int(fields[4])
        except ValueError:
            continue
        path = fields[5].strip() if len(fields) > 5 else ""
        out.append(Mapping(start, end, fields[1], offset, inode, path))
    out.sort(key=lambda m: m.start)
    return out


class MemoryMaps:
    """The mappings of process ``pid``, re-read on demand."""

    def __init__(self, pid: int, min_interval: float = 0.005) -> None:
        self.pid = pid
        self.min_interval = min_interval
        self._mappings: list[Mapping] = []
        self._starts: list[int] = []
        self._last_read = -1e9
        self._missing: set[int] = set()  # pages not mapped as of the last read
        self.generation = 0  # bumped each time the table is re-read
        self.refresh(force=True)

    @property
    def mappings(self) -> list[Mapping]:
        return self._mappings

    def refresh(self, force: bool = False) -> bool:
        """Re-read the maps file; False if rate-limited or the process is gone."""
        now = time.monotonic()
        if not force and now - self._last_read < self.min_interval:
            return False
        self._last_read = now
        try:
            with open(f"/proc/{self.pid}/maps", encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError:
            return False
        self._mappings = parse_maps(text)
        self._starts = [m.start for m in self._mappings]
        self._missing.clear()
        self.generation += 1
        return True

    def lookup(self, address: int) -> Mapping | None:
        """The mapping that holds ``address`` in the table as last read, or None."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0:
            m = self._mappings[i]
            if address < m.end:
                return m
        return None

    def find(self, address: int) -> Mapping | None:
        """Like lookup, but re-reads the table (rate-limited) when ``address`` is not in it."""
        m = self.lookup(address)
        if m is not None:
            return m
        page = address >> 12
        if page in self._missing and time.monotonic() - self._last_read < 1.0:
            return None
        if not self.refresh():
            return None  # rate-limited (or the process is gone): no verdict on this page
        m = self.lookup(address)
        if m is None:
            if len(self._missing) > 10_000:
                self._missing.clear()
            self._missing.add(page)
        return m

    def file_mappings(self, path_contains: str) -> list[Mapping]:
        return [m for m in self._mappings if path_contains in m.path and m.file_backed]
