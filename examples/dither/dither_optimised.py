"""Floyd-Steinberg dithering, optimised version.

Same algorithm as ``dither.py``, but black-or-white is picked with a single
comparison against 128 instead of dividing, rounding and converting.

With rounding gone, what is left is a chain that runs through memory: the
first error-diffusion line, the one that adds 7/16 of the error to the next
pixel on the row (x + 1), stores the pixel that the very next iteration loads
as ``old_value``.  Every
iteration therefore waits for the previous one (a loop-carried dependency,
served by store-to-load forwarding), and the samples land on the statements
along that chain: the threshold line (it waits for the load) and the x + 1
line, which is now the hottest of the four error-diffusion lines.

Usage::

    python examples/dither/dither_optimised.py [SECONDS]

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
            # The x + 1 line is the hottest of these four: its store feeds the
            # next iteration's old_value load, so the loop waits on it.
            if x < width - 1:
                result[y, x + 1] += error * 7 / 16
            if x > 0 and y < height - 1:
                result[y + 1, x - 1] += error * 3 / 16
            if y < height - 1:
                result[y + 1, x] += error * 5 / 16
            if x < width - 1 and y < height - 1:
                result[y + 1, x + 1] += error * 1 / 16
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
