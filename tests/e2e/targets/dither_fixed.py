"""A fixed amount of work for comparing runs: dither the example image N times.

``python dither_fixed.py (dither | dither_optimised) N`` loads the kernel from
examples/dither/<name>.py (so the profile's lines are that file's) and runs it N times. Unlike
the examples' time budget, the work does not depend on how busy the machine is, so the share of
time in the kernel is the same from run to run: what a CI comparison needs.
"""

import importlib.util
import sys
from pathlib import Path

DITHER = Path(__file__).resolve().parents[3] / "examples" / "dither"

name, count = sys.argv[1], int(sys.argv[2])
spec = importlib.util.spec_from_file_location(f"example_{name}", DITHER / f"{name}.py")
assert spec is not None and spec.loader is not None
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
image = module.imread(module.IMAGE_PATH)
for _ in range(count):
    module.dither(image)
print(f"dithered {count} times", flush=True)
