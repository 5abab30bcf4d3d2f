"""The demangler on Numba's real symbol names and on names made by Numba's own mangler."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profila.symbols.demangle import demangle, display_name, is_wrapper, unescape
from profila.symbols.jitobject import ElfImage

DATA = Path(__file__).resolve().parents[1] / "data" / "jit"


def recorded_symbols() -> list[str]:
    names: set[str] = set()
    for path in sorted(DATA.glob("obj*.o")):
        names.update(s.name for s in ElfImage(path.read_bytes()).symbols if s.type == 2)
    return sorted(names)


def test_user_functions_demangle_to_numbas_qualname() -> None:
    """Each recorded user function's symbol demangles to the qualname Numba reported."""
    facts = json.loads((DATA / "facts.json").read_text())
    for f in facts["functions"]:
        d = demangle(f["mangled"])
        assert d is not None
        assert d.short == f["qualname"]
        assert d.path == ("__main__", f["qualname"])
        assert d.wrapper is None
        assert d.abi_tags[0].startswith("v")


def test_every_recorded_function_symbol_gets_a_readable_name() -> None:
    """No recorded function name is left mangled; wrappers are marked as such."""
    names = recorded_symbols()
    assert names
    for name in names:
        shown = display_name(name)
        assert not shown.startswith("_Z"), name
        if name.startswith("cfunc."):
            assert shown.endswith("[cfunc wrapper]")
        if name.startswith("_ZN7cpython"):
            assert shown.endswith("[cpython wrapper]")


@pytest.mark.parametrize(
    ("symbol", "shown"),
    [
        (
            "_ZN8__main__6kernelB2v1B54c8tJTC_2fWwGaMLSgd6CjA4xXKR0tsqKIYSQsqDQwVMEsTAA_3d_3dE"
            "5ArrayIdLi1E1C7mutable7alignedE",
            "kernel",
        ),
        (
            "_ZN7cpython8__main__6kernelB2v1B54c8tJTC_2fWwGaMLSgd6CjA4xXKR0tsqKIYSQsqDQwVMEsTAA_3d"
            "_3dE5ArrayIdLi1E1C7mutable7alignedE",
            "kernel [cpython wrapper]",
        ),
        (
            "cfunc._ZN8__main__6helperB2v2B54c8tJTC_2fWwGaMLSgd6CjA4xXKR0tsqKIYSQsqDQwVMEsTAA_3d_3d"
            "Ed",
            "helper [cfunc wrapper]",
        ),
        (
            "_ZN5numba2np9arraymath13impl_np_round12_3clocals_3e4implB2v3B58c8tJTC_2fWwGaMLSgd6Cj"
            "A4xXKR0tsqKIYSQsqjRndMIkiiBJNAA_3d_3dEd24omitted_28default_3d0_2927omitted_28default"
            "_3dNone_29",
            "impl_np_round.<locals>.impl",
        ),
        (
            "_ZN5numba7cpython7numbers14int_power_impl12_3clocals_3e9int_powerB2v5B42c8tJTC_2fWQA"
            "93W1AaAIYBPIqRBFCjDSZRVAJmaQIAEdx",
            "int_power_impl.<locals>.int_power",
        ),
        ("NRT_incref", "NRT_incref"),
        ("nrt_atomic_add", "nrt_atomic_add"),
        ("_Z3foo", "foo"),
        ("_ZN3fooB", "_ZN3fooB"),  # malformed: shown as is
        ("_ZN8__main__6dith", "_ZN8__main__6dith"),  # truncated
    ],
)
def test_display_names(symbol: str, shown: str) -> None:
    """Display names are the user's function name; wrappers and C names are recognisable."""
    assert display_name(symbol) == shown


def test_argument_types_and_tags_are_decoded() -> None:
    """Template arguments, literals and escaped tags come out readable."""
    d = demangle(
        "_ZN8__main__6kernelB2v1B54c8tJTC_2fWwGaMLSgd6CjA4xXKR0tsqKIYSQsqDQwVMEsTAA_3d_3dE"
        "5ArrayIdLi1E1C7mutable7alignedE"
    )
    assert d is not None
    assert d.args == ("Array<float64, 1, C, mutable, aligned>",)
    assert d.abi_tags == ("v1", "c8tJTC/WwGaMLSgd6CjA4xXKR0tsqKIYSQsqDQwVMEsTAA==")
    assert d.pretty.startswith("__main__::kernel[abi:v1]")
    assert is_wrapper("cfunc." + "_ZN8__main__1fB2v1Ed")
    assert not is_wrapper("_ZN8__main__1fB2v1Ed")


@pytest.mark.parametrize(
    ("symbol", "shown"),
    [
        ("__ufunc__._ZN8__main__3addB2v1Edd", "add [ufunc wrapper]"),
        ("__gufunc__._ZN8__main__6kernelB2v1Ed", "kernel [gufunc wrapper]"),
        (
            "__gufunc__._ZN13_3cdynamic_3e36__numba_parfor_gufunc_0x7f768f104e50B2v2Ed",
            "__numba_parfor_gufunc_0x7f768f104e50 [gufunc wrapper]",
        ),
        ("__ufunc__.not_mangled", "__ufunc__.not_mangled"),
    ],
)
def test_loop_wrappers_are_named_after_their_kernel(symbol: str, shown: str) -> None:
    """The loops Numba builds around @vectorize, @guvectorize and parfor kernels are wrappers."""
    assert display_name(symbol) == shown
    assert is_wrapper(symbol) == shown.endswith("wrapper]")


@pytest.mark.parametrize(
    "qualified",
    [
        "__main__.dither",
        "__main__.outer.<locals>.inner",
        "pkg.mod.Klass.method",
        "mod.f\u03bb\u00e9",  # non-ASCII identifiers are escaped as UTF-8 bytes
        "mod.my_ab",  # "_ab" is not an escape Numba would write: kept as is
        "mod.x_41",
        "<dynamic>.__numba_parfor_gufunc_0x7f3a",
    ],
)
def test_round_trip_through_numbas_mangler(qualified: str) -> None:
    """Names made by numba.core.itanium_mangler demangle back to the qualified name."""
    from numba.core import itanium_mangler, types

    argtypes = [types.float64[:, :], types.int64, types.UniTuple(types.int64, 2), types.float16]
    mangled = itanium_mangler.mangle(qualified, argtypes, abi_tags=("c8tJTC/WQ+A==",), uid=12)
    d = demangle(mangled)
    assert d is not None, mangled
    assert d.qualified == qualified
    assert d.abi_tags == ("v12", "c8tJTC/WQ+A==")
    assert d.args == (
        "Array<float64, 2, A, mutable, aligned>",
        "int64",
        "UniTuple<int64, 2>",
        "float16",
    )
    wrapped = demangle(itanium_mangler.prepend_namespace(mangled, "cpython"))
    assert wrapped is not None and wrapped.wrapper == "cpython"
    assert wrapped.qualified == qualified


def test_locals_keep_their_enclosing_function() -> None:
    """A closure is shown as outer.<locals>.inner, like its __qualname__."""
    d = demangle("_ZN8__main__5outer12_3clocals_3e5innerB2v7Ex")
    assert d is not None and d.short == "outer.<locals>.inner"


def test_unescape_only_undoes_what_numba_escapes() -> None:
    assert unescape("_3clocals_3e") == "<locals>"
    assert unescape("f_ce_bb") == "f\u03bb"
    assert unescape("my_ab") == "my_ab"  # 0xab alone is not UTF-8
    assert unescape("x_41") == "x_41"  # "A" would not have been escaped
    assert unescape("plain") == "plain"
