"""Call frame information (``.eh_frame`` and ``.debug_frame``) of x86-64 code: where a frame's
CFA, return address and saved rbp are at a given pc.

Only what unwinding through LLVM-generated code needs is kept: the CFA rule (a register plus an
offset) and the rules for rbp and the return address (saved at CFA + offset, or unchanged).
A CFA given by a DWARF expression yields no row (the unwinder stops there).

The section bytes handed in must already be relocated (the JIT objects' ``.eh_frame`` and
``.debug_frame`` are not; see jitobject.py). Parsing the FDEs of an object: ~20-50 us per FDE;
computing a row by running the CIE's and FDE's instructions: ~11 us on Numba's functions (rows
are cached per pc by the symboliser).
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass

# DWARF register numbers on x86-64.
REG_RBP = 6
REG_RSP = 7
REG_RA = 16

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_S16 = struct.Struct("<h")
_S32 = struct.Struct("<i")
_S64 = struct.Struct("<q")


class CfiError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CfiRow:
    """How to find the caller's frame from a pc: CFA = ``cfa_register`` + ``cfa_offset``;
    the return address is at CFA + ``ra_offset`` (None: undefined, the outermost frame);
    the caller's rbp is at CFA + ``bp_offset`` (None: rbp was not changed)."""

    cfa_register: int
    cfa_offset: int
    ra_offset: int | None
    bp_offset: int | None


@dataclass(frozen=True, slots=True)
class _Cie:
    code_align: int
    data_align: int
    ra_register: int
    fde_encoding: int
    has_augmentation_data: bool
    initial_instructions: bytes


@dataclass(frozen=True, slots=True)
class Fde:
    start: int
    end: int
    cie: _Cie
    instructions: bytes


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, pos


def _sleb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, pos


def _encoded(data: bytes, pos: int, enc: int, section_address: int) -> tuple[int, int]:
    """Read a pointer in DW_EH_PE ``enc`` encoding; pc-relative ones are made absolute."""
    fmt = enc & 0x0F
    field = section_address + pos
    if fmt == 0x00 or fmt == 0x04:
        value, pos = _U64.unpack_from(data, pos)[0], pos + 8
    elif fmt == 0x01:
        value, pos = _uleb(data, pos)
    elif fmt == 0x02:
        value, pos = _U16.unpack_from(data, pos)[0], pos + 2
    elif fmt == 0x03:
        value, pos = _U32.unpack_from(data, pos)[0], pos + 4
    elif fmt == 0x09:
        value, pos = _sleb(data, pos)
    elif fmt == 0x0A:
        value, pos = _S16.unpack_from(data, pos)[0], pos + 2
    elif fmt == 0x0B:
        value, pos = _S32.unpack_from(data, pos)[0], pos + 4
    elif fmt == 0x0C:
        value, pos = _S64.unpack_from(data, pos)[0], pos + 8
    else:
        raise CfiError(f"unsupported pointer encoding {enc:#x}")
    if enc & 0x70 == 0x10:  # DW_EH_PE_pcrel
        value += field
    return value & 0xFFFFFFFFFFFFFFFF, pos


def _parse_cie(data: bytes, pos: int, end: int, eh: bool) -> _Cie:
    version = data[pos]
    pos += 1
    nul = data.index(b"\0", pos)
    aug = data[pos:nul].decode("ascii", "replace")
    pos = nul + 1
    if version >= 4:
        pos += 2  # address_size, segment_selector_size
    code_align, pos = _uleb(data, pos)
    data_align, pos = _sleb(data, pos)
    if version == 1:
        ra_register = data[pos]
        pos += 1
    else:
        ra_register, pos = _uleb(data, pos)
    fde_encoding = 0x00  # DW_EH_PE_absptr; .debug_frame always uses it
    has_aug = aug.startswith("z")
    if has_aug:
        aug_len, pos = _uleb(data, pos)
        aug_end = pos + aug_len
        p = pos
        for ch in aug[1:]:
            if ch == "R":
                fde_encoding = data[p]
                p += 1
            elif ch == "L":
                p += 1
            elif ch == "P":
                penc = data[p]
                p += 1
                _, p = _encoded(data, p, penc & 0x7F, 0)
            elif ch in "SB":
                pass
            else:
                break
        pos = aug_end
    elif aug and aug != "":
        raise CfiError(f"unknown augmentation {aug!r}")
    return _Cie(code_align, data_align, ra_register, fde_encoding, has_aug, data[pos:end])


