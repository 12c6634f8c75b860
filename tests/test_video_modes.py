"""The video mode GRUB 2.06 sets for a Multiboot2 framebuffer tag or a Multiboot video request on
QEMU's standard VGA (firmware/grub_video.py), against what images/video printed and showed under
QEMU 7.2 (tests/golden/qemu/video*.serial and .png), and the boot information that describes it."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emu import LoaderError, Machine
from firmware import boot_kernel, grub_video, multiboot1, multiboot2, vbe
from firmware.bios.video import QEMU_EDID

GOLDEN = Path(__file__).resolve().parent / "golden" / "qemu"
VIDEO_GOLDENS = sorted(p.stem for p in GOLDEN.glob("video*.serial"))
# Multiboot2 requests for an 8-bit mode: under QEMU, GRUB resets the machine before the kernel
# runs (its framebuffer tag with a palette outgrows the room it reserved), so no golden.
GRUB_RESETS = ("video-640x480x8", "video-800x600x8")

REQUEST = re.compile(
    r"request (?:mode type (\d), |framebuffer tag flags (-?\d+) )(\d+)x(\d+)x(\d+)"
)


def _measured(name: str) -> tuple[tuple[int, int, int], int | None]:
    """The request a golden's kernel made and the VBE mode GRUB set (None: text)."""
    text = (GOLDEN / f"{name}.serial").read_text()
    m = REQUEST.search(text)
    assert m, name
    request = (int(m.group(3)), int(m.group(4)), int(m.group(5)))
    mode = re.search(r"^vbe: mode 0x([0-9a-f]+)", text, re.M)
    number = int(mode.group(1), 16) if mode else None
    return request, None if number in (None, 3) else number


def _asks_text(name: str) -> bool:
    text = (GOLDEN / f"{name}.serial").read_text()
    return "mode type 1," in text or "tag flags -1 " in text


def test_there_are_goldens() -> None:
    assert len(VIDEO_GOLDENS) >= 20


@pytest.mark.parametrize("name", [n for n in VIDEO_GOLDENS if not _asks_text(n)])
def test_mode_choice_is_the_measured_one(name: str) -> None:
    (width, height, depth), number = _measured(name)
    chosen = grub_video.choose_mode(width, height, depth)
    assert chosen is not None
    assert chosen[1].number | vbe.MODE_LINEAR == number


def test_mode_list_strings() -> None:
    assert [str(s) for s in grub_video.mode_list(1024, 768, 32)] == [
        "1024x768x32",
        "1024x768",
        "auto",
    ]
    assert [str(s) for s in grub_video.mode_list(1024, 768, 0)] == ["1024x768", "auto"]
    assert [str(s) for s in grub_video.mode_list(0, 0, 32)] == ["auto"]
    assert [str(s) for s in grub_video.mode_list(640, 0, 16)] == ["auto"]


def test_selection_rules() -> None:
    """The most bits of framebuffer wins, a later mode on a tie; "auto" stays within the
    EDID's preferred 1280x800; a depth must match exactly, else the size alone decides."""
    find = grub_video.find_mode
    assert find(grub_video.ModeSpec(1024, 768)).number == 0x144  # 32 bpp beats 8-24
    assert find(grub_video.ModeSpec(1024, 768, 15)).number == 0x116
    assert find(grub_video.ModeSpec(1024, 768, 12)) is None
    assert find(grub_video.ModeSpec(1000, 700)) is None
    assert find(grub_video.ModeSpec(0, 0)).number == 0x17A
    assert find(grub_video.ModeSpec(320, 200, 8)).number == 0x13  # the VGA modes come last
    assert find(grub_video.ModeSpec(800, 600, 4)) is None  # planar: no linear framebuffer
    assert grub_video.choose_mode(1000, 700, 32)[0] == grub_video.ModeSpec(0, 0)
    tie = (
        vbe.VideoMode(0x200, vbe.MemoryModel.DIRECT, 640, 480, 16, 8, 16, 0xA000),
        vbe.VideoMode(0x201, vbe.MemoryModel.DIRECT, 640, 480, 16, 8, 16, 0xA000),
    )
    assert find(grub_video.ModeSpec(640, 480), tie).number == 0x201


