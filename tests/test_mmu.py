"""The MMU: walks explained level by level, the merged tree, the reports, and our TLB-fill hook
in a real Unicorn run (UC_TLB_VIRTUAL)."""

from __future__ import annotations

import doctest
import logging
import os

import numpy as np
import pytest
import unicorn
from unicorn import UcError
from unicorn import x86_const as X

from emu import mmu
from emu.core import internals as I
from emu.mmu import (
    Mapping,
    PagingMode,
    diff_mappings,
    find_user,
    find_user_kernel,
    find_wx,
    install_tlb_fill,
    mappings,
    paging_mode,
    reverse_lookup,
    translate_raw,
    walk,
)

NOJIT = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")
CR0 = 0x80010011  # PG, WP, ET, PE
CR4 = 0x20  # PAE
EFER = 0xD00  # NXE, LMA, LME
P, RW, US, A, D, PS, G = 1, 2, 4, 0x20, 0x40, 0x80, 0x100
XD = 1 << 63


class Tables:
    """A 4-level (or, with ``la57``, 5-level) tree in a 64 MiB RAM, tables allocated from
    0x2000 up, root at 0x1000."""

    def __init__(self, la57: bool = False) -> None:
        self.ram = np.zeros(64 << 20, np.uint8)
        self.q = self.ram.view(np.uint64)
        self.next = 0x2000
        self.cr3 = 0x1000
        self.shifts = (48, 39, 30, 21) if la57 else (39, 30, 21)
        self.cr4 = CR4 | (1 << 12 if la57 else 0)

    def table(self) -> int:
        t = self.next
        self.next += 0x1000
        return t

    def set(self, phys: int, value: int) -> None:
        self.q[phys // 8] = value

    def get(self, phys: int) -> int:
        return int(self.q[phys // 8])

    def map(self, va: int, pa: int, flags: int, size: int = 4096) -> None:
        t = self.cr3
        for shift in (*self.shifts, 12):
            idx = (va >> shift) & 0x1FF
            if 1 << shift == size:
                self.set(t + 8 * idx, pa | flags | (PS if size > 4096 else 0))
                return
            e = self.get(t + 8 * idx)
            if not e & P:
                e = self.table() | P | RW | US
                self.set(t + 8 * idx, e)
            t = e & 0xFFFFFFFFF000

    def walk(self, va: int, access: str = "r", **kw) -> mmu.PageWalk:
        regs = {"cr0": CR0, "cr4": self.cr4, "efer": EFER}
        regs.update({k: kw.pop(k) for k in ("cr0", "cr4", "efer") if k in kw})
        return walk(self.ram, self.cr3, va, access, **regs, **kw)

    def mappings(self, split_ad: bool = True) -> list[Mapping]:
        return mappings(self.ram, self.cr3, cr0=CR0, cr4=self.cr4, efer=EFER, split_ad=split_ad)


@pytest.fixture
def t() -> Tables:
    tb = Tables()
    tb.map(0x400000, 0x800000, P | RW)
    tb.map(0x401000, 0x801000, P)  # read-only
    tb.map(0x402000, 0x802000, P | RW | US | XD)  # user data, NX
    tb.map(0x40000000, 0x0, P | RW, 1 << 30)
    tb.map(0xFFFFFFFF80000000, 0x200000, P | RW | G, 2 << 20)
    return tb


# ----------------------------------------------------------------------- modes and walks


def test_paging_modes() -> None:
    assert paging_mode(0x11, 0x20, 0x500) is PagingMode.OFF
    assert paging_mode(0x80000011, 0, 0) is PagingMode.LEGACY32
    assert paging_mode(0x80000011, 0x20, 0) is PagingMode.PAE
    assert paging_mode(0x80000011, 0x20, 0x500) is PagingMode.LONG4
    assert paging_mode(0x80000011, 0x1020, 0x500) is PagingMode.LONG5
    assert paging_mode(0x80000011, 0x20, 0x100) is PagingMode.PAE  # LME without LMA: not yet
    assert PagingMode.LONG5.level_names == ("PML5E", "PML4E", "PDPTE", "PDE", "PTE")


def test_successful_walk_lists_every_level(t: Tables) -> None:
    w = t.walk(0x400123)
    assert w.ok and w.paddr == 0x800123 and w.page_size == 4096 and w.in_ram
    assert [lv.name for lv in w.levels] == ["PML4E", "PDPTE", "PDE", "PTE"]
    assert w.levels[0].table == 0x1000 and w.levels[0].index == 0
    assert w.levels[2].index == 2 and w.levels[3].index == 0
    assert w.levels[3].flag_names == ("P", "RW")
    assert w.levels[0].flags() == "P RW US pwt pcd a d ps g xd"
    assert "-> physical 0x800123 (4K page, WSX)" in w.explain()
    assert not t.get(0x1000) & A  # an inspection walk has no side effect


def test_large_pages(t: Tables) -> None:
    w = t.walk(0x40001234)
    assert w.ok and w.page_size == 1 << 30 and w.paddr == 0x1234 and len(w.levels) == 2
    w = t.walk(0xFFFFFFFF80000010, "x")
    assert w.ok and w.paddr == 0x200010 and w.page_size == 2 << 20
    assert [lv.index for lv in w.levels] == [511, 510, 0]


def test_not_present_names_the_level(t: Tables) -> None:
    w = t.walk(0x80000000)
    assert not w.ok and w.fault == "page-fault" and w.error_code == 0
    assert w.reason == "PDPTE[2] not present" and w.paddr is None


def test_a_table_beyond_ram_reads_as_zero(t: Tables) -> None:
    t.map(0x600000, 0x900000, P | RW)
    pde = t.walk(0x600000).levels[2]
    t.set(pde.entry_address, (1 << 36) | P | RW)  # the page table lies beyond guest RAM
    w = t.walk(0x600000, "w")
    assert w.error_code == 0b010 and w.levels[-1].name == "PTE"
    assert w.reason == (
        "PTE[0] not present (its table at 0x1000000000 is beyond guest RAM, which reads as zero)"
    )


def test_a_page_beyond_ram_still_translates(t: Tables) -> None:
    t.map(0x700000, 0xFEE00000, P | RW)  # a local APIC page: no RAM there
    w = t.walk(0x700020)
    assert w.ok and w.paddr == 0xFEE00020 and not w.in_ram
    assert w.explain().endswith("(4K page, WSX, beyond guest RAM)")


def test_supervisor_write_to_read_only_with_wp(t: Tables) -> None:
    w = t.walk(0x401008, "w")
    assert w.error_code == 0b011 and w.paddr == 0x801008  # where the page is, on protection
    assert w.reason == "PTE.RW=0 and CR0.WP=1 on a supervisor write"
    assert t.walk(0x401008, "w", cr0=CR0 & ~(1 << 16)).ok  # WP=0: allowed


def test_user_accesses(t: Tables) -> None:
    w = t.walk(0x400000, "r", cpl=3)
    assert w.error_code == 0b101 and w.reason == "user access to a supervisor page (PTE.US=0)"
    t.map(0x403000, 0x803000, P | US)
    w = t.walk(0x403000, "w", cpl=3)
    assert w.error_code == 0b111 and w.reason == "user write to a read-only page (PTE.RW=0)"
    assert t.walk(0x403000, "w", cpl=3, cr0=CR0 & ~(1 << 16)).error_code == 0b111  # WP: no help


def test_nx_smep_smap(t: Tables) -> None:
    w = t.walk(0x402000, "x", cpl=3)
    assert w.error_code == 0b10101
    assert w.reason == "instruction fetch from a no-execute page (PTE.XD=1, EFER.NXE=1)"
    w = t.walk(0x402000, "r", cr4=CR4 | (1 << 21))
    assert w.reason == "supervisor access to a user page with CR4.SMAP=1 and RFLAGS.AC=0"
    assert w.error_code == 0b001
    assert t.walk(0x402000, "r", cr4=CR4 | (1 << 21), ac=True).ok
    w = t.walk(0x402000, "w", cr4=CR4 | (1 << 21), ac=True, implicit=True, cpl=3)
    assert w.reason == "implicit supervisor access to a user page with CR4.SMAP=1"
    assert w.error_code == 0b011  # an implicit access is a supervisor access: U/S=0
    t.map(0x404000, 0x804000, P | US)  # user code
    w = t.walk(0x404000, "x", cr4=CR4 | (1 << 20))
    assert w.reason == "supervisor instruction fetch from a user page with CR4.SMEP=1"
    assert w.error_code == 0b10001


def test_nx_is_ignored_without_nxe_and_reserved_while_off(t: Tables) -> None:
    w = t.walk(0x402000, "r", efer=0x500)
    assert w.reason == "reserved bit 63 set in PTE[2] (XD while EFER.NXE=0)"
    assert w.error_code == 0b1001


def test_reserved_bits_are_named(t: Tables) -> None:
    pte = t.walk(0x400000).levels[3].entry_address
    t.set(pte, t.get(pte) | (1 << 51))
    w = t.walk(0x400000)
    assert w.reason == "reserved bit 51 set in PTE[0] (above MAXPHYADDR, 40 bits)"
    assert w.error_code == 0b1001
    t.set(pte, t.get(pte) & ~(1 << 51) | (1 << 55))  # bits 62:52 are ignored in 4-level
    assert t.walk(0x400000).ok
    t.set(0x1000, t.get(0x1000) | PS)
    assert t.walk(0x400000).reason == "reserved bit 7 set in PML4E[0] (PS is reserved in a PML4E)"


def test_misaligned_large_page_is_reserved(t: Tables) -> None:
    t.map(0x80000000, 0x40000000 | (1 << 21), P | RW, 1 << 30)
    w = t.walk(0x80000000)
    assert w.reason == "reserved bit 21 set in PDPTE[2] (a 1G page must be 1G-aligned)"


def test_non_canonical_is_gp_not_pf(t: Tables) -> None:
    w = t.walk(0x0000800000000000)
    assert w.fault == "non-canonical" and w.error_code is None and w.levels == ()
    assert "bits 63:47 must all equal bit 47" in w.reason and "#GP" in w.reason


def test_walk_can_set_accessed_and_dirty(t: Tables) -> None:
    assert t.walk(0x401000, "w", set_ad=True).fault == "page-fault"
    assert not t.get(0x1000) & A  # nothing is set by a walk that faults
    w = t.walk(0x400000, "w", set_ad=True)
    assert w.ok and w.levels[3].raw & D == 0  # the trace shows the entry as read
    assert t.get(w.levels[3].entry_address) & (A | D) == A | D
    assert all(t.get(lv.entry_address) & (A | D) == A for lv in w.levels[:3])


def test_five_level_paging() -> None:
    t = Tables(la57=True)
    t.map(0x00FF_8000_0040_0000, 0x12000, P | RW)
    t.map(0xFF00_0000_0000_0000, 0x13000, P | RW | US)  # upper half: PML5 index 256
    w = t.walk(0x00FF_8000_0040_0ABC)
    assert w.ok and w.paddr == 0x12ABC and w.mode is PagingMode.LONG5
    assert [lv.name for lv in w.levels] == ["PML5E", "PML4E", "PDPTE", "PDE", "PTE"]
    assert t.walk(0x0100_0000_0000_0000).fault == "non-canonical"  # bit 56 not extended
    assert t.walk(0x0000_8000_0000_0000).reason.endswith("not present")  # canonical with LA57
    rows = [(m.virt, m.phys, m.user) for m in t.mappings()]
    assert rows == [(0x00FF_8000_0040_0000, 0x12000, False), (0xFF00_0000_0000_0000, 0x13000, True)]


def test_five_level_tree_view() -> None:
    from emu.mmu.view import tree_text

    t = Tables(la57=True)
    t.map(0x00FF_8000_0040_0000, 0x12000, P | RW)
    t.map(0xFF00_0000_0000_0000, 0x13000, P | RW | US)
    text = tree_text(t.ram, t.cr3, cr0=CR0, cr4=t.cr4, efer=EFER).plain
    assert text.startswith("5-level")
    assert "PML5E[255] " in text and "PML5E[256] " in text
    assert "va 0xff800000400000 -> pa 0x12000 4K WSX" in text
    assert "va 0xff00000000000000 -> pa 0x13000 4K WUX" in text  # sign-extended from bit 56


def test_pae_paging() -> None:
    ram = np.zeros(1 << 20, np.uint8)
    q = ram.view(np.uint64)
    cr3 = 0x1020  # 32-byte aligned
    q[cr3 // 8 + 3] = 0x2000 | P  # PDPTE 3: 0xC0000000-
    q[0x2000 // 8 + 1] = 0x3000 | P | RW
    q[0x3000 // 8 + 4] = 0x9000 | P | RW | XD
    q[0x2000 // 8 + 2] = 0x00400000 | P | PS  # a 2M page
    regs = {"cr0": CR0, "cr4": 0x20, "efer": 0x800}
    w = walk(ram, cr3, 0xC0204567, **regs)
    assert w.ok and w.paddr == 0x9567 and [lv.name for lv in w.levels] == ["PDPTE", "PDE", "PTE"]
    assert w.levels[0].index == 3 and not w.executable
    assert walk(ram, cr3, 0xC0412345, **regs).paddr == 0x412345
    q[0x3000 // 8 + 4] |= 1 << 55  # 62:M are reserved in PAE paging
    assert walk(ram, cr3, 0xC0204567, **regs).reason.startswith("reserved bit 55 set in PTE[4]")
    q[cr3 // 8 + 3] |= RW  # bit 1 is reserved in a PAE PDPTE (rights live below it)
    w = walk(ram, cr3, 0xC0204567, **regs)
    assert w.reason == "reserved bit 1 set in PDPTE[3] (reserved in a PAE PDPTE)"


def test_legacy_32bit_paging_with_4m_and_pse36_pages() -> None:
    ram = np.zeros(16 << 20, np.uint8)
    d = ram.view(np.uint32)
    d[0x1000 // 4 + 1] = 0x00400000 | P | RW | PS  # PDE 1: a 4M page at 4M
    d[0x1000 // 4 + 2] = 0x2000 | P | RW  # PDE 2 -> page table at 0x2000
    d[0x2000 // 4 + 3] = 0x123000 | P | G
    d[0x1000 // 4 + 3] = 0x00C00000 | (0x12 << 13) | P | PS  # PSE-36: physical 0x12_00C00000
    regs = {"cr0": 0x80000011, "cr4": 0x10, "efer": 0}
    w = walk(ram, 0x1000, 0x00412345, **regs)
    assert w.ok and w.paddr == 0x412345 and w.page_size == 4 << 20
    assert [lv.name for lv in w.levels] == ["PDE"] and not w.levels[0].wide
    w = walk(ram, 0x1000, 0x00803456, **regs)
    assert w.paddr == 0x123456 and [lv.name for lv in w.levels] == ["PDE", "PTE"]
    assert walk(ram, 0x1000, 0x00C00010, **regs).paddr == 0x12_00C00010
    assert walk(ram, 0x1000, 0x00412345, cr0=0x80000011, cr4=0, efer=0).levels[-1].name == "PTE"
    maps = mappings(ram, 0x1000, **regs)
    assert [(m.virt, m.phys, m.size, m.global_) for m in maps] == [
        (0x400000, 0x400000, 4 << 20, False),
        (0x803000, 0x123000, 0x1000, True),
        (0xC00000, 0x12_00C00000, 4 << 20, False),
    ]


def test_paging_off_is_identity() -> None:
    ram = np.zeros(1 << 16, np.uint8)
    w = walk(ram, 0, 0x1_0000_1234, "x", cr0=0x11, cr4=0, efer=0)
    assert w.ok and w.paddr == 0x1234 and w.levels == () and w.mode is PagingMode.OFF
    assert mappings(ram, 0, cr0=0x11, cr4=0, efer=0) == []


def test_translate_raw_is_the_walk_for_hot_callers(t: Tables) -> None:
    from emu.mmu import layout as ML

    out = translate_raw(t.ram, CR0, t.cr3, CR4, EFER, 0x401000, ML.ACC_WRITE, False)
    assert int(out[ML.OUT_STATUS]) == ML.ST_PROTECTION and int(out[ML.OUT_ERR]) == 3
    assert int(out[ML.OUT_LEVELS]) == 4 and int(out[ML.OUT_LEVEL]) == 3
    t.set(0x1000, t.get(0x1000) | (1 << 45))
    out = translate_raw(t.ram, CR0, t.cr3, CR4, EFER, 0x401000, ML.ACC_READ, True)
    assert int(out[ML.OUT_RSVD_BIT]) == 45 and int(out[ML.OUT_ERR]) == 0b1101


def test_protection_keys_are_reported_as_not_modelled(t: Tables, caplog) -> None:
    mmu._warned.discard("pke")
    with caplog.at_level(logging.WARNING, logger="emu.mmu"):
        t.walk(0x400000, cr4=CR4 | (1 << 22))
        t.walk(0x400000, cr4=CR4 | (1 << 22))
    assert sum("protection keys are not modelled" in r.message for r in caplog.records) == 1


def test_ram_must_be_bytes_in_whole_words() -> None:
    with pytest.raises(ValueError, match="uint8"):
        walk(np.zeros(100, np.uint8), 0, 0, cr0=CR0, cr4=CR4, efer=EFER)


# ----------------------------------------------------------------------- the tree and reports


def test_mappings_merge_like_info_mem(t: Tables) -> None:
    t.map(0x403000, 0x803000, P | RW | US | XD | A)  # contiguous with 0x402000, same rights
    t.map(0x404000, 0x804000, P | RW | US | XD | A | D)
    maps = t.mappings(split_ad=False)
    rows = [(m.virt, m.phys, m.size, m.page_size, m.rights()) for m in maps]
    assert rows == [
        (0x400000, 0x800000, 0x1000, 0x1000, "wsx"),
        (0x401000, 0x801000, 0x1000, 0x1000, "rsx"),
        (0x402000, 0x802000, 0x3000, 0x1000, "wu-"),
        (0x40000000, 0x0, 1 << 30, 1 << 30, "wsx"),
        (0xFFFFFFFF80000000, 0x200000, 2 << 20, 2 << 20, "wsx"),
    ]
    user = maps[2]
    assert (user.pages, user.accessed_pages, user.dirty_pages) == (3, 2, 1)
    assert user.accessed and user.dirty
    assert maps[-1].global_ and not maps[-1].accessed
    # by default a run also ends where A or D changes: every row is uniform
    rows = [(m.virt, m.size, m.accessed_pages, m.dirty_pages) for m in t.mappings()]
    assert rows[2:5] == [
        (0x402000, 0x1000, 0, 0),
        (0x403000, 0x1000, 1, 0),
        (0x404000, 0x1000, 1, 1),
    ]


def test_runs_split_on_rights_page_size_and_global(t: Tables) -> None:
    t.map(0x403000, 0x803000, P | RW | US | XD | G)  # same rights as 0x402000, but global
    t.map(0xFFFFFFFF80200000, 0x400000, P | RW, 2 << 20)  # not global: a new run
    rows = [(m.virt, m.size) for m in t.mappings()]
    assert (0x402000, 0x1000) in rows and (0x403000, 0x1000) in rows
    assert (0xFFFFFFFF80200000, 2 << 20) in rows


def test_reserved_entries_are_left_out(t: Tables) -> None:
    pte = t.walk(0x401000).levels[3].entry_address
    t.set(pte, t.get(pte) | (1 << 50))
    assert 0x401000 not in [m.virt for m in t.mappings()]


def test_reports(t: Tables) -> None:
    maps = t.mappings()
    assert [m.virt for m in find_wx(maps)] == [0x400000, 0x40000000, 0xFFFFFFFF80000000]
    assert [m.virt for m in find_user(maps)] == [0x402000]
    pieces = find_user_kernel(maps, [(0x402800, 0x500000), (0, 0x1000)])
    assert [(p.virt, p.phys, p.size, p.accessed_pages) for p in pieces] == [
        (0x402800, 0x802800, 0x800, 0)  # a piece of a run none of whose pages is accessed
    ]
    assert sorted(reverse_lookup(maps, 0x200010)) == [0x40200010, 0xFFFFFFFF80000010]


def test_diff_of_two_trees(t: Tables) -> None:
    before = t.mappings()
    t.map(0x500000, 0x900000, P | RW)
    t.map(0x401000, 0x801000, P | RW)  # made writable
    t.map(0x402000, 0, 0)  # unmapped
    after = t.mappings()
    d = diff_mappings(before, after)
    assert [(m.virt, m.phys, m.size) for m in d.added] == [(0x500000, 0x900000, 0x1000)]
    assert [(m.virt, m.size) for m in d.removed] == [(0x402000, 0x1000)]
    assert [(a.virt, a.writable, b.writable) for a, b in d.changed] == [(0x401000, False, True)]
    assert not diff_mappings(after, after)


def test_diff_cuts_runs_where_they_differ() -> None:
    def run(virt: int, phys: int, size: int, writable: bool) -> Mapping:
        return Mapping(virt, phys, size, 0x1000, writable, False, False, False, size >> 12, 0)

    before = [run(0x10000, 0x10000, 0x10000, True)]
    after = [run(0x10000, 0x10000, 0x4000, True), run(0x14000, 0x14000, 0x2000, False),
             run(0x16000, 0x16000, 0xA000, True)]  # fmt: skip
    d = diff_mappings(before, after)
    assert not d.added and not d.removed
    assert [(a.virt, a.size, b.writable) for a, b in d.changed] == [(0x14000, 0x2000, False)]


def test_mappings_list_is_truncated_not_endless(t: Tables, monkeypatch, caplog) -> None:
    for i in range(5000):  # 5,000 pages that cannot merge (the physical pages descend)
        t.map(0x10000000 + i * 0x1000, 0x2000000 - i * 0x1000, P)
    monkeypatch.setattr(mmu.tree, "_MAX_ROWS", 4096)
    with caplog.at_level(logging.WARNING, logger="emu.mmu"):
        maps = t.mappings()
    assert len(maps) == 4096 and "truncated" in caplog.text


def test_python_mirrors_of_the_kernel_layouts_agree() -> None:
    from emu.mmu import kernels as K
    from emu.mmu import pagewalk as mirrors  # the Python side's copies of the layouts

    for name in ("TRACE_STRIDE", "TRACE_SIZE", "TR_ARGS", "MAP_COLUMNS"):
        assert getattr(mirrors, f"_{name}") == getattr(K, name), name
    for name in ("WRITE", "USER", "EXEC", "GLOBAL"):
        assert getattr(mirrors, f"_MAPF_{name}") == getattr(K, f"MAPF_{name}"), name
    ctx = [n for n in dir(K) if n.startswith("CTX_")]
    assert len(ctx) == 20 and all(getattr(mirrors, f"_{n}") == getattr(K, n) for n in ctx)
    slots = [getattr(K, n) for n in ctx if n != "CTX_SIZE"]
    assert len(set(slots)) == len(slots) and max(slots) < K.CTX_SIZE


def test_docstring_examples() -> None:
    results = [doctest.testmod(module) for module in (mmu.pagewalk, mmu.tree)]
    assert sum(r.attempted for r in results) >= 8 and sum(r.failed for r in results) == 0


# ----------------------------------------------------------------------- the TLB fill in Unicorn

needs_jit = pytest.mark.skipif(
    NOJIT, reason="the TLB-fill hook is native code; NUMBA_DISABLE_JIT runs kernels as Python"
)

CODE = 0x10000
UNTIL = CODE + 0xF00  # on the code page: emu_start's final probe of it is a plain fill


class Guest:
    """A Unicorn engine in 64-bit mode on our page tables, translated by our TLB-fill hook.

    Identity-mapped 4K pages below 2 MiB (PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000);
    the code page at 0x10000 is executable and user-accessible."""

    def __init__(self, paging: bool = True) -> None:
        self.ram = np.zeros(4 << 20, np.uint8)
        self.q = self.ram.view(np.uint64)
        uc = self.uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        uc.mem_map_ptr(0, self.ram.size, unicorn.UC_PROT_ALL, self.ram.ctypes.data)
        self.env = I.locate(uc)
        self.hook = install_tlb_fill(uc, self.ram, env=self.env.env)
        for table, nxt in ((0x1000, 0x2000), (0x2000, 0x3000), (0x3000, 0x4000)):
            self.q[table // 8] = nxt | P | RW | US
        self.map(CODE, P | US)
        if paging:
            # Unicorn resets into long mode with paging off; turning PG on keeps long mode.
            uc.reg_write(X.UC_X86_REG_CR3, 0x1000)
            uc.reg_write(X.UC_X86_REG_CR4, CR4)
            uc.msr_write(0xC0000080, EFER)
            uc.reg_write(X.UC_X86_REG_CR0, CR0)

    def map(self, page: int, flags: int, phys: int | None = None) -> None:
        self.q[0x4000 // 8 + (page >> 12)] = (page if phys is None else phys) | flags

    def pte(self, page: int) -> int:
        return int(self.q[0x4000 // 8 + (page >> 12)])

    def run(self, code: bytes, **regs: int) -> None:
        self.ram[CODE : CODE + len(code)] = np.frombuffer(code, np.uint8)
        self.uc.ctl_flush_tb()  # host writes to code do not invalidate translations
        for name, value in regs.items():
            self.uc.reg_write(getattr(X, f"UC_X86_REG_{name.upper()}"), value)
        self.uc.emu_start(CODE, UNTIL)

    def enter_user_mode(self) -> None:
        self.env.write_segment(I.SEG_CS, 0x1B, 0, 0xFFFFFFFF, (0x00AFFA000000FFFF >> 32))
        self.env.write_segment(I.SEG_SS, 0x23, 0, 0xFFFFFFFF, (0x00CFF2000000FFFF >> 32))
        self.env.update_hflags()
        assert self.env.hflags & 3 == 3


READ_RBX = bytes.fromhex("488b03")  # mov (%rbx),%rax
WRITE_RBX = bytes.fromhex("488903")  # mov %rax,(%rbx)
WRITE_RBX_8 = bytes.fromhex("48894308")  # mov %rax,8(%rbx)
READ_RCX = bytes.fromhex("488b01")  # mov (%rcx),%rax
JMP_RBX = bytes.fromhex("ffe3")  # jmp *%rbx
HLT = b"\xf4"


@needs_jit
def test_fill_sets_accessed_and_dirty_in_guest_tables() -> None:
    g = Guest()
    g.map(0x20000, P | RW)
    g.map(0x21000, P | RW)
    g.run(READ_RBX + HLT, rbx=0x20000)
    assert g.pte(0x20000) & (A | D) == A  # read: accessed, still clean
    assert all(int(g.q[t // 8]) & A for t in (0x1000, 0x2000, 0x3000))
    assert g.pte(CODE) & (A | D) == A  # the instruction fetches
    g.run(WRITE_RBX + HLT, rbx=0x21000, rax=0x1122)
    assert g.pte(0x21000) & (A | D) == A | D
    assert int(g.q[0x21000 // 8]) == 0x1122
    assert g.hook.refused == 0


@needs_jit
def test_first_write_to_a_clean_page_comes_back_to_the_walker() -> None:
    code = READ_RBX + WRITE_RBX + WRITE_RBX_8 + HLT
    clean = Guest()
    clean.map(0x20000, P | RW)
    clean.run(code, rbx=0x20000)
    # D is set only by our walker: the read fill withheld write permission
    assert clean.pte(0x20000) & D
    dirty = Guest()
    dirty.map(0x20000, P | RW | A | D)  # already dirty: the read fill grants write at once
    dirty.run(code, rbx=0x20000)
    assert clean.hook.fills == dirty.hook.fills + 1


@needs_jit
def test_execute_is_granted_only_to_instruction_fetches() -> None:
    read_then_run = Guest()
    read_then_run.map(0x20000, P | RW | A | D)
    read_then_run.ram[0x20000] = 0xF4  # hlt
    read_then_run.run(READ_RBX + JMP_RBX, rbx=0x20000)  # read the page, then execute it
    other = Guest()
    other.map(0x20000, P | RW | A | D)
    other.map(0x21000, P | RW | A | D)
    other.ram[0x20000] = 0xF4
    other.run(READ_RCX + JMP_RBX, rbx=0x20000, rcx=0x21000)  # read another page instead
    assert read_then_run.uc.reg_read(X.UC_X86_REG_RIP) == 0x20001  # after the hlt
    # The same number of fills: reading 0x20000 did not make it executable in the TLB.
    assert read_then_run.hook.fills == other.hook.fills


@needs_jit
@pytest.mark.parametrize(
    "flags, code, access, error",
    [
        (0, READ_RBX, "read", 0b00000),  # not present
        (P, WRITE_RBX, "write", 0b00011),  # read-only with CR0.WP=1
        (P | RW | XD, JMP_RBX, "instruction fetch", 0b10001),  # no-execute
        (P | RW | (1 << 45), READ_RBX, "read", 0b01001),  # reserved bit
    ],
)
def test_a_refused_fill_is_recorded(flags: int, code: bytes, access: str, error: int) -> None:
    g = Guest()
    g.map(0x20000, flags)
    with pytest.raises(UcError) as e:
        g.run(code + HLT, rbx=0x20000 if access.startswith("instr") else 0x20ABC)
    assert e.value.errno == unicorn.UC_ERR_EXCEPTION
    assert g.uc.reg_read(X.UC_X86_REG_RIP) == (0x20000 if access.startswith("instr") else CODE)
    r = g.hook.last_refusal()
    assert r is not None and g.hook.refused == 1
    assert (r.page, r.access, r.kind, r.error_code) == (0x20000, access, "page-fault", error)
    assert r.address == (0x20000 if access.startswith("instr") else 0x20ABC)  # CR2: exact
    assert (r.level, r.entry) == (3, g.pte(0x20000))
    assert not g.pte(0x20000) & A  # a refused walk writes nothing


@needs_jit
def test_a_refused_user_access_has_the_user_bit() -> None:
    g = Guest()
    g.map(0x20000, P | RW)  # supervisor only
    g.enter_user_mode()
    with pytest.raises(UcError):
        g.run(READ_RBX + HLT, rbx=0x20000)
    r = g.hook.last_refusal()
    assert r is not None and r.error_code == 0b101 and r.access == "read"


@needs_jit
def test_non_canonical_fill_is_a_gp() -> None:
    g = Guest()
    with pytest.raises(UcError):
        g.run(READ_RBX + HLT, rbx=0x0000_8000_0000_0000)
    r = g.hook.last_refusal()
    assert r is not None and (r.kind, r.page, r.entry) == ("non-canonical", 0x800000000000, 0)


@needs_jit
def test_a_page_beyond_ram_reaches_unicorns_unmapped_handling() -> None:
    g = Guest()
    g.map(0x20000, P | RW, phys=0x40000000)  # 1 GiB: no RAM there
    seen: list[int] = []

    def unmapped(uc, access, address, size, value, user_data) -> bool:
        seen.append(address)
        return False

    g.uc.hook_add(unicorn.UC_HOOK_MEM_READ_UNMAPPED, unmapped)
    with pytest.raises(UcError) as e:
        g.run(READ_RBX + HLT, rbx=0x20010)
    assert e.value.errno == unicorn.UC_ERR_READ_UNMAPPED
    assert seen == [0x40000010] and g.hook.refused == 0  # the physical address, not refused


@needs_jit
def test_paging_off_fills_are_identity() -> None:
    g = Guest(paging=False)
    g.ram[0x30000:0x30008] = np.frombuffer((0xABCD).to_bytes(8, "little"), np.uint8)
    g.run(READ_RBX + HLT, rbx=0x30000)
    assert g.uc.reg_read(X.UC_X86_REG_RAX) == 0xABCD
    assert g.hook.fills >= 2 and g.hook.refused == 0 and g.hook.last_refusal() is None


def test_diff_with_accessed_and_dirty_bits() -> None:
    """What the CPU did between two points of a run: A and D set count as a change when asked,
    and a piece cut out of an all-alike run keeps its A/D state."""

    def run(virt: int, size: int, accessed: bool, dirty: bool = False) -> Mapping:
        pages = size >> 12
        return Mapping(virt, virt, size, 0x1000, True, False, False, False,
                       pages if accessed else 0, pages if dirty else 0)  # fmt: skip

    before = [run(0x10000, 0x8000, False)]
    after = [run(0x10000, 0x2000, False), run(0x12000, 0x1000, True, True),
             run(0x13000, 0x1000, True), run(0x14000, 0x4000, False)]  # fmt: skip
    assert not diff_mappings(before, after)  # rights and frames alone: nothing changed
    d = diff_mappings(before, after, accessed_dirty=True)
    assert not d.added and not d.removed
    assert [(a.virt, a.size, a.accessed, b.accessed, b.dirty) for a, b in d.changed] == [
        (0x12000, 0x1000, False, True, True), (0x13000, 0x1000, False, True, False)]  # fmt: skip
    assert d.changed[0][0].accessed_pages == 0 and d.changed[0][1].dirty_pages == 1
    mixed = Mapping(0x10000, 0x10000, 0x4000, 0x1000, True, False, False, False, 2, 0)
    piece = diff_mappings([mixed], [run(0x10000, 0x1000, False)]).removed[0]
    assert piece.accessed_pages is None and piece.dirty_pages == 0
