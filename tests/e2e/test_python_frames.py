"""Python frames in speedscope stacks, on a real run (CPython 3.11 only).

targets/python_callers.py: main() calls run(), which calls the @njit kernel in a loop (~1 s),
then main() calls python_hot(), pure Python (~0.6 s).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from .conftest import profila

TARGET = Path(__file__).parent / "targets" / "python_callers.py"

pytestmark = pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="CPython 3.11 only")


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[list[str], float]]:
    """(frame names root first, weight) of each stack of one speedscope file."""
    tmp = tmp_path_factory.mktemp("pyframes")
    out = tmp / "x.speedscope.json"
    run = profila(str(TARGET), tmp_path=tmp, json_out=False, options=("-o", str(out)))
    assert run.returncode == 0, run.stderr.decode()
    doc = json.loads(out.read_text())
    names = [f["name"] for f in doc["shared"]["frames"]]
    prof = doc["profiles"][0]
    pairs = zip(prof["samples"], prof["weights"], strict=True)
    return [([names[i] for i in s], w) for s, w in pairs]


def line_of(text: str) -> int:
    lines = [i for i, x in enumerate(TARGET.read_text().splitlines(), 1) if x.strip() == text]
    assert len(lines) == 1
    return lines[0]


def test_kernel_stacks_start_at_main_and_run(stacks: list[tuple[list[str], float]]) -> None:
    """The heaviest stack holding the kernel has, root first, Python frames down to main's
    call of run and run's call of the kernel, then only Numba frames from the kernel on."""
    kernel = [(s, w) for s, w in stacks if any(n.startswith("kernel (python_callers") for n in s)]
    assert kernel, stacks
    names, _ = max(kernel, key=lambda x: x[1])
    first = next(i for i, n in enumerate(names) if n.startswith("kernel (python_callers"))
    main = names.index(f"py main (python_callers.py:{line_of('run(a, 1.0)')})")
    run = names.index(f"py run (python_callers.py:{line_of('total += kernel(a)')})")
    assert main < run == first - 1
    assert all(n.startswith("py ") for n in names[:first])
    assert not any(n.startswith("py ") for n in names[first:])


def test_pure_python_hot_function_has_a_stack(stacks: list[tuple[list[str], float]]) -> None:
    """python_hot, called by main, is a Python-only stack; it runs for 0.6 s against the
    kernel loop's 1 s (part of which compiles), so its weight is a good part of the kernel's
    (a ratio, so that a loaded machine slowing both does not matter)."""
    caller = f"py main (python_callers.py:{line_of('python_hot(0.6)')})"
    hot = sum(
        w
        for s, w in stacks
        if len(s) >= 2 and s[-2] == caller and s[-1].startswith("py python_hot (")
    )
    kernel = sum(w for s, w in stacks if any(n.startswith("kernel (python_c") for n in s))
    assert hot > 0.3 * kernel > 0, stacks
