"""The Multiboot loaders, checked against the boot information read back from guest RAM."""

from __future__ import annotations

import struct
from pathlib import Path

import capstone
import numpy as np
import pytest

from emu.errors import LoaderError
from firmware import ModuleSpec, boot_kernel, memory_map
from firmware.loader import GDT_BASE, STUB_ADDR

RAM = 128 << 20
MB2 = 0xE85250D6
MB1 = 0x1BADB002


# ------------------------------------------------------------------ tiny kernels


def mb2_header(tags: bytes = b"") -> bytes:
    end = struct.pack("<HHI", 0, 0, 8)
    length = 16 + len(tags) + len(end)
    return struct.pack("<IIII", MB2, 0, length, (-(MB2 + length)) & 0xFFFFFFFF) + tags + end


def mb2_tag(ttype: int, body: bytes, optional: bool = False) -> bytes:
    raw = struct.pack("<HHI", ttype, int(optional), 8 + len(body)) + body
    return raw + b"\0" * ((-len(raw)) % 8)


def mb1_header(flags: int = 0x3, aout: tuple[int, ...] | None = None) -> bytes:
    h = struct.pack("<III", MB1, flags, (-(MB1 + flags)) & 0xFFFFFFFF)
    if aout:
        h += struct.pack("<IIIII", *aout)
    return h


def elf64(
    payload: bytes, *, paddr=0x100000, vaddr=None, entry=None, memsz=None, machine=62
) -> bytes:
    """An ELF64 with one PT_LOAD holding ``payload`` at file offset 0x1000."""
    vaddr = paddr if vaddr is None else vaddr
    memsz = len(payload) if memsz is None else memsz
    entry = vaddr if entry is None else entry
    eh = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    eh += struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, entry, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 1, 7, 0x1000, vaddr, paddr, len(payload), memsz, 0x1000)
    body = eh + ph
    return body + b"\0" * (0x1000 - len(body)) + payload


def elf32(payload: bytes, *, paddr=0x100000, memsz=None) -> bytes:
    memsz = len(payload) if memsz is None else memsz
    eh = b"\x7fELF" + bytes([1, 1, 1]) + b"\0" * 9
    eh += struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, paddr, 52, 0, 0, 52, 32, 1, 0, 0, 0)
    ph = struct.pack("<IIIIIIII", 1, 0x1000, paddr, paddr, len(payload), memsz, 7, 0x1000)
    body = eh + ph
    return body + b"\0" * (0x1000 - len(body)) + payload


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.fixture
def ram() -> np.ndarray:
    # dirty RAM: the loader must zero bss itself
    return np.full(RAM, 0xAA, np.uint8)


# --------------------------------------------------------- boot information parser


def u32(ram: np.ndarray, a: int) -> int:
    return int(struct.unpack_from("<I", ram, a)[0])


def cstr(ram: np.ndarray, a: int) -> str:
    end = a
    while ram[end]:
        end += 1
    return ram[a:end].tobytes().decode()


def mb2_tags(ram: np.ndarray, info: int) -> list[tuple[int, int, bytes]]:
    total = u32(ram, info)
    assert u32(ram, info + 4) == 0
    tags, p = [], info + 8
    while True:
        assert p % 8 == 0, "every tag is 8-byte aligned"
        ttype, size = u32(ram, p), u32(ram, p + 4)
        tags.append((ttype, p, ram[p + 8 : p + size].tobytes()))
        if ttype == 0:
            assert size == 8
            break
        p += (size + 7) & ~7
    assert p + 8 - info == total
    return tags


# ------------------------------------------------------------------------ tests


