"""The ACPI tables of QEMU's pc machine, as a kernel finds them: our own bytes and AML.

Under QEMU 7.2 + SeaBIOS 1.16 (measured with images/probe-tables,
tests/golden/qemu/probe-tables*.serial) a kernel finds an ACPI 1.0 RSDP (revision 0, no XSDT)
at 0xF59D0 in the F-segment, and the tables in the last 128 KiB of RAM below 4 GiB, which the
E820 map reserves, packed in this order from the start of that area:

    FACS (64 bytes, 64-aligned), DSDT, FACP (FADT revision 1, 116 bytes), APIC (MADT),
    HPET, WAET, RSDT (FACP, APIC, HPET, WAET)

Every table header carries OEM ID "BOCHS ", OEM table ID "BXPC    ", OEM revision 1, creator
"BXPC" revision 1, and revision 1. Our tables keep those fields, the FADT's fixed fields, the
MADT's and the HPET table's bytes and the WAET as QEMU has them; what differs is the DSDT (a
small AML of our own: the processor object, the HPET device and \\_S5, instead of QEMU's 6476
bytes describing the PCI bus, the ISA devices, hot-plug and the other sleep states), and
therefore the addresses of the tables after it and the checksums of the tables naming them.

``build_acpi_tables(rsdp_address, tables_base)`` returns the (address, bytes) pieces;
``tables_base_for(low_ram_end)`` is where QEMU starts them. No AML or binary of QEMU's or
SeaBIOS's is used: ``Aml`` below encodes the few AML terms our DSDT needs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RSDP_ADDRESS = 0xF59D0
TABLES_AREA_SIZE = 0x20000  # the last 128 KiB of low RAM, reserved in E820

OEM_ID = b"BOCHS "
OEM_TABLE_ID = b"BXPC    "
OEM_REVISION = 1
CREATOR_ID = b"BXPC"
CREATOR_REVISION = 1

LOCAL_APIC_BASE = 0xFEE00000
IO_APIC_BASE = 0xFEC00000
HPET_BASE = 0xFED00000
# the HPET's event timer block ID: vendor 0x8086, 3 comparators - 1 = 2, 64-bit counter,
# legacy replacement capable, revision 1 (the low 32 bits of the capabilities register)
HPET_BLOCK_ID = 0x8086A201

SCI_IRQ = 9
# the PIIX4 power-management I/O the FADT names (not modelled yet)
SMI_COMMAND_PORT = 0xB2
ACPI_ENABLE = 0xF1
ACPI_DISABLE = 0xF0
PM_BASE = 0x600
GPE0_BLOCK = 0xAFE0
# FADT flags, QEMU's 0x80A5: WBINVD (bit 0), PROC_C1 (2), SLP_BUTTON (5), RTC_S4 (7),
# USE_PLATFORM_CLOCK (15)
FADT_FLAGS = 0x000080A5
RTC_CENTURY_INDEX = 0x32

# MADT interrupt source override flags: polarity bits 0-1, trigger mode bits 2-3
ACTIVE_HIGH_LEVEL = 0x000D
# the ISA IRQs SeaBIOS routes as PCI link interrupts (level, active high): 5, 9 (the SCI), 10, 11
PCI_LINK_IRQS: tuple[int, ...] = (5, 9, 10, 11)


def checksum_byte(data: bytes | bytearray) -> int:
    """The byte that makes ``data`` sum to 0 modulo 256."""
    return -sum(data) & 0xFF


def sdt(signature: bytes, body: bytes, revision: int = 1) -> bytes:
    """A system description table: the 36-byte header with QEMU's IDs, ``body``, the checksum."""
    header = struct.pack(
        "<4sIBB6s8sI4sI",
        signature,
        36 + len(body),
        revision,
        0,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        CREATOR_ID,
        CREATOR_REVISION,
    )
    table = bytearray(header + body)
    table[9] = checksum_byte(table)
    return bytes(table)


# ---------------------------------------------------------------------------------------------
# AML: just the terms our DSDT uses (ACPI 6.x, section 20, "ACPI Machine Language")
# ---------------------------------------------------------------------------------------------


