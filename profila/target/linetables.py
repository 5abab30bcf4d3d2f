"""Line tables only, for every Numba CPU compilation in a profiled program.

This module runs *inside the target*: profila's boot ``sitecustomize`` loads it (by file path,
as ``_profila_linetables``) right after the target has imported ``numba``, and calls
:func:`apply`. It needs nothing but the standard library and Numba.

The goal: the machine code a plain run would ship, plus DWARF line tables (compile units with
``emissionKind: LineTablesOnly``) so that JIT addresses map to file:line, with inlined code as
inlined-subroutine records where LLVM keeps them. ``NUMBA_DEBUGINFO=1`` instead marks every
function ``noinline``, gives every variable a stack slot and turns bounds checking on.

What is patched, and why (numba 0.68.1):

* ``CPUTargetOptions.finalize`` (``numba/core/cpu.py``) and ``UFuncTargetOptions.finalize``
  (``numba/np/ufunc/ufuncbuilder.py``): where every ``@njit``/``@jit``/``@cfunc``/jitclass
  method/``@overload`` implementation and every ``@vectorize``/``@guvectorize`` kernel gets its
  final flags. The original runs first, so ``boundscheck``, ``dbg_extend_lifetimes`` and the
  rest get their no-debug values; then, if debug info is still off, ``debuginfo=True`` and
  ``dbg_directives_only=True`` are set. ``dbg_directives_only`` is what keeps
  ``BaseLower.pre_lower`` from adding ``noinline`` and ``Lower._disable_sroa_like_opt`` from
  giving variables stack slots. An explicit ``debug=True`` (or ``NUMBA_DEBUGINFO=1`` in the
  user's own environment) is left alone: full debug info, the user's choice. Parfor gufuncs
  copy their parent's flags, so they follow.
* ``Flags.get_mangle_string``: Numba puts the flags into every symbol's ABI tag; the two flags
  above are left out of it, so symbol names are those of a plain run.
* ``numba.core.compiler._make_subtarget``: builds the target context a compilation lowers
  with. For line-tables compilations (CPU only: CUDA's ``lineinfo`` sets the same flags) its
  ``DIBuilder`` becomes :class:`LineTablesDIBuilder`; Numba's own ``DebugDirectivesOnly``
  emission aborts the process on an LLVM assertion. Internal subroutines
  (``BaseContext._compile_subroutine_no_cache``) compile with fresh flags on a copy of the
  caller's context, so they inherit the caller's builder: line tables under a line-tables
  caller, Numba's full builder under a ``debug=True`` caller.
* ``BaseLower.pre_lower``: hands the lowerer to the builder, so that each location gets the file
  of its statement: statements Numba inlined from another file (``inline="always"``) get a
  ``DILexicalBlockFile`` of that file rather than the caller's file with foreign line numbers.
* ``BaseLower._compute_def_location`` (where a function starts): for line-tables lowerings,
  answered from an index of each source file, parsed once (Numba parses the function's whole
  file for every function: most of the extra compile time), and without the
  ``NumbaDebugInfoWarning`` ("Could not find source ...") Numba gives for generated code. A
  plain build never warns, and a warning filter would not protect a program that turns
  warnings into errors (``-W error``, ``catch_warnings``): Numba's own test-suite does. (If
  that method is not as expected, the warning is filtered instead.)
* ``numba.parfors.parfor_lowering._create_gufunc_for_parfor_body``: remembers the parfor
  being outlined. Its gufunc is generated source, file ``"<string>"`` (numba#9412); its line
  info goes to the user's file: the loop body keeps its own lines, the generated scaffolding
  (chunk loops, argument unpacking) maps to the ``prange`` line.
* ``CPUCodeLibrary.add_ir_module``: Numba's wrappers (ufunc loops, gufunc and parfor-kernel
  wrappers, CPython and cfunc wrappers) have no debug info; LLVM inlines the kernel into the
  ufunc/gufunc loop (``alwaysinline``) and would drop its line info there, which is where a
  ``@vectorize`` or ``prange`` kernel runs. Such a wrapper gets a subprogram at its kernel's
  first line (:func:`annotate_wrappers`); the inlined kernel keeps its lines, as an inlined
  frame.
* ``IndexDataCacheFile.__init__`` (``numba/core/caching.py``): a marker is appended to cache
  file names. Numba's cache key ignores compile flags; profila points ``NUMBA_CACHE_DIR`` at
  its own cache, and the marker keeps line-tables and plain builds apart even if the program
  sets ``NUMBA_CACHE_DIR`` itself.

The ``finalize`` methods, ``_make_subtarget`` and ``pre_lower`` are essential: if Numba's
internals do not look as expected there, nothing is patched and one line is printed:
``profila: line info unavailable for numba X.Y (...)``. Each of the others is skipped if its
target looks different.

Measured on numba 0.68.1, llvmlite 0.50.0, 2 vCPU x86-64 (shared host), dither kernel
(``np.round`` in a 2-D loop) on a 512x512 image, 10 fresh processes per build:

* machine code: ``inspect_asm()`` identical to a plain run once debug directives, debug
  sections and object ids are removed: dither, a function calling another ``@njit`` function,
  a ``@vectorize`` ufunc (kernel and loop wrapper), a ``prange`` kernel, array sort,
  ``@guvectorize``, ``@cfunc``, a jitclass method (``tests/e2e/test_linetables.py``). An
  ``objmode`` block differs only in a data constant: its pickled flags.
* runtime per call, best of 80: plain 3.65-3.69 ms, line tables 3.64-3.67 ms (1.00x, within
  noise); ``NUMBA_DEBUGINFO=1``: 4.55 ms (1.24x slower).
* first-call compile, CPU time, median: plain 0.98-1.00 s, line tables 1.17-1.21 s
  (+0.2 s, 1.2x; 1.84-1.97 s before parsing each source file once); ``NUMBA_DEBUGINFO=1``:
  1.87-2.01 s.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

MARK = "__profila_linetables__"  # set on the patched finalize methods
CACHE_MARK = "profila-lt1"  # appended to cache file names; bump if the emitted info changes
_DWARF_VERSION = 4
_DEBUG_INFO_VERSION = 3

_applied: list[tuple[Any, str, Any]] = []  # (owner, attribute, original) for remove()
_INHERITED = object()  # marks an attribute the owner had only through a base class
_warned = False
_parfors = threading.local()


class Unsupported(Exception):
    """Numba's internals are not what this module was written against."""


