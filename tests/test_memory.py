"""The physical address space: RAM, ROM, the VGA window and unassigned memory behave as under
QEMU 7.2's pc machine (images/probe-openbus has the measured reference), and a run goes on
where a PC goes on."""

from __future__ import annotations

import numpy as np
import pytest
from mb2_kernel import build

from emu import ConfigError, Machine
from emu.memory import PHYS_END, PhysicalMemory


def _run(tmp_path, body: str, **options):
    m = Machine.from_elf(build(body, tmp_path), **options)
    return m, m.run(max_instructions=100_000)


def test_pc_map_has_the_holes_a_pc_has() -> None:
    pm = PhysicalMemory.pc(np.zeros(128 << 20, np.uint8))
    kinds = {(hex(a), hex(b)): k for a, b, k, _ in pm.describe()}
    assert kinds[("0x0", "0xa0000")] == "ram"
    assert kinds[("0xa0000", "0xb8000")] == "unassigned"  # the VGA device adds its window
    assert kinds[("0xc0000", "0xca000")] == "rom"  # the video BIOS
    assert kinds[("0xca000", "0xcd000")] == "ram"  # QEMU's kvmvapic ROM, in RAM
    assert kinds[("0xf0000", "0x100000")] == "rom"  # the system BIOS
    assert kinds[("0x100000", "0x8000000")] == "ram"
    assert kinds[("0xfffc0000", "0x100000000")] == "rom"  # the BIOS flash
    assert pm.holes()[-1][1] == PHYS_END


def test_overlapping_regions_are_a_configuration_error() -> None:
    pm = PhysicalMemory.pc(np.zeros(4 << 20, np.uint8))
    with pytest.raises(ConfigError, match="overlaps extended memory"):
        pm.add_rom(0x200000, np.zeros(0x1000, np.uint8), "a ROM over RAM")
    with pytest.raises(ConfigError, match="not page aligned"):
        pm.add_device_memory(0xE0000001, np.zeros(0x1000, np.uint8), "odd")
    with pytest.raises(ConfigError, match="physical address space"):
        pm.add_device_memory(PHYS_END, np.zeros(0x1000, np.uint8), "too high")


def test_unassigned_memory_reads_zero_and_drops_writes(tmp_path) -> None:
    m, r = _run(
        tmp_path,
        """
        movl $0x11223344, 0x40000000     # nothing there: dropped
        movl 0x40000000, %ebx            # reads 0
        movl 0x36d76287, %ecx            # unaligned, in the PCI hole: 0
        movl $-1, %esi
        movl 0x8000000, %esi             # just above 128 MiB of RAM: 0
        """,
    )
    assert r.stop_reason == "debug-exit"
    gpr = r.cpu.gpr
    assert gpr["rbx"] == 0 and gpr["rcx"] == 0 and gpr["rsi"] == 0
    u = r.unassigned
    assert u["writes"] >= 1 and u["reads"] >= 3 and u["pages"] == 3
    first = u["first"][0]
    assert first["write"] and first["address"] == 0x40000000 and first["value"] == 0x11223344
    assert first["rip"] == m.boot.entry  # the exact instruction, not its block
    assert "unassigned memory" in r.describe()
    assert r.to_dict()["unassigned_memory"]["writes"] == u["writes"]


def test_strict_memory_stops_at_the_access(tmp_path) -> None:
    _m, r = _run(tmp_path, "movl 0x40000000, %ebx\n", strict_memory=True)
    assert r.stop_reason == "unmapped-memory" and "0x40000000" in r.detail


def test_rom_ignores_writes_and_the_vga_window_reads_all_ones(tmp_path) -> None:
    m, r = _run(
        tmp_path,
        """
        movl 0xf0000, %eax
        notl %eax
        movl %eax, 0xf0000               # ROM: dropped
        movl 0xf0000, %ebx
        incb 0xf0010                     # a read-modify-write of ROM: dropped too
        movl 0xa0000, %ecx               # VGA planes, not decoded in text mode
        movl $0x12345678, 0xa0000
        movl 0xa0000, %edx
        movl $0x0741, 0xb8000            # the text cells are memory
        movzwl 0xb8000, %esi
        """,
    )
    assert r.stop_reason == "debug-exit"
    rom = int.from_bytes(m.read_physical(0xF0000, 4), "little")
    assert (
        r.cpu.gpr["rbx"] == rom and m.read_physical(0xF0010, 1) == m.ram[0xF0010:0xF0011].tobytes()
    )
    assert r.cpu.gpr["rcx"] == 0xFFFFFFFF and r.cpu.gpr["rdx"] == 0xFFFFFFFF
    assert r.cpu.gpr["rsi"] == 0x0741
    assert r.unassigned["reads"] == 0 and r.unassigned["writes"] == 0


def test_read_physical_answers_like_the_guest(tmp_path) -> None:
    m = Machine.from_elf(build("nop\n", tmp_path))
    assert m.read_physical(0x40000000, 4) == b"\0\0\0\0"
    assert m.read_physical(0xA0000, 2) == b"\xff\xff"
    with pytest.raises(ConfigError):
        m.read_physical(PHYS_END - 2, 4)


def test_a_checkpoint_keeps_the_unassigned_log(tmp_path) -> None:
    m = Machine.from_elf(build("movl 0x40000000, %eax\nmovl 0x50000000, %eax\n", tmp_path))
    cp = m.checkpoint()
    first = m.run(max_instructions=100_000)
    m.restore(cp)
    again = m.run(max_instructions=100_000)
    assert first.unassigned == again.unassigned and first.unassigned["reads"] == 2


def test_stepping_sees_the_same_accesses_as_running(tmp_path) -> None:
    body = "movl 0x40000000, %eax\nmovl $5, 0x40001000\nnop\n"
    ran = Machine.from_elf(build(body, tmp_path / "a")).run(max_instructions=100_000)
    m = Machine.from_elf(build(body, tmp_path / "b"))
    while m.step() is None:
        pass
    stepped = m.last_result
    # the same accesses at the same instruction counts, from the same instructions
    assert stepped.unassigned == ran.unassigned and len(ran.unassigned["first"]) == 2
