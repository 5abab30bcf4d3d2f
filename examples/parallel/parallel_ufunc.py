"""A parallel ufunc: @vectorize(target="parallel") runs the kernel on every thread of the pool.

The loop line "acc += math.sqrt(x + k)" holds nearly all the work; Numba's ufunc loop that calls
the kernel (inlined) in each worker adds little, and the `def` line gets no work of its own.

Usage: python parallel_ufunc.py [SECONDS]   (default 1.5)
"""

import math
import sys
import time

import numpy as np
from numba import vectorize


@vectorize(["float64(float64)"], target="parallel")
def kernel(x):
    acc = 0.0
    for k in range(100):
        acc += math.sqrt(x + k)  # hot: the ufunc's work
    return acc


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.5
    data = np.random.default_rng(0).random(200_000)
    kernel(data)  # compile
    calls = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        kernel(data)
        calls += 1
    print(f"calls: {calls}")


if __name__ == "__main__":
    main()
