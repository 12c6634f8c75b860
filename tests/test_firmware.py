"""The Multiboot loaders, checked by reading the boot information back from guest RAM.

The kernels are written here by a small ELF writer; the boot information is decoded by a
parser written here from the specifications, independent of the loader's builders. Expected
addresses marked "GRUB" were measured by booting the same layouts under GRUB 2.06 in QEMU.
"""

from __future__ import annotations

import gzip
import lzma
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import capstone
import numpy as np
import pytest

from emu.errors import LoaderError
from firmware import (
    GDT_BASE,
    STUB_ADDR,
    ModuleSpec,
    basic_meminfo,
    boot_kernel,
    memory_map,
)

RAM = 128 << 20
MB2_MAGIC = 0xE85250D6
MB1_MAGIC = 0x1BADB002
EM_386, EM_X86_64 = 3, 62
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS = 1, 2, 3, 8
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4

# The E820 map GRUB 2.06 passes under QEMU with 128 MiB (base, length, type), with the
# 0xFD00000000 entry QEMU adds for its AMD CPU model (measured with images/probe-mbi).
GRUB_MAP_128M = [
    (0x0, 0x9FC00, 1),
    (0x9FC00, 0x400, 2),
    (0xF0000, 0x10000, 2),
    (0x100000, 0x7EE0000, 1),
    (0x7FE0000, 0x20000, 2),
    (0xFFFC0000, 0x40000, 2),
    (0xFD00000000, 0x300000000, 2),
]


# ------------------------------------------------------------------ a small ELF writer


@dataclass
class Segment:
    paddr: int
    data: bytes = b""
    memsz: int | None = None  # default: len(data)
    vaddr: int | None = None  # default: paddr
    flags: int = 7  # PF_R | PF_W | PF_X
    type: int = 1  # PT_LOAD


@dataclass
class Section:
    name: str
    type: int = SHT_PROGBITS
    data: bytes = b""
    addr: int = 0
    flags: int = 0
    align: int = 1
    size: int | None = None  # default: len(data); set it for sections the segments hold
    link: int = 0
    info: int = 0
    entsize: int = 0
    in_file: bool = True  # False: no bytes in the file (NOBITS, or described by a segment)