class Aml:
    """Encoders of AML terms, each returning bytes."""

    ZERO = b"\x00"
    ONE = b"\x01"

    @staticmethod
    def pkg_length(body_length: int) -> bytes:
        """PkgLength for a package whose contents after the PkgLength are ``body_length``."""
        for extra in range(4):
            total = body_length + 1 + extra
            if extra == 0 and total < 0x40:
                return bytes([total])
            if extra and total < 1 << (4 + 8 * extra):
                out = [(extra << 6) | (total & 0x0F)]
                out += [(total >> (4 + 8 * i)) & 0xFF for i in range(extra)]
                return bytes(out)
        raise ValueError(f"AML package of {body_length} bytes is too long")

    @staticmethod
    def name_seg(seg: str) -> bytes:
        raw = seg.encode("ascii").ljust(4, b"_")
        if len(raw) != 4:
            raise ValueError(f"AML name segment {seg!r} is longer than 4 characters")
        return raw

    @classmethod
    def name_string(cls, path: str) -> bytes:
        """A NameString: an optional root '\\', then 1 or more segments joined by '.'."""
        prefix = b""
        if path.startswith("\\"):
            prefix, path = b"\\", path[1:]
        segs = [cls.name_seg(s) for s in path.split(".")] if path else []
        if not segs:
            return prefix + b"\x00"
        if len(segs) == 1:
            return prefix + segs[0]
        if len(segs) == 2:
            return prefix + b"\x2e" + segs[0] + segs[1]
        return prefix + b"\x2f" + bytes([len(segs)]) + b"".join(segs)

    @staticmethod
    def integer(value: int) -> bytes:
        if value == 0:
            return b"\x00"
        if value == 1:
            return b"\x01"
        if value < 0x100:
            return b"\x0a" + bytes([value])
        if value < 0x10000:
            return b"\x0b" + struct.pack("<H", value)
        if value < 1 << 32:
            return b"\x0c" + struct.pack("<I", value)
        return b"\x0e" + struct.pack("<Q", value)

    @staticmethod
    def string(text: str) -> bytes:
        return b"\x0d" + text.encode("ascii") + b"\x00"

    @staticmethod
    def eisa_id(text: str) -> bytes:
        """EisaId("PNP0A05"): three letters and four hex digits, compressed into a DWord."""
        if len(text) != 7:
            raise ValueError(f"EISA ID {text!r} is not 3 letters and 4 hex digits")
        letters = [(ord(c) - 0x40) & 0x1F for c in text[:3]]
        value = (letters[0] << 26) | (letters[1] << 21) | (letters[2] << 16) | int(text[3:], 16)
        return b"\x0c" + struct.pack(">I", value)

    @classmethod
    def name(cls, path: str, data: bytes) -> bytes:
        return b"\x08" + cls.name_string(path) + data

    @classmethod
    def scope(cls, path: str, *terms: bytes) -> bytes:
        body = cls.name_string(path) + b"".join(terms)
        return b"\x10" + cls.pkg_length(len(body)) + body

    @classmethod
    def device(cls, path: str, *terms: bytes) -> bytes:
        body = cls.name_string(path) + b"".join(terms)
        return b"\x5b\x82" + cls.pkg_length(len(body)) + body

    @classmethod
    def processor(
        cls, path: str, proc_id: int, pblk_address: int, pblk_length: int, *terms: bytes
    ) -> bytes:
        body = (
            cls.name_string(path)
            + struct.pack("<BIB", proc_id, pblk_address, pblk_length)
            + b"".join(terms)
        )
        return b"\x5b\x83" + cls.pkg_length(len(body)) + body

    @classmethod
    def method(cls, path: str, arg_count: int, *terms: bytes, serialized: bool = False) -> bytes:
        flags = (arg_count & 7) | (0x08 if serialized else 0)
        body = cls.name_string(path) + bytes([flags]) + b"".join(terms)
        return b"\x14" + cls.pkg_length(len(body)) + body

    @staticmethod
    def return_(value: bytes) -> bytes:
        return b"\xa4" + value

    @classmethod
    def package(cls, *elements: bytes) -> bytes:
        body = bytes([len(elements)]) + b"".join(elements)
        return b"\x12" + cls.pkg_length(len(body)) + body

    @classmethod
    def buffer(cls, data: bytes) -> bytes:
        body = cls.integer(len(data)) + data
        return b"\x11" + cls.pkg_length(len(body)) + body

    @classmethod
    def resource_template(cls, *descriptors: bytes) -> bytes:
        """A buffer of resource descriptors closed by an End Tag (checksum 0: not checked)."""
        return cls.buffer(b"".join(descriptors) + b"\x79\x00")

    @staticmethod
    def memory32_fixed(base: int, length: int, writable: bool) -> bytes:
        return b"\x86\x09\x00" + struct.pack("<BII", 1 if writable else 0, base, length)


