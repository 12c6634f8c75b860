"""Booting a kernel file as GRUB 2.06 does on a BIOS PC: the loader's entry point.

``boot_kernel`` reads the kernel, finds its Multiboot2 (or Multiboot) header, copies the ELF
PT_LOAD segments (or the a.out-kludge image) to their physical addresses in guest RAM, loads the
unallocated ELF sections and the modules, builds the boot information, and writes GRUB's GDT
and a 32-bit stub that leaves the CPU as GRUB hands it over: protected mode, paging off,
CS=0x10, data segments 0x18, ESP=0x7FF00, EAX=the boot magic, EBX=the boot information.

Every malformed input is one ``LoaderError`` line. Sizes read from the file are checked
against guest RAM before anything is allocated or written.
"""

from __future__ import annotations

import logging
import os
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emu.errors import LoaderError

from . import multiboot1, multiboot2
from .elf import (
    SHT_NOBITS,
    SHT_REL,
    SHT_RELA,
    ElfFile,
    ProgramHeader,
    SectionTable,
    is_elf,
    parse_elf,
    patch_section_addr,
)
from .memmap import (
    GDT_BASE,
    GDT_LIMIT,
    PAGE,
    STACK_POINTER,
    STUB_ADDR,
    GuestMemory,
    MemoryRegion,
)
from .multiboot2 import Framebuffer
from .notes import log_once

log = logging.getLogger(__name__)

MB2_BOOT_MAGIC = multiboot2.BOOT_MAGIC
MB1_BOOT_MAGIC = multiboot1.BOOT_MAGIC
DEFAULT_LOADER_NAME = "Triplefault 0.1.0"
PROTOCOLS = ("auto", "multiboot2", "multiboot1")

# GRUB's GDT (limit 0x20): slots 0x00 and 0x08 are null; flat 4 GiB code at 0x10, data at 0x18.
GDT_ENTRIES = (0, 0, 0x00CF9A000000FFFF, 0x00CF93000000FFFF)
CODE_SELECTOR = 0x10
DATA_SELECTOR = 0x18
MB1_INFO_LOW, MB1_INFO_HIGH = multiboot1.INFO_AREA


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
    info_size: int = 0
    framebuffer: Framebuffer | None = None  # a linear framebuffer, when the header asked
    load_base: int = 0  # lowest physical address of the image
    sections: tuple[LoadedSection, ...] = ()


@dataclass
class _Image:
    segments: list[LoadedSegment]
    entry: int
    load_base: int
    elf: ElfFile | None = None
    framebuffer: Framebuffer | None = None  # Multiboot2 only: the mode a framebuffer tag got
    magic: int = 0  # EAX for the protocol the image was loaded with


# --------------------------------------------------------------------------- entry point


def boot_kernel(
    path: str | os.PathLike,
    ram: np.ndarray,
    *,
    cmdline: str = "",
    modules: Sequence[ModuleSpec] = (),
    protocol: str = "auto",
    loader_name: str = DEFAULT_LOADER_NAME,
) -> BootPlan:
    """Load a Multiboot2 or Multiboot kernel into ``ram`` (guest physical memory, index =
    address) and return how to start it.

    ``protocol`` "auto" boots Multiboot2 when the file has a Multiboot2 header, else
    Multiboot; "multiboot2" or "multiboot1" insists on one. Raises ``LoaderError`` (one line)
    for anything that cannot be booted.
    """
    if protocol not in PROTOCOLS:
        raise LoaderError(f"unknown boot protocol {protocol!r} (auto, multiboot2 or multiboot1)")
    memory = GuestMemory(ram)
    data, name = _read_file(path, memory.size, "kernel")
    notes: list[str] = []
    image, used_protocol, header_offset = _load_image(data, name, memory, protocol, notes)
    # GRUB's order: ELF sections when the kernel is loaded, modules as each is named, and the
    # boot information at boot; each at the lowest free address from 1 MiB up (measured).
    section_table, loaded_sections = _load_sections(image.elf, data, name, memory)
    loaded_modules = _load_modules(modules, memory)
    info_addr, info = _place_boot_info(
        used_protocol, memory, cmdline, loader_name, loaded_modules, section_table, image
    )
    _write_firmware(memory, image.magic, info_addr, image.entry)
    log_once(
        log,
        logging.INFO,
        "not modelled: the BIOS boot device, APM table and ACPI RSDP that GRUB adds to the boot "
        "information under QEMU (no disk, no APM BIOS, no ACPI tables here)",
    )

    elf = image.elf
    ends = [s.paddr + s.memsz for s in image.segments]
    ends += [s.addr + s.size for s in loaded_sections] + [m.end for m in loaded_modules]
    return BootPlan(
        protocol=used_protocol,
        entry=image.entry,
        magic=image.magic,
        info_addr=info_addr,
        stub_addr=STUB_ADDR,
        gdt_base=GDT_BASE,
        gdt_limit=GDT_LIMIT,
        stack_pointer=STACK_POINTER,
        elf_class=elf.bits if elf else None,
        elf_machine=elf.machine_name if elf else None,
        segments=tuple(image.segments),
        image_end=max(ends),
        notes=tuple(notes),
        modules=tuple(loaded_modules),
        header_offset=header_offset,
        memory_map=tuple(memory.regions),
        info_size=len(info),
        framebuffer=image.framebuffer,
        load_base=image.load_base,
        sections=tuple(loaded_sections),
    )