def numba_version() -> str:
    """``X.Y`` of the imported numba, or ``?``."""
    numba = sys.modules.get("numba")
    parts = str(getattr(numba, "__version__", "?")).split(".")
    return ".".join(parts[:2])


def warn_unavailable(reason: str) -> None:
    """Say once, on stderr, that line info is off and why."""
    global _warned
    if _warned:
        return
    _warned = True
    print(
        f"profila: line info unavailable for numba {numba_version()} ({reason})",
        file=sys.stderr,
        flush=True,
    )


def is_applied() -> bool:
    return bool(_applied)


def apply() -> bool:
    """Patch the imported numba for line tables only. True if patched (now or before).

    Never raises for a numba it does not understand: it warns once and leaves numba as it was.
    """
    if _applied or _patched_elsewhere():
        return True
    try:
        plan = _plan()
    except Unsupported as exc:
        warn_unavailable(str(exc))
        return False
    except Exception as exc:  # an import or attribute we did not foresee
        warn_unavailable(f"{type(exc).__name__}: {exc}")
        return False
    try:
        for owner, name, replacement in plan:
            original = vars(owner).get(name, _INHERITED)
            setattr(owner, name, replacement)
            _applied.append((owner, name, original))
    except Exception as exc:
        remove()
        warn_unavailable(f"{type(exc).__name__}: {exc}")
        return False
    if not any(name == "_compute_def_location" for _, name, _ in _applied):
        from numba.core.errors import NumbaDebugInfoWarning  # line-tables builds may warn

        warnings.filterwarnings("ignore", category=NumbaDebugInfoWarning)
    return True


def _patched_elsewhere() -> bool:
    """Has another copy of this module (loaded under another name) patched numba already?"""
    cpu = sys.modules.get("numba.core.cpu")
    options = getattr(cpu, "CPUTargetOptions", None)
    return getattr(vars(options).get("finalize") if options else None, MARK, False) is True


