"""VGA in text mode 3 (80x25): the registers kernels touch, and the screen as text, ANSI, cells
and a real 720x400 picture.

The character cells live in guest RAM at 0xB8000 and are read from the machine's RAM buffer
when rendering: no memory hooks. The device owns the register files, decoded at ports
0x3B0-0x3DF (one range, ``read``/``write`` offsets relative to 0x3B0):

  0x3B4/0x3B5 or 0x3D4/0x3D5  CRTC index/data (mono or colour address, misc output bit 0)
  0x3BA or 0x3DA              input status 1 (retrace bits; resets the attribute flip-flop)
  0x3C0/0x3C1                 attribute controller (index/data flip-flop) / read data
  0x3C2 (write) / 0x3CC (read) misc output; 0x3C2 (read) input status 0
  0x3BA or 0x3DA (write) / 0x3CA (read) feature control
  0x3C4/0x3C5                 sequencer index/data
  0x3C6                       DAC pixel mask
  0x3C7/0x3C8/0x3C9           DAC read index (write) or state (read) / write index / data
  0x3CE/0x3CF                 graphics controller index/data

References: IBM VGA Technical Reference; OSDev "VGA Hardware" and "Text Mode Cursor".
The retrace bits follow virtual time (70 Hz frames, 31.5 kHz lines), so polling loops end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import numpy as np

from .cp437_font import GLYPHS

if TYPE_CHECKING:
    import os

    from PIL import Image

log = logging.getLogger(__name__)

BASE = 0x3B0
SPAN = 0x30
TEXT_BASE = 0xB8000
COLS, ROWS = 80, 25
CELL_W, CELL_H = 9, 16  # mode 3: 9-dot characters, 16 scan lines

# CRTC registers (index)
CRTC_OVERFLOW = 0x07
CRTC_MAX_SCAN_LINE = 0x09  # bits 0-4: character height - 1
CRTC_CURSOR_START = 0x0A  # bits 0-4 first scan line, bit 5 cursor disabled
CRTC_CURSOR_END = 0x0B
CRTC_START_HIGH = 0x0C
CRTC_START_LOW = 0x0D
CRTC_CURSOR_HIGH = 0x0E
CRTC_CURSOR_LOW = 0x0F
CRTC_VRETRACE_END = 0x11  # bit 7: registers 0-7 write-protected
CRTC_OFFSET = 0x13  # words per row / 2
CRTC_UNDERLINE = 0x14  # bits 0-4: underline scan line (0x1F in mode 3: none)
CURSOR_DISABLE = 0x20
CRTC_PROTECT = 0x80
OVERFLOW_LINE_COMPARE_8 = 0x10  # the one bit of 0x07 the protection leaves writable

MISC_IO_COLOR = 0x01  # misc output bit 0: CRTC at 0x3Dx (else 0x3Bx)
ATTR_PAS = 0x20  # index bit 5, palette address source: clear = palette loading, screen blank
ATTR_MODE = 0x10  # attribute controller mode control
ATTR_MODE_GRAPHICS = 0x01  # bit 0: graphics (not text) mode
ATTR_MODE_LGE = 0x04  # bit 2: line-graphics enable (9th column of 0xC0-0xDF)
ATTR_MODE_BLINK = 0x08  # bit 3: attribute bit 7 blinks (else: bright background)
ATTR_MODE_P54S = 0x80  # bit 7: palette bits 5-4 come from the colour select register
ATTR_OVERSCAN = 0x11
ATTR_COLOR_SELECT = 0x14

SEQ_CLOCKING_MODE = 0x01
SEQ_8DOT = 0x01  # clocking mode bit 0: 8-dot characters (else 9)
SEQ_SCREEN_OFF = 0x20  # clocking mode bit 5: screen disabled
GC_MISC = 0x06
GC_GRAPHICS = 0x01  # misc bit 0: graphics mode addressing

# input status 0: bit 7 a vertical retrace interrupt pending (never: not modelled), bit 4 the
# monitor sense comparator (0, as QEMU reads it)
INPUT_STATUS_0 = 0x00
FEATURE_CONTROL_BITS = 0x0B  # FC0, FC1 and the vertical sync select; the rest reads 0
STATUS_DISPLAY_DISABLED = 0x01  # input status 1 bit 0: horizontal or vertical blanking
STATUS_VRETRACE = 0x08  # bit 3: vertical retrace

FRAME_NS = 1_000_000_000 // 70  # 70 Hz in the 400-line modes
VRETRACE_NS = FRAME_NS * 2 // 449  # 2 of 449 lines
LINE_NS = FRAME_NS // 449  # 31.5 kHz
HBLANK_NS = LINE_NS // 5

# Register values after a BIOS mode 3 set (IBM VGA Technical Reference, mode 3+ tables).
MODE3_CRTC = bytes.fromhex("5f4f50825581bf1f004f0d0e000000009c8e8f28 1f96b9a3ff".replace(" ", ""))
MODE3_ATTR = bytes.fromhex("00010203040514073839 3a3b3c3d3e3f 0c000f0800".replace(" ", ""))
MODE3_SEQ = bytes.fromhex("0300030002")
MODE3_GC = bytes.fromhex("000000000010 0e00ff".replace(" ", ""))
MODE3_MISC = 0x67

# The 16 EGA colours as 6-bit DAC values (and the default 256-entry DAC: first 64 = EGA set).
EGA_RGB6 = [
    (0, 0, 0), (0, 0, 42), (0, 42, 0), (0, 42, 42), (42, 0, 0), (42, 0, 42), (42, 21, 0),
    (42, 42, 42), (21, 21, 21), (21, 21, 63), (21, 63, 21), (21, 63, 63), (63, 21, 21),
    (63, 21, 63), (63, 63, 21), (63, 63, 63),
]  # fmt: skip
ANSI_FG = [30, 34, 32, 36, 31, 35, 33, 37, 90, 94, 92, 96, 91, 95, 93, 97]
ANSI_BG = [40, 44, 42, 46, 41, 45, 43, 47, 100, 104, 102, 106, 101, 105, 103, 107]

# The font as one bit per pixel: FONT_BITS[code, scan line, column] for columns 0-7.
FONT_BITS = np.unpackbits(np.frombuffer(b"".join(GLYPHS), np.uint8).reshape(256, CELL_H, 1), axis=2)
LINE_DRAWING = np.zeros(256, bool)
LINE_DRAWING[0xC0:0xE0] = True  # the codes whose 9th column repeats the 8th


def _widen(v: int) -> int:
    """A 6-bit DAC component as QEMU's display shows it: shifted left by 2, bit 0 copied into
    bits 1 and 0 (0x2A -> 0xA8, 0x15 -> 0x57, 0x3F -> 0xFF; measured with QEMU's screendump)."""
    v &= 0x3F
    return (v << 2) | (v & 1) << 1 | (v & 1)


def _default_dac() -> list[list[int]]:
    dac = [[0, 0, 0] for _ in range(256)]
    for i in range(64):  # the EGA 64-colour set the BIOS loads: rgbRGB bits
        r = 42 * ((i >> 2) & 1) + 21 * ((i >> 5) & 1)
        g = 42 * ((i >> 1) & 1) + 21 * ((i >> 4) & 1)
        b = 42 * (i & 1) + 21 * ((i >> 3) & 1)
        dac[i] = [r, g, b]
    return dac


CP437 = [bytes([i]).decode("cp437") for i in range(256)]
CP437_GRAPHIC = " ☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼"


def cp437_char(code: int) -> str:
    """The character a VGA shows for a byte (control codes are pictures in CP437)."""
    if code < 32:
        return CP437_GRAPHIC[code] if code else " "
    if code == 127:
        return "⌂"
    return CP437[code]


@dataclass(frozen=True)
class Cell:
    char: str
    fg: int  # 0-15 (attribute foreground)
    bg: int  # 0-15 with bright backgrounds, 0-7 when blinking is on
    blink: bool


class VgaText:
    """Text-mode VGA. ``ram`` is the machine's RAM buffer; ``now_ns`` the virtual clock."""

    def __init__(self, ram: np.ndarray, now_ns: Callable[[], int] = lambda: 0) -> None:
        self.ram = ram
        self.now_ns = now_ns
        self._logged: set[str] = set()
        self.reset()

    def reset(self) -> None:
        self.misc_output = MODE3_MISC
        self.crtc_index = 0
        self.crtc = bytearray(MODE3_CRTC.ljust(0x19, b"\0"))
        self.attr_index = ATTR_PAS  # the BIOS ends a mode set with PAS set: the screen shows
        self.attr_flipflop = False  # False: next 0x3C0 write is an index
        self.attr = bytearray(MODE3_ATTR.ljust(0x15, b"\0"))
        self.seq_index = 0
        self.seq = bytearray(MODE3_SEQ)
        self.gc_index = 0
        self.gc = bytearray(MODE3_GC)
        self.dac_mask = 0xFF
        self.feature_control = 0  # FC1/FC0 and vertical sync select: the board's own lines
        self.dac_read_index = 0
        self.dac_write_index = 0
        self.dac_component = 0
        self.dac_state_read = False  # DAC state register: last index write was for reading
        self.dac = _default_dac()

    # -------------------------------------------------------------- registers
    @property
    def color_io(self) -> bool:
        return bool(self.misc_output & MISC_IO_COLOR)

    @property
    def cursor_position(self) -> int:
        return (self.crtc[CRTC_CURSOR_HIGH] << 8) | self.crtc[CRTC_CURSOR_LOW]

    @property
    def start_address(self) -> int:
        return (self.crtc[CRTC_START_HIGH] << 8) | self.crtc[CRTC_START_LOW]

    @property
    def cursor_enabled(self) -> bool:
        return not self.crtc[CRTC_CURSOR_START] & CURSOR_DISABLE

    @property
    def blink_enabled(self) -> bool:
        return bool(self.attr[ATTR_MODE] & ATTR_MODE_BLINK)

    def _note(self, what: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.info("VGA: %s is not modelled", what)

    # ------------------------------------------------------- memory window
    # 0xA0000-0xB7FFF, the part of the VGA window that is not the text cells (those are RAM at
    # 0xB8000). In text mode the graphics controller's memory map (GC 6, bits 3:2 = 3) decodes
    # only 0xB8000-0xBFFFF, so the rest reads all-ones and ignores writes (measured under QEMU,
    # images/probe-openbus). The planes a graphics mode maps here are not modelled.
    def mem_read(self, offset: int, size: int) -> int:
        self._note_window()
        return (1 << (8 * size)) - 1

    def mem_write(self, offset: int, size: int, value: int) -> None:
        self._note_window()

    def _note_window(self) -> None:
        if (self.gc[GC_MISC] >> 2) & 3 != 3:
            self._note("VGA memory at 0xA0000-0xB7FFF (graphics controller memory map "
                       f"{(self.gc[GC_MISC] >> 2) & 3}: the planes of a graphics mode)")  # fmt: skip

    def _input_status(self) -> int:
        self.attr_flipflop = False  # reading input status 1 resets the flip-flop
        t = self.now_ns()
        value = 0
        if t % FRAME_NS >= FRAME_NS - VRETRACE_NS:
            value |= STATUS_VRETRACE | STATUS_DISPLAY_DISABLED
        elif t % LINE_NS >= LINE_NS - HBLANK_NS:
            value |= STATUS_DISPLAY_DISABLED
        return value

    def read(self, offset: int, size: int) -> int:
        port = BASE + offset
        crtc = 0x3D0 if self.color_io else 0x3B0
        if port in (crtc + 4, crtc + 5):
            if port == crtc + 4:
                return self.crtc_index
            return self.crtc[self.crtc_index] if self.crtc_index < len(self.crtc) else 0xFF
        if port == crtc + 0xA:
            return self._input_status()
        if port == 0x3C0:
            # the index, while the flip-flop expects one; 0 while it expects data (QEMU and
            # Bochs; measured under QEMU with images/probe-devices)
            return 0 if self.attr_flipflop else self.attr_index
        if port == 0x3C2:
            return INPUT_STATUS_0
        if port == 0x3CA:
            return self.feature_control
        if port == 0x3C1:
            return (
                self.attr[self.attr_index & 0x1F]
                if (self.attr_index & 0x1F) < len(self.attr)
                else 0xFF
            )
        if port == 0x3CC:
            return self.misc_output
        if port == 0x3C4:
            return self.seq_index
        if port == 0x3C5:
            return self.seq[self.seq_index] if self.seq_index < len(self.seq) else 0xFF
        if port == 0x3CE:
            return self.gc_index
        if port == 0x3CF:
            return self.gc[self.gc_index] if self.gc_index < len(self.gc) else 0xFF
        if port == 0x3C6:
            return self.dac_mask
        if port == 0x3C7:
            return 0x03 if self.dac_state_read else 0x00
        if port == 0x3C8:
            return self.dac_write_index
        if port == 0x3C9:
            value = self.dac[self.dac_read_index][self.dac_component]
            self._dac_advance(read=True)
            return value
        self._note(f"read of port 0x{port:03x}")
        return 0xFF

    def write(self, offset: int, size: int, value: int) -> None:
        port = BASE + offset
        value &= 0xFF
        crtc = 0x3D0 if self.color_io else 0x3B0
        if port == crtc + 4:
            self.crtc_index = value & 0x3F
        elif port == crtc + 5:
            if self.crtc_index < len(self.crtc):
                self._crtc_write(self.crtc_index, value)
            else:
                self._note(f"CRTC register 0x{self.crtc_index:02x}")
        elif port == 0x3C0:
            if not self.attr_flipflop:
                self.attr_index = value & 0x3F
            elif (self.attr_index & 0x1F) < len(self.attr):
                self.attr[self.attr_index & 0x1F] = value
            self.attr_flipflop = not self.attr_flipflop
        elif port == 0x3C2:
            self.misc_output = value
        elif port == crtc + 0xA:
            self.feature_control = value & FEATURE_CONTROL_BITS
        elif port == 0x3C4:
            self.seq_index = value & 0x07
        elif port == 0x3C5:
            if self.seq_index < len(self.seq):
                self.seq[self.seq_index] = value
        elif port == 0x3CE:
            self.gc_index = value & 0x0F
        elif port == 0x3CF:
            if self.gc_index < len(self.gc):
                self.gc[self.gc_index] = value
        elif port == 0x3C6:
            self.dac_mask = value
        elif port == 0x3C7:
            self.dac_read_index, self.dac_component, self.dac_state_read = value, 0, True
        elif port == 0x3C8:
            self.dac_write_index, self.dac_component, self.dac_state_read = value, 0, False
        elif port == 0x3C9:
            self.dac[self.dac_write_index][self.dac_component] = value & 0x3F
            self._dac_advance(read=False)
        else:
            self._note(f"write of port 0x{port:03x}")

    def _crtc_write(self, index: int, value: int) -> None:
        if self.crtc[CRTC_VRETRACE_END] & CRTC_PROTECT and index < 8:
            # the protect bit locks the horizontal/vertical timing registers 0-7, except the
            # line compare bit 8 in the overflow register
            if index != CRTC_OVERFLOW:
                return
            keep = self.crtc[index] & ~OVERFLOW_LINE_COMPARE_8
            value = keep | (value & OVERFLOW_LINE_COMPARE_8)
        self.crtc[index] = value

    def _dac_advance(self, read: bool) -> None:
        self.dac_component += 1
        if self.dac_component == 3:
            self.dac_component = 0
            if read:
                self.dac_read_index = (self.dac_read_index + 1) & 0xFF
            else:
                self.dac_write_index = (self.dac_write_index + 1) & 0xFF

    # -------------------------------------------------------------- screen
    def _row_cells(self) -> int:
        # the offset register counts double words; in text mode a cell is one word
        return self.crtc[CRTC_OFFSET] * 2

    def _screen_bytes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(codes, attributes, cell addresses), each 25x80, from the CRTC start address."""
        addresses = (
            self.start_address
            + np.arange(ROWS)[:, None] * self._row_cells()
            + np.arange(COLS)[None, :]
        ) & 0xFFFF
        offsets = (addresses * 2) & 0x7FFF  # the 32 KiB window at 0xB8000 wraps
        window = self.ram[TEXT_BASE : TEXT_BASE + 0x8000]
        return window[offsets], window[offsets + 1], addresses

    def _note_unmodelled_mode(self) -> None:
        if self.attr[ATTR_MODE] & ATTR_MODE_GRAPHICS or self.gc[GC_MISC] & GC_GRAPHICS:
            self._note("a graphics mode (the screen is still rendered as text)")
        if self.crtc[CRTC_MAX_SCAN_LINE] & 0x1F != CELL_H - 1:
            self._note("a character height other than 16 (rendered with 16 scan lines)")
        if self.crtc[CRTC_CURSOR_END] & 0x60:
            self._note("cursor skew (the cursor is drawn without it)")
        if self.crtc[CRTC_UNDERLINE] & 0x1F < CELL_H:
            self._note("the underline attribute (no underline is drawn)")

    def cells(self) -> list[list[Cell]]:
        """25 rows of 80 cells, from the CRTC start address."""
        codes, attrs, _ = self._screen_bytes()
        blink = self.blink_enabled
        bg_mask = 0x7 if blink else 0xF
        return [
            [
                Cell(cp437_char(ch), at & 0xF, (at >> 4) & bg_mask, blink and at >= 0x80)
                for ch, at in zip(code_row, attr_row, strict=True)
            ]
            for code_row, attr_row in zip(codes.tolist(), attrs.tolist(), strict=True)
        ]

    def text(self) -> str:
        """The screen as plain text: 25 lines, trailing blanks trimmed."""
        lines = ["".join(c.char for c in row).rstrip() for row in self.cells()]
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines)

    def ansi(self) -> str:
        """The screen with ANSI SGR colours, reset at every line end."""
        out = []
        for row in self.cells():
            last = None
            parts = []
            for cell in row:
                key = (cell.fg, cell.bg, cell.blink)
                if key != last:
                    codes = [ANSI_FG[cell.fg], ANSI_BG[cell.bg]] + ([5] if cell.blink else [])
                    parts.append("\x1b[" + ";".join(map(str, codes)) + "m")
                    last = key
                parts.append(cell.char)
            out.append("".join(parts) + "\x1b[0m")
        return "\n".join(out)

    def _dac_rgb(self, index: int) -> tuple[int, int, int]:
        r, g, b = self.dac[index & self.dac_mask]
        return _widen(r), _widen(g), _widen(b)

    def palette_rgb(self) -> list[tuple[int, int, int]]:
        """The 16 attribute colours through the attribute palette and the DAC, 8-bit RGB."""
        select = self.attr[ATTR_COLOR_SELECT]
        rgb = []
        for i in range(16):
            entry = self.attr[i] & 0x3F
            if self.attr[ATTR_MODE] & ATTR_MODE_P54S:  # bits 5-4 from colour select bits 1-0
                entry = (entry & 0x0F) | ((select & 0x03) << 4)
            rgb.append(self._dac_rgb(entry | ((select & 0x0C) << 4)))  # bits 7-6: select 3-2
        return rgb

    @property
    def dots_per_char(self) -> int:
        return 8 if self.seq[SEQ_CLOCKING_MODE] & SEQ_8DOT else CELL_W

    def image(self, blink_phase: bool = True) -> Image.Image:
        """The picture (PIL.Image), 720x400 in 9-dot mode: the cells through the font, palette
        and DAC, and the cursor. ``blink_phase`` False draws blinking characters in their off
        phase (background only); the cursor is drawn in its on phase."""
        from PIL import Image

        width = self.dots_per_char
        if not self.attr_index & ATTR_PAS or self.seq[SEQ_CLOCKING_MODE] & SEQ_SCREEN_OFF:
            # palette being loaded or the screen switched off: the monitor sees no pixels,
            # only the border (overscan) colour, black when the screen is off
            off = self.seq[SEQ_CLOCKING_MODE] & SEQ_SCREEN_OFF
            colour = (0, 0, 0) if off else self._dac_rgb(self.attr[ATTR_OVERSCAN])
            return Image.new("RGB", (COLS * width, ROWS * CELL_H), colour)
        self._note_unmodelled_mode()
        codes, attrs, addresses = self._screen_bytes()
        pixels_on = FONT_BITS[codes].astype(bool)  # 25 x 80 x 16 x 8
        if width == CELL_W:
            if self.attr[ATTR_MODE] & ATTR_MODE_LGE:
                ninth = pixels_on[..., 7:8] & LINE_DRAWING[codes][..., None, None]
            else:
                ninth = np.zeros_like(pixels_on[..., :1])
            pixels_on = np.concatenate([pixels_on, ninth], axis=3)
        if self.blink_enabled and not blink_phase:
            pixels_on[attrs >= 0x80] = False
        palette = np.array(self.palette_rgb(), np.uint8)
        fg = palette[attrs & 0x0F]
        bg = palette[(attrs >> 4) & (0x7 if self.blink_enabled else 0xF)]
        cells = np.where(pixels_on[..., None], fg[:, :, None, None], bg[:, :, None, None])
        start = self.crtc[CRTC_CURSOR_START] & 0x1F
        end = min(self.crtc[CRTC_CURSOR_END] & 0x1F, CELL_H - 1)
        if self.cursor_enabled and start <= end:  # start after end: no cursor, as on a VGA
            for r, c in zip(*np.nonzero(addresses == self.cursor_position), strict=True):
                cells[r, c, start : end + 1] = fg[r, c]
        picture = cells.transpose(0, 2, 1, 3, 4).reshape(ROWS * CELL_H, COLS * width, 3)
        return Image.fromarray(np.ascontiguousarray(picture), "RGB")

    def png(self, path_or_file: str | os.PathLike[str] | IO[bytes]) -> None:
        """Write image() as PNG to a path or a binary file object."""
        self.image().save(path_or_file, format="PNG")
