"""Booting a kernel file as GRUB 2.06 does on a BIOS PC: the loader's entry point.

``boot_kernel`` reads the kernel (gzip compressed or not: GRUB unpacks gzip), finds its
Multiboot2 (or Multiboot) header, copies the ELF PT_LOAD segments (or the a.out-kludge image) to
their physical addresses in guest RAM, loads the unallocated ELF sections and the modules,
builds the boot information, and writes a 32-bit stub and GRUB's GDT that leave the CPU as
GRUB hands it over: protected mode, paging off, CS=0x10, data segments 0x18, ESP=0x7FF00,
EAX=the boot magic, EBX=the boot information. Everything is placed where GRUB 2.06's relocator
places it (``firmware/relocator.py``), and what GRUB refuses is refused.

Every malformed input is one ``LoaderError`` line. Sizes read from the file are checked
before anything is allocated or written.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import stat
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from emu.errors import LoaderError

from . import grub, linux, multiboot1, multiboot2
from .elf import (
    SHT_REL,
    SHT_RELA,
    ElfFile,
    SectionTable,
    is_elf,
    parse_elf,
    patch_section_addr,
)
from .grub_video import Framebuffer
from .memmap import (
    GDT_LIMIT,
    PAGE,
    STACK_POINTER,
    TOP_RESERVED,
    GuestMemory,
    MemoryRegion,
)
from .relocator import PREFERENCE_HIGH, PREFERENCE_LOW, PREFERENCE_NONE, Relocator

log = logging.getLogger(__name__)

MB2_BOOT_MAGIC = multiboot2.BOOT_MAGIC
MB1_BOOT_MAGIC = multiboot1.BOOT_MAGIC
DEFAULT_LOADER_NAME = grub.LOADER_NAME
PROTOCOLS = ("auto", "multiboot2", "multiboot1", "linux")

# GRUB's GDT (limit 0x20): slots 0x00 and 0x08 are null; flat 4 GiB code at 0x10, data at 0x18.
GDT_ENTRIES = (0, 0, 0x00CF9A000000FFFF, 0x00CF93000000FFFF)
CODE_SELECTOR = 0x10
DATA_SELECTOR = 0x18
MB1_INFO_LOW, MB1_INFO_HIGH = multiboot1.INFO_AREA
LOW_MEMORY = 0x100000

# GRUB opens gzip files transparently (its gzio filter), kernels and modules alike.
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class ModuleSpec:
    """A boot module, as ``--module FILE[,ARGS]`` names it."""

    path: str
    args: str = ""

    @classmethod
    def parse(cls, text: str) -> ModuleSpec:
        """``"initrd.img,root=/dev/ram0 ro"`` -> path ``initrd.img``, args ``root=/dev/ram0 ro``.

        >>> ModuleSpec.parse("mod.bin,a b,c")
        ModuleSpec(path='mod.bin', args='a b,c')
        """
        path, _, args = text.partition(",")
        if not path:
            raise LoaderError(f"module {text!r}: no file name before the comma")
        return cls(path, args)


@dataclass(frozen=True)
class LoadedSegment:
    paddr: int
    vaddr: int
    filesz: int
    memsz: int
    flags: str  # "RWX" letters, "-" where absent


@dataclass(frozen=True)
class LoadedModule:
    start: int  # mod_start
    end: int  # mod_end: the first byte after the module
    path: str
    args: str  # the module's string in the boot information


@dataclass(frozen=True)
class LoadedSection:
    """An ELF section the kernel image does not load (symbols, strings, debug information),
    copied to memory by the loader as GRUB does."""

    index: int
    name: str
    addr: int
    size: int


@dataclass(frozen=True)
class BootPlan:
    """What was loaded where, and the CPU state the firmware stub establishes."""

    protocol: str  # "multiboot2" | "multiboot1"
    entry: int  # physical address the stub jumps to
    magic: int  # EAX
    info_addr: int  # EBX: the boot information
    stub_addr: int  # where the CPU starts, in flat 32-bit protected mode
    gdt_base: int
    gdt_limit: int
    stack_pointer: int
    elf_class: int | None  # 32 or 64; None for an a.out-kludge image
    elf_machine: str | None  # "EM_X86_64" / "EM_386"
    segments: tuple[LoadedSegment, ...]
    image_end: int  # first byte after the image, its ELF sections and its modules
    notes: tuple[str, ...]  # requests met differently from what the kernel asked
    modules: tuple[LoadedModule, ...] = ()
    header_offset: int = 0  # of the Multiboot header in the file
    memory_map: tuple[MemoryRegion, ...] = ()
    info_size: int = 0  # the boot information's bytes (Multiboot2: its total_size)
    framebuffer: Framebuffer | None = None  # the graphics mode GRUB set, when the header asked
    load_base: int = 0  # lowest physical address of the image
    sections: tuple[LoadedSection, ...] = ()
    info_reserved: int = 0  # the room GRUB sets aside for the boot information
    linux: linux.LinuxBoot | None = None  # a bzImage: where its parts and boot_params went


@dataclass
class _Image:
    segments: list[LoadedSegment]
    entry: int
    load_base: int
    elf: ElfFile | None = None
    framebuffer: Framebuffer | None = None  # the graphics mode GRUB set for the request
    magic: int = 0  # EAX for the protocol the image was loaded with


@dataclass
class _Loader:
    """One boot: guest memory, GRUB's relocator, the notes."""

    name: str
    memory: GuestMemory
    relocator: Relocator
    notes: list[str]