def _load_image(
    data: bytes, name: str, memory: GuestMemory, protocol: str, notes: list[str]
) -> tuple[_Image, str, int]:
    """Find the header the protocol choice allows and load the image per it."""
    mb2 = multiboot2.find_header(data, name) if protocol != "multiboot1" else None
    if mb2 is not None and mb2.header is not None:
        image, offset = _load_multiboot2(data, name, memory, mb2.header, notes)
        image.magic = MB2_BOOT_MAGIC
        return image, "multiboot2", offset
    if mb2 is not None and mb2.problem and protocol != "multiboot1":
        raise LoaderError(f"{name}: {mb2.problem}")  # a broken header is a bug worth seeing
    mb1 = multiboot1.find_header(data, name) if protocol != "multiboot2" else None
    if mb1 is not None and mb1.header is not None:
        image, offset = _load_multiboot1(data, name, memory, mb1.header, notes)
        image.magic = MB1_BOOT_MAGIC
        return image, "multiboot1", offset
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
    memory: GuestMemory,
    cmdline: str,
    loader_name: str,
    modules: list[LoadedModule],
    sections: SectionTable | None,
    image: _Image,
) -> tuple[int, bytes]:
    """Build the boot information and put it where GRUB does: Multiboot2 at the lowest free
    8-byte aligned place from 1 MiB up, Multiboot in low memory from 0x10000 up."""
    if protocol == "multiboot2":
        info = multiboot2.build_info(
            cmdline=cmdline,
            loader_name=loader_name,
            modules=modules,
            regions=memory.regions,
            ram_size=memory.size,
            sections=sections,
            load_base=image.load_base,
            framebuffer=image.framebuffer,
        )
        addr = memory.allocate(len(info), 8, "the Multiboot2 boot information")
    else:

        def mb1_info(at: int) -> bytes:
            return multiboot1.build_info(
                at,
                cmdline=cmdline,
                loader_name=loader_name,
                modules=modules,
                regions=memory.regions,
                ram_size=memory.size,
                sections=sections,
            )

        size = len(mb1_info(0))  # the layout's size does not depend on where it goes
        addr = memory.allocate(
            size, 4, "the Multiboot boot information", low=MB1_INFO_LOW, high=MB1_INFO_HIGH
        )
        info = mb1_info(addr)
    memory.write(addr, info)
    return addr, info


# --------------------------------------------------------------------------- protocols


