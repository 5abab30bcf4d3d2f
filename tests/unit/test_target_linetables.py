"""The Numba patch, piece by piece, in this process (nothing here compiles a Numba function
with the patch applied: see tests/e2e/test_linetables.py for that)."""

from __future__ import annotations

import importlib.util
import re
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("numba")

from llvmlite import binding as llvm  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba.core import compiler, cpu, debuginfo, lowering  # noqa: E402
from numba.misc.firstlinefinder import get_func_body_first_lineno  # noqa: E402
from numba.np.ufunc import ufuncbuilder  # noqa: E402

from profila.target import linetables  # noqa: E402

# --------------------------------------------------------------------------------------------
# Flags


def finalised(options_class: Any, options: dict[str, Any], lines: bool) -> Any:
    flags = compiler.Flags()  # type: ignore[no-untyped-call]
    opt = options_class()
    opt._apply(flags, options)
    finalize = options_class.finalize
    if lines:
        finalize = linetables._lines_finalize(finalize)
    finalize(opt, flags, options)
    return flags


@pytest.mark.parametrize("options_class", [cpu.CPUTargetOptions,
                                           ufuncbuilder.UFuncTargetOptions])
def test_flags_are_the_plain_ones_plus_line_tables(options_class: Any) -> None:
    plain = finalised(options_class, {}, lines=False)
    lines = finalised(options_class, {}, lines=True)
    assert not plain.debuginfo
    assert lines.debuginfo and lines.dbg_directives_only
    for name in plain.options:
        if name not in ("debuginfo", "dbg_directives_only"):
            assert getattr(lines, name) == getattr(plain, name), name
    assert not lines.boundscheck


def test_explicit_debug_keeps_full_debug_info() -> None:
    plain = finalised(cpu.CPUTargetOptions, {"debug": True}, lines=False)
    lines = finalised(cpu.CPUTargetOptions, {"debug": True}, lines=True)
    assert lines.debuginfo and not lines.dbg_directives_only
    assert lines.boundscheck == plain.boundscheck
    assert lines.dbg_extend_lifetimes == plain.dbg_extend_lifetimes


def test_line_tables_do_not_change_symbol_names() -> None:
    plain = finalised(cpu.CPUTargetOptions, {"fastmath": True}, lines=False)
    lines = finalised(cpu.CPUTargetOptions, {"fastmath": True}, lines=True)
    mangle = linetables._plain_mangle(compiler.Flags.get_mangle_string)
    assert compiler.Flags.get_mangle_string(lines) != plain.get_mangle_string()
    assert mangle(lines) == plain.get_mangle_string()
    assert lines.debuginfo  # the flags themselves are not changed
    full = finalised(cpu.CPUTargetOptions, {"debug": True}, lines=True)
    assert mangle(full) == full.get_mangle_string()


# --------------------------------------------------------------------------------------------
# The debug-info builder


@pytest.fixture
def builder_class() -> type:
    return linetables._dibuilder_class(debuginfo.AbstractDIBuilder)


@pytest.fixture(autouse=True)
def forget_starts() -> Iterator[None]:
    saved = dict(linetables._starts)
    yield
    linetables._starts.clear()
    linetables._starts.update(saved)


def new_function(module: ir.Module, name: str) -> tuple[ir.Function, ir.IRBuilder]:
    fn = ir.Function(module, ir.FunctionType(ir.DoubleType(), [ir.DoubleType()]), name)
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


def nodes(text: str, kind: str) -> list[dict[str, str]]:
    """The fields of each ``!kind(...)`` metadata node in the IR ``text``."""
    found = []
    for body in re.findall(rf"!{kind}\((.*)\)$", text, re.MULTILINE):
        found.append(dict(re.findall(r'(\w+): ("(?:[^"\\]|\\.)*"|[^,]+)', body)))
    return found


def numbered(text: str) -> dict[str, str]:
    """``!N = ...`` metadata by name."""
    return dict(re.findall(r"^(![0-9]+) = (.*)$", text, re.MULTILINE))