# --------------------------------------------------------------------------- entry point


def boot_kernel(
    path: str | os.PathLike,
    ram: np.ndarray,
    *,
    cmdline: str = "",
    modules: Sequence[ModuleSpec] = (),
    protocol: str = "auto",
    loader_name: str = DEFAULT_LOADER_NAME,
    acpi_rsdp: bytes | None = None,
    before_write: Callable[[int, int], None] | None = None,
    initrd: str | os.PathLike | None = None,
) -> BootPlan:
    """Load a Multiboot2 or Multiboot kernel into ``ram`` (guest physical memory, index =
    address) and return how to start it.

    ``protocol`` "auto" boots Multiboot2 when the file has a Multiboot2 header, else
    Multiboot; "multiboot2" or "multiboot1" insists on one. ``loader_name`` is the boot loader
    name the kernel reads (GRUB's own by default). ``acpi_rsdp`` is the RSDP of the machine's
    ACPI tables, for the Multiboot2 ACPI tag GRUB adds (14 for a revision 0 RSDP, 15 for a
    later one); None while the machine has no ACPI tables. ``before_write(address, length)``
    is called before each write into ``ram`` (the machine's checkpoints track written pages).
    A Linux bzImage (protocol "auto" or "linux") is booted as GRUB's ``linux`` command boots
    it, with ``initrd`` as its initial ramdisk (firmware/linux.py); ``modules`` are for
    Multiboot kernels only. Raises ``LoaderError`` (one line) for anything that cannot be booted.
    """
    if protocol not in PROTOCOLS:
        raise LoaderError(
            f"unknown boot protocol {protocol!r} (auto, multiboot2, multiboot1 or linux)"
        )
    memory = GuestMemory(ram, before_write)
    data, name = _read_file(path, memory.size, "kernel")
    heap_top = memory.size - TOP_RESERVED - grub.HEAP_TOP_IN_USE
    loader = _Loader(name, memory, Relocator(memory.available, heap_top), [])
    if protocol == "linux" or (protocol == "auto" and linux.is_bzimage(data)):
        if modules:
            raise LoaderError(f"{name}: a Linux kernel takes --initrd, not --module")
        return _boot_linux(data, loader, cmdline, initrd)
    if initrd is not None:
        raise LoaderError(
            f"{name}: --initrd is for a Linux bzImage; a Multiboot kernel takes --module"
        )
    image, used_protocol, header_offset, section_table, loaded_sections = _load_image(
        data, loader, protocol
    )
    # GRUB's order: the segments and ELF sections when the kernel is loaded, modules as each
    # is named, the boot information at boot, the trampoline last.
    loaded_modules = _load_modules(modules, loader, used_protocol)
    info_addr, info, reserved = _place_boot_info(
        used_protocol, loader, cmdline, loader_name, loaded_modules, section_table, image,
        acpi_rsdp,
    )  # fmt: skip
    stub_addr, gdt_base = _place_trampoline(loader)
    _write_firmware(memory, image.magic, info_addr, image.entry, stub_addr, gdt_base)
    for start, end in memory.dropped:
        loader.notes.append(
            f"0x{start:x}-0x{end - 1:x}: partly not RAM (VGA window, ROM or past the end of RAM); "
            "those bytes are dropped, as GRUB's copy there is"
        )

    elf = image.elf
    ends = [s.paddr + s.memsz for s in image.segments]
    ends += [s.addr + s.size for s in loaded_sections] + [m.end for m in loaded_modules]
    return BootPlan(
        protocol=used_protocol,
        entry=image.entry,
        magic=image.magic,
        info_addr=info_addr,
        stub_addr=stub_addr,
        gdt_base=gdt_base,
        gdt_limit=GDT_LIMIT,
        stack_pointer=STACK_POINTER,
        elf_class=elf.bits if elf else None,
        elf_machine=elf.machine_name if elf else None,
        segments=tuple(image.segments),
        image_end=max(ends),
        notes=tuple(loader.notes),
        modules=tuple(loaded_modules),
        header_offset=header_offset,
        memory_map=tuple(memory.regions),
        info_size=len(info),
        framebuffer=image.framebuffer,
        load_base=image.load_base,
        sections=tuple(loaded_sections),
        info_reserved=reserved,
    )


