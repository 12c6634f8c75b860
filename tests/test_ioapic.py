"""The I/O APIC (devices/ioapic.py): through IOREGSEL/IOWIN as a driver programs it, wired to a
local APIC at the device level, and on the machine with the ISA IRQs fanned out to it and the
8259s (tests/apic_guest.py)."""

from __future__ import annotations

import pytest
from apic_guest import IOAPIC, MASK_PICS, ioapic_write, kernel, run, spin, vectors

from devices.ioapic import MASKED, VERSION, IoApic, isa_pin
from devices.irq import IrqLine
from devices.lapic import LocalApic
from emu import Machine


def reg(io: IoApic, index: int, value: int | None = None) -> int:
    io.mem_write(0x00, 4, index)
    if value is not None:
        io.mem_write(0x10, 4, value)
    return io.mem_read(0x10, 4)


def wired() -> tuple[IoApic, LocalApic, IrqLine]:
    """An I/O APIC sending to a local APIC, whose EOIs it hears."""
    intr = IrqLine("INTR")
    io = IoApic()
    lapic = LocalApic(intr, lambda: 0, eoi_broadcast=io.eoi)

    def deliver(dest, logical, mode, vector, level, source) -> bool:
        if not lapic.matches(dest, logical):
            return False
        if mode == 4:
            lapic.deliver_nmi(source)
        else:
            lapic.accept(vector, level, source)
        return True

    io.deliver = deliver
    return io, lapic, intr


def test_registers_as_qemu_reports_them() -> None:
    io = IoApic()
    assert reg(io, 1) == VERSION == 0x00170020
    assert reg(io, 0) == 0 and reg(io, 2) == 0
    assert all(reg(io, 0x10 + 2 * n) == MASKED and reg(io, 0x11 + 2 * n) == 0 for n in range(24))
    reg(io, 0x10, 0xFFFFFFFF)
    reg(io, 0x11, 0xFFFFFFFF)
    assert (reg(io, 0x11), reg(io, 0x10)) == (0xFFFFFFFF, 0xFFFFAFFF)  # bits 12, 14 read-only
    assert reg(io, 0, 0xFFFFFFFF) == 0x0F000000
    assert reg(io, 1, 0xFFFFFFFF) == VERSION
    assert reg(io, 0x40) == 0 and reg(io, 0xFF) == 0
    io.mem_write(0, 4, 0xFFFFFFFF)
    assert io.mem_read(0, 4) == 0xFF
    io.mem_write(0, 4, 0x12)
    assert io.mem_read(0x10, 1) == 0  # IOWIN: 32-bit accesses only


def test_isa_wiring_is_qemus() -> None:
    assert [isa_pin(irq) for irq in range(16)] == [2, 1, 2, *range(3, 16)]


def test_edge_pins_deliver_once_and_a_masked_edge_is_lost() -> None:
    io, lapic, intr = wired()
    pin = io.pin(3)
    pin.raise_()
    pin.lower()
    assert lapic.irr == 0  # masked
    reg(io, 0x10 + 6, 0x33)  # pin 3: vector 0x33, edge, unmasked
    assert lapic.irr == 0  # the edge came while masked: lost
    pin.raise_()
    assert lapic.irr == 1 << 0x33 and intr.level
    got = lapic.acknowledge(lambda: 0)
    assert (got.vector, got.source) == (0x33, "I/O APIC pin 3")
    lapic.mem_write(0xB0, 4, 0)
    assert not intr.level  # still high, but an edge delivers once
    pin.lower()
    pin.raise_()
    assert lapic.irr == 1 << 0x33


def test_level_pins_hold_remote_irr_until_the_eoi_broadcast() -> None:
    io, lapic, _ = wired()
    reg(io, 0x10 + 8, 0x8044)  # pin 4: vector 0x44, level
    pin = io.pin(4)
    pin.raise_()
    assert reg(io, 0x10 + 8) & (1 << 14)  # remote IRR
    assert lapic.tmr >> 0x44 & 1
    assert lapic.acknowledge(lambda: 0).vector == 0x44
    assert lapic.irr == 0
    lapic.mem_write(0xB0, 4, 0)  # EOI of a level vector: broadcast, pin still high: again
    assert lapic.irr == 1 << 0x44 and reg(io, 0x10 + 8) & (1 << 14)
    lapic.acknowledge(lambda: 0)
    pin.lower()
    lapic.mem_write(0xB0, 4, 0)
    assert lapic.irr == 0 and not reg(io, 0x10 + 8) & (1 << 14)
    # the version 0x20 EOI register does the same
    pin.raise_()
    lapic.acknowledge(lambda: 0)
    pin.lower()
    io.mem_write(0x40, 4, 0x44)
    assert not reg(io, 0x10 + 8) & (1 << 14)