def verified(module: ir.Module) -> str:
    """The module's IR, once LLVM has parsed and verified it."""
    text = str(module)
    llvm.parse_assembly(text).verify()
    return text


class FakeLoc:
    def __init__(self, filename: str, line: int) -> None:
        self.filename = filename
        self.line = line


class FakeLowerer:
    def __init__(self, loc: Any, blocks: dict[int, Any] | None = None) -> None:
        self.loc = loc
        self.func_ir = types.SimpleNamespace(blocks=blocks or {})


def test_line_tables_only(builder_class: type, tmp_path: Path) -> None:
    source = str(tmp_path / "user.py")
    module = ir.Module("m")
    fn, b = new_function(module, "f")
    dib: Any = builder_class(module=module, filepath=source, cgctx=None, directives_only=True)
    dib.mark_subprogram(function=fn, qualname="f", argnames=("x",),
                        argtypes=(None,), line=3)
    dib.mark_location(b, 4)
    assert dib.mark_variable(b, fn.args[0], name="x", lltype=ir.DoubleType(), size=8,
                             line=4) is None
    b.ret(b.fadd(fn.args[0], fn.args[0]))
    dib.finalize()
    text = verified(module)
    (unit,) = nodes(text, "DICompileUnit")
    assert unit["emissionKind"] == "LineTablesOnly"
    (subroutine,) = nodes(text, "DISubroutineType")
    assert numbered(text)[subroutine["types"]] == "!{  }"
    assert "DILocalVariable" not in text and "llvm.dbg.declare" not in text
    assert '"Debug Info Version"' in text and '"Dwarf Version"' in text
    assert nodes(text, "DIFile") == [{"directory": f'"{tmp_path}"', "filename": '"user.py"'}]
    assert [n["line"] for n in nodes(text, "DILocation")] == ["4"]
    assert linetables._starts["f"] == (source, 3)


def test_statements_from_another_file_keep_their_file(builder_class: type,
                                                      tmp_path: Path) -> None:
    """Numba-IR-level inlining (inline="always") brings statements of another file."""
    module = ir.Module("m")
    fn, b = new_function(module, "f")
    dib: Any = builder_class(module=module, filepath=str(tmp_path / "user.py"), cgctx=None,
                             directives_only=True)
    lowerer = FakeLowerer(FakeLoc(str(tmp_path / "lib.py"), 40))
    dib.attach(lowerer)
    dib.mark_subprogram(function=fn, qualname="f", argnames=(), argtypes=(), line=3)
    dib.mark_location(b, 40)
    value = b.fadd(fn.args[0], fn.args[0])
    lowerer.loc = FakeLoc(str(tmp_path / "user.py"), 5)
    dib.mark_location(b, 5)
    b.ret(value)
    text = verified(module)
    (block,) = nodes(text, "DILexicalBlockFile")
    assert numbered(text)[block["file"]].endswith('filename: "lib.py")')
    lines = {n["line"]: n["scope"] for n in nodes(text, "DILocation")}
    assert numbered(text)[lines["40"]].startswith("!DILexicalBlockFile(")
    assert numbered(text)[lines["5"]].startswith("distinct !DISubprogram(")