def _load_image(
    data: bytes, loader: _Loader, protocol: str
) -> tuple[_Image, str, int, SectionTable | None, list[LoadedSection]]:
    """Find the header the protocol choice allows and load the image per it."""
    name = loader.name
    if len(data) < 32:  # GRUB reads at least 32 bytes before it looks for a header
        raise LoaderError(f"{name}: the file has {len(data)} bytes, GRUB needs at least 32")
    mb2 = multiboot2.find_header(data, name) if protocol != "multiboot1" else None
    if mb2 is not None and mb2.header is not None:
        image, sections, loaded = _load_multiboot2(data, loader, mb2.header)
        image.magic = MB2_BOOT_MAGIC
        return image, "multiboot2", mb2.header.offset, sections, loaded
    if mb2 is not None and mb2.problem and protocol != "multiboot1":
        raise LoaderError(f"{name}: {mb2.problem}")  # a broken header is a bug worth seeing
    mb1 = multiboot1.find_header(data, name) if protocol != "multiboot2" else None
    if mb1 is not None and mb1.header is not None:
        image, sections, loaded = _load_multiboot1(data, loader, mb1.header)
        image.magic = MB1_BOOT_MAGIC
        return image, "multiboot1", mb1.header.offset, sections, loaded
    if mb1 is not None and mb1.problem:
        raise LoaderError(f"{name}: {mb1.problem}")
    wanted = {
        "multiboot2": "no Multiboot2 header in the first 32 KiB",
        "multiboot1": "no Multiboot header in the first 8 KiB",
        "auto": "no Multiboot2 header in the first 32 KiB and no Multiboot header in "
        "the first 8 KiB",
    }[protocol]
    if is_elf(data):  # a damaged ELF says more about the file than a missing header
        parse_elf(data, name, phdr_limit=len(data))
        raise LoaderError(f"{name}: {wanted}")
    raise LoaderError(f"{name}: {wanted} (and it is not an ELF file)")


def _place_boot_info(
    protocol: str,
    loader: _Loader,
    cmdline: str,
    loader_name: str,
    modules: list[LoadedModule],
    sections: SectionTable | None,
    image: _Image,
    rsdp: bytes | None,
) -> tuple[int, bytes, int]:
    """Build the boot information and put it where GRUB does: GRUB reserves room for every
    tag it might write (``reserved_size``) at the lowest free place its relocator finds (for
    Multiboot2, 8-byte aligned, from 1 MiB up; for Multiboot, in low memory from 0x10000)."""
    memory, relocator = loader.memory, loader.relocator
    entries = len(memory.regions)
    if protocol == "multiboot2":
        reserved = multiboot2.reserved_size(
            cmdline=cmdline, loader_name=loader_name, modules=modules, mmap_entries=entries,
            sections=sections, rsdp=rsdp,
        )  # fmt: skip
        chunk = relocator.aligned(
            0, 0xFFFFFFFF - reserved, reserved, 8, "the Multiboot2 boot information"
        )
        info = multiboot2.build_info(
            cmdline=cmdline,
            loader_name=loader_name,
            modules=modules,
            regions=memory.regions,
            ram_size=memory.size,
            sections=sections,
            load_base=image.load_base,
            framebuffer=image.framebuffer,
            rsdp=rsdp,
        )
    else:
        reserved = multiboot1.reserved_size(
            cmdline=cmdline, loader_name=loader_name, modules=modules, mmap_entries=entries,
            sections=sections,
        )  # fmt: skip
        chunk = relocator.aligned(
            MB1_INFO_LOW, MB1_INFO_HIGH - reserved, reserved, 4,
            "the Multiboot boot information",
        )  # fmt: skip
        info = multiboot1.build_info(
            chunk.target,
            cmdline=cmdline,
            loader_name=loader_name,
            modules=modules,
            regions=memory.regions,
            ram_size=memory.size,
            sections=sections,
            framebuffer=image.framebuffer,
        )
    memory.write(chunk.target, info)
    return chunk.target, info, reserved


