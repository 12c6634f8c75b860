"""The physical memory map the firmware reports (the BIOS E820 map as GRUB passes it on).

Measured from GRUB 2.06 under QEMU with 128 MiB: available 0-0x9FC00, reserved 0x9FC00-0xA0000
(the EBDA), reserved 0xF0000-0x100000 (the BIOS ROM), available 0x100000 up to 128 KiB below
the top of RAM, reserved for the last 128 KiB (QEMU's ACPI tables), and reserved
0xFFFC0000-4 GiB (the flash the BIOS runs from). The same shape is used for any RAM size.
"""

from __future__ import annotations

from dataclasses import dataclass

AVAILABLE = 1
RESERVED = 2

TOP_RESERVED = 0x20000  # the last 128 KiB of RAM


@dataclass(frozen=True)
class MemoryRegion:
    base: int
    length: int
    type: int  # 1 available, 2 reserved (Multiboot numbering)

    @property
    def end(self) -> int:
        return self.base + self.length

    @property
    def type_name(self) -> str:
        return {AVAILABLE: "available", RESERVED: "reserved"}.get(self.type, str(self.type))


def memory_map(ram_size: int) -> list[MemoryRegion]:
    top = ram_size - TOP_RESERVED
    return [
        MemoryRegion(0x0, 0x9FC00, AVAILABLE),
        MemoryRegion(0x9FC00, 0x400, RESERVED),
        MemoryRegion(0xF0000, 0x10000, RESERVED),
        MemoryRegion(0x100000, top - 0x100000, AVAILABLE),
        MemoryRegion(top, TOP_RESERVED, RESERVED),
        MemoryRegion(0xFFFC0000, 0x40000, RESERVED),
    ]


def basic_meminfo(ram_size: int) -> tuple[int, int]:
    """(mem_lower, mem_upper) in KiB: conventional memory, and memory from 1 MiB to the first hole."""
    return 0x9FC00 >> 10, (ram_size - TOP_RESERVED - 0x100000) >> 10
