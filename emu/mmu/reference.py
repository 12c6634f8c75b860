"""A slow, obviously-written page walker: the oracle for emu/mmu/kernels.py.

Written from the Intel SDM (Vol. 3, sections 4.1-4.8) without looking at the kernels, for
readability first: the paging modes are tables of levels, the reserved bits are sets of bit
numbers copied from the SDM's entry-format tables, and the access rights are the prose rules of
SDM 4.6.1, one ``if`` per sentence. Entries are read byte by byte from a ``bytearray``;
physical memory beyond it reads as zero (QEMU's unassigned memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAXPHYADDR = 40


def bit(value: int, n: int) -> int:
    return (value >> n) & 1


def bit_range(hi: int, lo: int) -> set[int]:
    """The bit numbers hi:lo, as the SDM writes ranges."""
    return set(range(lo, hi + 1))


def mask_of(bits: set[int]) -> int:
    return sum(1 << b for b in bits)


@dataclass(frozen=True)
class Level:
    name: str
    shift: int  # lowest linear-address bit of this level's index
    index_bits: int
    entry_bytes: int


MODES = {
    "32bit": [Level("PDE", 22, 10, 4), Level("PTE", 12, 10, 4)],
    "pae": [Level("PDPTE", 30, 2, 8), Level("PDE", 21, 9, 8), Level("PTE", 12, 9, 8)],
    "4level": [
        Level("PML4E", 39, 9, 8),
        Level("PDPTE", 30, 9, 8),
        Level("PDE", 21, 9, 8),
        Level("PTE", 12, 9, 8),
    ],
    "5level": [
        Level("PML5E", 48, 9, 8),
        Level("PML4E", 39, 9, 8),
        Level("PDPTE", 30, 9, 8),
        Level("PDE", 21, 9, 8),
        Level("PTE", 12, 9, 8),
    ],
}


def mode_of(cr0: int, cr4: int, efer: int) -> str:
    """SDM 4.1.1, Table 4-1."""
    if not bit(cr0, 31):
        return "off"
    if bit(efer, 10):  # IA32_EFER.LMA
        return "5level" if bit(cr4, 12) else "4level"
    return "pae" if bit(cr4, 5) else "32bit"


def maps_a_page(mode: str, level: Level, entry: int, cr4: int) -> bool:
    """Does this (present) entry map a page rather than reference a table?"""
    if level.name == "PTE":
        return True
    if mode == "32bit":
        return level.name == "PDE" and bit(entry, 7) == 1 and bit(cr4, 4) == 1  # PS, CR4.PSE
    return (
        level.name in ("PDPTE", "PDE")
        and bit(entry, 7) == 1
        and not (mode == "pae" and level.name == "PDPTE")
    )


def reserved_bits(mode: str, level: Level, entry: int, cr4: int, nxe: bool) -> set[int]:
    """Reserved bits of this entry's format (SDM Tables 4-4 to 4-20, MAXPHYADDR = 40)."""
    m = MAXPHYADDR
    if mode == "32bit":
        if level.name == "PDE" and maps_a_page(mode, level, entry, cr4):
            return bit_range(21, m - 19)  # Table 4-4: bits 21:(M-19) of a 4M PDE
        return set()
    if mode == "pae" and level.name == "PDPTE":
        return bit_range(2, 1) | bit_range(8, 5) | bit_range(63, m)  # Table 4-8
    reserved = bit_range(62, m) if mode == "pae" else bit_range(51, m)
    if not nxe:
        reserved.add(63)  # XD is reserved when IA32_EFER.NXE = 0
    if level.name in ("PML5E", "PML4E"):
        reserved.add(7)  # PS must be 0
    if level.name == "PDPTE" and maps_a_page(mode, level, entry, cr4):
        reserved |= bit_range(29, 13)  # Table 4-16: a 1G page's base is 1G-aligned
    if level.name == "PDE" and maps_a_page(mode, level, entry, cr4):
        reserved |= bit_range(20, 13)  # Tables 4-9, 4-18: 2M-aligned
    return reserved


