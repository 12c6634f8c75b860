"""INT 10h: the video services of SeaVGABIOS in text mode 3, and VBE's DDC.

Text output goes where SeaVGABIOS puts it: the cells at 0xB8000 (page start + (row * columns
+ column) * 2), the cursor in the BDA and in the CRTC's cursor registers (through ports
3D4h/3D5h). The mode and its geometry are read from the BDA, as SeaVGABIOS reads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devices.vga import MODE3_ATTR, MODE3_CRTC, MODE3_GC, MODE3_MISC, MODE3_SEQ
from firmware import vbe

from . import bda as B
from .regs import BiosRegs, BiosStop

if TYPE_CHECKING:
    from .services import Call

TEXT_BASE = 0xB8000
TEXT_SIZE = 0x8000
BLANK = 0x0720  # a space, grey on black
VIDEO_SEGMENT = 0xC000
FONT_8X16 = 0x73C0  # the fonts' offsets in the video BIOS (firmware/pc_bios.py)
FONT_8X14 = 0x83C0
FONT_8X8 = 0x91C0
FONT_8X8_HIGH = FONT_8X8 + 128 * 8

# What QEMU's standard VGA reports through DDC: its EDID (two 128-byte blocks), measured with
# images/bios (INT 10h AX=4F15h BL=01h, blocks 0 and 1).
QEMU_EDID = bytes.fromhex(
    "00ffffffffffff0049143412000000002a180104a520147806ee91a3544c9926"
    "0f5054210800e1c0d1c0d100a940b300950081808140ea2900c051201c304026"
    "444045cb10000018000000f7000a004082002820000000000000000000fd0032"
    "7d1ea0ff010a202020202020000000fc0051454d55204d6f6e69746f720a013a"
    "02030b00467d6560591f61000000100000000000000000000000000000000000"
    "1000000000000000000000000000000000001000000000000000000000000000"
    "0000000010000000000000000000000000000000000010000000000000000000"
    "000000000000000010000000000000000000000000000000000000000000002f"
)


# ------------------------------------------------------------------ the VGA registers
def _crtc_port(call: Call) -> int:
    return call.bda.u16(B.CRTC_ADDRESS) or 0x3D4


def _crtc_write(call: Call, index: int, value: int) -> None:
    port = _crtc_port(call)
    call.bus.outb(port, index)
    call.bus.outb(port + 1, value & 0xFF)


def _program_mode3(call: Call) -> None:
    """The register values of mode 3, loaded through the ports in SeaVGABIOS's order: the DAC
    (the EGA palette in the first 64 entries, black in the rest), the attribute controller,
    the sequencer, the graphics controller, the CRTC (unlocked first), the misc output, then
    the screen back on (palette address source)."""
    bus = call.bus
    bus.outb(0x3C6, 0xFF)
    bus.outb(0x3C8, 0)
    for i in range(256):
        rgb = _ega64(i) if i < 64 else (0, 0, 0)
        for component in rgb:
            bus.outb(0x3C9, component)
    bus.inb(0x3DA)  # the attribute flip-flop to "index"
    for index, value in enumerate(MODE3_ATTR):
        bus.outb(0x3C0, index)
        bus.outb(0x3C0, value)
    for index, value in enumerate(MODE3_SEQ):
        bus.outb(0x3C4, index)
        bus.outb(0x3C5, value)
    for index, value in enumerate(MODE3_GC):
        bus.outb(0x3CE, index)
        bus.outb(0x3CF, value)
    bus.outb(0x3D4, 0x11)
    bus.outb(0x3D5, 0)  # unlock CRTC 0-7
    for index, value in enumerate(MODE3_CRTC):
        bus.outb(0x3D4, index)
        bus.outb(0x3D5, value)
    bus.outb(0x3C2, MODE3_MISC)
    bus.inb(0x3DA)
    bus.outb(0x3C0, 0x20)


def _ega64(i: int) -> tuple[int, int, int]:
    """Entry ``i`` of the 64-colour EGA palette (bits rgbRGB) as 6-bit DAC values."""
    r = 42 * ((i >> 2) & 1) + 21 * ((i >> 5) & 1)
    g = 42 * ((i >> 1) & 1) + 21 * ((i >> 4) & 1)
    b = 42 * (i & 1) + 21 * ((i >> 3) & 1)
    return r, g, b


# ------------------------------------------------------------------ cursor and text
def _cursor(call: Call, page: int) -> tuple[int, int]:
    """(column, row) of a page's cursor; (0, 0) for a page above 7."""
    if page > 7:
        return 0, 0
    xy = call.bda.u16(B.CURSOR_POS + 2 * page)
    return xy & 0xFF, xy >> 8