def _load_multiboot2(
    data: bytes, name: str, memory: GuestMemory, header: multiboot2.Header, notes: list[str]
) -> tuple[_Image, int]:
    requests = multiboot2.interpret_tags(header, name, notes)
    if requests.address is not None:
        if requests.entry is None:
            raise LoaderError(
                f"{name}: the Multiboot2 header has an address tag but no entry address tag"
            )
        tag = requests.address
        load_addr = tag.load_addr
        if load_addr == 0xFFFFFFFF:  # "load the file from its beginning" (3.1.5)
            load_addr = tag.header_addr - header.offset
        if requests.relocatable is not None:
            notes.append("relocatable tag ignored: the address tag says where the image goes")
        image = _load_aout(
            data, name, memory, "Multiboot2 address tag", header.offset, tag.header_addr,
            load_addr, tag.load_end_addr, tag.bss_end_addr, requests.entry,
        )  # fmt: skip
    else:
        if not is_elf(data):
            raise LoaderError(
                f"{name}: not an ELF file, and its Multiboot2 header has no address tag"
            )
        elf = parse_elf(data, name, phdr_limit=multiboot2.SEARCH_LIMIT)
        for s in elf.sections:
            if s.type in (SHT_REL, SHT_RELA):
                raise LoaderError(
                    f"{name}: section {s.index} holds relocations (SHT_REL/SHT_RELA): GRUB 2.06 "
                    "refuses such a Multiboot2 ELF ('ELF files with relocs are not supported')"
                )
        image = _load_elf(elf, data, name, memory, requests.relocatable, notes)
        if requests.entry is not None:
            entry = requests.entry + image.load_base - _link_base(elf)  # moved with the image
            if not any(s.paddr <= entry < s.paddr + s.memsz for s in image.segments):
                raise LoaderError(
                    f"{name}: the entry address tag's 0x{requests.entry:x} is outside every "
                    "loaded segment"
                )
            image.entry = entry
    image.framebuffer = requests.framebuffer
    return image, header.offset


def _load_multiboot1(
    data: bytes, name: str, memory: GuestMemory, header: multiboot1.Header, notes: list[str]
) -> tuple[_Image, int]:
    multiboot1.check_flags(header, name, notes)
    if header.aout is not None:
        k = header.aout
        image = _load_aout(
            data, name, memory, "Multiboot a.out kludge", header.offset, k.header_addr,
            k.load_addr, k.load_end_addr, k.bss_end_addr, k.entry_addr,
        )  # fmt: skip
        return image, header.offset
    if not is_elf(data):
        raise LoaderError(
            f"{name}: not an ELF file, and its Multiboot header has no a.out kludge (flag 16)"
        )
    elf = parse_elf(data, name, phdr_limit=multiboot1.SEARCH_LIMIT)
    return _load_elf(elf, data, name, memory, None, notes), header.offset


# --------------------------------------------------------------------------- images


def _link_base(elf: ElfFile) -> int:
    return min((p.paddr for p in elf.load_segments if p.memsz), default=0)


def _load_elf(
    elf: ElfFile,
    data: bytes,
    name: str,
    memory: GuestMemory,
    relocatable: multiboot2.RelocatableTag | None,
    notes: list[str],
) -> _Image:
    """Copy each PT_LOAD segment to its physical address p_paddr (the LMA): p_filesz bytes from
    the file, zeros up to p_memsz."""
    loads = [p for p in elf.load_segments if p.memsz or p.filesz]
    if not loads:
        raise LoaderError(f"{name}: the ELF has no PT_LOAD segment to load")
    for i, p in enumerate(loads):
        what = f"PT_LOAD segment {i} (paddr 0x{p.paddr:x}, memsz 0x{p.memsz:x})"
        if p.filesz > p.memsz:
            raise LoaderError(f"{name}: {what} has p_filesz 0x{p.filesz:x} > p_memsz 0x{p.memsz:x}")
        if p.offset + p.filesz > len(data):
            raise LoaderError(
                f"{name}: truncated ELF: {what} needs file bytes up to {p.offset + p.filesz}, "
                f"the file has {len(data)}"
            )
    link_base = min(p.paddr for p in loads)
    delta = 0
    if relocatable is not None:
        delta = _relocation(loads, relocatable, name, memory, notes) - link_base
    for i, p in enumerate(loads):
        what = f"{name}: PT_LOAD segment {i} (paddr 0x{p.paddr + delta:x}, memsz 0x{p.memsz:x})"
        memory.claim(p.paddr + delta, p.memsz, what)  # checks RAM, firmware, other segments
    # GRUB turns the (virtual) entry point into a physical one through the segment holding it.
    for p in loads:
        if p.vaddr <= elf.entry < p.vaddr + p.memsz:
            entry = elf.entry - p.vaddr + p.paddr + delta
            break
    else:
        raise LoaderError(
            f"{name}: the entry point 0x{elf.entry:x} is outside every PT_LOAD segment"
        )
    segments = []
    for p in loads:
        start = p.paddr + delta
        memory.write(start, data[p.offset : p.offset + p.filesz])
        memory.zero(start + p.filesz, p.memsz - p.filesz)
        segments.append(LoadedSegment(start, p.vaddr, p.filesz, p.memsz, p.flags_text))
    return _Image(segments, entry, link_base + delta, elf=elf)


