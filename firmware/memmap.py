"""The guest's physical memory as the firmware sees it: the memory map, and writes into RAM.

The map is the BIOS E820 map GRUB 2.06 passes on, measured under QEMU 7.2 at 32 MiB, 128 MiB,
1 GiB, 2 GiB and 3 GiB: the same shape at every size. Available 0-0x9FC00, reserved
0x9FC00-0xA0000 (the EBDA), reserved 0xF0000-0x100000 (the BIOS ROM), available from 1 MiB up to
128 KiB below the top of RAM, reserved for the last 128 KiB (where QEMU keeps its ACPI tables),
reserved 0xFFFC0000-4 GiB (the flash the BIOS runs from), and reserved 0xFD00000000-0x10000000000
(12 GiB above 1012 GiB: the HyperTransport range QEMU reserves for an AMD CPU, as its qemu64 CPU
is). 0xA0000-0xF0000 (VGA memory and option ROMs) is in no entry at all, as on a real PC.

``GuestMemory`` is how the loader writes into guest RAM: only where a write reaches RAM under
QEMU (the VGA window but its text pages, the ROMs and anything past the end of RAM drop it).
Where things go is GRUB's relocator's business (``firmware/relocator.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

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
HT_HOLE_BASE = 0xFD00000000  # reserved by QEMU for AMD CPUs: 0xFD00000000-0xFFFFFFFFFF
HT_HOLE_SIZE = 0x300000000
VGA_TEXT_BASE, VGA_TEXT_END = 0xB8000, 0xC0000  # the part of the VGA window text mode maps

# Where GRUB's trampoline (our stub) and its GDT go when nothing else is there: the stub at
# 0x1000, the GDT at 0x10B0 (limit 0x20). A kernel loaded over them moves them up, as GRUB's
# relocator moves its trampoline. ESP is 0x7FF00 whatever is there (GRUB does not reserve it).
STUB_ADDR = 0x1000
GDT_BASE = 0x10B0
GDT_LIMIT = 0x20
STACK_POINTER = 0x7FF00

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
        MemoryRegion(HT_HOLE_BASE, HT_HOLE_SIZE, RESERVED, "HyperTransport (AMD CPU)"),
    ]


def basic_meminfo(ram_size: int) -> tuple[int, int]:
    """(mem_lower, mem_upper) in KiB: conventional memory, and memory from 1 MiB to the first
    hole above it."""
    check_ram_size(ram_size)
    return EBDA_BASE >> 10, (ram_size - TOP_RESERVED - HIGH_MEMORY) >> 10


def align_up(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def ram_windows(ram_size: int) -> list[tuple[int, int]]:
    """The ranges below ``ram_size`` where a write reaches RAM under QEMU: conventional memory,
    the VGA text pages, and everything from 1 MiB up."""
    return [(0, 0xA0000), (VGA_TEXT_BASE, VGA_TEXT_END), (HIGH_MEMORY, ram_size)]


class GuestMemory:
    """Writes into guest RAM, dropped (and counted) where QEMU has no RAM."""

    def __init__(
        self, ram: np.ndarray, before_write: Callable[[int, int], None] | None = None
    ) -> None:
        if not isinstance(ram, np.ndarray) or ram.dtype != np.uint8 or ram.ndim != 1:
            raise ValueError("guest RAM must be a one-dimensional numpy uint8 array")
        check_ram_size(ram.size)
        self.ram = ram
        self.size = int(ram.size)
        self.regions = memory_map(self.size)
        self.available = [(r.base, r.end) for r in self.regions if r.type == AVAILABLE]
        self.windows = ram_windows(self.size)
        self.dropped: list[tuple[int, int]] = []  # (start, end) of bytes that reached no RAM
        self.before_write = before_write  # (address, length), before each write into RAM

    def _pieces(self, addr: int, length: int) -> list[tuple[int, int]]:
        end = addr + length
        pieces = []
        for lo, hi in self.windows:
            a, b = max(lo, addr), min(hi, end)
            if a < b:
                pieces.append((a, b))
        covered = sum(b - a for a, b in pieces)
        if covered < length:
            self.dropped.append((addr, end))
        return pieces

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        view = np.frombuffer(data, np.uint8)
        for a, b in self._pieces(addr, len(view)):
            if self.before_write is not None:
                self.before_write(a, b - a)
            self.ram[a:b] = view[a - addr : b - addr]

    def zero(self, addr: int, length: int) -> None:
        for a, b in self._pieces(addr, length):
            if self.before_write is not None:
                self.before_write(a, b - a)
            self.ram[a:b] = 0
