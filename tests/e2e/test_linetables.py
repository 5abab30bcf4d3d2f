"""Line tables only: the profiled machine code is the shipped machine code, with file:line.

Each test runs real target programs in subprocesses with the environment of
``profila.target.target_environment``: ``"none"`` (a plain run), ``"lines"`` (profila's boot
``sitecustomize`` patches Numba) and, for contrast, ``"full"`` (``NUMBA_DEBUGINFO=1``).

What the comparison of machine code covers: ``inspect_asm()`` (or the library's assembly) of
each construct, with debug directives and sections removed. It showed no difference for any
construct tested here. Elsewhere (not asserted here): an ``objmode`` block embeds its pickled
compile flags as a constant, so that data (and its length, an immediate operand) differs
between the builds while the instructions do not; and symbol names that embed object ids
(parfor gufuncs, jitclass types) differ between any two processes, so they are normalised.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from profila.target import target_environment

pytestmark = pytest.mark.e2e

# --------------------------------------------------------------------------------------------
# The target programs

KERNELS = '''
import json, sys
import numpy as np
from numba import cfunc, float64, guvectorize, njit, prange, vectorize
from numba.experimental import jitclass
from numba.np.ufunc import ufuncbuilder

loop_libraries = []  # the ufunc loop wrappers: where a @vectorize kernel runs
_build = ufuncbuilder.build_ufunc_wrapper
def _capture(*args, **kwargs):
    info = _build(*args, **kwargs)
    loop_libraries.append(info.library)
    return info
ufuncbuilder.build_ufunc_wrapper = _capture


@njit
def dither(img):
    result = img.astype(np.float64)
    height = result.shape[0]
    width = result.shape[1]
    for y in range(height):
        for x in range(width):
            old_value = result[y, x]
            new_value = np.uint8(np.round(old_value / 255)) * 255  # ROUNDING
            result[y, x] = new_value
            error = old_value - new_value
            if x < width - 1:
                result[y, x + 1] += error * 7 / 16
            if x > 0 and y < height - 1:
                result[y + 1, x - 1] += error * 3 / 16
            if y < height - 1:
                result[y + 1, x] += error * 5 / 16
            if x < width - 1 and y < height - 1:
                result[y + 1, x + 1] += error * 1 / 16
    return result.astype(np.uint8)


@njit
def helper(a, i):
    return a[i] * 2.0 + np.sqrt(a[i])  # HELPER


@njit
def caller(a):
    s = 0.0
    for i in range(a.shape[0]):
        s += helper(a, i)  # CALL
    return s


@vectorize(["float64(float64, float64)"])
def ufunc(x, y):
    return x * y + np.sin(x)  # UFUNC


@njit(parallel=True)
def parallel(a):
    out = np.empty_like(a)
    for i in prange(a.shape[0]):  # PRANGE
        out[i] = np.sqrt(a[i]) + 1.0  # PARBODY
    return out


@njit
def sorter(a):
    b = a.copy()
    b.sort()  # SORT
    return b


@guvectorize(["void(float64[:], float64[:])"], "(n)->(n)")
def gufunc(a, out):
    for i in range(a.shape[0]):
        out[i] = a[i] * 2.0  # GUFUNC


@cfunc("float64(float64)")
def callback(x):
    return x * 2.0 + 1.0  # CFUNC


@jitclass([("v", float64[:])])
class Accumulator:
    def __init__(self, n):
        self.v = np.zeros(n)

    def add(self, x):
        for i in range(self.v.shape[0]):
            self.v[i] += x  # METHOD
        return self.v.sum()


img = (np.arange(48 * 48) % 256).astype(np.uint8).reshape(48, 48)
a = np.arange(100.0)
dither(img)
caller(a)
ufunc(a, a)
parallel(a)
sorter(a[::-1].copy())
gufunc(a)
callback.ctypes(2.0)
Accumulator(5).add(1.0)


def objects(dispatcher):
    return [dispatcher.overloads[sig].library._get_compiled_object().hex()
            for sig in dispatcher.signatures]


out = {name: {"asm": "\\n".join(f.inspect_asm().values()), "objects": objects(f)}
       for name, f in [("dither", dither), ("caller", caller), ("parallel", parallel),
                       ("sorter", sorter)]}
out["ufunc"] = {"asm": "\\n".join(lib.get_asm_str() for _, lib, _ in ufunc._keepalive),
                "objects": []}
out["ufunc_loop"] = {"asm": "\\n".join(lib.get_asm_str() for lib in loop_libraries),
                     "objects": []}
out["gufunc"] = {"asm": "\\n".join(cres.library.get_asm_str()
                                   for cres in gufunc._dispatcher.overloads.values()),
                 "objects": []}
out["cfunc"] = {"asm": callback._library.get_asm_str(), "objects": []}
method = Accumulator.class_type.jit_methods["add"]
out["jitclass_method"] = {"asm": "\\n".join(method.inspect_asm().values()),
                          "objects": objects(method)}
print(json.dumps(out))
'''

NO_NUMBA = '''
import json, sys
print(json.dumps({"path": sys.path, "numba": "numba" in sys.modules,
                  "sitecustomize": getattr(sys.modules.get("sitecustomize"), "__file__", None),
                  "user_site_ran": getattr(__builtins__, "USER_SITE_RAN", False)
                                   if not isinstance(__builtins__, dict)
                                   else __builtins__.get("USER_SITE_RAN", False)}))
'''

CACHED_MODULE = '''
import numpy as np
from numba import njit


@njit(cache=True)
def total(a):
    s = 0.0
    for i in range(a.shape[0]):
        s += np.sqrt(a[i])  # CACHED
    return s
'''

CACHED_MAIN = '''
import json
from numba.core import codegen

loaded = []  # object code of libraries loaded from a cache
_set = codegen.CodeLibrary._set_compiled_object
def _record(self, value):
    loaded.append(bytes(value))
    _set(self, value)
codegen.CodeLibrary._set_compiled_object = _record

import numpy as np
from cached_mod import total

total(np.arange(10.0))
library = total.overloads[total.signatures[0]].library
obj = loaded[0] if loaded else library._get_compiled_object()
print(json.dumps({"from_cache": bool(loaded), "object": obj.hex()}))
'''


def line_of(source: str, marker: str) -> int:
    """The line of ``source`` holding the comment ``# marker``."""
    numbers = [i for i, text in enumerate(source.splitlines(), 1) if text.endswith(f"# {marker}")]
    assert len(numbers) == 1, marker
    return numbers[0]


