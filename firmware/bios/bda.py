"""The BIOS data area (segment 40h) as the services read and write it, through the bus."""

from __future__ import annotations

from .regs import BiosBus

BDA = 0x400

# offsets from 0x400 (SeaBIOS's struct bios_data_area_s)
EQUIPMENT = 0x10
MEMORY_KIB = 0x13
KBD_FLAG0 = 0x17  # shift flags (word)
KBD_HEAD = 0x1A
KBD_TAIL = 0x1C
FLOPPY_RECALIBRATION = 0x3E
FLOPPY_LAST_STATUS = 0x41
VIDEO_MODE = 0x49
VIDEO_COLS = 0x4A
VIDEO_PAGESIZE = 0x4C
VIDEO_PAGESTART = 0x4E
CURSOR_POS = 0x50  # 8 words, one per page: row << 8 | column
CURSOR_TYPE = 0x60
VIDEO_PAGE = 0x62
CRTC_ADDRESS = 0x63
TIMER_COUNTER = 0x6C
TIMER_ROLLOVER = 0x70
DISK_LAST_STATUS = 0x74
KBD_BUF_START = 0x80
KBD_BUF_END = 0x82
VIDEO_ROWS = 0x84
CHAR_HEIGHT = 0x85
VIDEO_CTL = 0x87
VIDEO_SWITCHES = 0x88
MODESET_CTL = 0x89
DCC_INDEX = 0x8A
DISK_INTERRUPT_FLAG = 0x8E
KBD_FLAG1 = 0x96
KBD_LED = 0x97
VBE_MODE = 0xBA  # SeaVGABIOS's private word: the current mode and its flags
EBDA_SEGMENT = 0x0E


class Bda:
    """Byte and word access to the BIOS data area."""

    def __init__(self, bus: BiosBus) -> None:
        self.bus = bus

    def u8(self, offset: int) -> int:
        return self.bus.read(BDA + offset, 1)[0]

    def u16(self, offset: int) -> int:
        return int.from_bytes(self.bus.read(BDA + offset, 2), "little")

    def u32(self, offset: int) -> int:
        return int.from_bytes(self.bus.read(BDA + offset, 4), "little")

    def set8(self, offset: int, value: int) -> None:
        self.bus.write(BDA + offset, bytes((value & 0xFF,)))

    def set16(self, offset: int, value: int) -> None:
        self.bus.write(BDA + offset, (value & 0xFFFF).to_bytes(2, "little"))

    def set32(self, offset: int, value: int) -> None:
        self.bus.write(BDA + offset, (value & 0xFFFFFFFF).to_bytes(4, "little"))


def ivt_entry(bus: BiosBus, vector: int) -> tuple[int, int]:
    """(segment, offset) of an IVT entry."""
    raw = bus.read(4 * vector, 4)
    return int.from_bytes(raw[2:], "little"), int.from_bytes(raw[:2], "little")


def set_ivt_entry(bus: BiosBus, vector: int, segment: int, offset: int) -> None:
    bus.write(4 * vector, offset.to_bytes(2, "little") + segment.to_bytes(2, "little"))


def cmos_read(bus: BiosBus, index: int) -> int:
    """A CMOS register, read as SeaBIOS's rtc_read does (NMI disabled while selected)."""
    bus.outb(0x70, index | 0x80)
    return bus.inb(0x71)


def cmos_write(bus: BiosBus, index: int, value: int) -> None:
    bus.outb(0x70, index | 0x80)
    bus.outb(0x71, value & 0xFF)


def pic_eoi_master(bus: BiosBus) -> None:
    bus.outb(0x20, 0x20)


def pic_eoi_slave(bus: BiosBus) -> None:
    bus.outb(0xA0, 0x20)
    bus.outb(0x20, 0x20)
