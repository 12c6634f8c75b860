"""The MMU as a teacher and a debugger sees it: walks explained level by level, the whole tree.

Pure functions over guest RAM and the control registers: nothing here touches the CPU, and no
accessed/dirty bit is written unless a caller asks for it (``set_ad=True``, as the IDT model
does for its stack pushes, like a real walker would). The walking itself is the compiled
``walk`` of ``mmu_kernels.py`` (loaded through ``native.py``); this module names things.

>>> w = walk(ram, cr3, 0xFFFFFFFF80100000, "r", cr0=cr0, cr4=cr4, efer=efer)  # doctest: +SKIP
>>> print(w.explain())                                                       # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from . import native
from .mmu_layout import (
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

ACCESS = {"r": 0, "read": 0, "w": 1, "write": 1, "x": 2, "fetch": 2, "exec": 2}
ACCESS_WORDS = {0: "read", 1: "write", 2: "instruction fetch"}


class PagingMode(Enum):
    OFF = "paging off"
    LEGACY32 = "32-bit paging"
    PAE = "PAE paging"
    LONG4 = "4-level paging"

    @property
    def level_names(self) -> tuple[str, ...]:
        return {
            PagingMode.OFF: (),
            PagingMode.LEGACY32: ("PDE", "PTE"),
            PagingMode.PAE: ("PDPTE", "PDE", "PTE"),
            PagingMode.LONG4: ("PML4E", "PDPTE", "PDE", "PTE"),
        }[self]


def paging_mode(cr0: int, cr4: int, efer: int) -> PagingMode:
    if not cr0 & (1 << 31):
        return PagingMode.OFF
    if efer & (1 << 10):
        return PagingMode.LONG4
    return PagingMode.PAE if cr4 & (1 << 5) else PagingMode.LEGACY32


@dataclass(frozen=True)
class WalkLevel:
    name: str  # "PML4E", "PDPTE", "PDE", "PTE"
    table: int  # physical address of the table
    index: int
    raw: int  # the entry as read
    wide: bool  # 8-byte entry

    @property
    def entry_address(self) -> int:
        return self.table + self.index * (8 if self.wide else 4)

    def flags(self) -> str:
        """'P RW US A D PS G XD' style, absent bits in lower case."""
        e = self.raw
        names = [(0, "P"), (1, "RW"), (2, "US"), (3, "PWT"), (4, "PCD"), (5, "A"), (6, "D"),
                 (7, "PS"), (8, "G")]  # fmt: skip
        parts = [n if e >> b & 1 else n.lower() for b, n in names]
        if self.wide:
            parts.append("XD" if e >> 63 & 1 else "xd")
        return " ".join(parts)

    def target(self) -> int:
        mask = ((1 << 40) - 1) & ~0xFFF if self.wide else 0xFFFFF000
        return self.raw & mask


@dataclass(frozen=True)
class PageWalk:
    """One translation, every level of it, and its outcome in words."""

    vaddr: int
    access: str  # "read", "write", "instruction fetch"
    user: bool
    mode: PagingMode
    levels: tuple[WalkLevel, ...]
    ok: bool
    paddr: int | None
    page_size: int
    writable: bool
    user_page: bool
    executable: bool
    fault: str | None  # "page-fault", "non-canonical", "outside-ram"
    error_code: int | None  # the #PF error code
    reason: str

    def explain(self) -> str:
        lines = [
            f"{self.mode.value}: {self.access} of 0x{self.vaddr:x} at CPL {3 if self.user else 0}"
        ]
        for lv in self.levels:
            lines.append(
                f"  {lv.name:5s} table 0x{lv.table:x} [{lv.index:3d}] @0x{lv.entry_address:x} = "
                f"0x{lv.raw:0{16 if lv.wide else 8}x}  {lv.flags()}"
            )
        if self.ok:
            size = {4096: "4K", 2 << 20: "2M", 4 << 20: "4M", 1 << 30: "1G"}.get(self.page_size)
            rights = (
                ("W" if self.writable else "R")
                + ("U" if self.user_page else "S")
                + ("X" if self.executable else "-")
            )
            lines.append(f"  -> physical 0x{self.paddr:x} ({size} page, {rights})")
        else:
            code = f" error code 0x{self.error_code:x}" if self.error_code is not None else ""
            lines.append(f"  -> {self.fault}{code}: {self.reason}")
        return "\n".join(lines)


# ----------------------------------------------------------------------- compiled entry points

_CFUNC_TRANSLATE = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p)
_CFUNC_ENUMERATE = ctypes.CFUNCTYPE(
    ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64
)
_fns: dict[str, object] = {}


def _translate_fn():
    if "translate" not in _fns:
        f = native.load("emu.mmu_kernels", "translate", "TRANSLATE_SIGNATURE")
        _fns["translate"] = _CFUNC_TRANSLATE(f.address)
    return _fns["translate"]


def _enumerate_fn():
    if "enumerate" not in _fns:
        f = native.load("emu.mmu_kernels", "enumerate_c", "ENUMERATE_SIGNATURE")
        _fns["enumerate"] = _CFUNC_ENUMERATE(f.address)
    return _fns["enumerate"]


def _ram_ok(ram: np.ndarray) -> None:
    if ram.dtype != np.uint8 or not ram.flags.c_contiguous or ram.size % 4:
        raise ValueError("guest RAM must be a contiguous uint8 array (a multiple of 4 bytes)")


def translate_raw(
    ram: np.ndarray, cr0: int, cr3: int, cr4: int, efer: int, vaddr: int, access: int,
    user: bool, ac: bool = False, set_ad: bool = False,
) -> np.ndarray:  # fmt: skip
    """The raw walk output array (see mmu_layout OUT_*)."""
    _ram_ok(ram)
    args = np.array(
        [ram.ctypes.data, ram.size, cr0, cr3, cr4, efer, vaddr & (2**64 - 1), access,
         int(user), int(ac), int(set_ad)],
        dtype=np.uint64,
    )  # fmt: skip
    out = np.zeros(OUT_SIZE, np.uint64)
    _translate_fn()(args.ctypes.data, out.ctypes.data)
    return out


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
    set_ad: bool = False,
) -> PageWalk:
    """Translate ``vaddr`` and explain every level (no side effects unless ``set_ad``)."""
    acc = ACCESS[access]
    user = cpl == 3
    out = translate_raw(ram, cr0, cr3, cr4, efer, vaddr, acc, user, ac, set_ad)
    mode = paging_mode(cr0, cr4, efer)
    status = int(out[OUT_STATUS])
    names = mode.level_names
    levels: list[WalkLevel] = []
    if mode is not PagingMode.OFF and status != ST_NON_CANONICAL:
        for i in range(int(out[OUT_LEVEL]) + 1):
            t = OUT_TRACE + 3 * i
            levels.append(WalkLevel(names[i], int(out[t]), int(out[t + 1]), int(out[t + 2]),
                                    mode is not PagingMode.LEGACY32))  # fmt: skip
    perms = int(out[OUT_PERMS])
    fault = None
    error = None
    reason = ""
    if status == ST_OK:
        reason = "translated"
    elif status == ST_NON_CANONICAL:
        fault = "non-canonical"
        reason = (
            f"0x{vaddr:x} is not canonical (bits 63:47 differ): the CPU raises #GP "
            "(#SS for a stack access), not #PF"
        )
    elif status == ST_OUTSIDE_RAM:
        fault = "outside-ram"
        reason = "the page tables or the page lie outside guest RAM"
    else:
        fault = "page-fault"
        error = int(out[OUT_ERR])
        last = levels[-1] if levels else None
        if status == ST_NOT_PRESENT and last is not None:
            reason = f"{last.name}[{last.index}] not present"
        elif status == ST_RESERVED and last is not None:
            reason = f"reserved bit {int(out[OUT_RSVD_BIT])} set in {last.name}[{last.index}]"
        elif status == ST_PROTECTION:
            reason = _protection_reason(levels, mode, acc, user, ac, cr0, cr4, efer)
    return PageWalk(
        vaddr=vaddr,
        access=ACCESS_WORDS[acc],
        user=user,
        mode=mode,
        levels=tuple(levels),
        ok=status == ST_OK,
        paddr=int(out[OUT_PADDR]) if status in (ST_OK, ST_OUTSIDE_RAM) else None,
        page_size=int(out[OUT_PAGE_SIZE]),
        writable=bool(perms & PERM_WRITE),
        user_page=bool(perms & PERM_USER),
        executable=bool(perms & PERM_EXEC),
        fault=fault,
        error_code=error,
        reason=reason,
    )


def _protection_reason(levels, mode, acc, user, ac, cr0, cr4, efer) -> str:
    rights = [lv for lv in levels if not (mode is PagingMode.PAE and lv.name == "PDPTE")]
    no_user = next((lv for lv in rights if not lv.raw & 4), None)
    read_only = next((lv for lv in rights if not lv.raw & 2), None)
    no_exec = (
        next((lv for lv in rights if lv.wide and lv.raw >> 63 & 1), None)
        if efer & (1 << 11)
        else None
    )
    if user:
        if no_user is not None:
            return f"user access to a supervisor page ({no_user.name}.US=0)"
        if acc == 1 and read_only is not None:
            return f"user write to a read-only page ({read_only.name}.RW=0)"
        if acc == 2 and no_exec is not None:
            return f"instruction fetch from a no-execute page ({no_exec.name}.XD=1, EFER.NXE=1)"
        return "user access refused"
    if acc == 2:
        if no_exec is not None:
            return f"instruction fetch from a no-execute page ({no_exec.name}.XD=1, EFER.NXE=1)"
        if no_user is None and cr4 & (1 << 20):
            return "supervisor instruction fetch from a user page with CR4.SMEP=1"
    if no_user is None and cr4 & (1 << 21) and not ac:
        return "supervisor access to a user page with CR4.SMAP=1 and RFLAGS.AC=0"
    if acc == 1 and read_only is not None and cr0 & (1 << 16):
        return f"{read_only.name}.RW=0 and CR0.WP=1 on a supervisor write"
    return "supervisor access refused"


# ----------------------------------------------------------------------- the whole tree


@dataclass(frozen=True)
class Mapping:
    virt: int
    phys: int
    size: int
    page_size: int
    writable: bool
    user: bool
    executable: bool
    global_: bool
    accessed: bool
    dirty: bool

    @property
    def virt_end(self) -> int:
        return self.virt + self.size

    def rights(self) -> str:
        return (
            ("w" if self.writable else "r")
            + ("u" if self.user else "s")
            + ("x" if self.executable else "-")
        )


def mappings(ram: np.ndarray, cr3: int, *, cr0: int, cr4: int, efer: int) -> list[Mapping]:
    """Every mapped range, merged like QEMU's ``info mem`` (no side effects)."""
    _ram_ok(ram)
    args = np.array([ram.ctypes.data, ram.size, cr0, cr3, cr4, efer], dtype=np.uint64)
    capacity = 4096
    while True:
        out = np.zeros((capacity, 5), np.uint64)
        n = _enumerate_fn()(args.ctypes.data, out.ctypes.data, capacity)
        if n >= 0:
            break
        capacity *= 4
    rows = []
    for va, pa, size, psize, f in out[:n].tolist():
        rows.append(
            Mapping(
                va,
                pa,
                size,
                psize,
                bool(f & 1),
                bool(f & 2),
                bool(f & 4),
                bool(f & 8),
                bool(f & 16),
                bool(f & 32),
            )  # fmt: skip
        )
    return rows


