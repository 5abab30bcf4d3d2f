"""Reading another process's memory through ``/proc/PID/mem``.

One file descriptor is kept open and read with ``pread``, which needs no stop of the target
(the controller has ptrace rights over it, or is root). A read of a few bytes costs ~2 us.
"""

from __future__ import annotations

import os
import struct

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class MemoryReadError(OSError):
    """A range of the target's memory could not be read (unmapped, or the process is gone)."""


class ProcessMemory:
    """Random access to the memory of process ``pid``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self._fd: int | None = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise MemoryReadError(exc.errno, f"cannot open memory of process {pid}: {exc}") from exc

    def read(self, address: int, size: int) -> bytes:
        """Exactly ``size`` bytes at ``address``, or MemoryReadError."""
        if self._fd is None:
            raise MemoryReadError(0, "memory reader is closed")
        if size <= 0:
            return b""
        if address < 0 or address + size > 1 << 64:
            raise MemoryReadError(0, f"bad address {address:#x}")
        try:
            data = os.pread(self._fd, size, address)
        except OSError as exc:
            raise MemoryReadError(
                exc.errno, f"cannot read {size} bytes at {address:#x}: {exc}"
            ) from exc
        if len(data) != size:
            raise MemoryReadError(0, f"short read at {address:#x}: {len(data)} of {size} bytes")
        return data

    def read_u64(self, address: int) -> int:
        value: int = _U64.unpack(self.read(address, 8))[0]
        return value

    def read_u32(self, address: int) -> int:
        value: int = _U32.unpack(self.read(address, 4))[0]
        return value

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
