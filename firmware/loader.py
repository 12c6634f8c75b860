"""Multiboot2 and Multiboot1 loading, the way GRUB 2.06 does it on a BIOS PC.

``boot_kernel`` reads a kernel file, finds its Multiboot header, copies its PT_LOAD segments (or
the a.out-kludge image) to their physical addresses in guest RAM, loads the modules, builds the
boot information, and writes the GDT and the 32-bit firmware stub that leave the CPU in the state
GRUB hands over (architecture.md, "What GRUB 2.06 hands a Multiboot kernel"). Every malformed
input is one ``LoaderError`` line; nothing is allocated from a size read in the file before it
has been checked against guest RAM.

References: Multiboot2 Specification 2.0 (sections 3.1 header, 3.6 boot information);
Multiboot Specification 0.6.96; System V ABI (ELF).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from emu.errors import LoaderError

from .memmap import MemoryRegion, basic_meminfo, memory_map

MB2_HEADER_MAGIC = 0xE85250D6
MB2_BOOT_MAGIC = 0x36D76289
MB1_HEADER_MAGIC = 0x1BADB002
MB1_BOOT_MAGIC = 0x2BADB002
MB2_SEARCH = 32 * 1024
MB1_SEARCH = 8 * 1024

STUB_ADDR = 0x1000
GDT_BASE = 0x10B0
GDT_LIMIT = 0x20
FIRMWARE_AREA = (STUB_ADDR, GDT_BASE + GDT_LIMIT + 1)
STACK_POINTER = 0x7FF00
STACK_AREA = (STACK_POINTER - 0x1000, STACK_POINTER)  # the page GRUB's stack grows into

# GRUB's GDT: slot 0x08 is null; the kernel runs with CS=0x10, data 0x18.
GDT_ENTRIES = (0, 0, 0x00CF9A000000FFFF, 0x00CF93000000FFFF)

EM_386 = 3
EM_X86_64 = 62
PT_LOAD = 1
SHF_ALLOC = 0x2
SHT_NOBITS = 8
PAGE = 0x1000

MB2_TAG_NAMES = {
    0: "end",
    1: "information request",
    2: "address",
    3: "entry address",
    4: "console flags",
    5: "framebuffer",
    6: "module alignment",
    7: "EFI boot services",
    8: "EFI i386 entry address",
    9: "EFI amd64 entry address",
    10: "relocatable",
}
# Boot information tags we can provide (Multiboot2 spec 3.6).
MB2_INFO_PROVIDED = {1: "command line", 2: "boot loader name", 3: "modules", 4: "basic meminfo",
                     6: "memory map", 8: "framebuffer info", 9: "ELF sections",
                     21: "load base address"}  # fmt: skip
MB2_INFO_NAMES = {5: "BIOS boot device", 7: "VBE info", 10: "APM table", 11: "EFI 32-bit system table",
                  12: "EFI 64-bit system table", 13: "SMBIOS tables", 14: "ACPI old RSDP",
                  15: "ACPI new RSDP", 16: "networking info", 17: "EFI memory map",
                  18: "EFI boot services not terminated", 19: "EFI 32-bit image handle",
                  20: "EFI 64-bit image handle"} | MB2_INFO_PROVIDED  # fmt: skip
MB1_UNSUPPORTED_FLAGS = 0x0000FFF8  # bits 3-15: GRUB refuses a kernel that requires them


@dataclass(frozen=True)
class ModuleSpec:
    """A boot module: ``--module FILE[,ARGS]``."""

    path: str
    args: str = ""

    @classmethod
    def parse(cls, text: str) -> ModuleSpec:
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
    start: int
    end: int
    path: str
    args: str


FB_BASE = 0xFD000000  # where QEMU's standard VGA puts its linear framebuffer BAR
FB_DEFAULT = (1024, 768, 32)
FB_MAX = (4096, 4096)


@dataclass(frozen=True)
class Framebuffer:
    """A linear RGB framebuffer (Multiboot2 framebuffer info, type 1)."""

    address: int
    width: int
    height: int
    bpp: int  # 32 or 24
    pitch: int  # bytes per line

    @property
    def size(self) -> int:
        return self.pitch * self.height

    def info_tag_body(self) -> bytes:
        # common part, then the RGB colour description: red at bit 16, green 8, blue 0
        return struct.pack("<QIIIBBH", self.address, self.pitch, self.width, self.height,
                           self.bpp, 1, 0) + bytes([16, 8, 8, 8, 0, 8])  # fmt: skip


@dataclass(frozen=True)
class BootPlan:
    """What was loaded and the CPU state the firmware stub will establish."""

    protocol: str  # "multiboot2" | "multiboot1"
    entry: int
    magic: int
    info_addr: int
    stub_addr: int
    gdt_base: int
    gdt_limit: int
    stack_pointer: int
    elf_class: int | None
    elf_machine: str | None
    segments: tuple[LoadedSegment, ...]
    image_end: int
    notes: tuple[str, ...]
    modules: tuple[LoadedModule, ...] = ()
    header_offset: int = 0
    memory_map: tuple[MemoryRegion, ...] = field(default=())
    info_size: int = 0
    framebuffer: Framebuffer | None = None  # a linear framebuffer, when the header asked


# --------------------------------------------------------------------------- ELF


@dataclass
class _Elf:
    bits: int
    machine: int
    entry: int
    phdrs: list[
        tuple[int, int, int, int, int, int, int]
    ]  # type, flags, off, vaddr, paddr, filesz, memsz
    shnum: int
    shentsize: int
    shstrndx: int
    shdr_bytes: bytes
    sections: list[tuple[int, int, int, int, int, int]]  # type, flags, addr, offset, size, align


def _parse_elf(data: bytes, name: str) -> _Elf:
    if len(data) < 52:
        raise LoaderError(f"{name}: truncated ELF header ({len(data)} bytes)")
    cls, endian = data[4], data[5]
    if cls not in (1, 2):
        raise LoaderError(f"{name}: unknown ELF class {cls}")
    if endian != 1:
        raise LoaderError(f"{name}: big-endian ELF: not an x86 kernel")
    bits = 64 if cls == 2 else 32
    if bits == 64:
        if len(data) < 64:
            raise LoaderError(f"{name}: truncated ELF64 header ({len(data)} bytes)")
        (_t, machine, _v, entry, phoff, shoff, _f, _eh, phentsize, phnum, shentsize, shnum,
         shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)  # fmt: skip
        ph_fmt, ph_min = "<IIQQQQQQ", 56
    else:
        (_t, machine, _v, entry, phoff, shoff, _f, _eh, phentsize, phnum, shentsize, shnum,
         shstrndx) = struct.unpack_from("<HHIIIIIHHHHHH", data, 16)  # fmt: skip
        ph_fmt, ph_min = "<IIIIIIII", 32
    if machine not in (EM_386, EM_X86_64):
        raise LoaderError(
            f"{name}: ELF for machine {machine} ({_MACHINES.get(machine, 'unknown')}), "
            "not x86 (EM_386 or EM_X86_64)"
        )
    if phnum == 0:
        raise LoaderError(f"{name}: the ELF has no program headers")
    if phentsize < ph_min:
        raise LoaderError(f"{name}: ELF program header size {phentsize} is too small")
    if phoff + phnum * phentsize > len(data):
        raise LoaderError(
            f"{name}: truncated ELF: program headers end at byte {phoff + phnum * phentsize}, "
            f"the file has {len(data)}"
        )
    phdrs = []
    for i in range(phnum):
        fields = struct.unpack_from(ph_fmt, data, phoff + i * phentsize)
        if bits == 64:
            p_type, p_flags, p_off, p_vaddr, p_paddr, p_filesz, p_memsz, _a = fields
        else:
            p_type, p_off, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, _a = fields
        phdrs.append((p_type, p_flags, p_off, p_vaddr, p_paddr, p_filesz, p_memsz))
    sections: list[tuple[int, int, int, int, int, int]] = []
    shdr_bytes = b""
    sh_min = 64 if bits == 64 else 40
    if shnum and shoff and shentsize >= sh_min and shoff + shnum * shentsize <= len(data):
        shdr_bytes = data[shoff : shoff + shnum * shentsize]
        for i in range(shnum):
            off = shoff + i * shentsize
            if bits == 64:
                _n, s_type, s_flags, s_addr, s_off, s_size, _l, _i, s_align, _e = (
                    struct.unpack_from("<IIQQQQIIQQ", data, off)
                )
            else:
                _n, s_type, s_flags, s_addr, s_off, s_size, _l, _i, s_align, _e = (
                    struct.unpack_from("<IIIIIIIIII", data, off)
                )
            sections.append((s_type, s_flags, s_addr, s_off, s_size, s_align))
    else:
        shnum = 0
    return _Elf(bits, machine, entry, phdrs, shnum, shentsize, shstrndx, shdr_bytes, sections)


_MACHINES = {0: "none", 3: "i386", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 40: "ARM",
             62: "x86-64", 183: "AArch64", 243: "RISC-V"}  # fmt: skip


def _flags_text(p_flags: int) -> str:
    return (
        ("R" if p_flags & 4 else "-")
        + ("W" if p_flags & 2 else "-")
        + ("X" if p_flags & 1 else "-")
    )


# --------------------------------------------------------------------------- headers


@dataclass
class _Mb2Header:
    offset: int
    length: int
    tags: list[tuple[int, int, bytes]]  # type, flags, body


@dataclass
class _Mb1Header:
    offset: int
    flags: int
    aout: tuple[int, int, int, int, int] | None  # header, load, load_end, bss_end, entry


def _find_mb2(data: bytes) -> tuple[_Mb2Header | None, str | None]:
    problem = None
    for off in range(0, min(len(data), MB2_SEARCH) - 15, 8):
        magic, arch, length, csum = struct.unpack_from("<IIII", data, off)
        if magic != MB2_HEADER_MAGIC:
            continue
        if (magic + arch + length + csum) & 0xFFFFFFFF:
            problem = problem or f"Multiboot2 header at file offset 0x{off:x} has a bad checksum"
            continue
        if arch != 0:
            raise LoaderError(
                f"Multiboot2 header at 0x{off:x} is for architecture {arch} "
                "(only 0, i386 protected mode, is bootable on a PC)"
            )
        if length < 24 or off + length > len(data):
            raise LoaderError(
                f"Multiboot2 header at 0x{off:x}: header_length {length} "
                + (
                    "is too small for the fixed fields and an end tag"
                    if length < 24
                    else "runs past the end of the file"
                )
            )
        return _Mb2Header(off, length, _mb2_tags(data, off, length)), None
    return None, problem


def _mb2_tags(data: bytes, off: int, length: int) -> list[tuple[int, int, bytes]]:
    tags = []
    p = off + 16
    end = off + length
    while True:
        if p + 8 > end:
            raise LoaderError(
                f"Multiboot2 header at 0x{off:x}: tags run past header_length {length} (no end tag)"
            )
        ttype, tflags, tsize = struct.unpack_from("<HHI", data, p)
        if tsize < 8 or p + tsize > end:
            raise LoaderError(
                f"Multiboot2 header tag {ttype} ({MB2_TAG_NAMES.get(ttype, 'unknown')}) at 0x{p:x} "
                f"has size {tsize}, which overruns the header (header_length {length})"
            )
        if ttype == 0:
            return tags
        tags.append((ttype, tflags, data[p + 8 : p + tsize]))
        p += (tsize + 7) & ~7


def _find_mb1(data: bytes) -> tuple[_Mb1Header | None, str | None]:
    problem = None
    for off in range(0, min(len(data), MB1_SEARCH) - 11, 4):
        magic, flags, csum = struct.unpack_from("<III", data, off)
        if magic != MB1_HEADER_MAGIC:
            continue
        if (magic + flags + csum) & 0xFFFFFFFF:
            problem = problem or f"Multiboot header at file offset 0x{off:x} has a bad checksum"
            continue
        aout = None
        if flags & 0x10000:
            if off + 32 > len(data):
                raise LoaderError(
                    f"Multiboot header at 0x{off:x}: a.out kludge fields are truncated"
                )
            aout = struct.unpack_from("<IIIII", data, off + 12)
        return _Mb1Header(off, flags, aout), None
    return None, problem


# --------------------------------------------------------------------------- loading


@dataclass
class _Image:
    segments: list[LoadedSegment]
    entry: int
    elf: _Elf | None
    load_base: int
    framebuffer: Framebuffer | None = None


class _Ram:
    """Bounds-checked writes into the guest's physical RAM."""

    def __init__(self, ram: np.ndarray) -> None:
        self.ram = ram
        self.size = ram.size

    def check(self, start: int, length: int, what: str) -> None:
        if length < 0 or start < 0 or start + length > self.size:
            raise LoaderError(
                f"{what} at 0x{start:x}-0x{start + max(length, 1) - 1:x} is outside guest RAM "
                f"(0x0-0x{self.size - 1:x}, {self.size >> 20} MiB)"
            )
        for lo, hi, area in (
            (*FIRMWARE_AREA, "the boot firmware area"),
            (*STACK_AREA, "the boot stack"),
        ):
            if start < hi and lo < start + length:
                raise LoaderError(
                    f"{what} at 0x{start:x}-0x{start + length - 1:x} overlaps {area} "
                    f"(0x{lo:x}-0x{hi - 1:x})"
                )

    def write(self, addr: int, data: bytes) -> None:
        self.ram[addr : addr + len(data)] = np.frombuffer(data, np.uint8)

    def zero(self, addr: int, length: int) -> None:
        self.ram[addr : addr + length] = 0


