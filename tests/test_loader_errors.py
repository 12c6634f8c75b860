"""Every input the loader cannot boot is one LoaderError line that names the file and the
cause; never a Python traceback, never an allocation sized by the file."""

from __future__ import annotations

import struct
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_firmware import (
    SHT_PROGBITS,
    Elf,
    Section,
    Segment,
    mb1_header,
    mb2_header,
    mb2_tag,
    simple_kernel,
)

from emu.errors import LoaderError
from firmware import ModuleSpec, boot_kernel

RAM = 16 << 20
SHT_RELA = 4

PHOFF64 = 64  # where the writer puts the first ELF64 program header
PH_FILESZ, PH_MEMSZ = PHOFF64 + 32, PHOFF64 + 40  # its p_filesz and p_memsz fields
SEGMENT_OFFSET = 0x1000  # file offset of the first segment's bytes


@pytest.fixture(scope="module")
def ram() -> np.ndarray:
    return np.zeros(RAM, np.uint8)


def good() -> bytearray:
    return bytearray(simple_kernel(mb2_header()))


def patched(offset: int, fmt: str, *values: int) -> Callable[[], bytes]:
    def build() -> bytes:
        data = good()
        struct.pack_into(fmt, data, offset, *values)
        return bytes(data)

    return build


def mb2_patched(header: bytes, offset: int, fmt: str, *values: int) -> Callable[[], bytes]:
    """A kernel whose Multiboot2 header is ``header`` with bytes changed after the checksum."""

    def build() -> bytes:
        data = bytearray(simple_kernel(header))
        struct.pack_into(fmt, data, SEGMENT_OFFSET + offset, *values)
        return bytes(data)

    return build


def two_segments(second: Segment) -> Callable[[], bytes]:
    return lambda: Elf([Segment(0x100000, mb2_header() + b"\xf4" * 0x100), second]).build()


def with_header(
    header: bytes, pad_to: int = 0, *, code: bytes = b"\xf4" * 16
) -> Callable[[], bytes]:
    return lambda: simple_kernel(bytes(pad_to) + header, code=code, entry=0x100000)


def flat(image: bytes) -> Callable[[], bytes]:
    return lambda: image


def _phdrs_far() -> bytes:
    """A valid ELF whose program headers sit past 32 KiB: GRUB reads no further."""
    data = good() + bytes(0x8000)
    phdr = bytes(data[PHOFF64 : PHOFF64 + 56])
    at = len(data)
    data += phdr
    struct.pack_into("<Q", data, 32, at)
    return bytes(data)


def _section_beyond_eof() -> bytes:
    elf = Elf([Segment(0x100000, mb2_header() + b"\xf4")], entry=0x100018,
              sections=[Section(".debug", SHT_PROGBITS, b"d" * 64)])  # fmt: skip
    data = bytearray(elf.build())
    shoff = struct.unpack_from("<Q", data, 40)[0]
    struct.pack_into("<Q", data, shoff + 64 + 32, 1 << 20)  # section 1's sh_size: 1 MiB
    return bytes(data)


def _segment_beyond_eof() -> bytes:
    """No section table (so only the segment is short), cut inside the segment's bytes."""
    data = good()
    struct.pack_into("<Q", data, 40, 0)  # e_shoff
    struct.pack_into("<HH", data, 60, 0, 0)  # e_shnum, e_shstrndx
    return bytes(data[: SEGMENT_OFFSET + 30])


ADDR_NO_ENTRY = mb2_header(mb2_tag(2, struct.pack("<IIII", 0x200000, 0x200000, 0, 0)))


def aout_mb2(header_addr: int, load_addr: int, load_end: int, bss_end: int, entry: int) -> bytes:
    return mb2_header(
        mb2_tag(2, struct.pack("<IIII", header_addr, load_addr, load_end, bss_end)),
        mb2_tag(3, struct.pack("<I", entry)),
    )