def test_mb2_boot_information_round_trip(tmp_path: Path, ram: np.ndarray) -> None:
    payload = mb2_header() + b"\x90" * 64
    kernel = write(tmp_path, "k.elf", elf64(payload, memsz=0x3000))
    mod1 = write(tmp_path, "initrd", b"MODULE-ONE" * 10)
    mod2 = write(tmp_path, "second", b"2" * 5000)
    plan = boot_kernel(
        kernel,
        ram,
        cmdline="console=com1 root=/dev/x",
        modules=[ModuleSpec.parse(f"{mod1},first args"), ModuleSpec(str(mod2))],
        loader_name="Triplefault test",
    )
    assert plan.protocol == "multiboot2" and plan.magic == 0x36D76289
    assert plan.entry == 0x100000 and plan.elf_class == 64 and plan.elf_machine == "EM_X86_64"
    # segment loaded, bss zeroed over dirty RAM
    assert ram[0x100000 : 0x100000 + len(payload)].tobytes() == payload
    assert not ram[0x100000 + len(payload) : 0x103000].any()
    tags = {t: (p, body) for t, p, body in mb2_tags(ram, plan.info_addr)}
    assert tags[1][1].rstrip(b"\0") == b"console=com1 root=/dev/x"
    assert tags[2][1].rstrip(b"\0") == b"Triplefault test"
    mods = [body for t, _, body in mb2_tags(ram, plan.info_addr) if t == 3]
    assert len(mods) == 2
    starts = [struct.unpack_from("<II", b) for b in mods]
    assert all(s % 0x1000 == 0 for s, _ in starts)
    assert starts[0][0] >= 0x103000  # after the image
    assert ram[starts[0][0] : starts[0][1]].tobytes() == b"MODULE-ONE" * 10
    assert ram[starts[1][0] : starts[1][1]].tobytes() == b"2" * 5000
    assert mods[0][8:].rstrip(b"\0") == b"first args" and mods[1][8:].rstrip(b"\0") == b""
    assert plan.info_addr > starts[1][1] and plan.info_addr % 8 == 0
    lower, upper = struct.unpack_from("<II", tags[4][1])
    assert (lower, upper) == (639, (RAM - 0x20000 - 0x100000) >> 10)
    mm = tags[6][1]
    assert struct.unpack_from("<II", mm) == (24, 0)
    entries = [struct.unpack_from("<QQII", mm, 8 + 24 * i) for i in range((len(mm) - 8) // 24)]
    assert [(b, n, t) for b, n, t, _ in entries] == [
        (r.base, r.length, r.type) for r in memory_map(RAM)
    ]
    assert entries[3][:2] == (0x100000, RAM - 0x20000 - 0x100000)
    addr, pitch, width, height, bpp, fbtype = struct.unpack_from("<QIIIBB", tags[8][1])
    assert (addr, pitch, width, height, bpp, fbtype) == (0xB8000, 160, 80, 25, 16, 2)
    assert struct.unpack_from("<I", tags[21][1])[0] == 0x100000


def test_grub_gdt_and_firmware_stub(tmp_path: Path, ram: np.ndarray) -> None:
    plan = boot_kernel(write(tmp_path, "k.elf", elf64(mb2_header() + b"\xf4")), ram)
    gdt = struct.unpack_from("<4Q", ram, GDT_BASE)
    assert gdt == (0, 0, 0x00CF9A000000FFFF, 0x00CF93000000FFFF)
    assert (plan.gdt_base, plan.gdt_limit, plan.stack_pointer) == (0x10B0, 0x20, 0x7FF00)
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    code = ram[STUB_ADDR : STUB_ADDR + 64].tobytes()
    text = [f"{i.mnemonic} {i.op_str}" for i in md.disasm(code, STUB_ADDR)][:11]
    assert text == [
        "ljmp 0x10:0x1007",
        "mov eax, 0x18",
        "mov ds, eax",
        "mov es, eax",
        "mov fs, eax",
        "mov gs, eax",
        "mov ss, eax",
        "mov esp, 0x7ff00",
        "mov eax, 0x36d76289",
        f"mov ebx, {hex(plan.info_addr)}",
        "ljmp 0x10:0x100000",
    ]


def test_higher_half_entry_is_translated_to_physical(tmp_path: Path, ram: np.ndarray) -> None:
    vaddr = 0xFFFFFFFF80100000
    plan = boot_kernel(
        write(
            tmp_path, "k.elf", elf64(mb2_header() + b"\x90" * 16, vaddr=vaddr, entry=vaddr + 0x18)
        ),
        ram,
    )
    assert plan.entry == 0x100018
    assert plan.segments[0].vaddr == vaddr and plan.segments[0].paddr == 0x100000


def test_entry_address_tag_and_optional_unknown_tag(tmp_path: Path, ram: np.ndarray) -> None:
    tags = mb2_tag(3, struct.pack("<I", 0x100020)) + mb2_tag(42, b"xxxx", optional=True)
    plan = boot_kernel(write(tmp_path, "k.elf", elf64(mb2_header(tags) + b"\x90" * 64)), ram)
    assert plan.entry == 0x100020
    assert any("42" in n for n in plan.notes)


def test_required_unknown_tag_and_unprovidable_request_are_errors(tmp_path: Path, ram) -> None:
    with pytest.raises(LoaderError, match="required Multiboot2 header tag 42"):
        boot_kernel(write(tmp_path, "a.elf", elf64(mb2_header(mb2_tag(42, b"")) + b"\x90")), ram)
    req = mb2_tag(1, struct.pack("<I", 14))  # ACPI old RSDP, required
    with pytest.raises(LoaderError, match="ACPI"):
        boot_kernel(write(tmp_path, "b.elf", elf64(mb2_header(req) + b"\x90")), ram)
    opt = mb2_tag(1, struct.pack("<I", 14), optional=True)
    plan = boot_kernel(write(tmp_path, "c.elf", elf64(mb2_header(opt) + b"\x90")), ram)
    assert any("ACPI" in n for n in plan.notes)


def test_tag_overrunning_the_header(tmp_path: Path, ram: np.ndarray) -> None:
    hdr = bytearray(mb2_header(mb2_tag(4, struct.pack("<I", 0))))
    struct.pack_into("<I", hdr, 16 + 4, 200)  # console flags tag claims 200 bytes
    with pytest.raises(LoaderError, match="overruns the header"):
        boot_kernel(write(tmp_path, "k.elf", elf64(bytes(hdr) + b"\x90")), ram)


def test_mb2_address_tag_loads_a_flat_binary(tmp_path: Path, ram: np.ndarray) -> None:
    # header at file offset 0 = load address 0x200000; image 0x100 bytes, bss to 0x200400
    addr_tag = mb2_tag(2, struct.pack("<IIII", 0x200000, 0x200000, 0x200100, 0x200400))
    entry_tag = mb2_tag(3, struct.pack("<I", 0x200080))
    hdr = mb2_header(addr_tag + entry_tag)
    image = hdr + b"\xcc" * (0x100 - len(hdr))
    plan = boot_kernel(write(tmp_path, "flat.bin", image + b"TRAILING"), ram)
    assert plan.elf_class is None and plan.entry == 0x200080
    assert ram[0x200000:0x200100].tobytes() == image
    assert not ram[0x200100:0x200400].any()


def test_mb1_info_structure(tmp_path: Path, ram: np.ndarray) -> None:
    mod = write(tmp_path, "mod", b"M" * 100)
    plan = boot_kernel(
        write(tmp_path, "k.elf", elf32(mb1_header() + b"\x90" * 32, memsz=0x2000)),
        ram,
        cmdline="mb1 cmdline",
        modules=[ModuleSpec(str(mod), "modargs")],
        loader_name="Triplefault test",
    )
    assert plan.protocol == "multiboot1" and plan.magic == 0x2BADB002 and plan.elf_class == 32
    info = plan.info_addr
    flags = u32(ram, info)
    assert flags & 0x1 and flags & 0x4 and flags & 0x8 and flags & 0x40 and flags & 0x200
    assert not flags & 0x2  # no boot device: we boot from no disk
    assert (u32(ram, info + 4), u32(ram, info + 8)) == (639, (RAM - 0x20000 - 0x100000) >> 10)
    assert cstr(ram, u32(ram, info + 16)) == "mb1 cmdline"
    assert cstr(ram, u32(ram, info + 64)) == "Triplefault test"
    assert u32(ram, info + 20) == 1
    start, end, string, _ = struct.unpack_from("<IIII", ram, u32(ram, info + 24))
    assert start % 0x1000 == 0 and ram[start:end].tobytes() == b"M" * 100
    assert cstr(ram, string) == "modargs"
    length, addr = u32(ram, info + 44), u32(ram, info + 48)
    entries = []
    p = addr
    while p < addr + length:
        size, base, ln, t = struct.unpack_from("<IQQI", ram, p)
        entries.append((base, ln, t))
        p += size + 4
    assert entries == [(r.base, r.length, r.type) for r in memory_map(RAM)]


def test_mb1_aout_kludge(tmp_path: Path, ram: np.ndarray) -> None:
    # header at offset 0x10 of a flat file loaded at 0x300000
    pre = b"\x90" * 0x10
    hdr = mb1_header(0x10003, (0x300010, 0x300000, 0, 0x301000, 0x300040))
    image = pre + hdr + b"\xf4" * 0x40
    plan = boot_kernel(write(tmp_path, "k.bin", image), ram)
    assert plan.protocol == "multiboot1" and plan.entry == 0x300040
    assert ram[0x300000 : 0x300000 + len(image)].tobytes() == image
    assert not ram[0x300000 + len(image) : 0x301000].any()


def test_mb2_preferred_and_protocol_override(tmp_path: Path, ram: np.ndarray) -> None:
    both = write(tmp_path, "both.elf", elf64(mb2_header() + mb1_header() + b"\x90" * 16))
    assert boot_kernel(both, ram).protocol == "multiboot2"
    assert boot_kernel(both, ram, protocol="multiboot1").protocol == "multiboot1"


def test_elf_sections_of_a_real_kernel(image, ram: np.ndarray) -> None:
    from elftools.elf.elffile import ELFFile

    path = image("hello")
    plan = boot_kernel(path, ram)
    tags = {t: body for t, _, body in mb2_tags(ram, plan.info_addr)}
    num, entsize, shndx = struct.unpack_from("<III", tags[9])
    with open(path, "rb") as f:
        elf = ELFFile(f)
        assert (num, entsize, shndx) == (elf.num_sections(), elf["e_shentsize"], elf["e_shstrndx"])
        for i, sec in enumerate(elf.iter_sections()):
            if sec.name not in (".symtab", ".strtab"):
                continue
            sh_addr = struct.unpack_from("<Q", tags[9], 12 + i * entsize + 16)[0]
            assert sh_addr > plan.segments[-1].paddr  # loaded after the image
            assert ram[sh_addr : sh_addr + sec["sh_size"]].tobytes() == sec.data()


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: elf64(mb2_header(), memsz=0x10, machine=183), "machine 183"),
        (lambda: elf64(mb2_header() + b"\x90", paddr=0x1000), "boot firmware area"),
        (lambda: elf64(mb2_header() + b"\x90", paddr=RAM - 8, memsz=64), "outside guest RAM"),
        (lambda: elf64(mb2_header() + b"\x90", memsz=1 << 60), "outside guest RAM"),
        (lambda: elf64(mb2_header() + b"\x90", entry=0x900000), "entry point 0x900000"),
        (lambda: elf64(mb2_header() + b"\x90" * 64)[:0x1030], "truncated ELF"),
        (lambda: b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 20, "truncated ELF header"),
        (lambda: b"\0" * 100, "no Multiboot2 header"),
    ],
)
def test_loader_errors(tmp_path: Path, ram: np.ndarray, build, match: str) -> None:
    with pytest.raises(LoaderError, match=match):
        boot_kernel(write(tmp_path, "bad.elf", build()), ram)


