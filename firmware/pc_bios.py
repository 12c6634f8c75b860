"""The firmware areas a kernel finds on a BIOS PC after GRUB: our own bytes, QEMU's addresses.

Under QEMU 7.2 a Multiboot kernel finds what SeaBIOS 1.16 left behind at POST (GRUB 2.06 changes
none of it): the real-mode interrupt vector table, the BIOS data area, a 1 KiB EBDA below 640 KiB,
a video BIOS at 0xC0000, the system BIOS shadowed at 0xE0000-0xFFFFF and the 256 KiB BIOS flash at
the top of the 4 GiB space. This module builds all of it as plain bytes for the emulator to map.

Everything here is our own: no SeaBIOS or SeaVGABIOS code or binary is used. What matches QEMU is
what a kernel can observe as data: every IVT entry (so each service lives at SeaBIOS's address,
mostly the IBM-compatible entry points), the BDA byte for byte (the tick counter aside: it is
clock-dependent, see ``bda_ticks``), the EBDA, the ROM landmarks (the reset jump at 0xFFFF0, the
date, the model byte), the data tables the IVT and the BDA point to, the option-ROM headers, and
where the ROM copies differ. The values were measured with the probe-bios kernel
(images/probe-bios) under qemu-ref; docs/platform.md lists them with their meanings, and
tests/test_pc_bios.py checks these builders against the saved QEMU output.

BIOS services are stubs that trap into the emulator. A stub is 4 bytes, ``0F 0B nn CF``: UD2,
the vector number ``nn``, IRET. The #UD lands at the stub's first byte; ``stub_vector_at`` says
which service that is, and after serving it the emulator resumes at the IRET (stub + 3). The
reset stub (F000:E05B, where the jump at 0xFFFF0 goes) carries 0xFF, ``RESET_TRAP``: the machine
is to be reset and POSTed. Vectors SeaBIOS points at a plain IRET (F000:FF53) find a plain IRET.
Two stubs serve several vectors each, with one behaviour for all of them, as in SeaBIOS: the
default handler of the master PIC's IRQs (vectors 0Ah-0Dh and 0Fh, trap byte 0Ah: a
non-specific EOI to the master) and of the slave PIC's (71h-73h and 77h, trap byte 71h: EOI to
the slave, then to the master). The IRET at F000:FF53 is also what the data vectors 1Dh, 41h and
46h point to (SeaBIOS leaves no video or fixed-disk parameter table there); a caller never
executes those.

Of the BIOS tables SeaBIOS builds at POST, the MP floating pointer and configuration table
(firmware/mp_table.py) and the ACPI RSDP (firmware/acpi.py) go into the F-segment at SeaBIOS's
addresses, the other ACPI tables into the last 128 KiB of RAM (``bios_tables``); SMBIOS, $PIR and
the $PnP header are not built. ``SEABIOS_TABLES`` records where all of them are.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from devices.cp437_font import GLYPHS

from . import acpi, mp_table, vbe

KIB = 1024
MIB = 1 << 20

# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------

IVT_BASE = 0x000
IVT_SIZE = 0x400
BDA_BASE = 0x400
BDA_SIZE = 0x100
EBDA_SEGMENT = 0x9FC0
EBDA_BASE = EBDA_SEGMENT << 4  # 0x9FC00: conventional memory is 639 KiB
EBDA_SIZE = 1 * KIB
BASE_MEMORY_KIB = EBDA_BASE // KIB  # 639, the BDA word at 0x413

VGA_WINDOW_BASE = 0xA0000  # the legacy VGA window, 128 KiB of MMIO
VGA_WINDOW_END = 0xC0000
VGA_TEXT_BASE = 0xB8000  # in text mode only 0xB8000-0xBFFFF is mapped
VGA_WINDOW_UNMAPPED_READ = 0xFF  # the rest of the window reads 0xFF, writes are dropped
VGA_TEXT_SIZE = 0x8000
# What the 32 KiB of text memory holds at the hand-over: every cell a blank, grey on black
# (SeaVGABIOS's mode set, then GRUB's clear screen); measured with pmemsave under qemu-ref.
VGA_TEXT_CELL_AT_HANDOVER = b"\x20\x07"

VIDEO_BIOS_BASE = 0xC0000
VIDEO_BIOS_SIZE = 0x4E * 512  # 39936 bytes: size byte 0x4E
VIDEO_BIOS_WINDOW = 0xA000  # 0xC0000-0xC9FFF is read-only, the ROM then zeros
VIDEO_BIOS_SEGMENT = VIDEO_BIOS_BASE >> 4

VAPIC_ROM_BASE = 0xCA000  # QEMU's kvmvapic option ROM, in writable RAM 0xCA000-0xCCFFF
VAPIC_ROM_SIZE = 0x12 * 512  # 9 KiB: size byte 0x12
VAPIC_RAM_SIZE = 0x3000

OPTION_ROM_FREE_BASE = 0xCD000  # read-only zeros up to the system BIOS's writable zone
OPTION_ROM_FREE_END = 0xE8000

SYSTEM_BIOS_BASE = 0xE0000  # the shadowed system BIOS, 128 KiB
SYSTEM_BIOS_SIZE = 0x20000
BIOS_SEGMENT = 0xF000
FSEG_BASE = 0xF0000
LOW_ZONE_BASE = 0xE8000  # writable RAM, marked by an option-ROM signature (size byte 0x40)
LOW_ZONE_SIZE = 0x8000

BIOS_FLASH_BASE = 0xFFFC0000  # QEMU's pc.bios: 256 KiB, its top 128 KiB pristine
BIOS_FLASH_SIZE = 0x40000
RESET_VECTOR = 0xFFFF0  # and 0xFFFFFFF0 in the flash
BIOS_DATE = b"06/23/99"  # at 0xFFFF5
MODEL_BYTE = 0xFC  # at 0xFFFFE: an AT
SUBMODEL_BYTE = 0x00
BIOS_REVISION = 0x01

# Where SeaBIOS keeps its run-time variables and builds its tables at POST (0xF5140 on): the
# shadow and the flash differ from here. Ours: zeros in the shadow, 0xFF in the flash.
FSEG_POST_AREA = (0xF5140, 0xF6000)

# Unassigned physical memory (no RAM, ROM or device): every load of 1, 2, 4 or 8 bytes reads 0,
# stores are dropped; the same above 4 GiB, and for page-table entries a walk reads there.
UNASSIGNED_READ_VALUE = 0

# The trap encoding of a BIOS stub: UD2, the vector number, IRET.
UD2 = b"\x0f\x0b"
IRET = 0xCF
RETF = 0xCB
RESET_TRAP = 0xFF  # the trap byte of the reset stub: reset and POST the machine
STUB_SIZE = 4


def linear(segment: int, offset: int) -> int:
    """The linear address of a real-mode segment:offset."""
    return (segment << 4) + offset


def stub_bytes(vector: int) -> bytes:
    """The 4 bytes of the stub that traps for ``vector`` (0-0xFF)."""
    if not 0 <= vector <= 0xFF:
        raise ValueError(f"vector {vector:#x} is not a byte")
    return UD2 + bytes((vector, IRET))


# ---------------------------------------------------------------------------------------------
# The interrupt vector table and the stubs it points to
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BiosStub:
    """One service stub: the IVT entry that points to it and where its trap is.

    ``vector`` is the trap byte; ``vectors`` every IVT vector that points to ``entry`` (one
    behaviour for all). ``trap`` is the linear address of the UD2: ``entry`` itself, or for the
    two entry points with fixed data 3 bytes on (INT 13h at F000:E3FE before the fixed-disk
    parameter table at E401, INT 19h at F000:E6F2 before the configuration table at E6F5) a
    short jump there leads to the trap.
    """

    vector: int
    vectors: tuple[int, ...]
    segment: int
    offset: int
    trap: int
    name: str

    @property
    def entry(self) -> int:
        """The linear address the IVT points to."""
        return linear(self.segment, self.offset)


def _stub(vector: int, offset: int, name: str, trap_offset: int | None = None) -> BiosStub:
    trap = linear(BIOS_SEGMENT, offset if trap_offset is None else trap_offset)
    return BiosStub(vector, (vector,), BIOS_SEGMENT, offset, trap, name)


INT10_OFFSET = 0x578B  # C000:578B, in the video BIOS

STUBS: tuple[BiosStub, ...] = (
    _stub(0x02, 0xE2C3, "NMI"),
    _stub(0x05, 0xFF54, "print screen"),
    _stub(0x08, 0xFEA5, "IRQ 0: system timer tick (also calls INT 1Ch)"),
    _stub(0x09, 0xE987, "IRQ 1: keyboard"),
    _stub(0x0E, 0xEF57, "IRQ 6: diskette controller"),
    BiosStub(
        0x0A,
        (0x0A, 0x0B, 0x0C, 0x0D, 0x0F),
        BIOS_SEGMENT,
        0xD42E,
        linear(BIOS_SEGMENT, 0xD42E),
        "IRQ 2-5 and 7 without a handler: non-specific EOI to the master PIC",
    ),
    BiosStub(
        0x10,
        (0x10,),
        VIDEO_BIOS_SEGMENT,
        INT10_OFFSET,
        linear(VIDEO_BIOS_SEGMENT, INT10_OFFSET),
        "video services (in the video BIOS)",
    ),
    _stub(0x11, 0xF84D, "equipment list"),
    _stub(0x12, 0xF841, "conventional memory size"),
    _stub(0x13, 0xE3FE, "disk services", trap_offset=0xE411),
    _stub(0x14, 0xE739, "serial port services"),
    _stub(0x15, 0xF859, "system services"),
    _stub(0x16, 0xE82E, "keyboard services"),
    _stub(0x17, 0xEFD2, "printer services"),
    _stub(0x18, 0xD453, "no bootable device"),
    _stub(0x19, 0xE6F2, "bootstrap loader", trap_offset=0xE6FF),
    _stub(0x1A, 0xFE6E, "time of day and CMOS clock"),
    _stub(0x40, 0xEC59, "diskette services"),
    _stub(0x70, 0xD413, "IRQ 8: CMOS real-time clock"),
    BiosStub(
        0x71,
        (0x71, 0x72, 0x73, 0x77),
        BIOS_SEGMENT,
        0xD437,
        linear(BIOS_SEGMENT, 0xD437),
        "IRQ 9-11 and 15 without a handler: EOI to the slave PIC, then to the master",
    ),
    _stub(0x74, 0xD41C, "IRQ 12: PS/2 mouse"),
    _stub(0x75, 0xD425, "IRQ 13: math coprocessor"),
    _stub(0x76, 0xD40A, "IRQ 14: hard disk"),
)

RESET_STUB = BiosStub(
    RESET_TRAP,
    (),
    BIOS_SEGMENT,
    0xE05B,
    linear(BIOS_SEGMENT, 0xE05B),
    "reset and POST (the far jump at 0xFFFF0 leads here)",
)

IRET_OFFSET = 0xFF53  # F000:FF53, SeaBIOS's default IRET
# data the IVT points to: (vector, segment, offset, what)
IVT_DATA: tuple[tuple[int, int, int, str], ...] = (
    (0x1E, BIOS_SEGMENT, 0x601C, "diskette parameter table (11 bytes)"),
    (0x1F, VIDEO_BIOS_SEGMENT, 0x95C0, "8x8 font, characters 128-255"),
    (0x43, VIDEO_BIOS_SEGMENT, 0x73C0, "8x16 font of the current text mode"),
)
# vectors SeaBIOS clears: 60h-66h (for user programs) and 79h
IVT_NULL: tuple[int, ...] = (0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x79)


def ivt_entries() -> dict[int, tuple[int, int]]:
    """Every vector's (segment, offset), as SeaBIOS leaves the IVT."""
    entries = {v: (BIOS_SEGMENT, IRET_OFFSET) for v in range(256)}
    for stub in STUBS:
        for v in stub.vectors:
            entries[v] = (stub.segment, stub.offset)
    for v, segment, offset, _ in IVT_DATA:
        entries[v] = (segment, offset)
    for v in IVT_NULL:
        entries[v] = (0, 0)
    return entries