def _load_elf(data: bytes, name: str, ram: _Ram) -> _Image:
    elf = _parse_elf(data, name)
    segs: list[LoadedSegment] = []
    for p_type, p_flags, p_off, p_vaddr, p_paddr, p_filesz, p_memsz in elf.phdrs:
        if p_type != PT_LOAD or p_memsz == 0 and p_filesz == 0:
            continue
        what = f"PT_LOAD segment (paddr 0x{p_paddr:x}, memsz 0x{p_memsz:x})"
        if p_filesz > p_memsz:
            raise LoaderError(f"{name}: {what} has p_filesz 0x{p_filesz:x} > p_memsz 0x{p_memsz:x}")
        if p_off + p_filesz > len(data):
            raise LoaderError(
                f"{name}: truncated ELF: {what} needs file bytes up to {p_off + p_filesz}, "
                f"the file has {len(data)}"
            )
        ram.check(p_paddr, p_memsz, f"{name}: {what}")
        segs.append(LoadedSegment(p_paddr, p_vaddr, p_filesz, p_memsz, _flags_text(p_flags)))
    if not segs:
        raise LoaderError(f"{name}: the ELF has no PT_LOAD segment to load")
    ordered = sorted(segs, key=lambda s: s.paddr)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.paddr + a.memsz > b.paddr:
            raise LoaderError(
                f"{name}: PT_LOAD segments overlap: 0x{a.paddr:x}-0x{a.paddr + a.memsz - 1:x} and "
                f"0x{b.paddr:x}-0x{b.paddr + b.memsz - 1:x}"
            )
    # GRUB turns a virtual entry point into the physical one through the segment holding it.
    entry = None
    for s in segs:
        if s.vaddr <= elf.entry < s.vaddr + s.memsz:
            entry = elf.entry - s.vaddr + s.paddr
            break
    if entry is None:
        for s in segs:
            if s.paddr <= elf.entry < s.paddr + s.memsz:
                entry = elf.entry
                break
    if entry is None:
        raise LoaderError(f"{name}: entry point 0x{elf.entry:x} is outside every loaded segment")
    for p_type, _f, p_off, _v, p_paddr, p_filesz, p_memsz in elf.phdrs:
        if p_type != PT_LOAD or p_memsz == 0 and p_filesz == 0:
            continue
        ram.write(p_paddr, data[p_off : p_off + p_filesz])
        ram.zero(p_paddr + p_filesz, p_memsz - p_filesz)
    return _Image(segs, entry, elf, min(s.paddr for s in segs))


