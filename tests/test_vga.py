"""VGA text mode: registers programmed as a driver does, the renderings, and a golden screenshot."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image

from devices.cp437_font import GLYPHS
from devices.vga import FRAME_NS, VgaText

BASE = 0x3B0


class Screen:
    def __init__(self) -> None:
        self.ram = np.zeros(1 << 20, np.uint8)
        self.t = 0
        self.vga = VgaText(self.ram, now_ns=lambda: self.t)

    def out(self, port: int, value: int) -> None:
        self.vga.write(port - BASE, 1, value)

    def inb(self, port: int) -> int:
        return self.vga.read(port - BASE, 1)

    def put(self, row: int, col: int, text: bytes, attr: int) -> None:
        for i, ch in enumerate(text):
            a = 0xB8000 + 2 * (row * 80 + col + i)
            self.ram[a], self.ram[a + 1] = ch, attr

    def crtc(self, index: int, value: int, base: int = 0x3D4) -> None:
        self.out(base, index)
        self.out(base + 1, value)


@pytest.fixture
def s() -> Screen:
    return Screen()


def test_blank_cells_and_trimming(s: Screen) -> None:
    s.put(0, 0, b"hello", 0x07)
    s.put(1, 0, b"   ", 0x07)  # 0x0720 cells are blank, like 0x0000
    s.put(2, 5, b"x", 0x1F)
    assert s.vga.text() == "hello\n\n     x"


def test_cp437_box_drawing_in_text(s: Screen) -> None:
    s.put(0, 0, bytes([0xC9, 0xCD, 0xBB]), 0x07)
    s.put(1, 0, bytes([0xBA, 0x01, 0xBA]), 0x07)
    s.put(2, 0, bytes([0xC8, 0xCD, 0xBC]), 0x07)
    assert s.vga.text() == "╔═╗\n║☺║\n╚═╝"


def test_cursor_location_and_shape_from_crtc(s: Screen) -> None:
    pos = 3 * 80 + 7
    s.crtc(0x0F, pos & 0xFF)
    s.crtc(0x0E, pos >> 8)
    assert s.vga.cursor_position == pos
    s.crtc(0x0A, 0x20)
    assert not s.vga.cursor_enabled
    s.crtc(0x0A, 0x00)
    s.crtc(0x0B, 0x0F)  # a full block cursor
    s.put(3, 7, b" ", 0x07)
    img = np.asarray(s.vga.image())
    block = img[3 * 16 : 4 * 16, 7 * 9 : 8 * 9]
    assert (block == [168, 168, 168]).all()  # drawn in the cell's foreground colour
    s.crtc(0x0A, 0x0D)
    s.crtc(0x0B, 0x0E)  # the BIOS underline cursor: scan lines 13-14 only
    img = np.asarray(s.vga.image())
    block = img[3 * 16 : 4 * 16, 7 * 9 : 8 * 9]
    assert (block[13:15] == 168).all() and (block[:13] == 0).all() and (block[15] == 0).all()
    assert s.inb(0x3D4) == 0x0B and s.inb(0x3D5) == 0x0E


def test_start_address_scrolls(s: Screen) -> None:
    s.put(0, 0, b"first", 0x07)
    s.put(1, 0, b"second", 0x07)
    s.crtc(0x0C, 0)
    s.crtc(0x0D, 80)  # start one row down
    assert s.vga.text().splitlines()[0] == "second"


def test_misc_output_selects_mono_or_colour_crtc(s: Screen) -> None:
    s.crtc(0x0E, 0x01)
    assert s.vga.cursor_position >> 8 == 0x01
    s.out(0x3C2, 0x66)  # I/O address select clear: CRTC moves to 0x3B4
    assert s.inb(0x3CC) == 0x66
    s.crtc(0x0E, 0x02, base=0x3B4)
    assert s.vga.cursor_position >> 8 == 0x02
    assert s.inb(0x3D5) == 0xFF  # 0x3D5 decodes nothing now


def test_attributes_blink_or_bright_background(s: Screen) -> None:
    s.put(0, 0, b"A", 0xCE)  # blink bit set, background 4 (or 12), yellow foreground
    cell = s.vga.cells()[0][0]
    assert (cell.fg, cell.bg, cell.blink) == (14, 4, True)
    s.inb(0x3DA)  # reset the flip-flop
    s.out(0x3C0, 0x30)  # index 0x10 with PAS set
    s.out(0x3C0, 0x04)  # mode control: blink off -> bright backgrounds
    cell = s.vga.cells()[0][0]
    assert (cell.fg, cell.bg, cell.blink) == (14, 12, False)
    assert "\x1b[93;101m" in s.vga.ansi()


def test_input_status_toggles_with_virtual_time_and_resets_the_flipflop(s: Screen) -> None:
    seen = set()
    for t in range(0, 2 * FRAME_NS, 50_000):
        s.t = t
        seen.add(s.inb(0x3DA) & 0x08)
    assert seen == {0, 8}
    s.out(0x3C0, 0x11)  # an index write flips to "data next"
    s.inb(0x3DA)
    s.out(0x3C0, 0x12)  # taken as an index again
    assert s.vga.attr_index == 0x12


def test_dac_write_and_read_back(s: Screen) -> None:
    s.out(0x3C8, 0x07)
    for v in (63, 0, 0):
        s.out(0x3C9, v)
    s.out(0x3C7, 0x07)
    assert [s.inb(0x3C9) for _ in range(3)] == [63, 0, 0]
    assert s.vga.palette_rgb()[7] == (255, 0, 0)


def test_png_size_palette_and_glyph_pixels(s: Screen) -> None:
    s.crtc(0x0A, 0x20)  # cursor off (it sits on this cell)
    s.put(0, 0, b"A", 0x1E)  # yellow on blue
    img = s.vga.image()
    assert img.size == (720, 400)
    px = np.asarray(img)
    glyph = GLYPHS[ord("A")]
    for y in range(16):
        for x in range(8):
            on = bool(glyph[y] & (0x80 >> x))
            assert tuple(px[y, x]) == ((255, 255, 87) if on else (0, 0, 168))
    assert tuple(px[0, 8]) == (0, 0, 168)  # the 9th column is blank for letters


def test_line_drawing_glyphs_fill_the_ninth_column(s: Screen) -> None:
    s.put(0, 0, bytes([0xC4]), 0x0F)  # ─ continues into the 9th column
    px = np.asarray(s.vga.image())
    row = next(y for y in range(16) if GLYPHS[0xC4][y] & 1)
    assert tuple(px[row, 8]) == (255, 255, 255)


def test_unmodelled_register_reads_as_open_bus_and_logs_once(
    s: Screen, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devices.vga")
    assert s.inb(0x3C3) == 0xFF
    assert s.inb(0x3C3) == 0xFF
    notes = [r.getMessage() for r in caplog.records if "0x3c3" in r.getMessage()]
    assert notes == ["VGA: read of port 0x3c3 is not modelled"]


def test_reset_values_are_those_of_a_bios_mode_3_set(s: Screen) -> None:
    assert s.inb(0x3CC) == 0x67
    s.out(0x3D4, 0x0A)
    assert s.inb(0x3D5) == 0x0D
    s.out(0x3D4, 0x0B)
    assert s.inb(0x3D5) == 0x0E
    s.inb(0x3DA)
    assert s.inb(0x3C0) == 0x20  # the palette address source is left set: the screen shows
    s.out(0x3C0, 0x30)
    assert s.inb(0x3C1) == 0x0C  # mode control: blink, line graphics
    assert s.vga.palette_rgb()[6] == (168, 87, 0)  # EGA brown via palette 0x14 and the DAC
    assert s.vga.palette_rgb()[8] == (87, 87, 87)


def test_offset_register_sets_the_row_length(s: Screen) -> None:
    s.put(0, 0, b"row0", 0x07)
    s.put(2, 0, b"row1", 0x07)  # 160 cells in: the start of row 1 with a 160-cell line
    s.crtc(0x13, 80)  # 80 double words = 160 cells per row
    assert s.vga.text().splitlines()[:2] == ["row0", "row1"]
    s.crtc(0x13, 0)  # every row starts at the same address
    assert s.vga.text().splitlines()[:3] == ["row0", "row0", "row0"]


def test_crtc_protect_bit_locks_timing_registers(s: Screen) -> None:
    s.crtc(0x11, 0x8E)  # the BIOS value: protect on
    s.crtc(0x01, 0x20)
    s.crtc(0x07, 0x00)  # only bit 4 (line compare bit 8) may change
    s.out(0x3D4, 0x01)
    assert s.inb(0x3D5) == 0x4F
    s.out(0x3D4, 0x07)
    assert s.inb(0x3D5) == 0x1F & ~0x10
    s.crtc(0x11, 0x0E)
    s.crtc(0x01, 0x20)
    s.out(0x3D4, 0x01)
    assert s.inb(0x3D5) == 0x20


def test_blinking_characters_in_both_phases(s: Screen) -> None:
    s.crtc(0x0A, 0x20)
    s.put(0, 0, b"#", 0x9F)  # blink, white on blue
    s.put(0, 1, b"#", 0x1F)  # the same without blink
    assert "\x1b[97;44;5m#" in s.vga.ansi()
    on = np.asarray(s.vga.image(blink_phase=True))
    off = np.asarray(s.vga.image(blink_phase=False))
    assert (on[:16, :9] == 255).all(axis=2).any()  # the glyph is visible in the on phase
    assert (off[:16, :9] == [0, 0, 168]).all()  # background only in the off phase
    assert (off[:16, 9:18] == on[:16, 9:18]).all()  # the non-blinking cell does not change
    s.inb(0x3DA)
    s.out(0x3C0, 0x30)
    s.out(0x3C0, 0x04)  # bright backgrounds: nothing blinks, background 9 is light blue
    off = np.asarray(s.vga.image(blink_phase=False))
    assert tuple(off[0, 0]) == (87, 87, 255)
    assert (off[:16, :9] == 255).all(axis=2).any()


def test_palette_address_source_clear_blanks_the_picture(s: Screen) -> None:
    s.put(0, 0, b"X", 0x0F)
    s.inb(0x3DA)
    s.out(0x3C0, 0x11)  # overscan register, PAS clear: the display is off while loading
    s.out(0x3C0, 0x01)  # border blue
    assert (np.asarray(s.vga.image()) == [0, 0, 168]).all()
    s.out(0x3C0, 0x20)  # PAS set again
    assert (np.asarray(s.vga.image())[:16, :9] == 255).all(axis=2).any()
    s.out(0x3C4, 0x01)
    s.out(0x3C5, 0x20)  # sequencer screen off
    assert not np.asarray(s.vga.image()).any()


def test_colour_select_supplies_high_dac_index_bits(s: Screen) -> None:
    s.put(0, 0, b" ", 0x10)  # background 1
    s.out(0x3C8, 0x41)  # DAC entry 0x41 = colour select 01 (bits 7-6) + palette entry 0x01
    for v in (63, 0, 63):
        s.out(0x3C9, v)
    s.inb(0x3DA)
    s.out(0x3C0, 0x34)
    s.out(0x3C0, 0x04)  # colour select bits 3-2 = 01
    assert tuple(np.asarray(s.vga.image())[0, 0]) == (255, 0, 255)
    s.out(0x3C8, 0x21)  # P54S: bits 5-4 from colour select bits 1-0 (here 10)
    for v in (0, 63, 0):
        s.out(0x3C9, v)
    s.out(0x3C0, 0x34)
    s.out(0x3C0, 0x02)
    s.out(0x3C0, 0x30)
    s.out(0x3C0, 0x8C)
    assert tuple(np.asarray(s.vga.image())[0, 0]) == (0, 255, 0)


def test_eight_dot_mode_and_line_graphics_enable(s: Screen) -> None:
    s.put(0, 0, bytes([0xC4]), 0x0F)
    row = next(y for y in range(16) if GLYPHS[0xC4][y] & 1)
    s.inb(0x3DA)
    s.out(0x3C0, 0x30)
    s.out(0x3C0, 0x08)  # line graphics off: the 9th column stays background
    assert tuple(np.asarray(s.vga.image())[row, 8]) == (0, 0, 0)
    s.out(0x3C4, 0x01)
    s.out(0x3C5, 0x01)  # 8-dot characters: 640x400
    img = s.vga.image()
    assert img.size == (640, 400)
    assert tuple(np.asarray(img)[row, 8]) == (0, 0, 0)  # the next cell (blank) starts at x=8


def test_dac_state_register_follows_the_last_index_write(s: Screen) -> None:
    s.out(0x3C7, 0x05)
    assert s.inb(0x3C7) == 0x03
    s.out(0x3C8, 0x05)
    assert s.inb(0x3C7) == 0x00 and s.inb(0x3C8) == 0x05


def test_png_to_a_file_object(s: Screen) -> None:
    s.put(0, 0, b"hi", 0x07)
    out = io.BytesIO()
    s.vga.png(out)
    out.seek(0)
    with Image.open(out) as img:
        assert img.size == (720, 400) and img.format == "PNG"


@pytest.mark.images
def test_hello_screen_golden_png(image, golden_png) -> None:
    from emu import Machine

    m = Machine.from_elf(image("hello"))
    r = m.run(max_instructions=5_000_000)
    assert r.stop_reason == "debug-exit"
    assert m.screen_text().splitlines()[0] == "Triplefault hello: long mode OK"
    img = m.vga.image()
    assert img.size == (720, 400)
    golden_png("hello.screen.png", img)


@pytest.mark.images
def test_linear_framebuffer_kernel(image, golden_png, tmp_path) -> None:
    """images/fb asks for 1024x768x32 and draws a test pattern into the linear framebuffer."""
    from emu import Machine

    m = Machine.from_elf(image("fb"))
    r = m.run(max_instructions=100_000_000)
    assert r.stop_reason == "debug-exit" and r.exit_code == 0, r.describe()
    assert b"framebuffer: 1024x768, 32 bpp, pitch 4096, at 0xfd000000" in r.serial
    assert b"red 16/8 green 8/8 blue 0/8" in r.serial
    px = m.framebuffer.rgb()
    assert px.shape == (768, 1024, 3)
    assert tuple(px[100, 200]) == (255, 255, 0)  # the yellow bar
    assert tuple(px[0, 0]) == (255, 255, 255)  # the border
    golden_png("fb.png", m.framebuffer.image())
    out = tmp_path / "shot.png"
    m.screenshot(out)  # the screenshot shows the framebuffer, not the VGA text plane
    with Image.open(out) as shot:
        assert shot.size == (1024, 768)


def test_attribute_index_reads_0_while_the_flip_flop_expects_data(s: Screen) -> None:
    """As SeaVGABIOS leaves it (index 0x20 written last): QEMU and Bochs read 0 at 0x3C0 until
    input status 1 resets the flip-flop."""
    s.inb(0x3DA)
    s.out(0x3C0, 0x20)
    assert s.inb(0x3C0) == 0x00
    s.inb(0x3DA)
    assert s.inb(0x3C0) == 0x20


def test_feature_control_and_input_status_0(s: Screen) -> None:
    assert s.inb(0x3CA) == 0x00 and s.inb(0x3C2) == 0x00
    s.out(0x3DA, 0xFF)  # feature control is written at the input status 1 port
    assert s.inb(0x3CA) == 0x0B
    s.vga.reset()
    assert s.inb(0x3CA) == 0x00