@dataclass
class Elf:
    segments: Sequence[Segment]
    bits: int = 64
    entry: int | None = None  # default: the first segment's vaddr
    sections: Sequence[Section] = field(default_factory=tuple)
    machine: int | None = None
    type: int = 2  # ET_EXEC

    def build(self) -> bytes:
        b64 = self.bits == 64
        ehsize, phentsize, shentsize = (64, 56, 64) if b64 else (52, 32, 40)
        out = bytearray(ehsize + phentsize * len(self.segments))
        seg_offsets = []
        for s in self.segments:
            out += bytes(-len(out) % 0x1000)
            seg_offsets.append(len(out))
            out += s.data
        names = bytearray(b"\0")
        name_offsets = []
        for sec in self.sections:
            name_offsets.append(len(names))
            names += sec.name.encode() + b"\0"
        shstrtab_name = len(names)
        names += b".shstrtab\0"
        sec_offsets = []
        for sec in self.sections:
            if sec.in_file and sec.data:
                out += bytes(-len(out) % max(sec.align, 1))
                sec_offsets.append(len(out))
                out += sec.data
            else:
                sec_offsets.append(0)
        shstrtab_offset = len(out)
        out += names
        out += bytes(-len(out) % 8)
        shoff = len(out)
        shdr = "<IIQQQQIIQQ" if b64 else "<IIIIIIIIII"
        out += struct.pack(shdr, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        for sec, noff, off in zip(self.sections, name_offsets, sec_offsets, strict=True):
            size = len(sec.data) if sec.size is None else sec.size
            out += struct.pack(shdr, noff, sec.type, sec.flags, sec.addr, off, size, sec.link,
                               sec.info, sec.align, sec.entsize)  # fmt: skip
        out += struct.pack(shdr, shstrtab_name, SHT_STRTAB, 0, 0, shstrtab_offset, len(names),
                           0, 0, 1, 0)  # fmt: skip
        shnum = len(self.sections) + 2
        first = self.segments[0]
        entry = self.entry if self.entry is not None else _vaddr(first)
        machine = self.machine or (EM_X86_64 if b64 else EM_386)
        ident = b"\x7fELF" + bytes([2 if b64 else 1, 1, 1]) + bytes(9)
        ehdr = "<HHIQQQIHHHHHH" if b64 else "<HHIIIIIHHHHHH"
        out[:ehsize] = ident + struct.pack(ehdr, self.type, machine, 1, entry, ehsize, shoff, 0,
                                           ehsize, phentsize, len(self.segments), shentsize,
                                           shnum, shnum - 1)  # fmt: skip
        for i, (s, off) in enumerate(zip(self.segments, seg_offsets, strict=True)):
            memsz = len(s.data) if s.memsz is None else s.memsz
            if b64:
                ph = struct.pack("<IIQQQQQQ", s.type, s.flags, off, _vaddr(s), s.paddr,
                                 len(s.data), memsz, 0x1000)  # fmt: skip
            else:
                ph = struct.pack("<IIIIIIII", s.type, off, _vaddr(s), s.paddr, len(s.data),
                                 memsz, s.flags, 0x1000)  # fmt: skip
            out[ehsize + i * phentsize : ehsize + (i + 1) * phentsize] = ph
        return bytes(out)


def _vaddr(s: Segment) -> int:
    return s.paddr if s.vaddr is None else s.vaddr


def mb2_tag(ttype: int, body: bytes = b"", optional: bool = False) -> bytes:
    raw = struct.pack("<HHI", ttype, int(optional), 8 + len(body)) + body
    return raw + bytes(-len(raw) % 8)


def mb2_header(*tags: bytes, arch: int = 0) -> bytes:
    end = struct.pack("<HHI", 0, 0, 8)
    length = 16 + sum(map(len, tags)) + len(end)
    checksum = -(MB2_MAGIC + arch + length) & 0xFFFFFFFF
    return struct.pack("<IIII", MB2_MAGIC, arch, length, checksum) + b"".join(tags) + end


def mb1_header(flags: int = 0x3, aout: tuple[int, int, int, int, int] | None = None) -> bytes:
    header = struct.pack("<III", MB1_MAGIC, flags, -(MB1_MAGIC + flags) & 0xFFFFFFFF)
    return header + (struct.pack("<5I", *aout) if aout else b"")


def simple_kernel(header: bytes, *, code: bytes = b"\xf4" * 16, **elf_args) -> bytes:
    """One PT_LOAD at 1 MiB holding the header, then code; the entry is the code."""
    payload = header + code
    paddr = elf_args.pop("paddr", 0x100000)
    memsz = elf_args.pop("memsz", None)
    seg = Segment(paddr, payload, memsz=memsz, vaddr=elf_args.pop("vaddr", None))
    entry = elf_args.pop("entry", _vaddr(seg) + len(header))
    return Elf([seg], entry=entry, **elf_args).build()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture
def ram() -> np.ndarray:
    return np.full(RAM, 0xAA, np.uint8)  # dirty: the loader must zero what it claims


# --------------------------------------------------------- boot information parsers


def u32(ram: np.ndarray, addr: int) -> int:
    return int.from_bytes(ram[addr : addr + 4].tobytes(), "little")


def cstr(ram: np.ndarray, addr: int) -> str:
    end = addr
    while ram[end]:
        end += 1
    return ram[addr:end].tobytes().decode()


@dataclass
class Mb2Tag:
    type: int
    addr: int
    body: bytes


def mb2_info(ram: np.ndarray, info: int) -> list[Mb2Tag]:
    """Walk the Multiboot2 information (spec 3.6), checking its framing on the way."""
    total, reserved = u32(ram, info), u32(ram, info + 4)
    assert reserved == 0
    tags, p = [], info + 8
    while True:
        assert p % 8 == 0, f"tag at 0x{p:x} is not 8-byte aligned"
        ttype, size = u32(ram, p), u32(ram, p + 4)
        assert size >= 8
        tags.append(Mb2Tag(ttype, p, ram[p + 8 : p + size].tobytes()))
        if ttype == 0:
            assert size == 8
            break
        p += (size + 7) & ~7
    assert p + 8 - info == total, "total_size covers exactly the tags"
    return tags


def one(tags: list[Mb2Tag], ttype: int) -> bytes:
    (body,) = [t.body for t in tags if t.type == ttype]
    return body


def mmap_entries(body: bytes) -> list[tuple[int, int, int]]:
    entry_size, version = struct.unpack_from("<II", body)
    assert (entry_size, version) == (24, 0)
    out = []
    for off in range(8, len(body), entry_size):
        base, length, mtype, zero = struct.unpack_from("<QQII", body, off)
        assert zero == 0
        out.append((base, length, mtype))
    return out


def section_headers(table: bytes, num: int, entsize: int) -> list[tuple[int, int, int, int]]:
    """(type, flags, addr, size) of each section header in a raw table (ELF32 or ELF64)."""
    out = []
    for i in range(num):
        if entsize == 64:
            _n, t, f, a, _o, s = struct.unpack_from("<IIQQQQ", table, i * entsize)
        else:
            _n, t, f, a, _o, s = struct.unpack_from("<IIIIII", table, i * entsize)
        out.append((t, f, a, s))
    return out


@dataclass
class Mb1Info:
    flags: int
    mem_lower: int
    mem_upper: int
    cmdline: int
    mods_count: int
    mods_addr: int
    syms: tuple[int, int, int, int]
    mmap_length: int
    mmap_addr: int
    boot_loader_name: int
    framebuffer: tuple[int, int, int, int, int, int]


def mb1_info(ram: np.ndarray, info: int) -> Mb1Info:
    """The fixed part of the Multiboot information structure (spec 3.3)."""
    raw = ram[info : info + 116].tobytes()
    f = struct.unpack_from("<IIIIIII4IIIIIIII", raw)
    fb = struct.unpack_from("<QIIIBB", raw, 88)
    return Mb1Info(f[0], f[1], f[2], f[4], f[5], f[6], f[7:11], f[11], f[12], f[16], fb)


# ------------------------------------------------------------------------ Multiboot2


def test_mb2_boot_information_round_trip(tmp_path: Path, ram: np.ndarray) -> None:
    kernel = write(tmp_path, "k.elf", simple_kernel(mb2_header(), memsz=0x3000))
    mod1 = write(tmp_path, "initrd", b"MODULE-ONE" * 10)
    mod2 = write(tmp_path, "second", bytes(range(256)) * 20)
    plan = boot_kernel(
        kernel,
        ram,
        cmdline="console=com1 root=/dev/x",
        modules=[ModuleSpec.parse(f"{mod1},first args"), ModuleSpec(str(mod2))],
        loader_name="Triplefault test",
    )
    assert (plan.protocol, plan.magic, plan.elf_class, plan.elf_machine) == (
        "multiboot2",
        0x36D76289,
        64,
        "EM_X86_64",
    )
    tags = mb2_info(ram, plan.info_addr)
    assert plan.info_addr % 8 == 0 and plan.info_size == u32(ram, plan.info_addr)
    # GRUB 2.06's order (measured), less the ACPI RSDP tag: no ACPI tables here
    assert [t.type for t in tags] == [21, 1, 2, 10, 3, 3, 6, 9, 4, 5, 8, 0]
    assert one(tags, 10) == struct.pack("<HHIHHHHHH", 0x102, 0xF000, 0xD198, 0xF000, 0xF000, 3,
                                        0xFFF0, 0xFFF0, 0xFFF0)  # fmt: skip
    assert one(tags, 5) == struct.pack("<III", 0xE0, 0xFFFFFFFF, 0xFFFFFFFF)  # the CD-ROM
    assert one(tags, 1) == b"console=com1 root=/dev/x\0"
    assert one(tags, 2) == b"Triplefault test\0"
    mods = [t.body for t in tags if t.type == 3]
    (s1, e1), (s2, e2) = (struct.unpack_from("<II", m) for m in mods)
    assert s1 % 0x1000 == 0 and s2 % 0x1000 == 0 and s1 >= 0x103000
    assert ram[s1:e1].tobytes() == b"MODULE-ONE" * 10
    assert ram[s2:e2].tobytes() == bytes(range(256)) * 20
    assert mods[0][8:] == b"first args\0" and mods[1][8:] == b"\0"
    assert struct.unpack("<II", one(tags, 4)) == (639, (RAM - 0x20000 - 0x100000) // 1024)
    assert mmap_entries(one(tags, 6)) == GRUB_MAP_128M
    addr, pitch, width, height, bpp, fbtype, _r = struct.unpack("<QIIIBBH", one(tags, 8))
    assert (addr, pitch, width, height, bpp, fbtype) == (0xB8000, 160, 80, 25, 16, 2)
    assert one(tags, 21) == struct.pack("<I", 0x100000)
    assert plan.modules[0].args == "first args" and plan.modules[1].path == str(mod2)
    assert plan.image_end == e2


def test_elf_sections_are_loaded_and_their_addresses_patched(tmp_path: Path, ram) -> None:
    symtab = bytes(range(24)) * 4  # four 24-byte ELF64 symbols' worth of recognisable bytes
    strtab = b"\0kmain\0_start\0"
    sections = [
        Section(".text", addr=0x100000, flags=SHF_ALLOC | SHF_EXECINSTR, size=0x40,
                in_file=False),
        Section(".bss", SHT_NOBITS, addr=0x100040, flags=SHF_ALLOC | SHF_WRITE, size=0x1000,
                in_file=False),
        Section(".symtab", SHT_SYMTAB, symtab, align=8, link=4, entsize=24),
        Section(".strtab", SHT_STRTAB, strtab),
        Section(".empty", SHT_PROGBITS),
    ]  # fmt: skip
    payload = mb2_header() + b"\xf4" * 0x28
    elf = Elf([Segment(0x100000, payload, memsz=0x1040)], entry=0x100038, sections=sections)
    plan = boot_kernel(write(tmp_path, "k.elf", elf.build()), ram)
    num, entsize, shndx = struct.unpack_from("<III", one(mb2_info(ram, plan.info_addr), 9))
    assert (num, entsize, shndx) == (7, 64, 6)
    table = one(mb2_info(ram, plan.info_addr), 9)[12:]
    headers = section_headers(table, num, entsize)
    assert headers[1][2] == 0x100000 and headers[2][2] == 0x100040  # loaded ones keep sh_addr
    assert headers[5][2] == 0  # empty: not loaded
    for index, data in ((3, symtab), (4, strtab)):
        _t, _f, addr, size = headers[index]
        assert addr >= 0x101040, "after the image"
        assert ram[addr : addr + size].tobytes() == data
    assert headers[3][2] % 8 == 0  # sh_addralign honoured
    shstr_addr, shstr_size = headers[6][2], headers[6][3]
    assert b".symtab\0" in ram[shstr_addr : shstr_addr + shstr_size].tobytes()
    assert [s.name for s in plan.sections] == [".symtab", ".strtab", ".shstrtab"]


def _grub_measured_sections(bits: int = 32) -> list[Section]:
    """The section table of a small gcc/ld kernel booted under GRUB to measure its layout."""
    return [
        Section(".text", addr=0x100000, flags=6, size=0x2B6, align=8, in_file=False),
        Section(".rodata", addr=0x1002B6, flags=0x32, size=0x71, in_file=False),
        Section(".eh_frame", addr=0x100328, flags=2, size=0xE4, align=4, in_file=False),
        Section(".bss", SHT_NOBITS, addr=0x100410, flags=3, size=0x2000, align=16,
                in_file=False),
        Section(".comment", data=b"GCC: (Debian 12.2.0-14) 12.2.0".ljust(0x27, b"\0"),
                flags=0x30),
        Section(".symtab", SHT_SYMTAB, bytes(0xC0), align=4, link=6, entsize=16),
        Section(".strtab", SHT_STRTAB, b"\0" + b"s" * 0x44 + b"\0"),
    ]  # fmt: skip


def test_layout_matches_grub(tmp_path: Path, ram: np.ndarray) -> None:
    """GRUB 2.06 placed this kernel's sections, its two modules and the boot information at
    exactly these addresses (EBX = 0x102580)."""
    image = mb2_header() + b"\xf4" * (0x410 - 24)
    elf = Elf([Segment(0x100000, image, memsz=0x2410)], bits=32, entry=0x100018,
              sections=_grub_measured_sections())  # fmt: skip
    mod0 = write(tmp_path, "mod0", b"module one data\n")
    mod1 = write(tmp_path, "mod1", bytes(0x1388))
    plan = boot_kernel(
        write(tmp_path, "k.elf", elf.build()),
        ram,
        cmdline="hello world",
        modules=[ModuleSpec(str(mod0), "first args"), ModuleSpec(str(mod1))],
    )
    assert [(s.name, s.addr) for s in plan.sections] == [
        (".comment", 0x102410),
        (".symtab", 0x102438),
        (".strtab", 0x1024F8),
        (".shstrtab", 0x10253E),
    ]
    assert [(m.start, m.end) for m in plan.modules] == [(0x103000, 0x103010), (0x104000, 0x105388)]
    assert plan.info_addr == 0x102580


def test_kernel_linked_high_gets_its_boot_information_at_1mib(tmp_path: Path, ram) -> None:
    """GRUB puts the sections and the boot information at the lowest free RAM from 1 MiB up,
    even below a kernel linked at 16 MiB (measured: EBX = 0x100170)."""
    image = mb2_header() + b"\xf4" * (0x410 - 24)
    sections = _grub_measured_sections()
    for s in sections[:4]:
        s.addr += 0xF00000
    elf = Elf([Segment(0x1000000, image, memsz=0x2410)], bits=32, entry=0x1000018,
              sections=sections)  # fmt: skip
    plan = boot_kernel(write(tmp_path, "k.elf", elf.build()), ram)
    assert [s.addr for s in plan.sections] == [0x100000, 0x100028, 0x1000E8, 0x10012E]
    assert plan.info_addr == 0x100170
    assert plan.load_base == 0x1000000


def test_sections_fill_gaps_between_segments(tmp_path: Path, ram: np.ndarray) -> None:
    """First fit, as GRUB does: a small section goes into the hole between two segments."""
    text = Segment(0x100000, mb2_header() + b"\xf4" * 0x40, flags=5)
    data = Segment(0x102000, b"D" * 0x100, flags=6)
    sections = [
        Section(".big", data=b"B" * 0x3000),
        Section(".small", data=b"S" * 0x80, align=16),
    ]
    elf = Elf([text, data], sections=sections, entry=0x100018)
    plan = boot_kernel(write(tmp_path, "k.elf", elf.build()), ram)
    addrs = {s.name: s.addr for s in plan.sections}
    assert addrs[".big"] == 0x102100  # too big for the hole: after the image
    assert addrs[".small"] == 0x100060  # 0x100058 rounded up to 16
    assert ram[0x100060:0x1000E0].tobytes() == b"S" * 0x80
    assert [s.flags for s in plan.segments] == ["R-X", "RW-"]


def test_grub_gdt_and_firmware_stub(tmp_path: Path, ram: np.ndarray) -> None:
    plan = boot_kernel(write(tmp_path, "k.elf", simple_kernel(mb2_header())), ram)
    gdt = struct.unpack_from("<4Q", ram[GDT_BASE : GDT_BASE + 32].tobytes())
    assert gdt == (0, 0, 0x00CF9A000000FFFF, 0x00CF93000000FFFF)
    assert (plan.stub_addr, plan.gdt_base, plan.gdt_limit, plan.stack_pointer) == (
        0x1000,
        0x10B0,
        0x20,
        0x7FF00,
    )
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    code = ram[STUB_ADDR:GDT_BASE].tobytes()
    insns = list(md.disasm(code, STUB_ADDR))[:12]
    assert [f"{i.mnemonic} {i.op_str}" for i in insns] == [
        "ljmp 0x10:0x1007",
        "mov eax, 0x18",
        "mov ds, eax",
        "mov es, eax",
        "mov fs, eax",
        "mov gs, eax",
        "mov ss, eax",
        "mov esp, 0x7ff00",
        "xor eax, eax",  # EFLAGS 0x46, as GRUB's trampoline leaves it
        "mov eax, 0x36d76289",
        f"mov ebx, {plan.info_addr:#x}",
        "ljmp 0x10:0x100018",
    ]
    assert insns[1].address == 0x1007  # the first far jump lands on the next instruction
    stub_end = insns[-1].address + insns[-1].size
    assert not ram[stub_end:GDT_BASE].any()  # the rest of the firmware area is clean
    assert ram[0x10D0] == 0xAA  # nothing written past the GDT's limit


def test_bss_is_zeroed_over_dirty_ram(tmp_path: Path, ram: np.ndarray) -> None:
    kernel = simple_kernel(mb2_header(), code=b"\x90" * 100, memsz=0x5000)
    boot_kernel(write(tmp_path, "k.elf", kernel), ram)
    payload_end = 0x100000 + len(mb2_header()) + 100
    assert ram[payload_end - 1] == 0x90
    assert not ram[payload_end:0x105000].any()


def test_higher_half_entry_is_translated_to_physical(tmp_path: Path, ram: np.ndarray) -> None:
    vaddr = 0xFFFFFFFF80100000
    kernel = simple_kernel(mb2_header(), vaddr=vaddr, entry=vaddr + 0x20)
    plan = boot_kernel(write(tmp_path, "k.elf", kernel), ram)
    assert plan.entry == 0x100020
    assert (plan.segments[0].vaddr, plan.segments[0].paddr) == (vaddr, 0x100000)


def test_entry_address_tag_overrides_e_entry(tmp_path: Path, ram: np.ndarray) -> None:
    header = mb2_header(mb2_tag(3, struct.pack("<I", 0x100030)))
    plan = boot_kernel(write(tmp_path, "k.elf", simple_kernel(header, code=b"\x90" * 64)), ram)
    assert plan.entry == 0x100030
    assert u32(ram, STUB_ADDR + 40) == 0x100030  # the stub's final ljmp target


def test_mb2_address_tag_loads_a_flat_binary(tmp_path: Path, ram: np.ndarray) -> None:
    # The header sits at file offset 0x40 = header_addr 0x200040: the file loads at 0x200000.
    tags = (
        mb2_tag(2, struct.pack("<IIII", 0x200040, 0x200000, 0x200100, 0x200400)),
        mb2_tag(3, struct.pack("<I", 0x200080)),
    )
    header = mb2_header(*tags)
    image = (b"\xcc" * 0x40 + header).ljust(0x100, b"\x90")
    plan = boot_kernel(write(tmp_path, "flat.bin", image + b"NOT LOADED"), ram)
    assert (plan.elf_class, plan.elf_machine, plan.entry) == (None, None, 0x200080)
    assert ram[0x200000:0x200100].tobytes() == image
    assert not ram[0x200100:0x200400].any() and ram[0x200400] == 0xAA
    tags_out = mb2_info(ram, plan.info_addr)
    assert one(tags_out, 21) == struct.pack("<I", 0x200000)
    assert one(tags_out, 9) == bytes(12)  # not loaded as an ELF: GRUB's tag says 0 sections
    assert plan.info_addr >= 0x100000 and plan.info_addr % 8 == 0


def test_mb2_address_tag_load_from_file_start_and_to_its_end(tmp_path, ram) -> None:
    """load_addr -1: from the start of the file; load_end_addr 0: to its end (spec 3.1.5)."""
    tags = (
        mb2_tag(2, struct.pack("<IIII", 0x300010, 0xFFFFFFFF, 0, 0)),
        mb2_tag(3, struct.pack("<I", 0x300000)),
    )
    image = b"\xf4" * 0x10 + mb2_header(*tags) + b"tail"
    plan = boot_kernel(write(tmp_path, "flat.bin", image), ram)
    assert plan.segments[0].paddr == 0x300000 and plan.segments[0].memsz == len(image)
    assert ram[0x300000 : 0x300000 + len(image)].tobytes() == image


def test_relocatable_image_stays_at_its_link_address_when_allowed(tmp_path, ram) -> None:
    reloc = mb2_tag(10, struct.pack("<IIII", 0x100000, 0x1000000, 0x1000, 1))
    plan = boot_kernel(write(tmp_path, "k.elf", simple_kernel(mb2_header(reloc))), ram)
    assert plan.load_base == 0x100000 and plan.segments[0].paddr == 0x100000
    assert any("link address" in n for n in plan.notes)


@pytest.mark.parametrize("preference,base", [(1, 0x400000), (2, 0x7E00000)])
def test_relocatable_image_is_moved_into_its_range(tmp_path, ram, preference, base) -> None:
    # linked at 1 MiB but allowed only from 4 MiB: lowest (1) or highest (2) 2 MiB-aligned slot
    reloc = mb2_tag(10, struct.pack("<IIII", 0x400000, 0xFFFFFFFF, 0x200000, preference))
    header = mb2_header(reloc, mb2_tag(3, struct.pack("<I", 0x100048)))
    kernel = simple_kernel(header, code=b"\x90" * 0x40, memsz=0x2000)
    plan = boot_kernel(write(tmp_path, "k.elf", kernel), ram)
    assert plan.load_base == base and plan.segments[0].paddr == base
    assert plan.entry == base + 0x48  # the entry address moves with the image
    assert ram[base : base + len(header)].tobytes() == header
    assert one(mb2_info(ram, plan.info_addr), 21) == struct.pack("<I", base)


def test_efi_tags_are_ignored_as_grub_does_on_bios(tmp_path: Path, ram: np.ndarray) -> None:
    """Measured: GRUB 2.06 on BIOS boots kernels with required EFI tags (7, 9)."""
    header = mb2_header(mb2_tag(7), mb2_tag(9, struct.pack("<I", 0x100040)))
    plan = boot_kernel(write(tmp_path, "k.elf", simple_kernel(header)), ram)
    assert plan.entry == 0x100000 + len(header)  # the EFI entry point is not used
    assert any("tag 7 (EFI boot services) ignored" in n for n in plan.notes)
    assert any("tag 9 (EFI amd64 entry address) ignored" in n for n in plan.notes)


def test_optional_tags_and_requests_are_noted(tmp_path: Path, ram: np.ndarray) -> None:
    """As GRUB 2.06: an optional request is not even read (13 is fine there), a required one
    may name any type GRUB knows, provided or not (measured: 14 and 21 boot)."""
    header = mb2_header(
        mb2_tag(42, b"xxxx", optional=True),
        mb2_tag(1, struct.pack("<4I", 13, 99, 9, 14), optional=True),
        mb2_tag(1, struct.pack("<7I", 0, 1, 2, 3, 4, 14, 21)),  # required, GRUB knows them all
        mb2_tag(1, struct.pack("<I", 11)),  # required: the EFI system table, GRUB has none
        mb2_tag(4, struct.pack("<I", 0)),  # no EGA text support claimed (and none required)
        mb2_tag(6),
    )
    plan = boot_kernel(write(tmp_path, "k.elf", simple_kernel(header)), ram)
    assert "optional header tag 42 (unknown) skipped" in plan.notes
    assert (
        "requested boot information tag 11 (EFI 32-bit system table): GRUB on a BIOS PC gives "
        "none either" in plan.notes
    )
    assert not any("tag 13" in n or "tag 99" in n for n in plan.notes)
    assert any("console flags 0x0" in n for n in plan.notes)
    assert 14 not in [t.type for t in mb2_info(ram, plan.info_addr)]  # no ACPI tables yet


def test_acpi_rsdp_hook_gives_grubs_acpi_tag(tmp_path: Path, ram: np.ndarray) -> None:
    """GRUB copies the RSDP it finds: revision 0 as tag 14 (20 bytes), a later one as tag 15
    (its length). The tag goes after the framebuffer tag, and GRUB reserves room for it."""
    rsdp1 = b"RSD PTR " + bytes([0x5B]) + b"BOCHS " + bytes([0]) + struct.pack("<I", 0x7FE1AD8)
    kernel = write(tmp_path, "k.elf", simple_kernel(mb2_header()))
    plan = boot_kernel(kernel, ram, acpi_rsdp=rsdp1)
    tags = mb2_info(ram, plan.info_addr)
    assert [t.type for t in tags][-3:] == [8, 14, 0]
    assert one(tags, 14) == rsdp1
    rsdp2 = rsdp1[:15] + bytes([2]) + rsdp1[16:20] + struct.pack("<IQB3x", 36, 0x7FE1B00, 0)
    plan = boot_kernel(kernel, ram, acpi_rsdp=rsdp2)
    tags = mb2_info(ram, plan.info_addr)
    assert one(tags, 15) == rsdp2 and 14 not in [t.type for t in tags]


def test_framebuffer_tag_gets_a_linear_framebuffer(tmp_path: Path, ram: np.ndarray) -> None:
    fb = mb2_tag(5, struct.pack("<III", 800, 600, 24))
    plan = boot_kernel(write(tmp_path, "k.elf", simple_kernel(mb2_header(fb))), ram)
    assert plan.framebuffer is not None
    assert (plan.framebuffer.width, plan.framebuffer.height, plan.framebuffer.bpp) == (800, 600, 24)
    body = one(mb2_info(ram, plan.info_addr), 8)
    addr, pitch, w, h, bpp, fbtype = struct.unpack_from("<QIIIBB", body)
    assert (addr, pitch, w, h, bpp, fbtype) == (0xFD000000, 2400, 800, 600, 24, 1)
    assert body[24:30] == bytes([16, 8, 8, 8, 0, 8])  # red, green, blue: position and size
    assert [t.type for t in mb2_info(ram, plan.info_addr)][-3:] == [7, 8, 0]  # VBE, then fb
    # no size preference: GRUB's "auto" ignores the depth and takes the largest mode up to the
    # monitor's preferred 1280x800
    odd = mb2_tag(5, struct.pack("<III", 0, 0, 15))
    plan = boot_kernel(write(tmp_path, "o.elf", simple_kernel(mb2_header(odd))), ram)
    assert plan.framebuffer is not None
    mode = (plan.framebuffer.width, plan.framebuffer.height, plan.framebuffer.bpp)
    assert mode == (1280, 800, 32)
    assert any('"auto"' in n for n in plan.notes)


def test_elf32_kernel_boots_with_multiboot2(tmp_path: Path, ram: np.ndarray) -> None:
    plan = boot_kernel(write(tmp_path, "k.elf", simple_kernel(mb2_header(), bits=32)), ram)
    assert (plan.elf_class, plan.elf_machine, plan.protocol) == (32, "EM_386", "multiboot2")


# ------------------------------------------------------------------------ Multiboot


def test_mb1_information_structure(tmp_path: Path, ram: np.ndarray) -> None:
    """Laid out as GRUB 2.06 does: at 0x10000, the command line right after the 120-byte
    structure (measured: cmdline 0x10078, loader name 0x10084)."""
    elf = Elf([Segment(0x100000, mb1_header() + b"\xf4" * 0x20, memsz=0x2000)], bits=32,
              entry=0x10000C, sections=[Section(".symtab", SHT_SYMTAB, bytes(range(48)),
                                                align=4, entsize=16)])  # fmt: skip
    mod = write(tmp_path, "mod", b"M" * 100)
    plan = boot_kernel(
        write(tmp_path, "k.elf", elf.build()),
        ram,
        cmdline="mb1 line",
        modules=[ModuleSpec(str(mod), "margs")],
        loader_name="Triplefault test",
    )
    assert (plan.protocol, plan.magic, plan.info_addr) == ("multiboot1", 0x2BADB002, 0x10000)
    info = mb1_info(ram, plan.info_addr)
    # memory, boot device, cmdline, mods, ELF sections, memory map, loader name, VBE,
    # framebuffer: GRUB 2.06's flags under QEMU (measured)
    assert info.flags == 0x1A6F
    assert u32(ram, plan.info_addr + 12) == 0xE0FFFFFF  # boot device: the CD-ROM
    assert (info.mem_lower, info.mem_upper) == (639, (RAM - 0x20000 - 0x100000) // 1024)
    assert (info.cmdline, cstr(ram, info.cmdline)) == (0x10078, "mb1 line")
    assert (info.boot_loader_name, cstr(ram, info.boot_loader_name)) == (
        0x10084,
        "Triplefault test",
    )
    assert info.mods_count == 1
    start, end, string, reserved = struct.unpack_from("<IIII", ram, info.mods_addr)
    assert start % 0x1000 == 0 and ram[start:end].tobytes() == b"M" * 100 and reserved == 0
    assert cstr(ram, string) == "margs"
    entries, p = [], info.mmap_addr
    while p < info.mmap_addr + info.mmap_length:
        size, base, length, mtype = struct.unpack_from("<IQQI", ram, p)
        assert size == 20
        entries.append((base, length, mtype))
        p += size + 4
    assert entries == GRUB_MAP_128M
    num, entsize, addr, shndx = info.syms
    assert (num, entsize, shndx) == (3, 40, 2)
    headers = section_headers(ram[addr : addr + num * entsize].tobytes(), num, entsize)
    sym_addr, sym_size = headers[1][2], headers[1][3]
    assert ram[sym_addr : sym_addr + sym_size].tobytes() == bytes(range(48))
    assert info.framebuffer == (0xB8000, 160, 80, 25, 16, 2)  # EGA text, as GRUB reports it
    assert info.cmdline < info.boot_loader_name < info.mods_addr < info.mmap_addr < addr


def test_mb1_without_modules_or_sections(tmp_path: Path, ram: np.ndarray) -> None:
    plan = boot_kernel(write(tmp_path, "k.elf", simple_kernel(mb1_header(), bits=32)), ram)
    info = mb1_info(ram, plan.info_addr)
    assert info.flags & 0x8 == 0 and (info.mods_count, info.mods_addr) == (0, 0)
    assert info.flags & 0x20  # the writer always emits a section table (.shstrtab)


def test_mb1_aout_kludge(tmp_path: Path, ram: np.ndarray) -> None:
    # the header at file offset 0x10, a flat file loaded at 0x300000, bss to 0x301000
    header = mb1_header(0x10003, (0x300010, 0x300000, 0, 0x301000, 0x300040))
    image = b"\x90" * 0x10 + header + b"\xf4" * 0x40
    plan = boot_kernel(write(tmp_path, "k.bin", image), ram)
    assert (plan.protocol, plan.entry, plan.elf_class) == ("multiboot1", 0x300040, None)
    assert ram[0x300000 : 0x300000 + len(image)].tobytes() == image
    assert not ram[0x300000 + len(image) : 0x301000].any()
    assert mb1_info(ram, plan.info_addr).flags & 0x20 == 0  # no ELF sections


def test_mb1_kludge_wins_over_the_elf_headers(tmp_path: Path, ram: np.ndarray) -> None:
    """With flag 16, GRUB loads per the header fields even when the file is an ELF."""
    kernel = bytearray(simple_kernel(mb1_header(0x10000, (0, 0, 0, 0, 0)), bits=32))
    header_at = 0x1000  # the segment's file offset
    fields = (0x500000 + header_at, 0x500000, 0x500000 + len(kernel), 0, 0x500000 + 0x1020)
    struct.pack_into("<5I", kernel, header_at + 12, *fields)
    plan = boot_kernel(write(tmp_path, "k.elf", bytes(kernel)), ram)
    assert plan.segments[0].paddr == 0x500000 and plan.elf_class is None
    assert ram[0x500000 : 0x500000 + len(kernel)].tobytes() == bytes(kernel)
    assert ram[0x100000] == 0xAA  # the PT_LOAD address was not used


def test_mb1_video_mode_request_is_noted(tmp_path: Path, ram: np.ndarray) -> None:
    video = struct.pack("<5I", 0, 0, 0, 0, 0) + struct.pack("<4I", 1, 80, 25, 0)  # EGA text
    plan = boot_kernel(write(tmp_path, "k.elf", simple_kernel(mb1_header(0x7) + video)), ram)
    assert "video mode request: EGA text, as asked" in plan.notes
    graphics = video[:20] + struct.pack("<4I", 0, 1024, 768, 32)
    plan = boot_kernel(write(tmp_path, "g.elf", simple_kernel(mb1_header(0x7) + graphics)), ram)
    assert plan.framebuffer is not None and plan.framebuffer.vbe_mode == 0x4144
    assert "linear framebuffer 1024x768x32 (VBE mode 0x144) at 0xfd000000" in plan.notes


# ------------------------------------------------------------ what GRUB 2.06 accepts (measured)
#
# Each layout below was booted under qemu-ref (GRUB 2.06, QEMU 7.2, 128 MiB) with a small
# position-independent reporter as the kernel; the addresses asserted are what GRUB gave it.

REPORTER = b"\xf4" * 235  # the size of the reporter's code: placements depend on it


def mb1_aout(load_addr: int, entry: int | None = None, **fields: int) -> bytes:
    """A flat Multiboot a.out-kludge image: the header at its first byte, then the code."""
    entry = load_addr + 32 if entry is None else entry
    header = mb1_header(
        0x10003,
        (
            fields.get("header_addr", load_addr),
            load_addr,
            fields.get("load_end", 0),
            fields.get("bss_end", 0),
            entry,
        ),
    )
    return header + REPORTER  # fmt: skip


def mb2_aout(load_addr: int, entry: int, *tags: bytes) -> bytes:
    address = mb2_tag(2, struct.pack("<IIII", load_addr, load_addr, 0, 0))
    return mb2_header(address, mb2_tag(3, struct.pack("<I", entry)), *tags) + REPORTER


def test_aout_kludge_at_address_0(tmp_path: Path, ram: np.ndarray) -> None:
    plan = boot_kernel(write(tmp_path, "mb1.bin", mb1_aout(0)), ram)
    assert (plan.entry, plan.info_addr, plan.gdt_base) == (0x20, 0x10000, 0x10B0)
    assert ram[0:32].tobytes() == mb1_aout(0)[:32]
    image = mb2_aout(0, 0x40)
    plan = boot_kernel(write(tmp_path, "mb2.bin", image), ram)
    assert (plan.entry, plan.info_addr, plan.gdt_base) == (0x40, 0x100000, 0x10B0)
    assert one(mb2_info(ram, plan.info_addr), 21) == bytes(4)  # load base 0


def test_trampoline_and_gdt_move_past_the_kernel(tmp_path: Path, ram: np.ndarray) -> None:
    """GRUB's trampoline takes the lowest 16-byte aligned free place from 0x1000 up: a kernel at
    0x1000-0x110A moves the GDT to 0x11C0 (measured)."""
    plan = boot_kernel(write(tmp_path, "k.bin", mb1_aout(0x1000)), ram)
    assert (plan.stub_addr, plan.gdt_base) == (0x1110, 0x11C0)
    assert ram[0x1110] == 0xEA  # the stub's far jump
    gdt = struct.unpack_from("<4Q", ram[0x11C0:0x11E0].tobytes())
    assert gdt == (0, 0, 0x00CF9A000000FFFF, 0x00CF93000000FFFF)
    assert ram[0x1000:0x1020].tobytes() == mb1_aout(0x1000)[:32]


def test_mb1_information_moves_past_the_kernel(tmp_path: Path, ram: np.ndarray) -> None:
    segs = [Segment(0x100000, mb1_header(0x3) + REPORTER), Segment(0x10000, b"S" * 0x200)]
    plan = boot_kernel(write(tmp_path, "k.elf", Elf(segs, bits=32, entry=0x10000C).build()), ram)
    assert plan.info_addr == 0x10200
    image = mb1_aout(0x10000) + bytes(0x100)  # 0x10000-0x1020A
    plan = boot_kernel(write(tmp_path, "k.bin", image), ram)
    assert plan.info_addr == 0x1020C


def test_segments_anywhere_below_1mib(tmp_path: Path, ram: np.ndarray) -> None:
    """GRUB copies a segment wherever it says below 1 MiB: page 8, the boot stack's page, the
    EBDA, the VGA window, the BIOS ROM. Bytes that reach no RAM are lost, as on QEMU."""
    pieces = [(0x8000, b"L"), (0x7F000, b"K"), (0x9FC00, b"E"), (0xA0000, b"V"), (0xB8000, b"T"),
              (0xF0000, b"R")]  # fmt: skip
    segs = [Segment(0x100000, mb2_header() + REPORTER)]
    segs += [Segment(addr, fill * 0x100) for addr, fill in pieces]
    plan = boot_kernel(write(tmp_path, "k.elf", Elf(segs, bits=32, entry=0x100018).build()), ram)
    for addr, fill in pieces:
        expected = b"\xaa" * 0x100 if addr in (0xA0000, 0xF0000) else fill * 0x100
        assert ram[addr : addr + 0x100].tobytes() == expected, hex(addr)
    assert sum("partly not RAM" in n for n in plan.notes) == 2
    assert (plan.info_addr, plan.gdt_base) == (0x100110, 0x10B0)


def test_what_grub_takes_as_it_is(tmp_path: Path, ram: np.ndarray) -> None:
    """Measured: GRUB boots all of these (the kernel then runs, or runs off)."""
    # an entry address tag outside every segment: used as it is
    header = mb2_header(mb2_tag(3, struct.pack("<I", 0x300000)))
    assert boot_kernel(write(tmp_path, "a", simple_kernel(header)), ram).entry == 0x300000
    # an a.out entry point outside the image
    plan = boot_kernel(write(tmp_path, "b", mb1_aout(0x200000, entry=0x300000)), ram)
    assert plan.entry == 0x300000 and any("outside the loaded image" in n for n in plan.notes)
    # an a.out asking for more bytes than the file has: the rest is zero
    plan = boot_kernel(write(tmp_path, "c", mb1_aout(0x200000, load_end=0x204000)), ram)
    assert plan.segments[0].memsz == 0x4000 and not ram[0x200000 + 267 : 0x204000].any()
    # load_addr above header_addr: the image starts that much further into the file
    image = mb1_header(0x10003, (0x200000, 0x200010, 0, 0, 0x200010)) + REPORTER
    plan = boot_kernel(write(tmp_path, "d", image), ram)
    assert ram[0x200010 : 0x200010 + len(image) - 0x10].tobytes() == image[0x10:]
    # tags past header_length, and header_length past the end of the file: GRUB ignores it
    for name, length in (("e", 16 + 8), ("f", 1 << 20)):
        h = bytearray(mb2_header(mb2_tag(6)))
        struct.pack_into("<II", h, 8, length, -(0xE85250D6 + length) & 0xFFFFFFFF)
        assert boot_kernel(write(tmp_path, name, simple_kernel(bytes(h))), ram).entry
    # an entry point inside a PT_NOTE program header, not in a PT_LOAD
    segs = [Segment(0x100000, mb2_header() + REPORTER), Segment(0x300000, bytes(32), type=4)]
    kernel = Elf(segs, bits=32, entry=0x300008).build()
    assert boot_kernel(write(tmp_path, "g", kernel), ram).entry == 0x300008
    # a segment in the 16 bytes GRUB's heap loses after the one before it
    segs = [Segment(0x100000, mb2_header() + REPORTER), Segment(0x102000, b"A" * 0x1004),
            Segment(0x103004, b"B" * 0x100)]  # fmt: skip
    plan = boot_kernel(write(tmp_path, "h", Elf(segs, bits=32, entry=0x100018).build()), ram)
    assert ram[0x103004:0x103104].tobytes() == b"B" * 0x100 and plan.info_addr == 0x100110


def test_section_tables_as_grub_reads_them(tmp_path: Path, ram: np.ndarray) -> None:
    # e_shnum 0: no sections at all (GRUB does not follow extended numbering)
    elf = bytearray(simple_kernel(mb2_header(), bits=32))
    struct.pack_into("<H", elf, 48, 0)
    plan = boot_kernel(write(tmp_path, "a", bytes(elf)), ram)
    assert one(mb2_info(ram, plan.info_addr), 9) == bytes(12) and plan.sections == ()
    mb1 = bytearray(simple_kernel(mb1_header(), bits=32))
    struct.pack_into("<H", mb1, 48, 0)
    plan = boot_kernel(write(tmp_path, "b", bytes(mb1)), ram)
    assert not mb1_info(ram, plan.info_addr).flags & 0x20
    # a non-allocated SHT_NOBITS section with sh_addr 0: GRUB loads the file bytes it names
    sections = [Section(".nb", SHT_NOBITS, size=0x40, in_file=False)]
    elf = Elf([Segment(0x100000, mb2_header() + REPORTER)], bits=32, entry=0x100018,
              sections=sections).build()  # fmt: skip
    plan = boot_kernel(write(tmp_path, "c", elf), ram)
    (nb,) = [s for s in plan.sections if s.name == ".nb"]
    assert ram[nb.addr : nb.addr + 0x40].tobytes() == elf[:0x40]  # sh_offset 0: the ELF header


def test_relocatable_images_go_where_grubs_relocator_puts_them(tmp_path, ram) -> None:
    """Measured: the lowest place in the range (not the link address), or the highest for
    preference 2; an a.out image with a relocatable tag moves too."""

    def rel(lo: int, hi: int, align: int, pref: int) -> bytes:
        return mb2_tag(10, struct.pack("<IIII", lo, hi, align, pref))

    kernel = simple_kernel(mb2_header(rel(0x100000, 0xFFFFFFFF, 0x1000, 0)), paddr=0x200000)
    plan = boot_kernel(write(tmp_path, "a", kernel), ram)
    assert plan.load_base == 0x100000 and plan.entry == 0x100000 + 48
    header = mb2_header(rel(0x100000, 0x1000000, 0x1000, 2))
    plan = boot_kernel(write(tmp_path, "b", simple_kernel(header, code=REPORTER)), ram)
    assert plan.load_base == 0xFFF000  # ends at 0xFFF11B, below max_addr 0x1000000
    image = mb2_aout(0x200000, 0x200058, rel(0x400000, 0xFFFFFFFF, 0x1000, 1))
    plan = boot_kernel(write(tmp_path, "c", image), ram)
    assert (plan.load_base, plan.entry) == (0x400000, 0x400058)
    assert ram[0x400000 : 0x400000 + len(image)].tobytes() == image


def test_grub_reserves_room_for_every_tag(tmp_path: Path, ram: np.ndarray) -> None:
    """The boot information goes where GRUB's upper bound of its size fits, not its size:
    1352 bytes of hole are too few for this kernel (1354 reserved), 1360 are enough. Multiboot:
    1952 bytes reserved from 0x10000, moved past a segment at 0x107AC but not one at 0x107B0."""
    addrs = {}
    for fill in (374, 382):
        segs = [Segment(0x100000, mb2_header() + REPORTER), Segment(0x100800, bytes(16))]
        elf = Elf(segs, bits=32, entry=0x100018, sections=[Section(".fill", data=b"f" * fill)])
        plan = boot_kernel(write(tmp_path, f"mb2-{fill}", elf.build()), ram)
        addrs[fill] = (plan.info_addr, plan.info_reserved)
    assert addrs == {374: (0x100290, 1354), 382: (0x100810, 1354)}
    for at, info in ((1948, 0x107AC), (1952, 0x10000)):
        segs = [Segment(0x100000, mb1_header(0x3) + REPORTER), Segment(0x10000 + at, bytes(16))]
        plan = boot_kernel(write(tmp_path, f"mb1-{at}", Elf(segs, bits=32, entry=0x10000C)
                                .build()), ram)  # fmt: skip
        assert (plan.info_addr, plan.info_reserved) == (info, 1952)


def test_sections_land_where_grubs_heap_cells_leave_room(tmp_path: Path, ram) -> None:
    """images/hello's layout under GRUB (three segments with holes, twelve sections): a chunk
    cut from the start of GRUB's heap region lets the next start at the very next byte, one
    cut from the middle of a free block only at the next 16-byte boundary."""
    names = [(".debug_line", 0x1602, 1), (".debug_line_str", 0xE0, 1), (".debug_info", 0x2F54, 1),
             (".debug_abbrev", 0xC40, 1), (".debug_aranges", 0x150, 16), (".debug_str", 0x50D, 1),
             (".debug_loclists", 0x128C, 1), (".debug_rnglists", 0x2EB, 1),
             (".debug_frame", 0x448, 8), (".symtab", 0x5A0, 8), (".strtab", 0x276, 1)]  # fmt: skip
    sections = [Section(n, data=bytes([i + 1]) * size, align=a) for i, (n, size, a) in
                enumerate(names)]  # fmt: skip
    sections.append(Section(".empty-but-named-x"))  # makes .shstrtab hello's 171 bytes
    segs = [
        Segment(0x100000, mb2_header() + b"\xf4" * (0x1812 - 24), flags=5),
        Segment(0x102000, b"r" * 0x5CC, flags=4),
        Segment(0x103000, b"", memsz=0x840C),
    ]
    elf = Elf(segs, bits=64, entry=0x100018, sections=sections).build()
    plan = boot_kernel(write(tmp_path, "k.elf", elf), ram, cmdline="console=com1 loglevel=7")
    got = {s.name: s.addr for s in plan.sections}
    assert got == {
        ".debug_line": 0x10B410, ".debug_line_str": 0x101812, ".debug_info": 0x10CA20,
        ".debug_abbrev": 0x10F980, ".debug_aranges": 0x101900, ".debug_str": 0x101A50,
        ".debug_loclists": 0x1105C0, ".debug_rnglists": 0x1025D0, ".debug_frame": 0x1028C0,
        ".symtab": 0x111850, ".strtab": 0x102D10, ".shstrtab": 0x111DF0,
    }  # fmt: skip
    assert plan.info_addr == 0x111EA0  # GRUB's EBX for hello


def test_modules_as_grub_loads_them(tmp_path: Path, ram: np.ndarray) -> None:
    """Measured: a gzip module is loaded unpacked, an xz one as it is, an empty one gets
    start = end = 0."""
    packed = write(tmp_path, "m.gz", gzip.compress(b"compressed module payload\n" * 10, mtime=0))
    xz = write(tmp_path, "m.xz", lzma.compress(b"xz module payload\n" * 4))
    empty = write(tmp_path, "empty", b"")
    kernel = write(tmp_path, "k.elf", simple_kernel(mb2_header()))
    plan = boot_kernel(kernel, ram, modules=[ModuleSpec(str(packed), "gz"),
                                            ModuleSpec(str(xz)), ModuleSpec(str(empty), "e")])  # fmt: skip
    gz, raw, none = plan.modules
    assert gz.end - gz.start == 260
    assert ram[gz.start : gz.end].tobytes() == b"compressed module payload\n" * 10
    assert ram[raw.start : raw.end].tobytes() == xz.read_bytes()
    assert (none.start, none.end, none.args) == (0, 0, "e")


# ------------------------------------------------------------------------ choices


def test_protocol_choice(tmp_path: Path, ram: np.ndarray) -> None:
    both = write(tmp_path, "both.elf", simple_kernel(mb2_header() + mb1_header()))
    assert boot_kernel(both, ram).protocol == "multiboot2"
    assert boot_kernel(both, ram, protocol="multiboot1").protocol == "multiboot1"
    assert boot_kernel(both, ram, protocol="multiboot2").protocol == "multiboot2"
    only1 = write(tmp_path, "mb1.elf", simple_kernel(mb1_header()))
    assert boot_kernel(only1, ram).protocol == "multiboot1"
    with pytest.raises(LoaderError, match="no Multiboot2 header in the first 32 KiB"):
        boot_kernel(only1, ram, protocol="multiboot2")


def test_module_spec_parse() -> None:
    assert ModuleSpec.parse("initrd.img") == ModuleSpec("initrd.img", "")
    assert ModuleSpec.parse("mod.bin,a b,c") == ModuleSpec("mod.bin", "a b,c")
    with pytest.raises(LoaderError, match="no file name"):
        ModuleSpec.parse(",args")


@pytest.mark.parametrize("mib", [2, 128, 3072])
def test_memory_map_for_any_ram_size(mib: int) -> None:
    size = mib << 20
    regions = memory_map(size)
    assert [(r.base, r.end, r.type) for r in regions] == [
        (0, 0x9FC00, 1),
        (0x9FC00, 0xA0000, 2),
        (0xF0000, 0x100000, 2),
        (0x100000, size - 0x20000, 1),
        (size - 0x20000, size, 2),
        (0xFFFC0000, 1 << 32, 2),
        (0xFD00000000, 1 << 40, 2),
    ]
    assert basic_meminfo(size) == (639, (size - 0x20000 - 0x100000) >> 10)
    assert all(r.purpose for r in regions) and regions[1].type_name == "reserved"


def test_ram_must_be_whole_mib_in_range() -> None:
    with pytest.raises(ValueError, match="multiple of 1 MiB"):
        memory_map(3 << 19)
    with pytest.raises(ValueError, match="3 GiB"):
        memory_map(4 << 30)


def test_real_kernel_sections_match_pyelftools(image, ram: np.ndarray) -> None:
    """A gcc/ld kernel: every unallocated section is in RAM byte for byte, where tag 9 says."""
    from elftools.elf.elffile import ELFFile

    path = image("hello")
    plan = boot_kernel(path, ram)
    body = one(mb2_info(ram, plan.info_addr), 9)
    num, entsize, shndx = struct.unpack_from("<III", body)
    headers = section_headers(body[12:], num, entsize)
    with open(path, "rb") as f:
        elf = ELFFile(f)
        assert (num, entsize, shndx) == (elf.num_sections(), elf["e_shentsize"], elf["e_shstrndx"])
        for i, sec in enumerate(elf.iter_sections()):
            addr = headers[i][2]
            if sec["sh_addr"] or not sec["sh_size"]:
                assert addr == sec["sh_addr"]
                continue
            assert ram[addr : addr + sec["sh_size"]].tobytes() == sec.data(), sec.name
    assert all(s.addr >= 0x100000 for s in plan.sections)