def _text_address(call: Call, page: int, x: int, y: int) -> int:
    """The cell's offset in the text window (SeaVGABIOS's text_address)."""
    cols = call.bda.u16(B.VIDEO_COLS)
    return call.bda.u16(B.VIDEO_PAGESIZE) * page + (y * cols + x) * 2


def _set_cursor(call: Call, page: int, x: int, y: int) -> None:
    if page > 7:
        return
    if page == call.bda.u8(B.VIDEO_PAGE):
        cell = _text_address(call, page, x, y) // 2
        _crtc_write(call, 0x0E, cell >> 8)
        _crtc_write(call, 0x0F, cell)
    call.bda.set16(B.CURSOR_POS + 2 * page, (y << 8) | (x & 0xFF))


def _cursor_shape_hardware(call: Call, cursor_type: int) -> int:
    """The CRTC cursor start/end for a BIOS cursor type: SeaVGABIOS scales CGA-style 8-line
    shapes to the character height unless the BDA says not to (video control bit 0)."""
    if call.bda.u8(B.VIDEO_CTL) & 1:
        return cursor_type
    start, end = (cursor_type >> 8) & 0x3F, cursor_type & 0x1F
    height = call.bda.u16(B.CHAR_HEIGHT)
    if height <= 8 or end >= 8 or start >= 0x20:
        return cursor_type
    two_lines = end == start + 1  # a two-line cursor stays two lines high
    start = ((end + 1) * height // 8) - 2 if two_lines else ((start + 1) * height // 8) - 1
    end = ((end + 1) * height // 8) - 1
    return (start << 8) | end


def _scroll(
    call: Call, page: int, x: int, y: int, width: int, height: int, lines: int, fill: int
) -> None:
    """Move the window's rows up (``lines`` > 0) or down (< 0) and clear the rows that open
    with the cell ``fill``; ``lines`` 0 clears the whole window (SeaVGABIOS's vgafb_scroll)."""
    cols = call.bda.u16(B.VIDEO_COLS)
    stride = cols * 2
    base = TEXT_BASE + (_text_address(call, page, x, y) & (TEXT_SIZE - 1))

    def row(i: int) -> int:
        return base + i * stride

    blank = fill.to_bytes(2, "little") * width
    if lines == 0:
        for i in range(height):
            call.bus.write(row(i), blank)
        return
    n = abs(lines)
    kept = height - n
    order = range(kept) if lines > 0 else range(kept - 1, -1, -1)
    for i in order:
        src, dst = (i + n, i) if lines > 0 else (i, i + n)
        call.bus.write(row(dst), call.bus.read(row(src), width * 2))
    cleared = range(kept, height) if lines > 0 else range(n)
    for i in cleared:
        call.bus.write(row(i), blank)


def _scroll_up(call: Call, page: int) -> None:
    """The teletype's scroll: the whole page one line up, the new line blank, grey on black."""
    cols = call.bda.u16(B.VIDEO_COLS)
    rows = call.bda.u8(B.VIDEO_ROWS) + 1
    _scroll(call, page, 0, 0, cols, rows, 1, BLANK)


def _scroll_window(call: Call, r: BiosRegs, direction: int) -> None:
    """AH=06h/07h: scroll the window CH,CL-DH,DL of the active page by AL lines (0, or as
    many as it has: clear it), the new rows blank with attribute BH."""
    rows = call.bda.u8(B.VIDEO_ROWS) + 1
    cols = call.bda.u16(B.VIDEO_COLS)
    left, top = r.cl, r.ch
    right, bottom = min(r.dl, cols - 1), min(r.dh, rows - 1)
    width, height = right - left + 1, bottom - top + 1
    if width <= 0 or height <= 0:
        return
    lines = 0 if r.al >= height else r.al
    page = call.bda.u8(B.VIDEO_PAGE)
    _scroll(call, page, left, top, width, height, lines * direction, (r.bh << 8) | 0x20)


def _write_chars(call: Call, r: BiosRegs, with_attribute: bool) -> None:
    """AH=09h/0Ah: CX copies of AL (and attribute BL) from the cursor of page BH on, the
    cursor left where it was (SeaVGABIOS's write_char: wrapping at the last column)."""
    x, y = _cursor(call, r.bh)
    cols = call.bda.u16(B.VIDEO_COLS)
    for _ in range(r.cx):
        at = TEXT_BASE + (_text_address(call, r.bh, x, y) & (TEXT_SIZE - 1))
        cell = bytes((r.al, r.bl)) if with_attribute else bytes((r.al,))
        call.bus.write(at, cell)
        x += 1
        if x == cols:
            x, y = 0, y + 1


def _write_string(call: Call, r: BiosRegs) -> None:
    """AH=13h: CX characters from ES:BP as a teletype at DH,DL of page BH, with attribute BL
    (AL bit 1: each character followed by its own); AL bit 0: the cursor moves."""
    x, y = r.dl, r.dh
    page = r.bh
    at = (r.es << 4) + r.bp
    attribute = r.bl
    for _ in range(r.cx):
        char = call.bus.read(at, 1)[0]
        at += 1
        if r.al & 2:
            attribute = call.bus.read(at, 1)[0]
            at += 1
        x, y = _teletype_at(call, page, x, y, char, attribute)
    if r.al & 1:
        _set_cursor(call, page, x, y)


def _set_active_page(call: Call, page: int) -> None:
    """AH=05h: show page AL (0-7): the CRTC start address, the BDA, that page's cursor."""
    if page > 7:
        return
    address = call.bda.u16(B.VIDEO_PAGESIZE) * page
    _crtc_write(call, 0x0C, (address // 2) >> 8)
    _crtc_write(call, 0x0D, address // 2)
    call.bda.set16(B.VIDEO_PAGESTART, address)
    call.bda.set8(B.VIDEO_PAGE, page)
    x, y = _cursor(call, page)
    _set_cursor(call, page, x, y)


def _teletype_at(
    call: Call, page: int, x: int, y: int, char: int, attribute: int | None
) -> tuple[int, int]:
    """SeaVGABIOS's write_teletype at (x, y) of ``page``: BEL is silent, BS, CR and LF move,
    the rest is written (with ``attribute`` if given, else the cell keeps its own) and the
    position advances, wrapping at the last column; past the last row the page scrolls up."""
    cols = call.bda.u16(B.VIDEO_COLS)
    if char == 7:
        pass
    elif char == 8:
        x = max(x - 1, 0)
    elif char == 0x0D:
        x = 0
    elif char == 0x0A:
        y += 1
    else:
        at = TEXT_BASE + (_text_address(call, page, x, y) & (TEXT_SIZE - 1))
        cell = bytes((char,)) if attribute is None else bytes((char, attribute))
        call.bus.write(at, cell)
        x += 1
        if x == cols:
            x, y = 0, y + 1
    if y > call.bda.u8(B.VIDEO_ROWS):
        y -= 1
        _scroll_up(call, page)
    return x, y


def teletype(call: Call, char: int) -> None:
    """AH=0Eh: ``char`` at the cursor of the active page (in text mode the attribute stays),
    the cursor moved on."""
    page = call.bda.u8(B.VIDEO_PAGE)
    x, y = _cursor(call, page)
    x, y = _teletype_at(call, page, x, y, char, None)
    _set_cursor(call, page, x, y)


def print_text(call: Call, text: str) -> None:
    """A message as SeaBIOS prints one on the screen: each LF preceded by a CR."""
    for ch in text:
        if ch == "\n":
            teletype(call, 0x0D)
        teletype(call, ord(ch))


# ------------------------------------------------------------------ the functions
KEEP_MEMORY = 0x8000  # SeaVGABIOS's MF_NOCLEARMEM (AL bit 7 of AH=00h, BX bit 15 of 4F02h)
VBE_FLAGS = 0xFE00  # the flag bits of a VBE mode number


def _set_mode(call: Call, r: BiosRegs) -> None:
    mode = r.al & 0x7F
    if mode != 3:
        call.unsupported(f"AH=00h set mode {mode:02X}h (only text mode 3 is modelled)")
        return
    flags = KEEP_MEMORY if r.al & 0x80 else 0
    r.al = 0x30  # SeaVGABIOS's answer for a text mode up to 7 (6: 3Fh, above 7: 20h)
    set_mode3(call, flags)


def set_mode3(call: Call, flags: int) -> None:
    """Text mode 3 as SeaVGABIOS's vga_set_mode sets it: the registers, the BDA, the fonts'
    vectors, and the screen blanked unless ``flags`` has KEEP_MEMORY."""
    keep_memory = bool(flags & KEEP_MEMORY)
    _program_mode3(call)
    b = call.bda
    b.set8(B.VIDEO_MODE, 3)
    b.set16(B.VBE_MODE, 3 | (flags & VBE_FLAGS))
    b.set16(B.VIDEO_COLS, 80)
    b.set8(B.VIDEO_ROWS, 24)
    b.set16(B.CURSOR_TYPE, 0x0607)
    b.set16(B.VIDEO_PAGESIZE, 0x1000)
    b.set16(B.CRTC_ADDRESS, 0x3D4)
    b.set16(B.CHAR_HEIGHT, 16)
    b.set8(B.VIDEO_CTL, 0x60 | (0x80 if keep_memory else 0))
    b.set8(B.VIDEO_SWITCHES, 0xF9)
    b.set8(B.MODESET_CTL, b.u8(B.MODESET_CTL) & 0x7F)
    call.bus.write(B.BDA + B.CURSOR_POS, bytes(16))
    b.set16(B.VIDEO_PAGESTART, 0)
    b.set8(B.VIDEO_PAGE, 0)
    B.set_ivt_entry(call.bus, 0x1F, VIDEO_SEGMENT, FONT_8X8_HIGH)
    B.set_ivt_entry(call.bus, 0x43, VIDEO_SEGMENT, FONT_8X16)
    if not keep_memory:
        call.bus.write(TEXT_BASE, BLANK.to_bytes(2, "little") * (TEXT_SIZE // 2))


def _font_information(call: Call, r: BiosRegs) -> None:
    """AX=1130h: ES:BP of a font, CX its bytes per character (the current height), DL the
    last row. BH 5 and 7 (the 9-dot alternates) are not in this ROM."""
    fonts = {2: FONT_8X14, 3: FONT_8X8, 4: FONT_8X8_HIGH, 6: FONT_8X16}
    if r.bh in (0, 1):
        segment, offset = B.ivt_entry(call.bus, 0x1F if r.bh == 0 else 0x43)
    elif r.bh in fonts:
        segment, offset = VIDEO_SEGMENT, fonts[r.bh]
    elif r.bh in (5, 7):
        call.unsupported(f"AX=1130h BH={r.bh:02X}h (the 9-dot alternate fonts are not in the ROM)")
        return
    else:
        return  # SeaVGABIOS ignores other BH values
    r.es, r.bp = segment, offset
    r.cx = call.bda.u16(B.CHAR_HEIGHT) & 0xFF
    r.dl = call.bda.u8(B.VIDEO_ROWS)


def _ddc(call: Call, r: BiosRegs) -> None:
    """AX=4F15h: BL=00h capabilities (BX=0103h: DDC1 and DDC2, one second per block), BL=01h
    read EDID block DX to ES:DI; anything else fails with AX=014Fh."""
    edid = QEMU_EDID
    if r.bl == 0 and edid[:2] == b"\x00\xff":
        r.bx = 0x0103
    elif r.bl == 1 and r.dx * 128 < len(edid):
        block = edid[r.dx * 128 : r.dx * 128 + 128]
        call.bus.write((r.es << 4) + r.di, block)
    else:
        r.ax = 0x014F
        return
    r.ax = 0x004F


def _vbe(call: Call, r: BiosRegs) -> None:
    """VBE over QEMU's standard VGA (firmware/vbe.py: its modes and information blocks)."""
    at = (r.es << 4) + r.di
    if r.al == 0x00:  # controller information, with the mode list inside the block
        call.bus.write(at, vbe.controller_info(r.es, r.di))
        r.ax = vbe.STATUS_OK
    elif r.al == 0x01:  # mode information
        info = vbe.mode_info(r.cx)
        if info is None:
            r.ax = vbe.STATUS_FAILED
            return
        call.bus.write(at, info)
        r.ax = vbe.STATUS_OK
    elif r.al == 0x02:
        mode = vbe.find_mode(r.bx)
        if mode is None:
            r.ax = vbe.STATUS_FAILED  # AH=01h: SeaVGABIOS found no such mode
        elif mode.number == 3:
            set_mode3(call, r.bx & VBE_FLAGS)
            r.ax = vbe.STATUS_OK
        else:
            call.note(f"AX=4F02h BX={r.bx:04X}h (a mode set at run time other than text mode 3 "
                      "is not modelled)")  # fmt: skip
            r.ax = vbe.STATUS_UNSUPPORTED
    elif r.al == 0x03:  # the current mode: the number and flags of the last mode set
        r.bx = call.bda.u16(B.VBE_MODE)
        r.ax = vbe.STATUS_OK
    elif r.al == 0x15:
        _ddc(call, r)
    else:
        call.note(f"AX={r.ax:04X}h (this VBE function is not modelled)")
        r.ax = vbe.STATUS_UNSUPPORTED  # SeaVGABIOS's answer to a VBE function it lacks


def int10(call: Call, r: BiosRegs) -> BiosStop | None:
    ah = r.ah
    b = call.bda
    if ah == 0x00:
        _set_mode(call, r)
    elif ah == 0x01:
        b.set16(B.CURSOR_TYPE, r.cx)
        shape = _cursor_shape_hardware(call, r.cx)
        _crtc_write(call, 0x0A, shape >> 8)
        _crtc_write(call, 0x0B, shape)
    elif ah == 0x02:
        _set_cursor(call, r.bh, r.dl, r.dh)
    elif ah == 0x03:
        r.cx = b.u16(B.CURSOR_TYPE)
        x, y = _cursor(call, r.bh)
        r.dl, r.dh = x, y
    elif ah == 0x05:
        _set_active_page(call, r.al)
    elif ah in (0x06, 0x07):
        _scroll_window(call, r, 1 if ah == 0x06 else -1)
    elif ah == 0x08:
        x, y = _cursor(call, r.bh)
        at = TEXT_BASE + (_text_address(call, r.bh, x, y) & (TEXT_SIZE - 1))
        r.al, r.ah = call.bus.read(at, 2)
    elif ah in (0x09, 0x0A):
        _write_chars(call, r, ah == 0x09)
    elif ah == 0x0E:
        teletype(call, r.al)
    elif ah == 0x0F:
        r.bh = b.u8(B.VIDEO_PAGE)
        r.al = b.u8(B.VIDEO_MODE) | (b.u8(B.VIDEO_CTL) & 0x80)
        r.ah = b.u16(B.VIDEO_COLS)
    elif ah == 0x11 and r.al == 0x30:
        _font_information(call, r)
    elif ah == 0x12 and r.bl == 0x10:  # EGA information: colour, 256 KiB, the switches
        r.bx = 0x0103 if b.u16(B.CRTC_ADDRESS) == 0x3B4 else 0x0003
        r.cx = b.u8(B.VIDEO_SWITCHES) & 0x0F
    elif ah == 0x13:
        _write_string(call, r)
    elif r.ax == 0x1A00:  # display combination code
        r.bx = b.u8(B.DCC_INDEX)
        r.al = 0x1A
    elif ah == 0x4F:
        _vbe(call, r)
    else:
        call.unsupported(f"AX={r.ax:04X}h (this video function is not modelled)")
    return None
