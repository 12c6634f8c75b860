"""The video mode GRUB 2.06 (i386-pc) sets for a Multiboot or Multiboot2 kernel on QEMU's
standard VGA, and the framebuffer it describes to the kernel (measured with images/video under
qemu-ref; the goldens are tests/golden/qemu/video*).

How GRUB gets there (grub-core/loader/multiboot.c, video/video.c, video/i386/pc/vbe.c):

- A framebuffer request (Multiboot2 framebuffer tag, optional or not; Multiboot mode type 0)
  becomes the mode list ``WxHxD,WxH,auto`` (``WxH,auto`` without a depth, ``auto`` without a
  size), followed by ``text``: the first entry that a mode satisfies wins, and ``text`` always
  does, so a request never fails the boot.
- ``WxH[xD]``: among the BIOS's mode list, the modes with a linear framebuffer, packed pixel or
  direct colour, 8/15/16/24/32 bits per pixel, exactly W x H and (with D) exactly D bits; of
  these, the one with the most bits of framebuffer (width x height x bpp), the later one on a tie.
- ``auto``: the same, but every mode no larger than the monitor's preferred resolution, which
  GRUB reads from the EDID (VBE 4F15; firmware/bios/video.py has QEMU's): 1280x800.
- The mode is set with the linear framebuffer bit (VBE mode number | 0x4000), memory cleared.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import vbe
from .bios.video import QEMU_EDID


def edid_preferred_mode(edid: bytes) -> tuple[int, int] | None:
    """The monitor's preferred resolution as GRUB reads it from the EDID (VBE 4F15): the first
    detailed timing, when the checksum is right, the version is 1, the feature support byte says
    that timing is the preferred one (bit 1) and the size is below 4096x4096."""
    if len(edid) < 128 or sum(edid[:128]) & 0xFF or edid[0x12] != 1 or not edid[0x18] & 0x02:
        return None
    timing = edid[0x36:0x48]
    if not timing[0] | timing[1]:  # pixel clock 0: not a timing
        return None
    width = timing[2] | (timing[4] & 0xF0) << 4
    height = timing[5] | (timing[7] & 0xF0) << 4
    if not 0 < width < 4096 or not 0 < height < 4096:
        return None
    return width, height


# What "auto" is bounded by: QEMU's EDID says 1280x800 (without a preferred mode GRUB would
# take 640x480).
EDID_PREFERRED = edid_preferred_mode(QEMU_EDID) or (640, 480)
GRUB_DEPTHS = (8, 15, 16, 24, 32)

# GRUB's 16 standard colours (grub_video_fbstd_colors): the palette of an indexed mode, in the
# boot information and, 6-bit, in DAC entries 0-15.
STANDARD_COLOURS = (
    (0x00, 0x00, 0x00), (0x00, 0x00, 0xA8), (0x00, 0xA8, 0x00), (0x00, 0xA8, 0xA8),
    (0xA8, 0x00, 0x00), (0xA8, 0x00, 0xA8), (0xA8, 0x54, 0x00), (0xA8, 0xA8, 0xA8),
    (0x54, 0x54, 0x54), (0x54, 0x54, 0xFE), (0x54, 0xFE, 0x54), (0x54, 0xFE, 0xFE),
    (0xFE, 0x54, 0x54), (0xFE, 0x54, 0xFE), (0xFE, 0xFE, 0x54), (0xFE, 0xFE, 0xFE),
)  # fmt: skip


@dataclass(frozen=True)
class ModeSpec:
    """One entry of GRUB's mode list: width and height 0 mean "auto"; depth 0 any depth."""

    width: int
    height: int
    depth: int = 0

    def __str__(self) -> str:
        if not self.width and not self.height:
            return "auto"
        return f"{self.width}x{self.height}" + (f"x{self.depth}" if self.depth else "")


def mode_list(width: int, height: int, depth: int) -> tuple[ModeSpec, ...]:
    """The list GRUB tries for a framebuffer request (before its final "text")."""
    auto = ModeSpec(0, 0)
    if width and height and depth:
        return (ModeSpec(width, height, depth), ModeSpec(width, height), auto)
    if width and height:
        return (ModeSpec(width, height), auto)
    return (auto,)


def _usable(mode: vbe.VideoMode) -> bool:
    return (
        mode.linear
        and mode.graphics
        and mode.colour
        and mode.model in (vbe.MemoryModel.PACKED, vbe.MemoryModel.DIRECT)
        and mode.depth in GRUB_DEPTHS
    )


