"""The Linux boot protocol: a bzImage, its initrd and boot_params placed and filled as GRUB
2.06's linux/initrd/boot commands do, the 32-bit entry, and every input that cannot boot as one
LoaderError line (exit status 2 from the command line)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from linux_images import ECHO_CMDLINE, bzimage

from emu import Machine
from emu.errors import LoaderError
from firmware import boot_kernel, memory_map
from firmware.linux import mem_limit

ROOT = Path(__file__).resolve().parent.parent
RAM = 64 << 20
CMDLINE = "console=ttyS0 quiet root=/dev/ram0"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def load(tmp_path: Path, kernel: bytes, *, initrd: bytes | None = None, ram: int = RAM,
         cmdline: str = CMDLINE):  # fmt: skip
    memory = np.zeros(ram, np.uint8)
    memory[0x450:0x452] = (0, 3)  # the BIOS data area's cursor: column 0, row 3
    path = write(tmp_path, "bzImage", kernel)
    rd = write(tmp_path, "initrd.img", initrd) if initrd is not None else None
    return boot_kernel(path, memory, cmdline=cmdline, initrd=rd), memory


def u(memory: np.ndarray, addr: int, fmt: str) -> int:
    return struct.unpack_from("<" + fmt, memory, addr)[0]


def test_boot_params_as_grub_fills_them(tmp_path: Path) -> None:
    initrd = bytes(range(256)) * 1000  # 256,000 bytes
    plan, ram = load(tmp_path, bzimage(), initrd=initrd)
    assert plan.protocol == "linux" and plan.linux is not None
    zp = plan.info_addr
    # the real-mode area: GRUB's map buffer (2 pages for 7 entries), then the command line,
    # 0x800 bytes (cmdline_size + 1), at the top of [0x10000, 0x90000)
    assert plan.linux.real_mode_size == 0x4000 and zp == 0x90000 - 0x4000
    assert u(ram, zp + 0x228, "I") == zp + 0x3000  # cmd_line_ptr
    assert ram[zp + 0x3000 : zp + 0x3000 + len(CMDLINE) + 1].tobytes() == CMDLINE.encode() + b"\0"
    # the setup header, copied from the file, then GRUB's writes
    assert u(ram, zp + 0x202, "I") == 0x53726448 and u(ram, zp + 0x206, "H") == 0x020F
    assert ram[zp + 0x210] == 0x72  # type_of_loader: GRUB (7), version 2
    assert ram[zp + 0x211] == 0x01 | 0x20 | 0x80  # LOADED_HIGH, QUIET ("quiet"), CAN_USE_HEAP
    assert u(ram, zp + 0x224, "H") == 0x8E00  # heap_end_ptr
    assert u(ram, zp + 0x214, "I") == 0x1000000 == plan.entry  # code32_start at pref_address
    assert u(ram, zp + 0x1FA, "H") == 0xFFFF  # vid_mode as the kernel asked
    assert u(ram, zp + 0x1FC, "H") == 0x0100  # root_dev: GRUB's /dev/ram0 with an initrd
    # the initrd: as high as the relocator allows, page aligned, the bytes as given
    image, size = u(ram, zp + 0x218, "I"), u(ram, zp + 0x21C, "I")
    assert size == len(initrd) and image % 0x1000 == 0
    assert ram[image : image + size].tobytes() == initrd
    heap_top = RAM - 0x20000 - 0x46000
    assert heap_top - 0x40000 < image + size <= heap_top
    assert image >= 0x1000000 + 0x400000  # above the kernel's init_size
    # screen_info and the rest of the zero page GRUB writes
    assert (ram[zp + 0], ram[zp + 1]) == (0, 3)  # the cursor, where the BIOS has it
    assert u(ram, zp + 2, "H") == 32768 and u(ram, zp + 0x1E0, "I") == 32768
    assert (ram[zp + 6], ram[zp + 7], ram[zp + 0xE], ram[zp + 0xF]) == (3, 80, 25, 1)
    assert u(ram, zp + 0x10, "H") == 16
    assert (u(ram, zp + 0x20, "H"), u(ram, zp + 0x22, "H")) == (0xA33F, 0x1000)
    # the E820 map: the machine's memory map, entry for entry
    regions = memory_map(RAM)
    assert ram[zp + 0x1E8] == len(regions) == 7
    for i, r in enumerate(regions):
        assert struct.unpack_from("<QQI", ram, zp + 0x2D0 + 20 * i) == (r.base, r.length, r.type)
    # the protected-mode part at 16 MiB
    assert ram[0x1000000 : 0x1000000 + len(ECHO_CMDLINE)].tobytes() == ECHO_CMDLINE


def test_the_real_mode_area_grows_with_the_setup_sectors(tmp_path: Path) -> None:
    # 0x27 setup sectors (Debian's 6.1 kernels): the command line moves to 0x5000
    plan, ram = load(tmp_path, bzimage(setup_sects=0x27))
    assert plan.linux.real_mode_size == 0x6000 and plan.info_addr == 0x8A000
    assert u(ram, plan.info_addr + 0x228, "I") == 0x8F000


def test_a_non_relocatable_kernel_goes_to_1_mib(tmp_path: Path) -> None:
    plan, _ = load(tmp_path, bzimage(relocatable=False))
    assert plan.entry == plan.load_base == 0x100000


def test_mem_lowers_the_initrd_ceiling(tmp_path: Path) -> None:
    assert mem_limit("a mem=48M b") == 48 << 20 and mem_limit("mem=0x2000000") == 0x2000000
    assert mem_limit("memmap=1G mem=nonsense") == 0
    plan, ram = load(tmp_path, bzimage(), initrd=b"\x55" * 5000, cmdline="mem=40M")
    image = u(ram, plan.info_addr + 0x218, "I")
    # GRUB's highest start is (mem - 64 KiB - size) & ~0xFFF; its relocator takes that as the
    # chunk's end in the heap, so the initrd ends there
    highest = ((40 << 20) - 0x10000 - 0x2000) & ~0xFFF
    assert image == highest - 0x2000


def test_protocol_2_02_gets_grubs_initrd_ceiling(tmp_path: Path) -> None:
    plan, ram = load(tmp_path, bzimage(version=0x0202), initrd=b"\xaa" * 100, ram=1 << 30)
    image = u(ram, plan.info_addr + 0x218, "I")
    assert image + 100 <= 0x37FFFFFF - 0x10000  # no initrd_addr_max field: 0x37FFFFFF
    assert plan.entry == 0x100000  # before 2.05 nothing is relocatable


def test_the_kernel_starts_at_code32_start_as_the_32_bit_protocol_says(tmp_path: Path) -> None:
    kernel = write(tmp_path, "bzImage", bzimage())
    m = Machine.from_elf(kernel, memory="64M", cmdline="hello linux")
    m.add_breakpoint(m.boot.entry)
    result = m.run(max_instructions=1000)
    assert result.stop_reason == "breakpoint"
    c = m.cpu_state()
    assert c.mode == "prot32" and c.cr0 & 0x80000001 == 1  # protected mode, paging off
    r = c.gpr
    assert r["rsi"] == r["rsp"] == m.boot.info_addr
    assert r["rbx"] == r["rbp"] == r["rdi"] == 0
    selectors = {name: c.segments[name].selector for name in ("cs", "ds", "es", "ss")}
    assert selectors == {"cs": 0x10, "ds": 0x18, "es": 0x18, "ss": 0x18}
    assert c.rflags & 0x200 == 0  # interrupts disabled
    m.remove_breakpoint(m.boot.entry)
    result = m.run(max_instructions=10_000)
    assert result.stop_reason == "debug-exit" and result.exit_code == 0x72
    assert result.serial == b"hello linux"


# ------------------------------------------------------------------- what cannot boot
BAD = {
    "truncated in the header": (lambda: bzimage()[:0x240], "truncated bzImage: the setup header"),
    "truncated in the setup": (lambda: bzimage()[:0x800], "truncated bzImage"),
    "truncated per syssize": (lambda: bzimage()[:-0x100], "syssize"),
    "protocol 2.01": (lambda: bzimage(version=0x0201), "2.01 is too old"),
    "a zImage": (lambda: bzimage(loadflags=0), "zImage"),
    "65 setup sectors": (lambda: bzimage(setup_sects=65), "too many setup sectors"),
    "init_size beyond RAM": (lambda: bzimage(init_size=0x3000000), "init_size"),
    "no 32-bit part fits init_size": (lambda: bzimage(init_size=0x800), "larger than init_size"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_bzimage_is_one_loader_error(tmp_path: Path, case: str) -> None:
    build, words = BAD[case]
    with pytest.raises(LoaderError, match=words) as e:
        load(tmp_path, build())
    assert "\n" not in str(e.value)


def test_an_initrd_too_large_for_ram(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="initrd is too big"):
        load(tmp_path, bzimage(), initrd=bytes(44 << 20))


def test_a_command_line_longer_than_cmdline_size(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="cmdline_size"):
        load(tmp_path, bzimage(cmdline_size=255), cmdline="x" * 256)


def test_initrd_and_module_belong_to_their_protocols(tmp_path: Path) -> None:
    kernel = write(tmp_path, "bzImage", bzimage())
    with pytest.raises(LoaderError, match="not --module"):
        boot_kernel(kernel, np.zeros(RAM, np.uint8), modules=[_module(tmp_path)])
    with pytest.raises(LoaderError, match="the file is empty"):
        boot_kernel(kernel, np.zeros(RAM, np.uint8), initrd=write(tmp_path, "empty", b""))
    with pytest.raises(LoaderError, match="initrd .*: no such file"):
        boot_kernel(kernel, np.zeros(RAM, np.uint8), initrd=tmp_path / "absent")
    with pytest.raises(LoaderError, match="not a Linux kernel image"):
        boot_kernel(write(tmp_path, "x", b"\0" * 4096), np.zeros(RAM, np.uint8),
                    protocol="linux")  # fmt: skip


def _module(tmp_path: Path):
    from firmware import ModuleSpec

    return ModuleSpec(str(write(tmp_path, "mod", b"m")))


def triplefault(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emu", *args], cwd=ROOT, capture_output=True,
                          timeout=120, check=False)  # fmt: skip


def test_the_command_line_detects_a_bzimage(tmp_path: Path) -> None:
    kernel = write(tmp_path, "bzImage", bzimage())
    initrd = write(tmp_path, "initrd", b"rd")
    p = triplefault("run", str(kernel), "--initrd", str(initrd), "--append", "from the cli",
                    "--memory", "64M", "--quiet")  # fmt: skip
    assert p.stdout == b"from the cli" and p.returncode == (0x72 << 1) | 1, p.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["--memory", "16M"], "init_size"),
        (["--initrd", "MISSING"], "no such file"),
        (["--module", "MISSING"], "not --module"),
    ],
)
def test_the_command_line_refuses_with_one_line(
    tmp_path: Path, args: list[str], words: str
) -> None:
    kernel = write(tmp_path, "bzImage", bzimage())
    p = triplefault("run", str(kernel), *args)
    err = p.stderr.decode()
    assert p.returncode == 2 and words in err and err.count("\n") == 1, err


def test_initrd_with_a_multiboot_kernel_is_refused(image, tmp_path: Path) -> None:
    p = triplefault("run", str(image("hello")), "--initrd", str(write(tmp_path, "rd", b"x")))
    assert p.returncode == 2 and b"takes --module" in p.stderr


@pytest.mark.parametrize(
    "name, opcode", [("rdrand", "0fc7f0"), ("rdseed", "0fc7f8"), ("rdtscp", "0f01f9")]
)
def test_no_instruction_reads_host_entropy(tmp_path: Path, name: str, opcode: str) -> None:
    """qemu64 has neither RDRAND, RDSEED nor RDTSCP: each raises #UD (here, with no IDT, a
    triple fault), so no run can differ from another through them."""
    kernel = write(tmp_path, "bzImage", bzimage(code=bytes.fromhex(opcode + "e6f4f4")))
    result = Machine.from_elf(kernel, memory="64M").run(max_instructions=100_000)
    assert result.stop_reason == "triple-fault" and result.detail.startswith("#UD ->")
