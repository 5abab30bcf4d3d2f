"""Parfor bodies are named after the function that holds their prange, not Numba's run id."""

from __future__ import annotations

from pathlib import Path

from profila.symbols import parfor
from profila.symbols.frames import SourceFrame

SOURCE = '''\
import numba

class Model:
    @numba.njit(parallel=True)
    def step(a):
        for i in numba.prange(a.shape[0]):
            a[i] += 1

def outer():
    @numba.njit(parallel=True)
    def inner(a):
        for i in numba.prange(a.shape[0]):
            a[i] *= 2
    return inner
'''


def test_body_is_named_after_the_enclosing_function(tmp_path: Path) -> None:
    src = tmp_path / "k.py"
    src.write_text(SOURCE)
    name = "__numba_parfor_gufunc_0x7f768f104e50"
    assert parfor.readable(name, str(src), 7) == "Model.step [prange body]"
    assert parfor.readable(name, str(src), 13) == "outer.<locals>.inner [prange body]"
    wrapper = parfor.readable(f"{name} [gufunc wrapper]", str(src), 4)  # the decorator line
    assert wrapper == "Model.step [prange body] [gufunc wrapper]"


def test_unknown_places_and_other_names_are_left_alone(tmp_path: Path) -> None:
    src = tmp_path / "k.py"
    src.write_text(SOURCE)
    name = "__numba_parfor_gufunc_0x1"
    assert parfor.readable(name, str(src), 1) == "prange [prange body]"  # outside any def
    assert parfor.readable(name, str(tmp_path / "gone.py"), 7) == "prange [prange body]"
    assert parfor.readable(name, None, 0) == "prange [prange body]"
    assert parfor.readable("kernel", str(src), 7) == "kernel"
    frame = SourceFrame(str(src), 7, "kernel")
    assert parfor.readable_frame(frame) is frame
    renamed = parfor.readable_frame(SourceFrame(str(src), 7, name))
    assert renamed == SourceFrame(str(src), 7, "Model.step [prange body]")
