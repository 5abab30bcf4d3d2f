"""The kernels bench/linetables.py times: run one of them as a plain Numba program would.

    python bench/linetables_target.py KERNEL SECONDS

KERNEL is one of:

    dither     examples/dither/dither.py's naive kernel on its 384x384 image
    library    a sliding-window kernel made of Numba's NumPy and math implementations
               (np.mean, np.sqrt, np.exp, np.abs, math.atan2, an array temporary), which LLVM
               inlines into the loop
    parallel   a prange kernel (parallel=True): per-row sums of a 2048x2048 array

Prints ``compile_s: X`` (the first call, which compiles: type inference, lowering, LLVM and,
under a profiler, whatever the JIT registration costs) and ``calls/sec: Y`` (the calls that
follow, for SECONDS).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit, prange

REPO = Path(__file__).resolve().parent.parent


@njit
def window_stats(values, out):
    n = values.shape[0]
    for i in range(n - 8):
        window = values[i : i + 8]
        squares = window * window
        out[i] = (
            np.sqrt(np.mean(squares))
            + np.exp(-np.abs(window[0]))
            + math.atan2(window[1], window[2] + 1.5)
        )
    return out


@njit(parallel=True)
def row_sums(a, out):
    for i in prange(a.shape[0]):
        total = 0.0
        for j in range(a.shape[1]):
            total += math.sqrt(abs(a[i, j])) * 0.5
        out[i] = total
    return out


def dither_call():
    sys.path.insert(0, str(REPO / "examples" / "dither"))
    import dither  # noqa: PLC0415 - the example lives outside any package
    from skimage.io import imread  # noqa: PLC0415

    image = imread(dither.IMAGE_PATH)
    return lambda: dither.dither(image)


def library_call():
    values = np.random.default_rng(1).standard_normal(200_000)
    out = np.empty_like(values)
    return lambda: window_stats(values, out)


def parallel_call():
    a = np.random.default_rng(2).standard_normal((2048, 2048))
    out = np.empty(a.shape[0])
    return lambda: row_sums(a, out)


KERNELS = {"dither": dither_call, "library": library_call, "parallel": parallel_call}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in KERNELS:
        print(f"usage: {argv[0]} {{{','.join(KERNELS)}}} SECONDS", file=sys.stderr)
        return 2
    call = KERNELS[argv[1]]()
    budget = float(argv[2])

    start = time.perf_counter()
    call()
    print(f"compile_s: {time.perf_counter() - start:.4f}", flush=True)

    count = 0
    start = time.perf_counter()
    while True:
        call()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            break
    print(f"calls/sec: {count / elapsed:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
