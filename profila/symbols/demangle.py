"""Demangling the symbol names Numba gives compiled functions.

Numba borrows the Itanium C++ scheme (``numba/core/itanium_mangler.py``) without its
compression: a dotted qualified name ``module.sub.func`` becomes the nested name
``N<len>module<len>sub<len>funcE``; ABI tags follow as ``B<len><tag>`` (a ``v<uid>`` tag and a
tag encoding the compile flags); then the argument types, each either a builtin code (``d`` for
float64, ``x`` for int64, ...), a literal ``Li<n>E`` or a name with template arguments
``I...E`` (``5ArrayIdLi2E1C7mutable7alignedE`` is ``Array<float64, 2, C, mutable, aligned>``).
Characters outside ``[a-zA-Z0-9_]`` are escaped as ``_xx`` (lower-case hex of each UTF-8 byte),
so ``<locals>`` is ``_3clocals_3e``. Since ``_`` itself is not escaped, an escape is only undone
when it yields a character Numba would have escaped.

Wrappers: ``_ZN7cpython<rest>`` is the CPython-callable wrapper of ``_ZN<rest>``
(``itanium_mangler.prepend_namespace``), ``cfunc.<mangled>`` the C-callable one,
``__gufunc__.<mangled>`` and ``__ufunc__.<mangled>`` the loops around a gufunc or parfor body
and a ufunc kernel. Other names
(``NRT_incref``, ``nrt_atomic_add``, ...) are plain C names and kept as they are.

``display_name`` costs ~10-20 us per name; the symboliser calls it once per function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Numba type codes (itanium_mangler.N2CODE), shown with Numba's type names.
_BUILTIN = {
    "v": "none",
    "b": "bool",
    "h": "uint8",
    "a": "int8",
    "t": "uint16",
    "s": "int16",
    "j": "uint32",
    "i": "int32",
    "y": "uint64",
    "x": "int64",
    "f": "float32",
    "d": "float64",
    "c": "char",
    "l": "long",
    "m": "unsigned long",
    "e": "float128",
}
_ESCAPES = re.compile(r"(?:_[0-9a-f]{2})+")
_WORD_CHAR = re.compile(r"[a-z0-9_]", re.I)


class _Malformed(ValueError):
    pass


def _would_escape(ch: str) -> bool:
    return _WORD_CHAR.fullmatch(ch) is None


def _utf8_length(lead: int) -> int:
    """Length of the UTF-8 sequence starting with byte ``lead`` (0 if it cannot start one)."""
    if lead < 0x80:
        return 1
    for n, prefix, bits in ((2, 0b110, 5), (3, 0b1110, 4), (4, 0b11110, 3)):
        if lead >> bits == prefix:
            return n
    return 0


def _unescape_run(run: str) -> str:
    """Decode a run of ``_xx`` escapes where it yields characters Numba escapes."""
    raw = [int(run[i + 1 : i + 3], 16) for i in range(0, len(run), 3)]
    out: list[str] = []
    i = 0
    while i < len(raw):
        b = raw[i]
        n = _utf8_length(b)
        ch = None
        if n and i + n <= len(raw):
            try:
                ch = bytes(raw[i : i + n]).decode("utf-8")
            except UnicodeDecodeError:
                ch = None
        if ch is not None and len(ch) == 1 and _would_escape(ch):
            out.append(ch)
            i += n
        else:
            out.append(run[3 * i : 3 * i + 3])
            i += 1
    return "".join(out)


def unescape(text: str) -> str:
    """Undo Numba's ``_xx`` escaping of one identifier."""
    if "_" not in text:
        return text
    return _ESCAPES.sub(lambda m: _unescape_run(m.group(0)), text)