def find_mode(spec: ModeSpec, modes: tuple[vbe.VideoMode, ...] = vbe.MODES) -> vbe.VideoMode | None:
    """The mode GRUB's VBE driver picks for one list entry, or None."""
    width, height = spec.width, spec.height
    preferred = not width and not height
    if preferred:
        width, height = EDID_PREFERRED
    best = None
    for mode in modes:
        if not _usable(mode):
            continue
        if preferred:
            if mode.width > width or mode.height > height:
                continue
        elif (mode.width, mode.height) != (width, height):
            continue
        if spec.depth and mode.depth != spec.depth:
            continue
        if best is not None and _volume(mode) < _volume(best):
            continue
        best = mode
    return best


def _volume(mode: vbe.VideoMode) -> int:
    return mode.depth * mode.width * mode.height


def choose_mode(width: int, height: int, depth: int) -> tuple[ModeSpec, vbe.VideoMode] | None:
    """The list entry that succeeds and the mode it sets, or None: GRUB stays in text mode."""
    for spec in mode_list(width, height, depth):
        mode = find_mode(spec)
        if mode is not None:
            return spec, mode
    return None


@dataclass(frozen=True)
class Framebuffer:
    """The graphics mode GRUB set, as the boot information describes it."""

    mode: vbe.VideoMode
    address: int = vbe.LFB_ADDRESS

    @property
    def width(self) -> int:
        return self.mode.width

    @property
    def height(self) -> int:
        return self.mode.height

    @property
    def bpp(self) -> int:
        return self.mode.depth

    @property
    def pitch(self) -> int:
        return self.mode.line_size

    @property
    def indexed(self) -> bool:
        return self.mode.model == vbe.MemoryModel.PACKED

    @property
    def layout(self) -> vbe.ColourLayout:
        return self.mode.colours

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        """The colours the boot information lists for an indexed mode (GRUB gives 16)."""
        return STANDARD_COLOURS if self.indexed else ()

    @property
    def vbe_mode(self) -> int:
        """The mode number as VBE 4F03 reports it: with the linear framebuffer bit."""
        return self.mode.number | vbe.MODE_LINEAR

    @property
    def size(self) -> int:
        return self.pitch * self.height

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}x{self.bpp} (VBE mode 0x{self.mode.number:x})"

    def dac(self) -> list[tuple[int, int, int]]:
        """The 6-bit DAC entries after the mode set: the BIOS loads its 256-colour palette for
        a packed-pixel mode, then GRUB sets entries 0-15 to its standard colours (4F09)."""
        entries = list(vga_256_colour_palette())
        for i, (r, g, b) in enumerate(STANDARD_COLOURS):
            entries[i] = (r >> 2, g >> 2, b >> 2)
        return entries


def vga_256_colour_palette() -> tuple[tuple[int, int, int], ...]:
    """The VGA BIOS's default 256-colour palette (mode 13h; 6-bit components): the 16 EGA
    colours, 16 greys, then 9 rings of 24 hues (three intensities, each at three
    saturations), then 8 blacks."""
    ega = []
    for i in range(16):
        bright = 0x15 if i & 8 else 0
        r, g, b = (0x2A if i & 4 else 0), (0x2A if i & 2 else 0), (0x2A if i & 1 else 0)
        if i == 6:
            g = 0x15  # brown
        ega.append((r + bright, g + bright, b + bright))
    greys = [(v, v, v) for v in (0, 5, 8, 11, 14, 17, 20, 24, 28, 32, 36, 40, 45, 50, 56, 63)]
    rings = []
    for steps in (
        (0x00, 0x10, 0x1F, 0x2F, 0x3F), (0x1F, 0x27, 0x2F, 0x37, 0x3F),
        (0x2D, 0x31, 0x36, 0x3A, 0x3F), (0x00, 0x07, 0x0E, 0x15, 0x1C),
        (0x0E, 0x11, 0x15, 0x18, 0x1C), (0x14, 0x16, 0x18, 0x1A, 0x1C),
        (0x00, 0x04, 0x08, 0x0C, 0x10), (0x08, 0x0A, 0x0C, 0x0E, 0x10),
        (0x0B, 0x0C, 0x0D, 0x0F, 0x10),
    ):  # fmt: skip
        lo, s1, s2, s3, hi = steps
        rings += [
            (lo, lo, hi), (s1, lo, hi), (s2, lo, hi), (s3, lo, hi),
            (hi, lo, hi), (hi, lo, s3), (hi, lo, s2), (hi, lo, s1),
            (hi, lo, lo), (hi, s1, lo), (hi, s2, lo), (hi, s3, lo),
            (hi, hi, lo), (s3, hi, lo), (s2, hi, lo), (s1, hi, lo),
            (lo, hi, lo), (lo, hi, s1), (lo, hi, s2), (lo, hi, s3),
            (lo, hi, hi), (lo, s3, hi), (lo, s2, hi), (lo, s1, hi),
        ]  # fmt: skip
    return tuple(ega + greys + rings + [(0, 0, 0)] * 8)
