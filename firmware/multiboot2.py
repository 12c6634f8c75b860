"""Multiboot2 (specification 2.0): the header a kernel carries, and the boot information the
loader hands it, laid out as GRUB 2.06 does on a BIOS PC.

Section numbers below refer to the Multiboot2 Specification version 2.0.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from emu.errors import LoaderError

from .elf import SectionTable
from .memmap import MemoryRegion, align_up, basic_meminfo
from .notes import log_once

if TYPE_CHECKING:
    from .boot import LoadedModule

log = logging.getLogger(__name__)

HEADER_MAGIC = 0xE85250D6
BOOT_MAGIC = 0x36D76289  # EAX at the kernel's entry
SEARCH_LIMIT = 32 * 1024  # the header lies in the first 32 KiB of the file (3.1.1) ...
HEADER_ALIGN = 8  # ... 64-bit aligned
ARCH_I386 = 0
ARCH_NAMES = {0: "i386 protected mode", 4: "MIPS32"}

TAG_OPTIONAL = 1  # header tag flags bit 0 (3.1.3)

# Header tags (3.1.4-3.1.13)
TAG_END = 0
TAG_INFORMATION_REQUEST = 1
TAG_ADDRESS = 2
TAG_ENTRY_ADDRESS = 3
TAG_CONSOLE_FLAGS = 4
TAG_FRAMEBUFFER = 5
TAG_MODULE_ALIGN = 6
TAG_EFI_BS = 7
TAG_ENTRY_ADDRESS_EFI32 = 8
TAG_ENTRY_ADDRESS_EFI64 = 9
TAG_RELOCATABLE = 10
HEADER_TAG_NAMES = {
    TAG_END: "end",
    TAG_INFORMATION_REQUEST: "information request",
    TAG_ADDRESS: "address",
    TAG_ENTRY_ADDRESS: "entry address",
    TAG_CONSOLE_FLAGS: "console flags",
    TAG_FRAMEBUFFER: "framebuffer",
    TAG_MODULE_ALIGN: "module alignment",
    TAG_EFI_BS: "EFI boot services",
    TAG_ENTRY_ADDRESS_EFI32: "EFI i386 entry address",
    TAG_ENTRY_ADDRESS_EFI64: "EFI amd64 entry address",
    TAG_RELOCATABLE: "relocatable",
}
# The smallest legal size of each header tag, header included.
HEADER_TAG_MIN_SIZE = {TAG_INFORMATION_REQUEST: 8, TAG_ADDRESS: 24, TAG_ENTRY_ADDRESS: 12,
                       TAG_CONSOLE_FLAGS: 12, TAG_FRAMEBUFFER: 20, TAG_MODULE_ALIGN: 8,
                       TAG_EFI_BS: 8, TAG_ENTRY_ADDRESS_EFI32: 12, TAG_ENTRY_ADDRESS_EFI64: 12,
                       TAG_RELOCATABLE: 24}  # fmt: skip

# Boot information tags (3.6)
INFO_CMDLINE = 1
INFO_BOOT_LOADER_NAME = 2
INFO_MODULE = 3
INFO_BASIC_MEMINFO = 4
INFO_MMAP = 6
INFO_FRAMEBUFFER = 8
INFO_ELF_SECTIONS = 9
INFO_LOAD_BASE_ADDR = 21
INFO_NAMES = {0: "end", 1: "command line", 2: "boot loader name", 3: "modules",
              4: "basic memory information", 5: "BIOS boot device", 6: "memory map",
              7: "VBE info", 8: "framebuffer info", 9: "ELF sections", 10: "APM table",
              11: "EFI 32-bit system table", 12: "EFI 64-bit system table", 13: "SMBIOS tables",
              14: "ACPI old RSDP", 15: "ACPI new RSDP", 16: "networking information",
              17: "EFI memory map", 18: "EFI boot services not terminated",
              19: "EFI 32-bit image handle", 20: "EFI 64-bit image handle",
              21: "image load base physical address"}  # fmt: skip
INFO_PROVIDED = frozenset({0, INFO_CMDLINE, INFO_BOOT_LOADER_NAME, INFO_MODULE,
                           INFO_BASIC_MEMINFO, INFO_MMAP, INFO_FRAMEBUFFER, INFO_ELF_SECTIONS,
                           INFO_LOAD_BASE_ADDR})  # fmt: skip

CONSOLE_REQUIRED = 1  # console flags bit 0
CONSOLE_EGA_TEXT = 2  # console flags bit 1: the kernel can use an EGA text console

# Where a linear framebuffer lives: QEMU's standard VGA puts its BAR at 0xFD000000.
FB_BASE = 0xFD000000
FB_DEFAULT = (1024, 768, 32)
FB_MAX = (4096, 4096)
FB_DEPTHS = (24, 32)
# EGA text mode as GRUB describes it on a BIOS PC: 80x25 at 0xB8000, 2 bytes a cell.
EGA_TEXT = (0xB8000, 160, 80, 25, 16)
FB_TYPE_RGB = 1
FB_TYPE_EGA_TEXT = 2


# --------------------------------------------------------------------------- header


@dataclass(frozen=True)
class HeaderTag:
    type: int
    flags: int
    offset: int  # in the file
    body: bytes  # the tag without its 8-byte type/flags/size header

    @property
    def optional(self) -> bool:
        return bool(self.flags & TAG_OPTIONAL)

    @property
    def label(self) -> str:
        return f"tag {self.type} ({HEADER_TAG_NAMES.get(self.type, 'unknown')})"


@dataclass(frozen=True)
class Header:
    offset: int  # in the file
    length: int
    tags: tuple[HeaderTag, ...]


@dataclass(frozen=True)
class HeaderSearch:
    header: Header | None
    problem: str | None  # a header-like thing that is not usable (bad checksum, other arch)


def find_header(data: bytes, name: str) -> HeaderSearch:
    """The first valid Multiboot2 header in the first 32 KiB of the file, 8-byte aligned."""
    problem = None
    window = min(len(data), SEARCH_LIMIT)
    for offset in range(0, window - 15, HEADER_ALIGN):
        magic, arch, length, checksum = struct.unpack_from("<IIII", data, offset)
        if magic != HEADER_MAGIC:
            continue
        if (magic + arch + length + checksum) & 0xFFFFFFFF:
            problem = problem or (
                f"the Multiboot2 header at file offset 0x{offset:x} has a bad checksum "
                f"(magic + architecture + header_length + checksum = "
                f"0x{(magic + arch + length + checksum) & 0xFFFFFFFF:x}, must be 0)"
            )
            continue
        if arch != ARCH_I386:
            problem = problem or (
                f"the Multiboot2 header at file offset 0x{offset:x} is for architecture {arch} "
                f"({ARCH_NAMES.get(arch, 'unknown')}): unsupported architecture "
                "(a PC boots architecture 0, i386 protected mode)"
            )
            continue
        return HeaderSearch(Header(offset, length, _parse_tags(data, name, offset, length)), None)
    return HeaderSearch(None, problem)


def _parse_tags(data: bytes, name: str, offset: int, length: int) -> tuple[HeaderTag, ...]:
    where = f"{name}: the Multiboot2 header at file offset 0x{offset:x}"
    if length < 24:
        raise LoaderError(f"{where} has header_length {length}: too short for an end tag")
    if offset + length > len(data):
        raise LoaderError(
            f"{where} has header_length {length}, which runs past the end of the file"
        )
    end = offset + length
    tags = []
    p = offset + 16
    while True:
        if p + 8 > end:
            raise LoaderError(f"{where}: its tags run past header_length {length} (no end tag)")
        ttype, tflags, tsize = struct.unpack_from("<HHI", data, p)
        name = HEADER_TAG_NAMES.get(ttype, "unknown")
        if tsize < 8 or p + tsize > end:
            raise LoaderError(
                f"{where}: tag {ttype} ({name}) at 0x{p:x} has size {tsize}, which overruns "
                f"the header (header_length {length})"
            )
        if ttype == TAG_END:
            return tuple(tags)
        minimum = HEADER_TAG_MIN_SIZE.get(ttype, 8)
        if tsize < minimum:
            raise LoaderError(
                f"{where}: tag {ttype} ({name}) has size {tsize}, it needs at least {minimum}"
            )
        tags.append(HeaderTag(ttype, tflags, p, data[p + 8 : p + tsize]))
        p += align_up(tsize, 8)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class AddressTag:
    """The a.out kludge (3.1.5): where the file goes when it is not loaded as an ELF."""

    header_addr: int
    load_addr: int  # 0xFFFFFFFF: the file is loaded from its beginning
    load_end_addr: int  # 0: to the end of the file
    bss_end_addr: int  # 0: no bss


@dataclass(frozen=True)
class RelocatableTag:
    """3.1.13: the image may be loaded anywhere in [min_addr, max_addr] at ``align``."""

    min_addr: int
    max_addr: int  # the highest address the loaded image may end at
    align: int
    preference: int  # 0 none, 1 lowest address, 2 highest address


@dataclass(frozen=True)
class Framebuffer:
    """A linear RGB framebuffer (framebuffer info type 1) at ``address``, above RAM."""

    address: int
    width: int
    height: int
    bpp: int  # 24 or 32
    pitch: int  # bytes per line

    @property
    def size(self) -> int:
        return self.pitch * self.height

    def info_tag_body(self) -> bytes:
        # the common part (3.6.12), then the RGB description: red at 16, green at 8, blue at 0
        common = struct.pack(
            "<QIIIBBH", self.address, self.pitch, self.width, self.height, self.bpp,
            FB_TYPE_RGB, 0,
        )  # fmt: skip
        return common + bytes([16, 8, 8, 8, 0, 8])


@dataclass(frozen=True)
class Requests:
    """What a Multiboot2 header asks of the loader, after every tag has been checked."""

    address: AddressTag | None = None
    entry: int | None = None
    relocatable: RelocatableTag | None = None
    framebuffer: Framebuffer | None = None


def interpret_tags(header: Header, name: str, notes: list[str]) -> Requests:
    """Check every header tag as GRUB 2.06 does on a BIOS PC; add a note for each request that
    is met differently from what the kernel asked."""
    address = entry = relocatable = framebuffer = None
    for tag in header.tags:
        body = tag.body
        if tag.type == TAG_INFORMATION_REQUEST:
            _check_information_request(tag, name, notes)
        elif tag.type == TAG_ADDRESS:
            address = AddressTag(*struct.unpack_from("<IIII", body))
        elif tag.type == TAG_ENTRY_ADDRESS:
            entry = struct.unpack_from("<I", body)[0]
        elif tag.type == TAG_CONSOLE_FLAGS:
            flags = struct.unpack_from("<I", body)[0]
            if not flags & CONSOLE_EGA_TEXT:
                notes.append(
                    f"console flags 0x{flags:x}: the kernel does not claim EGA text support; "
                    "an EGA text console is what it gets"
                )
        elif tag.type == TAG_FRAMEBUFFER:
            framebuffer = _choose_framebuffer(*struct.unpack_from("<III", body), notes)
        elif tag.type == TAG_MODULE_ALIGN:
            pass  # modules are always page aligned, which is what this tag asks for
        elif tag.type in (TAG_EFI_BS, TAG_ENTRY_ADDRESS_EFI32, TAG_ENTRY_ADDRESS_EFI64):
            # Measured: GRUB 2.06 on BIOS boots a kernel with these tags, even required ones,
            # ignoring them (they only mean something to an EFI boot; spec 3.1.10-3.1.12).
            notes.append(
                f"header {tag.label} ignored: a BIOS boot has no EFI (GRUB on BIOS ignores it too)"
            )
        elif tag.type == TAG_RELOCATABLE:
            relocatable = RelocatableTag(*struct.unpack_from("<IIII", body))
        elif tag.optional:
            notes.append(f"optional header {tag.label} skipped")
        else:
            raise LoaderError(
                f"{name}: required Multiboot2 header {tag.label} is not supported "
                "(GRUB 2.06 refuses it too)"
            )
    return Requests(address, entry, relocatable, framebuffer)


def _check_information_request(tag: HeaderTag, name: str, notes: list[str]) -> None:
    for i in range(0, len(tag.body) - 3, 4):
        request = struct.unpack_from("<I", tag.body, i)[0]
        if request in INFO_PROVIDED:
            continue
        what = f"boot information tag {request} ({INFO_NAMES.get(request, 'unknown')})"
        if tag.optional:
            notes.append(f"optional request for {what} not provided")
            log_once(
                log,
                logging.WARNING,
                f"not modelled: {what} (a kernel asked for it; none is provided)",
            )
        elif request not in INFO_NAMES:
            raise LoaderError(
                f"{name}: the Multiboot2 information request asks for unknown {what} "
                "(GRUB 2.06 refuses it too)"
            )
        else:
            raise LoaderError(
                f"{name}: the kernel requires {what}, which Triplefault does not provide "
                "(mark the request optional to boot without it)"
            )


def _choose_framebuffer(width: int, height: int, depth: int, notes: list[str]) -> Framebuffer:
    """The mode a framebuffer tag gets (0 means no preference), as GRUB would set one."""
    w, h, d = FB_DEFAULT
    if width and height:
        if width <= FB_MAX[0] and height <= FB_MAX[1]:
            w, h = width, height
        else:
            notes.append(f"framebuffer {width}x{height} is too large: {w}x{h} provided")
    if depth in FB_DEPTHS:
        d = depth
    elif depth:
        notes.append(f"framebuffer depth {depth} is not offered: {d} bpp provided")
    notes.append(f"linear framebuffer {w}x{h}x{d} at 0x{FB_BASE:x}")
    return Framebuffer(FB_BASE, w, h, d, w * (d // 8))


# --------------------------------------------------------------------------- boot information


def _tag(ttype: int, body: bytes) -> bytes:
    raw = struct.pack("<II", ttype, 8 + len(body)) + body
    return raw + bytes(align_up(len(raw), 8) - len(raw))  # every tag starts 8-byte aligned


def build_info(
    *,
    cmdline: str,
    loader_name: str,
    modules: Sequence[LoadedModule],
    regions: Sequence[MemoryRegion],
    ram_size: int,
    sections: SectionTable | None,
    load_base: int,
    framebuffer: Framebuffer | None,
) -> bytes:
    """The boot information (3.6) in GRUB 2.06's tag order (multiboot_mbi2.c, measured):
    load base, command line, loader name, modules, memory map, ELF sections, basic meminfo,
    framebuffer, end. GRUB also emits APM (10), BIOS boot device (5) and ACPI RSDP (14) tags
    under QEMU; this machine has no APM BIOS, boots from no disk and has no ACPI tables."""
    tags = [
        _tag(INFO_LOAD_BASE_ADDR, struct.pack("<I", load_base)),
        _tag(INFO_CMDLINE, cmdline.encode() + b"\0"),
        _tag(INFO_BOOT_LOADER_NAME, loader_name.encode() + b"\0"),
    ]
    for m in modules:
        tags.append(_tag(INFO_MODULE, struct.pack("<II", m.start, m.end) + m.args.encode() + b"\0"))
    entries = b"".join(struct.pack("<QQII", r.base, r.length, r.type, 0) for r in regions)
    tags.append(_tag(INFO_MMAP, struct.pack("<II", 24, 0) + entries))  # entry_size, version
    if sections is not None:
        head = struct.pack("<III", sections.num, sections.entsize, sections.shndx)
        tags.append(_tag(INFO_ELF_SECTIONS, head + sections.table))
    tags.append(_tag(INFO_BASIC_MEMINFO, struct.pack("<II", *basic_meminfo(ram_size))))
    if framebuffer is not None:
        tags.append(_tag(INFO_FRAMEBUFFER, framebuffer.info_tag_body()))
    else:  # EGA text: type 2 carries no colour information
        address, pitch, width, height, bpp = EGA_TEXT
        body = struct.pack("<QIIIBBH", address, pitch, width, height, bpp, FB_TYPE_EGA_TEXT, 0)
        tags.append(_tag(INFO_FRAMEBUFFER, body))
    tags.append(struct.pack("<II", TAG_END, 8))
    body = b"".join(tags)
    return struct.pack("<II", 8 + len(body), 0) + body  # total_size, reserved
