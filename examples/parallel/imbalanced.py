"""An imbalanced prange: 2 chunks, the first 3x the work of the second.

The prange runs over ``parts`` chunks (one per thread by default); chunk 0 spins 3x longer than
the others. With 2 threads, thread A works 3 units while thread B works 1 and then waits 2:
the report must show that worker idle (not busy), and parallel efficiency near (3+1)/3 = 1.33
threads busy on average out of 2.

Usage: python imbalanced.py [SECONDS]
"""

import sys
import time

import numpy as np
from numba import get_num_threads, njit, prange


@njit
def work(n):
    acc = 0.0
    for k in range(n):
        acc += (k % 7) * 0.5
    return acc


@njit(parallel=True)
def kernel(parts, unit, out):
    for p in prange(parts):
        n = unit * 3 if p == 0 else unit
        out[p] = work(n)  # the work line


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.5
    parts = get_num_threads()
    out = np.zeros(parts)
    kernel(parts, 10, out)  # compile
    calls = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        kernel(parts, 2_000_000, out)
        calls += 1
    print(f"threads: {parts} calls: {calls}")


if __name__ == "__main__":
    main()