# --------------------------------------------------------------------------------------------
# Running targets


def environment(tmp: Path, mode: str, user: dict[str, str] | None = None,
                extra: dict[str, str] | None = None) -> dict[str, str]:
    """The target's environment for ``mode``, from this one plus the ``user``'s variables;
    ``extra`` is added afterwards."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("NUMBA_DEBUGINFO", "NUMBA_CACHE_DIR", "PYTHONPATH")}
    base["XDG_CACHE_HOME"] = str(tmp / "xdg")  # profila's cache, private to the test
    return {**target_environment({**base, **(user or {})}, mode), **(extra or {})}


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def last_json(stdout: str) -> Any:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("kernels")
    (tmp / "kernels.py").write_text(KERNELS)
    runs: dict[str, Any] = {}
    for mode in ("none", "lines", "full"):
        proc = run(["kernels.py"], environment(tmp, mode), tmp)
        runs[mode] = {"out": last_json(proc.stdout), "stderr": proc.stderr}
    runs["path"] = str(tmp / "kernels.py")
    return runs


# --------------------------------------------------------------------------------------------
# Reading assembly and object code


def normalise(asm: str) -> list[str]:
    """The machine code of an assembly listing: no debug sections, no ``.loc``/``.file``/CFI
    directives, comments or labels that only debug info refers to; object ids masked."""
    out = []
    in_debug = False
    for raw in asm.splitlines():
        line = raw if raw.lstrip().startswith(".ascii") else raw.split("#", 1)[0].rstrip()
        text = line.strip()
        if not text:
            continue
        if text.startswith((".section", ".text", ".data", ".bss")):
            name = text.split()[1] if text.startswith(".section") else ""
            in_debug = name.lstrip('"').startswith(".debug")
        if in_debug or text.startswith((".loc", ".file", ".cfi_")):
            continue
        if re.fullmatch(r"\.L(tmp|func_begin)\d+:", text):
            continue
        line = re.sub(r"0x[0-9a-f]{6,}", "0xID", line)  # parfor gufunc names hold an address
        line = re.sub(r"_23[0-9a-f]{12}_3c", "_23ID_3c", line)  # and jitclass type names an id
        out.append(line)
    return out


def line_rows(asm: str) -> set[tuple[str, int]]:
    """(file, line) of every ``.loc`` directive with a line."""
    files: dict[str, str] = {}
    rows = set()
    for raw in asm.splitlines():
        text = raw.strip()
        m = re.fullmatch(r'\.file\s+(\d+)\s+"([^"]*)"(?:\s+"([^"]*)")?.*', text)
        if m:
            files[m[1]] = os.path.join(m[2], m[3]) if m[3] is not None else m[2]
            continue
        m = re.match(r"\.loc\s+(\d+)\s+(\d+)", text)
        if m and int(m[2]) > 0:
            rows.add((files[m[1]], int(m[2])))
    return rows


def sections(obj: bytes) -> dict[str, bytes]:
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(obj))
    return {s.name: s.data() for s in elf.iter_sections() if s.name}


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def abbreviation_tags(debug_abbrev: bytes) -> Iterator[int]:
    """The DWARF tags that ``.debug_abbrev`` declares (LLVM declares only those it uses)."""
    pos = 0
    while pos < len(debug_abbrev):
        code, pos = _uleb(debug_abbrev, pos)
        if code == 0:
            continue  # end of one compile unit's table
        tag, pos = _uleb(debug_abbrev, pos)
        pos += 1  # has children
        yield tag
        while True:
            name, pos = _uleb(debug_abbrev, pos)
            form, pos = _uleb(debug_abbrev, pos)
            if form == 0x21:  # DW_FORM_implicit_const
                _, pos = _uleb(debug_abbrev, pos)
            if name == 0 and form == 0:
                break


DW_TAG_INLINED_SUBROUTINE = 0x1D


# --------------------------------------------------------------------------------------------
# (a) the machine code is the shipped machine code


@pytest.mark.parametrize("construct", ["dither", "caller", "ufunc", "ufunc_loop", "parallel",
                                       "sorter", "gufunc", "cfunc", "jitclass_method"])
def test_machine_code_is_the_plain_builds(kernels: dict[str, Any], construct: str) -> None:
    plain = normalise(kernels["none"]["out"][construct]["asm"])
    lines = normalise(kernels["lines"]["out"][construct]["asm"])
    assert len(plain) > 20
    assert lines == plain


def test_the_comparison_sees_numba_debuginfo(kernels: dict[str, Any]) -> None:
    """NUMBA_DEBUGINFO=1 changes the code (noinline, stack slots): the comparison notices."""
    plain = normalise(kernels["none"]["out"]["dither"]["asm"])
    assert normalise(kernels["full"]["out"]["dither"]["asm"]) != plain


# --------------------------------------------------------------------------------------------
# (b) the lines build has line tables, in the user's file


def test_plain_build_has_no_line_info(kernels: dict[str, Any]) -> None:
    for construct in ("dither", "parallel", "ufunc_loop"):
        assert line_rows(kernels["none"]["out"][construct]["asm"]) == set()
    for obj in kernels["none"]["out"]["dither"]["objects"]:
        assert ".debug_line" not in sections(bytes.fromhex(obj))


def test_dither_lines_are_in_the_users_file(kernels: dict[str, Any]) -> None:
    path = kernels["path"]
    rows = line_rows(kernels["lines"]["out"]["dither"]["asm"])
    user_lines = {line for file, line in rows if file == path}
    assert line_of(KERNELS, "ROUNDING") in user_lines
    assert len(user_lines) >= 10
    for obj in kernels["lines"]["out"]["dither"]["objects"]:
        found = sections(bytes.fromhex(obj))
        assert b"kernels.py\0" in found[".debug_line"]
        assert ".debug_info" in found


def test_inlined_library_code_keeps_its_own_file(kernels: dict[str, Any]) -> None:
    """Library code inlined by LLVM (array sort) keeps its file and line, as an inlined frame."""
    rows = line_rows(kernels["lines"]["out"]["sorter"]["asm"])
    assert any(file.endswith(os.path.join("numba", "misc", "quicksort.py")) for file, _ in rows)
    assert (kernels["path"], line_of(KERNELS, "SORT")) in rows
    obj = bytes.fromhex(kernels["lines"]["out"]["sorter"]["objects"][0])
    assert DW_TAG_INLINED_SUBROUTINE in set(abbreviation_tags(sections(obj)[".debug_abbrev"]))


def test_inlined_njit_function_keeps_its_lines(kernels: dict[str, Any]) -> None:
    rows = line_rows(kernels["lines"]["out"]["caller"]["asm"])
    assert (kernels["path"], line_of(KERNELS, "HELPER")) in rows
    assert (kernels["path"], line_of(KERNELS, "CALL")) in rows
    obj = bytes.fromhex(kernels["lines"]["out"]["caller"]["objects"][0])
    assert DW_TAG_INLINED_SUBROUTINE in set(abbreviation_tags(sections(obj)[".debug_abbrev"]))


def test_parfor_kernel_lines_are_in_the_users_file(kernels: dict[str, Any]) -> None:
    """numba#9412: the gufunc made for a prange loop is generated source ("<string>"); its
    line info is put in the user's file: the body at its own line, the rest at the prange."""
    asm = kernels["lines"]["out"]["parallel"]["asm"]
    rows = line_rows(asm)
    assert (kernels["path"], line_of(KERNELS, "PRANGE")) in rows
    assert (kernels["path"], line_of(KERNELS, "PARBODY")) in rows
    assert not [row for row in rows if "<" in row[0]]
    # ...in the gufunc wrapper the kernel is inlined into, which is where it runs
    wrapper = function_asm(asm, "__gufunc__.")
    assert (kernels["path"], line_of(KERNELS, "PARBODY")) in line_rows(wrapper)