def test_nmi_extint_and_destinations() -> None:
    io, lapic, _ = wired()
    reg(io, 0x10 + 10, 0x400)  # pin 5: NMI
    io.pin(5).raise_()
    assert lapic.take_nmi() and lapic.nmi_source == "I/O APIC pin 5"
    io.pic_vector = lambda: 0x77
    reg(io, 0x10 + 12, 0x700)  # pin 6: ExtINT: the vector comes from the 8259s
    io.pin(6).raise_()
    assert lapic.irr == 1 << 0x77
    reg(io, 0x11 + 14, 0x05000000)  # pin 7 to physical APIC 5: nobody
    reg(io, 0x10 + 14, 0x47)
    io.pin(7).raise_()
    assert not lapic.irr >> 0x47 & 1 and io.deliveries == 3
    reg(io, 0x11 + 16, 0x01000000)  # pin 8, logical MDA 1; the LDR is still 0
    reg(io, 0x10 + 16, 0x848)
    io.pin(8).raise_()
    assert not lapic.irr >> 0x48 & 1
    lapic.mem_write(0xD0, 4, 0x01000000)
    io.pin(8).lower()
    io.pin(8).raise_()
    assert lapic.irr >> 0x48 & 1


# ---------------------------------------------------------------- guests
def pit_guest(tmp_path, redirection: int):
    body = (
        MASK_PICS
        + ioapic_write(0x10 + 2 * 2, redirection)  # pin 2: the PIT's IRQ 0
        + ioapic_write(0x11 + 2 * 2, 0)
        + "    movb $0x34, %al\n    outb %al, $0x43\n"
        + "    movb $100, %al\n    outb %al, $0x40\n    movb $0, %al\n    outb %al, $0x40\n"
        + "    sti\n"
        + spin(500_000)
        + "    cli\n"
    )
    return kernel(body, tmp_path, f"pit{redirection:x}")


def test_the_pit_through_the_io_apic(tmp_path) -> None:
    elf = pit_guest(tmp_path, 0x30)
    results = []
    for arm in (True, False):
        m = Machine.from_elf(elf)
        m.arm_timer = arm
        r = m.run(max_instructions=5_000_000)
        assert r.stop_reason == "debug-exit", r.describe()
        results.append((vectors(m), r.instructions))
    assert results[0] == results[1]
    seen = results[0][0]
    # 100 PIT ticks = 83.8 us; about 1 ms of spinning
    assert set(seen) == {0x30} and 10 <= len(seen) <= 13
    assert {e.source for e in r.trace.entries} == {"I/O APIC pin 2"}
    assert m.ioapic.deliveries == len(seen)


def test_a_masked_io_apic_pin_delivers_nothing(tmp_path) -> None:
    m, r = run(pit_guest(tmp_path, 0x10030))
    assert r.stop_reason == "debug-exit", r.describe()
    assert vectors(m) == []


def test_ioapic_pin_lines_are_what_devices_get(tmp_path) -> None:
    m = Machine()
    assert m.ioapic_pin(2) is m.ioapic.pin(2)
    m.ioapic.write_register(0x10 + 2 * 9, 0x59)
    m.ioapic_pin(9).raise_()
    assert m.lapic.irr == 1 << 0x59
    with pytest.raises(ValueError):
        m.ioapic_pin(24)
    # an ISA IRQ reaches both controllers
    m.isa_irq(0).raise_()
    assert m.pics.master.irr & 1 and m.ioapic.levels & (1 << 2)
    assert IOAPIC == 0xFEC00000


def test_checkpoint_round_trip_through_the_io_apic(tmp_path) -> None:
    m = Machine.from_elf(pit_guest(tmp_path, 0x8030))  # level-triggered: remote IRR in play
    m.run(max_instructions=300_000)
    cp = m.checkpoint()
    assert cp.devices["ioapic"].lines  # the pins' levels are saved, not the wires
    first = m.run(max_instructions=5_000_000)
    seen, state = vectors(m), m.ioapic.to_dict()
    m.restore(cp)
    again = m.run(max_instructions=5_000_000)
    assert (vectors(m), m.ioapic.to_dict(), again.instructions) == (seen, state, first.instructions)
    m.isa_irq(5).raise_()  # the restored pins are still the wires the ISA lines drive
    assert m.ioapic.levels & (1 << 5)