def find_wx(maps: list[Mapping]) -> list[Mapping]:
    """Writable and executable at once: what W^X forbids."""
    return [m for m in maps if m.writable and m.executable]


def find_user(
    maps: list[Mapping], kernel_ranges: list[tuple[int, int]] | None = None
) -> list[Mapping]:
    """User-accessible ranges; with ``kernel_ranges`` only those overlapping kernel memory."""
    users = [m for m in maps if m.user]
    if kernel_ranges is None:
        return users
    return [m for m in users if any(m.virt < hi and lo < m.virt_end for lo, hi in kernel_ranges)]


def reverse_lookup(maps: list[Mapping], phys: int) -> list[int]:
    """Every virtual address that maps physical address ``phys``."""
    return [m.virt + (phys - m.phys) for m in maps if m.phys <= phys < m.phys + m.size]


@dataclass
class MappingDiff:
    added: list[Mapping] = field(default_factory=list)
    removed: list[Mapping] = field(default_factory=list)
    changed: list[tuple[Mapping, Mapping]] = field(default_factory=list)


def diff_mappings(before: list[Mapping], after: list[Mapping]) -> MappingDiff:
    """What a MOV CR3 or a page-table edit changed, page by page, merged back into ranges."""

    def pages(maps: list[Mapping]) -> dict[int, tuple]:
        out: dict[int, tuple] = {}
        for m in maps:
            for off in range(0, m.size, 4096):
                out[m.virt + off] = (m.phys + off, m.writable, m.user, m.executable)
        return out

    a, b = pages(before), pages(after)
    diff = MappingDiff()

    def as_map(v: int, t: tuple) -> Mapping:
        return Mapping(v, t[0], 4096, 4096, t[1], t[2], t[3], False, False, False)

    for v in sorted(set(a) | set(b)):
        if v not in b:
            diff.removed.append(as_map(v, a[v]))
        elif v not in a:
            diff.added.append(as_map(v, b[v]))
        elif a[v] != b[v]:
            diff.changed.append((as_map(v, a[v]), as_map(v, b[v])))
    diff.added = _merge(diff.added)
    diff.removed = _merge(diff.removed)
    return diff


def _merge(maps: list[Mapping]) -> list[Mapping]:
    out: list[Mapping] = []
    for m in maps:
        p = out[-1] if out else None
        if (
            p is not None
            and p.virt_end == m.virt
            and p.phys + p.size == m.phys
            and p.rights() == m.rights()
        ):
            out[-1] = Mapping(p.virt, p.phys, p.size + m.size, p.page_size, p.writable, p.user,
                              p.executable, False, False, False)  # fmt: skip
        else:
            out.append(m)
    return out