def function_asm(asm: str, prefix: str) -> str:
    """The assembly of the function whose label starts with ``prefix`` (with the listing's
    ``.file`` directives, for :func:`line_rows`)."""
    lines = asm.splitlines()
    start = next(i for i, text in enumerate(lines) if text.startswith(prefix)
                 and text.endswith(":"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith(".Lfunc_end"))
    files = [text for text in lines if text.strip().startswith(".file")]
    return "\n".join([*files, *lines[start:end]])


def test_other_kernels_have_their_lines(kernels: dict[str, Any]) -> None:
    for construct, marker in [("gufunc", "GUFUNC"), ("cfunc", "CFUNC"),
                              ("jitclass_method", "METHOD")]:
        rows = line_rows(kernels["lines"]["out"][construct]["asm"])
        assert (kernels["path"], line_of(KERNELS, marker)) in rows, construct


def test_ufunc_loop_has_the_kernels_lines(kernels: dict[str, Any]) -> None:
    """The @vectorize kernel is inlined into Numba's loop wrapper; its lines survive there."""
    rows = line_rows(kernels["lines"]["out"]["ufunc_loop"]["asm"])
    assert (kernels["path"], line_of(KERNELS, "UFUNC")) in rows


# --------------------------------------------------------------------------------------------
# (d) quiet


def test_no_debug_info_warnings(kernels: dict[str, Any]) -> None:
    assert "NumbaDebugInfoWarning" in kernels["full"]["stderr"]  # the program does provoke it
    stderr = kernels["lines"]["stderr"]
    assert "NumbaDebugInfoWarning" not in stderr
    assert "Could not find source" not in stderr
    assert "debug info" not in stderr  # LLVM: "ignoring debug info with an invalid version"
    assert "profila:" not in stderr


# --------------------------------------------------------------------------------------------
# (c) cache=True


def _numba_cache_files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.suffix in (".nbi", ".nbc")}


