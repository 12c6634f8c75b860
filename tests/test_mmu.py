"""The MMU inspection API: walks explained level by level, mappings, reports."""

from __future__ import annotations

import numpy as np
import pytest

from emu.mmu import (
    PagingMode,
    diff_mappings,
    find_user,
    find_wx,
    mappings,
    paging_mode,
    reverse_lookup,
    walk,
)

CR0 = 0x80010011  # PG, WP, PE
CR4 = 0x20  # PAE
EFER = 0xD00  # LME, LMA, NXE
P, RW, US, PS, A, D, G = 1, 2, 4, 0x80, 0x20, 0x40, 0x100
XD = 1 << 63


class Tables:
    """A 4-level tree in a 64 MiB RAM: PML4 at 0x1000, tables allocated from 0x2000."""

    def __init__(self) -> None:
        self.ram = np.zeros(64 << 20, np.uint8)
        self.q = self.ram.view(np.uint64)
        self.next = 0x2000
        self.cr3 = 0x1000

    def table(self) -> int:
        t = self.next
        self.next += 0x1000
        return t

    def set(self, phys: int, value: int) -> None:
        self.q[phys // 8] = value

    def get(self, phys: int) -> int:
        return int(self.q[phys // 8])

    def map4k(self, va: int, pa: int, flags: int) -> None:
        t = self.cr3
        for shift in (39, 30, 21):
            idx = (va >> shift) & 0x1FF
            e = self.get(t + 8 * idx)
            if not e & P:
                e = self.table() | P | RW | US
                self.set(t + 8 * idx, e)
            t = e & 0xFFFFFFFFF000
        self.set(t + 8 * ((va >> 12) & 0x1FF), pa | flags)

    def map_large(self, va: int, pa: int, flags: int, shift: int) -> None:
        t = self.cr3
        for s in (39, 30, 21):
            idx = (va >> s) & 0x1FF
            if s == shift:
                self.set(t + 8 * idx, pa | flags | PS)
                return
            e = self.get(t + 8 * idx)
            if not e & P:
                e = self.table() | P | RW | US
                self.set(t + 8 * idx, e)
            t = e & 0xFFFFFFFFF000

    def walk(self, va: int, access: str = "r", **kw):
        return walk(self.ram, self.cr3, va, access, cr0=kw.pop("cr0", CR0), cr4=kw.pop("cr4", CR4),
                    efer=kw.pop("efer", EFER), **kw)  # fmt: skip


@pytest.fixture
def t() -> Tables:
    tb = Tables()
    tb.map4k(0x400000, 0x800000, P | RW)
    tb.map4k(0x401000, 0x801000, P)  # read-only
    tb.map4k(0x402000, 0x802000, P | RW | US | XD)  # user data, NX
    tb.map_large(0x40000000, 0x0, P | RW, 30)  # 1G
    tb.map_large(0xFFFFFFFF80000000, 0x200000, P | RW | G, 21)  # higher half, 2M
    return tb


def test_paging_modes() -> None:
    assert paging_mode(0x11, 0, 0) is PagingMode.OFF
    assert paging_mode(0x80000011, 0, 0) is PagingMode.LEGACY32
    assert paging_mode(0x80000011, 0x20, 0) is PagingMode.PAE
    assert paging_mode(0x80000011, 0x20, 0x500) is PagingMode.LONG4


def test_successful_walk_lists_every_level(t: Tables) -> None:
    w = t.walk(0x400123)
    assert w.ok and w.paddr == 0x800123 and w.page_size == 4096
    assert [lv.name for lv in w.levels] == ["PML4E", "PDPTE", "PDE", "PTE"]
    assert w.levels[0].table == 0x1000 and w.levels[0].index == 0
    assert w.levels[2].index == 2 and w.levels[3].index == 0
    text = w.explain()
    assert "-> physical 0x800123 (4K page, WSX)" in text
    # no side effects: no accessed bit was set by an inspection walk
    assert not t.get(0x1000) & A


def test_large_pages(t: Tables) -> None:
    w = t.walk(0x40001234)
    assert w.ok and w.page_size == 1 << 30 and w.paddr == 0x1234
    assert len(w.levels) == 2
    w = t.walk(0xFFFFFFFF80000010, "x")
    assert w.ok and w.paddr == 0x200010 and w.page_size == 2 << 20
    assert w.levels[0].index == 511 and w.levels[1].index == 510


def test_not_present_names_the_level(t: Tables) -> None:
    w = t.walk(0x80000000)
    assert not w.ok and w.fault == "page-fault" and w.error_code == 0
    assert w.reason == "PDPTE[2] not present"


def test_supervisor_write_to_read_only_with_wp(t: Tables) -> None:
    w = t.walk(0x401008, "w")
    assert w.error_code == 0b011
    assert w.reason == "PTE.RW=0 and CR0.WP=1 on a supervisor write"
    assert t.walk(0x401008, "w", cr0=CR0 & ~(1 << 16)).ok  # WP=0: the write is allowed


def test_user_access_to_supervisor_page(t: Tables) -> None:
    w = t.walk(0x400000, "r", cpl=3)
    assert w.error_code == 0b101 and w.reason == "user access to a supervisor page (PTE.US=0)"


def test_nx_fetch_and_smep_smap(t: Tables) -> None:
    w = t.walk(0x402000, "x", cpl=3)
    assert w.error_code == 0b10101 and "no-execute" in w.reason
    w = t.walk(0x402000, "r", cr4=CR4 | (1 << 21))
    assert "SMAP" in w.reason and w.error_code == 0b001
    assert t.walk(0x402000, "r", cr4=CR4 | (1 << 21), ac=True).ok


def test_reserved_bit_is_named(t: Tables) -> None:
    pte = 0x3000 + 8 * 0  # the first PT allocated holds 0x400000
    pd = t.walk(0x400000).levels[3].table
    t.set(pd, t.get(pd) | (1 << 51))
    w = t.walk(0x400000)
    assert w.reason == "reserved bit 51 set in PTE[0]" and w.error_code == 0b1001
    assert pte  # (the table address is read from the walk, not assumed)


def test_non_canonical_is_gp_not_pf(t: Tables) -> None:
    w = t.walk(0x0000800000000000)
    assert w.fault == "non-canonical" and w.error_code is None and "#GP" in w.reason


def test_walk_can_set_accessed_and_dirty(t: Tables) -> None:
    w = t.walk(0x400000, "w", set_ad=True)
    assert w.ok
    pte_addr = w.levels[3].entry_address
    assert t.get(pte_addr) & (A | D) == A | D
    assert t.get(0x1000) & A


def test_mappings_merge_like_info_mem(t: Tables) -> None:
    t.map4k(0x403000, 0x803000, P | RW | US | XD)  # contiguous with 0x402000, same rights
    maps = mappings(t.ram, t.cr3, cr0=CR0, cr4=CR4, efer=EFER)
    rows = [(m.virt, m.phys, m.size, m.rights()) for m in maps]
    assert (0x400000, 0x800000, 0x1000, "wsx") in rows
    assert (0x401000, 0x801000, 0x1000, "rsx") in rows
    assert (0x402000, 0x802000, 0x2000, "wu-") in rows
    assert (0x40000000, 0x0, 1 << 30, "wsx") in rows
    assert (0xFFFFFFFF80000000, 0x200000, 2 << 20, "wsx") in rows
    big = next(m for m in maps if m.virt == 0xFFFFFFFF80000000)
    assert big.global_ and big.page_size == 2 << 20
    assert {m.virt for m in find_wx(maps)} == {0x400000, 0x40000000, 0xFFFFFFFF80000000}
    assert [m.virt for m in find_user(maps)] == [0x402000]
    assert sorted(reverse_lookup(maps, 0x200010)) == [0x40200010, 0xFFFFFFFF80000010]


def test_diff_of_two_trees(t: Tables) -> None:
    before = mappings(t.ram, t.cr3, cr0=CR0, cr4=CR4, efer=EFER)
    t.map4k(0x500000, 0x900000, P | RW)
    t.map4k(0x401000, 0x801000, P | RW)  # made writable
    after = mappings(t.ram, t.cr3, cr0=CR0, cr4=CR4, efer=EFER)
    d = diff_mappings(before, after)
    assert [(m.virt, m.phys) for m in d.added] == [(0x500000, 0x900000)]
    assert [(a.virt, a.writable, b.writable) for a, b in d.changed] == [(0x401000, False, True)]
    assert d.removed == []


def test_legacy_32bit_paging_with_4m_pages() -> None:
    ram = np.zeros(16 << 20, np.uint8)
    d = ram.view(np.uint32)
    d[0x1000 // 4 + 1] = 0x00400000 | P | RW | PS  # PDE[1]: 4M page at 4M
    d[0x1000 // 4 + 2] = 0x2000 | P | RW  # PDE[2] -> PT at 0x2000
    d[0x2000 // 4 + 3] = 0x123000 | P
    w = walk(ram, 0x1000, 0x00412345, cr0=0x80000011, cr4=0x10, efer=0)
    assert w.ok and w.paddr == 0x412345 and w.page_size == 4 << 20
    assert [lv.name for lv in w.levels] == ["PDE"]
    w = walk(ram, 0x1000, 0x00803456, cr0=0x80000011, cr4=0x10, efer=0)
    assert w.paddr == 0x123456 and [lv.name for lv in w.levels] == ["PDE", "PTE"]
    maps = mappings(ram, 0x1000, cr0=0x80000011, cr4=0x10, efer=0)
    assert [(m.virt, m.size) for m in maps] == [(0x400000, 4 << 20), (0x803000, 0x1000)]
