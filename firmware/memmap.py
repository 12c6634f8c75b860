"""The guest's physical memory as the firmware sees it: the memory map, and placement in RAM.

The map is the BIOS E820 map GRUB 2.06 passes on, measured under QEMU with 128 MiB:
available 0-0x9FC00, reserved 0x9FC00-0xA0000 (the EBDA), reserved 0xF0000-0x100000 (the BIOS
ROM), available from 1 MiB up to 128 KiB below the top of RAM, reserved for the last 128 KiB
(where QEMU keeps its ACPI tables), and reserved 0xFFFC0000-4 GiB (the flash the BIOS runs
from). The same shape is used for every RAM size. 0xA0000-0xF0000 (VGA memory and option ROMs)
is in no entry at all, as on a real PC.

``GuestMemory`` is how the loader writes into guest RAM: every range is checked against RAM, the
map, the firmware's own area and everything already loaded before a byte is written, and the
boot information, modules and ELF sections are placed the way GRUB's allocator places them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emu.errors import LoaderError

AVAILABLE = 1  # Multiboot memory map types
RESERVED = 2

MIB = 1 << 20
RAM_MIN = 2 * MIB
RAM_MAX = 3 << 30

EBDA_BASE = 0x9FC00  # conventional memory ends here: mem_lower = 639 KiB
BIOS_ROM_BASE = 0xF0000
HIGH_MEMORY = 0x100000
TOP_RESERVED = 0x20000  # the last 128 KiB of RAM (QEMU's ACPI tables)
BIOS_FLASH_BASE = 0xFFFC0000

# The firmware's own area: the stub at 0x1000 and GRUB's GDT at 0x10B0 (limit 0x20), and the
# page GRUB's stack (ESP = 0x7FF00) grows into. Nothing the kernel brings may land there.
STUB_ADDR = 0x1000
GDT_BASE = 0x10B0
GDT_LIMIT = 0x20
FIRMWARE_END = GDT_BASE + GDT_LIMIT  # 0x10D0
STACK_POINTER = 0x7FF00
STACK_PAGE = STACK_POINTER - 0x1000

PAGE = 0x1000


@dataclass(frozen=True)
class MemoryRegion:
    """One memory map entry (Multiboot numbering: 1 available, 2 reserved)."""

    base: int
    length: int
    type: int
    purpose: str = ""  # what lives there on a QEMU PC, for people reading the map

    @property
    def end(self) -> int:
        return self.base + self.length

    @property
    def type_name(self) -> str:
        return {AVAILABLE: "available", RESERVED: "reserved"}.get(self.type, str(self.type))


def check_ram_size(ram_size: int) -> None:
    """RAM is a whole number of MiB from 2 MiB to 3 GiB (below the PCI hole)."""
    if ram_size % MIB or not RAM_MIN <= ram_size <= RAM_MAX:
        raise ValueError(
            f"guest RAM must be a multiple of 1 MiB from 2 MiB to 3 GiB, not {ram_size} bytes"
        )


def memory_map(ram_size: int) -> list[MemoryRegion]:
    """The map the firmware reports for ``ram_size`` bytes of RAM, in address order."""
    check_ram_size(ram_size)
    top = ram_size - TOP_RESERVED
    return [
        MemoryRegion(0x0, EBDA_BASE, AVAILABLE, "conventional memory"),
        MemoryRegion(EBDA_BASE, 0xA0000 - EBDA_BASE, RESERVED, "EBDA"),
        MemoryRegion(BIOS_ROM_BASE, HIGH_MEMORY - BIOS_ROM_BASE, RESERVED, "BIOS ROM"),
        MemoryRegion(HIGH_MEMORY, top - HIGH_MEMORY, AVAILABLE, "extended memory"),
        MemoryRegion(top, TOP_RESERVED, RESERVED, "ACPI tables (QEMU)"),
        MemoryRegion(BIOS_FLASH_BASE, (1 << 32) - BIOS_FLASH_BASE, RESERVED, "BIOS flash"),
    ]


def basic_meminfo(ram_size: int) -> tuple[int, int]:
    """(mem_lower, mem_upper) in KiB: conventional memory, and memory from 1 MiB to the first
    hole above it."""
    check_ram_size(ram_size)
    return EBDA_BASE >> 10, (ram_size - TOP_RESERVED - HIGH_MEMORY) >> 10


def align_up(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def _hex_range(start: int, length: int) -> str:
    return f"0x{start:x}-0x{start + max(length, 1) - 1:x}"


@dataclass(frozen=True)
class _Claim:
    start: int
    end: int
    what: str


class GuestMemory:
    """Checked writes into guest RAM, and GRUB-like placement of what the loader adds.

    Every range is claimed before it is written: it must be RAM that the map calls available,
    clear of the firmware area and the boot stack, and clear of everything claimed before. The
    checks use only integers, so an absurd size from a file fails before anything is allocated.
    """

    FIRMWARE_CLAIMS = (
        _Claim(STUB_ADDR, FIRMWARE_END, "the boot firmware area (stub and GDT)"),
        _Claim(STACK_PAGE, STACK_POINTER, "the boot stack page below 0x7ff00"),
    )

    def __init__(self, ram: np.ndarray) -> None:
        if not isinstance(ram, np.ndarray) or ram.dtype != np.uint8 or ram.ndim != 1:
            raise ValueError("guest RAM must be a one-dimensional numpy uint8 array")
        check_ram_size(ram.size)
        self.ram = ram
        self.size = int(ram.size)
        self.regions = memory_map(self.size)
        self.available = [(r.base, r.end) for r in self.regions if r.type == AVAILABLE]
        self.claims: list[_Claim] = []

    # ----------------------------------------------------------------- checks
    def problem(self, start: int, length: int) -> str | None:
        """Why [start, start+length) cannot be loaded, or None if it can."""
        end = start + length
        if start < 0 or end > self.size:
            return f"is outside guest RAM (0x0-0x{self.size - 1:x}, {self.size // MIB} MiB)"
        for lo, hi in self.available:
            if lo <= start and end <= hi:
                break
        else:
            return f"is not in available memory ({self._hole_near(start, end)})"
        for claim in (*self.FIRMWARE_CLAIMS, *self.claims):
            if start < claim.end and claim.start < end:
                return (
                    f"overlaps {claim.what} at {_hex_range(claim.start, claim.end - claim.start)}"
                )
        return None

    def _hole_near(self, start: int, end: int) -> str:
        for r in self.regions:
            if r.type != AVAILABLE and start < r.end and r.base < end:
                return f"{r.type_name} {_hex_range(r.base, r.length)}, {r.purpose}"
        return "0xa0000-0xeffff is VGA memory and option ROMs, not RAM"

    def claim(self, start: int, length: int, what: str) -> None:
        """Reserve a range for ``what``, or raise a LoaderError naming the conflict."""
        if length <= 0:
            return
        why = self.problem(start, length)
        if why is not None:
            raise LoaderError(f"{what} at {_hex_range(start, length)} {why}")
        self.claims.append(_Claim(start, start + length, what))

    # ----------------------------------------------------------------- placement
    def find_free(self, length: int, align: int, *, low: int = HIGH_MEMORY,
                  high: int | None = None, highest: bool = False) -> int | None:  # fmt: skip
        """The lowest (or highest) ``align``-aligned free start for ``length`` bytes that end
        by ``high``, in available RAM at or above ``low``; None if there is none."""
        limit = self.size if high is None else min(high, self.size)
        length = max(length, 1)
        busy = sorted((*self.FIRMWARE_CLAIMS, *self.claims), key=lambda c: c.start)
        regions = reversed(self.available) if highest else self.available
        for lo, hi in regions:
            lo, hi = max(lo, low), min(hi, limit)
            if hi - lo < length:
                continue
            if highest:
                candidate = (hi - length) // align * align
                for c in reversed(busy):
                    if c.end <= candidate:
                        break  # fits above this claim (claims are sorted)
                    if c.start < candidate + length:
                        candidate = (c.start - length) // align * align
            else:
                candidate = align_up(lo, align)
                for c in busy:
                    if candidate + length <= c.start:
                        break  # fits below this claim
                    if c.end > candidate:
                        candidate = align_up(c.end, align)
            if lo <= candidate and candidate + length <= hi:
                return candidate
        return None

    def allocate(self, length: int, align: int, what: str, *, low: int = HIGH_MEMORY,
                 high: int | None = None) -> int:  # fmt: skip
        """Claim the lowest ``align``-aligned free range of ``length`` bytes in [low, high).

        GRUB 2.06's relocator, measured under QEMU, puts ELF sections, modules and the
        Multiboot2 information at the lowest free addresses from 1 MiB up (below the kernel if
        it is linked higher), and the Multiboot (1) information from 0x10000 up.
        """
        start = self.find_free(length, align, low=low, high=high)
        if start is None:
            limit = self.size if high is None else min(high, self.size)
            raise LoaderError(
                f"no room for {what} ({length} bytes) in free guest RAM at "
                f"0x{low:x}-0x{limit - 1:x} ({self.size // MIB} MiB of RAM)"
            )
        self.claims.append(_Claim(start, start + max(length, 1), what))
        return start

    # ----------------------------------------------------------------- writes
    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        self.ram[addr : addr + len(data)] = np.frombuffer(data, np.uint8)

    def zero(self, addr: int, length: int) -> None:
        self.ram[addr : addr + length] = 0