# --------------------------------------------------------------------------- protocols


def _boot_linux(
    data: bytes, loader: _Loader, cmdline: str, initrd: str | os.PathLike | None
) -> BootPlan:
    """A bzImage, its initrd and boot_params as GRUB's linux, initrd and boot commands leave
    them; the trampoline enters code32_start with ESI = boot_params."""
    memory = loader.memory
    initrd_data, initrd_name = None, ""
    if initrd is not None:  # GRUB reads an initrd as it is (no gzip unpacking)
        initrd_data, initrd_name = _read_file(initrd, memory.size, "initrd", unpack=False)
    boot = linux.load_linux(
        data, loader.name, memory, loader.relocator, cmdline=cmdline,
        initrd=initrd_data, initrd_name=initrd_name,
    )  # fmt: skip
    stub_addr, gdt_base = _place_trampoline(loader)
    memory.zero(stub_addr, gdt_base + GDT_LIMIT - stub_addr)
    memory.write(stub_addr, linux_stub(boot.zero_page, boot.entry, stub_addr))
    memory.write(gdt_base, gdt_bytes())
    segment = LoadedSegment(boot.kernel_addr, boot.kernel_addr, boot.kernel_size,
                            boot.kernel_room, "RWX")  # fmt: skip
    modules = ()
    if initrd_data is not None:
        modules = (LoadedModule(boot.initrd_addr, boot.initrd_addr + boot.initrd_size,
                                initrd_name, "initrd"),)  # fmt: skip
    ends = [segment.paddr + segment.memsz] + [m.end for m in modules]
    return BootPlan(
        protocol="linux",
        entry=boot.entry,
        magic=0,
        info_addr=boot.zero_page,
        stub_addr=stub_addr,
        gdt_base=gdt_base,
        gdt_limit=GDT_LIMIT,
        stack_pointer=boot.zero_page,
        elf_class=None,
        elf_machine=None,
        segments=(segment,),
        image_end=max(ends),
        notes=tuple(loader.notes),
        modules=modules,
        header_offset=linux.SETUP_HEADER,
        memory_map=tuple(memory.regions),
        info_size=linux.ZERO_PAGE_SIZE,
        load_base=boot.kernel_addr,
        info_reserved=boot.real_mode_size,
        linux=boot,
    )


def _load_multiboot2(
    data: bytes, loader: _Loader, header: multiboot2.Header
) -> tuple[_Image, SectionTable | None, list[LoadedSection]]:
    name = loader.name
    requests = multiboot2.interpret_tags(header, name, loader.notes)
    relocatable = requests.relocatable
    sections: SectionTable | None = None
    loaded: list[LoadedSection] = []
    if requests.address is not None:
        if requests.entry is None:
            raise LoaderError(
                f"{name}: the Multiboot2 header has an address tag but no entry address tag "
                "(GRUB 2.06: 'load address tag without entry address tag')"
            )
        tag = requests.address
        load_addr = tag.load_addr
        if load_addr == 0xFFFFFFFF:  # "load the file from its beginning" (3.1.5)
            load_addr = (tag.header_addr - header.offset) & 0xFFFFFFFF
        # GRUB subtracts the tag's own load_addr, 0xFFFFFFFF or not, from load_end_addr
        load_size = None
        if tag.load_end_addr:
            load_size = (tag.load_end_addr - tag.load_addr) & 0xFFFFFFFF
        image = _load_aout(
            data, loader, "Multiboot2 address tag", header.offset, tag.header_addr, load_addr,
            load_size, tag.bss_end_addr, requests.entry, relocatable,
        )  # fmt: skip
    else:
        if not is_elf(data):
            raise LoaderError(
                f"{name}: not an ELF file, and its Multiboot2 header has no address tag"
            )
        elf = parse_elf(data, name, phdr_limit=multiboot2.SEARCH_LIMIT)
        image = _load_elf(elf, data, loader, relocatable)
        sections, loaded = _load_sections(elf, data, loader, refuse_relocs=True)
        if requests.entry is not None:  # GRUB takes it as it is (moved with the image)
            image.entry = (requests.entry + image.load_base - _link_base(elf)) & 0xFFFFFFFF
    image.framebuffer = requests.framebuffer
    return image, sections, loaded


