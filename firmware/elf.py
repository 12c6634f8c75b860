"""Reading an x86 kernel ELF the way GRUB 2.06's Multiboot loader does (System V ABI, ELF-64
Object File Format 1.5).

Only the file's bytes are read: every offset and count is checked against the file's length
before it is used, so a malformed file is one ``LoaderError`` line and never a Python
traceback or an allocation sized by the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from emu.errors import LoaderError

ELF_MAGIC = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB = 1
EV_CURRENT = 1
ET_EXEC, ET_DYN = 2, 3
EM_386 = 3
EM_X86_64 = 62
PT_LOAD = 1
PN_XNUM = 0xFFFF  # e_phnum escape: the real count is in section 0's sh_info
SHN_XINDEX = 0xFFFF  # e_shstrndx escape: the real index is in section 0's sh_link
SHT_NULL, SHT_RELA, SHT_NOBITS, SHT_REL = 0, 4, 8, 9
SHF_ALLOC = 0x2

MACHINE_NAMES = {0: "none", 2: "SPARC", 3: "i386", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64",
                 22: "S/390", 40: "ARM", 50: "IA-64", 62: "x86-64", 183: "AArch64",
                 243: "RISC-V", 258: "LoongArch"}  # fmt: skip
TYPE_NAMES = {0: "no file type", 1: "a relocatable object", 4: "a core dump"}

# Per class: header size, and the layout of the header tail, program and section headers.
_EHDR = {32: ("<HHIIIIIHHHHHH", 52), 64: ("<HHIQQQIHHHHHH", 64)}
_PHDR = {32: ("<IIIIIIII", 32), 64: ("<IIQQQQQQ", 56)}
_SHDR = {32: ("<IIIIIIIIII", 40), 64: ("<IIQQQQIIQQ", 64)}


@dataclass(frozen=True)
class ProgramHeader:
    type: int
    flags: int  # PF_X 1, PF_W 2, PF_R 4
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int

    @property
    def flags_text(self) -> str:
        return (
            ("R" if self.flags & 4 else "-")
            + ("W" if self.flags & 2 else "-")
            + ("X" if self.flags & 1 else "-")
        )


@dataclass(frozen=True)
class SectionHeader:
    index: int
    name_offset: int
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int


@dataclass(frozen=True)
class ElfFile:
    """The parts of a kernel ELF a Multiboot loader uses."""

    bits: int  # 32 or 64
    machine: int
    type: int
    entry: int
    program_headers: tuple[ProgramHeader, ...]
    sections: tuple[SectionHeader, ...]
    shentsize: int
    shstrndx: int
    section_table: bytes  # the raw section header table, as the boot information carries it

    @property
    def machine_name(self) -> str:
        return "EM_X86_64" if self.machine == EM_X86_64 else "EM_386"

    @property
    def load_segments(self) -> tuple[ProgramHeader, ...]:
        return tuple(p for p in self.program_headers if p.type == PT_LOAD)

    def section_name(self, data: bytes, section: SectionHeader) -> str:
        """The section's name from the string table (empty if the table is unusable)."""
        if not 0 < self.shstrndx < len(self.sections):
            return ""
        strtab = self.sections[self.shstrndx]
        start = strtab.offset + section.name_offset
        end_of_table = min(strtab.offset + strtab.size, len(data))
        if strtab.type == SHT_NOBITS or start >= end_of_table:
            return ""
        end = data.find(b"\0", start, end_of_table)
        return data[start : end if end >= 0 else end_of_table].decode("latin-1")


@dataclass(frozen=True)
class SectionTable:
    """The section header table as the boot information carries it, sh_addr patched for the
    sections the loader placed in memory."""

    num: int
    entsize: int
    shndx: int
    table: bytes


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