def remove() -> None:
    """Undo :func:`apply` (the warnings filter stays)."""
    while _applied:
        owner, name, original = _applied.pop()
        if original is _INHERITED:
            delattr(owner, name)
        else:
            setattr(owner, name, original)


# --------------------------------------------------------------------------------------------
# Checking numba and building the replacements


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise Unsupported(what)


def _names(function: Any) -> set[str]:
    """Global and attribute names a function's code refers to (its own code only)."""
    code = getattr(function, "__code__", None)
    return set(code.co_names) if code is not None else set()


def _own(owner: Any, name: str) -> Any:
    """``owner.name`` defined on ``owner`` itself (what will be replaced)."""
    value = vars(owner).get(name)
    _require(value is not None, f"{getattr(owner, '__name__', owner)}.{name} not found")
    return value


def _plan() -> list[tuple[Any, str, Any]]:
    """Check numba's internals and return (owner, attribute, replacement) triples."""
    from numba.core import compiler, cpu, debuginfo, lowering
    from numba.core.base import BaseContext
    from numba.np.ufunc import ufuncbuilder

    options = getattr(compiler.Flags, "options", {})
    for flag in ("debuginfo", "dbg_directives_only", "boundscheck", "dbg_extend_lifetimes"):
        _require(flag in options, f"no compile flag {flag}")

    lower = lowering.BaseLower
    _require(
        "dbg_directives_only" in _names(_own(lower, "pre_lower")),
        "BaseLower.pre_lower ignores dbg_directives_only",
    )
    sroa = vars(lowering.Lower).get("_disable_sroa_like_opt")
    _require(
        isinstance(sroa, property) and "dbg_directives_only" in _names(sroa.fget),
        "Lower._disable_sroa_like_opt ignores dbg_directives_only",
    )
    _require(
        {"DIBuilder", "enable_debuginfo", "dbg_directives_only"} <= _names(_own(lower, "__init__")),
        "BaseLower picks its DIBuilder differently",
    )
    _require(
        hasattr(BaseContext, "DIBuilder") and hasattr(BaseContext, "enable_debuginfo"),
        "no DIBuilder on the target context",
    )
    abstract = getattr(debuginfo, "AbstractDIBuilder", None)
    if not isinstance(abstract, type):
        raise Unsupported("no numba.core.debuginfo.AbstractDIBuilder")
    _require(
        "_make_subtarget" in _names(_own(compiler.CompilerBase, "__init__")),
        "CompilerBase does not call _make_subtarget",
    )
    make_subtarget = _own(compiler, "_make_subtarget")
    cpu_finalize = _own(cpu.CPUTargetOptions, "finalize")
    ufunc_finalize = _own(ufuncbuilder.UFuncTargetOptions, "finalize")
    for finalize in (cpu_finalize, ufunc_finalize):
        _require("DEBUGINFO_DEFAULT" in _names(finalize), "finalize no longer sets debuginfo")

    builder = _dibuilder_class(abstract)
    plan: list[tuple[Any, str, Any]] = [
        (cpu.CPUTargetOptions, "finalize", _lines_finalize(cpu_finalize)),
        (ufuncbuilder.UFuncTargetOptions, "finalize", _lines_finalize(ufunc_finalize)),
        (compiler, "_make_subtarget", _lines_subtarget(make_subtarget, builder)),
        (lower, "pre_lower", _attaching_pre_lower(_own(lower, "pre_lower"), builder)),
    ]
    mangle = getattr(compiler.Flags, "get_mangle_string", None)
    if callable(mangle):  # optional: only symbol names would differ without it
        plan.append((compiler.Flags, "get_mangle_string", _plain_mangle(mangle)))
    plan.extend(_def_location_plan(lowering, builder))
    plan.extend(_parfor_plan())
    plan.extend(_wrapper_plan())
    plan.extend(_cache_plan())
    return plan


def _lines_finalize(original: Callable[..., None]) -> Callable[..., None]:
    def finalize(self: Any, flags: Any, options: Any) -> None:
        original(self, flags, options)
        if not flags.debuginfo:
            # Everything above was decided as for a no-debug build; now ask for line tables.
            flags.debuginfo = True
            flags.dbg_directives_only = True

    finalize.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(finalize, MARK, True)
    return finalize


