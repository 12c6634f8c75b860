"""The 8259A pair programmed as a kernel does: remap, mask, EOI variants, cascade, spurious."""

from __future__ import annotations

import pytest

from devices.irq import IrqLine
from devices.pic8259 import Pic8259, PicPair


class Pair:
    def __init__(self) -> None:
        self.cpu = IrqLine("INTR")
        self.pics = PicPair(self.cpu)

    def out(self, port: int, value: int) -> None:
        pic = self.pics.master if port in (0x20, 0x21) else self.pics.slave
        pic.write(port & 1, 1, value)

    def inb(self, port: int) -> int:
        pic = self.pics.master if port in (0x20, 0x21) else self.pics.slave
        return pic.read(port & 1, 1)

    def remap(self, master: int = 0x20, slave: int = 0x28) -> None:
        """The OSDev sequence: ICW1 (edge, cascade, ICW4), ICW2 base, ICW3 wiring, ICW4 8086."""
        for port, value in ((0x20, 0x11), (0xA0, 0x11), (0x21, master), (0xA1, slave),
                            (0x21, 0x04), (0xA1, 0x02), (0x21, 0x01), (0xA1, 0x01),
                            (0x21, 0x00), (0xA1, 0x00)):  # fmt: skip
            self.out(port, value)

    def raise_irq(self, irq: int) -> None:
        line = self.pics.irq_line(irq)
        line.raise_()
        line.lower()  # an edge


@pytest.fixture
def p() -> Pair:
    pair = Pair()
    pair.remap()
    return pair


def test_remap_and_vector(p: Pair) -> None:
    assert not p.cpu.level
    p.raise_irq(0)
    assert p.cpu.level
    assert p.pics.acknowledge() == 0x20
    assert p.inb(0x20) == 0  # IRR: the edge was consumed
    p.out(0x20, 0x0B)  # OCW3: read ISR
    assert p.inb(0x20) == 0x01
    p.out(0x20, 0x20)  # non-specific EOI
    assert p.inb(0x20) == 0x00 and not p.cpu.level


def test_mask_blocks_then_releases(p: Pair) -> None:
    p.out(0x21, 0x02)  # mask IRQ 1
    p.raise_irq(1)
    assert not p.cpu.level and p.inb(0x20) == 0x02  # requested, not signalled
    assert p.inb(0x21) == 0x02
    p.out(0x21, 0x00)
    assert p.cpu.level and p.pics.acknowledge() == 0x21


def test_priority_and_nesting(p: Pair) -> None:
    p.raise_irq(3)
    p.raise_irq(1)
    assert p.pics.acknowledge() == 0x21  # IRQ 1 before IRQ 3
    assert not p.cpu.level  # IRQ 3 waits: lower priority than the one in service
    p.raise_irq(0)
    assert p.cpu.level and p.pics.acknowledge() == 0x20  # higher priority nests
    p.out(0x20, 0x20)  # EOI clears IRQ 0 (the highest in service)
    p.out(0x20, 0x20)  # then IRQ 1
    assert p.pics.acknowledge() == 0x23


def test_specific_eoi_and_rotation(p: Pair) -> None:
    p.raise_irq(5)
    p.pics.acknowledge()
    p.out(0x20, 0x60 | 5)  # specific EOI for IRQ 5
    assert p.pics.master.isr == 0
    p.raise_irq(4)
    p.pics.acknowledge()
    p.out(0x20, 0xA0)  # rotate on non-specific EOI: IRQ 4 becomes the lowest
    assert p.pics.master.priority_add == 5
    p.raise_irq(3)
    p.raise_irq(6)
    assert p.pics.acknowledge() == 0x26  # 6 now outranks 3


def test_auto_eoi(p: Pair) -> None:
    p.out(0x20, 0x11)
    p.out(0x21, 0x20)
    p.out(0x21, 0x04)
    p.out(0x21, 0x03)  # 8086 + auto-EOI
    p.raise_irq(3)
    assert p.pics.acknowledge() == 0x23
    assert p.pics.master.isr == 0


def test_cascade_from_the_slave(p: Pair) -> None:
    p.raise_irq(12)
    assert p.cpu.level
    assert p.pics.acknowledge() == 0x2C
    assert p.pics.master.isr == 0x04 and p.pics.slave.isr == 0x10
    p.out(0xA0, 0x20)
    p.out(0x20, 0x20)
    assert p.pics.master.isr == 0 and p.pics.slave.isr == 0


def test_spurious_irq7_and_irq15(p: Pair) -> None:
    line = p.pics.irq_line(10)
    p.pics.elcr.write(1, 1, 0x04)  # IRQ 10 level-triggered
    line.raise_()
    assert p.cpu.level
    line.lower()  # the device withdraws before INTA
    assert p.pics.acknowledge() == 0x2F  # IRQ 15: spurious
    assert p.pics.slave.isr == 0  # no ISR bit for a spurious interrupt
    p.out(0x20, 0x20)


def test_poll_mode(p: Pair) -> None:
    p.raise_irq(6)
    p.out(0x20, 0x0C)  # OCW3 poll
    assert p.inb(0x20) == 0x86
    assert p.pics.master.isr == 0x40
    p.out(0x20, 0x0C)
    assert p.inb(0x20) == 0x00  # nothing pending


def test_special_mask_mode_lets_lower_priorities_in(p: Pair) -> None:
    p.raise_irq(1)
    p.pics.acknowledge()
    p.out(0x21, 0x02)  # mask the IRQ in service
    p.out(0x20, 0x68)  # OCW3: set special mask mode
    p.raise_irq(5)
    assert p.cpu.level and p.pics.acknowledge() == 0x25


def test_elcr_fixed_edge_bits() -> None:
    pair = Pair()
    pair.pics.elcr.write(0, 1, 0xFF)
    pair.pics.elcr.write(1, 1, 0xFF)
    assert pair.pics.elcr.read(0, 1) == 0xF8  # IRQ 0-2 are always edge
    assert pair.pics.elcr.read(1, 1) == 0xDE  # IRQ 8 and 13 too


def test_describe_for_the_debugger(p: Pair) -> None:
    p.raise_irq(4)
    assert "irr=10" in p.pics.describe() and "base=20" in p.pics.describe()


def test_single_chip_reset_values() -> None:
    pic = Pic8259(IrqLine("x"))
    assert (pic.irr, pic.isr, pic.imr) == (0, 0, 0)