def parse_elf(data: bytes, name: str, *, phdr_limit: int) -> ElfFile:
    """Parse and check an x86 kernel ELF.

    ``phdr_limit`` is the part of the file GRUB reads before loading (32 KiB for Multiboot2,
    8 KiB for Multiboot): GRUB refuses a kernel whose program headers lie beyond it.
    """
    if len(data) < 16:
        raise LoaderError(f"{name}: truncated ELF header ({len(data)} bytes)")
    elf_class, encoding = data[4], data[5]
    if elf_class not in (ELFCLASS32, ELFCLASS64):
        raise LoaderError(f"{name}: unknown ELF class {elf_class} (1 is ELF32, 2 is ELF64)")
    if encoding != ELFDATA2LSB:
        raise LoaderError(f"{name}: big-endian ELF (data encoding {encoding}), not an x86 kernel")
    bits = 64 if elf_class == ELFCLASS64 else 32
    ehdr_format, ehdr_size = _EHDR[bits]
    if len(data) < ehdr_size:
        raise LoaderError(
            f"{name}: truncated ELF header ({len(data)} bytes, an ELF{bits} header is {ehdr_size})"
        )
    (e_type, machine, version, entry, phoff, shoff, _flags, _ehsize, phentsize, phnum,
     shentsize, shnum, shstrndx) = struct.unpack_from(ehdr_format, data, 16)  # fmt: skip
    expected = EM_X86_64 if bits == 64 else EM_386
    if machine not in (EM_386, EM_X86_64):
        what = MACHINE_NAMES.get(machine, "unknown")
        raise LoaderError(
            f"{name}: ELF for machine {machine} ({what}), not x86 (EM_386 or EM_X86_64)"
        )
    if machine != expected:
        raise LoaderError(
            f"{name}: an ELF{bits} file must be {'EM_X86_64' if bits == 64 else 'EM_386'}, "
            f"this one says machine {machine} ({MACHINE_NAMES[machine]})"
        )
    if version != EV_CURRENT:
        raise LoaderError(f"{name}: ELF version {version}, expected 1 (EV_CURRENT)")
    if e_type not in (ET_EXEC, ET_DYN):
        what = TYPE_NAMES.get(e_type, f"type {e_type}")
        raise LoaderError(f"{name}: the ELF file is {what}, not an executable (ET_EXEC/ET_DYN)")

    sections, section_table = _section_headers(data, name, bits, shoff, shentsize, shnum)
    if phnum == PN_XNUM and sections:
        phnum = sections[0].info
    if shstrndx == SHN_XINDEX and sections:
        shstrndx = sections[0].link
    program_headers = _program_headers(data, name, bits, phoff, phentsize, phnum, phdr_limit)
    return ElfFile(
        bits=bits,
        machine=machine,
        type=e_type,
        entry=entry,
        program_headers=program_headers,
        sections=sections,
        shentsize=shentsize,
        shstrndx=shstrndx,
        section_table=section_table,
    )


def _program_headers(
    data: bytes, name: str, bits: int, phoff: int, phentsize: int, phnum: int, limit: int
) -> tuple[ProgramHeader, ...]:
    phdr_format, phdr_size = _PHDR[bits]
    if phnum == 0:
        raise LoaderError(f"{name}: the ELF has no program headers, so nothing to load")
    if phentsize < phdr_size:
        raise LoaderError(
            f"{name}: ELF program header size {phentsize} is smaller than an ELF{bits} "
            f"program header ({phdr_size})"
        )
    end = phoff + phnum * phentsize
    if end > len(data):
        raise LoaderError(
            f"{name}: truncated ELF: the program headers end at byte {end}, "
            f"the file has {len(data)}"
        )
    if end > limit:
        raise LoaderError(
            f"{name}: the program headers end at byte {end}, beyond the first "
            f"{limit // 1024} KiB that GRUB reads (GRUB refuses this kernel too)"
        )
    headers = []
    for i in range(phnum):
        fields = struct.unpack_from(phdr_format, data, phoff + i * phentsize)
        if bits == 64:
            p_type, p_flags, offset, vaddr, paddr, filesz, memsz, _align = fields
        else:
            p_type, offset, vaddr, paddr, filesz, memsz, p_flags, _align = fields
        headers.append(ProgramHeader(p_type, p_flags, offset, vaddr, paddr, filesz, memsz))
    return tuple(headers)


def _section_headers(
    data: bytes, name: str, bits: int, shoff: int, shentsize: int, shnum: int
) -> tuple[tuple[SectionHeader, ...], bytes]:
    if shoff == 0:
        return (), b""
    shdr_format, shdr_size = _SHDR[bits]
    if shentsize < shdr_size:
        raise LoaderError(
            f"{name}: ELF section header size {shentsize} is smaller than an ELF{bits} "
            f"section header ({shdr_size})"
        )
    if shnum == 0:  # more than 0xff00 sections: the count is in section 0's sh_size
        if shoff + shdr_size > len(data):
            raise LoaderError(f"{name}: truncated ELF: section header 0 lies beyond the file")
        shnum = struct.unpack_from(shdr_format, data, shoff)[5]
    end = shoff + shnum * shentsize
    if end > len(data):
        raise LoaderError(
            f"{name}: truncated ELF: the section headers end at byte {end}, "
            f"the file has {len(data)}"
        )
    sections = []
    for i in range(shnum):
        (name_offset, s_type, flags, addr, offset, size, link, info, addralign,
         _entsize) = struct.unpack_from(shdr_format, data, shoff + i * shentsize)  # fmt: skip
        sections.append(
            SectionHeader(i, name_offset, s_type, flags, addr, offset, size, link, info, addralign)
        )
    return tuple(sections), data[shoff:end]


def patch_section_addr(table: bytearray, bits: int, shentsize: int, index: int, addr: int) -> None:
    """Write a new sh_addr into a raw section header table (where the loader put the section)."""
    offset = index * shentsize + (16 if bits == 64 else 12)
    struct.pack_into("<Q" if bits == 64 else "<I", table, offset, addr)