CASES: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty file": (lambda: b"", "the file is empty"),
    "not ELF, no address tag": (
        flat(mb2_header() + b"\0" * 64),
        "not an ELF file, and its Multiboot2 header has no address tag",
    ),
    "neither ELF nor Multiboot": (flat(b"MZ" + bytes(200)), r"no Multiboot2 header .* not an ELF"),
    "MB1 header, not ELF, no kludge": (flat(mb1_header() + bytes(64)), "no a.out kludge"),
    "truncated ELF header": (lambda: bytes(good()[:40]), "truncated ELF header"),
    "shorter than 32 bytes": (
        lambda: b"\x7fELF\x02",
        "the file has 5 bytes, GRUB needs at least 32",
    ),
    "program headers beyond EOF": (patched(32, "<Q", 0x100000), "program headers end at byte"),
    "segment data beyond EOF": (
        _segment_beyond_eof,
        r"truncated ELF: PT_LOAD segment 0 .* needs file bytes up to 4136, the file has 4126",
    ),
    "section headers beyond EOF": (patched(40, "<Q", 0x7FFFFF), "section headers end at byte"),
    "program headers beyond 32 KiB": (
        _phdrs_far,
        "beyond the first 32 KiB",
    ),
    "AArch64 ELF": (patched(18, "<H", 183), r"machine 183 \(AArch64\), not x86"),
    "ELF64 saying EM_386": (patched(18, "<H", 3), "an ELF64 file must be EM_X86_64"),
    "big-endian ELF": (patched(5, "<B", 2), "big-endian"),
    "ELF class 3": (patched(4, "<B", 3), "unknown ELF class 3"),
    "ELF version 0": (patched(20, "<I", 0), "ELF version 0"),
    "relocatable object": (patched(16, "<H", 1), "is a relocatable object, not an executable"),
    "no program headers": (patched(56, "<H", 0), "no program headers"),
    "small program header size": (patched(54, "<H", 20), "program header size 20"),
    "no PT_LOAD": (patched(PHOFF64, "<I", 4), "no PT_LOAD segment"),
    "no header in the first 32 KiB": (
        with_header(mb2_header(), pad_to=0x8000 - SEGMENT_OFFSET),
        "no Multiboot2 header in the first 32 KiB",
    ),
    "MB2 bad checksum": (
        mb2_patched(mb2_header(), 12, "<I", 0x12345678),
        "Multiboot2 header at file offset 0x1000 has a bad checksum",
    ),
    "MB1 bad checksum": (
        lambda: simple_kernel(struct.pack("<III", 0x1BADB002, 3, 0)),
        "Multiboot header at file offset 0x1000 has a bad checksum",
    ),
    "MIPS architecture": (with_header(mb2_header(arch=4)), r"architecture 4 \(MIPS32\)"),
    "tag of size 0": (
        mb2_patched(mb2_header(mb2_tag(6)), 20, "<I", 0),
        r"tag 6 \(module alignment\) at 0x1010 has size 0 \(GRUB 2.06 loops on it forever\)",
    ),
    "end tag missing": (  # the tags go on into the code: 0xf4f4, a required unknown tag
        mb2_patched(mb2_header(mb2_tag(6)), 24, "<HHI", 6, 0, 8),
        r"required Multiboot2 header tag 62708 \(unknown\) is not supported",
    ),
    "no end tag in the first 32 KiB": (
        flat(mb2_header()[:16] + struct.pack("<HHI", 6, 0, 8) * 0x1000),
        "its tags run past the first 32768 bytes of the file that GRUB reads",
    ),
    "address tag too short": (  # its fields run into the next tag: no entry tag follows
        with_header(mb2_header(mb2_tag(2, struct.pack("<II", 1, 2)))),
        "has an address tag but no entry address tag",
    ),
    "required unknown tag": (
        with_header(mb2_header(mb2_tag(42))),
        r"required Multiboot2 header tag 42 \(unknown\) is not supported",
    ),
    "required EFI i386 entry tag": (
        with_header(mb2_header(mb2_tag(8, struct.pack("<I", 0x100000)))),
        r"required Multiboot2 header tag 8 \(EFI i386 entry address\) is not supported",
    ),
    "required SMBIOS request": (
        with_header(mb2_header(mb2_tag(1, struct.pack("<I", 13)))),
        r"asks for boot information tag 13 \(SMBIOS tables\), which GRUB 2.06 refuses",
    ),
    "request for an unknown tag": (
        with_header(mb2_header(mb2_tag(1, struct.pack("<I", 99)))),
        r"asks for boot information tag 99 \(unknown\), which GRUB 2.06 refuses",
    ),
    "console required, no EGA text, no framebuffer": (
        with_header(mb2_header(mb2_tag(4, struct.pack("<I", 1)))),
        "requires a console but accepts no EGA text one",
    ),
    "address tag without entry tag": (flat(ADDR_NO_ENTRY), "no entry address tag"),
    "address tag: image before the file": (
        flat(aout_mb2(0x200000, 0x100000, 0, 0, 0x200000)),
        "the image would start at file offset -1048576, outside the file",
    ),
    "address tag: load_end_addr below load_addr": (
        flat(aout_mb2(0x200000, 0x200000, 0x100000, 0, 0x200000)),
        "load_end_addr is below load_addr",
    ),
    "address tag: bss below the image": (
        flat(aout_mb2(0x200000, 0x200000, 0x200040, 0x200010, 0x200000)),
        "bss_end_addr 0x200010 is below",
    ),
    "MB1 kludge truncated": (
        flat(bytes(8) + mb1_header(0x10000) + bytes(12)),
        "address fields run past the end of the file",
    ),
    "MB1 unsupported flag": (
        with_header(mb1_header(0x8003)),
        r"requires unsupported features \(flags 0x8000: bit 15\)",
    ),
    "MB1 video mode type 2": (
        with_header(mb1_header(0x7) + bytes(20) + struct.pack("<4I", 2, 80, 25, 0)),
        "asks for video mode type 2",
    ),
    "p_filesz > p_memsz": (patched(PH_MEMSZ, "<Q", 4), "p_filesz 0x28 > p_memsz 0x4"),
    "segment beyond RAM": (
        lambda: simple_kernel(mb2_header(), paddr=RAM - 8),
        "reaches past 0x[0-9a-f]+, the end of the RAM GRUB 2.06 can load into",
    ),
    "segment in the top 128 KiB": (
        lambda: simple_kernel(mb2_header(), paddr=RAM - 0x10000),
        "reaches past 0x[0-9a-f]+, the end of the RAM GRUB 2.06 can load into",
    ),
    "segment in GRUB's own heap": (
        lambda: simple_kernel(mb2_header(), paddr=RAM - 0x20000 - 0x30000),
        "reaches past 0x[0-9a-f]+, the end of the RAM GRUB 2.06 can load into",
    ),
    "p_memsz of 2**60": (patched(PH_MEMSZ, "<Q", 1 << 60), "above 4 GiB"),
    "ELF64 segment above 4 GiB": (
        two_segments(Segment(1 << 32, b"x" * 16)),
        r"ends at 0x100000010, above 4 GiB \(GRUB 2.06: 'segment crosses 4 GiB border'\)",
    ),
    "segments overlapping each other": (
        two_segments(Segment(0x100080, b"x" * 16)),
        r"PT_LOAD segment 1 .* overlaps .* PT_LOAD segment 0 .*'overlap detected'",
    ),
    "empty segment inside another": (
        two_segments(Segment(0x100010, b"", memsz=0)),
        r"PT_LOAD segment 1 .* overlaps .* PT_LOAD segment 0",
    ),
    "entry outside every segment": (
        lambda: simple_kernel(mb2_header(), entry=0x900000),
        "entry point 0x900000 is outside every segment",
    ),
    "relocations in a Multiboot2 ELF": (
        lambda: Elf(
            [Segment(0x100000, mb2_header() + b"\xf4")],
            entry=0x100018,
            sections=[Section(".rela.text", SHT_RELA, bytes(24))],
        ).build(),
        "holds relocations",
    ),
    "section with sh_addralign 0": (
        lambda: Elf(
            [Segment(0x100000, mb2_header() + b"\xf4")],
            entry=0x100018,
            sections=[Section(".zeroalign", SHT_PROGBITS, b"z" * 48, align=0)],
        ).build(),
        r"ELF section 1 \(\.zeroalign\) has sh_addralign 0",
    ),
    "section data beyond EOF": (
        _section_beyond_eof,
        r"ELF section 1 \(\.debug\): truncated ELF: its data ends at byte",
    ),
    "relocatable range too small": (
        with_header(mb2_header(mb2_tag(10, struct.pack("<IIII", 0x400000, 0x400010, 1, 0)))),
        "cannot fit in 0x400000-0x400010",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_kernel_is_one_clear_error(case: str, tmp_path: Path, ram: np.ndarray) -> None:
    build, match = CASES[case]
    path = tmp_path / "bad.elf"
    path.write_bytes(build())
    with pytest.raises(LoaderError, match=match) as info:
        boot_kernel(path, ram)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")


def test_every_case_is_otherwise_bootable(tmp_path: Path, ram: np.ndarray) -> None:
    """The builders above start from kernels that boot: each error comes from its patch."""
    for name, data in {
        "elf": bytes(good()),
        "aout": aout_mb2(0x200000, 0x200000, 0, 0, 0x200010) + bytes(16),
        "mb1": simple_kernel(mb1_header()),
        "two": two_segments(Segment(0x102000, b"x" * 16))(),
    }.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert boot_kernel(path, ram).entry


def test_missing_path_and_directory(tmp_path: Path, ram: np.ndarray) -> None:
    with pytest.raises(LoaderError, match="nope.elf: no such file"):
        boot_kernel(tmp_path / "nope.elf", ram)
    with pytest.raises(LoaderError, match="is a directory, not a kernel file"):
        boot_kernel(tmp_path, ram)


def test_huge_memsz_fails_fast_without_allocating(tmp_path: Path, ram: np.ndarray) -> None:
    path = tmp_path / "huge.elf"
    path.write_bytes(patched(PH_MEMSZ, "<Q", 1 << 60)())
    tracemalloc.start()
    began = time.perf_counter()
    try:
        with pytest.raises(LoaderError, match="above 4 GiB"):
            boot_kernel(path, ram)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - began < 1.0
    assert peak < 1 << 20, f"{peak} bytes allocated"


def test_module_errors(tmp_path: Path, ram: np.ndarray) -> None:
    kernel = tmp_path / "k.elf"
    kernel.write_bytes(bytes(good()))
    with pytest.raises(LoaderError, match="module .*no-such: no such file"):
        boot_kernel(kernel, ram, modules=[ModuleSpec(str(tmp_path / "no-such"))])
    with pytest.raises(LoaderError, match="module .*: is a directory"):
        boot_kernel(kernel, ram, modules=[ModuleSpec(str(tmp_path))])
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(15 << 20))  # fits the file-size check, not the free RAM
    with pytest.raises(LoaderError, match=r"no room for module .*big\.bin \(15728640 bytes\)"):
        boot_kernel(kernel, ram, modules=[ModuleSpec(str(big))])
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as f:
        f.truncate(RAM + 1)  # sparse: larger than guest RAM, checked before reading
    with pytest.raises(LoaderError, match="larger than guest RAM"):
        boot_kernel(kernel, ram, modules=[ModuleSpec(str(huge))])