def page_base(mode: str, level: Level, entry: int) -> int:
    size = 1 << level.shift
    if mode == "32bit" and level.name == "PDE":
        # 4M page: bits 31:22 give address bits 31:22, bits 20:13 give bits 39:32 (PSE-36)
        return (entry & 0xFFC00000) | (((entry >> 13) & 0xFF) << 32)
    if mode == "32bit":
        return entry & 0xFFFFF000
    return entry & ((1 << MAXPHYADDR) - 1) & ~(size - 1)


def access_allowed(
    access: str,
    user_mode: bool,
    implicit: bool,
    page_user: bool,
    page_writable: bool,
    page_no_exec: bool,
    cr0: int,
    cr4: int,
    ac: bool,
) -> bool:
    """SDM 4.6.1, sentence by sentence."""
    smep, smap, wp = bit(cr4, 20), bit(cr4, 21), bit(cr0, 16)
    if user_mode:
        if not page_user:
            return False  # user-mode accesses may not touch supervisor-mode addresses
        if access == "w":
            return page_writable  # R/W=1 needed in every entry
        if access == "x":
            return not page_no_exec
        return True
    # supervisor-mode access (CPL < 3, or implicit)
    if access == "x":
        # XD forbids any fetch; SMEP forbids supervisor fetches from user-mode addresses
        return not page_no_exec and not (page_user and smep)
    if page_user and smap and (implicit or not ac):
        return False  # SMAP: data access to a user page needs an explicit access with AC=1
    # CR0.WP=1: supervisor writes honour R/W (with WP=0 they ignore it)
    return not (access == "w" and not page_writable and wp)


@dataclass
class Outcome:
    kind: str  # "ok", "outside-ram", "not-present", "protection", "reserved", "non-canonical"
    paddr: int | None = None
    error_code: int = 0
    level: int = 0  # the entry that decided (0 = top)
    page_size: int = 0
    rights: frozenset[str] = frozenset()  # of {"r", "w", "x"} in this context, plus "u"
    reserved: frozenset[int] = frozenset()
    entries: list[tuple[int, int, int]] = field(default_factory=list)  # (address, bytes, value)
    writes: list[tuple[int, int]] = field(default_factory=list)  # (entry address, new value)

    @property
    def translated(self) -> bool:
        return self.kind in ("ok", "outside-ram")