def test_parfor_gufunc_is_placed_in_the_users_file(builder_class: type,
                                                   tmp_path: Path) -> None:
    user = str(tmp_path / "user.py")
    prange = FakeLoc(user, 10)
    body = types.SimpleNamespace(body=[types.SimpleNamespace(loc=FakeLoc(user, 11))])
    module = ir.Module("m")
    fn, b = new_function(module, "__numba_parfor_gufunc_0x1")
    dib: Any = builder_class(module=module, filepath="<string>", cgctx=None,
                             directives_only=True)
    lowerer = FakeLowerer(FakeLoc("<string>", 2), {0: body})
    with linetables._outlining(prange):
        dib.attach(lowerer)
    dib.mark_subprogram(function=fn, qualname="gufunc", argnames=(), argtypes=(), line=1)
    dib.mark_location(b, 2)  # generated scaffolding: at the prange line
    value = b.fadd(fn.args[0], fn.args[0])
    lowerer.loc = FakeLoc(user, 11)  # the loop body: its own line
    dib.mark_location(b, 11)
    b.ret(value)
    text = verified(module)
    assert "<string>" not in text
    assert [n["filename"] for n in nodes(text, "DIFile")] == ['"user.py"']
    assert sorted(n["line"] for n in nodes(text, "DILocation")) == ["10", "11"]
    (subprogram,) = nodes(text, "DISubprogram")
    assert subprogram["line"] == "10"
    assert linetables._starts["__numba_parfor_gufunc_0x1"] == (user, 10)


def test_generated_code_outside_a_parfor_is_left_alone(builder_class: type) -> None:
    module = ir.Module("m")
    fn, b = new_function(module, "g")
    dib: Any = builder_class(module=module, filepath="<string>", cgctx=None,
                             directives_only=True)
    with linetables._outlining(FakeLoc("/elsewhere/user.py", 10)):
        dib.attach(FakeLowerer(FakeLoc("<string>", 2)))  # no statement of user.py
    dib.mark_subprogram(function=fn, qualname="g", argnames=(), argtypes=(), line=1)
    dib.mark_location(b, 2)
    b.ret(fn.args[0])
    assert [n["filename"] for n in nodes(verified(module), "DIFile")] == ['"<string>"']


# --------------------------------------------------------------------------------------------
# Wrappers


def wrapper_module(callee: str) -> ir.Module:
    module = ir.Module("wrapper")
    kernel = ir.Function(module, ir.FunctionType(ir.DoubleType(), [ir.DoubleType()]), callee)
    kernel.attributes.add("alwaysinline")
    wrapper, b = new_function(module, "__ufunc__." + callee)
    b.ret(b.call(kernel, [wrapper.args[0]]))
    return module


def test_wrapper_of_a_line_tables_function_is_placed_at_its_start() -> None:
    linetables._starts["kernel"] = ("/src/user.py", 7)
    module = wrapper_module("kernel")
    linetables.annotate_wrappers(module)
    text = verified(module)
    (subprogram,) = nodes(text, "DISubprogram")
    assert subprogram["name"] == '"__ufunc__.kernel"' and subprogram["line"] == "7"
    assert nodes(text, "DICompileUnit")[0]["emissionKind"] == "LineTablesOnly"
    assert text.count("!dbg") >= 3  # the function, the call, the return
    assert linetables._starts["__ufunc__.kernel"] == ("/src/user.py", 7)


def test_other_wrappers_are_left_alone() -> None:
    module = wrapper_module("unknown_kernel")
    before = str(module)
    linetables.annotate_wrappers(module)
    assert str(module) == before


# --------------------------------------------------------------------------------------------
# Where function bodies start


SOURCE = '''
import functools


def plain(x):
    return x


@functools.lru_cache
# (a comment between decorator and def)
def decorated(x):
    """Docstring."""

    y = x + 1
    return y


class K:
    def method(self,
               a):
        return a

    if True:
        def conditional(self):
            pass


def outer():
    def inner():
        return 1
    try:
        def in_try():
            return 2
    finally:
        def in_finally():
            return 3
    return inner, in_try, in_finally
'''


def code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from code_objects(const)


def test_function_bodies_agree_with_numba(tmp_path: Path) -> None:
    path = tmp_path / "source.py"
    path.write_text(SOURCE)
    found = linetables.function_bodies(str(path))
    checked = 0
    for code in code_objects(compile(SOURCE, str(path), "exec")):
        if code.co_name.startswith("<"):
            continue
        holder = types.SimpleNamespace(__code__=code)
        assert found.get((code.co_name, code.co_firstlineno)) == \
            get_func_body_first_lineno(holder), code.co_name  # type: ignore[no-untyped-call]
        checked += 1
    assert checked == 9  # with the class body, which is no function


