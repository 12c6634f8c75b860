"""Multiboot (specification 0.6.96): the header a kernel carries, and the boot information
structure the loader hands it, laid out as GRUB 2.06 does on a BIOS PC (measured under QEMU 7.2
with images/probe-mbi1).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from emu.errors import LoaderError

from . import grub, grub_video, vbe
from .elf import SectionTable
from .grub_video import Framebuffer
from .memmap import MemoryRegion, align_up, basic_meminfo
from .multiboot2 import EGA_TEXT, FB_TYPE_EGA_TEXT, FB_TYPE_INDEXED, FB_TYPE_RGB

if TYPE_CHECKING:
    from .boot import LoadedModule

HEADER_MAGIC = 0x1BADB002
BOOT_MAGIC = 0x2BADB002  # EAX at the kernel's entry
SEARCH_LIMIT = 8 * 1024  # GRUB reads the first 8 KiB of the file: the header lies there ...
HEADER_ALIGN = 4  # ... 32-bit aligned

# Header flags (3.1.2)
PAGE_ALIGN = 1 << 0  # modules on 4 KiB boundaries
MEMORY_INFO = 1 << 1  # mem_* (and the memory map) must be provided
VIDEO_MODE = 1 << 2  # the video mode table fields are valid
AOUT_KLUDGE = 1 << 16  # the address fields are valid: load the file per them
UNSUPPORTED_FLAGS = 0x0000FFF8  # bits 3-15 are requirements; GRUB refuses any it does not know

# The info structure (3.3): GRUB's struct multiboot_info is 120 bytes (the spec's 116 plus
# the padding of its colour-info union); the strings and tables follow it.
INFO_SIZE = 120
INFO_MEMORY = 1 << 0
INFO_BOOTDEV = 1 << 1
INFO_CMDLINE = 1 << 2
INFO_MODS = 1 << 3
INFO_ELF_SHDR = 1 << 5
INFO_MEM_MAP = 1 << 6
INFO_CONFIG_TABLE = 1 << 8  # never set by GRUB 2.06: config_table stays 0
INFO_BOOT_LOADER_NAME = 1 << 9
INFO_APM_TABLE = 1 << 10  # never set by GRUB 2.06, though it copies the APM table (below)
INFO_VBE = 1 << 11
INFO_FRAMEBUFFER = 1 << 12
INFO_AREA = (grub.MB1_INFO_LOW, grub.MB1_INFO_HIGH)  # GRUB places it in low memory
APM_SIZE = 20
VBE_CONTROL_SIZE = 512
VBE_MODE_SIZE = 256


@dataclass(frozen=True)
class AoutKludge:
    """Header fields 12-31, valid with flag 16: where the file goes, and the entry point."""

    header_addr: int
    load_addr: int
    load_end_addr: int  # 0: to the end of the file
    bss_end_addr: int  # 0: no bss
    entry_addr: int


@dataclass(frozen=True)
class Header:
    offset: int  # in the file
    flags: int
    aout: AoutKludge | None
    mode_type: int = 0  # the video mode fields (flag 2): 0 linear graphics, 1 EGA text
    width: int = 0
    height: int = 0
    depth: int = 0


@dataclass(frozen=True)
class HeaderSearch:
    header: Header | None
    problem: str | None  # a header with a bad checksum, if that is all there is


def find_header(data: bytes, name: str) -> HeaderSearch:
    """The first valid Multiboot header in the first 8 KiB of the file, 4-byte aligned."""
    problem = None
    window = min(len(data), SEARCH_LIMIT)
    for offset in range(0, window - 11, HEADER_ALIGN):
        magic, flags, checksum = struct.unpack_from("<III", data, offset)
        if magic != HEADER_MAGIC:
            continue
        if (magic + flags + checksum) & 0xFFFFFFFF:
            problem = problem or (
                f"the Multiboot header at file offset 0x{offset:x} has a bad checksum "
                f"(magic + flags + checksum = 0x{(magic + flags + checksum) & 0xFFFFFFFF:x}, "
                "must be 0)"
            )
            continue
        aout = None
        if flags & AOUT_KLUDGE:
            if offset + 32 > window:
                raise LoaderError(
                    f"{name}: the Multiboot header at file offset 0x{offset:x} sets flag 16 "
                    "but its address fields run past the end of the file"
                )
            aout = AoutKludge(*struct.unpack_from("<IIIII", data, offset + 12))
        video = (0, 0, 0, 0)
        if flags & VIDEO_MODE:
            if offset + 48 > window:
                raise LoaderError(
                    f"{name}: the Multiboot header at file offset 0x{offset:x} sets flag 2 "
                    "but its video mode fields run past the end of the file"
                )
            video = struct.unpack_from("<IIII", data, offset + 32)
        return HeaderSearch(Header(offset, flags, aout, *video), None)
    return HeaderSearch(None, problem)


def check_flags(header: Header, name: str, notes: list[str]) -> Framebuffer | None:
    """GRUB 2.06 refuses a kernel that requires a feature (flag bits 3-15) it does not know, and
    a video mode request of a type other than 0 (graphics) and 1 (EGA text). A graphics request
    gets the mode GRUB sets for it (firmware/grub_video.py), or None: EGA text."""
    unknown = header.flags & UNSUPPORTED_FLAGS
    if unknown:
        bits = ", ".join(str(b) for b in range(3, 16) if unknown >> b & 1)
        raise LoaderError(
            f"{name}: the Multiboot header requires unsupported features "
            f"(flags 0x{unknown:x}: bit {bits}); GRUB 2.06 refuses it too"
        )
    if not header.flags & VIDEO_MODE:
        return None
    if header.mode_type == 1:
        notes.append("video mode request: EGA text, as asked")
        return None
    if header.mode_type != 0:
        raise LoaderError(
            f"{name}: the Multiboot header asks for video mode type {header.mode_type} "
            "(0 is graphics, 1 EGA text); GRUB 2.06 refuses it ('unsupported graphical mode "
            "type')"
        )
    request = f"{header.width}x{header.height}x{header.depth}"
    chosen = grub_video.choose_mode(header.width, header.height, header.depth)
    if chosen is None:
        notes.append(f"video mode request {request}: no such VBE mode, EGA text mode stays")
        return None
    spec, mode = chosen
    if mode.number < 0x100:
        raise LoaderError(
            f"{name}: for the video mode request {request} GRUB 2.06 sets the VGA {mode.label} "
            "(its framebuffer at 0xA0000, in the VGA window): not modelled, only VBE modes "
            "with a linear framebuffer are"
        )
    framebuffer = Framebuffer(mode)
    if (header.width, header.height, header.depth) != (mode.width, mode.height, mode.depth):
        notes.append(
            f'video mode request {request} is not a VBE mode: GRUB\'s "{spec}" gives '
            f"{framebuffer.label}"
        )
    notes.append(f"linear framebuffer {framebuffer.label} at 0x{framebuffer.address:x}")
    return framebuffer


def reserved_size(
    *,
    cmdline: str,
    loader_name: str,
    modules: Sequence[LoadedModule],
    mmap_entries: int,
    sections: SectionTable | None,
) -> int:
    """How much memory GRUB reserves for the information structure and its tables
    (grub_multiboot_get_mbi_size): it decides where the structure can go. Measured: 1952 bytes
    for a kernel with two sections and no command line or modules."""
    size = INFO_SIZE + align_up(len(cmdline.encode()) + 1, 4)
    size += sum(16 + align_up(len(m.args.encode()) + 1, 4) for m in modules)
    size += align_up(len(loader_name.encode()) + 1, 4)
    size += 24 * mmap_entries
    if sections is not None:
        size += sections.entsize * sections.num
    size += 256 * 3  # a palette of 256 colours
    size += VBE_CONTROL_SIZE + VBE_MODE_SIZE + APM_SIZE
    return size


def build_info(
    addr: int,
    *,
    cmdline: str,
    loader_name: str,
    modules: Sequence[LoadedModule],
    regions: Sequence[MemoryRegion],
    ram_size: int,
    sections: SectionTable | None,
    framebuffer: Framebuffer | None = None,
) -> bytes:
    """The info structure for physical address ``addr``, followed by what it points to, in
    GRUB 2.06's order (measured): command line, loader name, the APM table (copied, though no
    flag or field points to it), module list, module strings, memory map, section headers, the
    VBE controller information and the VBE mode information; each string 4-byte aligned.

    Flags set: 0 memory, 1 boot device (0xE0FFFFFF, the CD-ROM), 2 command line, 3 modules
    (when there are any), 5 ELF section headers (for an ELF with a section table), 6 memory
    map, 9 loader name, 11 VBE (mode 3 in text; the graphics mode GRUB set), 12 framebuffer (EGA
    text, or the linear framebuffer of ``framebuffer`` with its colour layout or, indexed, the
    address of its 16-colour palette, which comes before the VBE blocks). Not set: 4 (a.out
    symbols), 7 drives, 8 config table, 10 APM. Padding and the module entries' reserved words
    are zero (GRUB leaves what its heap held there).
    """
    tail = bytearray()

    def put(blob: bytes, align: int = 4) -> int:
        tail.extend(bytes(align_up(len(tail), align) - len(tail)))
        where = addr + INFO_SIZE + len(tail)
        tail.extend(blob)
        return where

    flags = (INFO_MEMORY | INFO_BOOTDEV | INFO_CMDLINE | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME
             | INFO_VBE | INFO_FRAMEBUFFER)  # fmt: skip
    cmdline_addr = put(cmdline.encode() + b"\0")
    name_addr = put(loader_name.encode() + b"\0")
    put(grub.apm_table())
    mods_addr = 0
    if modules:
        flags |= INFO_MODS
        list_addr = put(bytes(16 * len(modules)))
        entries = []
        for m in modules:
            string_addr = put(m.args.encode() + b"\0")
            entries.append(struct.pack("<IIII", m.start, m.end, string_addr, 0))
        offset = list_addr - addr - INFO_SIZE
        tail[offset : offset + 16 * len(modules)] = b"".join(entries)
        mods_addr = list_addr
    tail.extend(bytes(align_up(len(tail), 4) - len(tail)))
    # each entry: size (20, not counting itself), base_addr, length, type
    mmap = b"".join(struct.pack("<IQQI", 20, r.base, r.length, r.type) for r in regions)
    mmap_addr = put(mmap, 1)
    syms = (0, 0, 0, 0)
    if sections is not None:
        flags |= INFO_ELF_SHDR
        syms = (sections.num, sections.entsize, put(sections.table, 1), sections.shndx)
    colour_info = b""
    if framebuffer is None:
        vbe_mode, mode_info = grub.VBE_TEXT_MODE, grub.vbe_text_mode_info()
        fb_addr, pitch, width, height, bpp = EGA_TEXT
        fb_type = FB_TYPE_EGA_TEXT
    else:
        vbe_mode, mode_info = framebuffer.vbe_mode, vbe.mode_info(framebuffer.mode.number)
        assert mode_info is not None  # GRUB chose it from the BIOS's list
        fb_addr, pitch = framebuffer.address, framebuffer.pitch
        width, height, bpp = framebuffer.width, framebuffer.height, framebuffer.bpp
        # GRUB's struct aligns the colour information union: it starts at offset 112
        if framebuffer.indexed:
            fb_type = FB_TYPE_INDEXED
            palette = bytes(c for rgb in framebuffer.palette for c in rgb)
            colour_info = struct.pack("<IH", put(palette, 1), len(framebuffer.palette))
        else:
            fb_type = FB_TYPE_RGB
            c = framebuffer.layout
            colour_info = bytes(
                [c.red_pos, c.red_size, c.green_pos, c.green_size, c.blue_pos, c.blue_size]
            )
    vbe_control = put(grub.vbe_control_info(), 1)
    vbe_mode_info = put(mode_info, 1)
    lower, upper = basic_meminfo(ram_size)
    info = struct.pack(
        "<IIIIIII4IIIIIIIIIIHHHHQIIIBB",
        flags, lower, upper, grub.MB1_BOOT_DEVICE, cmdline_addr, len(modules), mods_addr, *syms,
        len(mmap), mmap_addr, 0, 0, 0, name_addr, 0, vbe_control, vbe_mode_info,
        vbe_mode, *grub.VBE_INTERFACE, fb_addr, pitch, width, height, bpp, fb_type,
    )  # fmt: skip
    info += bytes(2) + colour_info
    info += bytes(INFO_SIZE - len(info))  # no colour information for EGA text
    return info + bytes(tail)