def _load_aout(
    data: bytes, name: str, ram: _Ram, header_off: int, header_addr: int, load_addr: int,
    load_end: int, bss_end: int, entry: int, proto: str,
) -> _Image:  # fmt: skip
    if load_addr > header_addr:
        raise LoaderError(
            f"{name}: {proto} address tag: load_addr 0x{load_addr:x} > header_addr 0x{header_addr:x}"
        )
    file_off = header_off - (header_addr - load_addr)
    if file_off < 0:
        raise LoaderError(
            f"{name}: {proto} address tag places the image before the start of the file"
        )
    if load_end == 0:
        size = len(data) - file_off
    else:
        if load_end < load_addr:
            raise LoaderError(f"{name}: {proto} address tag: load_end_addr is below load_addr")
        size = load_end - load_addr
    if file_off + size > len(data):
        raise LoaderError(
            f"{name}: {proto} address tag asks for {size} bytes, the file has {len(data) - file_off} after offset 0x{file_off:x}"
        )
    mem_end = load_addr + size
    if bss_end:
        if bss_end < mem_end:
            raise LoaderError(
                f"{name}: {proto} address tag: bss_end_addr is below the end of the image"
            )
        mem_end = bss_end
    ram.check(load_addr, mem_end - load_addr, f"{name}: image")
    if not load_addr <= entry < mem_end:
        raise LoaderError(f"{name}: entry point 0x{entry:x} is outside the loaded image")
    ram.write(load_addr, data[file_off : file_off + size])
    ram.zero(load_addr + size, mem_end - load_addr - size)
    seg = LoadedSegment(load_addr, load_addr, size, mem_end - load_addr, "RWX")
    return _Image([seg], entry, None, load_addr)