def parse_frames(data: bytes, section_address: int, eh: bool) -> list[Fde]:
    """The FDEs of a relocated ``.eh_frame`` (``eh=True``) or ``.debug_frame`` section."""
    fdes: list[Fde] = []
    cies: dict[int, _Cie] = {}
    pos = 0
    n = len(data)
    while pos + 4 <= n:
        length = _U32.unpack_from(data, pos)[0]
        if length == 0:
            if eh:
                break  # terminator
            pos += 4
            continue
        header = 4
        if length == 0xFFFFFFFF:
            length = _U64.unpack_from(data, pos + 4)[0]
            header = 12
            id_size = 8
        else:
            id_size = 4
        body = pos + header
        end = body + length
        if end > n:
            break
        cie_id = (
            _U64.unpack_from(data, body)[0] if id_size == 8 else _U32.unpack_from(data, body)[0]
        )
        is_cie = cie_id == 0 if eh else cie_id in (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
        try:
            if is_cie:
                cies[pos] = _parse_cie(data, body + id_size, end, eh)
            else:
                cie_pos = body - cie_id if eh else cie_id
                cie = cies.get(cie_pos)
                if cie is None and 0 <= cie_pos < n:
                    cie_len = _U32.unpack_from(data, cie_pos)[0]
                    cie = _parse_cie(data, cie_pos + 8, cie_pos + 4 + cie_len, eh)
                    cies[cie_pos] = cie
                if cie is not None:
                    p = body + id_size
                    start, p = _encoded(data, p, cie.fde_encoding, section_address)
                    size, p = _encoded(data, p, cie.fde_encoding & 0x0F, section_address)
                    if cie.has_augmentation_data:
                        aug_len, p = _uleb(data, p)
                        p += aug_len
                    if size:
                        fdes.append(Fde(start, start + size, cie, data[p:end]))
        except (CfiError, IndexError, struct.error, ValueError):
            pass
        pos = end
    fdes.sort(key=lambda f: f.start)
    return fdes


# Rules for a register: ("offset", n) saved at CFA+n; ("same",) unchanged; ("undefined",).
_Rule = tuple[str, int]
_SAME: _Rule = ("same", 0)
_UNDEF: _Rule = ("undefined", 0)


class _State:
    __slots__ = ("cfa_reg", "cfa_off", "cfa_expr", "rules")

    def __init__(self) -> None:
        self.cfa_reg = REG_RSP
        self.cfa_off = 8
        self.cfa_expr = False
        self.rules: dict[int, _Rule] = {}

    def copy(self) -> _State:
        s = _State()
        s.cfa_reg, s.cfa_off, s.cfa_expr = self.cfa_reg, self.cfa_off, self.cfa_expr
        s.rules = dict(self.rules)
        return s


def _execute(
    code: bytes,
    cie: _Cie,
    state: _State,
    initial: _State | None,
    loc: int,
    target: int,
) -> bool:
    """Run CFA instructions, updating ``state``, until the location passes ``target``.

    Returns False when it stopped because the location passed the target.
    """
    stack: list[_State] = []
    pos = 0
    n = len(code)
    ca, da = cie.code_align, cie.data_align
    while pos < n:
        op = code[pos]
        pos += 1
        high, low = op & 0xC0, op & 0x3F
        if high == 0x40:  # advance_loc
            loc += low * ca
            if loc > target:
                return False
            continue
        if high == 0x80:  # offset
            off, pos = _uleb(code, pos)
            state.rules[low] = ("offset", off * da)
            continue
        if high == 0xC0:  # restore
            state.rules[low] = initial.rules.get(low, _SAME) if initial else _SAME
            continue
        if op == 0x00:  # nop
            continue
        if op in (0x02, 0x03, 0x04):  # advance_loc1/2/4
            size = {0x02: 1, 0x03: 2, 0x04: 4}[op]
            delta = int.from_bytes(code[pos : pos + size], "little")
            pos += size
            loc += delta * ca
            if loc > target:
                return False
        elif op == 0x01:  # set_loc
            loc = _U64.unpack_from(code, pos)[0]
            pos += 8
            if loc > target:
                return False
        elif op == 0x05:  # offset_extended
            reg, pos = _uleb(code, pos)
            off, pos = _uleb(code, pos)
            state.rules[reg] = ("offset", off * da)
        elif op == 0x06:  # restore_extended
            reg, pos = _uleb(code, pos)
            state.rules[reg] = initial.rules.get(reg, _SAME) if initial else _SAME
        elif op == 0x07:  # undefined
            reg, pos = _uleb(code, pos)
            state.rules[reg] = _UNDEF
        elif op == 0x08:  # same_value
            reg, pos = _uleb(code, pos)
            state.rules[reg] = _SAME
        elif op == 0x09:  # register
            reg, pos = _uleb(code, pos)
            _, pos = _uleb(code, pos)
            state.rules[reg] = _UNDEF  # value in another register: not tracked
        elif op == 0x0A:  # remember_state
            stack.append(state.copy())
        elif op == 0x0B:  # restore_state
            if stack:
                saved = stack.pop()
                state.cfa_reg, state.cfa_off = saved.cfa_reg, saved.cfa_off
                state.cfa_expr, state.rules = saved.cfa_expr, saved.rules
        elif op == 0x0C:  # def_cfa
            state.cfa_reg, pos = _uleb(code, pos)
            state.cfa_off, pos = _uleb(code, pos)
            state.cfa_expr = False
        elif op == 0x0D:  # def_cfa_register
            state.cfa_reg, pos = _uleb(code, pos)
            state.cfa_expr = False
        elif op == 0x0E:  # def_cfa_offset
            state.cfa_off, pos = _uleb(code, pos)
        elif op == 0x0F:  # def_cfa_expression
            size, pos = _uleb(code, pos)
            pos += size
            state.cfa_expr = True
        elif op in (0x10, 0x16):  # expression, val_expression
            reg, pos = _uleb(code, pos)
            size, pos = _uleb(code, pos)
            pos += size
            state.rules[reg] = _UNDEF
        elif op == 0x11:  # offset_extended_sf
            reg, pos = _uleb(code, pos)
            off, pos = _sleb(code, pos)
            state.rules[reg] = ("offset", off * da)
        elif op == 0x12:  # def_cfa_sf
            state.cfa_reg, pos = _uleb(code, pos)
            off, pos = _sleb(code, pos)
            state.cfa_off = off * da
            state.cfa_expr = False
        elif op == 0x13:  # def_cfa_offset_sf
            off, pos = _sleb(code, pos)
            state.cfa_off = off * da
        elif op in (0x14, 0x15):  # val_offset, val_offset_sf
            reg, pos = _uleb(code, pos)
            _, pos = (_uleb if op == 0x14 else _sleb)(code, pos)
            state.rules[reg] = _UNDEF
        elif op == 0x2E:  # GNU_args_size
            _, pos = _uleb(code, pos)
        elif op == 0x2F:  # GNU_negative_offset_extended
            reg, pos = _uleb(code, pos)
            off, pos = _uleb(code, pos)
            state.rules[reg] = ("offset", -off * da)
        else:
            raise CfiError(f"unsupported CFA instruction {op:#x}")
    return True


def row_for(fde: Fde, pc: int) -> CfiRow | None:
    """The unwind row of ``fde`` in effect at ``pc`` (``fde.start <= pc < fde.end``)."""
    state = _State()
    try:
        _execute(fde.cie.initial_instructions, fde.cie, state, None, fde.start, 1 << 64)
        initial = state.copy()
        _execute(fde.instructions, fde.cie, state, initial, fde.start, pc)
    except (CfiError, IndexError, struct.error):
        return None
    if state.cfa_expr:
        return None
    ra_rule = state.rules.get(fde.cie.ra_register, _UNDEF)
    bp_rule = state.rules.get(REG_RBP, _SAME)
    if ra_rule[0] == "offset":
        ra_offset: int | None = ra_rule[1]
    else:
        ra_offset = None
    bp_offset = bp_rule[1] if bp_rule[0] == "offset" else None
    return CfiRow(state.cfa_reg, state.cfa_off, ra_offset, bp_offset)


class FrameTable:
    """FDEs sorted by address, for finding the one that covers a pc."""

    def __init__(self, fdes: list[Fde]) -> None:
        self.fdes = sorted(fdes, key=lambda f: f.start)
        self._starts = [f.start for f in self.fdes]

    def __len__(self) -> int:
        return len(self.fdes)

    def fde_for(self, pc: int) -> Fde | None:
        i = bisect.bisect_right(self._starts, pc) - 1
        if i >= 0 and pc < self.fdes[i].end:
            return self.fdes[i]
        return None

    def row(self, pc: int) -> CfiRow | None:
        fde = self.fde_for(pc)
        return row_for(fde, pc) if fde is not None else None
