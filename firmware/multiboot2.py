"""Multiboot2 (specification 2.0): the header a kernel carries, and the boot information the
loader hands it, laid out as GRUB 2.06 does on a BIOS PC (measured under QEMU 7.2 with
images/probe-mbi).

Section numbers below refer to the Multiboot2 Specification version 2.0.
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

if TYPE_CHECKING:
    from .boot import LoadedModule

HEADER_MAGIC = 0xE85250D6
BOOT_MAGIC = 0x36D76289  # EAX at the kernel's entry
SEARCH_LIMIT = 32 * 1024  # GRUB reads the first 32 KiB of the file: the header lies there ...
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
# The header tags GRUB 2.06 handles on a BIOS PC: 8 (EFI i386 entry) is not among them.
HEADER_TAGS_OF_GRUB = frozenset(HEADER_TAG_NAMES) - {TAG_ENTRY_ADDRESS_EFI32}
# The bytes of each header tag's fields after its 8-byte type/flags/size: what GRUB reads of it,
# whatever the tag's size says (a short tag's fields run into what follows it).
HEADER_TAG_FIELDS = {TAG_ADDRESS: 16, TAG_ENTRY_ADDRESS: 4, TAG_CONSOLE_FLAGS: 4,
                     TAG_FRAMEBUFFER: 12, TAG_RELOCATABLE: 16}  # fmt: skip

# Boot information tags (3.6)
INFO_END = 0
INFO_CMDLINE = 1
INFO_BOOT_LOADER_NAME = 2
INFO_MODULE = 3
INFO_BASIC_MEMINFO = 4
INFO_BOOTDEV = 5
INFO_MMAP = 6
INFO_VBE = 7
INFO_FRAMEBUFFER = 8
INFO_ELF_SECTIONS = 9
INFO_APM = 10
INFO_ACPI_OLD = 14
INFO_ACPI_NEW = 15
INFO_LOAD_BASE_ADDR = 21
INFO_NAMES = {0: "end", 1: "command line", 2: "boot loader name", 3: "modules",
              4: "basic memory information", 5: "BIOS boot device", 6: "memory map",
              7: "VBE info", 8: "framebuffer info", 9: "ELF sections", 10: "APM table",
              11: "EFI 32-bit system table", 12: "EFI 64-bit system table", 13: "SMBIOS tables",
              14: "ACPI old RSDP", 15: "ACPI new RSDP", 16: "networking information",
              17: "EFI memory map", 18: "EFI boot services not terminated",
              19: "EFI 32-bit image handle", 20: "EFI 64-bit image handle",
              21: "image load base physical address"}  # fmt: skip
# What GRUB 2.06 accepts in a required information request (SMBIOS, 13, is not among them).
INFO_KNOWN_TO_GRUB = frozenset(range(0, 22)) - {13}
# What this loader puts in the boot information (14 or 15 only when given an RSDP).
INFO_PROVIDED = frozenset({0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 21})

CONSOLE_REQUIRED = 1  # console flags bit 0
CONSOLE_EGA_TEXT = 2  # console flags bit 1: the kernel can use an EGA text console

# EGA text mode as GRUB describes it on a BIOS PC: 80x25 at 0xB8000, 2 bytes a cell.
EGA_TEXT = (0xB8000, 160, 80, 25, 16)
FB_TYPE_INDEXED = 0
FB_TYPE_RGB = 1
FB_TYPE_EGA_TEXT = 2

# RSDP revisions: 0 is ACPI 1.0 (20 bytes); 2 and later carry a length and an XSDT address.
RSDP_V1_SIZE = 20


# --------------------------------------------------------------------------- header


@dataclass(frozen=True)
class HeaderTag:
    type: int
    flags: int
    offset: int  # in the file
    body: bytes  # the fields after the tag's 8-byte header, as GRUB reads them

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
        return HeaderSearch(Header(offset, length, _parse_tags(data, name, offset)), None)
    return HeaderSearch(None, problem)


def _parse_tags(data: bytes, name: str, offset: int) -> tuple[HeaderTag, ...]:
    """The header's tags up to the end tag. As in GRUB, header_length plays no part (only the
    checksum uses it): the tags run until a tag of type 0, each 8-byte aligned, inside the
    first 32 KiB of the file that GRUB reads."""
    where = f"{name}: the Multiboot2 header at file offset 0x{offset:x}"
    limit = min(len(data), SEARCH_LIMIT)
    tags = []
    p = offset + 16
    while True:
        if p + 8 > limit:
            raise LoaderError(
                f"{where}: its tags run past the first {limit} bytes of the file that GRUB "
                "reads without an end tag"
            )
        ttype, tflags, tsize = struct.unpack_from("<HHI", data, p)
        if ttype == TAG_END:
            return tuple(tags)
        label = f"tag {ttype} ({HEADER_TAG_NAMES.get(ttype, 'unknown')})"
        if tsize == 0:
            raise LoaderError(
                f"{where}: {label} at 0x{p:x} has size 0 (GRUB 2.06 loops on it forever)"
            )
        if ttype == TAG_INFORMATION_REQUEST:
            if tsize < 8:
                raise LoaderError(
                    f"{where}: {label} at 0x{p:x} has size {tsize}, less than its own 8-byte "
                    "header (GRUB 2.06 reads ~4 GiB of requests from it)"
                )
            fields = tsize - 8
        else:
            fields = HEADER_TAG_FIELDS.get(ttype, 0)
        if p + 8 + fields > limit:
            raise LoaderError(
                f"{where}: {label} at 0x{p:x} runs past the first {limit} bytes of the file "
                "that GRUB reads"
            )
        tags.append(HeaderTag(ttype, tflags, p, data[p + 8 : p + 8 + fields]))
        if ttype not in HEADER_TAGS_OF_GRUB and not tflags & TAG_OPTIONAL:
            return tuple(tags)  # GRUB stops at it, whatever follows: refused when interpreted
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
    console_flags = None
    for tag in header.tags:
        body = tag.body
        if tag.type == TAG_INFORMATION_REQUEST:
            _check_information_request(tag, name, notes)
        elif tag.type == TAG_ADDRESS:
            address = AddressTag(*struct.unpack_from("<IIII", body))
        elif tag.type == TAG_ENTRY_ADDRESS:
            entry = struct.unpack_from("<I", body)[0]
        elif tag.type == TAG_CONSOLE_FLAGS:
            console_flags = struct.unpack_from("<I", body)[0]
        elif tag.type == TAG_FRAMEBUFFER:
            framebuffer = _choose_framebuffer(*struct.unpack_from("<III", body), name, notes)
        elif tag.type == TAG_MODULE_ALIGN:
            pass  # modules are always page aligned, which is what this tag asks for
        elif tag.type in (TAG_EFI_BS, TAG_ENTRY_ADDRESS_EFI64):
            # Measured: GRUB 2.06 on BIOS boots a kernel with these tags, even required ones,
            # ignoring them (they only mean something to an EFI boot; spec 3.1.10, 3.1.12).
            notes.append(
                f"header {tag.label} ignored: a BIOS boot has no EFI (GRUB on BIOS ignores it too)"
            )
        elif tag.type == TAG_RELOCATABLE:
            relocatable = RelocatableTag(*struct.unpack_from("<IIII", body))
        elif tag.optional:
            notes.append(f"optional header {tag.label} skipped")
        else:  # tag 8 (EFI i386 entry) too: GRUB 2.06 knows no such tag on a BIOS PC
            raise LoaderError(
                f"{name}: required Multiboot2 header {tag.label} is not supported "
                "(GRUB 2.06 refuses it too: 'unsupported tag')"
            )
    if console_flags is not None and not console_flags & CONSOLE_EGA_TEXT:
        if console_flags & CONSOLE_REQUIRED and framebuffer is None:
            raise LoaderError(
                f"{name}: the console flags tag requires a console but accepts no EGA text "
                "one, and there is no framebuffer tag (GRUB 2.06 does not boot it)"
            )
        notes.append(
            f"console flags 0x{console_flags:x}: the kernel does not claim EGA text support; "
            "an EGA text console is what it gets"
        )
    return Requests(address, entry, relocatable, framebuffer)


def _check_information_request(tag: HeaderTag, name: str, notes: list[str]) -> None:
    """GRUB skips an optional request altogether and refuses a required one that names a type
    it does not know; whatever is requested, the boot information is the same."""
    if tag.optional:
        return
    for i in range(0, len(tag.body) - 3, 4):
        request = struct.unpack_from("<I", tag.body, i)[0]
        what = f"boot information tag {request} ({INFO_NAMES.get(request, 'unknown')})"
        if request not in INFO_KNOWN_TO_GRUB:
            raise LoaderError(
                f"{name}: the Multiboot2 information request asks for {what}, which GRUB 2.06 "
                "refuses ('unsupported information tag')"
            )
        if request not in INFO_PROVIDED and request not in (INFO_ACPI_OLD, INFO_ACPI_NEW):
            notes.append(f"requested {what}: GRUB on a BIOS PC gives none either")


def _choose_framebuffer(
    width: int, height: int, depth: int, name: str, notes: list[str]
) -> Framebuffer | None:
    """The mode GRUB 2.06 sets for a framebuffer tag (optional or not: GRUB treats both the
    same), or None when it stays in EGA text (firmware/grub_video.py)."""
    chosen = grub_video.choose_mode(width, height, depth)
    request = f"{width}x{height}x{depth}"
    if chosen is None:
        notes.append(f"framebuffer {request}: no such VBE mode, the console stays EGA text")
        return None
    spec, mode = chosen
    framebuffer = Framebuffer(mode)
    if framebuffer.indexed:
        # Measured: the boot information's framebuffer tag with a palette is longer than the
        # room GRUB reserved for it, and GRUB resets the machine before the kernel runs.
        raise LoaderError(
            f"{name}: the Multiboot2 framebuffer tag asks for {request}, for which GRUB 2.06 "
            f"sets the indexed {framebuffer.label}, then triple-faults (the machine resets) "
            "before the kernel runs: ask for 15, 16, 24 or 32 bits per pixel"
        )
    if (width, height, depth) != (mode.width, mode.height, mode.depth):
        notes.append(
            f'framebuffer {request} is not a VBE mode: GRUB\'s "{spec}" gives {framebuffer.label}'
        )
    notes.append(f"linear framebuffer {framebuffer.label} at 0x{framebuffer.address:x}")
    return framebuffer


# --------------------------------------------------------------------------- boot information


def _tag(ttype: int, body: bytes) -> bytes:
    raw = struct.pack("<II", ttype, 8 + len(body)) + body
    return raw + bytes(align_up(len(raw), 8) - len(raw))  # every tag starts 8-byte aligned


def vbe_tag_body(framebuffer: Framebuffer) -> bytes:
    """Tag 7 as GRUB fills it after a VBE mode set: the mode (4F03), the protected-mode
    interface registers 4F0Ah left (SeaVGABIOS has none), the controller information and the
    mode information, as the BIOS wrote them in GRUB's scratch buffer."""
    mode_info = vbe.mode_info(framebuffer.mode.number)
    assert mode_info is not None  # GRUB chose it from the BIOS's list
    head = struct.pack("<HHHH", framebuffer.vbe_mode, *grub.VBE_INTERFACE)
    return head + grub.vbe_control_info() + mode_info