def _read_kernel(path: str | os.PathLike) -> tuple[bytes, str]:
    name = os.fspath(path)
    if not os.path.exists(name):
        raise LoaderError(f"{name}: no such file")
    if os.path.isdir(name):
        raise LoaderError(f"{name}: is a directory, not a kernel file")
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise LoaderError(f"{name}: cannot read: {e.strerror}") from None
    if not data:
        raise LoaderError(f"{name}: the file is empty")
    return data, name


def _align(value: int, to: int) -> int:
    return (value + to - 1) & ~(to - 1)


def _load_modules(
    modules: Sequence[ModuleSpec], ram: _Ram, start: int
) -> tuple[list[LoadedModule], int]:
    loaded = []
    addr = _align(start, PAGE)
    for m in modules:
        if not os.path.isfile(m.path):
            raise LoaderError(f"module {m.path}: no such file")
        try:
            with open(m.path, "rb") as f:
                body = f.read()
        except OSError as e:
            raise LoaderError(f"module {m.path}: cannot read: {e.strerror}") from None
        ram.check(addr, max(len(body), 1), f"module {m.path}")
        ram.write(addr, body)
        loaded.append(LoadedModule(addr, addr + len(body), m.path, m.args))
        addr = _align(addr + len(body), PAGE)
    return loaded, addr