def build_ivt() -> bytes:
    """The 1 KiB real-mode interrupt vector table at 0: offset, then segment, per vector."""
    entries = ivt_entries()
    return b"".join(struct.pack("<HH", entries[v][1], entries[v][0]) for v in range(256))


_STUB_AT: dict[int, int] = {s.trap: s.vector for s in (*STUBS, RESET_STUB)}


def stub_vector_at(linear_address: int) -> int | None:
    """The trap byte of the BIOS stub whose UD2 is at ``linear_address``, or None.

    The #UD of a stub reports CS:IP of its first byte. The answer is the vector number of the
    service (for the two shared IRQ stubs the lowest vector of the group: 0Ah, 71h), or
    ``RESET_TRAP`` for the reset stub."""
    return _STUB_AT.get(linear_address)


# ---------------------------------------------------------------------------------------------
# The BIOS data area and the EBDA
# ---------------------------------------------------------------------------------------------

PIT_HZ = 1_193_182
TICKS_PER_DAY = 0x1800B0  # the BDA tick counter wraps at midnight


def bda_ticks(seconds_since_midnight: float) -> int:
    """The BDA tick counter (0x46C) at a time of day: IRQ 0 at 1193182/65536 Hz, about 18.2/s.

    SeaBIOS sets it from the CMOS clock at POST and IRQ 0 counts on while GRUB runs, so QEMU
    shows the time GRUB took (0x16-0x27 measured); a deterministic machine at virtual time 0
    shows the time of day of its CMOS clock: 0 at midnight, the default."""
    seconds = seconds_since_midnight % 86400
    # a day of 18.2065 Hz ticks is 1573042; the BIOS day is 0x1800B0 = 1573040 of them
    return min(int(seconds * PIT_HZ // 65536), TICKS_PER_DAY - 1)


@dataclass(frozen=True)
class BdaField:
    """One field of the BIOS data area: offset from 0x400, size in bytes, value, meaning."""

    offset: int
    size: int
    value: int
    name: str


TICKS_OFFSET = 0x6C
MIDNIGHT_OFFSET = 0x70
CLOCK_DEPENDENT = ((TICKS_OFFSET, 4), (MIDNIGHT_OFFSET, 1))  # (offset, size) in the BDA

# Every nonzero byte SeaBIOS and SeaVGABIOS leave, measured at 32 MiB, 128 MiB and 1 GiB (the
# same at every size); the rest of the 256 bytes is zero.
BDA_FIELDS: tuple[BdaField, ...] = (
    BdaField(0x00, 2, 0x3F8, "COM1 I/O port (COM2-4 absent: 0)"),
    BdaField(0x08, 2, 0x378, "LPT1 I/O port (LPT2-3 absent: 0)"),
    BdaField(0x0E, 2, EBDA_SEGMENT, "EBDA segment"),
    BdaField(
        0x10,
        2,
        0x4227,
        "equipment word: diskette, x87, PS/2 mouse, 80x25 colour, 1 diskette drive, "
        "1 serial port, 1 parallel port",
    ),
    BdaField(0x13, 2, BASE_MEMORY_KIB, "conventional memory in KiB"),
    BdaField(0x1A, 2, 0x1E, "keyboard buffer head (offset from 0x400)"),
    BdaField(0x1C, 2, 0x1E, "keyboard buffer tail: empty"),
    BdaField(0x49, 1, 0x03, "video mode 3: 80x25 16-colour text"),
    BdaField(0x4A, 2, 80, "text columns"),
    BdaField(0x4C, 2, 0x1000, "video page size in bytes"),
    BdaField(0x60, 2, 0x0607, "cursor shape: start line 6, end line 7"),
    BdaField(0x63, 2, 0x3D4, "CRTC index port"),
    BdaField(TICKS_OFFSET, 4, 0, "timer ticks since midnight (clock-dependent)"),
    BdaField(MIDNIGHT_OFFSET, 1, 0, "midnight rollover flag (clock-dependent)"),
    BdaField(0x76, 1, 0xC0, "fixed disk control byte"),
    BdaField(0x78, 1, 0x14, "LPT1 timeout"),
    BdaField(0x7C, 1, 0x0A, "COM1 timeout"),
    BdaField(0x80, 2, 0x1E, "keyboard buffer start (offset from 0x400)"),
    BdaField(0x82, 2, 0x3E, "keyboard buffer end"),
    BdaField(0x84, 1, 24, "text rows minus one"),
    BdaField(0x85, 2, 16, "character height in scan lines"),
    BdaField(0x87, 1, 0x60, "video control: 256 KiB of video memory"),
    BdaField(0x88, 1, 0xF9, "video switches"),
    BdaField(0x89, 1, 0x51, "video mode-set options: VGA, 400 scan lines"),
    BdaField(0x8A, 1, 0x08, "display combination code index: VGA colour"),
    BdaField(0x8F, 1, 0x07, "diskette controller information"),
    BdaField(0x96, 1, 0x10, "keyboard status: 101/102-key keyboard"),
    BdaField(0xA8, 4, (VIDEO_BIOS_SEGMENT << 16) | 0x6820, "video save pointer table C000:6820"),
    BdaField(0xB9, 1, 0x40, "SeaVGABIOS private: flags"),
    BdaField(0xBA, 2, 0x0003, "SeaVGABIOS private: the current mode"),
    BdaField(0xBC, 2, 0x68C6, "SeaVGABIOS private: offset of its mode record in C000"),
)


def build_bda(ram_size: int, ticks: int = 0) -> bytes:
    """The 256 bytes of the BIOS data area at 0x400.

    ``ticks`` is the tick counter at 0x46C (``bda_ticks`` of the CMOS time of day; 0 at virtual
    time 0 with the default midnight clock). ``ram_size`` is checked: QEMU's BDA is the same at
    every size measured (32 MiB to 1 GiB), since the EBDA always sits just below 640 KiB."""
    if ram_size < MIB:
        raise ValueError(f"RAM of {ram_size} bytes has no room for the EBDA below 640 KiB")
    if not 0 <= ticks < TICKS_PER_DAY:
        raise ValueError(f"tick count {ticks:#x} is not a time of day")
    bda = bytearray(BDA_SIZE)
    for f in BDA_FIELDS:
        value = ticks if f.offset == TICKS_OFFSET else f.value
        bda[f.offset : f.offset + f.size] = value.to_bytes(f.size, "little")
    return bytes(bda)


def build_ebda() -> bytes:
    """The 1 KiB extended BIOS data area at 0x9FC00: its size in KiB (1), then zeros."""
    ebda = bytearray(EBDA_SIZE)
    ebda[0] = EBDA_SIZE // KIB
    return bytes(ebda)


# ---------------------------------------------------------------------------------------------
# Fonts (our own, from the emulator's CP437 8x16 font)
# ---------------------------------------------------------------------------------------------


def font_8x16() -> bytes:
    """256 glyphs of 16 bytes: the font of devices/cp437_font.py."""
    return b"".join(GLYPHS)


def font_8x14() -> bytes:
    """256 glyphs of 14 bytes: the 8x16 glyphs without their top and bottom scan lines."""
    return b"".join(g[1:15] for g in GLYPHS)


def font_8x8() -> bytes:
    """256 glyphs of 8 bytes: each scan line the OR of two lines of the 8x16 glyph."""
    return b"".join(bytes(g[2 * i] | g[2 * i + 1] for i in range(8)) for g in GLYPHS)


# ---------------------------------------------------------------------------------------------
# The video BIOS at 0xC0000
# ---------------------------------------------------------------------------------------------

VIDEO_PARAMETER_TABLE = 0x60E0  # C000:60E0, 29 entries of 64 bytes
VIDEO_SAVE_POINTER_TABLE = 0x6820  # C000:6820, the BDA points here (0x4A8)
FONT_8X16_OFFSET = 0x73C0  # INT 43h
FONT_8X14_OFFSET = 0x83C0
FONT_8X8_OFFSET = 0x91C0  # characters 128-255 at 0x95C0: INT 1Fh
PCIR_OFFSET = 0x99DC

# The entries of the video parameter table SeaVGABIOS fills (the others are zero): the
# standard VGA register values per mode, 64 bytes each: columns, rows - 1, character height,
# page size, the 4 sequencer registers, the miscellaneous output register, the 25 CRTC
# registers, the 20 attribute-controller registers and the 9 graphics-controller registers.
VIDEO_PARAMETERS: dict[int, str] = {
    4: "281808004009030002632d2728902b80bf1f00c10000000000009c8e8f140096b9a2ff0013151702"
    "0406071011121314151617010003000000000000300f0fff",
    5: "281808004009030002632d2728902b80bf1f00c10000000000009c8e8f140096b9a2ff0013151702"
    "0406071011121314151617010003000000000000300f0fff",
    6: "501808004001010006635f4f50825480bf1f00c10000000000009c8e8f280096b9c2ff0017171717"
    "1717171717171717171717010001000000000000000d0fff",
    7: "501810001000030002665f4f50825581bf1f004f0d0e000000009c8e8f280f96b9a3ff0008080808"
    "08080810181818181818180e000f080000000000100a0fff",
    13: "2818080020090f0006632d2728902b80bf1f00c00000000000009c8e8f140096b9e3ff0001020304"
    "050607101112131415161701000f00000000000000050fff",
    14: "5018080040010f0006635f4f50825480bf1f00c00000000000009c8e8f280096b9e3ff0001020304"
    "050607101112131415161701000f00000000000000050fff",
    17: "50180e0080010f0006a35f4f50825480bf1f004000000000000083855d280f63bae3ff0008000018"
    "180000000800000018000001000100000000000000050fff",
    18: "50180e0080010f0006a35f4f50825480bf1f004000000000000083855d280f63bae3ff0001020304"
    "05140738393a3b3c3d3e3f01000f00000000000000050fff",
    23: "281810000808030002672d2728902ba0bf1f004f0d0e000000009c8e8f141f96b9a3ff0001020304"
    "05140738393a3b3c3d3e3f0c000f080000000000100e0fff",
    24: "501810001000030002675f4f50825581bf1f004f0d0e000000009c8e8f281f96b9a3ff0001020304"
    "05140738393a3b3c3d3e3f0c000f080000000000100e0fff",
    25: "501810001000030002665f4f50825581bf1f004f0d0e000000009c8e8f280f96b9a3ff0008080808"
    "08080810181818181818180e000f080000000000100a0fff",
    26: "501d1000a0010f0006e35f4f508254800b3e0040000000000000ea8cdf2800e704e3ff003f003f00"
    "3f003f003f003f003f003f01000f00000000000000050fff",
    27: "501d1000a0010f0006e35f4f508254800b3e0040000000000000ea8cdf2800e704e3ff0001020304"
    "05140738393a3b3c3d3e3f01000f00000000000000050fff",
    28: "2818080020010f000e635f4f50825480bf1f00410000000000009c8e8f284096b9a3ff0001020304"
    "05060708090a0b0c0d0e0f41000f00000000000040050fff",
}
VIDEO_PARAMETER_ENTRIES = 29


@dataclass(frozen=True)
class PciRomHeader:
    """The PCI data structure ("PCIR") of an option ROM."""

    vendor: int
    device: int
    class_code: int  # base class, subclass, programming interface
    image_blocks: int  # the image length in 512-byte units
    code_revision: int = 1
    code_type: int = 0  # x86
    last_image: bool = True

    def to_bytes(self) -> bytes:
        return struct.pack(
            "<4sHHHHB3sHHBBH",
            b"PCIR",
            self.vendor,
            self.device,
            0,  # no vital product data
            24,  # the structure's length
            0,  # its revision
            self.class_code.to_bytes(3, "little"),
            self.image_blocks,
            self.code_revision,
            self.code_type,
            0x80 if self.last_image else 0,
            0,
        )


VIDEO_PCI_HEADER = PciRomHeader(
    vendor=0x1234, device=0x1111, class_code=0x030000, image_blocks=0x4E
)


def _checksum_byte(data: bytes | bytearray) -> int:
    """The byte that makes ``data`` (whose last byte is excluded) sum to zero modulo 256."""
    return -sum(data[:-1]) & 0xFF


def build_video_bios() -> bytes:
    """Our video BIOS (39936 bytes at 0xC0000): the option-ROM header (0x55AA, size byte 0x4E,
    an init entry that returns at once, the PCIR pointer, "IBM" at 0x1E), the INT 10h stub at
    C000:578B, the video parameter and save pointer tables, the 8x16, 8x14 and 8x8 fonts at
    SeaVGABIOS's offsets, the PCI data structure, the VBE OEM strings, and a checksum in the
    last byte."""
    rom = bytearray(VIDEO_BIOS_SIZE)
    rom[0:3] = bytes((0x55, 0xAA, VIDEO_BIOS_SIZE // 512))
    rom[3] = RETF  # the init entry C000:0003: the emulator's POST needs no initialisation
    struct.pack_into("<H", rom, 0x18, PCIR_OFFSET)
    rom[0x1E:0x21] = b"IBM"
    rom[INT10_OFFSET : INT10_OFFSET + STUB_SIZE] = stub_bytes(0x10)
    for index, values in VIDEO_PARAMETERS.items():
        at = VIDEO_PARAMETER_TABLE + 64 * index
        rom[at : at + 64] = bytes.fromhex(values)
    struct.pack_into(
        "<HH", rom, VIDEO_SAVE_POINTER_TABLE, VIDEO_PARAMETER_TABLE, VIDEO_BIOS_SEGMENT
    )
    rom[FONT_8X16_OFFSET : FONT_8X16_OFFSET + 4096] = font_8x16()
    rom[FONT_8X14_OFFSET : FONT_8X14_OFFSET + 3584] = font_8x14()
    rom[FONT_8X8_OFFSET : FONT_8X8_OFFSET + 2048] = font_8x8()
    rom[PCIR_OFFSET : PCIR_OFFSET + 24] = VIDEO_PCI_HEADER.to_bytes()
    for offset, text in vbe.ROM_STRINGS:  # what VBE 4F00h's OEM string pointers lead to
        rom[offset : offset + len(text)] = text
    rom[-1] = _checksum_byte(rom)
    return bytes(rom)


def build_vapic_rom() -> bytes:
    """A stand-in for QEMU's kvmvapic option ROM at 0xCA000 (9 KiB, inert under TCG): the
    header (0x55AA, size byte 0x12) and an init entry that returns. As in QEMU after POST (the
    ROM patches itself when run), its checksum is not valid."""
    rom = bytearray(VAPIC_ROM_SIZE)
    rom[0:4] = bytes((0x55, 0xAA, VAPIC_ROM_SIZE // 512, RETF))
    return bytes(rom)


# ---------------------------------------------------------------------------------------------
# The system BIOS: the shadow at 0xE0000-0xFFFFF and the flash at 0xFFFC0000
# ---------------------------------------------------------------------------------------------

DISKETTE_PARAMETERS = bytes.fromhex("af 02 25 02 12 1b ff 6c f6 0f 08")  # INT 1Eh
DISKETTE_PARAMETERS_OFFSETS = (0x601C, 0xEFC7)  # F000:601C (INT 1Eh) and the IBM address
FIXED_DISK_PARAMETERS_OFFSET = 0xE401  # 16 bytes, zero: no fixed disk
# The configuration table INT 15h AH=C0h returns (F000:E6F5): its length (8), model FC,
# submodel 00, BIOS revision 01, then feature bytes 74h (second PIC, RTC, INT 15h AH=4Fh
# keyboard intercept, extended BIOS data area), 40h (INT 16h AH=09h), 00h, 00h, 00h.
CONFIG_TABLE_OFFSET = 0xE6F5
CONFIG_TABLE = bytes((8, 0, MODEL_BYTE, SUBMODEL_BYTE, BIOS_REVISION, 0x74, 0x40, 0, 0, 0))
FONT_8X8_LOW_OFFSET = 0xFA6E  # F000:FA6E, the 8x8 glyphs 0-127 (the IBM-compatible place)


def _fseg() -> bytearray:
    """The F-segment as in the flash: stubs, fixed tables and landmarks; the POST area and the
    checksum byte are filled in by the callers."""
    seg = bytearray(0x10000)

    def put(offset: int, data: bytes) -> None:
        seg[offset : offset + len(data)] = data

    for stub in STUBS:
        if stub.segment != BIOS_SEGMENT:
            continue
        trap = stub.trap - FSEG_BASE
        put(trap, stub_bytes(stub.vector))
        if stub.trap != stub.entry:  # a short jump from the entry point to the trap
            put(stub.offset, bytes((0xEB, trap - (stub.offset + 2))))
    put(RESET_STUB.offset, stub_bytes(RESET_TRAP))
    put(IRET_OFFSET, bytes((IRET,)))
    for offset in DISKETTE_PARAMETERS_OFFSETS:
        put(offset, DISKETTE_PARAMETERS)
    put(CONFIG_TABLE_OFFSET, CONFIG_TABLE)
    put(FONT_8X8_LOW_OFFSET, font_8x8()[: 128 * 8])
    # the reset vector: jmp far F000:E05B, the date, a zero, the model byte
    put(RESET_VECTOR - FSEG_BASE, struct.pack("<BHH", 0xEA, RESET_STUB.offset, BIOS_SEGMENT))
    put(RESET_VECTOR + 5 - FSEG_BASE, BIOS_DATE + b"\x00" + bytes((MODEL_BYTE,)))
    return seg


def build_system_bios(tables: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """The 128 KiB the CPU sees at 0xE0000-0xFFFFF after POST.

    0xE0000-0xE7FFF: zeros (read-only; SeaBIOS cleared its init code). 0xE8000-0xEFFFF: writable
    RAM whose start carries an option-ROM signature with size byte 0x40, as SeaBIOS marks its
    low-memory zone. 0xF0000-0xFFFFF: the F-segment with ``tables`` ((address, bytes) pieces in
    the POST area: the RSDP and the MP tables, ``bios_tables``), summing to zero (its checksum
    byte at 0xFFFFF)."""
    image = bytearray(SYSTEM_BIOS_SIZE)
    zone = LOW_ZONE_BASE - SYSTEM_BIOS_BASE
    image[zone : zone + 3] = bytes((0x55, 0xAA, LOW_ZONE_SIZE // 512))
    fseg = _fseg()
    start, end = FSEG_POST_AREA
    for address, data in tables:
        if not (start <= address and address + len(data) <= end):
            raise ValueError(
                f"a BIOS table at {address:#x} ({len(data)} bytes) is outside the F-segment's "
                f"POST area {start:#x}-{end - 1:#x}"
            )
        fseg[address - FSEG_BASE : address - FSEG_BASE + len(data)] = data
    fseg[-1] = 0
    fseg[-1] = _checksum_byte(fseg)
    image[0x10000:] = fseg
    return bytes(image)


def build_bios_flash() -> bytes:
    """The 256 KiB BIOS flash at 0xFFFC0000: zeros below its top 128 KiB (QEMU's image starts
    with padding: an 8-byte load across 0xFFFC0000 reads 0 on both sides, probe-openbus), an
    E-segment of 0xFF, and the F-segment as the shadow's before POST: 0xFF in the POST area
    (FSEG_POST_AREA) and 0 in the checksum byte. So, as in QEMU, 0xE0000 and 0xFFFE0000 differ
    from their first byte on, and 0xF0000 and 0xFFFF0000 from +0x5140."""
    flash = bytearray(BIOS_FLASH_SIZE)
    flash[-0x20000:-0x10000] = b"\xff" * 0x10000
    fseg = _fseg()
    start, end = FSEG_POST_AREA
    fseg[start - FSEG_BASE : end - FSEG_BASE] = b"\xff" * (end - start)
    flash[-0x10000:] = fseg
    return bytes(flash)


# ---------------------------------------------------------------------------------------------
# What the emulator maps
# ---------------------------------------------------------------------------------------------


def build_low_zone() -> bytes:
    """The writable 32 KiB at 0xE8000 (a slice of ``build_system_bios``)."""
    start = LOW_ZONE_BASE - SYSTEM_BIOS_BASE
    return build_system_bios()[start : start + LOW_ZONE_SIZE]


@dataclass(frozen=True)
class BiosTables:
    """The MP and ACPI tables SeaBIOS leaves for ``ram_size`` bytes of RAM: the pieces that go
    into the F-segment (the RSDP, the MP floating pointer and configuration table) and into
    the reserved last 128 KiB of RAM (the other ACPI tables), as (address, bytes)."""

    fseg: tuple[tuple[int, bytes], ...]
    ram: tuple[tuple[int, bytes], ...]
    layout: acpi.AcpiLayout  # where each ACPI table went

    @property
    def rsdp(self) -> bytes:
        """The RSDP's 20 bytes, as GRUB copies them into the Multiboot2 information."""
        return self.layout.table_at(self.layout.rsdp)


@functools.lru_cache(maxsize=8)
def bios_tables(ram_size: int) -> BiosTables:
    """The tables at QEMU's places: the RSDP at 0xF59D0, the MP tables at 0xF5BA0/0xF5BB0, the
    ACPI tables from ``acpi.tables_base_for(ram_size)`` (RAM ends below 4 GiB here)."""
    layout = acpi.layout_acpi_tables(acpi.RSDP_ADDRESS, acpi.tables_base_for(ram_size))
    fseg = [(a, d) for a, d in layout.pieces if a == layout.rsdp] + mp_table.build_mp_tables()
    ram = tuple((a, d) for a, d in layout.pieces if a != layout.rsdp)
    return BiosTables(tuple(sorted(fseg)), ram, layout)


@functools.lru_cache(maxsize=8)
def rom_regions(ram_size: int | None = None) -> tuple[tuple[int, bytes, str], ...]:
    """Read-only memory: (base, bytes, name); writes are dropped, as QEMU's PAM read-only shadow
    and its pc.bios ROM do. Every base and size is a multiple of 4 KiB. With ``ram_size``, the
    F-segment holds the tables of ``bios_tables(ram_size)`` (the RSDP names the RSDT, which
    moves with the end of RAM); without, it holds none."""
    tables = bios_tables(ram_size).fseg if ram_size is not None else ()
    system = build_system_bios(tables)
    e_readonly = LOW_ZONE_BASE - SYSTEM_BIOS_BASE
    return (
        (
            VIDEO_BIOS_BASE,
            build_video_bios().ljust(VIDEO_BIOS_WINDOW, b"\x00"),
            "video BIOS (option ROM)",
        ),
        (
            OPTION_ROM_FREE_BASE,
            bytes(SYSTEM_BIOS_BASE - OPTION_ROM_FREE_BASE),
            "option-ROM space, unused",
        ),
        (SYSTEM_BIOS_BASE, system[:e_readonly], "system BIOS, E-segment (read-only part)"),
        (FSEG_BASE, system[0x10000:], "system BIOS, F-segment"),
        (BIOS_FLASH_BASE, build_bios_flash(), "BIOS flash"),
    )


# Writable RAM the firmware leaves with contents above 640 KiB: (base, bytes, name).
UPPER_RAM_REGIONS: list[tuple[int, bytes, str]] = [
    (
        VAPIC_ROM_BASE,
        build_vapic_rom().ljust(VAPIC_RAM_SIZE, b"\x00"),
        "kvmvapic option ROM (QEMU's, inert under TCG)",
    ),
    (LOW_ZONE_BASE, build_low_zone(), "BIOS low-memory zone"),
]


def firmware_ram_areas(ram_size: int, ticks: int = 0) -> list[tuple[int, bytes, str]]:
    """What the firmware leaves in conventional RAM: (base, bytes, name) of the IVT, the BDA
    and the EBDA, to be written into RAM before the boot loader's own state."""
    return [
        (IVT_BASE, build_ivt(), "real-mode interrupt vector table"),
        (BDA_BASE, build_bda(ram_size, ticks), "BIOS data area"),
        (EBDA_BASE, build_ebda(), "extended BIOS data area"),
    ]


def vga_text_at_handover() -> bytes:
    """The 32 KiB at 0xB8000 as the kernel finds them: 16384 blank cells, attribute 07h."""
    return VGA_TEXT_CELL_AT_HANDOVER * (VGA_TEXT_SIZE // 2)


@dataclass(frozen=True)
class AddressRange:
    """One range of the physical address space: [base, end), what it is, and its name."""

    base: int
    end: int
    kind: str  # "ram", "rom", "mmio" or "unassigned"
    name: str
    writable: bool


def physical_address_map(ram_size: int) -> tuple[AddressRange, ...]:
    """The physical address space of QEMU's pc machine (i440FX, -vga std) with ``ram_size``
    bytes of RAM (up to 3 GiB: all of it below 4 GiB), measured with ``info mtree -f``.

    MMIO ranges are listed as QEMU has them; modelling them is the devices' business. Anything
    not listed up to 2**52 is unassigned: it reads ``UNASSIGNED_READ_VALUE`` at every size and
    drops writes."""
    if not MIB <= ram_size <= 3 << 30:
        raise ValueError(f"RAM size {ram_size} is outside 1 MiB - 3 GiB")
    ranges = [
        AddressRange(0, VGA_WINDOW_BASE, "ram", "conventional memory (IVT, BDA, EBDA)", True),
        AddressRange(VGA_WINDOW_BASE, VGA_WINDOW_END, "mmio", "VGA window", True),
        AddressRange(VIDEO_BIOS_BASE, VAPIC_ROM_BASE, "rom", "video BIOS", False),
        AddressRange(VAPIC_ROM_BASE, OPTION_ROM_FREE_BASE, "ram", "kvmvapic option ROM", True),
        AddressRange(OPTION_ROM_FREE_BASE, LOW_ZONE_BASE, "rom", "option-ROM space", False),
        AddressRange(LOW_ZONE_BASE, FSEG_BASE, "ram", "BIOS low-memory zone", True),
        AddressRange(FSEG_BASE, 0x100000, "rom", "system BIOS F-segment", False),
        AddressRange(0x100000, ram_size, "ram", "extended memory", True),
        AddressRange(0xFD000000, 0xFE000000, "mmio", "VGA framebuffer (PCI BAR 0)", True),
        AddressRange(0xFEBF0000, 0xFEBF1000, "mmio", "VGA MMIO registers (PCI BAR 2)", True),
        AddressRange(0xFEC00000, 0xFEC01000, "mmio", "I/O APIC", True),
        AddressRange(0xFED00000, 0xFED00400, "mmio", "HPET", True),
        AddressRange(0xFEE00000, 0xFEF00000, "mmio", "local APIC / MSI", True),
        AddressRange(BIOS_FLASH_BASE, 1 << 32, "rom", "BIOS flash", False),
    ]
    out: list[AddressRange] = []
    at = 0
    for r in ranges:
        if r.base > at:
            out.append(AddressRange(at, r.base, "unassigned", "nothing", False))
        out.append(r)
        at = r.end
    out.append(AddressRange(at, 1 << 52, "unassigned", "nothing (above 4 GiB)", False))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# SeaBIOS's tables (the MP and ACPI ones are built: ``bios_tables``)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BiosTable:
    """A table SeaBIOS leaves in the F-segment: signature, address, and the bytes it takes."""

    signature: bytes
    address: int
    size: int
    what: str


# Measured at 128 MiB; the addresses are the same at 32 MiB and 1 GiB (the RSDT address inside
# the RSDP follows the top of RAM).
SEABIOS_TABLES: tuple[BiosTable, ...] = (
    BiosTable(b"RSD PTR ", 0xF59D0, 20, "ACPI 1.0 RSDP; the RSDT is in the last 128 KiB of RAM"),
    BiosTable(b"_SM_", 0xF59F0, 31, "SMBIOS 2.8 entry point"),
    BiosTable(b"", 0xF5A10, 0x184, "SMBIOS structure table (9 structures)"),
    BiosTable(b"_MP_", 0xF5BA0, 16, "MP floating pointer"),
    BiosTable(b"PCMP", 0xF5BB0, 0xC8, "MP configuration table"),
    BiosTable(b"$PIR", 0xF5C80, 0x80, "PCI IRQ routing table"),
    BiosTable(b"$PnP", 0xF6060, 0x21, "PnP BIOS installation check header"),
)