def framebuffer_tag_body(framebuffer: Framebuffer) -> bytes:
    """Tag 8 (3.6.12): the common part, then the RGB layout (type 1; GRUB never hands an
    indexed mode to a Multiboot2 kernel, see _choose_framebuffer)."""
    c = framebuffer.layout
    common = struct.pack(
        "<QIIIBBH", framebuffer.address, framebuffer.pitch, framebuffer.width,
        framebuffer.height, framebuffer.bpp, FB_TYPE_RGB, 0,
    )  # fmt: skip
    return common + bytes(
        [c.red_pos, c.red_size, c.green_pos, c.green_size, c.blue_pos, c.blue_size]
    )


def rsdp_tag(rsdp: bytes) -> bytes:
    """The ACPI tag GRUB makes of the RSDP it finds: revision 0 (ACPI 1.0) gives tag 14 with
    the 20-byte RSDP, a later revision tag 15 with the whole structure (its length field)."""
    if len(rsdp) < RSDP_V1_SIZE or rsdp[:8] != b"RSD PTR ":
        raise ValueError("an RSDP starts with 'RSD PTR ' and has at least 20 bytes")
    if rsdp[15] == 0:
        return _tag(INFO_ACPI_OLD, rsdp[:RSDP_V1_SIZE])
    length = struct.unpack_from("<I", rsdp, 20)[0] if len(rsdp) >= 24 else 0
    if not RSDP_V1_SIZE <= length <= len(rsdp):
        raise ValueError(f"RSDP revision {rsdp[15]}: length {length} does not fit its bytes")
    return _tag(INFO_ACPI_NEW, rsdp[:length])