def _place_sections(elf: _Elf | None, ram: _Ram, data: bytes, start: int) -> tuple[bytes, int]:
    """Load non-allocated sections (symtab, strtab, debug) after the image, as GRUB does, and
    return the section header table with their sh_addr patched."""
    if elf is None or not elf.shnum:
        return b"", start
    table = bytearray(elf.shdr_bytes)
    addr = start
    for i, (s_type, s_flags, _s_addr, s_off, s_size, s_align) in enumerate(elf.sections):
        if s_flags & SHF_ALLOC or s_size == 0 or s_type == SHT_NOBITS or s_type == 0:
            continue
        if s_off + s_size > len(data):
            continue  # a section table that lies about its data: leave the section out
        addr = _align(addr, max(1, min(s_align or 1, PAGE)))
        ram.check(addr, s_size, "ELF section")
        ram.write(addr, data[s_off : s_off + s_size])
        field_off = i * elf.shentsize + (16 if elf.bits == 64 else 12)
        if elf.bits == 64:
            struct.pack_into("<Q", table, field_off, addr)
        else:
            struct.pack_into("<I", table, field_off, addr)
        addr += s_size
    return bytes(table), addr


def _write_firmware(ram: _Ram, magic: int, info: int, entry: int) -> None:
    gdt = struct.pack("<4Q", *GDT_ENTRIES)
    ram.ram[GDT_BASE : GDT_BASE + GDT_LIMIT + 1] = 0
    ram.write(GDT_BASE, gdt)
    ram.write(STUB_ADDR, firmware_stub(magic, info, entry))


def firmware_stub(magic: int, info: int, entry: int, at: int = STUB_ADDR) -> bytes:
    """32-bit code that loads GRUB's segments and jumps to the kernel (hand-encoded)."""
    nxt = at + 7
    return b"".join(
        [
            b"\xea" + struct.pack("<IH", nxt, 0x10),  # ljmp $0x10,$next: reload CS from the GDT
            b"\xb8\x18\x00\x00\x00",  # mov $0x18,%eax
            b"\x8e\xd8",  # mov %eax,%ds
            b"\x8e\xc0",  # mov %eax,%es
            b"\x8e\xe0",  # mov %eax,%fs
            b"\x8e\xe8",  # mov %eax,%gs
            b"\x8e\xd0",  # mov %eax,%ss
            b"\xbc" + struct.pack("<I", STACK_POINTER),  # mov $0x7ff00,%esp
            b"\xb8" + struct.pack("<I", magic),  # mov $magic,%eax
            b"\xbb" + struct.pack("<I", info),  # mov $info,%ebx
            b"\xea" + struct.pack("<IH", entry, 0x10),  # ljmp $0x10,$entry
        ]
    )


