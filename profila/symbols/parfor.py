"""Readable, stable names for the functions Numba outlines from a ``prange`` loop.

Numba names a parfor's body ``__numba_parfor_gufunc_0x7f768f104e50``: the hex is the id of a
Python object of the compiling process, so it differs in every run and tells the user nothing.
The body's line info points into the user's function (profila's line-tables build gives it the
user's file), so the ``def`` around that line names it: ``row_sums [prange body]``. Stable
names also let ``profila diff`` match a parallel kernel across runs.
"""

from __future__ import annotations

import ast
import functools
import re

from profila.symbols.frames import SourceFrame

_PARFOR = re.compile(r"__numba_parfor_gufunc_0x[0-9a-f]+")


def readable(function: str, file: str | None, line: int) -> str:
    """``function`` with a parfor body's generated name replaced by ``OWNER [prange body]``,
    OWNER being the function whose source holds ``file:line`` (or ``prange`` if unknown)."""
    if "__numba_parfor_gufunc_0x" not in function:
        return function
    owner = _enclosing(file, line) if file else None
    return _PARFOR.sub(f"{owner or 'prange'} [prange body]", function)


def readable_frame(frame: SourceFrame) -> SourceFrame:
    named = readable(frame.function, frame.file, frame.line)
    return frame if named == frame.function else SourceFrame(frame.file, frame.line, named)


def _enclosing(file: str, line: int) -> str | None:
    """The innermost function defined in ``file`` whose source spans ``line``."""
    best: tuple[int, str] | None = None
    for start, end, name in _functions(file):
        if start <= line <= end and (best is None or start >= best[0]):
            best = (start, name)
    return best[1] if best else None


@functools.lru_cache(maxsize=256)
def _functions(file: str) -> tuple[tuple[int, int, str], ...]:
    """(first line including decorators, last line, qualified name) of each function in file."""
    try:
        with open(file, "rb") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return ()
    found: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                name = prefix + child.name
                found.append((first, child.end_lineno or child.lineno, name))
                visit(child, name + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return tuple(found)
