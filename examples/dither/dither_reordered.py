"""Floyd-Steinberg dithering, optimised and reordered.

Same as ``dither_optimised.py``, and it computes exactly the same image, but
the four error-diffusion statements run in a different order: the three
updates to the next row come first, and the 7/16 update to the next pixel on
this row (x + 1) comes last.

Each of the four statements writes a different pixel, so the order cannot
change the result, and it does not change the chain that limits speed either:
the x + 1 store still feeds the next iteration's ``old_value`` load.  It is
not faster: on the x86-64 machine these examples were written on it is a few
percent slower than ``dither_optimised.py``.

What it does change is the profile.  A sampling profiler charges a stall to
the instructions that wait, and the first ones to wait for ``error`` are now
those of the 3/16 update to the pixel below-left (y + 1, x - 1).  That line
becomes the hottest of the four, while the x + 1 line, the real cause, drops to a few
percent.  See README.md.

Usage::

    python examples/dither/dither_reordered.py [SECONDS]

runs the kernel repeatedly for SECONDS (default 3) and prints ``images/sec: N``.
"""

import sys
import time
from pathlib import Path

import numpy as np
from numba import njit
from skimage.io import imread

IMAGE_PATH = Path(__file__).resolve().parent / "camera_384.png"
DEFAULT_SECONDS = 3.0


@njit
def dither(img):
    result = img.astype(np.float64)
    height = result.shape[0]
    width = result.shape[1]
    for y in range(height):
        for x in range(width):
            old_value = result[y, x]
            # A compare-and-select: cheap, unlike the rounding in dither.py.
            new_value = 0 if old_value < 128 else 255
            result[y, x] = new_value
            error = old_value - new_value
            # Error diffusion, reordered: next row first.  The first of these
            # (x - 1) is now the hottest: it is the first to wait for error.
            if x > 0 and y < height - 1:
                result[y + 1, x - 1] += error * 3 / 16
            if y < height - 1:
                result[y + 1, x] += error * 5 / 16
            if x < width - 1 and y < height - 1:
                result[y + 1, x + 1] += error * 1 / 16
            # The next pixel on this row last.  Still the store that the next
            # iteration's old_value load waits for, but now few samples here.
            if x < width - 1:
                result[y, x + 1] += error * 7 / 16
    return result.astype(np.uint8)


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
    image = imread(IMAGE_PATH)

    # Compile (and sanity-check) outside the timed loop.
    dithered = dither(image)
    assert dithered.shape == image.shape
    assert set(np.unique(dithered).tolist()) <= {0, 255}

    count = 0
    start = time.perf_counter()
    while True:
        dither(image)
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            break
    print(f"images/sec: {count / elapsed:.0f}", flush=True)


if __name__ == "__main__":
    main(sys.argv)