# --------------------------------------------------------------------------- boot info


def _tag(ttype: int, body: bytes) -> bytes:
    raw = struct.pack("<II", ttype, 8 + len(body)) + body
    return raw + b"\0" * (_align(len(raw), 8) - len(raw))


def _mb2_info(
    cmdline: str, loader_name: str, modules: list[LoadedModule], regions: list[MemoryRegion],
    ram_size: int, shdrs: bytes, elf: _Elf | None, load_base: int,
    framebuffer: Framebuffer | None = None,
) -> bytes:  # fmt: skip
    # GRUB 2.06's order (multiboot_mbi2.c): load base, cmdline, loader name, modules, memory
    # map, ELF sections, basic meminfo, framebuffer.
    tags = [
        _tag(21, struct.pack("<I", load_base)),
        _tag(1, cmdline.encode() + b"\0"),
        _tag(2, loader_name.encode() + b"\0"),
    ]
    for m in modules:
        tags.append(_tag(3, struct.pack("<II", m.start, m.end) + m.args.encode() + b"\0"))
    entries = b"".join(struct.pack("<QQII", r.base, r.length, r.type, 0) for r in regions)
    tags.append(_tag(6, struct.pack("<II", 24, 0) + entries))
    if elf is not None and shdrs:
        tags.append(_tag(9, struct.pack("<III", elf.shnum, elf.shentsize, elf.shstrndx) + shdrs))
    lower, upper = basic_meminfo(ram_size)
    tags.append(_tag(4, struct.pack("<II", lower, upper)))
    if framebuffer is not None:
        tags.append(_tag(8, framebuffer.info_tag_body()))
    else:  # EGA text: type 2, no colour information
        tags.append(_tag(8, struct.pack("<QIIIBBH", 0xB8000, 160, 80, 25, 16, 2, 0)))
    tags.append(struct.pack("<II", 0, 8))
    body = b"".join(tags)
    return struct.pack("<II", 8 + len(body), 0) + body


def _mb1_info(
    addr: int, cmdline: str, loader_name: str, modules: list[LoadedModule],
    regions: list[MemoryRegion], ram_size: int, shdrs: bytes, elf: _Elf | None,
) -> bytes:  # fmt: skip
    """The 116-byte multiboot_info followed by the data it points to."""
    fixed = 116
    extra = bytearray()

    def put(blob: bytes, align: int = 4) -> int:
        pad = _align(len(extra), align) - len(extra)
        extra.extend(b"\0" * pad)
        where = addr + fixed + len(extra)
        extra.extend(blob)
        return where

    flags = 0x1 | 0x4 | 0x40 | 0x200
    lower, upper = basic_meminfo(ram_size)
    cmd_addr = put(cmdline.encode() + b"\0", 1)
    name_addr = put(loader_name.encode() + b"\0", 1)
    mod_strings = [put(m.args.encode() + b"\0", 1) for m in modules]
    mods_addr = put(
        b"".join(
            struct.pack("<IIII", m.start, m.end, s, 0)
            for m, s in zip(modules, mod_strings, strict=True)
        )
    )
    if modules:
        flags |= 0x8
    mmap = b"".join(struct.pack("<IQQI", 20, r.base, r.length, r.type) for r in regions)
    mmap_addr = put(mmap)
    syms = (0, 0, 0, 0)
    if elf is not None and shdrs:
        flags |= 0x20
        syms = (elf.shnum, elf.shentsize, put(shdrs), elf.shstrndx)
    info = struct.pack(
        "<IIIIIII4IIIIIIII",
        flags, lower, upper, 0, cmd_addr, len(modules), mods_addr, *syms,
        len(mmap), mmap_addr, 0, 0, 0, name_addr, 0,
    )  # fmt: skip
    info += b"\0" * (
        fixed - len(info)
    )  # VBE and framebuffer fields: not provided (flags 11, 12 clear)
    return info + bytes(extra)


