"""The whole page-table tree as merged ranges (like QEMU's ``info mem``), and the reports a
debugger builds on them: W+X pages, user-writable kernel pages, reverse lookups, diffs.

The scan itself is compiled (``kernels.py``, ``_mappings``); ``reference.py`` holds its slow
twin, the oracle of the tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .pagewalk import (
    _CFUNC_MAPPINGS,
    _MAP_COLUMNS,
    _MAPF_EXEC,
    _MAPF_GLOBAL,
    _MAPF_USER,
    _MAPF_WRITE,
    _U64,
    _check_ram,
    _jit_disabled,
    _native,
    _warn_unmodelled,
)

log = logging.getLogger(__name__)

_MAX_ROWS = 1 << 21  # a tree with more merged ranges than this is reported truncated

# ----------------------------------------------------------------------- the whole tree


@dataclass(frozen=True)
class Mapping:
    """A run of pages, contiguous in virtual and physical memory, with equal rights, global
    bit and page size (like a line of QEMU's ``info mem``).

    Rights are those of the entries (RW, US and XD of every level), not of one access: a
    supervisor may write a read-only page while CR0.WP=0. ``accessed_pages``/``dirty_pages``
    count the pages whose leaf entry has A/D set; they are None for a piece cut out of a run
    of mixed pages (``diff_mappings``), whose per-page state is not known.
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
            from . import kernels as K

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
    physical address or rights differ (with ``accessed_dirty``, also whose A or D bits do).
    Page size alone is not a change."""

    added: list[Mapping] = field(default_factory=list)
    removed: list[Mapping] = field(default_factory=list)
    changed: list[tuple[Mapping, Mapping]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def diff_mappings(
    before: Sequence[Mapping], after: Sequence[Mapping], *, accessed_dirty: bool = False
) -> MappingDiff:
    """Compare two lists from ``mappings()`` (say, before and after a MOV CR3 or a page-table
    edit) by sweeping their boundaries: linear in the number of ranges. ``accessed_dirty``
    counts a change of the A or D bits as a change too (what the CPU did between two points of
    a run); it needs rows that are all-accessed or none (``mappings(split_ad=True)``, the
    default), else a piece cut out of a mixed row is compared as not accessed.

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
            _append_merged(diff.added, _cut(new, lo, hi), accessed_dirty)
        elif new is None:
            _append_merged(diff.removed, _cut(old, lo, hi), accessed_dirty)
        else:
            a, b = _cut(old, lo, hi), _cut(new, lo, hi)
            key_a, key_b = _identity(a), _identity(b)
            if accessed_dirty:
                key_a, key_b = (*key_a, a.accessed, a.dirty), (*key_b, b.accessed, b.dirty)
            if key_a != key_b:
                prev = diff.changed[-1] if diff.changed else None
                if (
                    prev
                    and _mergeable(prev[0], a, accessed_dirty)
                    and _mergeable(prev[1], b, accessed_dirty)
                ):
                    diff.changed[-1] = (_join(prev[0], a), _join(prev[1], b))
                else:
                    diff.changed.append((a, b))
    return diff


def _identity(m: Mapping) -> tuple[int, bool, bool, bool, bool]:
    return (m.phys, m.writable, m.user, m.executable, m.global_)


def _cut(m: Mapping, start: int, end: int) -> Mapping:
    """The piece [start, end) of ``m``; its A/D page counts are known when ``m``'s pages are
    all alike (none or all accessed, none or all dirty), None otherwise."""
    if start == m.virt and end == m.virt_end:
        return m
    pages = (end - start) // m.page_size

    def count(n: int | None) -> int | None:
        return 0 if n == 0 else max(1, pages) if n is not None and n == m.pages else None

    return replace(m, virt=start, phys=m.phys + (start - m.virt), size=end - start,
                   accessed_pages=count(m.accessed_pages), dirty_pages=count(m.dirty_pages))  # fmt: skip


def _mergeable(a: Mapping, b: Mapping, accessed_dirty: bool = False) -> bool:
    return (
        a.virt_end == b.virt
        and a.phys_end == b.phys
        and (a.writable, a.user, a.executable, a.global_)
        == (b.writable, b.user, b.executable, b.global_)
        and (not accessed_dirty or (a.accessed, a.dirty) == (b.accessed, b.dirty))
    )


def _join(a: Mapping, b: Mapping) -> Mapping:
    def total(x: int | None, y: int | None) -> int | None:
        return None if x is None or y is None else x + y

    return replace(a, size=a.size + b.size, page_size=min(a.page_size, b.page_size),
                   accessed_pages=total(a.accessed_pages, b.accessed_pages),
                   dirty_pages=total(a.dirty_pages, b.dirty_pages))  # fmt: skip


def _append_merged(rows: list[Mapping], m: Mapping, accessed_dirty: bool = False) -> None:
    if rows and _mergeable(rows[-1], m, accessed_dirty):
        rows[-1] = _join(rows[-1], m)
    else:
        rows.append(m)