def test_overlapping_segments(tmp_path: Path, ram: np.ndarray) -> None:
    data = bytearray(elf64(mb2_header() + b"\x90" * 0x100))
    struct.pack_into("<H", data, 56, 2)  # two program headers ...
    data[64 + 56 : 64 + 112] = struct.pack("<IIQQQQQQ", 1, 7, 0x1000, 0x100080, 0x100080, 16, 16, 0)
    with pytest.raises(LoaderError, match="overlap"):
        boot_kernel(write(tmp_path, "k.elf", bytes(data)), ram)


def test_missing_module_and_bad_module_spec(tmp_path: Path, ram: np.ndarray) -> None:
    k = write(tmp_path, "k.elf", elf64(mb2_header() + b"\x90"))
    with pytest.raises(LoaderError, match="no-such-module: no such file"):
        boot_kernel(k, ram, modules=[ModuleSpec(str(tmp_path / "no-such-module"))])
    with pytest.raises(LoaderError, match="no file name"):
        ModuleSpec.parse(",args")


def test_framebuffer_tag_gets_a_linear_framebuffer(tmp_path: Path, ram: np.ndarray) -> None:
    fb = mb2_tag(5, struct.pack("<III", 800, 600, 24))
    plan = boot_kernel(write(tmp_path, "k.elf", elf64(mb2_header(fb) + b"\x90")), ram)
    assert plan.framebuffer is not None
    assert (plan.framebuffer.width, plan.framebuffer.height, plan.framebuffer.bpp) == (800, 600, 24)
    tags = {t: body for t, _, body in mb2_tags(ram, plan.info_addr)}
    addr, pitch, w, h, bpp, fbtype = struct.unpack_from("<QIIIBB", tags[8])
    assert (addr, pitch, w, h, bpp, fbtype) == (0xFD000000, 2400, 800, 600, 24, 1)
    assert tags[8][24:30] == bytes([16, 8, 8, 8, 0, 8])  # red, green, blue positions and sizes
    odd = mb2_tag(5, struct.pack("<III", 0, 0, 15))  # no size preference, a depth we lack
    plan = boot_kernel(write(tmp_path, "o.elf", elf64(mb2_header(odd) + b"\x90")), ram)
    assert (plan.framebuffer.width, plan.framebuffer.height, plan.framebuffer.bpp) == (
        1024,
        768,
        32,
    )
    assert any("depth 15" in n for n in plan.notes)