# --------------------------------------------------------------------------- entry point


def boot_kernel(
    path: str | os.PathLike,
    ram: np.ndarray,
    *,
    cmdline: str = "",
    modules: Sequence[ModuleSpec] = (),
    protocol: str = "auto",
    loader_name: str = "Triplefault",
) -> BootPlan:
    """Load a Multiboot2/Multiboot1 kernel into ``ram`` and return how to start it."""
    if protocol not in ("auto", "multiboot2", "multiboot1"):
        raise LoaderError(f"unknown boot protocol {protocol!r} (auto, multiboot2 or multiboot1)")
    data, name = _read_kernel(path)
    if data[:4] == b"\x7fELF":
        _parse_elf(data, name)  # a broken ELF is reported as such before the header search
    mb2, mb2_problem = _find_mb2(data) if protocol != "multiboot1" else (None, None)
    mb1, mb1_problem = (None, None)
    if mb2 is None and protocol != "multiboot2":
        mb1, mb1_problem = _find_mb1(data)
    if mb2 is None and mb1 is None:
        problem = mb2_problem or mb1_problem
        if problem:
            raise LoaderError(f"{name}: {problem}")
        where = {"multiboot2": "Multiboot2 header in the first 32 KiB",
                 "multiboot1": "Multiboot header in the first 8 KiB"}.get(
            protocol, "Multiboot2 header in the first 32 KiB or Multiboot header in the first 8 KiB")  # fmt: skip
        kind = "" if data[:4] == b"\x7fELF" else " (and it is not an ELF file)"
        raise LoaderError(f"{name}: no {where}{kind}")
    ram_io = _Ram(ram)
    notes: list[str] = []
    if mb2 is not None:
        image, hdr_off = _load_mb2(data, name, ram_io, mb2, notes), mb2.offset
        proto, magic = "multiboot2", MB2_BOOT_MAGIC
    else:
        assert mb1 is not None
        image, hdr_off = _load_mb1(data, name, ram_io, mb1, notes), mb1.offset
        proto, magic = "multiboot1", MB1_BOOT_MAGIC
    image_end = max(s.paddr + s.memsz for s in image.segments)
    loaded_modules, after = _load_modules(modules, ram_io, image_end)
    shdrs, after = _place_sections(image.elf, ram_io, data, after if modules else image_end)
    regions = memory_map(ram.size)
    info_addr = _align(max(after, image_end), 8)
    if proto == "multiboot2":
        info = _mb2_info(
            cmdline,
            loader_name,
            loaded_modules,
            regions,
            ram.size,
            shdrs,
            image.elf,
            image.load_base,
            image.framebuffer,
        )
    else:
        info = _mb1_info(
            info_addr, cmdline, loader_name, loaded_modules, regions, ram.size, shdrs, image.elf
        )
    ram_io.check(info_addr, len(info), "the boot information")
    ram_io.write(info_addr, info)
    _write_firmware(ram_io, magic, info_addr, image.entry)
    elf = image.elf
    return BootPlan(
        protocol=proto,
        entry=image.entry,
        magic=magic,
        info_addr=info_addr,
        stub_addr=STUB_ADDR,
        gdt_base=GDT_BASE,
        gdt_limit=GDT_LIMIT,
        stack_pointer=STACK_POINTER,
        elf_class=elf.bits if elf else None,
        elf_machine=("EM_X86_64" if elf.machine == EM_X86_64 else "EM_386") if elf else None,
        segments=tuple(image.segments),
        image_end=info_addr + len(info),
        notes=tuple(notes),
        modules=tuple(loaded_modules),
        header_offset=hdr_off,
        memory_map=tuple(regions),
        info_size=len(info),
        framebuffer=image.framebuffer,
    )