@dataclass(frozen=True, slots=True)
class Demangled:
    """The parts of a Numba-mangled function name."""

    path: tuple[str, ...]  # e.g. ("__main__", "outer", "<locals>", "inner")
    abi_tags: tuple[str, ...]  # e.g. ("v12", "c8tJTC/...")
    args: tuple[str, ...]  # argument types, e.g. ("Array<float64, 2, C, mutable, aligned>",)
    wrapper: str | None = None  # "cpython", "cfunc", "ufunc", "gufunc" for wrappers, else None
    suffix: str = ""  # anything after the mangled name, e.g. ".constprop.0"

    @property
    def qualified(self) -> str:
        """Module and qualified name, dotted: ``__main__.dither``."""
        return ".".join(self.path)

    @property
    def short(self) -> str:
        """The function's name as a user wrote it: ``dither``, ``outer.<locals>.inner``."""
        if "<locals>" in self.path:
            first = self.path.index("<locals>")
            return ".".join(self.path[max(first - 1, 0) :])
        return self.path[-1] if self.path else ""

    @property
    def display(self) -> str:
        if self.wrapper:
            return f"{self.short} [{self.wrapper} wrapper]"
        return self.short

    @property
    def pretty(self) -> str:
        """A gdb-like rendering: ``__main__::dither[abi:v12](Array<float64, 2, C, ...>)``."""
        tags = "".join(f"[abi:{t}]" for t in self.abi_tags)
        head = "::".join(self.path) + tags + "(" + ", ".join(self.args) + ")" + self.suffix
        return f"{self.wrapper} wrapper of {head}" if self.wrapper else head


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def take(self, expected: str) -> None:
        if not self.s.startswith(expected, self.i):
            raise _Malformed(f"expected {expected!r} at {self.i}")
        self.i += len(expected)

    def number(self) -> int:
        start = self.i
        if self.peek() == "0":
            # Numba writes an empty identifier as "0" (".NumbaEnv.x" -> "08NumbaEnv1x").
            self.i += 1
            return 0
        while self.i < len(self.s) and self.s[self.i].isdigit():
            self.i += 1
        if start == self.i:
            raise _Malformed(f"expected a length at {start}")
        return int(self.s[start : self.i])

    def source_name(self) -> str:
        n = self.number()
        if self.i + n > len(self.s):
            raise _Malformed("identifier runs past the end")
        ident = self.s[self.i : self.i + n]
        self.i += n
        return unescape(ident)

    def template_args(self) -> list[str]:
        self.take("I")
        args: list[str] = []
        while self.peek() != "E":
            if not self.peek():
                raise _Malformed("unterminated template arguments")
            args.append(self.type_())
        self.take("E")
        return args

    def abi_tags(self) -> list[str]:
        tags: list[str] = []
        while self.peek() == "B":
            self.i += 1
            tags.append(self.source_name())
        return tags

    def name(self) -> tuple[list[str], list[str], list[str]]:
        """(components, template args of the last component, abi tags)."""
        parts: list[str] = []
        targs: list[str] = []
        if self.peek() == "N":
            self.i += 1
            while self.peek().isdigit():
                parts.append(self.source_name())
            if self.peek() == "I":
                targs = self.template_args()
            tags = self.abi_tags()
            self.take("E")
        else:
            parts.append(self.source_name())
            if self.peek() == "I":
                targs = self.template_args()
            tags = self.abi_tags()
        return parts, targs, tags

    def type_(self) -> str:
        c = self.peek()
        if c == "D" and self.s.startswith("Dh", self.i):
            self.i += 2
            return "float16"
        if c == "L":
            self.i += 1
            start = self.i
            while self.peek() and self.peek() != "E":
                self.i += 1
            self.take("E")
            lit = self.s[start : self.i - 1]
            # "i5" -> 5; Numba writes negative numbers as "i-5"
            return lit[1:] if lit[:1].isalpha() else lit
        if c in _BUILTIN:
            self.i += 1
            return _BUILTIN[c]
        if c == "N" or c.isdigit():
            parts, targs, _tags = self.name()
            text = ".".join(parts)
            return f"{text}<{', '.join(targs)}>" if targs else text
        raise _Malformed(f"unknown type code {c!r} at {self.i}")


# Wrappers Numba names by prefixing the wrapped function's mangled name: the C entry point of a
# @cfunc, the loops of @vectorize ufuncs, and those of @guvectorize gufuncs and parfor kernels.
_WRAPPER_PREFIXES = (("cfunc", "cfunc"), ("__ufunc__", "ufunc"), ("__gufunc__", "gufunc"))


def demangle(symbol: str) -> Demangled | None:
    """Parse a Numba-mangled name; None if ``symbol`` is not one."""
    wrapper: str | None = None
    text = symbol
    for prefix, kind in _WRAPPER_PREFIXES:
        if text.startswith(prefix + "._Z"):
            wrapper = kind
            text = text[len(prefix) + 1 :]
            break
    if not text.startswith("_Z"):
        return None
    p = _Parser(text)
    p.i = 2
    try:
        parts, _targs, tags = p.name()
        args: list[str] = []
        while p.peek() and p.peek() != ".":
            args.append(p.type_())
    except _Malformed:
        return None
    if not parts:
        return None
    if wrapper is None and len(parts) > 1 and parts[0] == "cpython":
        wrapper = "cpython"
        parts = parts[1:]
    return Demangled(tuple(parts), tuple(tags), tuple(args), wrapper, text[p.i :])


def display_name(symbol: str) -> str:
    """A short name for reports: ``dither``, ``dither [cpython wrapper]``, or ``symbol`` itself."""
    d = demangle(symbol)
    return d.display if d is not None else symbol


def is_wrapper(symbol: str) -> bool:
    """True for the CPython and C wrappers Numba generates around a compiled function."""
    d = demangle(symbol)
    return d is not None and d.wrapper is not None
