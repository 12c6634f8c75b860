"""VGA in text mode 3 (80x25): the registers kernels touch, and the screen as text, ANSI, cells
and a real 720x400 picture.

The character cells live in guest RAM at 0xB8000 and are read from the machine's RAM buffer
when rendering: no memory hooks. The device owns the register files, decoded at ports
0x3B0-0x3DF (one range, ``read``/``write`` offsets relative to 0x3B0):

  0x3B4/0x3B5 or 0x3D4/0x3D5  CRTC index/data (mono or colour address, misc output bit 0)
  0x3BA or 0x3DA              input status 1 (retrace bits; resets the attribute flip-flop)
  0x3C0/0x3C1                 attribute controller (index/data flip-flop) / read data
  0x3C2 (write) / 0x3CC (read) misc output
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

import numpy as np

from .cp437_font import GLYPHS

log = logging.getLogger(__name__)

BASE = 0x3B0
SPAN = 0x30
TEXT_BASE = 0xB8000
COLS, ROWS = 80, 25
CELL_W, CELL_H = 9, 16  # mode 3: 9-dot characters, 16 scan lines

# CRTC registers (index)
CRTC_CURSOR_START = 0x0A  # bits 0-4 first scan line, bit 5 cursor disabled
CRTC_CURSOR_END = 0x0B
CRTC_START_HIGH = 0x0C
CRTC_START_LOW = 0x0D
CRTC_CURSOR_HIGH = 0x0E
CRTC_CURSOR_LOW = 0x0F
CRTC_OFFSET = 0x13  # words per row / 2
CURSOR_DISABLE = 0x20

MISC_IO_COLOR = 0x01  # misc output bit 0: CRTC at 0x3Dx (else 0x3Bx)
ATTR_MODE = 0x10  # attribute controller mode control
ATTR_MODE_BLINK = 0x08  # bit 3: attribute bit 7 blinks (else: bright background)

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
        self.attr_index = 0
        self.attr_flipflop = False  # False: next 0x3C0 write is an index
        self.attr = bytearray(MODE3_ATTR.ljust(0x15, b"\0"))
        self.seq_index = 0
        self.seq = bytearray(MODE3_SEQ)
        self.gc_index = 0
        self.gc = bytearray(MODE3_GC)
        self.dac_mask = 0xFF
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
            return self.attr_index
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
                # registers 0-7 are write-protected while CRTC 0x11 bit 7 is set
                if self.crtc_index < 8 and self.crtc[0x11] & 0x80 and self.crtc_index != 7:
                    return
                self.crtc[self.crtc_index] = value
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

    def _dac_advance(self, read: bool) -> None:
        self.dac_component += 1
        if self.dac_component == 3:
            self.dac_component = 0
            if read:
                self.dac_read_index = (self.dac_read_index + 1) & 0xFF
            else:
                self.dac_write_index = (self.dac_write_index + 1) & 0xFF

    # -------------------------------------------------------------- screen
    def _row_words(self) -> int:
        return (self.crtc[CRTC_OFFSET] or 40) * 2

    def cells(self) -> list[list[Cell]]:
        """25 rows of 80 cells, from the CRTC start address."""
        stride = self._row_words()
        out = []
        mem = self.ram[TEXT_BASE : TEXT_BASE + 0x8000]
        for r in range(ROWS):
            row = []
            for c in range(COLS):
                idx = ((self.start_address + r * stride + c) * 2) & 0x7FFF
                ch, attr = int(mem[idx]), int(mem[idx + 1])
                blink = self.blink_enabled and bool(attr & 0x80)
                bg = (attr >> 4) & (0x7 if self.blink_enabled else 0xF)
                row.append(Cell(cp437_char(ch), attr & 0xF, bg, blink))
            out.append(row)
        return out

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

    def palette_rgb(self) -> list[tuple[int, int, int]]:
        """The 16 attribute colours through the attribute palette and the DAC, 8-bit RGB."""
        rgb = []
        for i in range(16):
            entry = self.attr[i] & 0x3F
            r, g, b = self.dac[entry & self.dac_mask]
            rgb.append(((r * 255) // 63, (g * 255) // 63, (b * 255) // 63))
        return rgb

    def image(self, blink_phase: bool = True):
        """The 720x400 picture (PIL.Image): 9x16 cells, the cursor, blink shown 'on'."""
        from PIL import Image

        pal = self.palette_rgb()
        pixels = np.zeros((ROWS * CELL_H, COLS * CELL_W, 3), np.uint8)
        cursor = self.cursor_position - self.start_address
        start_line = self.crtc[CRTC_CURSOR_START] & 0x1F
        end_line = self.crtc[CRTC_CURSOR_END] & 0x1F
        stride = self._row_words()
        mem = self.ram[TEXT_BASE : TEXT_BASE + 0x8000]
        for r in range(ROWS):
            for c in range(COLS):
                idx = ((self.start_address + r * stride + c) * 2) & 0x7FFF
                code, attr = int(mem[idx]), int(mem[idx + 1])
                fg = pal[attr & 0xF]
                bg = pal[(attr >> 4) & (0x7 if self.blink_enabled else 0xF)]
                hidden = self.blink_enabled and attr & 0x80 and not blink_phase
                glyph = GLYPHS[code]
                block = pixels[r * CELL_H : (r + 1) * CELL_H, c * CELL_W : (c + 1) * CELL_W]
                block[:] = bg
                for y in range(CELL_H):
                    bits = glyph[y]
                    if hidden:
                        bits = 0
                    # the 9th column repeats the 8th for the line-drawing range 0xC0-0xDF
                    ninth = bits & 1 if 0xC0 <= code <= 0xDF else 0
                    for x in range(8):
                        if bits & (0x80 >> x):
                            block[y, x] = fg
                    if ninth:
                        block[y, 8] = fg
                if self.cursor_enabled and r * stride + c == cursor and start_line <= end_line:
                    block[start_line : min(end_line, CELL_H - 1) + 1, :] = fg
        return Image.fromarray(pixels, "RGB")

    def png(self, path) -> None:
        self.image().save(path, format="PNG")

    # -------------------------------------------------------------- state
    def get_state(self) -> dict:
        return {
            "misc_output": self.misc_output,
            "crtc_index": self.crtc_index,
            "crtc": bytes(self.crtc),
            "attr_index": self.attr_index,
            "attr_flipflop": self.attr_flipflop,
            "attr": bytes(self.attr),
            "seq": bytes(self.seq),
            "gc": bytes(self.gc),
            "dac": [tuple(x) for x in self.dac],
        }