def reserved_size(
    *,
    cmdline: str,
    loader_name: str,
    modules: Sequence[LoadedModule],
    mmap_entries: int,
    sections: SectionTable | None,
    rsdp: bytes | None = None,
) -> int:
    """How much memory GRUB reserves for the boot information (grub_multiboot2_get_mbi_size):
    an upper bound of every tag it might write, VBE and APM included. It decides where the
    information goes (the free space must hold this much), not its total_size. Measured: a
    hole of 1352 bytes is too small for a kernel this formula gives 1354 bytes, 1360 is enough."""
    name = len(loader_name.encode()) + 1
    size = 8 + 8 + 8  # total_size and reserved; two tags' headers
    size += 8 + align_up(len(cmdline.encode()) + 1, 8)
    size += 8 + align_up(name, 8)
    size += sum(16 + align_up(len(m.args.encode()) + 1, 8) for m in modules)
    size += 16 + 24 + 24  # basic meminfo, boot device, ELF sections header
    if sections is not None:
        size += align_up(sections.entsize * sections.num, 8)
    size += align_up(16 + 24 * mmap_entries, 8)
    size += 40  # framebuffer info
    size += 32  # the ACPI 1.0 RSDP
    size += 16  # load base address
    if rsdp is not None and rsdp[15] != 0:
        size += align_up(8 + struct.unpack_from("<I", rsdp, 20)[0], 8)
    size += 784 + 7  # VBE info, and its alignment
    size += 28 + 7  # APM table, and its alignment
    return size


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
    rsdp: bytes | None = None,
) -> bytes:
    """The boot information (3.6) in GRUB 2.06's tag order (measured): load base address (21),
    command line (1), boot loader name (2), APM table (10), one module tag per module (3),
    memory map (6), ELF sections (9, with no sections too: num 0), basic meminfo (4), BIOS boot
    device (5), after a VBE mode set the VBE info (7), framebuffer info (8), the ACPI RSDP (14 or 15, when ``rsdp`` is given), end.

    ``rsdp`` is the hook for the ACPI tables: the RSDP's bytes as the firmware has them (GRUB
    copies the one it finds in the EBDA or in 0xE0000-0xFFFFF). Padding is zero (GRUB leaves
    whatever its heap held there)."""
    tags = [
        _tag(INFO_LOAD_BASE_ADDR, struct.pack("<I", load_base)),
        _tag(INFO_CMDLINE, cmdline.encode() + b"\0"),
        _tag(INFO_BOOT_LOADER_NAME, loader_name.encode() + b"\0"),
        _tag(INFO_APM, grub.apm_table()),
    ]
    for m in modules:
        tags.append(_tag(INFO_MODULE, struct.pack("<II", m.start, m.end) + m.args.encode() + b"\0"))
    entries = b"".join(struct.pack("<QQII", r.base, r.length, r.type, 0) for r in regions)
    tags.append(_tag(INFO_MMAP, struct.pack("<II", 24, 0) + entries))  # entry_size, version
    if sections is not None:
        head = struct.pack("<III", sections.num, sections.entsize, sections.shndx)
        tags.append(_tag(INFO_ELF_SECTIONS, head + sections.table))
    else:
        tags.append(_tag(INFO_ELF_SECTIONS, struct.pack("<III", 0, 0, 0)))
    tags.append(_tag(INFO_BASIC_MEMINFO, struct.pack("<II", *basic_meminfo(ram_size))))
    tags.append(_tag(INFO_BOOTDEV, struct.pack("<III", *grub.BOOT_DEVICE)))
    if framebuffer is not None:
        tags.append(_tag(INFO_VBE, vbe_tag_body(framebuffer)))
        tags.append(_tag(INFO_FRAMEBUFFER, framebuffer_tag_body(framebuffer)))
    else:  # EGA text: type 2 carries no colour information
        address, pitch, width, height, bpp = EGA_TEXT
        body = struct.pack("<QIIIBBH", address, pitch, width, height, bpp, FB_TYPE_EGA_TEXT, 0)
        tags.append(_tag(INFO_FRAMEBUFFER, body))
    if rsdp is not None:
        tags.append(rsdp_tag(rsdp))
    tags.append(struct.pack("<II", TAG_END, 8))
    body = b"".join(tags)
    return struct.pack("<II", 8 + len(body), 0) + body  # total_size, reserved
