"""firmware/vbe.py against what QEMU 7.2's VGA BIOS answered under GRUB 2.06: images/video
prints the VBE controller and mode information blocks GRUB copied (tests/golden/qemu/video*)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from firmware import vbe

GOLDEN = Path(__file__).resolve().parent / "golden" / "qemu"


def _blocks(text: str) -> tuple[int, bytes, bytes] | None:
    """The VBE mode number and the two blocks of a video golden (None: no VBE information)."""
    mode = re.search(r"^vbe: mode 0x([0-9a-f]+)", text, re.M)
    if mode is None:
        return None
    found: dict[str, bytearray] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("vbe: control info"):
            current = found.setdefault("control", bytearray())
        elif line.startswith("vbe: mode info"):
            current = found.setdefault("mode", bytearray())
        elif current is not None and re.match(r"^  [0-9a-f]{4}:", line):
            current.extend(bytes(int(x, 16) for x in line.split(":")[1].split()))
        else:
            current = None
    return int(mode.group(1), 16), bytes(found["control"]), bytes(found["mode"])


GOLDENS = sorted(p for p in GOLDEN.glob("video*.serial") if _blocks(p.read_text()) is not None)


def test_there_are_goldens() -> None:
    assert len(GOLDENS) >= 15


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: p.stem)
def test_blocks_are_what_the_bios_returned(golden: Path) -> None:
    number, control, mode = _blocks(golden.read_text())
    # GRUB's scratch buffer is at 6000:8000; the BIOS writes the first 256 bytes
    assert vbe.controller_info(0x6000, 0x8000) == control[:256]
    if number == 3:  # text: GRUB makes the mode information up itself (firmware/grub.py)
        return
    assert control[256:] == bytes(256)
    assert vbe.mode_info(number) == mode


def test_mode_list_and_lookup() -> None:
    numbers = vbe.mode_numbers()
    # the 4K 32-bit modes and the modes wider than 4096 pixels need more than 16 MiB
    assert 0x199 in numbers and 0x19A not in numbers and 0x19B not in numbers
    assert numbers[-1] == 0x6A and numbers.index(0x00) == numbers.index(0x199) + 1
    assert vbe.find_mode(0x4144) == vbe.find_mode(0x144) == vbe.find_mode(0xC144)
    assert vbe.find_mode(0x19A) is None and vbe.mode_info(0x19A) is None
    assert vbe.find_mode(0x3).model == vbe.MemoryModel.TEXT


def test_controller_info_points_into_itself() -> None:
    info = vbe.controller_info(0x1234, 0x0100)
    assert info[:4] == b"VESA" and len(info) == 256
    assert info[14:18] == (0x1234 << 16 | 0x0122).to_bytes(4, "little")
    assert int.from_bytes(info[18:20], "little") == 256  # 16 MiB in 64 KiB blocks


def test_mode_info_of_other_memory_models() -> None:
    """Modes GRUB never picks, from the BIOS's rules: planar and text have no linear
    framebuffer, a text mode counts characters, a CGA mode has two banks."""
    planar = vbe.mode_info(0x102)
    assert planar[0] == 0x3B and planar[0x18] == 4 and planar[0x1B] == 3
    assert planar[0x28:0x2C] == bytes(4)
    assert int.from_bytes(planar[0x10:0x12], "little") == 100  # 800 pixels, 1 bit per plane
    text = vbe.mode_info(0x3)
    assert text[0] == 0x2F and text[0x12] == 80 and text[0x14] == 25 and text[0x1D] == 1
    mono = vbe.mode_info(0x7)
    assert mono[0] == 0x27  # no colour bit
    cga = vbe.mode_info(0x4)
    assert cga[0x1A] == 2 and cga[0x1C] == 8
    assert vbe.mode_info(0x13)[0] == 0xBB  # 320x200x8 packed: linear


def test_rom_strings_are_where_the_pointers_lead() -> None:
    info = vbe.controller_info(0, 0)
    pointers = [int.from_bytes(info[o : o + 4], "little") for o in (6, 22, 26, 30)]
    assert pointers == [0xC0000000 | offset for offset, _s in vbe.ROM_STRINGS]
    assert vbe.ROM_STRINGS[0][1] == b"SeaBIOS VBE(C) 2011\0"