def _load_multiboot1(
    data: bytes, loader: _Loader, header: multiboot1.Header
) -> tuple[_Image, SectionTable | None, list[LoadedSection]]:
    name = loader.name
    framebuffer = multiboot1.check_flags(header, name, loader.notes)
    if header.aout is not None:
        k = header.aout
        load_size = (k.load_end_addr - k.load_addr) & 0xFFFFFFFF if k.load_end_addr else None
        image = _load_aout(
            data, loader, "Multiboot a.out kludge", header.offset, k.header_addr, k.load_addr,
            load_size, k.bss_end_addr, k.entry_addr, None,
        )  # fmt: skip
        image.framebuffer = framebuffer
        return image, None, []
    if not is_elf(data):
        raise LoaderError(
            f"{name}: not an ELF file, and its Multiboot header has no a.out kludge (flag 16)"
        )
    elf = parse_elf(data, name, phdr_limit=multiboot1.SEARCH_LIMIT)
    image = _load_elf(elf, data, loader, None)
    image.framebuffer = framebuffer
    sections, loaded = _load_sections(elf, data, loader, refuse_relocs=False)
    return image, sections, loaded


# --------------------------------------------------------------------------- images


def _link_base(elf: ElfFile) -> int:
    """The lowest p_paddr of any PT_LOAD segment, empty ones included, as GRUB takes it."""
    return min((p.paddr for p in elf.load_segments), default=0)


def _preference(tag: multiboot2.RelocatableTag) -> int:
    return {1: PREFERENCE_LOW, 2: PREFERENCE_HIGH}.get(tag.preference, PREFERENCE_NONE)


def _relocation(size: int, tag: multiboot2.RelocatableTag, loader: _Loader, link_base: int) -> int:
    """Where a relocatable image goes: GRUB asks its relocator for ``size`` bytes in
    [min_addr, max_addr] at ``align``, the lowest place (the highest for preference 2)."""
    if size > tag.max_addr or tag.min_addr > tag.max_addr - size:
        raise LoaderError(
            f"{loader.name}: relocatable tag: an image of 0x{size:x} bytes cannot fit in "
            f"0x{tag.min_addr:x}-0x{tag.max_addr:x} (GRUB 2.06: 'invalid min/max address "
            "and/or load size')"
        )
    align = tag.align or 1
    if align & (align - 1):
        raise LoaderError(
            f"{loader.name}: relocatable tag: align 0x{tag.align:x} is not a power of two"
        )
    chunk = loader.relocator.aligned(
        tag.min_addr, tag.max_addr, size, align, f"{loader.name}: the relocatable image",
        _preference(tag),
    )  # fmt: skip
    if chunk.target == link_base:
        loader.notes.append(f"relocatable image loaded at its link address 0x{link_base:x}")
    else:
        loader.notes.append(
            f"relocatable image loaded at 0x{chunk.target:x} (linked at 0x{link_base:x})"
        )
    return chunk.target


def _load_elf(
    elf: ElfFile, data: bytes, loader: _Loader, relocatable: multiboot2.RelocatableTag | None
) -> _Image:
    """Copy each PT_LOAD segment to its physical address p_paddr (the LMA): p_filesz bytes from
    the file, zeros up to p_memsz, each segment one chunk of GRUB's relocator (a relocatable
    image: one chunk from its lowest to its highest byte, wherever the relocator puts it)."""
    name, memory = loader.name, loader.memory
    loads = list(elf.load_segments)
    if not loads:
        raise LoaderError(f"{name}: the ELF has no PT_LOAD segment to load")
    highest = max(p.paddr + p.memsz for p in loads)
    if elf.bits == 64 and highest >= 1 << 32:
        raise LoaderError(
            f"{name}: a PT_LOAD segment ends at 0x{highest:x}, above 4 GiB (GRUB 2.06: "
            "'segment crosses 4 GiB border')"
        )
    for i, p in enumerate(loads):
        what = f"PT_LOAD segment {i} (paddr 0x{p.paddr:x}, memsz 0x{p.memsz:x})"
        if p.filesz > p.memsz:
            raise LoaderError(
                f"{name}: {what} has p_filesz 0x{p.filesz:x} > p_memsz 0x{p.memsz:x} (GRUB "
                "2.06 copies p_filesz bytes into a p_memsz chunk, and its heap breaks)"
            )
        if p.offset + p.filesz > len(data):
            raise LoaderError(
                f"{name}: truncated ELF: {what} needs file bytes up to {p.offset + p.filesz}, "
                f"the file has {len(data)}"
            )
    link_base = _link_base(elf)
    delta = 0
    if relocatable is not None:
        delta = _relocation(highest - link_base, relocatable, loader, link_base) - link_base
    else:
        for i, p in enumerate(loads):
            loader.relocator.at(
                p.paddr, p.memsz, f"{name}: PT_LOAD segment {i} (paddr 0x{p.paddr:x})"
            )
    entry = _elf_entry(elf, name) + delta
    segments = []
    for p in loads:
        start = p.paddr + delta
        memory.write(start, data[p.offset : p.offset + p.filesz])
        memory.zero(start + p.filesz, p.memsz - p.filesz)
        if p.memsz:
            segments.append(LoadedSegment(start, p.vaddr, p.filesz, p.memsz, p.flags_text))
    return _Image(segments, entry, link_base + delta, elf=elf)


