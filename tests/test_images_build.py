"""The test kernels in images/ build with make, reproducibly, into the ELFs the loader expects.

Each image is checked with pyelftools as a boot loader and a debugger would see it: ELF class
and machine, a valid Multiboot(2) header where GRUB searches for it, PT_LOAD segments at the
expected physical addresses, DWARF line information and the symbols the tests and docs name.
The images are built into temporary directories, never into images/build.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from capstone import CS_ARCH_X86, CS_MODE_32, CS_MODE_64, Cs
from elftools.elf.elffile import ELFFile

IMAGES = Path(__file__).resolve().parent.parent / "images"

MB2_MAGIC = 0xE85250D6
MB1_MAGIC = 0x1BADB002
MB2_SEARCH = 32 * 1024  # GRUB searches the first 32 KiB of the file (8-byte aligned)
MB1_SEARCH = 8 * 1024  # and the first 8 KiB for Multiboot 1 (4-byte aligned)
LOAD_BASE = 0x100000  # every image is linked and loaded at 1 MiB
PF_X, PF_W, PF_R = 1, 2, 4


@dataclass(frozen=True)
class Expected:
    """What one image must look like."""

    elf_class: int
    machine: str
    multiboot: int  # 1 or 2
    entry_source: str  # the C file kmain (or kernel_main) is compiled from
    symbols: tuple[str, ...]


EXPECTED: dict[str, Expected] = {
    "hello": Expected(64, "EM_X86_64", 2, "hello/kmain.c", ("kmain", "_start")),
    "hello-mb1": Expected(32, "EM_386", 1, "hello-mb1/kmain.c", ("kmain", "_start")),
    "lost-in-32bit": Expected(
        64,
        "EM_X86_64",
        2,
        "lost-in-32bit/kernel.c",
        ("kernel_main", "malloc", "free", "free_list", "heap", "malloc_get_heap_size"),
    ),
    "lost-through-eax": Expected(
        64, "EM_X86_64", 2, "lost-in-32bit/kernel.c", ("kernel_main", "_start", "free_list")
    ),
    "faults": Expected(64, "EM_X86_64", 2, "faults/faults.c", ("kmain", "isr_handler")),
    "faults-df": Expected(64, "EM_X86_64", 2, "faults/faults.c", ("kmain", "isr_handler")),
    "faults-triple": Expected(64, "EM_X86_64", 2, "faults/faults.c", ("kmain", "isr_handler")),
    "paging": Expected(64, "EM_X86_64", 2, "paging/paging.c", ("kmain", "paging_ready")),
    "fb": Expected(32, "EM_386", 2, "fb/fb.c", ("kmain",)),
    "timer": Expected(64, "EM_X86_64", 2, "timer/timer.c", ("kmain",)),
    "probe-cpuid": Expected(
        64, "EM_X86_64", 2, "probe-cpuid/probe.c", ("kmain", "probe_entry", "isr_handler")
    ),
    "probe-mbi": Expected(32, "EM_386", 2, "probe-mbi/probe.c", ("kmain", "_start")),
    "probe-mbi1": Expected(32, "EM_386", 1, "probe-mbi1/probe.c", ("kmain", "_start")),
    "probe-bios": Expected(
        32, "EM_386", 2, "probe-bios/probe.c", ("kmain", "compare", "scan_tables")
    ),
    "probe-openbus": Expected(
        64, "EM_X86_64", 2, "probe-openbus/probe.c", ("kmain", "probe", "isr_handler")
    ),
    "probe-devices": Expected(
        32, "EM_386", 2, "probe-devices/probe.c", ("kmain", "wait_irq", "isr_stubs")
    ),
    "probe-tables": Expected(
        32, "EM_386", 2, "probe-tables/probe.c", ("kmain", "print_sdt", "report_sum")
    ),
    "real-mode": Expected(
        32, "EM_386", 2, "real-mode/probe.c", ("kmain", "run_real_mode", "real_mode_triple_fault")
    ),
    "bios": Expected(64, "EM_X86_64", 2, "bios/probe.c", ("kmain", "bios_call", "isr_handler")),
    "apic": Expected(32, "EM_386", 2, "apic/probe.c", ("kmain", "interrupt", "isr_stubs")),
    "probe-lapic": Expected(32, "EM_386", 2, "probe-lapic/probe.c", ("kmain", "logbuf")),
    "poll-cmos": Expected(64, "EM_X86_64", 2, "poll/poll.c", ("kmain", "isr_handler")),
    "poll-serial": Expected(64, "EM_X86_64", 2, "poll/poll.c", ("kmain", "isr_handler")),
    "poll-spin": Expected(64, "EM_X86_64", 2, "poll/poll.c", ("kmain", "isr_handler", "ticks")),
}
# images/video: one kernel, one variant per video mode request (the Makefile's VIDEO_VARIANTS)
VIDEO_VARIANTS = (
    "video",
    "video-mb1",
    "video-auto",
    "video-1024x768x32",
    "video-1024x768x32-optional",
    "video-1024x768x0",
    "video-640x480x15",
    "video-640x480x16",
    "video-640x480x24",
    "video-640x480x32",
    "video-640x480x8",
    "video-1280x1024x32",
    "video-1000x700x32",
    "video-4000x3000x32",
    "video-800x600x12",
    "video-ega",
    "video-ega-and-fb",
    "video-mb1-auto",
    "video-mb1-1024x768x32",
    "video-mb1-800x600x8",
    "video-mb1-1000x700x32",
    "video-800x600x8",
    "video-mb1-640x480x8",
    "video-mb1-text",
)
EXPECTED.update(
    (name, Expected(32, "EM_386", 1 if "-mb1" in name else 2, "video/video.c", ("kmain", "finish")))
    for name in VIDEO_VARIANTS
)


def _make(*args: str, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    jobs = f"-j{os.cpu_count() or 1}"
    cmd = ["make", jobs, *(["-s"] if quiet else []), *args]
    return subprocess.run(cmd, cwd=IMAGES, capture_output=True, text=True, check=False)


@dataclass(frozen=True)
class Builds:
    first: Path
    second: Path
    second_stdout: str
    second_stderr: str


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    """Every image built twice, into two directories: once with -s, once with default output."""
    if shutil.which("make") is None or shutil.which("gcc") is None:
        pytest.skip("make and gcc are needed to build the test kernels")
    first = tmp_path_factory.mktemp("images-a")
    second = tmp_path_factory.mktemp("images-b")
    p = _make(f"BUILD={first}")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and p.stderr == "", "make -s must print nothing on success"
    q = _make(f"BUILD={second}", quiet=False)
    assert q.returncode == 0, q.stderr
    return Builds(first, second, q.stdout, q.stderr)


def _elf(builds: Builds, name: str) -> Path:
    return builds.first / f"{name}.elf"


def test_make_list_names_every_image() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is needed")
    p = _make("list")
    assert p.returncode == 0
    assert p.stdout.split() == list(EXPECTED)


def test_default_output_is_one_line_per_image(builds: Builds) -> None:
    lines = builds.second_stdout.splitlines()
    assert builds.second_stderr == ""  # no compiler or linker warnings
    assert sorted(lines) == sorted(f"  LD      {builds.second}/{n}.elf" for n in EXPECTED)


def test_builds_are_reproducible_and_hold_no_absolute_paths(builds: Builds) -> None:
    leaks = [str(IMAGES).encode(), str(builds.first).encode(), str(builds.second).encode()]
    for name in EXPECTED:
        a = (builds.first / f"{name}.elf").read_bytes()
        b = (builds.second / f"{name}.elf").read_bytes()
        assert a == b, f"{name}: two builds differ"
        for leak in leaks:
            assert leak not in a, f"{name}: contains the path {leak!r}"
        with (builds.first / f"{name}.elf").open("rb") as f:
            elf = ELFFile(f)
            assert elf.get_section_by_name(".note.gnu.build-id") is None
            for cu in elf.get_dwarf_info().iter_CUs():
                comp_dir = cu.get_top_DIE().attributes["DW_AT_comp_dir"].value
                assert comp_dir == b".", f"{name}: DW_AT_comp_dir {comp_dir!r}"


def test_make_rebuilds_nothing_when_up_to_date(builds: Builds) -> None:
    p = _make(f"BUILD={builds.first}", "-q")  # -q: exit status 0 only if nothing is stale
    assert p.returncode == 0


@pytest.mark.parametrize("name", list(EXPECTED))
def test_elf_class_and_machine(builds: Builds, name: str) -> None:
    want = EXPECTED[name]
    with _elf(builds, name).open("rb") as f:
        elf = ELFFile(f)
        assert elf.elfclass == want.elf_class
        assert elf["e_machine"] == want.machine
        assert elf["e_type"] == "ET_EXEC"


def _mb2_header(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """Offset of the first valid Multiboot2 header and its tags as (type, size)."""
    for off in range(0, min(len(data), MB2_SEARCH) - 16 + 1, 8):
        magic, arch, length, checksum = struct.unpack_from("<IIII", data, off)
        if magic != MB2_MAGIC:
            continue
        assert (magic + arch + length + checksum) & 0xFFFFFFFF == 0, "bad checksum"
        assert arch == 0, "architecture must be 0 (i386 protected mode)"
        tags = []
        pos = off + 16
        while True:
            tag_type, _flags, size = struct.unpack_from("<HHI", data, pos)
            tags.append((tag_type, size))
            if tag_type == 0:
                assert size == 8
                break
            assert size >= 8
            pos += (size + 7) & ~7
        assert pos + 8 == off + length, "header_length must end at the end tag"
        return off, tags
    raise AssertionError("no Multiboot2 header in the first 32 KiB")


def _mb1_header(data: bytes) -> tuple[int, int]:
    """Offset and flags of the first valid Multiboot header."""
    for off in range(0, min(len(data), MB1_SEARCH) - 12 + 1, 4):
        magic, flags, checksum = struct.unpack_from("<III", data, off)
        if magic == MB1_MAGIC:
            assert (magic + flags + checksum) & 0xFFFFFFFF == 0, "bad checksum"
            return off, flags
    raise AssertionError("no Multiboot header in the first 8 KiB")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_multiboot_header_where_grub_looks(builds: Builds, name: str) -> None:
    data = _elf(builds, name).read_bytes()
    if EXPECTED[name].multiboot == 2:
        off, tags = _mb2_header(data)
        assert off % 8 == 0 and off < MB2_SEARCH
        assert MB1_MAGIC.to_bytes(4, "little") not in data[:MB1_SEARCH]
    else:
        off, flags = _mb1_header(data)
        assert off % 4 == 0 and off < MB1_SEARCH
        assert flags & (1 << 16) == 0, "an ELF kernel takes its load addresses from the ELF"


def test_hello_asks_for_what_it_prints(builds: Builds) -> None:
    data = _elf(builds, "hello").read_bytes()
    off, _ = _mb2_header(data)
    tag_type, _flags, size = struct.unpack_from("<HHI", data, off + 16)
    assert tag_type == 1  # information request
    requested = struct.unpack_from(f"<{(size - 8) // 4}I", data, off + 24)
    assert set(requested) == {1, 2, 4, 6}  # cmdline, loader name, basic meminfo, memory map


def test_hello_mb1_requests_aligned_modules_and_memory_info(builds: Builds) -> None:
    _, flags = _mb1_header(_elf(builds, "hello-mb1").read_bytes())
    assert flags == 0x3


def _loads(elf: ELFFile) -> list:
    return [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_segments_load_at_one_mebibyte(builds: Builds, name: str) -> None:
    with _elf(builds, name).open("rb") as f:
        elf = ELFFile(f)
        loads = sorted(_loads(elf), key=lambda s: s["p_paddr"])
        assert loads, "no PT_LOAD segment"
        assert loads[0]["p_paddr"] == LOAD_BASE
        end = LOAD_BASE
        for seg in loads:
            assert seg["p_paddr"] == seg["p_vaddr"], "linked where it is loaded"
            assert seg["p_paddr"] >= end, "segments overlap"
            assert seg["p_filesz"] <= seg["p_memsz"]
            end = seg["p_paddr"] + seg["p_memsz"]
        assert end < 16 << 20, f"image ends at {end:#x}, far past what the kernels need"
        entry = elf["e_entry"]
        assert any(
            s["p_flags"] & PF_X and s["p_vaddr"] <= entry < s["p_vaddr"] + s["p_filesz"]
            for s in loads
        ), f"entry {entry:#x} is not in an executable segment's file bytes"


def test_hello_maps_text_rodata_and_data_with_their_own_permissions(builds: Builds) -> None:
    with _elf(builds, "hello").open("rb") as f:
        elf = ELFFile(f)
        flags = [s["p_flags"] & (PF_R | PF_W | PF_X) for s in _loads(elf)]
        assert flags == [PF_R | PF_X, PF_R, PF_R | PF_W]
        symbols = {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()}
        # boot.S maps the first 2 MiB page by page from these bounds
        assert symbols["__text_start"] == LOAD_BASE
        assert symbols["__text_end"] % 4096 == 0 and symbols["__rodata_end"] % 4096 == 0
        assert symbols["__text_end"] < symbols["__rodata_end"] <= symbols["__bss_end"] < 2 << 20


def _symbols(elf: ELFFile) -> dict[str, tuple[int, int]]:
    table = elf.get_section_by_name(".symtab")
    assert table is not None, "no symbol table"
    return {s.name: (s["st_value"], s["st_size"]) for s in table.iter_symbols() if s.name}


def _line_rows(elf: ELFFile) -> list[tuple[int, str, int]]:
    """(address, file, line) for every row of every line program."""
    rows = []
    dwarf = elf.get_dwarf_info()
    for cu in dwarf.iter_CUs():
        prog = dwarf.line_program_for_CU(cu)
        header = prog.header
        v5 = header["version"] >= 5
        for entry in prog.get_entries():
            st = entry.state
            if st is None or st.end_sequence:
                continue
            fe = header["file_entry"][st.file if v5 else st.file - 1]
            d = fe.dir_index if v5 else fe.dir_index - 1
            directory = header["include_directory"][d].decode() if d >= 0 else "."
            rows.append((st.address, os.path.normpath(f"{directory}/{fe.name.decode()}"), st.line))
    return rows


@pytest.mark.parametrize("name", list(EXPECTED))
def test_symbols_and_line_info(builds: Builds, name: str) -> None:
    want = EXPECTED[name]
    with _elf(builds, name).open("rb") as f:
        elf = ELFFile(f)
        symbols = _symbols(elf)
        for sym in want.symbols:
            assert sym in symbols, f"{name}: no symbol {sym}"
        assert elf.has_dwarf_info()
        rows = _line_rows(elf)
        assert all(not path.startswith("/") for _, path, _ in rows)
        main = "kernel_main" if "kernel_main" in want.symbols else "kmain"
        addr, size = symbols[main]
        files = {path for a, path, _ in rows if addr <= a < addr + size}
        assert want.entry_source in files, f"{main} maps to {files}"
        start = symbols["_start"][0]
        assert any(a == start and path.endswith(".S") for a, path, _ in rows), "_start has no line"


def _code(elf: ELFFile, symbol: str) -> tuple[int, bytes]:
    addr, size = _symbols(elf)[symbol]
    text = elf.get_section_by_name(".text")
    off = addr - text["sh_addr"]
    return addr, text.data()[off : off + size]


def test_lost_in_32bit_is_built_the_way_bareflow_was(builds: Builds) -> None:
    """The premise of the bug: 64-bit code with SSE in malloc, and boot code that never
    enables long mode before calling it."""
    with _elf(builds, "lost-in-32bit").open("rb") as f:
        elf = ELFFile(f)
        symbols = _symbols(elf)
        assert symbols["heap"][1] == 256 * 1024  # the seed's HEAP_SIZE_SMALL
        bss = elf.get_section_by_name(".bss")
        assert bss["sh_addr"] <= symbols["free_list"][0] < bss["sh_addr"] + bss["sh_size"]

        # -O2 without -mno-sse: gcc uses SSE registers in malloc
        addr, code = _code(elf, "malloc")
        malloc64 = list(Cs(CS_ARCH_X86, CS_MODE_64).disasm(code, addr))
        assert any("xmm" in i.op_str for i in malloc64)

        # the boot code: 32-bit, zeroes BSS with rep stosb, calls kernel_main, and never
        # touches EFER, CR0 or CR3 and never far-jumps
        start, _ = symbols["_start"]
        text = elf.get_section_by_name(".text")
        boot = text.data()[start - text["sh_addr"] : symbols["kernel_main"][0] - text["sh_addr"]]
        insns = list(Cs(CS_ARCH_X86, CS_MODE_32).disasm(boot, start))
        names = [f"{i.mnemonic} {i.op_str}" for i in insns]
        assert "rep stosb byte ptr es:[edi], al" in names
        assert f"call {symbols['kernel_main'][0]:#x}" in names
        assert not any(re.match(r"(wrmsr|ljmp|mov cr\d|lgdt)", n) for n in names), names