def test_first_line_lookup_parses_each_file_once(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "source.py"
    path.write_text(SOURCE)
    namespace: dict[str, Any] = {}
    exec(compile(SOURCE, str(path), "exec"), namespace)
    parsed = []
    real = linetables.function_bodies

    def counting(p: str) -> dict[tuple[str, int], int]:
        parsed.append(p)
        return real(p)

    monkeypatch.setattr(linetables, "function_bodies", counting)
    lookup = linetables.body_start_lookup(get_func_body_first_lineno)
    assert lookup(namespace["plain"]) == 6
    assert lookup(namespace["decorated"].__wrapped__) == 14
    assert lookup(namespace["K"].method) == 21
    assert parsed == [str(path)]
    other = types.FunctionType(compile("def f():\n    pass\n", "<nowhere>", "exec")
                               .co_consts[0], {})
    assert lookup(other) is None  # as numba: no source


# --------------------------------------------------------------------------------------------
# Applying, refusing, undoing


@pytest.fixture
def clean() -> Iterator[None]:
    """Whatever a test applies is removed afterwards."""
    assert not linetables.is_applied()
    yield
    linetables.remove()


def patched_attributes() -> dict[str, Any]:
    from numba.core.codegen import CPUCodeLibrary

    return {
        "cpu.finalize": vars(cpu.CPUTargetOptions)["finalize"],
        "ufunc.finalize": vars(ufuncbuilder.UFuncTargetOptions)["finalize"],
        "_make_subtarget": compiler._make_subtarget,
        "pre_lower": vars(lowering.BaseLower)["pre_lower"],
        "mangle": vars(compiler.Flags).get("get_mangle_string"),
        "def_location": vars(lowering.BaseLower)["_compute_def_location"],
        "add_ir_module": vars(CPUCodeLibrary)["add_ir_module"],
    }


def test_apply_and_remove(clean: None) -> None:
    before = patched_attributes()
    assert linetables.apply()
    during = patched_attributes()
    assert all(during[k] is not before[k] for k in before)
    assert linetables.apply()  # again: nothing more
    assert patched_attributes() == during
    linetables.remove()
    assert patched_attributes() == before
    assert "get_mangle_string" not in vars(compiler.Flags)


def test_unknown_numba_is_left_alone(clean: None, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    def pre_lower(self: Any) -> None:
        pass

    monkeypatch.setattr(lowering.BaseLower, "pre_lower", pre_lower)
    monkeypatch.setattr(linetables, "_warned", False)
    before = patched_attributes()
    assert not linetables.apply()
    assert not linetables.apply()
    assert patched_attributes() == before
    err = capsys.readouterr().err
    assert err == ("profila: line info unavailable for numba "
                   f"{linetables.numba_version()} "
                   "(BaseLower.pre_lower ignores dbg_directives_only)\n")


def test_missing_internals_are_reported(clean: None, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delattr(compiler, "_make_subtarget")
    monkeypatch.setattr(linetables, "_warned", False)
    assert not linetables.apply()
    assert "numba.core.compiler._make_subtarget not found" in capsys.readouterr().err


def test_a_second_copy_does_not_patch_again(clean: None) -> None:
    """The boot code loads this module by path under another name."""
    spec = importlib.util.spec_from_file_location("_profila_linetables_copy",
                                                  linetables.__file__)
    assert spec is not None and spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    assert linetables.apply()
    during = patched_attributes()
    assert copy.apply()
    assert not copy.is_applied()
    assert patched_attributes() == during


def test_module_needs_nothing_but_numba() -> None:
    """The target may not have profila importable: linetables imports no profila module."""
    source = Path(linetables.__file__).read_text()
    assert "profila." not in "".join(
        line for line in source.splitlines() if line.lstrip().startswith(("import", "from")))
    assert sys.modules["profila.target.linetables"] is linetables
    assert textwrap.dedent(source)  # (it parses)