def build_dsdt() -> bytes:
    """Our DSDT: what a kernel looks for, in QEMU's namespace.

    - ``\\_SB.CPUS`` (ACPI0010, the processor container) holding ``Processor (C000, 0, 0, 0)``
      with ``_STA`` 0x0F and ``_MAT`` (its MADT local APIC entry), as QEMU names them;
    - ``\\_SB.HPET`` (PNP0103) with ``_UID`` 0, ``_STA`` 0x0F and its 1 KiB at 0xFED00000;
    - ``\\_S5`` = Package {0, 0, 0, 0}: SLP_TYPa/b for soft-off, QEMU's values.
    """
    a = Aml
    processor = a.processor(
        "C000",
        0,
        0,
        0,
        a.method("_STA", 0, a.return_(a.integer(0x0F))),
        a.name("_MAT", a.buffer(madt_local_apic(0, 0))),
    )
    cpus = a.device(
        "CPUS",
        a.name("_HID", a.string("ACPI0010")),
        a.name("_CID", a.eisa_id("PNP0A05")),
        processor,
    )
    hpet = a.device(
        "HPET",
        a.name("_HID", a.eisa_id("PNP0103")),
        a.name("_UID", a.ZERO),
        a.method("_STA", 0, a.return_(a.integer(0x0F))),
        a.name("_CRS", a.resource_template(a.memory32_fixed(HPET_BASE, 0x400, writable=False))),
    )
    s5 = a.name("_S5", a.package(a.ZERO, a.ZERO, a.ZERO, a.ZERO))
    body = a.scope("\\_SB", cpus, hpet) + a.scope("\\", s5)
    return sdt(b"DSDT", body)


# ---------------------------------------------------------------------------------------------
# the fixed tables
# ---------------------------------------------------------------------------------------------


def build_facs() -> bytes:
    """The 64-byte ACPI 1.0 FACS: no hardware signature, no waking vector, global lock free."""
    return struct.pack("<4sI56x", b"FACS", 64)


def build_fadt(facs_address: int, dsdt_address: int) -> bytes:
    """The FADT ("FACP"), ACPI 1.0 layout (116 bytes), with QEMU's PIIX4 values."""
    body = struct.pack(
        "<IIBBHIBBBB" + "IIIIIIII" + "BBBBBBBB" + "HHHHBBBBBHBI",
        facs_address,
        dsdt_address,
        1,  # INT_MODEL (ACPI 1.0): 1 = multiple APIC
        0,  # reserved (later: preferred PM profile, unspecified)
        SCI_IRQ,
        SMI_COMMAND_PORT,
        ACPI_ENABLE,
        ACPI_DISABLE,
        0,  # S4BIOS_REQ
        0,  # PSTATE_CNT
        PM_BASE,  # PM1a_EVT_BLK
        0,  # PM1b_EVT_BLK
        PM_BASE + 4,  # PM1a_CNT_BLK
        0,  # PM1b_CNT_BLK
        0,  # PM2_CNT_BLK
        PM_BASE + 8,  # PM_TMR_BLK
        GPE0_BLOCK,
        0,  # GPE1_BLK
        4,  # PM1_EVT_LEN
        2,  # PM1_CNT_LEN
        0,  # PM2_CNT_LEN
        4,  # PM_TMR_LEN
        4,  # GPE0_BLK_LEN
        0,  # GPE1_BLK_LEN
        0,  # GPE1_BASE
        0,  # CST_CNT
        0x0FFF,  # P_LVL2_LAT: C2 not supported
        0x0FFF,  # P_LVL3_LAT: C3 not supported
        0,  # FLUSH_SIZE
        0,  # FLUSH_STRIDE
        0,  # DUTY_OFFSET
        0,  # DUTY_WIDTH
        0,  # DAY_ALRM
        0,  # MON_ALRM
        RTC_CENTURY_INDEX,
        0,  # IAPC_BOOT_ARCH (reserved in ACPI 1.0)
        0,  # reserved
        FADT_FLAGS,
    )
    return sdt(b"FACP", body)


def madt_local_apic(processor_id: int, apic_id: int, enabled: bool = True) -> bytes:
    return struct.pack("<BBBBI", 0, 8, processor_id, apic_id, 1 if enabled else 0)


def madt_io_apic(apic_id: int, address: int, gsi_base: int) -> bytes:
    return struct.pack("<BBBBII", 1, 12, apic_id, 0, address, gsi_base)


def madt_interrupt_override(source_irq: int, gsi: int, flags: int) -> bytes:
    return struct.pack("<BBBBIH", 2, 10, 0, source_irq, gsi, flags)


def madt_local_apic_nmi(processor_id: int, flags: int, lint: int) -> bytes:
    return struct.pack("<BBBHB", 4, 6, processor_id, flags, lint)


@dataclass(frozen=True)
class MadtEntry:
    """One MADT interrupt controller structure, decoded (for tests and reports)."""

    type: int
    raw: bytes


def madt_entries() -> list[bytes]:
    """QEMU's MADT entries for one CPU: its local APIC, the I/O APIC at GSI 0, the overrides
    IRQ 0 -> GSI 2 (edge, conforming) and 5, 9 (the SCI), 10, 11 -> the same GSI (level, active
    high), and LINT1 of every processor as NMI."""
    entries = [madt_local_apic(0, 0), madt_io_apic(0, IO_APIC_BASE, 0)]
    entries.append(madt_interrupt_override(0, 2, 0))
    entries += [madt_interrupt_override(irq, irq, ACTIVE_HIGH_LEVEL) for irq in PCI_LINK_IRQS]
    entries.append(madt_local_apic_nmi(0xFF, 0, 1))
    return entries