def _plain_mangle(original: Callable[[Any], str]) -> Callable[[Any], str]:
    """Symbol names as in a plain run: the ABI tag Numba derives from the flags leaves out the
    two flags that ask for line tables. (CPU flags only: CUDA's ``lineinfo`` sets them too.)"""
    from numba.core import compiler

    flags_class: Any = compiler.Flags

    def get_mangle_string(self: Any) -> str:
        if type(self) is flags_class and self.dbg_directives_only and self.debuginfo:
            self = self.copy()
            self.debuginfo = False
            self.dbg_directives_only = False
        return original(self)

    get_mangle_string.__wrapped__ = original  # type: ignore[attr-defined]
    return get_mangle_string


def _lines_subtarget(original: Callable[..., Any], builder: type) -> Callable[..., Any]:
    from numba.core import cpu

    cpu_context: Any = cpu.CPUContext

    def _make_subtarget(targetctx: Any, flags: Any) -> Any:
        context = original(targetctx, flags)
        if flags.debuginfo and isinstance(context, cpu_context):  # not CUDA's lineinfo
            if flags.dbg_directives_only:
                context.DIBuilder = builder
            elif vars(context).get("DIBuilder") is builder:
                context.DIBuilder = type(context).DIBuilder  # full debug info, as asked
        return context

    _make_subtarget.__wrapped__ = original  # type: ignore[attr-defined]
    return _make_subtarget


def _attaching_pre_lower(original: Callable[[Any], None], builder: Any) -> Callable[[Any], None]:
    def pre_lower(self: Any) -> None:
        dib = getattr(self, "debuginfo", None)
        if isinstance(dib, builder):
            dib.attach(self)
        original(self)

    pre_lower.__wrapped__ = original  # type: ignore[attr-defined]
    return pre_lower


def _def_location_plan(lowering: Any, builder: type) -> list[tuple[Any, str, Any]]:
    """Where a line-tables function starts: as Numba finds it, faster and without warnings.

    With debug info on, the lowerer looks up the first line of each function's body
    (``numba.misc.firstlinefinder``), parsing the function's whole file every time: a tenth of
    a second per ``numba/np/arrayobj.py`` function, most of the extra compile time of the
    dither kernel. Here each file is parsed once. When there is no source (generated code),
    Numba warns (``NumbaDebugInfoWarning``: "Could not find source ..."); a plain build never
    does, and a warning filter would not help a program that turns warnings into errors, so
    line-tables builds do not warn. Other builds (``debug=True``) go through Numba's code.
    """
    original = vars(lowering.BaseLower).get("_compute_def_location")
    first_lineno = vars(lowering).get("get_func_body_first_lineno")
    if (
        not callable(original)
        or not callable(first_lineno)
        or not {"get_func_body_first_lineno", "with_lineno"} <= _names(original)
    ):
        return []
    body_start = body_start_lookup(first_lineno)

    def _compute_def_location(self: Any) -> Any:
        context = self.context
        if not (context.enable_debuginfo and context.DIBuilder is builder):
            return original(self)
        loc = self.func_ir.loc
        start = body_start(self.func_ir.func_id.func)
        # as Numba: the line before the body's first line, else the line after the def's
        return loc.with_lineno(start - 1 if start is not None else loc.line + 1)

    _compute_def_location.__wrapped__ = original  # type: ignore[attr-defined]
    return [(lowering.BaseLower, "_compute_def_location", _compute_def_location)]


def body_start_lookup(fallback: Callable[[Any], int | None]) -> Callable[[Any], int | None]:
    """``get_func_body_first_lineno`` with each source file parsed once (while unchanged);
    ``fallback`` answers for functions whose file cannot be read or parsed."""
    files: dict[str, tuple[tuple[int, int], dict[tuple[str, int], int]]] = {}

    def get_func_body_first_lineno(pyfunc: Any) -> int | None:
        code: Any = getattr(pyfunc, "__code__", None)
        try:
            path = code.co_filename
            stat = os.stat(path)
            stamp = (stat.st_mtime_ns, stat.st_size)
            entry = files.get(path)
            if entry is None or entry[0] != stamp:
                entry = files[path] = (stamp, function_bodies(path))
        except Exception:
            return fallback(pyfunc)
        return entry[1].get((code.co_name, code.co_firstlineno))

    return get_func_body_first_lineno


