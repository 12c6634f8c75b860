"""PCI configuration mechanism #1 against QEMU 7.2's pc machine: tests/golden/qemu/
pci-config.serial is what a probe printed under qemu-ref (SeaBIOS, -cpu qemu64, 256 MiB):
0xCF8 read back, the functions present on bus 0, every register of 00:00.0 and 00:01.0,
BAR 0 after writing all-ones, byte reads of the command register and port 0xCF9."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emu import Machine

GOLDEN = Path(__file__).parent / "golden" / "qemu" / "pci-config.serial"


@pytest.fixture
def machine() -> Machine:
    return Machine(memory="16M")


def cfg(m: Machine, dev: int, fn: int, reg: int) -> int:
    m.bus.write(0xCF8, 4, 0x80000000 | dev << 11 | fn << 8 | reg)
    return m.bus.read(0xCFC, 4)


def test_config_space_as_qemu_shows_it(machine: Machine) -> None:
    text = GOLDEN.read_text()
    m = machine
    dumps = re.findall(r"config 00:(\w\w)\.0\n((?:\w\w:(?: \w{8}){4}\n){16})", text)
    assert len(dumps) == 2
    for dev, rows in dumps:
        for row in rows.splitlines():
            reg, *words = row.replace(":", "").split()
            for i, word in enumerate(words):
                assert cfg(m, int(dev, 16), 0, int(reg, 16) + 4 * i) == int(word, 16), (dev, reg, i)


def test_only_the_host_and_isa_bridges_answer(machine: Machine) -> None:
    present = {
        (dev, fn): cfg(machine, dev, fn, 0)
        for dev in range(32)
        for fn in range(8)
        if cfg(machine, dev, fn, 0) != 0xFFFFFFFF
    }
    assert present == {(0, 0): 0x12378086, (1, 0): 0x70008086}
    # QEMU's IDE (01.1), PIIX4 ACPI (01.3) and VGA (02.0) functions are not modelled
    golden = re.findall(r"dev (\w\w)\.(\d) id (\w+)", GOLDEN.read_text())
    assert [g for g in golden if g[:2] in (("00", "0"), ("01", "0"))] == [
        ("00", "0", "12378086"),
        ("01", "0", "70008086"),
    ]


def test_address_register_and_mechanism_checks(machine: Machine) -> None:
    m, text = machine, GOLDEN.read_text()
    m.bus.write(0xCF8, 4, 0x80000000)
    assert f"cf8 readback {m.bus.read(0xCF8, 4):08x}" in text
    m.bus.write(0xCF8, 4, 0x12345678)
    assert f"cf8 readback2 {m.bus.read(0xCF8, 4):08x}" in text
    m.bus.write(0xCFB, 1, 0x01)  # Linux's pci_check_type1 pokes 0xCFB first: no effect
    assert f"cfb {m.bus.read(0xCF8, 4):08x}" in text
    for devfn, name in ((0x00, "00.0"), (0x08, "01.0")):  # no BARs: sizing reads 0
        m.bus.write(0xCF8, 4, 0x80000010 | devfn << 8)
        m.bus.write(0xCFC, 4, 0xFFFFFFFF)
        assert f"bar0 {name} {m.bus.read(0xCFC, 4):08x}" in text
    m.bus.write(0xCF8, 4, 0x80000004)
    got = " ".join(f"{m.bus.read(0xCFC + i, 1):02x}" for i in range(4))
    assert f"byte reads 00.0 reg4: {got} " in text
    assert f"io 0cf9 {m.bus.read(0xCF9, 1):02x}" in text
    m.bus.write(0xCF8, 4, 0x00000000)  # enable bit clear: no config cycle
    assert m.bus.read(0xCFC, 4) == 0xFFFFFFFF


def test_writable_registers_as_qemu_masks_them(machine: Machine) -> None:
    m = machine
    m.bus.write(0xCF8, 4, 0x80000804)  # PIIX3 command/status
    m.bus.write(0xCFC, 4, 0xFFFFFFFF)
    assert m.bus.read(0xCFC, 4) == 0x02000547  # status read-only, the command's mask
    m.bus.write(0xCF8, 4, 0x80000860)  # PIRQ routing: stored (nothing is routed)
    m.bus.write(0xCFE, 1, 0x05)
    assert m.bus.read(0xCFC, 4) == 0x0B050A0A
    m.bus.write(0xCF8, 4, 0x80000800)  # IDs are read-only
    m.bus.write(0xCFC, 4, 0)
    assert m.bus.read(0xCFC, 4) == 0x70008086
    m.bus.write(0xCF8, 4, 0x8000083C)  # interrupt line writable, pin read-only
    m.bus.write(0xCFC, 2, 0xFFFF)
    assert m.bus.read(0xCFC, 2) == 0x00FF


def test_port_cf9_resets_the_machine(machine: Machine) -> None:
    m = machine
    m.bus.write(0xCF9, 1, 0x02)
    assert m.bus.read(0xCF9, 1) == 0x02 and not m._reset_requested
    m.bus.write(0xCF9, 1, 0x06)  # hard reset, as Linux's reboot=pci writes it
    assert m._reset_requested