def build_madt() -> bytes:
    """The MADT ("APIC", revision 1): the local APIC at 0xFEE00000, PCAT_COMPAT (8259s present)."""
    return sdt(b"APIC", struct.pack("<II", LOCAL_APIC_BASE, 1) + b"".join(madt_entries()))


def split_madt(table: bytes) -> list[MadtEntry]:
    """The interrupt controller structures of a MADT."""
    out: list[MadtEntry] = []
    at = 44
    while at < len(table):
        kind, length = table[at], table[at + 1]
        if length < 2:
            raise ValueError(f"MADT entry at offset {at} has length {length}")
        out.append(MadtEntry(kind, table[at : at + length]))
        at += length
    return out


def build_hpet_table() -> bytes:
    """The HPET description table: timer block 0 at 0xFED00000 (system memory), no minimum tick,
    no page protection."""
    gas = struct.pack("<BBBBQ", 0, 0, 0, 0, HPET_BASE)
    return sdt(b"HPET", struct.pack("<I", HPET_BLOCK_ID) + gas + struct.pack("<BHB", 0, 0, 0))


def build_waet() -> bytes:
    """The Windows ACPI Emulated devices Table: flag bit 1, the ACPI PM timer is reliable (one
    read suffices)."""
    return sdt(b"WAET", struct.pack("<I", 0x2))


def build_rsdt(tables: list[int]) -> bytes:
    return sdt(b"RSDT", b"".join(struct.pack("<I", t) for t in tables))


def build_rsdp(rsdt_address: int) -> bytes:
    """The 20-byte ACPI 1.0 RSDP (revision 0, as SeaBIOS leaves it: no XSDT)."""
    rsdp = bytearray(struct.pack("<8sB6sBI", b"RSD PTR ", 0, OEM_ID, 0, rsdt_address))
    rsdp[8] = checksum_byte(rsdp)
    return bytes(rsdp)


# ---------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------


def tables_base_for(low_ram_end: int) -> int:
    """Where QEMU's tables start: 128 KiB below the end of RAM under 4 GiB."""
    return low_ram_end - TABLES_AREA_SIZE


@dataclass(frozen=True)
class AcpiLayout:
    """Where each table went, and the pieces to write."""

    rsdp: int
    facs: int
    dsdt: int
    fadt: int
    madt: int
    hpet: int
    waet: int
    rsdt: int
    pieces: tuple[tuple[int, bytes], ...]

    def table_at(self, address: int) -> bytes:
        for base, data in self.pieces:
            if base == address:
                return data
        raise KeyError(hex(address))


def layout_acpi_tables(rsdp_address: int, tables_base: int) -> AcpiLayout:
    """The RSDP at ``rsdp_address`` and the other tables packed from ``tables_base`` (64-byte
    aligned) in QEMU's order: FACS, DSDT, FACP, APIC, HPET, WAET, RSDT."""
    if tables_base % 64:
        raise ValueError(f"ACPI tables base {tables_base:#x} is not 64-byte aligned")
    facs = build_facs()
    dsdt = build_dsdt()
    madt, hpet, waet = build_madt(), build_hpet_table(), build_waet()
    a_facs = tables_base
    a_dsdt = a_facs + len(facs)
    a_fadt = a_dsdt + len(dsdt)
    fadt = build_fadt(a_facs, a_dsdt)
    a_madt = a_fadt + len(fadt)
    a_hpet = a_madt + len(madt)
    a_waet = a_hpet + len(hpet)
    a_rsdt = a_waet + len(waet)
    rsdt = build_rsdt([a_fadt, a_madt, a_hpet, a_waet])
    rsdp = build_rsdp(a_rsdt)
    pieces = (
        (a_facs, facs),
        (a_dsdt, dsdt),
        (a_fadt, fadt),
        (a_madt, madt),
        (a_hpet, hpet),
        (a_waet, waet),
        (a_rsdt, rsdt),
        (rsdp_address, rsdp),
    )
    return AcpiLayout(rsdp_address, a_facs, a_dsdt, a_fadt, a_madt, a_hpet, a_waet, a_rsdt, pieces)


def build_acpi_tables(
    rsdp_address: int = RSDP_ADDRESS, tables_base: int | None = None, low_ram_end: int = 128 << 20
) -> list[tuple[int, bytes]]:
    """Every ACPI table as (physical address, bytes) pieces. ``tables_base`` defaults to QEMU's
    place for ``low_ram_end`` bytes of RAM below 4 GiB."""
    base = tables_base_for(low_ram_end) if tables_base is None else tables_base
    return list(layout_acpi_tables(rsdp_address, base).pieces)