class NaiveMmu:
    def __init__(self, ram: bytearray) -> None:
        self.ram = ram

    def read(self, phys: int, size: int) -> int:
        if phys + size > len(self.ram):
            return 0  # nothing there: reads as zero
        return int.from_bytes(self.ram[phys : phys + size], "little")

    def write(self, phys: int, size: int, value: int) -> None:
        self.ram[phys : phys + size] = value.to_bytes(size, "little")

    def translate(
        self,
        *,
        cr0: int,
        cr3: int,
        cr4: int,
        efer: int,
        vaddr: int,
        access: str,
        cpl: int,
        ac: bool = False,
        implicit: bool = False,
        set_ad: bool = True,
    ) -> Outcome:
        """access: 'r', 'w' or 'x'. ``implicit``: an implicit supervisor access."""
        mode = mode_of(cr0, cr4, efer)
        if mode == "off":
            pa = vaddr if bit(efer, 10) else vaddr & 0xFFFFFFFF
            kind = "ok" if pa < len(self.ram) else "outside-ram"
            return Outcome(kind, pa, 0, 0, 4096, frozenset("rwxu"))
        user_mode = cpl == 3 and not implicit
        nxe = bool(bit(efer, 11))
        error = (2 if access == "w" else 0) | (4 if user_mode else 0)
        if access == "x" and (bit(cr4, 20) or (bit(cr4, 5) and nxe)):
            error |= 16
        levels = MODES[mode]
        if mode in ("4level", "5level"):
            width = 57 if mode == "5level" else 48
            top = vaddr >> (width - 1)
            if top not in (0, (1 << (65 - width)) - 1):
                return Outcome("non-canonical")
            table = cr3 & ((1 << MAXPHYADDR) - 1) & ~0xFFF
        else:
            vaddr &= 0xFFFFFFFF
            table = cr3 & (0xFFFFFFE0 if mode == "pae" else 0xFFFFF000)

        page_user = page_writable = True
        page_no_exec = False
        entries: list[tuple[int, int, int]] = []
        for depth, level in enumerate(levels):
            index = (vaddr >> level.shift) & ((1 << level.index_bits) - 1)
            address = table + index * level.entry_bytes
            entry = self.read(address, level.entry_bytes)
            entries.append((address, level.entry_bytes, entry))
            if not bit(entry, 0):
                return Outcome("not-present", None, error, depth, entries=entries)
            found = {b for b in reserved_bits(mode, level, entry, cr4, nxe) if bit(entry, b)}
            if found:
                return Outcome(
                    "reserved",
                    None,
                    error | 1 | 8,
                    depth,
                    reserved=frozenset(found),
                    entries=entries,
                )
            if not (mode == "pae" and level.name == "PDPTE"):
                page_writable = page_writable and bool(bit(entry, 1))
                page_user = page_user and bool(bit(entry, 2))
                if nxe and level.entry_bytes == 8 and bit(entry, 63):
                    page_no_exec = True
            if maps_a_page(mode, level, entry, cr4):
                size = 1 << level.shift
                paddr = page_base(mode, level, entry) + (vaddr & (size - 1))
                break
            table = entry & (
                ((1 << MAXPHYADDR) - 1) & ~0xFFF if level.entry_bytes == 8 else 0xFFFFF000
            )
        rights = {
            a
            for a in "rwx"
            if access_allowed(
                a, user_mode, implicit, page_user, page_writable, page_no_exec, cr0, cr4, ac
            )
        }
        if page_user:
            rights.add("u")
        if access not in rights:
            return Outcome(
                "protection", paddr, error | 1, depth, size, frozenset(rights), entries=entries
            )
        writes = []
        if set_ad:
            for n, (address, width, entry) in enumerate(entries):
                if mode == "pae" and n == 0:
                    continue  # PAE PDPTEs have no accessed flag
                new = entry | 0x20
                if n == len(entries) - 1 and access == "w":
                    new |= 0x40
                if new != entry:
                    self.write(address, width, new)
                    writes.append((address, new))
        kind = "ok" if paddr < len(self.ram) else "outside-ram"
        return Outcome(
            kind, paddr, 0, depth, size, frozenset(rights), entries=entries, writes=writes
        )

    def fill(
        self,
        *,
        cr0: int,
        cr3: int,
        cr4: int,
        efer: int,
        page: int,
        mem_type: int,
        cpl: int,
        ac: bool,
    ) -> tuple[bool, int, int]:
        """What the TLB-fill walk must answer: (granted, physical page, uc_prot bits, with
        EXEC_OK where an instruction fetch would pass).

        The rules of architecture.md decision 3: read with any fill; write only for a write
        or an already dirty page; execute only for a fetch (the hook itself adds it to a
        write entry of a page code was fetched from, where EXEC_OK says it may)."""
        access = {16: "r", 17: "w", 18: "x"}[mem_type]
        if mode_of(cr0, cr4, efer) == "off":
            pa = page if bit(efer, 10) else page & 0xFFFFFFFF
            return True, pa & ~0xFFF, 1 | 2 | EXEC_OK | (4 if access == "x" else 0)
        result = self.translate(
            cr0=cr0, cr3=cr3, cr4=cr4, efer=efer, vaddr=page, access=access, cpl=cpl, ac=ac
        )
        if not result.translated:
            return False, 0, 0
        leaf_was_dirty = bit(result.entries[-1][2], 6)
        prot = 1 if "r" in result.rights else 0
        if "w" in result.rights and (access == "w" or leaf_was_dirty):
            prot |= 2
        if "x" in result.rights:
            prot |= EXEC_OK
            if access == "x":
                prot |= 4
        return True, result.paddr & ~0xFFF, prot


# the walk's own bit beside the uc_prot bits: an instruction fetch through the entry would pass
EXEC_OK = 1 << 8


@dataclass(frozen=True)
class Leaf:
    virt: int
    phys: int
    size: int
    writable: bool
    user: bool
    executable: bool
    global_: bool
    accessed: bool
    dirty: bool