def _elf_entry(elf: ElfFile, name: str) -> int:
    """GRUB turns the (virtual) entry point into a physical one through the first program
    header, of any type, whose virtual range holds it."""
    for p in elf.program_headers:
        if p.vaddr <= elf.entry < p.vaddr + p.memsz:
            entry = elf.entry - p.vaddr + p.paddr
            break
    else:
        raise LoaderError(
            f"{name}: the entry point 0x{elf.entry:x} is outside every segment (GRUB 2.06: "
            "'entry point isn't in a segment')"
        )
    if elf.bits == 64 and entry > 0xFFFFFFFF:
        raise LoaderError(
            f"{name}: the entry point's physical address 0x{entry:x} is above 4 GiB (GRUB "
            "2.06: 'invalid entry point for ELF64')"
        )
    return entry & 0xFFFFFFFF


def _load_aout(
    data: bytes, loader: _Loader, source: str, header_offset: int, header_addr: int,
    load_addr: int, load_size: int | None, bss_end_addr: int, entry: int,
    relocatable: multiboot2.RelocatableTag | None,
) -> _Image:  # fmt: skip
    """The a.out kludge, as GRUB computes it: the file from the offset that puts the header at
    header_addr goes to load_addr, ``load_size`` bytes (None: to the end of the file), zeros up
    to bss_end_addr (0: no bss). The entry point is taken as it is."""
    name = loader.name
    file_offset = _signed32(header_offset - (header_addr - load_addr))
    if not 0 <= file_offset <= len(data):
        raise LoaderError(
            f"{name}: {source}: the image would start at file offset {file_offset}, outside "
            f"the file ({len(data)} bytes); GRUB cannot seek there"
        )
    if load_size is None:
        load_size = len(data) - file_offset
    if load_size >= 1 << 31:
        raise LoaderError(
            f"{name}: {source}: load_end_addr is below load_addr (0x{load_size:x} bytes to load)"
        )
    memsz = load_size
    if bss_end_addr:
        memsz = (bss_end_addr - load_addr) & 0xFFFFFFFF
        if memsz < load_size:
            raise LoaderError(
                f"{name}: {source}: bss_end_addr 0x{bss_end_addr:x} is below the end of the "
                f"loaded image 0x{load_addr + load_size:x}"
            )
    if relocatable is not None:
        target = _relocation(memsz, relocatable, loader, load_addr)
        entry = (entry + target - load_addr) & 0xFFFFFFFF
    else:
        target = load_addr
        loader.relocator.at(load_addr, memsz, f"{name}: the image ({source})")
    available = data[file_offset : file_offset + load_size]
    if len(available) < load_size:
        loader.notes.append(
            f"{source}: the file holds 0x{len(available):x} of the 0x{load_size:x} bytes to "
            "load; the rest is zero (GRUB reads what there is)"
        )
    loader.memory.write(target, available)
    loader.memory.zero(target + len(available), memsz - len(available))
    if not target <= entry < target + memsz:
        loader.notes.append(
            f"entry point 0x{entry:x} is outside the loaded image 0x{target:x}-"
            f"0x{target + max(memsz, 1) - 1:x} (GRUB jumps there all the same)"
        )
    segments = [LoadedSegment(target, target, min(len(available), memsz), memsz, "RWX")]
    return _Image(segments, entry, target)


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


# --------------------------------------------------------------------------- sections, modules


