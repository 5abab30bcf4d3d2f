"""main() -> run() -> an @njit kernel in a loop (~1 s), then a pure-Python hot function (~0.5 s).

The Numba samples' stacks should read main -> run -> kernel; the Python samples' stacks
main -> python_hot.
"""

import time

import numpy as np
from numba import njit


@njit(cache=False)
def kernel(a):
    total = 0.0
    for i in range(a.size):
        total += np.sqrt(a[i]) * 1.0001
    return total


def run(a, seconds):
    end = time.monotonic() + seconds
    total = 0.0
    while time.monotonic() < end:
        total += kernel(a)
    return total


def python_hot(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for i in range(1000):
            n += i * i
    return n


def main():
    a = np.arange(200_000, dtype=np.float64)
    run(a, 1.0)
    python_hot(0.6)


if __name__ == "__main__":
    main()
