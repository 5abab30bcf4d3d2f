"""Floyd-Steinberg dithering, naive version.

Each pixel is rounded to black (0) or white (255) with ``np.round``, and the
rounding error is spread to four neighbours that have not been visited yet.

Under profila, most of the samples should land on the rounding line (the one
that computes ``new_value``): for every pixel it divides, rounds, and
converts float to integer and back.  Compare with ``dither_optimised.py``,
where that line becomes a single comparison.

Usage::

    python examples/dither/dither.py [SECONDS]

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
            # Hot line: this is where most of the time should go.
            new_value = np.uint8(np.round(old_value / 255)) * 255
            result[y, x] = new_value
            error = old_value - new_value
            # Error diffusion: each of these four lines should get a
            # modest share, well below the rounding line above.
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