def test_cache_is_profilas_own(tmp_path: Path) -> None:
    (tmp_path / "cached_mod.py").write_text(CACHED_MODULE)
    (tmp_path / "main.py").write_text(CACHED_MAIN)
    user_cache = tmp_path / "__pycache__"
    debug_cache = {"NUMBA_DEBUG_CACHE": "1"}

    plain = run(["main.py"], environment(tmp_path, "none", extra=debug_cache), tmp_path)
    assert "data saved to" in plain.stdout
    before = _numba_cache_files(user_cache)
    assert before

    cold = run(["main.py"], environment(tmp_path, "lines", extra=debug_cache), tmp_path)
    profila_cache = Path(environment(tmp_path, "lines")["NUMBA_CACHE_DIR"])
    assert profila_cache.is_relative_to(tmp_path / "xdg")
    assert "data saved to" in cold.stdout and str(profila_cache) in cold.stdout
    assert not last_json(cold.stdout)["from_cache"]  # the user's build was not loaded
    assert _numba_cache_files(profila_cache)
    assert _numba_cache_files(user_cache) == before

    warm = run(["main.py"], environment(tmp_path, "lines", extra=debug_cache), tmp_path)
    assert "data saved" not in warm.stdout  # nothing compiled
    assert f"data loaded from '{profila_cache}" in warm.stdout
    result = last_json(warm.stdout)
    assert result["from_cache"]
    found = sections(bytes.fromhex(result["object"]))
    assert b"cached_mod.py\0" in found[".debug_line"]
    assert _numba_cache_files(user_cache) == before

    again = run(["main.py"], environment(tmp_path, "none", extra=debug_cache), tmp_path)
    assert "data saved" not in again.stdout  # the user's cache still serves plain runs
    assert ".debug_line" not in sections(bytes.fromhex(last_json(again.stdout)["object"]))