def _load_sections(
    elf: ElfFile, data: bytes, loader: _Loader, *, refuse_relocs: bool
) -> tuple[SectionTable | None, list[LoadedSection]]:
    """Copy every section with no address (sh_addr 0: symbols, strings, debug information) to
    memory GRUB's relocator chooses, at the section's sh_addralign, and patch its sh_addr in
    the table handed to the kernel, as GRUB's multiboot_elfxx.c does."""
    name = loader.name
    if not elf.sections:
        return None, []
    table = bytearray(elf.section_table)
    loaded = []
    for s in elf.sections:
        if refuse_relocs and s.type in (SHT_REL, SHT_RELA):
            raise LoaderError(
                f"{name}: section {s.index} holds relocations (SHT_REL/SHT_RELA): GRUB 2.06 "
                "refuses such a Multiboot2 ELF ('ELF files with relocs are not supported')"
            )
        if s.addr != 0 or s.size == 0:
            continue  # loaded with the image, or empty
        section_name = elf.section_name(data, s)
        label = f"{name}: ELF section {s.index}" + (f" ({section_name})" if section_name else "")
        if s.addralign == 0 or s.addralign & (s.addralign - 1):
            raise LoaderError(
                f"{label} has sh_addralign {s.addralign}: GRUB 2.06 cannot place it (measured: "
                "it does not boot a kernel with sh_addralign 0)"
            )
        if s.offset + s.size > len(data):  # GRUB reads the bytes, SHT_NOBITS or not
            raise LoaderError(
                f"{label}: truncated ELF: its data ends at byte {s.offset + s.size}, "
                f"the file has {len(data)}"
            )
        chunk = loader.relocator.aligned(0, (0xFFFFFFFF - s.size) + 1, s.size, s.addralign, label)
        loader.memory.write(chunk.target, data[s.offset : s.offset + s.size])
        patch_section_addr(table, elf.bits, elf.shentsize, s.index, chunk.target)
        loaded.append(LoadedSection(s.index, section_name, chunk.target, s.size))
    return SectionTable(len(elf.sections), elf.shentsize, elf.shstrndx, bytes(table)), loaded


def _load_modules(
    specs: Sequence[ModuleSpec], loader: _Loader, protocol: str
) -> list[LoadedModule]:
    """Each module page aligned, at the lowest place GRUB's relocator finds (from 1 MiB up); an
    empty module gets start = end = 0, as GRUB gives it."""
    low = LOW_MEMORY if protocol == "multiboot1" else 0
    loaded = []
    for spec in specs:
        body, path = _read_file(spec.path, loader.memory.size, "module")
        if not body:
            loaded.append(LoadedModule(0, 0, path, spec.args))
            continue
        chunk = loader.relocator.aligned(
            low, (0xFFFFFFFF - len(body)) + 1, len(body), PAGE, f"module {path}"
        )
        loader.memory.write(chunk.target, body)
        loaded.append(LoadedModule(chunk.target, chunk.target + len(body), path, spec.args))
    return loaded