def _relocation(
    loads: list[ProgramHeader],
    tag: multiboot2.RelocatableTag,
    name: str,
    memory: GuestMemory,
    notes: list[str],
) -> int:
    """Where a relocatable image goes: its link address when the tag allows it, else the
    lowest (or, for preference 2, the highest) aligned free place in [min_addr, max_addr]."""
    link_base = min(p.paddr for p in loads)
    size = max(p.paddr + p.memsz for p in loads) - link_base
    align = tag.align or 1
    if size > tag.max_addr or tag.min_addr > tag.max_addr - size:
        raise LoaderError(
            f"{name}: relocatable tag: an image of 0x{size:x} bytes cannot fit in "
            f"0x{tag.min_addr:x}-0x{tag.max_addr:x}"
        )
    fits = tag.min_addr <= link_base and link_base + size <= tag.max_addr
    if fits and link_base % align == 0 and memory.problem(link_base, size) is None:
        notes.append(f"relocatable image loaded at its link address 0x{link_base:x}")
        return link_base
    base = memory.find_free(
        size, align, low=tag.min_addr, high=tag.max_addr + 1, highest=tag.preference == 2
    )
    if base is None:
        raise LoaderError(
            f"{name}: relocatable tag: no free, 0x{align:x}-aligned place for 0x{size:x} bytes "
            f"in 0x{tag.min_addr:x}-0x{tag.max_addr:x}"
        )
    notes.append(f"relocatable image loaded at 0x{base:x} (linked at 0x{link_base:x})")
    return base


def _load_aout(
    data: bytes, name: str, memory: GuestMemory, source: str, header_offset: int,
    header_addr: int, load_addr: int, load_end_addr: int, bss_end_addr: int, entry: int,
) -> _Image:  # fmt: skip
    """The a.out kludge: the file, from the offset that puts the header at header_addr, goes to
    load_addr up to load_end_addr (0: the end of the file); zeros up to bss_end_addr."""
    if load_addr > header_addr:
        raise LoaderError(
            f"{name}: {source}: load_addr 0x{load_addr:x} is above header_addr 0x{header_addr:x}"
        )
    file_offset = header_offset - (header_addr - load_addr)
    if file_offset < 0:
        raise LoaderError(
            f"{name}: {source} puts the image start 0x{-file_offset:x} bytes before the file's"
        )
    if load_end_addr == 0:
        size = len(data) - file_offset
    elif load_end_addr < load_addr:
        raise LoaderError(
            f"{name}: {source}: load_end_addr 0x{load_end_addr:x} is below load_addr "
            f"0x{load_addr:x}"
        )
    else:
        size = load_end_addr - load_addr
    if file_offset + size > len(data):
        raise LoaderError(
            f"{name}: {source} asks for 0x{size:x} bytes from file offset 0x{file_offset:x}, "
            f"the file has 0x{len(data) - file_offset:x} there"
        )
    memsz = size
    if bss_end_addr:
        if bss_end_addr < load_addr + size:
            raise LoaderError(
                f"{name}: {source}: bss_end_addr 0x{bss_end_addr:x} is below the end of the "
                f"loaded image 0x{load_addr + size:x}"
            )
        memsz = bss_end_addr - load_addr
    memory.claim(load_addr, memsz, f"{name}: the image ({source})")
    if not load_addr <= entry < load_addr + memsz:
        raise LoaderError(
            f"{name}: the entry point 0x{entry:x} is outside the loaded image "
            f"0x{load_addr:x}-0x{load_addr + memsz - 1:x}"
        )
    memory.write(load_addr, data[file_offset : file_offset + size])
    memory.zero(load_addr + size, memsz - size)
    return _Image([LoadedSegment(load_addr, load_addr, size, memsz, "RWX")], entry, load_addr)