def function_bodies(path: str) -> dict[tuple[str, int], int]:
    """``(name, line) -> first line of the body`` for each ``def`` in the file ``path``.

    ``line`` is the ``def`` line or the first decorator's line (``co_firstlineno`` is one of
    them), the body's first line skips a docstring; the first ``def`` in source order wins.
    """
    import ast

    with open(path, "rb") as f:
        tree = ast.parse(f.read(), path)
    found: dict[tuple[str, int], int] = {}
    stack: list[ast.AST] = [tree]
    while stack:  # depth first, in source order, through statements only (defs are statements)
        node = stack.pop()
        if isinstance(node, ast.FunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                body = body[1:]
            if body:
                starts = {node.lineno}
                if node.decorator_list:
                    starts.add(node.decorator_list[0].lineno)
                for start in starts:
                    found.setdefault((node.name, start), body[0].lineno)
        children: list[ast.AST] = []
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            value = getattr(node, field, None)
            if isinstance(value, list):
                children.extend(v for v in value if isinstance(v, ast.AST))
        stack.extend(reversed(children))
    return found


def _parfor_plan() -> list[tuple[Any, str, Any]]:
    """Remember which parfor is being outlined (optional: skipped if numba differs)."""
    try:
        from numba.parfors import parfor_lowering
    except Exception:
        return []
    original = vars(parfor_lowering).get("_create_gufunc_for_parfor_body")
    if original is None or "parfor" not in original.__code__.co_varnames[:2]:
        return []

    def _create_gufunc_for_parfor_body(*args: Any, **kwargs: Any) -> Any:
        parfor = kwargs["parfor"] if "parfor" in kwargs else args[1]
        with _outlining(getattr(parfor, "loc", None)):
            return original(*args, **kwargs)

    _create_gufunc_for_parfor_body.__wrapped__ = original  # type: ignore[attr-defined]
    return [(parfor_lowering, "_create_gufunc_for_parfor_body", _create_gufunc_for_parfor_body)]


@contextmanager
def _outlining(loc: Any) -> Iterator[None]:
    stack: list[Any] = getattr(_parfors, "stack", None) or []
    _parfors.stack = stack
    stack.append(loc)
    try:
        yield
    finally:
        stack.pop()


def _cache_plan() -> list[tuple[Any, str, Any]]:
    """Give line-tables builds their own cache file names (optional)."""
    try:
        from numba.core import caching
    except Exception:
        return []
    cls = getattr(caching, "IndexDataCacheFile", None)
    original = vars(cls).get("__init__") if isinstance(cls, type) else None
    if original is None or original.__code__.co_varnames[:4] != (
        "self",
        "cache_path",
        "filename_base",
        "source_stamp",
    ):
        return []

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if "filename_base" in kwargs:
            kwargs["filename_base"] = f"{kwargs['filename_base']}.{CACHE_MARK}"
        elif len(args) >= 2:
            args = (args[0], f"{args[1]}.{CACHE_MARK}", *args[2:])
        original(self, *args, **kwargs)

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    return [(cls, "__init__", __init__)]


# --------------------------------------------------------------------------------------------
# Debug-info metadata


def is_generated(filename: str) -> bool:
    """``<string>`` and the like: source that exists nowhere on disk."""
    base = os.path.basename(filename)
    return base.startswith("<") and base.endswith(">")


# Where each function compiled with line tables starts: LLVM name -> (file, line). Wrappers
# (CPython, cfunc, ufunc-loop and gufunc wrappers) that call such a function are placed there.
_starts: dict[str, tuple[str, int]] = {}


def _optimised(config: Any) -> bool:
    return bool(getattr(config, "OPT", 3) != 0)


def _difile(module: Any, path: str) -> Any:
    return module.add_debug_info(
        "DIFile",
        {
            "directory": os.path.dirname(path),
            "filename": os.path.basename(path),
        },
    )


def _compile_unit(module: Any, difile: Any) -> Any:
    from llvmlite import ir
    from numba.core import config

    return module.add_debug_info(
        "DICompileUnit",
        {
            "language": ir.DIToken("DW_LANG_C_plus_plus"),
            "file": difile,
            # gdb skips prologues the clang way only for a producer starting "clang "
            "producer": "clang (Numba)",
            "runtimeVersion": 0,
            "isOptimized": _optimised(config),
            "emissionKind": ir.DIToken("LineTablesOnly"),
        },
        is_distinct=True,
    )


def _subprogram(module: Any, unit: Any, difile: Any, function: Any, name: str, line: int) -> Any:
    from numba.core import config

    subprogram = module.add_debug_info(
        "DISubprogram",
        {
            "name": name,
            "linkageName": function.name,
            "scope": difile,
            "file": difile,
            "line": line,
            "type": module.add_debug_info("DISubroutineType", {"types": module.add_metadata([])}),
            "isLocal": False,
            "isDefinition": True,
            "scopeLine": line,
            "isOptimized": _optimised(config),
            "unit": unit,
        },
        is_distinct=True,
    )
    function.set_metadata("dbg", subprogram)
    return subprogram


def _finish(module: Any, unit: Any) -> None:
    """List ``unit`` in the module and declare the DWARF version, as clang does."""
    from llvmlite import ir

    units = module.add_named_metadata("llvm.dbg.cu")
    if unit not in units.operands:
        units.add(unit)
    flags = module.add_named_metadata("llvm.module.flags")
    warning = ir.IntType(32)(2)  # on conflicting values: warn, keep the first
    for key, value in (
        ("Dwarf Version", _DWARF_VERSION),
        ("Debug Info Version", _DEBUG_INFO_VERSION),
    ):
        node = module.add_metadata([warning, key, ir.IntType(32)(value)])
        if node not in flags.operands:
            flags.add(node)


def annotate_wrappers(module: Any) -> None:
    """Give line info to functions of ``module`` that have none and call a function compiled
    with line tables: all their instructions are placed at that function's first line.

    Numba builds its wrappers (ufunc loops, gufunc and parfor-kernel wrappers, CPython and cfunc
    wrappers) without debug info. When LLVM inlines a kernel into such a wrapper (the kernel is
    ``alwaysinline`` in ufunc and gufunc wrappers), the kernel's locations are dropped unless
    the call itself has one: with this, they are kept, as an inlined frame.
    """
    from llvmlite import ir

    unit = None
    for function in module.functions:
        if function.is_declaration or "dbg" in function.metadata:
            continue
        start = None
        calls = []
        for block in function.blocks:
            for instruction in block.instructions:
                if isinstance(instruction, ir.CallInstr):
                    calls.append(instruction)
                    callee = getattr(instruction.callee, "name", None)
                    if start is None and callee in _starts:
                        start = _starts[callee]
        if start is None:
            continue
        path, line = start
        difile = _difile(module, path)
        if unit is None:
            unit = _compile_unit(module, difile)
        subprogram = _subprogram(module, unit, difile, function, function.name, line)
        location = module.add_debug_info(
            "DILocation", {"line": line, "column": 1, "scope": subprogram}
        )
        for block in function.blocks:
            for instruction in block.instructions:
                instruction.set_metadata("dbg", location)
        _starts[function.name] = start  # a wrapper of this wrapper goes there too
    if unit is not None:
        _finish(module, unit)


def _wrapper_plan() -> list[tuple[Any, str, Any]]:
    """Line info for wrappers, as they are added to a library (optional)."""
    try:
        from numba.core.codegen import CPUCodeLibrary
    except Exception:
        return []
    original = vars(CPUCodeLibrary).get("add_ir_module")
    if original is None:
        return []

    def add_ir_module(self: Any, ir_module: Any) -> None:
        annotate_wrappers(ir_module)
        original(self, ir_module)

    add_ir_module.__wrapped__ = original  # type: ignore[attr-defined]
    return [(CPUCodeLibrary, "add_ir_module", add_ir_module)]


def _dibuilder_class(abstract: type) -> type:
    class LineTablesDIBuilder(abstract):  # type: ignore[misc]
        """Compile units with ``emissionKind: LineTablesOnly``: subprograms (with an empty
        subroutine type) and locations; no variables, no types."""

        def __init__(self, module: Any, filepath: str, cgctx: Any, directives_only: bool) -> None:
            self.module = module
            self.cgctx = cgctx
            self.source = filepath  # as Numba has it, possibly "<string>"
            self.filepath = os.path.abspath(filepath)
            self.subprograms: list[Any] = []
            self._unit: Any = None
            self._file: Any = None
            self._lowerer: Callable[[], Any] | None = None
            self._rebase: tuple[str, int] | None = None  # (file, line) for generated code
            self._paths: dict[str, str] = {}
            self._scopes: dict[tuple[int, str], Any] = {}

        def initialize(self) -> None:
            pass  # the compile unit is made on first use, once the file is known

        def attach(self, lowerer: Any) -> None:
            """Called by the lowerer before the function is lowered."""
            self._lowerer = weakref.ref(lowerer)
            if self._unit is None and is_generated(self.source):
                loc = _outlined_parfor_of(lowerer)
                if loc is not None:
                    self._rebase = (os.path.abspath(loc.filename), int(loc.line))
                    self.filepath = self._rebase[0]

        # -- AbstractDIBuilder ---------------------------------------------------------------

        def mark_variable(
            self,
            builder: Any,
            allocavalue: Any,
            name: str,
            lltype: Any,
            size: int,
            line: int,
            datamodel: Any = None,
            argidx: int | None = None,
        ) -> None:
            return None  # line tables only

        def mark_location(self, builder: Any, line: int) -> None:
            path, line = self._where(line)
            builder.debug_metadata = self.module.add_debug_info(
                "DILocation",
                {
                    "line": line,
                    "column": 1,
                    "scope": self._scope(path),
                },
            )

        def mark_subprogram(
            self, function: Any, qualname: str, argnames: Any, argtypes: Any, line: int
        ) -> None:
            if self._rebase is not None:
                line = self._rebase[1]
            unit = self._compile_unit()
            self.subprograms.append(
                _subprogram(self.module, unit, self._file, function, qualname, line)
            )
            _starts[function.name] = (self.filepath, line)
            # Now rather than in finalize(), which object-mode lowering never calls: LLVM
            # drops (and warns about) debug info in a module without a "Debug Info Version".
            _finish(self.module, unit)

        def finalize(self) -> None:
            _finish(self.module, self._compile_unit())

        # -- internals ----------------------------------------------------------------------

        def _compile_unit(self) -> Any:
            if self._unit is None:
                self._file = _difile(self.module, self.filepath)
                self._unit = _compile_unit(self.module, self._file)
            return self._unit

        def _where(self, line: int) -> tuple[str, int]:
            """File and line of the statement being lowered."""
            filename = self.source
            lowerer = self._lowerer() if self._lowerer is not None else None
            loc: Any = getattr(lowerer, "loc", None)
            if getattr(loc, "line", None) == line and isinstance(
                getattr(loc, "filename", None), str
            ):
                filename = loc.filename
            if self._rebase is not None and is_generated(filename):
                return self._rebase
            path = self._paths.get(filename)
            if path is None:
                path = self._paths[filename] = os.path.abspath(filename)
            return path, line

        def _scope(self, path: str) -> Any:
            subprogram = self.subprograms[-1]
            if path == self.filepath:
                return subprogram
            key = (len(self.subprograms), path)
            scope = self._scopes.get(key)
            if scope is None:
                scope = self._scopes[key] = self.module.add_debug_info(
                    "DILexicalBlockFile",
                    {
                        "scope": subprogram,
                        "file": _difile(self.module, path),
                        "discriminator": 0,
                    },
                )
            return scope

    return LineTablesDIBuilder


def _outlined_parfor_of(lowerer: Any) -> Any:
    """The loc of the parfor whose gufunc ``lowerer`` lowers, if it is one."""
    stack = getattr(_parfors, "stack", None)
    if not stack or stack[-1] is None:
        return None
    loc = stack[-1]
    filename = getattr(loc, "filename", None)
    func_ir = getattr(lowerer, "func_ir", None)
    for block in getattr(func_ir, "blocks", {}).values():
        for stmt in getattr(block, "body", ()):
            if getattr(getattr(stmt, "loc", None), "filename", None) == filename:
                return loc  # the parfor's body was outlined into this function
    return None