# --------------------------------------------------------------------------------------------
# (e) programs that never import numba


@pytest.mark.parametrize("how", ["script", "module", "command"])
def test_no_numba_no_change(tmp_path: Path, how: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "prog.py").write_text(NO_NUMBA)
    args = {"script": ["prog.py"], "module": ["-m", "prog"], "command": ["-c", NO_NUMBA]}[how]
    plain = last_json(run(args, environment(tmp_path, "none"), work).stdout)
    lines = last_json(run(args, environment(tmp_path, "lines"), work).stdout)
    assert lines["numba"] is False
    assert lines["path"] == plain["path"]
    assert lines["sitecustomize"] == plain["sitecustomize"]


def test_shadowed_sitecustomize_still_runs(tmp_path: Path) -> None:
    site = tmp_path / "usersite"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import builtins\nbuiltins.USER_SITE_RAN = True\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "prog.py").write_text(NO_NUMBA)
    user = {"PYTHONPATH": str(site)}
    plain = last_json(run(["prog.py"], environment(tmp_path, "none", user), work).stdout)
    env = environment(tmp_path, "lines", user)
    assert env["PYTHONPATH"].endswith(os.pathsep + str(site))  # after profila's boot dir
    lines = last_json(run(["prog.py"], env, work).stdout)
    assert plain["user_site_ran"] and lines["user_site_ran"]
    assert lines["sitecustomize"] == plain["sitecustomize"] == str(site / "sitecustomize.py")
    assert lines["path"] == plain["path"]


def test_numba_imported_late_is_patched(tmp_path: Path) -> None:
    """The patch is applied when the program gets to importing numba, wherever that is."""
    program = textwrap.dedent('''
        import json, sys
        def later():
            from numba import njit
            @njit
            def f(x):
                return x + 1
            f(1)
            return "\\n".join(f.inspect_asm().values())
        asm = later()
        print(json.dumps({"loc": ".loc" in asm,
                          "patched": "_profila_linetables" in sys.modules}))
    ''')
    (tmp_path / "late.py").write_text(program)
    result = last_json(run(["late.py"], environment(tmp_path, "lines"), tmp_path).stdout)
    assert result == {"loc": True, "patched": True}


def test_program_turning_warnings_into_errors(tmp_path: Path) -> None:
    """Numba warns (NumbaDebugInfoWarning) when it has no source for generated code, such as a
    parfor's gufunc; a plain build never does. A line-tables build must not either: a program
    run with ``-W error`` (or inside ``catch_warnings``) would fail."""
    program = textwrap.dedent('''
        import warnings
        import numpy as np
        from numba import njit, prange

        @njit(parallel=True)
        def double(a):
            out = np.empty_like(a)
            for i in prange(a.shape[0]):
                out[i] = 2 * a[i]
            return out

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            print(double(np.arange(4.0)).sum())
    ''')
    (tmp_path / "strict.py").write_text(program)
    for mode in ("none", "lines"):
        proc = run(["strict.py"], environment(tmp_path, mode), tmp_path)
        assert proc.stdout.strip() == "12.0"
