"""Constant folding: three additions in the source, one in the machine code.

The kernel adds three constants to every element, one ``+=`` per line.  LLVM
sees that ``(orig + 123_000_000) + 456_000 + 789`` is ``orig + 123_456_789``
and emits a single addition.  The first two ``+=`` lines therefore have no
instructions of their own, and a sampling profiler gives them no samples:
the time is reported on the lines that still own instructions (the load, the
remaining addition, the store and the loop itself).

Usage::

    python examples/constant_folding/add.py [SECONDS]

runs the kernel repeatedly for SECONDS (default 3) and prints ``calls/sec: N``.
"""

import sys
import time

import numpy as np
from numba import njit

ARRAY_SIZE = 10_000_000
DEFAULT_SECONDS = 3.0


@njit
def add(arr):
    for i in range(len(arr)):
        orig = arr[i]
        # Folded away: expect no samples on this line or the next.
        orig += 123_000_000
        orig += 456_000
        # The one addition that survives, as orig + 123_456_789.
        orig += 789
        arr[i] = orig


def budget_from_argv(argv):
    """Time budget in seconds: the first argument if given, else the default."""
    if len(argv) < 2:
        return DEFAULT_SECONDS
    try:
        seconds = float(argv[1])
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise SystemExit(f"time budget must be a positive number of seconds, got {argv[1]!r}")
    return seconds


def main(argv):
    budget = budget_from_argv(argv)
    arr = np.arange(ARRAY_SIZE, dtype=np.int64)

    # Compile (and sanity-check) outside the timed loop.
    add(arr)
    assert arr[0] == 123_456_789 and arr[-1] == ARRAY_SIZE - 1 + 123_456_789

    count = 0
    start = time.perf_counter()
    while True:
        add(arr)
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            break
    print(f"calls/sec: {count / elapsed:.0f}", flush=True)


if __name__ == "__main__":
    main(sys.argv)
