"""A prange kernel with a deliberately hot body line.

Line "acc += math.sqrt(...)" does ~20x the work of the cheap line beside it, in every worker.
A profiler that samples every thread puts the time on the body lines (in the workers), not on
the `prange` line of the launching thread.

Usage: python hot_body.py [SECONDS]   (runs the kernel repeatedly for about SECONDS, default 1.5)
"""

import math
import sys
import time

import numpy as np
from numba import njit, prange


@njit(parallel=True)
def kernel(data, out):
    for i in prange(data.shape[0]):
        x = data[i]
        acc = 0.0
        for k in range(200):
            acc += math.sqrt(x + k) * math.sin(x * k)  # hot: ~20x the next line
        out[i] = acc + x * 0.5


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.5
    data = np.random.default_rng(0).random(20_000)
    out = np.empty_like(data)
    kernel(data, out)  # compile
    calls = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        kernel(data, out)
        calls += 1
    print(f"calls: {calls}")


if __name__ == "__main__":
    main()