def _choose_framebuffer(width: int, height: int, depth: int, notes: list[str]) -> Framebuffer:
    """The mode a kernel gets for its framebuffer tag (0 = no preference), as GRUB picks one."""
    w, h, d = FB_DEFAULT
    if width and height:
        if width <= FB_MAX[0] and height <= FB_MAX[1]:
            w, h = width, height
        else:
            notes.append(f"framebuffer {width}x{height} is too large: {w}x{h} provided")
    if depth in (24, 32):
        d = depth
    elif depth:
        notes.append(f"framebuffer depth {depth} is not offered: {d} bpp provided")
    pitch = w * (d // 8)
    notes.append(f"linear framebuffer {w}x{h}x{d} at 0x{FB_BASE:x}")
    return Framebuffer(FB_BASE, w, h, d, pitch)


def _load_mb2(data: bytes, name: str, ram: _Ram, hdr: _Mb2Header, notes: list[str]) -> _Image:
    address = entry = None
    framebuffer = None
    for ttype, tflags, body in hdr.tags:
        optional = bool(tflags & 1)
        tname = MB2_TAG_NAMES.get(ttype, "unknown")
        if ttype == 1:
            for i in range(0, len(body) - 3, 4):
                req = struct.unpack_from("<I", body, i)[0]
                if req in MB2_INFO_PROVIDED:
                    continue
                what = f"boot information tag {req} ({MB2_INFO_NAMES.get(req, 'unknown')})"
                if optional:
                    notes.append(f"optional request for {what} not provided")
                else:
                    raise LoaderError(
                        f"{name}: the kernel requires {what}, which Triplefault does not provide"
                    )
        elif ttype == 2:
            if len(body) < 16:
                raise LoaderError(f"{name}: Multiboot2 address tag is too short")
            address = struct.unpack_from("<IIII", body)
        elif ttype == 3:
            if len(body) < 4:
                raise LoaderError(f"{name}: Multiboot2 entry address tag is too short")
            entry = struct.unpack_from("<I", body)[0]
        elif ttype == 4:
            flags = struct.unpack_from("<I", body)[0] if len(body) >= 4 else 0
            notes.append(f"console flags 0x{flags:x}: EGA text console provided")
        elif ttype == 5:
            if len(body) < 12:
                raise LoaderError(f"{name}: Multiboot2 framebuffer tag is too short")
            framebuffer = _choose_framebuffer(*struct.unpack_from("<III", body), notes)
        elif ttype == 6:
            notes.append("module alignment requested: modules are always page aligned")
        elif ttype in (7, 8, 9):
            notes.append(f"header tag {ttype} ({tname}) ignored: booting like GRUB on a BIOS PC")
        elif ttype == 10:
            notes.append("relocatable image loaded at its link address")
        elif optional:
            notes.append(f"optional header tag {ttype} ({tname}) skipped")
        else:
            raise LoaderError(
                f"{name}: required Multiboot2 header tag {ttype} ({tname}) is not supported"
            )
    if address is not None:
        header_addr, load_addr, load_end, bss_end = address
        if entry is None:
            raise LoaderError(f"{name}: Multiboot2 address tag without an entry address tag")
        image = _load_aout(
            data,
            name,
            ram,
            hdr.offset,
            header_addr,
            load_addr,
            load_end,
            bss_end,
            entry,
            "Multiboot2",
        )
        image.framebuffer = framebuffer
        return image
    if data[:4] != b"\x7fELF":
        raise LoaderError(f"{name}: not an ELF file, and its Multiboot2 header has no address tag")
    image = _load_elf(data, name, ram)
    if entry is not None:
        if not any(s.paddr <= entry < s.paddr + s.memsz for s in image.segments):
            raise LoaderError(
                f"{name}: entry address tag 0x{entry:x} is outside every loaded segment"
            )
        image.entry = entry
    image.framebuffer = framebuffer
    return image


def _load_mb1(data: bytes, name: str, ram: _Ram, hdr: _Mb1Header, notes: list[str]) -> _Image:
    if hdr.flags & MB1_UNSUPPORTED_FLAGS:
        raise LoaderError(
            f"{name}: Multiboot header requires unsupported features (flags 0x{hdr.flags & MB1_UNSUPPORTED_FLAGS:x})"
        )
    if hdr.flags & 0x4:
        notes.append("video mode requested: EGA text mode provided")
    if hdr.aout is not None:
        header_addr, load_addr, load_end, bss_end, entry = hdr.aout
        return _load_aout(
            data,
            name,
            ram,
            hdr.offset,
            header_addr,
            load_addr,
            load_end,
            bss_end,
            entry,
            "Multiboot",
        )
    if data[:4] != b"\x7fELF":
        raise LoaderError(
            f"{name}: not an ELF file, and its Multiboot header has no a.out kludge (flag 16)"
        )
    return _load_elf(data, name, ram)
