"""The VESA BIOS Extensions of QEMU 7.2's standard VGA: SeaVGABIOS 1.16.1 driving the Bochs
VBE ("DISPI") interface, as measured with images/video under qemu-ref (GRUB 2.06 copies the
controller and mode information blocks into the boot information, byte for byte).

Pure data and functions, no guest state:

- ``MODES``: every mode the BIOS offers, in the order of its mode list (the VBE modes that fit
  the 16 MiB of video memory, then the standard VGA modes); ``find_mode(number)`` looks one up
  (the VBE flag bits 9-15 of a 4F01/4F02 request are ignored, as the BIOS ignores them).
- ``controller_info(segment, offset)``: the 256 bytes 4F00 writes at ES:DI (a VbeInfoBlock: the
  mode list lives in its own reserved area, so its pointer depends on where the block is). The
  BIOS leaves the rest of a 512-byte VBE 2.0 buffer as it was.
- ``mode_info(number)``: the 256-byte ModeInfoBlock of 4F01, or None for a mode the BIOS does
  not know (it then returns AX=014Fh).
- ``VideoMode``: a mode's geometry, memory model, scan line length and colour layout, which the
  display and the boot loader use.
- ``ROM_STRINGS``: the OEM strings the controller information points to, in the video BIOS at
  segment C000h.

Status codes (AX after the call): 004Fh success, 014Fh failure, 0100h a function the BIOS does
not implement (4F0Ah protected-mode interface, 4F11h flat panel, ...).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

# Where QEMU's standard VGA maps its BAR 0 (the linear framebuffer) under SeaBIOS, and the
# video memory it has by default (vgamem_mb=16).
LFB_ADDRESS = 0xFD000000
VIDEO_MEMORY = 16 * 1024 * 1024
VBE_VERSION = 0x0300
CAPABILITIES = 0x0001  # the DAC can be switched to 8 bits per primary
WINDOW_GRANULARITY_KB = 64
WINDOW_SIZE_KB = 64

STATUS_OK = 0x004F
STATUS_FAILED = 0x014F
STATUS_UNSUPPORTED = 0x0100

# Mode number flags (4F02 BX): bit 14 selects the linear framebuffer, bit 15 keeps the video
# memory; bits 9-15 are masked off when the BIOS looks a mode up.
MODE_FLAGS_MASK = 0xFE00
MODE_LINEAR = 0x4000
MODE_KEEP_MEMORY = 0x8000

VIDEO_BIOS_SEGMENT = 0xC000
# The video BIOS's strings (offsets in segment C000h, measured: the pointers of 4F00).
ROM_STRINGS = (
    (0x5A30, b"SeaBIOS VBE(C) 2011\0"),
    (0x5A44, b"SeaBIOS Developers\0"),
    (0x5A57, b"SeaBIOS VBE Adapter\0"),
    (0x5A6B, b"Rev. 1\0"),
)
OEM_STRING, VENDOR_STRING, PRODUCT_STRING, REVISION_STRING = (o for o, _s in ROM_STRINGS)
# The window function (4F05 entry) of ModeInfoBlock.WinFuncPtr, C000:56E3 (measured).
WINDOW_FUNCTION_OFFSET = 0x56E3

# Where the mode list starts inside the VbeInfoBlock (its reserved area) and how many entries
# fit there (the BIOS keeps the last word for the 0xFFFF terminator).
MODE_LIST_OFFSET = 0x22
MODE_LIST_SLOTS = 110


class MemoryModel(IntEnum):
    TEXT = 0
    CGA = 1
    HERCULES = 2
    PLANAR = 3
    PACKED = 4  # packed pixel: 8 bpp, indexed through the DAC
    NONCHAIN4 = 5
    DIRECT = 6  # direct colour: 15/16/24/32 bpp
    YUV = 7


@dataclass(frozen=True)
class ColourLayout:
    """Bit positions and sizes of each component of a direct-colour pixel."""

    red_size: int
    red_pos: int
    green_size: int
    green_pos: int
    blue_size: int
    blue_pos: int
    reserved_size: int = 0
    reserved_pos: int = 0


NO_COLOUR_LAYOUT = ColourLayout(0, 0, 0, 0, 0, 0)
COLOUR_LAYOUTS = {
    15: ColourLayout(5, 10, 5, 5, 5, 0, 1, 15),
    16: ColourLayout(5, 11, 6, 5, 5, 0),
    24: ColourLayout(8, 16, 8, 8, 8, 0),
    32: ColourLayout(8, 16, 8, 8, 8, 0, 8, 24),
}


@dataclass(frozen=True)
class VideoMode:
    number: int
    model: MemoryModel
    width: int  # pixels, or characters in a text mode
    height: int
    depth: int  # bits per pixel as the mode table gives it (15 for 5:5:5)
    char_width: int
    char_height: int
    segment: int  # the window's real-mode segment: A000h, B800h or B000h

    @property
    def pixel_bits(self) -> int:
        """Bits of video memory a pixel takes per plane (a text cell is 16)."""
        if self.model == MemoryModel.TEXT:
            return 16
        if self.model == MemoryModel.PLANAR:
            return 1
        return (self.depth + 7) & ~7 if self.depth > 8 else self.depth

    @property
    def bytes_per_pixel(self) -> int:
        return (self.depth + 7) // 8

    @property
    def line_size(self) -> int:
        """Bytes per scan line (ModeInfoBlock.BytesPerScanLine)."""
        return (self.width * self.pixel_bits + 7) // 8

    @property
    def memory_ratio(self) -> int:
        """Video memory per byte of a line, as the BIOS counts it (planes, text attributes)."""
        if self.model == MemoryModel.TEXT:
            return 2
        if self.model == MemoryModel.CGA:
            return 4 // self.depth
        if self.model == MemoryModel.PLANAR:
            return 4
        return 1

    @property
    def linear(self) -> bool:
        """Whether the mode has a linear framebuffer (packed pixel and direct colour)."""
        return self.model not in (MemoryModel.TEXT, MemoryModel.CGA, MemoryModel.PLANAR)

    @property
    def graphics(self) -> bool:
        return self.model != MemoryModel.TEXT

    @property
    def colour(self) -> bool:
        return self.segment != SEG_MONO_TEXT

    @property
    def colours(self) -> ColourLayout:
        return COLOUR_LAYOUTS.get(self.depth, NO_COLOUR_LAYOUT)

    @property
    def label(self) -> str:
        kind = "text" if self.model == MemoryModel.TEXT else f"{self.depth} bpp"
        return f"mode 0x{self.number:x} ({self.width}x{self.height}, {kind})"


SEG_GRAPHICS, SEG_COLOUR_TEXT, SEG_MONO_TEXT = 0xA000, 0xB800, 0xB000

# SeaVGABIOS's Bochs VBE mode table (vgasrc/svgamodes.c): number, memory model, width, height,
# depth. All have 8x16 characters and their window at A000h.
_P, _L, _D = MemoryModel.PACKED, MemoryModel.PLANAR, MemoryModel.DIRECT
_VBE_TABLE = (
    (0x100, _P, 640, 400, 8), (0x101, _P, 640, 480, 8), (0x102, _L, 800, 600, 4),
    (0x103, _P, 800, 600, 8), (0x104, _L, 1024, 768, 4), (0x105, _P, 1024, 768, 8),
    (0x106, _L, 1280, 1024, 4), (0x107, _P, 1280, 1024, 8),
    (0x10D, _D, 320, 200, 15), (0x10E, _D, 320, 200, 16), (0x10F, _D, 320, 200, 24),
    (0x110, _D, 640, 480, 15), (0x111, _D, 640, 480, 16), (0x112, _D, 640, 480, 24),
    (0x113, _D, 800, 600, 15), (0x114, _D, 800, 600, 16), (0x115, _D, 800, 600, 24),
    (0x116, _D, 1024, 768, 15), (0x117, _D, 1024, 768, 16), (0x118, _D, 1024, 768, 24),
    (0x119, _D, 1280, 1024, 15), (0x11A, _D, 1280, 1024, 16), (0x11B, _D, 1280, 1024, 24),
    (0x11C, _P, 1600, 1200, 8), (0x11D, _D, 1600, 1200, 15), (0x11E, _D, 1600, 1200, 16),
    (0x11F, _D, 1600, 1200, 24),
    (0x140, _D, 320, 200, 32), (0x141, _D, 640, 400, 32), (0x142, _D, 640, 480, 32),
    (0x143, _D, 800, 600, 32), (0x144, _D, 1024, 768, 32), (0x145, _D, 1280, 1024, 32),
    (0x146, _P, 320, 200, 8), (0x147, _D, 1600, 1200, 32), (0x148, _P, 1152, 864, 8),
    (0x149, _D, 1152, 864, 15), (0x14A, _D, 1152, 864, 16), (0x14B, _D, 1152, 864, 24),
    (0x14C, _D, 1152, 864, 32),
    (0x175, _D, 1280, 768, 16), (0x176, _D, 1280, 768, 24), (0x177, _D, 1280, 768, 32),
    (0x178, _D, 1280, 800, 16), (0x179, _D, 1280, 800, 24), (0x17A, _D, 1280, 800, 32),
    (0x17B, _D, 1280, 960, 16), (0x17C, _D, 1280, 960, 24), (0x17D, _D, 1280, 960, 32),
    (0x17E, _D, 1440, 900, 16), (0x17F, _D, 1440, 900, 24), (0x180, _D, 1440, 900, 32),
    (0x181, _D, 1400, 1050, 16), (0x182, _D, 1400, 1050, 24), (0x183, _D, 1400, 1050, 32),
    (0x184, _D, 1680, 1050, 16), (0x185, _D, 1680, 1050, 24), (0x186, _D, 1680, 1050, 32),
    (0x187, _D, 1920, 1200, 16), (0x188, _D, 1920, 1200, 24), (0x189, _D, 1920, 1200, 32),
    (0x18A, _D, 2560, 1600, 16), (0x18B, _D, 2560, 1600, 24), (0x18C, _D, 2560, 1600, 32),
    (0x18D, _D, 1280, 720, 16), (0x18E, _D, 1280, 720, 24), (0x18F, _D, 1280, 720, 32),
    (0x190, _D, 1920, 1080, 16), (0x191, _D, 1920, 1080, 24), (0x192, _D, 1920, 1080, 32),
    (0x193, _D, 1600, 900, 16), (0x194, _D, 1600, 900, 24), (0x195, _D, 1600, 900, 32),
    (0x196, _D, 2560, 1440, 16), (0x197, _D, 2560, 1440, 24), (0x198, _D, 2560, 1440, 32),
    (0x199, _D, 3840, 2160, 16), (0x19A, _D, 3840, 2160, 32), (0x19B, _D, 4096, 2160, 16),
    (0x19C, _D, 4096, 2160, 32), (0x19D, _D, 5120, 2160, 16), (0x19E, _D, 5120, 2160, 32),
)  # fmt: skip

# The standard VGA modes (vgasrc/stdvgamodes.c): number, model, width, height (characters in
# text modes), depth, character cell, window segment.
_T, _C = MemoryModel.TEXT, MemoryModel.CGA
_VGA_TABLE = (
    (0x00, _T, 40, 25, 4, 9, 16, SEG_COLOUR_TEXT), (0x01, _T, 40, 25, 4, 9, 16, SEG_COLOUR_TEXT),
    (0x02, _T, 80, 25, 4, 9, 16, SEG_COLOUR_TEXT), (0x03, _T, 80, 25, 4, 9, 16, SEG_COLOUR_TEXT),
    (0x04, _C, 320, 200, 2, 8, 8, SEG_COLOUR_TEXT), (0x05, _C, 320, 200, 2, 8, 8, SEG_COLOUR_TEXT),
    (0x06, _C, 640, 200, 1, 8, 8, SEG_COLOUR_TEXT), (0x07, _T, 80, 25, 4, 9, 16, SEG_MONO_TEXT),
    (0x0D, _L, 320, 200, 4, 8, 8, SEG_GRAPHICS), (0x0E, _L, 640, 200, 4, 8, 8, SEG_GRAPHICS),
    (0x0F, _L, 640, 350, 1, 8, 14, SEG_GRAPHICS), (0x10, _L, 640, 350, 4, 8, 14, SEG_GRAPHICS),
    (0x11, _L, 640, 480, 1, 8, 16, SEG_GRAPHICS), (0x12, _L, 640, 480, 4, 8, 16, SEG_GRAPHICS),
    (0x13, _P, 320, 200, 8, 8, 8, SEG_GRAPHICS), (0x6A, _L, 800, 600, 4, 8, 16, SEG_GRAPHICS),
)  # fmt: skip

# QEMU's DISPI limits (VBE_DISPI_MAX_XRES, VBE_DISPI_MAX_BPP): the BIOS drops modes beyond them.
DISPI_MAX_XRES = 16000
DISPI_MAX_BPP = 32


def _fits(mode: VideoMode, video_memory: int) -> bool:
    needed = mode.height * mode.line_size * mode.memory_ratio
    return mode.width <= DISPI_MAX_XRES and mode.depth <= DISPI_MAX_BPP and needed <= video_memory


def vbe_modes(video_memory: int = VIDEO_MEMORY) -> tuple[VideoMode, ...]:
    """The Bochs VBE modes the BIOS keeps at start-up: those that fit the video memory."""
    modes = (VideoMode(n, m, w, h, d, 8, 16, SEG_GRAPHICS) for n, m, w, h, d in _VBE_TABLE)
    return tuple(m for m in modes if _fits(m, video_memory))


VGA_MODES = tuple(VideoMode(*row) for row in _VGA_TABLE)
MODES = vbe_modes() + VGA_MODES  # the mode list's order
_BY_NUMBER = {m.number: m for m in MODES}


def find_mode(number: int) -> VideoMode | None:
    """The mode a 4F01/4F02 request names, its flag bits ignored; None if the BIOS has none."""
    return _BY_NUMBER.get(number & ~MODE_FLAGS_MASK)


def mode_numbers() -> tuple[int, ...]:
    """The mode list of 4F00, without its 0xFFFF terminator."""
    return tuple(m.number for m in MODES)[:MODE_LIST_SLOTS]


def _segoff(segment: int, offset: int) -> int:
    return segment << 16 | offset


def controller_info(segment: int, offset: int) -> bytes:
    """The 256 bytes of the VbeInfoBlock that 4F00 writes at ``segment``:``offset`` (ES:DI).
    The mode list pointer leads into the block itself (offset + 0x22)."""
    head = b"VESA" + struct.pack(
        "<HIIIHHIII",
        VBE_VERSION,
        _segoff(VIDEO_BIOS_SEGMENT, OEM_STRING),
        CAPABILITIES,
        _segoff(segment, (offset + MODE_LIST_OFFSET) & 0xFFFF),
        VIDEO_MEMORY // 0x10000,
        0,  # OEM software revision
        _segoff(VIDEO_BIOS_SEGMENT, VENDOR_STRING),
        _segoff(VIDEO_BIOS_SEGMENT, PRODUCT_STRING),
        _segoff(VIDEO_BIOS_SEGMENT, REVISION_STRING),
    )
    numbers = mode_numbers()
    modes = struct.pack(f"<{len(numbers) + 1}H", *numbers, 0xFFFF)
    return (head + modes).ljust(256, b"\0")


# ModeInfoBlock.ModeAttributes bits
ATTR_SUPPORTED = 0x0001
ATTR_EXTENDED_INFO = 0x0002
ATTR_TTY = 0x0004
ATTR_COLOUR = 0x0008
ATTR_GRAPHICS = 0x0010
ATTR_NOT_VGA_COMPATIBLE = 0x0020
ATTR_LINEAR = 0x0080
DIRECTCOLOUR_RESERVED_USABLE = 0x02


def mode_attributes(mode: VideoMode) -> int:
    attributes = (
        ATTR_SUPPORTED | ATTR_EXTENDED_INFO | ATTR_COLOUR | ATTR_GRAPHICS | ATTR_NOT_VGA_COMPATIBLE
    )
    if mode.model == MemoryModel.TEXT:
        attributes = (attributes & ~ATTR_GRAPHICS) | ATTR_TTY
        if not mode.colour:
            attributes &= ~ATTR_COLOUR
    elif mode.linear:
        attributes |= ATTR_LINEAR
    return attributes


def image_pages(mode: VideoMode, video_memory: int = VIDEO_MEMORY) -> int:
    """ModeInfoBlock.NumberOfImagePages: how many more screens the video memory holds."""
    screen = (mode.height * mode.line_size + 0xFFFF) & ~0xFFFF
    pages = video_memory // screen
    if mode.model in (MemoryModel.TEXT, MemoryModel.CGA):
        pages = 1
    elif mode.model == MemoryModel.PLANAR:
        pages //= 4
    pages = min(pages, 128)
    if pages < 2:
        pages += 1
    return pages - 1


def mode_info(number: int, video_memory: int = VIDEO_MEMORY) -> bytes | None:
    """The 256-byte ModeInfoBlock 4F01 writes for ``number``, or None (status 014Fh)."""
    mode = find_mode(number)
    if mode is None:
        return None
    info = bytearray(256)
    c = mode.colours
    struct.pack_into(
        "<HBBHHHHIH", info, 0x00, mode_attributes(mode),
        0x07, 0,  # window A relocatable, readable, writable; no window B
        WINDOW_GRANULARITY_KB, WINDOW_SIZE_KB, mode.segment, 0,
        _segoff(VIDEO_BIOS_SEGMENT, WINDOW_FUNCTION_OFFSET), mode.line_size,
    )  # fmt: skip
    struct.pack_into(
        "<HHBBBBBBBBB", info, 0x12, mode.width, mode.height, mode.char_width, mode.char_height,
        4 if mode.model == MemoryModel.PLANAR else 1, mode.depth,
        2 if mode.model == MemoryModel.CGA else 1, mode.model,
        8 if mode.model == MemoryModel.CGA else 0, image_pages(mode, video_memory), 1,
    )  # fmt: skip
    colour_fields = (c.red_size, c.red_pos, c.green_size, c.green_pos, c.blue_size, c.blue_pos,
                     c.reserved_size, c.reserved_pos)  # fmt: skip
    struct.pack_into("<8B", info, 0x1F, *colour_fields)
    if mode.depth == 32:
        info[0x27] = DIRECTCOLOUR_RESERVED_USABLE
    if mode.linear:
        struct.pack_into("<I", info, 0x28, LFB_ADDRESS)
        struct.pack_into("<HBB8B", info, 0x32, mode.line_size, 0, 0, *colour_fields)
    return bytes(info)
