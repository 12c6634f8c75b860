"""A slow, obviously-written page walker: the oracle for emu/mmu_kernels.py.

Written from the Intel SDM (Vol. 3, sections 4.3-4.7) independently of the kernels, with
readability first: one function per paging mode, entries read byte by byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAXPHY = 40


@dataclass
class Result:
    ok: bool
    paddr: int = 0
    error_code: int = 0
    kind: str = ""  # "", "not-present", "protection", "reserved", "non-canonical", "outside-ram"
    page_size: int = 0
    writes: list[tuple[int, int]] = field(default_factory=list)  # (entry phys, new low dword)


def bit(v: int, n: int) -> int:
    return (v >> n) & 1


class NaiveMmu:
    def __init__(self, ram: bytearray) -> None:
        self.ram = ram

    def read(self, phys: int, size: int) -> int | None:
        if phys + size > len(self.ram):
            return None
        return int.from_bytes(self.ram[phys : phys + size], "little")

    def translate(
        self, *, cr0, cr3, cr4, efer, vaddr, access, cpl, ac=False, set_ad=True
    ) -> Result:
        """access: 'r', 'w' or 'x'. cpl 3 means a user access."""
        if not bit(cr0, 31):
            pa = vaddr & 0xFFFFFFFF
            return Result(
                pa < len(self.ram), pa, 0, "" if pa < len(self.ram) else "outside-ram", 4096
            )
        user = cpl == 3
        nxe = bit(efer, 11)
        pae = bit(cr4, 5)
        lma = bit(efer, 10)
        code = (2 if access == "w" else 0) | (4 if user else 0)
        if access == "x" and (bit(cr4, 20) or (pae and nxe)):
            code |= 16
        if lma:
            sign = vaddr >> 47
            if sign not in (0, 0x1FFFF):
                return Result(False, kind="non-canonical")
            shifts = [39, 30, 21, 12]
            table = cr3 & ((1 << MAXPHY) - 1) & ~0xFFF
            width = 8
        elif pae:
            vaddr &= 0xFFFFFFFF
            shifts = [30, 21, 12]
            table = cr3 & 0xFFFFFFE0
            width = 8
        else:
            vaddr &= 0xFFFFFFFF
            shifts = [22, 12]
            table = cr3 & 0xFFFFF000
            width = 4
        used: list[tuple[int, int]] = []  # (phys, entry)
        writable = usable_by_user = True
        no_exec = False
        page_size = 4096
        base = 0
        for depth, shift in enumerate(shifts):
            if width == 4:
                index = (vaddr >> shift) & 0x3FF
            elif not lma and depth == 0:
                index = (vaddr >> 30) & 3
            else:
                index = (vaddr >> shift) & 0x1FF
            phys = table + index * width
            entry = self.read(phys, width)
            if entry is None:
                return Result(False, kind="outside-ram")
            if not bit(entry, 0):
                return Result(False, error_code=code, kind="not-present")
            is_pdpte_pae = not lma and width == 8 and depth == 0
            is_leaf_level = depth == len(shifts) - 1
            big = False
            reserved = False
            if width == 8:
                if entry >> MAXPHY & ((1 << (52 - MAXPHY)) - 1):
                    reserved = True
                if bit(entry, 63) and (not nxe or is_pdpte_pae):
                    reserved = True
                if is_pdpte_pae and entry & 0x1E6:
                    reserved = True
                if not is_pdpte_pae and not is_leaf_level and bit(entry, 7):
                    if lma and depth == 0:
                        reserved = True
                    else:
                        big = True
                        low_reserved = (
                            ((1 << 30) - 1) & ~0x1FFF if shift == 30 else ((1 << 21) - 1) & ~0x1FFF
                        )
                        if entry & low_reserved:
                            reserved = True
            else:
                if depth == 0 and bit(entry, 7) and bit(cr4, 4):
                    big = True
                    if bit(entry, 21):
                        reserved = True
            if reserved:
                return Result(False, error_code=code | 1 | 8, kind="reserved")
            if not is_pdpte_pae:
                writable = writable and bool(bit(entry, 1))
                usable_by_user = usable_by_user and bool(bit(entry, 2))
            if width == 8 and nxe and bit(entry, 63):
                no_exec = True
            used.append((phys, entry))
            if not (big or is_leaf_level) and set_ad and not is_pdpte_pae and not bit(entry, 5):
                # the walker marks each non-leaf entry accessed as it passes through it
                self.ram[phys : phys + 4] = ((entry | 0x20) & 0xFFFFFFFF).to_bytes(4, "little")
            if big or is_leaf_level:
                if big:
                    page_size = 1 << shift
                    if width == 8:
                        base = entry & ((1 << MAXPHY) - 1) & ~(page_size - 1)
                    else:
                        base = (entry & 0xFFC00000) | (((entry >> 13) & 0xFF) << 32)
                else:
                    base = entry & (((1 << MAXPHY) - 1) if width == 8 else 0xFFFFFFFF) & ~0xFFF
                break
            table = entry & (((1 << MAXPHY) - 1) if width == 8 else 0xFFFFFFFF) & ~0xFFF
        # permission checks (SDM 4.6)
        allowed = True
        if user:
            if not usable_by_user or access == "w" and not writable or access == "x" and no_exec:
                allowed = False
        else:
            if access == "x":
                if no_exec or (usable_by_user and bit(cr4, 20)):
                    allowed = False
            else:
                if usable_by_user and bit(cr4, 21) and not ac:
                    allowed = False
                if access == "w" and not writable and bit(cr0, 16):
                    allowed = False
        writes: list[tuple[int, int]] = []
        if not allowed:
            return Result(False, error_code=code | 1, kind="protection", writes=writes)
        paddr = base + (vaddr & (page_size - 1))
        if set_ad:
            phys, entry = used[-1]
            want = 0x20 | (0x40 if access == "w" else 0)
            if entry & want != want:
                low = (entry | want) & 0xFFFFFFFF
                self.ram[phys : phys + 4] = low.to_bytes(4, "little")
                writes.append((phys, low))
        if paddr >= len(self.ram):
            return Result(False, paddr, kind="outside-ram", page_size=page_size, writes=writes)
        return Result(True, paddr, 0, "", page_size, writes)


def naive_mappings(ram: bytearray, cr3: int) -> list[tuple[int, int, int]]:
    """Every present 4-level leaf as (virtual, physical, size), merged when contiguous with equal
    rights: the twin of enumerate_tree for 4-level paging (used by bench/mmu.py)."""

    def q(addr: int) -> int:
        return int.from_bytes(ram[addr : addr + 8], "little")

    rows: list[list[int]] = []
    mask = ((1 << 40) - 1) & ~0xFFF

    def emit(va: int, pa: int, size: int, rights: int) -> None:
        if (
            rows
            and rows[-1][0] + rows[-1][2] == va
            and rows[-1][1] + rows[-1][2] == pa
            and rows[-1][3] == rights
        ):
            rows[-1][2] += size
        else:
            rows.append([va, pa, size, rights])

    for i4 in range(512):
        e4 = q((cr3 & mask) + 8 * i4)
        if not e4 & 1:
            continue
        for i3 in range(512):
            e3 = q((e4 & mask) + 8 * i3)
            if not e3 & 1:
                continue
            va3 = (i4 << 39) | (i3 << 30)
            if e3 & 0x80:
                emit(va3, e3 & mask & ~((1 << 30) - 1), 1 << 30, e4 & e3 & 6)
                continue
            for i2 in range(512):
                e2 = q((e3 & mask) + 8 * i2)
                if not e2 & 1:
                    continue
                va2 = va3 | (i2 << 21)
                if e2 & 0x80:
                    emit(va2, e2 & mask & ~((1 << 21) - 1), 1 << 21, e4 & e3 & e2 & 6)
                    continue
                for i1 in range(512):
                    e1 = q((e2 & mask) + 8 * i1)
                    if e1 & 1:
                        emit(va2 | (i1 << 12), e1 & mask, 4096, e4 & e3 & e2 & e1 & 6)
    return [(va, pa, size) for va, pa, size, _ in rows]