def test_preferred_mode_from_the_edid() -> None:
    """GRUB bounds "auto" by the EDID's first detailed timing (QEMU's: 1280x800), if the
    checksum holds and the feature byte marks that timing as preferred."""
    edid = QEMU_EDID
    assert grub_video.edid_preferred_mode(edid) == (1280, 800) == grub_video.EDID_PREFERRED
    bad_sum = edid[:0x7F] + bytes([edid[0x7F] ^ 1])
    assert grub_video.edid_preferred_mode(bad_sum) is None
    flags = bytearray(edid[:128])
    flags[0x18] &= ~0x02
    flags[0x7F] = (flags[0x7F] + 0x02) & 0xFF  # keep the checksum
    assert grub_video.edid_preferred_mode(bytes(flags)) is None


def test_indexed_palette_and_dac() -> None:
    fb = grub_video.Framebuffer(vbe.find_mode(0x101))
    assert fb.indexed and len(fb.palette) == 16 and fb.vbe_mode == 0x4101
    dac = fb.dac()
    assert dac[1] == (0, 0, 0x2A) and dac[15] == (0x3F, 0x3F, 0x3F)
    assert dac[16] == (0, 0, 0) and dac[31] == (0x3F, 0x3F, 0x3F) and dac[32] == (0, 0, 0x3F)
    assert dac[248:] == [(0, 0, 0)] * 8


# --------------------------------------------------------------------------- the loader


def _mb2_kernel(tags: bytes) -> bytes:
    """A minimal a.out-kludge Multiboot2 kernel: header at 0x100000, entry right after."""
    body = struct.pack("<HHIIIII", 2, 0, 24, 0x100000, 0x100000, 0, 0)
    body += struct.pack("<HHII", 3, 0, 12, 0x100000 + 0x200) + bytes(4)
    body += tags + struct.pack("<HHI", 0, 0, 8)
    length = 16 + len(body)
    head = struct.pack("<IIII", 0xE85250D6, 0, length, -(0xE85250D6 + length) & 0xFFFFFFFF)
    return (head + body).ljust(0x200, b"\0") + b"\xf4" * 16


def _fb_tag(width: int, height: int, depth: int, flags: int = 0) -> bytes:
    return struct.pack("<HHIIII", 5, flags, 20, width, height, depth) + bytes(4)


def _boot(tmp_path: Path, data: bytes):
    path = tmp_path / "k.bin"
    path.write_bytes(data)
    return boot_kernel(path, np.zeros(128 * 1024 * 1024, np.uint8))


def test_multiboot2_indexed_request_is_refused_as_grub_resets(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="triple-faults"):
        _boot(tmp_path, _mb2_kernel(_fb_tag(640, 480, 8)))


def test_multiboot2_tags_7_and_8(tmp_path: Path) -> None:
    plan = _boot(tmp_path, _mb2_kernel(_fb_tag(1000, 700, 32, flags=1)))
    assert plan.framebuffer.mode.number == 0x17A
    assert any('"auto"' in n for n in plan.notes)
    fb = plan.framebuffer
    assert multiboot2.framebuffer_tag_body(fb) == struct.pack(
        "<QIIIBBH6B", 0xFD000000, 5120, 1280, 800, 32, 1, 0, 16, 8, 8, 8, 0, 8
    )
    vbe_tag = multiboot2.vbe_tag_body(fb)
    assert len(vbe_tag) == 8 + 512 + 256
    assert struct.unpack_from("<HHHH", vbe_tag) == (0x417A, 0xFFFF, 0x6000, 0x4F)


def test_multiboot1_vga_mode_13h_is_not_modelled() -> None:
    header = multiboot1.Header(0, 0x6, None, 0, 320, 200, 8)
    with pytest.raises(LoaderError, match="mode 0x13"):
        multiboot1.check_flags(header, "k", [])


def test_multiboot1_indexed_info(tmp_path: Path) -> None:
    header = multiboot1.Header(0, 0x6, None, 0, 800, 600, 8)
    fb = multiboot1.check_flags(header, "k", [])
    info = multiboot1.build_info(
        0x10000, cmdline="", loader_name="GRUB", modules=(), regions=(), ram_size=1 << 27,
        sections=None, framebuffer=fb,
    )  # fmt: skip
    (flags,) = struct.unpack_from("<I", info)
    assert flags & (1 << 11) and flags & (1 << 12)
    assert info[108:110] == bytes([8, 0])  # 8 bpp, indexed
    palette_addr, colours = struct.unpack_from("<IH", info, 112)
    control, mode_info = struct.unpack_from("<II", info, 72)
    assert colours == 16 and control == palette_addr + 48
    offset = palette_addr - 0x10000
    assert info[offset : offset + 6] == bytes([0, 0, 0, 0, 0, 0xA8])
    assert info[mode_info - 0x10000 :][:256] == vbe.mode_info(0x103)
    assert struct.unpack_from("<H", info, 80)[0] == 0x4103


