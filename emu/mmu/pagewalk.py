"""The MMU as a teacher and a debugger sees it: walks explained level by level, the whole tree.

Pure functions over guest RAM (a ``uint8`` numpy array, physical address = index) and register
values: nothing here touches a CPU, and no accessed/dirty bit is written unless a caller asks
(``set_ad=True``, as the IDT model does for its stack pushes, like a real walker). The walking
is done by the compiled kernels of ``mmu/kernels.py`` (loaded through ``native.py``, so no numba
import is paid here); this module names and explains what they found.

>>> import numpy as np
>>> ram = np.zeros(1 << 20, np.uint8)
>>> q = ram.view(np.uint64)
>>> q[0x1000 // 8], q[0x2000 // 8], q[0x3000 // 8] = 0x2003, 0x3003, 0x4003  # PML4, PDPT, PD
>>> q[0x4000 // 8 + 5] = 0x9000 | 0x3  # PTE 5: virtual 0x5000 -> physical 0x9000, RW
>>> w = walk(ram, 0x1000, 0x5123, "w", cr0=0x80010011, cr4=0x20, efer=0x500)
>>> w.ok, hex(w.paddr), [lv.name for lv in w.levels]
(True, '0x9123', ['PML4E', 'PDPTE', 'PDE', 'PTE'])
>>> walk(ram, 0x1000, 0x5123, "r", cr0=0x80010011, cr4=0x20, efer=0x500, cpl=3).reason
'user access to a supervisor page (PML4E.US=0)'
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from ..core import native
from .layout import (
    ACC_FETCH,
    ACC_READ,
    ACC_WRITE,
    MAXPHYADDR,
    OUT_ERR,
    OUT_LEVEL,
    OUT_PADDR,
    OUT_PAGE_SIZE,
    OUT_PERMS,
    OUT_RSVD_BIT,
    OUT_SIZE,
    OUT_STATUS,
    OUT_TRACE,
    PERM_EXEC,
    PERM_USER,
    PERM_WRITE,
    ST_NON_CANONICAL,
    ST_NOT_PRESENT,
    ST_OK,
    ST_OUTSIDE_RAM,
    ST_PROTECTION,
    ST_RESERVED,
)

log = logging.getLogger(__name__)

ACCESS = {"r": ACC_READ, "read": ACC_READ, "w": ACC_WRITE, "write": ACC_WRITE,
          "x": ACC_FETCH, "fetch": ACC_FETCH, "exec": ACC_FETCH}  # fmt: skip
ACCESS_WORDS = {ACC_READ: "read", ACC_WRITE: "write", ACC_FETCH: "instruction fetch"}

_CR0_WP = 1 << 16
_CR0_PG = 1 << 31
_CR4_PSE = 1 << 4
_CR4_PAE = 1 << 5
_CR4_LA57 = 1 << 12
_CR4_SMEP = 1 << 20
_CR4_SMAP = 1 << 21
_CR4_PKE = 1 << 22
_EFER_LMA = 1 << 10
_EFER_NXE = 1 << 11
_U64 = (1 << 64) - 1

# Mirrors of kernels.py's layouts (that module imports numba; this one must not). The tests
# check that both agree.
_TRACE_STRIDE = 3
_TRACE_SIZE = 15
_TR_ARGS = 13
_MAP_COLUMNS = 7
_MAPF_WRITE, _MAPF_USER, _MAPF_EXEC, _MAPF_GLOBAL = 1, 2, 4, 8
_CTX_ENV, _CTX_RAM, _CTX_RAM_SIZE, _CTX_FILLS, _CTX_REFUSED = 0, 1, 2, 3, 4
_CTX_FAULT_PAGE, _CTX_FAULT_ACCESS, _CTX_FAULT_ERR, _CTX_FAULT_STATUS = 5, 6, 7, 8
_CTX_SCRATCH, _CTX_PROBE_PAGE, _CTX_FAULT_LEVEL, _CTX_FAULT_ENTRY = 9, 10, 11, 12
_CTX_ROM_TABLE, _CTX_ROM_COUNT, _CTX_SINK_PAGE, _CTX_TRACK = 13, 14, 15, 16
_CTX_CODE_PAGES, _CTX_CODE_ADDED, _CTX_SIZE = 17, 18, 19


class PagingMode(Enum):
    """The paging mode CR0.PG, CR4.PAE, CR4.LA57 and EFER.LMA select (SDM 4.1.1)."""

    OFF = "paging off"
    LEGACY32 = "32-bit paging"
    PAE = "PAE paging"
    LONG4 = "4-level paging"
    LONG5 = "5-level paging"

    @property
    def level_names(self) -> tuple[str, ...]:
        """The entry names of each level, top first."""
        return _LEVEL_NAMES[self]

    @property
    def wide(self) -> bool:
        """8-byte entries (every mode but 32-bit paging)."""
        return self not in (PagingMode.OFF, PagingMode.LEGACY32)


_LEVEL_NAMES = {
    PagingMode.OFF: (),
    PagingMode.LEGACY32: ("PDE", "PTE"),
    PagingMode.PAE: ("PDPTE", "PDE", "PTE"),
    PagingMode.LONG4: ("PML4E", "PDPTE", "PDE", "PTE"),
    PagingMode.LONG5: ("PML5E", "PML4E", "PDPTE", "PDE", "PTE"),
}


def paging_mode(cr0: int, cr4: int, efer: int) -> PagingMode:
    """The paging mode of these register values.

    >>> paging_mode(0x80000011, 0x20, 0x500).value
    '4-level paging'
    """
    if not cr0 & _CR0_PG:
        return PagingMode.OFF
    if efer & _EFER_LMA:
        return PagingMode.LONG5 if cr4 & _CR4_LA57 else PagingMode.LONG4
    return PagingMode.PAE if cr4 & _CR4_PAE else PagingMode.LEGACY32


# ----------------------------------------------------------------------- one walk

_FLAG_BITS = ((0, "P"), (1, "RW"), (2, "US"), (3, "PWT"), (4, "PCD"), (5, "A"), (6, "D"),
              (7, "PS"), (8, "G"))  # fmt: skip


@dataclass(frozen=True)
class WalkLevel:
    """One paging-structure entry a walk read."""

    name: str  # "PML5E", "PML4E", "PDPTE", "PDE", "PTE"
    table: int  # physical address of the table
    index: int
    raw: int  # the entry as the walk read it (before any A/D update)
    wide: bool  # an 8-byte entry

    @property
    def entry_address(self) -> int:
        return self.table + self.index * (8 if self.wide else 4)

    @property
    def flag_names(self) -> tuple[str, ...]:
        """The flags set in the entry: ("P", "RW", "US", "A", "XD"...)."""
        names = [n for b, n in _FLAG_BITS if self.raw >> b & 1]
        if self.wide and self.raw >> 63 & 1:
            names.append("XD")
        return tuple(names)

    def flags(self) -> str:
        """'P RW US pwt pcd A d ps g xd': every flag, the clear ones in lower case."""
        parts = [n if self.raw >> b & 1 else n.lower() for b, n in _FLAG_BITS]
        if self.wide:
            parts.append("XD" if self.raw >> 63 & 1 else "xd")
        return " ".join(parts)

    def target(self) -> int:
        """The physical address field: the next table, or a 4K page."""
        mask = ((1 << MAXPHYADDR) - 1) & ~0xFFF if self.wide else 0xFFFFF000
        return self.raw & mask


@dataclass(frozen=True)
class PageWalk:
    """One translation: every level read, and the outcome in words.

    ``fault`` is None, "page-fault" (a #PF with ``error_code``) or "non-canonical" (#GP, or
    #SS for a stack access: no walk happens). ``paddr`` is set on success and on a protection
    fault (where the page is). ``in_ram`` is False when the translation succeeds but lands
    beyond guest RAM (MMIO or nothing).
    """

    vaddr: int
    access: str  # "read", "write", "instruction fetch"
    user: bool  # a user-mode access (CPL 3 and not implicit)
    mode: PagingMode
    levels: tuple[WalkLevel, ...]
    ok: bool
    paddr: int | None
    page_size: int
    writable: bool  # the effective rights of this context
    user_page: bool
    executable: bool
    fault: str | None
    error_code: int | None
    reason: str
    cpl: int = 0
    implicit: bool = False
    in_ram: bool = True

    def explain(self) -> str:
        """The walk as text, one line per level, then the outcome."""
        who = "implicit supervisor" if self.implicit else f"CPL {self.cpl}"
        lines = [f"{self.mode.value}: {self.access} of 0x{self.vaddr:x} at {who}"]
        for lv in self.levels:
            lines.append(
                f"  {lv.name:5s} table 0x{lv.table:x} [{lv.index:3d}] @0x{lv.entry_address:x} = "
                f"0x{lv.raw:0{16 if lv.wide else 8}x}  {lv.flags()}"
            )
        if self.ok:
            size = _SIZE_NAMES.get(self.page_size, hex(self.page_size))
            where = "" if self.in_ram else ", beyond guest RAM"
            lines.append(f"  -> physical 0x{self.paddr:x} ({size} page, {self.rights()}{where})")
        else:
            code = f" error code 0x{self.error_code:x}" if self.error_code is not None else ""
            lines.append(f"  -> {self.fault}{code}: {self.reason}")
        return "\n".join(lines)

    def rights(self) -> str:
        """'WUX' style: writable/read-only, user/supervisor, executable/not."""
        return (
            ("W" if self.writable else "R")
            + ("U" if self.user_page else "S")
            + ("X" if self.executable else "-")
        )


_SIZE_NAMES = {4096: "4K", 2 << 20: "2M", 4 << 20: "4M", 1 << 30: "1G"}


def walk(
    ram: np.ndarray,
    cr3: int,
    vaddr: int,
    access: str = "r",
    *,
    cr0: int,
    cr4: int,
    efer: int,
    cpl: int = 0,
    ac: bool = False,
    implicit: bool = False,
    set_ad: bool = False,
) -> PageWalk:
    """Translate ``vaddr`` as the CPU would, and explain every level.

    Args:
        ram: guest RAM, a contiguous ``uint8`` array whose size is a multiple of 8.
        cr3: the root of the tree (its PCD/PWT and, for PAE, its alignment are applied).
        vaddr: the linear address.
        access: "r"/"read", "w"/"write" or "x"/"fetch".
        cr0, cr4, efer: control registers (EFER.LMA, not LME, selects long mode).
        cpl: the current privilege level; 3 makes a user-mode access.
        ac: RFLAGS.AC (lifts SMAP for explicit supervisor accesses).
        implicit: an implicit supervisor access (descriptor tables, TSS, interrupt frames):
            supervisor at any CPL, and SMAP applies whatever AC says.
        set_ad: on success, set A in every entry used and D in the leaf of a write. Off by
            default: inspecting never changes the guest.

    Returns:
        A PageWalk. A refused access is not an error: ``ok`` is False and ``reason`` says why.

    >>> import numpy as np
    >>> walk(np.zeros(4096, np.uint8), 0, 0x1000, cr0=0x80000011, cr4=0, efer=0).reason
    'PDE[0] not present'
    """
    acc = ACCESS[access]
    _warn_unmodelled(cr4)
    out = _translate(ram, cr0, cr3, cr4, efer, vaddr, acc, cpl, ac, implicit, set_ad)
    mode = paging_mode(cr0, cr4, efer)
    status = int(out[OUT_STATUS])
    user = cpl == 3 and not implicit
    levels: list[WalkLevel] = []
    if mode is not PagingMode.OFF and status != ST_NON_CANONICAL:
        names = mode.level_names
        for i in range(int(out[OUT_LEVEL]) + 1):
            t = OUT_TRACE + _TRACE_STRIDE * i
            levels.append(
                WalkLevel(names[i], int(out[t]), int(out[t + 1]), int(out[t + 2]), mode.wide)
            )
    perms = int(out[OUT_PERMS])
    fault: str | None = None
    error: int | None = None
    ok = status in (ST_OK, ST_OUTSIDE_RAM)
    if ok:
        reason = "translated" if status == ST_OK else "translated to an address beyond guest RAM"
    elif status == ST_NON_CANONICAL:
        fault = "non-canonical"
        top = 56 if mode is PagingMode.LONG5 else 47
        reason = (
            f"0x{vaddr & _U64:x} is not canonical (bits 63:{top} must all equal bit {top}): "
            "the CPU raises #GP (#SS for a stack access), not #PF"
        )
    else:
        fault = "page-fault"
        error = int(out[OUT_ERR])
        if status == ST_NOT_PRESENT:
            reason = _not_present_reason(levels[-1], ram.size)
        elif status == ST_RESERVED:
            reason = _reserved_reason(levels[-1], int(out[OUT_RSVD_BIT]), mode, len(levels) - 1)
        else:
            reason = _protection_reason(levels, mode, acc, user, implicit, ac, cr0, cr4, efer)
    return PageWalk(
        vaddr=vaddr,
        access=ACCESS_WORDS[acc],
        user=user,
        mode=mode,
        levels=tuple(levels),
        ok=ok,
        paddr=int(out[OUT_PADDR]) if ok or status == ST_PROTECTION else None,
        page_size=int(out[OUT_PAGE_SIZE]),
        writable=bool(perms & PERM_WRITE),
        user_page=bool(perms & PERM_USER),
        executable=bool(perms & PERM_EXEC),
        fault=fault,
        error_code=error,
        reason=reason,
        cpl=cpl,
        implicit=implicit,
        in_ram=status != ST_OUTSIDE_RAM,
    )


def _not_present_reason(level: WalkLevel, ram_size: int) -> str:
    text = f"{level.name}[{level.index}] not present"
    if level.entry_address >= ram_size:
        text += f" (its table at 0x{level.table:x} is beyond guest RAM, which reads as zero)"
    return text


def _reserved_reason(level: WalkLevel, bit: int, mode: PagingMode, depth: int) -> str:
    pdpte_pae = mode is PagingMode.PAE and depth == 0
    if bit == 63:
        why = "reserved in a PAE PDPTE" if pdpte_pae else "XD while EFER.NXE=0"
    elif bit >= MAXPHYADDR:
        why = f"above MAXPHYADDR, {MAXPHYADDR} bits"
    elif pdpte_pae:
        why = "reserved in a PAE PDPTE"
    elif bit == 7:
        why = f"PS is reserved in a {level.name}"
    elif mode is PagingMode.LEGACY32:
        why = f"reserved in a 4M PDE when MAXPHYADDR is {MAXPHYADDR}"
    else:
        size = "1G" if level.name == "PDPTE" else "2M"
        why = f"a {size} page must be {size}-aligned"
    return f"reserved bit {bit} set in {level.name}[{level.index}] ({why})"


def _protection_reason(
    levels: Sequence[WalkLevel], mode: PagingMode, acc: int, user: bool, implicit: bool,
    ac: bool, cr0: int, cr4: int, efer: int,
) -> str:  # fmt: skip
    """Why the rights refused the access: the first rule that did, as the kernel checks."""
    rights = [lv for lv in levels if not (mode is PagingMode.PAE and lv.name == "PDPTE")]
    no_user = next((lv for lv in rights if not lv.raw & 4), None)
    read_only = next((lv for lv in rights if not lv.raw & 2), None)
    no_exec = None
    if efer & _EFER_NXE and mode.wide:
        no_exec = next((lv for lv in rights if lv.raw >> 63 & 1), None)
    if user:
        if no_user is not None:
            return f"user access to a supervisor page ({no_user.name}.US=0)"
        if acc == ACC_WRITE and read_only is not None:
            return f"user write to a read-only page ({read_only.name}.RW=0)"
        if acc == ACC_FETCH and no_exec is not None:
            return f"instruction fetch from a no-execute page ({no_exec.name}.XD=1, EFER.NXE=1)"
        raise AssertionError("kernel refused a user access no rule refuses")
    if acc == ACC_FETCH:
        if no_exec is not None:
            return f"instruction fetch from a no-execute page ({no_exec.name}.XD=1, EFER.NXE=1)"
        if no_user is None and cr4 & _CR4_SMEP:
            return "supervisor instruction fetch from a user page with CR4.SMEP=1"
        raise AssertionError("kernel refused a fetch no rule refuses")
    if no_user is None and cr4 & _CR4_SMAP and (implicit or not ac):
        if implicit:
            return "implicit supervisor access to a user page with CR4.SMAP=1"
        return "supervisor access to a user page with CR4.SMAP=1 and RFLAGS.AC=0"
    if acc == ACC_WRITE and read_only is not None and cr0 & _CR0_WP:
        return f"{read_only.name}.RW=0 and CR0.WP=1 on a supervisor write"
    raise AssertionError("kernel refused a supervisor access no rule refuses")


_warned: set[str] = set()


def _warn_unmodelled(cr4: int) -> None:
    if cr4 & _CR4_PKE and "pke" not in _warned:
        _warned.add("pke")
        log.warning(
            "CR4.PKE is set but protection keys are not modelled: PKRU is ignored and the "
            "#PF error code never has PK (bit 5)"
        )


# ----------------------------------------------------------------------- raw access


def translate_raw(
    ram: np.ndarray, cr0: int, cr3: int, cr4: int, efer: int, vaddr: int, access: int,
    user: bool, ac: bool = False, set_ad: bool = False, *, implicit: bool = False,
    track: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """One walk as the raw ``mmu/layout.py`` OUT_* array (for hot callers such as the IDT model).

    ``user`` means CPL 3; a supervisor access with ``ac=False`` behaves exactly as an
    implicit supervisor access. ``track``: the dirty-page tracker's context (TK_*), told of the
    A/D bits the walk writes (emu/dirty_pages.py)."""
    return _translate(ram, cr0, cr3, cr4, efer, vaddr, access, 3 if user else 0, ac, implicit,
                      set_ad, track)  # fmt: skip


def _jit_disabled() -> bool:
    """NUMBA_DISABLE_JIT as numba reads it: the kernels then run as plain Python."""
    try:
        return int(os.environ.get("NUMBA_DISABLE_JIT", "0") or 0) != 0
    except ValueError:
        return False


_CFUNC_TRANSLATE = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p)
_CFUNC_MAPPINGS = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_native_fns: dict[str, Any] = {}


def _native(name: str, signature: str, proto: Any) -> Any:
    fn = _native_fns.get(name)
    if fn is None:
        fn = _native_fns[name] = proto(native.load("emu.mmu.kernels", name, signature).address)
    return fn


def _check_ram(ram: np.ndarray) -> None:
    if ram.dtype != np.uint8 or ram.ndim != 1 or not ram.flags.c_contiguous or ram.size % 8:
        raise ValueError("guest RAM must be a contiguous 1-D uint8 array, a multiple of 8 bytes")


def _translate(
    ram: np.ndarray, cr0: int, cr3: int, cr4: int, efer: int, vaddr: int, access: int,
    cpl: int, ac: bool, implicit: bool, set_ad: bool, track: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    _check_ram(ram)
    out = np.zeros(OUT_SIZE, np.uint64)
    regs = [x & _U64 for x in (cr0, cr3, cr4, efer, vaddr)]
    if _jit_disabled() and track is None:  # (the tracker's copies need the native code)
        from . import kernels as K

        u = np.uint64
        K._translate_into(ram.view(np.uint64), *(u(x) for x in regs), access, cpl, bool(ac),
                          bool(implicit), bool(set_ad), out, np.zeros(0, np.uint64))  # fmt: skip
        return out
    args = np.array([ram.ctypes.data, ram.size, *regs, access, cpl, int(ac), int(implicit),
                     int(set_ad), track.ctypes.data if track is not None else 0],
                    dtype=np.uint64)  # fmt: skip
    assert args.size == _TR_ARGS
    _native("translate", "TRANSLATE_SIGNATURE", _CFUNC_TRANSLATE)(args.ctypes.data, out.ctypes.data)
    return out