def test_bad_protocol_and_bad_ram(tmp_path: Path, ram: np.ndarray) -> None:
    kernel = tmp_path / "k.elf"
    kernel.write_bytes(bytes(good()))
    with pytest.raises(LoaderError, match="unknown boot protocol 'mb3'"):
        boot_kernel(kernel, ram, protocol="mb3")
    with pytest.raises(LoaderError, match="no Multiboot header in the first 8 KiB"):
        boot_kernel(kernel, ram, protocol="multiboot1")
    with pytest.raises(ValueError, match="numpy uint8"):
        boot_kernel(kernel, np.zeros(RAM, np.int32))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    patches=st.lists(
        st.tuples(st.integers(0, 0x1100), st.integers(0, 255)), min_size=1, max_size=6
    ),
    cut=st.integers(0, 0x1200),
)
def test_corrupted_kernels_boot_or_fail_cleanly(patches: list[tuple[int, int]], cut: int) -> None:
    """Random byte damage to the ELF header, program header, section table or Multiboot2 header
    (and truncation) either still boots or is a LoaderError: nothing else escapes."""
    base = good()
    shoff = struct.unpack_from("<Q", base, 40)[0]
    data = bytearray(base)
    for where, value in patches:
        # aim at the headers: ELF header + program header, the Multiboot2 header, the sections
        spot = where if where < 0x100 else SEGMENT_OFFSET + (where - 0x100) % 0x40
        if where >= 0x1000:
            spot = shoff + (where - 0x1000) % (len(base) - shoff)
        data[spot] = value
    if cut < len(data):
        data = data[: max(cut, 1)] if cut % 3 == 0 else data
    ram = np.zeros(2 << 20, np.uint8)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.elf"
        path.write_bytes(bytes(data))
        try:
            plan = boot_kernel(path, ram)
        except LoaderError as e:
            assert "\n" not in str(e)
        else:
            assert plan.info_addr and 0x100000 <= plan.info_addr < 2 << 20