def naive_leaves(ram: bytearray, cr0: int, cr3: int, cr4: int, efer: int) -> list[Leaf]:
    """Every page a walk would accept, by descending the tree (no merging)."""
    mode = mode_of(cr0, cr4, efer)
    if mode == "off":
        return []
    mmu = NaiveMmu(ram)
    levels = MODES[mode]
    nxe = bool(bit(efer, 11))
    leaves: list[Leaf] = []
    reserved_masks: dict[tuple[int, bool], int] = {}  # the format depends on PS alone

    def reserved_mask(depth: int, entry: int) -> int:
        key = (depth, maps_a_page(mode, levels[depth], entry, cr4))
        if key not in reserved_masks:
            reserved_masks[key] = mask_of(reserved_bits(mode, levels[depth], entry, cr4, nxe))
        return reserved_masks[key]

    def descend(table: int, depth: int, virt: int, w: bool, u: bool, x: bool) -> None:
        level = levels[depth]
        for index in range(1 << level.index_bits):
            entry = mmu.read(table + index * level.entry_bytes, level.entry_bytes)
            if not bit(entry, 0):
                continue
            if entry & reserved_mask(depth, entry):
                continue
            va = virt | (index << level.shift)
            if depth == 0 and mode in ("4level", "5level"):
                width = 57 if mode == "5level" else 48
                if bit(va, width - 1):
                    va |= ((1 << 64) - 1) & ~((1 << width) - 1)  # sign-extend
            w2, u2, x2 = w, u, x
            if not (mode == "pae" and level.name == "PDPTE"):
                w2 = w and bool(bit(entry, 1))
                u2 = u and bool(bit(entry, 2))
                x2 = x and not (nxe and level.entry_bytes == 8 and bit(entry, 63))
            if maps_a_page(mode, level, entry, cr4):
                leaves.append(
                    Leaf(
                        va,
                        page_base(mode, level, entry),
                        1 << level.shift,
                        w2,
                        u2,
                        x2,
                        bool(bit(entry, 8)),
                        bool(bit(entry, 5)),
                        bool(bit(entry, 6)),
                    )
                )
            else:
                mask = ((1 << MAXPHYADDR) - 1) & ~0xFFF if level.entry_bytes == 8 else 0xFFFFF000
                descend(entry & mask, depth + 1, va, w2, u2, x2)

    if mode in ("4level", "5level"):
        top = cr3 & ((1 << MAXPHYADDR) - 1) & ~0xFFF
    else:
        top = cr3 & (0xFFFFFFE0 if mode == "pae" else 0xFFFFF000)
    descend(top, 0, 0, True, True, True)
    return sorted(leaves, key=lambda leaf: leaf.virt)


@dataclass
class Run:
    virt: int
    phys: int
    size: int
    page_size: int
    writable: bool
    user: bool
    executable: bool
    global_: bool
    accessed_pages: int
    dirty_pages: int


def naive_mappings(
    ram: bytearray, cr0: int, cr3: int, cr4: int, efer: int, split_ad: bool = False
) -> list[Run]:
    """The leaves merged into runs: contiguous in both address spaces, same page size, rights
    and global bit (and with ``split_ad``, same A and D); A/D counted per page."""
    runs: list[Run] = []
    for leaf in naive_leaves(ram, cr0, cr3, cr4, efer):
        same = (leaf.size, leaf.writable, leaf.user, leaf.executable, leaf.global_)
        last = runs[-1] if runs else None
        if (
            last is not None
            and last.virt + last.size == leaf.virt
            and last.phys + last.size == leaf.phys
            and (last.page_size, last.writable, last.user, last.executable, last.global_) == same
            and not (
                split_ad
                and (bool(last.accessed_pages), bool(last.dirty_pages))
                != (leaf.accessed, leaf.dirty)
            )
        ):
            last.size += leaf.size
            last.accessed_pages += leaf.accessed
            last.dirty_pages += leaf.dirty
        else:
            runs.append(
                Run(leaf.virt, leaf.phys, leaf.size, *same, int(leaf.accessed), int(leaf.dirty))
            )
    return runs
