"""The MMU as a teacher and a debugger sees it: walks explained level by level, the whole tree.

Pure functions over guest RAM (a ``uint8`` numpy array, physical address = index) and register
values: nothing here touches a CPU, and no accessed/dirty bit is written unless a caller asks
(``set_ad=True``, as the IDT model does for its stack pushes, like a real walker). The walking
is done by the compiled kernels of ``mmu_kernels.py`` (loaded through ``native.py``, so no numba
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np

from . import native
from .mmu_layout import (
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

# Mirrors of mmu_kernels' layouts (that module imports numba; this one must not). The tests
# check that both agree.
_TRACE_STRIDE = 3
_TRACE_SIZE = 15
_TR_ARGS = 12
_MAP_COLUMNS = 7
_MAPF_WRITE, _MAPF_USER, _MAPF_EXEC, _MAPF_GLOBAL = 1, 2, 4, 8
_CTX_ENV, _CTX_RAM, _CTX_RAM_SIZE, _CTX_FILLS, _CTX_REFUSED = 0, 1, 2, 3, 4
_CTX_FAULT_PAGE, _CTX_FAULT_ACCESS, _CTX_FAULT_ERR, _CTX_FAULT_STATUS = 5, 6, 7, 8
_CTX_SCRATCH, _CTX_PROBE_PAGE, _CTX_FAULT_LEVEL, _CTX_FAULT_ENTRY, _CTX_SIZE = 9, 10, 11, 12, 16
_MAX_ROWS = 1 << 21  # a tree with more merged ranges than this is reported truncated


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
) -> np.ndarray:  # fmt: skip
    """One walk as the raw ``mmu_layout`` OUT_* array (for hot callers such as the IDT model).

    ``user`` means CPL 3; a supervisor access with ``ac=False`` behaves exactly as an
    implicit supervisor access."""
    return _translate(ram, cr0, cr3, cr4, efer, vaddr, access, 3 if user else 0, ac, implicit,
                      set_ad)  # fmt: skip


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
        fn = _native_fns[name] = proto(native.load("emu.mmu_kernels", name, signature).address)
    return fn


def _check_ram(ram: np.ndarray) -> None:
    if ram.dtype != np.uint8 or ram.ndim != 1 or not ram.flags.c_contiguous or ram.size % 8:
        raise ValueError("guest RAM must be a contiguous 1-D uint8 array, a multiple of 8 bytes")


def _translate(
    ram: np.ndarray, cr0: int, cr3: int, cr4: int, efer: int, vaddr: int, access: int,
    cpl: int, ac: bool, implicit: bool, set_ad: bool,
) -> np.ndarray:  # fmt: skip
    _check_ram(ram)
    out = np.zeros(OUT_SIZE, np.uint64)
    regs = [x & _U64 for x in (cr0, cr3, cr4, efer, vaddr)]
    if _jit_disabled():
        from . import mmu_kernels as K

        u = np.uint64
        K._translate_into(ram.view(np.uint64), *(u(x) for x in regs), access, cpl, bool(ac),
                          bool(implicit), bool(set_ad), out)  # fmt: skip
        return out
    args = np.array([ram.ctypes.data, ram.size, *regs, access, cpl, int(ac), int(implicit),
                     int(set_ad)], dtype=np.uint64)  # fmt: skip
    assert args.size == _TR_ARGS
    _native("translate", "TRANSLATE_SIGNATURE", _CFUNC_TRANSLATE)(args.ctypes.data, out.ctypes.data)
    return out


# ----------------------------------------------------------------------- the whole tree


@dataclass(frozen=True)
class Mapping:
    """A run of pages, contiguous in virtual and physical memory, with equal rights, global
    bit and page size (like a line of QEMU's ``info mem``).

    Rights are those of the entries (RW, US and XD of every level), not of one access: a
    supervisor may write a read-only page while CR0.WP=0. ``accessed_pages``/``dirty_pages``
    count the pages whose leaf entry has A/D set; they are None for a piece cut out of a run
    (``diff_mappings``), whose per-page state is not known.
    """

    virt: int
    phys: int
    size: int
    page_size: int
    writable: bool
    user: bool
    executable: bool
    global_: bool
    accessed_pages: int | None = 0
    dirty_pages: int | None = 0

    @property
    def virt_end(self) -> int:
        return self.virt + self.size

    @property
    def phys_end(self) -> int:
        return self.phys + self.size

    @property
    def pages(self) -> int:
        return self.size // self.page_size

    @property
    def accessed(self) -> bool:
        """Some page of the run has been accessed."""
        return bool(self.accessed_pages)

    @property
    def dirty(self) -> bool:
        """Some page of the run has been written."""
        return bool(self.dirty_pages)

    def rights(self) -> str:
        """'wux' style: writable/read-only, user/supervisor, executable/not."""
        return (
            ("w" if self.writable else "r")
            + ("u" if self.user else "s")
            + ("x" if self.executable else "-")
        )


def mappings(
    ram: np.ndarray, cr3: int, *, cr0: int, cr4: int, efer: int, split_ad: bool = True
) -> list[Mapping]:
    """Every mapped range of the tree at ``cr3``, in virtual-address order (no side effects).

    Runs merge while contiguous with equal rights, global bit and page size. ``split_ad`` (the
    default, what ``triplefault pt`` shows) also ends a run where the accessed or dirty bit
    changes, so each row is all-or-nothing; ``split_ad=False`` merges like QEMU's ``info mem``
    and the rows count their accessed and dirty pages. Entries a walk would reject (reserved
    bits) are left out with everything below them. Paging off gives an empty list.

    >>> import numpy as np
    >>> ram = np.zeros(1 << 20, np.uint8)
    >>> d = ram.view(np.uint32)
    >>> d[0x1000 // 4 + 1] = 0x00400000 | 0x83  # 32-bit PDE 1: a 4M page, RW
    >>> [(hex(m.virt), m.size >> 20, m.rights()) for m in
    ...  mappings(ram, 0x1000, cr0=0x80000011, cr4=0x10, efer=0)]
    [('0x400000', 4, 'wsx')]
    """
    _check_ram(ram)
    _warn_unmodelled(cr4)
    regs = [x & _U64 for x in (cr0, cr3, cr4, efer)]
    capacity = 4096
    while True:
        out = np.zeros((capacity, _MAP_COLUMNS), np.uint64)
        if _jit_disabled():
            from . import mmu_kernels as K

            n = K._mappings(ram.view(np.uint64), *(np.uint64(x) for x in regs), split_ad, out)
        else:
            args = np.array([ram.ctypes.data, ram.size, *regs, split_ad], dtype=np.uint64)
            fn = _native("mappings_c", "MAPPINGS_SIGNATURE", _CFUNC_MAPPINGS)
            n = fn(args.ctypes.data, out.ctypes.data, capacity)
        if n >= 0:
            break
        if capacity >= _MAX_ROWS:
            log.warning("more than %d mapped ranges: the list is truncated", capacity)
            n = capacity
            break
        capacity *= 4
    return [_row_mapping(*row) for row in out[:n].tolist()]


def _row_mapping(
    va: int, pa: int, size: int, page_size: int, f: int, accessed: int, dirty: int
) -> Mapping:
    writable, user = bool(f & _MAPF_WRITE), bool(f & _MAPF_USER)
    executable, global_ = bool(f & _MAPF_EXEC), bool(f & _MAPF_GLOBAL)
    return Mapping(va, pa, size, page_size, writable, user, executable, global_, accessed, dirty)


# ----------------------------------------------------------------------- reports


def find_wx(maps: Iterable[Mapping]) -> list[Mapping]:
    """Ranges both writable and executable: what a W^X kernel forbids.

    >>> find_wx([Mapping(0x1000, 0x1000, 0x1000, 0x1000, True, False, True, False)])[0].virt
    4096
    """
    return [m for m in maps if m.writable and m.executable]


def find_user(maps: Iterable[Mapping]) -> list[Mapping]:
    """Every user-accessible range."""
    return [m for m in maps if m.user]


def find_user_kernel(
    maps: Iterable[Mapping], kernel_ranges: Iterable[tuple[int, int]]
) -> list[Mapping]:
    """User-accessible pieces of kernel memory: the parts of user ranges that overlap the
    given ``(start, end)`` virtual ranges (for example the kernel image's sections).

    >>> m = Mapping(0x0, 0x0, 0x4000, 0x1000, True, True, False, False, 4, 0)
    >>> [(p.virt, p.size) for p in find_user_kernel([m], [(0x1000, 0x2000)])]
    [(4096, 4096)]
    """
    ranges = sorted(kernel_ranges)
    found = []
    for m in maps:
        if not m.user:
            continue
        for lo, hi in ranges:
            start, end = max(lo, m.virt), min(hi, m.virt_end)
            if start < end:
                found.append(_cut(m, start, end))
    return found


def reverse_lookup(maps: Iterable[Mapping], phys: int) -> list[int]:
    """Every virtual address that maps physical address ``phys``.

    >>> reverse_lookup([Mapping(0x4000, 0x1000, 0x2000, 0x1000, True, False, True, False)],
    ...                0x1234)
    [16948]
    """
    return [m.virt + (phys - m.phys) for m in maps if m.phys <= phys < m.phys_end]


@dataclass
class MappingDiff:
    """What changed between two trees, as ranges of the ``after`` side (``removed``: of the
    ``before`` side). ``changed`` pairs (before, after) pieces of equal virtual extent whose
    physical address or rights differ. Page size and A/D alone are not a change."""

    added: list[Mapping] = field(default_factory=list)
    removed: list[Mapping] = field(default_factory=list)
    changed: list[tuple[Mapping, Mapping]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def diff_mappings(before: Sequence[Mapping], after: Sequence[Mapping]) -> MappingDiff:
    """Compare two lists from ``mappings()`` (say, before and after a MOV CR3 or a page-table
    edit) by sweeping their boundaries: linear in the number of ranges.

    >>> a = [Mapping(0x1000, 0x1000, 0x2000, 0x1000, False, False, True, False)]
    >>> b = [Mapping(0x1000, 0x1000, 0x2000, 0x1000, True, False, True, False)]
    >>> [(x.virt, y.writable) for x, y in diff_mappings(a, b).changed]
    [(4096, True)]
    """
    points = sorted({p for m in (*before, *after) for p in (m.virt, m.virt_end)})
    diff = MappingDiff()
    i = j = 0
    for lo, hi in zip(points, points[1:], strict=False):
        while i < len(before) and before[i].virt_end <= lo:
            i += 1
        while j < len(after) and after[j].virt_end <= lo:
            j += 1
        old = before[i] if i < len(before) and before[i].virt <= lo else None
        new = after[j] if j < len(after) and after[j].virt <= lo else None
        if old is None and new is None:
            continue
        if old is None:
            _append_merged(diff.added, _cut(new, lo, hi))
        elif new is None:
            _append_merged(diff.removed, _cut(old, lo, hi))
        else:
            a, b = _cut(old, lo, hi), _cut(new, lo, hi)
            if _identity(a) != _identity(b):
                prev = diff.changed[-1] if diff.changed else None
                if prev and _mergeable(prev[0], a) and _mergeable(prev[1], b):
                    diff.changed[-1] = (_join(prev[0], a), _join(prev[1], b))
                else:
                    diff.changed.append((a, b))
    return diff


def _identity(m: Mapping) -> tuple[int, bool, bool, bool, bool]:
    return (m.phys, m.writable, m.user, m.executable, m.global_)


def _cut(m: Mapping, start: int, end: int) -> Mapping:
    if start == m.virt and end == m.virt_end:
        return m
    return replace(m, virt=start, phys=m.phys + (start - m.virt), size=end - start,
                   accessed_pages=None, dirty_pages=None)  # fmt: skip


def _mergeable(a: Mapping, b: Mapping) -> bool:
    return (
        a.virt_end == b.virt
        and a.phys_end == b.phys
        and (a.writable, a.user, a.executable, a.global_)
        == (b.writable, b.user, b.executable, b.global_)
    )


def _join(a: Mapping, b: Mapping) -> Mapping:
    def total(x: int | None, y: int | None) -> int | None:
        return None if x is None or y is None else x + y

    return replace(a, size=a.size + b.size, page_size=min(a.page_size, b.page_size),
                   accessed_pages=total(a.accessed_pages, b.accessed_pages),
                   dirty_pages=total(a.dirty_pages, b.dirty_pages))  # fmt: skip


def _append_merged(rows: list[Mapping], m: Mapping) -> None:
    if rows and _mergeable(rows[-1], m):
        rows[-1] = _join(rows[-1], m)
    else:
        rows.append(m)


# ----------------------------------------------------------------------- the TLB-fill hook


@dataclass(frozen=True)
class RefusedFill:
    """The last TLB fill our walker refused: the fault Python raises through the IDT model."""

    page: int  # the faulting page, as the hook saw it
    address: int  # the full linear address for CR2 (Unicorn's uc->invalid_addr; see below)
    access: str  # "read", "write", "instruction fetch"
    kind: str  # "page-fault" or "non-canonical" (#GP)
    error_code: int  # the #PF error code (0 for non-canonical)
    level: int  # level of the deciding entry, 0 = top
    entry: int  # that entry, raw (0 for non-canonical)


class TlbFillHook:
    """Our page walker as Unicorn's TLB-fill hook on one engine (``UC_TLB_VIRTUAL``).

    Keep this object alive as long as the engine runs: Unicorn holds raw pointers to its
    context and scratch arrays (and to the RAM, which the caller keeps too).
    """

    def __init__(self, uc: Any, ram: np.ndarray, env: int, probe_page: int | None = None) -> None:
        import unicorn

        from . import uc_internals as I

        _check_ram(ram)
        self.uc = uc
        self.ram = ram
        self.ctx = np.zeros(_CTX_SIZE, np.uint64)
        self.scratch = np.zeros(_TRACE_SIZE, np.uint64)
        self.ctx[_CTX_ENV] = env
        self.ctx[_CTX_RAM] = ram.ctypes.data
        self.ctx[_CTX_RAM_SIZE] = ram.size
        self.ctx[_CTX_SCRATCH] = self.scratch.ctypes.data
        # A page-aligned vaddr never equals 1: no probe page unless one is asked for.
        self.ctx[_CTX_PROBE_PAGE] = 1 if probe_page is None else probe_page & ~0xFFF
        uc.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)
        if _jit_disabled():
            log.info("NUMBA_DISABLE_JIT is set: the TLB-fill hook still runs compiled code")
        address = native.load("emu.mmu_kernels", "tlb_fill", "TLB_FILL_SIGNATURE").address
        self._handle = ctypes.c_size_t()
        err = I._lib().uc_hook_add(
            uc._uch,
            ctypes.byref(self._handle),
            unicorn.UC_HOOK_TLB_FILL,
            ctypes.c_void_p(address),
            ctypes.c_void_p(self.ctx.ctypes.data),
            ctypes.c_uint64(1),
            ctypes.c_uint64(0),
        )
        if err != unicorn.UC_ERR_OK:
            raise RuntimeError(f"cannot install the TLB-fill hook (unicorn error {err})")

    @property
    def fills(self) -> int:
        """Fills answered so far (granted or refused)."""
        return int(self.ctx[_CTX_FILLS])

    @property
    def refused(self) -> int:
        return int(self.ctx[_CTX_REFUSED])

    def last_refusal(self) -> RefusedFill | None:
        """The most recent refused fill, or None if none was refused."""
        if not self.refused:
            return None
        from . import uc_internals as I

        status = int(self.ctx[_CTX_FAULT_STATUS])
        page = int(self.ctx[_CTX_FAULT_PAGE])
        # The hook is given the page only; Unicorn keeps the whole address of the refused
        # access in its engine struct (unicorn-2.1.4.md Q1). Trust it only if it agrees.
        address = ctypes.c_uint64.from_address(I.uc_handle(self.uc) + I.UC_INVALID_ADDR).value
        if address & ~0xFFF != page:
            if "invalid_addr" not in _warned:
                _warned.add("invalid_addr")
                log.warning("uc->invalid_addr disagrees with the refused page: CR2 gets the page")
            address = page
        return RefusedFill(
            page=page,
            address=address,
            access=ACCESS_WORDS[int(self.ctx[_CTX_FAULT_ACCESS])],
            kind="non-canonical" if status == ST_NON_CANONICAL else "page-fault",
            error_code=int(self.ctx[_CTX_FAULT_ERR]),
            level=int(self.ctx[_CTX_FAULT_LEVEL]),
            entry=int(self.ctx[_CTX_FAULT_ENTRY]),
        )

    def remove(self) -> None:
        """Unhook (the engine then translates identity with exactly the requested right)."""
        from . import uc_internals as I

        I._lib().uc_hook_del(self.uc._uch, self._handle)


def install_tlb_fill(uc: Any, ram: np.ndarray, *, env: int | None = None) -> TlbFillHook:
    """Switch ``uc`` to ``UC_TLB_VIRTUAL`` and translate every TLB miss with our walker.

    ``ram`` must be the buffer mapped at physical 0 with ``mem_map_ptr``. ``env`` is the address
    of QEMU's ``CPUX86State`` (found with ``emu.uc_internals.locate`` when not given).
    """
    if env is None:
        from . import uc_internals as I

        env = I.locate(uc).env
    return TlbFillHook(uc, ram, env)
