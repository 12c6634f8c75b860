"""The Intel MultiProcessor Specification 1.4 tables of QEMU's pc machine: our own bytes.

SeaBIOS 1.16 on QEMU 7.2 leaves an MP floating pointer at 0xF5BA0 in the F-segment and the MP
configuration table right after it, at 0xF5BB0 (the same addresses at every RAM size). Measured
with images/probe-tables (tests/golden/qemu/probe-tables*.serial), the table of a one-CPU
machine holds 18 entries:

- one processor: local APIC ID 0, version 0x14, enabled and the bootstrap processor, with the
  CPU signature and feature flags of CPUID leaf 1 (qemu64: 0x00060FB1, EDX 0x078BFBFD);
- two buses: 0 "PCI", 1 "ISA";
- one I/O APIC: ID 0, version 0x11, enabled, at 0xFEC00000;
- I/O interrupt entries: the PCI interrupt of the PIIX4 power-management function (bus 0,
  device 1 INTA#, active high, to INTIN 9: the ACPI SCI), then the ISA IRQs 0, 1, 3, 4, 6, 7, 8,
  12, 13, 14 and 15, conforming polarity and trigger, IRQ 0 to INTIN 2 and the others to the
  INTIN of their own number (IRQ 2 is the 8259 cascade; 5, 9, 10 and 11 are the PCI link
  interrupts and are left out);
- local interrupt entries: ExtINT to LINT0 of APIC 0, NMI to LINT1 of every APIC (0xFF).

The floating pointer's feature bytes are all zero: the configuration table is present, and IMCR
is absent (virtual-wire mode). No extended entries. ``build_mp_tables`` builds all of it and
returns it as (address, bytes) pieces for the machine to write into the F-segment.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MP_FLOATING_POINTER = 0xF5BA0
MP_CONFIG_TABLE = 0xF5BB0

LOCAL_APIC_BASE = 0xFEE00000
IO_APIC_BASE = 0xFEC00000
IO_APIC_ID = 0
IO_APIC_VERSION = 0x11
LOCAL_APIC_VERSION = 0x14

# CPUID leaf 1 of QEMU 7.2's qemu64: the processor entry's signature and feature flags
QEMU64_SIGNATURE = 0x00060FB1
QEMU64_FEATURES = 0x078BFBFD

OEM_ID = b"BOCHSCPU"
PRODUCT_ID = b"0.1         "
SPEC_REVISION = 4  # MP spec 1.4

# entry types
PROCESSOR, BUS, IO_APIC, IO_INTERRUPT, LOCAL_INTERRUPT = range(5)
# interrupt types
INT, NMI, SMI, EXTINT = range(4)

PCI_BUS = 0
ISA_BUS = 1

# the ISA IRQs SeaBIOS lists, in its order; IRQ 0 goes to INTIN 2
ISA_IRQS: tuple[int, ...] = (0, 1, 3, 4, 6, 7, 8, 12, 13, 14, 15)
# the PCI interrupt of the ACPI function 00:01.3 (device 1, INTA#) at INTIN 9, active high
SCI_PCI_SOURCE = (1 << 2) | 0
SCI_INTIN = 9


def _checksum(data: bytes | bytearray) -> int:
    return -sum(data) & 0xFF


@dataclass(frozen=True)
class InterruptEntry:
    """An I/O (type 3) or local (type 4) interrupt assignment entry."""

    entry_type: int
    interrupt_type: int
    flags: int  # bits 0-1 polarity, bits 2-3 trigger mode (0: conforms to the bus)
    source_bus: int
    source_irq: int
    destination_apic: int
    destination_pin: int  # INTIN# of the I/O APIC, or LINTIN# of a local APIC

    def to_bytes(self) -> bytes:
        return struct.pack(
            "<BBHBBBB",
            self.entry_type,
            self.interrupt_type,
            self.flags,
            self.source_bus,
            self.source_irq,
            self.destination_apic,
            self.destination_pin,
        )


def interrupt_entries() -> tuple[InterruptEntry, ...]:
    """The I/O and local interrupt entries as SeaBIOS lists them on QEMU's pc machine."""
    entries = [InterruptEntry(IO_INTERRUPT, INT, 1, PCI_BUS, SCI_PCI_SOURCE, IO_APIC_ID, SCI_INTIN)]
    for irq in ISA_IRQS:
        entries.append(
            InterruptEntry(IO_INTERRUPT, INT, 0, ISA_BUS, irq, IO_APIC_ID, 2 if irq == 0 else irq)
        )
    entries.append(InterruptEntry(LOCAL_INTERRUPT, EXTINT, 0, ISA_BUS, 0, 0, 0))
    entries.append(InterruptEntry(LOCAL_INTERRUPT, NMI, 0, ISA_BUS, 0, 0xFF, 1))
    return tuple(entries)


def _processor_entry(apic_id: int, signature: int, features: int) -> bytes:
    flags = 0x03  # enabled, bootstrap processor
    return struct.pack(
        "<BBBBII8x", PROCESSOR, apic_id, LOCAL_APIC_VERSION, flags, signature, features
    )


def _bus_entry(bus_id: int, name: bytes) -> bytes:
    return struct.pack("<BB6s", BUS, bus_id, name.ljust(6))


def _io_apic_entry() -> bytes:
    return struct.pack("<BBBBI", IO_APIC, IO_APIC_ID, IO_APIC_VERSION, 0x01, IO_APIC_BASE)


def build_mp_config_table(
    signature: int = QEMU64_SIGNATURE, features: int = QEMU64_FEATURES
) -> bytes:
    """The MP configuration table ("PCMP"), with its checksum."""
    entries = [
        _processor_entry(0, signature, features),
        _bus_entry(PCI_BUS, b"PCI"),
        _bus_entry(ISA_BUS, b"ISA"),
        _io_apic_entry(),
        *(e.to_bytes() for e in interrupt_entries()),
    ]
    body = b"".join(entries)
    length = 44 + len(body)
    header = bytearray(
        struct.pack(
            "<4sHBB8s12sIHHIHBB",
            b"PCMP",
            length,
            SPEC_REVISION,
            0,
            OEM_ID,
            PRODUCT_ID,
            0,  # no OEM table
            0,
            len(entries),
            LOCAL_APIC_BASE,
            0,  # no extended entries
            0,
            0,
        )
    )
    table = header + body
    table[7] = _checksum(table)
    return bytes(table)


def build_mp_floating_pointer(config_table: int = MP_CONFIG_TABLE) -> bytes:
    """The 16-byte MP floating pointer ("_MP_") naming the configuration table."""
    fp = bytearray(struct.pack("<4sIBBB5s", b"_MP_", config_table, 1, SPEC_REVISION, 0, bytes(5)))
    fp[10] = _checksum(fp)
    return bytes(fp)


def build_mp_tables(
    floating_pointer: int = MP_FLOATING_POINTER,
    config_table: int = MP_CONFIG_TABLE,
    signature: int = QEMU64_SIGNATURE,
    features: int = QEMU64_FEATURES,
) -> list[tuple[int, bytes]]:
    """The floating pointer and the configuration table, as (physical address, bytes) pieces."""
    return [
        (floating_pointer, build_mp_floating_pointer(config_table)),
        (config_table, build_mp_config_table(signature, features)),
    ]