# --------------------------------------------------------------------------- sections, modules


def _load_sections(
    elf: ElfFile | None, data: bytes, name: str, memory: GuestMemory
) -> tuple[SectionTable | None, list[LoadedSection]]:
    """Copy every section with no address (sh_addr 0: symbols, strings, debug information) to
    free memory, at its own alignment, and patch its sh_addr in the table handed to the kernel,
    as GRUB's multiboot_elfxx.c does."""
    if elf is None or not elf.sections:
        return None, []
    table = bytearray(elf.section_table)
    loaded = []
    for s in elf.sections:
        if s.addr != 0 or s.size == 0:
            continue  # loaded with the image, or empty
        section_name = elf.section_name(data, s)
        label = f"{name}: ELF section {s.index}" + (f" ({section_name})" if section_name else "")
        nobits = s.type == SHT_NOBITS
        if not nobits and s.offset + s.size > len(data):
            raise LoaderError(
                f"{label}: truncated ELF: its data ends at byte {s.offset + s.size}, "
                f"the file has {len(data)}"
            )
        addr = memory.allocate(s.size, max(s.addralign, 1), label)
        if nobits:
            memory.zero(addr, s.size)
        else:
            memory.write(addr, data[s.offset : s.offset + s.size])
        patch_section_addr(table, elf.bits, elf.shentsize, s.index, addr)
        loaded.append(LoadedSection(s.index, section_name, addr, s.size))
    return SectionTable(len(elf.sections), elf.shentsize, elf.shstrndx, bytes(table)), loaded


def _load_modules(specs: Sequence[ModuleSpec], memory: GuestMemory) -> list[LoadedModule]:
    """Each module page aligned (Multiboot2 3.1.11; Multiboot flag 0), lowest free first."""
    loaded = []
    for spec in specs:
        body, path = _read_file(spec.path, memory.size, "module")
        start = memory.allocate(len(body), PAGE, f"module {path}")
        memory.write(start, body)
        loaded.append(LoadedModule(start, start + len(body), path, spec.args))
    return loaded


def _read_file(path: str | os.PathLike, limit: int, kind: str) -> tuple[bytes, str]:
    """The whole file, once it is known to be a regular file no larger than guest RAM."""
    name = os.fspath(path)
    label = name if kind == "kernel" else f"module {name}"
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
    if kind == "kernel" and info.st_size == 0:
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
    return data, name


# --------------------------------------------------------------------------- firmware


def gdt_bytes() -> bytes:
    """GRUB's GDT: null, null, flat code (selector 0x10), flat data (selector 0x18)."""
    return struct.pack("<4Q", *GDT_ENTRIES)


def firmware_stub(magic: int, info: int, entry: int, at: int = STUB_ADDR) -> bytes:
    """32-bit code that loads GRUB's segments and jumps to the kernel (hand-encoded)."""
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
            b"\xb8" + struct.pack("<I", magic),  # mov $magic,%eax
            b"\xbb" + struct.pack("<I", info),  # mov $info,%ebx
            b"\xea" + struct.pack("<IH", entry, CODE_SELECTOR),  # ljmp $0x10,$entry
        ]
    )


def _write_firmware(memory: GuestMemory, magic: int, info: int, entry: int) -> None:
    stub = firmware_stub(magic, info, entry)
    memory.zero(STUB_ADDR, GDT_BASE + GDT_LIMIT - STUB_ADDR)
    memory.write(STUB_ADDR, stub)
    memory.write(GDT_BASE, gdt_bytes())