def _read_file(
    path: str | os.PathLike, limit: int, kind: str, *, unpack: bool = True
) -> tuple[bytes, str]:
    """The whole file (unpacked if gzip compressed, as GRUB opens it, unless ``unpack`` is
    False), once it is known to be a regular file no larger than guest RAM."""
    name = os.fspath(path)
    label = name if kind == "kernel" else f"{kind} {name}"
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise LoaderError(f"{label}: no such file") from None
    except OSError as e:
        raise LoaderError(f"{label}: cannot read: {e.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise LoaderError(f"{label}: is a directory, not a {kind} file")
    if not stat.S_ISREG(info.st_mode):
        raise LoaderError(f"{label}: not a regular file")
    if kind in ("kernel", "initrd") and info.st_size == 0:
        raise LoaderError(f"{label}: the file is empty")
    if info.st_size > limit:
        raise LoaderError(
            f"{label}: the file ({info.st_size} bytes) is larger than guest RAM ({limit} bytes)"
        )
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise LoaderError(f"{label}: cannot read: {e.strerror}") from None
    return (_unpack(data, label, limit) if unpack else data), name


def _unpack(data: bytes, label: str, limit: int) -> bytes:
    """GRUB reads a gzip file through its gzio filter: the kernel or module it loads is the
    unpacked data (measured for modules; an xz-compressed module is loaded as it is)."""
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(limit + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise LoaderError(f"{label}: cannot decompress (gzip): {e}") from None
    if len(out) > limit:
        raise LoaderError(f"{label}: decompressed, it is larger than guest RAM ({limit} bytes)")
    return out


# --------------------------------------------------------------------------- firmware


def gdt_bytes() -> bytes:
    """GRUB's GDT: null, null, flat code (selector 0x10), flat data (selector 0x18)."""
    return struct.pack("<4Q", *GDT_ENTRIES)


def firmware_stub(magic: int, info: int, entry: int, at: int = grub.TRAMPOLINE_LOW) -> bytes:
    """32-bit code that loads GRUB's segments and jumps to the kernel (hand-encoded). The XOR
    leaves EFLAGS as GRUB's trampoline does (0x46: ZF and PF set)."""
    after_jump = at + 7
    return b"".join(
        [
            b"\xea" + struct.pack("<IH", after_jump, CODE_SELECTOR),  # ljmp $0x10,$next
            b"\xb8" + struct.pack("<I", DATA_SELECTOR),  # next: mov $0x18,%eax
            b"\x8e\xd8",  # mov %eax,%ds
            b"\x8e\xc0",  # mov %eax,%es
            b"\x8e\xe0",  # mov %eax,%fs
            b"\x8e\xe8",  # mov %eax,%gs
            b"\x8e\xd0",  # mov %eax,%ss (with the next instruction: no interrupt between)
            b"\xbc" + struct.pack("<I", STACK_POINTER),  # mov $0x7ff00,%esp
            b"\x31\xc0",  # xor %eax,%eax: EFLAGS 0x46
            b"\xb8" + struct.pack("<I", magic),  # mov $magic,%eax
            b"\xbb" + struct.pack("<I", info),  # mov $info,%ebx
            b"\xea" + struct.pack("<IH", entry, CODE_SELECTOR),  # ljmp $0x10,$entry
        ]
    )


def linux_stub(zero_page: int, entry: int, at: int = grub.TRAMPOLINE_LOW) -> bytes:
    """GRUB's relocator32 hand-over for Linux: GRUB's segments, ESI = ESP = boot_params, EBX =
    EBP = EDI = 0 (the 32-bit boot protocol), EAX = ECX = EDX = 0 (GRUB leaves them
    unset), EFLAGS 0x46 as for Multiboot, then a far jump to code32_start."""
    after_jump = at + 7
    return b"".join(
        [
            b"\xea" + struct.pack("<IH", after_jump, CODE_SELECTOR),  # ljmp $0x10,$next
            b"\xb8" + struct.pack("<I", DATA_SELECTOR),  # next: mov $0x18,%eax
            b"\x8e\xd8\x8e\xc0\x8e\xe0\x8e\xe8\x8e\xd0",  # mov %eax,%ds/%es/%fs/%gs/%ss
            b"\xbc" + struct.pack("<I", zero_page),  # mov $zero_page,%esp
            b"\x31\xc0",  # xor %eax,%eax: EFLAGS 0x46
            b"\xbe" + struct.pack("<I", zero_page),  # mov $zero_page,%esi
            b"\xbb\0\0\0\0\xb9\0\0\0\0\xba\0\0\0\0",  # mov $0 to %ebx, %ecx, %edx
            b"\xbf\0\0\0\0\xbd\0\0\0\0",  # mov $0 to %edi, %ebp
            b"\xea" + struct.pack("<IH", entry, CODE_SELECTOR),  # ljmp $0x10,$code32_start
        ]
    )


def _place_trampoline(loader: _Loader) -> tuple[int, int]:
    """Where GRUB's relocator puts its trampoline (the boot stub, then the GDT), placed last:
    the stub's address and the GDT's."""
    trampoline = loader.relocator.aligned(
        grub.TRAMPOLINE_LOW, grub.TRAMPOLINE_HIGH - grub.TRAMPOLINE_SIZE,
        grub.TRAMPOLINE_SIZE, 16, "GRUB's trampoline (the boot stub and GDT)", PREFERENCE_LOW,
    )  # fmt: skip
    return trampoline.target, trampoline.target + grub.TRAMPOLINE_GDT_OFFSET


def _write_firmware(
    memory: GuestMemory, magic: int, info: int, entry: int, stub_addr: int, gdt_base: int
) -> None:
    memory.zero(stub_addr, gdt_base + GDT_LIMIT - stub_addr)
    memory.write(stub_addr, firmware_stub(magic, info, entry, stub_addr))
    memory.write(gdt_base, gdt_bytes())