# --------------------------------------------------------------------------- the images

# GRUB leaves two things here that depend on its own memory, not on the machine (docs/vga.md):
_MB1_INTERFACE = (
    r"^vbe: mode 0x4[0-9a-f]{3} interface seg ",
    "a Multiboot graphics mode: GRUB's vbe_interface_seg is an uninitialised word of its stack "
    "(SeaVGABIOS has no 4F0Ah and leaves ES alone); ours is 0xFFFF, what it is in text mode",
)
_SCRATCH = (
    r"^  01[0-9a-f]0:",
    "in text mode the second half of the controller information is whatever GRUB's scratch "
    "buffer held (disk data); ours is zeros",
)


def _comparable(text: str, name: str) -> list[str]:
    patterns = [re.compile(_MB1_INTERFACE[0])] if "-mb1" in name else []
    if name == "video-mb1-text":
        patterns.append(re.compile(_SCRATCH[0]))
    lines = text.replace("\r\n", "\n").split("\n")
    return [x for x in lines if not any(p.search(x) for p in patterns)]


@pytest.mark.images
@pytest.mark.parametrize("name", VIDEO_GOLDENS)
def test_video_image_prints_and_shows_what_qemu_did(image, name: str) -> None:
    """Serial identical, and the framebuffer equal to QEMU's screendump pixel for pixel."""
    m = Machine.from_elf(image(name))
    r = m.run(max_instructions=300_000_000)
    assert r.stop_reason == "debug-exit", r.describe()
    expected = (GOLDEN / f"{name}.serial").read_text()
    assert _comparable(r.serial.decode("latin-1"), name) == _comparable(expected, name)
    theirs = np.asarray(Image.open(GOLDEN / f"{name}.png").convert("RGB"))
    if m.framebuffer is None:  # EGA text: the VGA's 720x400 picture, the cursor on
        ours = np.asarray(m.vga.image().convert("RGB"))
    else:
        ours = m.framebuffer.rgb(m.vga.dac)
    assert ours.shape == theirs.shape
    differ = np.argwhere((ours != theirs).any(axis=2))
    assert not len(differ), f"{len(differ)} pixels differ, the first at (y, x) {differ[0]}"


@pytest.mark.images
@pytest.mark.parametrize("name", GRUB_RESETS)
def test_video_image_grub_resets_on(image, name: str) -> None:
    with pytest.raises(LoaderError, match="triple-faults"):
        Machine.from_elf(image(name))


@pytest.mark.images
def test_the_differences_are_still_differences(image) -> None:
    for name, (pattern, why) in (("video-mb1", _MB1_INTERFACE), ("video-mb1-text", _SCRATCH)):
        expected = (GOLDEN / f"{name}.serial").read_text()
        ours = Machine.from_elf(image(name)).run(max_instructions=300_000_000).serial
        theirs = [x for x in expected.splitlines() if re.search(pattern, x)]
        mine = [x for x in ours.decode("latin-1").splitlines() if re.search(pattern, x)]
        assert theirs and mine != theirs, why


@pytest.mark.images
def test_screenshot_writes_the_framebuffer(image, tmp_path: Path) -> None:
    m = Machine.from_elf(image("video-mb1-640x480x8"))
    m.run(max_instructions=300_000_000)
    m.screenshot(tmp_path / "s.png")
    shot = np.asarray(Image.open(tmp_path / "s.png").convert("RGB"))
    golden = np.asarray(Image.open(GOLDEN / "video-mb1-640x480x8.png").convert("RGB"))
    assert (shot == golden).all()


@pytest.mark.images
def test_text_console_stays_without_a_request(image) -> None:
    m = Machine.from_elf(image("hello"))
    assert m.framebuffer is None and m.boot.framebuffer is None
