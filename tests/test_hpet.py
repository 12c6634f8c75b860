"""devices/hpet.py as a guest driver programs it: 32-bit register accesses at 0xFED00000 + offset,
a virtual clock the test moves, and plain IrqLines that count what the HPET raises."""

from __future__ import annotations

import logging

import pytest

from devices import hpet as H
from devices.irq import IrqLine
from emu.checkpoint import restore_device, save_device


class Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


class Wire:
    """An IrqLine's receiving end: counts rising edges, keeps the level."""

    def __init__(self, n: int) -> None:
        self.edges = 0
        self.level = False
        self.line = IrqLine(f"GSI {n}", self._changed)

    def _changed(self, level: bool) -> None:
        if level and not self.level:
            self.edges += 1
        self.level = level


class Board:
    """An HPET with its 24 GSI lines, and a driver's helpers."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.wires = [Wire(n) for n in range(H.GSI_COUNT)]
        self.hpet = H.Hpet([w.line for w in self.wires], self.clock)

    def rd(self, offset: int) -> int:
        return self.hpet.mem_read(offset, 4)

    def wr(self, offset: int, value: int) -> None:
        self.hpet.mem_write(offset, 4, value)

    def rd64(self, offset: int) -> int:  # as the engine splits an 8-byte read
        return self.rd(offset) | self.rd(offset + 4) << 32

    def wr64(self, offset: int, value: int) -> None:
        self.wr(offset, value & 0xFFFFFFFF)
        self.wr(offset + 4, value >> 32)

    def timer(self, n: int, reg: int = 0) -> int:
        return H.TIMER_BASE + n * H.TIMER_STRIDE + reg

    def run_to(self, ns: int) -> None:
        """Advance the clock as the scheduler does: to each event in turn, ticking."""
        while True:
            event = self.hpet.next_event(self.clock.ns)
            if event is None or event > ns:
                break
            self.clock.ns = max(self.clock.ns, event)
            self.hpet.tick(self.clock.ns)
        self.clock.ns = ns
        self.hpet.tick(ns)


@pytest.fixture
def b() -> Board:
    return Board()


def test_capabilities_are_qemus(b: Board) -> None:
    assert b.rd(H.REG_ID) == 0x8086A201
    assert b.rd(H.REG_PERIOD) == 10_000_000  # femtoseconds per tick: 100 MHz
    caps = b.rd(H.REG_ID)
    assert (caps >> 8) & 0x1F == 2 and caps & (1 << 13) and caps & (1 << 15)  # 3 timers, 64-bit
    for n in range(3):
        config = b.rd(b.timer(n))
        assert config == H.TN_PERIODIC_CAP | H.TN_SIZE_CAP  # no FSB capability, all disabled
        assert b.rd(b.timer(n, H.TN_CAPS)) == 0x00000004  # I/O APIC input 2 only
        assert b.rd64(b.timer(n, H.TN_COMPARATOR)) == (1 << 64) - 1
    assert b.rd(H.REG_CONFIG) == 0 and b.rd(H.REG_STATUS) == 0
    assert b.rd(b.timer(3)) == 0  # no fourth timer


def test_main_counter_counts_virtual_time_while_enabled(b: Board) -> None:
    b.clock.ns = 5_000
    assert b.rd64(H.REG_COUNTER) == 0  # halted
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)
    b.clock.ns += 1_000
    assert b.rd64(H.REG_COUNTER) == 100  # 10 ns per tick
    b.wr(H.REG_CONFIG, 0)
    b.clock.ns += 50_000
    assert b.rd64(H.REG_COUNTER) == 100  # halted, it holds
    b.wr64(H.REG_COUNTER, 0xFFFF_FFFF_0000_0000)  # written while halted
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)
    b.clock.ns += 20
    assert b.rd64(H.REG_COUNTER) == 0xFFFF_FFFF_0000_0002


def test_counter_write_while_running_is_ignored(b: Board, caplog) -> None:
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)
    b.clock.ns = 1_000
    with caplog.at_level(logging.INFO, logger="devices.hpet"):
        b.wr(H.REG_COUNTER, 5)
        b.wr(H.REG_COUNTER, 6)
    assert b.rd(H.REG_COUNTER) == 100
    assert sum("main counter written while it runs" in r.message for r in caplog.records) == 1


def _route(gsi: int) -> int:
    return gsi << H.TN_ROUTE_SHIFT


def test_one_shot_edge_fires_once_on_its_route(b: Board) -> None:
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)
    b.wr(b.timer(0), H.TN_INT_ENABLE | _route(2))
    b.wr64(b.timer(0, H.TN_COMPARATOR), 1_000)  # 10 µs
    assert b.hpet.next_event(b.clock.ns) == 10_000
    b.run_to(9_999)
    assert b.wires[2].edges == 0
    b.run_to(10_000)
    assert b.wires[2].edges == 1 and not b.wires[2].level  # a pulse
    assert b.rd(H.REG_STATUS) == 0  # edge mode sets no status bit
    b.run_to(1_000_000)
    assert b.wires[2].edges == 1 and b.hpet.next_event(b.clock.ns) is None
    assert sum(w.edges for w in b.wires) == 1


def test_periodic_fires_every_period_and_advances_the_comparator(b: Board) -> None:
    periodic = H.TN_INT_ENABLE | H.TN_PERIODIC | _route(2)
    # "value set" lets one comparator write through, then clears itself: a driver sets it
    # before each half of the first comparator, then writes the period
    b.wr(b.timer(0), periodic | H.TN_SET_VALUE)
    b.wr(b.timer(0, H.TN_COMPARATOR + 4), 0)
    assert not b.rd(b.timer(0)) & H.TN_SET_VALUE
    b.wr(b.timer(0), periodic | H.TN_SET_VALUE)
    b.wr(b.timer(0, H.TN_COMPARATOR), 500)
    b.wr64(b.timer(0, H.TN_COMPARATOR), 500)
    assert b.rd64(b.timer(0, H.TN_COMPARATOR)) == 500 and b.hpet.timers[0].period == 500
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)
    b.run_to(5_000)
    assert b.wires[2].edges == 1
    assert b.rd64(b.timer(0, H.TN_COMPARATOR)) == 1_000
    b.run_to(50_000)
    assert b.wires[2].edges == 10
    assert b.rd64(b.timer(0, H.TN_COMPARATOR)) == 5_500


def test_periodic_without_value_set_keeps_the_comparator(b: Board) -> None:
    b.wr(b.timer(1), H.TN_INT_ENABLE | H.TN_PERIODIC | _route(2))
    b.wr64(b.timer(1, H.TN_COMPARATOR), 300)  # no "value set": only the period changes
    assert b.rd64(b.timer(1, H.TN_COMPARATOR)) == (1 << 64) - 1
    assert b.hpet.timers[1].period == 300


def test_a_comparator_far_behind_catches_up_in_one_step(b: Board) -> None:
    b.wr(b.timer(0), H.TN_INT_ENABLE | H.TN_PERIODIC | H.TN_SET_VALUE | _route(2))
    b.wr(b.timer(0, H.TN_COMPARATOR), 7)  # the high half stays all-ones: far in the past
    b.wr(b.timer(0, H.TN_COMPARATOR), 3)
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)
    b.run_to(10)
    assert b.wires[2].edges == 1  # at once
    # 0xFFFF_FFFF_0000_0007 + k * 3 wraps to 3, the first such value ahead of the counter (1)
    assert b.rd64(b.timer(0, H.TN_COMPARATOR)) == 3


def test_level_triggered_holds_until_status_is_cleared(b: Board) -> None:
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)
    b.wr(b.timer(2), H.TN_INT_ENABLE | H.TN_LEVEL | _route(20))
    b.wr64(b.timer(2, H.TN_COMPARATOR), 10)
    b.run_to(1_000)
    assert b.wires[20].level and b.rd(H.REG_STATUS) == 0b100
    b.wr(H.REG_STATUS, 0b011)  # other bits: no effect
    assert b.wires[20].level
    b.wr(H.REG_STATUS, 0b100)  # write 1 to clear
    assert not b.wires[20].level and b.rd(H.REG_STATUS) == 0


def test_32_bit_mode_truncates_and_a_one_shot_fires_at_the_wrap(b: Board) -> None:
    b.wr64(H.REG_COUNTER, 0xFFFF_FFF0)
    b.wr(b.timer(0), H.TN_32BIT | _route(2))
    assert b.rd64(b.timer(0, H.TN_COMPARATOR)) == 0xFFFF_FFFF  # truncated
    b.wr(b.timer(0, H.TN_COMPARATOR), 0x20)
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)
    b.wr(b.timer(0), H.TN_32BIT | H.TN_INT_ENABLE | _route(2))
    b.run_to(15 * 10 - 1)
    assert b.wires[2].edges == 0
    b.run_to(15 * 10)  # the 32-bit counter wraps: QEMU fires there too
    assert b.wires[2].edges == 1
    b.run_to((16 + 0x20) * 10)  # and then at the comparator
    assert b.wires[2].edges == 2
    b.run_to(10_000_000)
    assert b.wires[2].edges == 2


def test_32_bit_periodic_wraps_the_comparator(b: Board) -> None:
    b.wr64(H.REG_COUNTER, 0xFFFF_FF00)
    b.wr(b.timer(0), H.TN_32BIT | H.TN_PERIODIC | H.TN_SET_VALUE | H.TN_INT_ENABLE | _route(2))
    b.wr(b.timer(0, H.TN_COMPARATOR), 0xFFFF_FF80)
    b.wr(b.timer(0, H.TN_COMPARATOR), 0x100)
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)
    b.run_to(0x80 * 10)
    assert b.wires[2].edges == 1 and b.rd(b.timer(0, H.TN_COMPARATOR)) == 0x80
    b.run_to(0x180 * 10)
    assert b.wires[2].edges == 2 and b.rd(b.timer(0, H.TN_COMPARATOR)) == 0x180


def test_disabled_interrupt_raises_nothing(b: Board) -> None:
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)
    b.wr(b.timer(0), H.TN_LEVEL | _route(2))  # interrupt enable clear
    b.wr64(b.timer(0, H.TN_COMPARATOR), 10)
    b.run_to(10_000)
    assert b.wires[2].edges == 0 and b.rd(H.REG_STATUS) == 0
    b.wr(b.timer(0), H.TN_INT_ENABLE | _route(2))
    b.wr(H.REG_CONFIG, 0)  # halting the counter stops every timer
    b.run_to(20_000)
    assert b.wires[2].edges == 0 and b.hpet.next_event(b.clock.ns) is None


def test_legacy_replacement_takes_irq0_and_irq8_from_the_pit_and_the_rtc(b: Board) -> None:
    pit, rtc = b.hpet.pit_input, b.hpet.rtc_input
    pit.raise_()
    pit.lower()
    rtc.raise_()
    assert b.wires[0].edges == 1 and b.wires[8].level  # passed through
    b.wr(H.REG_CONFIG, H.CFG_ENABLE | H.CFG_LEGACY)
    assert not b.wires[8].level  # the RTC is cut off
    pit.raise_()
    pit.lower()
    assert b.wires[0].edges == 1  # and so is the PIT
    b.wr(b.timer(0), H.TN_INT_ENABLE | _route(5))  # the route field does not count now
    b.wr64(b.timer(0, H.TN_COMPARATOR), 10)
    b.wr(b.timer(1), H.TN_INT_ENABLE | _route(5))
    b.wr64(b.timer(1, H.TN_COMPARATOR), 20)
    b.run_to(1_000)
    assert b.wires[0].edges == 2 and b.wires[8].edges == 2 and b.wires[5].edges == 0
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)  # legacy off: the RTC's level comes back
    assert b.wires[8].level
    assert b.hpet._route(0) == 5


def test_bad_accesses_are_handled_as_qemu_does_and_logged_once(b: Board, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="devices.hpet"):
        assert b.hpet.mem_read(H.REG_ID, 1) == 0  # QEMU takes 4 and 8 bytes only
        assert b.hpet.mem_read(H.REG_ID, 1) == 0
        assert b.hpet.mem_read(H.REG_ID, 2) == 0
        b.hpet.mem_write(H.REG_CONFIG, 1, H.CFG_ENABLE)  # dropped
        assert b.rd(H.REG_CONFIG) == 0
        b.wr(H.REG_ID, 0)  # read-only
        b.wr(H.REG_PERIOD, 1)
        b.wr(b.timer(0, H.TN_CAPS), 0xFF)
        assert b.rd(H.REG_ID) == 0x8086A201 and b.rd(b.timer(0, H.TN_CAPS)) == 4
        b.wr(H.REG_CONFIG, 0xFFFF_FFFF)  # only ENABLE and LEGACY are writable
        assert b.rd(H.REG_CONFIG) == 3
        b.wr(b.timer(0), 0xFFFF_FFFF)  # the capability bits stay
        assert b.rd(b.timer(0)) == H.TN_WRITABLE | H.TN_PERIODIC_CAP | H.TN_SIZE_CAP
        b.wr(0x500, 1)  # past the 1 KiB
        assert b.rd(0x500) == 0
    messages = [r.message for r in caplog.records]
    assert sum("1-byte read" in m for m in messages) == 1
    assert any("read-only capabilities" in m for m in messages)
    assert any("read-only interrupt routing capability" in m for m in messages)


def test_a_route_outside_the_capability_is_driven_and_noted(b: Board, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="devices.hpet"):
        b.wr(b.timer(2), H.TN_INT_ENABLE | _route(11))
    assert any("outside its capability" in r.message for r in caplog.records)
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)
    b.wr64(b.timer(2, H.TN_COMPARATOR), 5)
    b.run_to(100)
    assert b.wires[11].edges == 1


def test_fsb_delivery_is_not_modelled(b: Board, caplog) -> None:
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)
    with caplog.at_level(logging.INFO, logger="devices.hpet"):
        b.wr(b.timer(0), H.TN_INT_ENABLE | H.TN_FSB_ENABLE)
        b.wr64(b.timer(0, H.TN_FSB), 0xFEE0_0000_0000_0030)
        b.wr64(b.timer(0, H.TN_COMPARATOR), 5)
        b.run_to(100)
    assert b.rd64(b.timer(0, H.TN_FSB)) == 0xFEE0_0000_0000_0030
    assert sum(w.edges for w in b.wires) == 0
    assert any("FSB (MSI) delivery is not modelled" in r.message for r in caplog.records)


def test_reset_and_checkpoint(b: Board) -> None:
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)
    b.wr(b.timer(0), H.TN_INT_ENABLE | H.TN_LEVEL | _route(3))
    b.wr64(b.timer(0, H.TN_COMPARATOR), 100)
    b.run_to(500)
    saved = save_device(b.hpet)
    b.run_to(2_000)
    b.wr(H.REG_STATUS, 1)
    b.wr(b.timer(0, H.TN_COMPARATOR), 7)
    restore_device(b.hpet, saved)
    b.clock.ns = 500
    assert b.rd(b.timer(0, H.TN_COMPARATOR)) == 100 and b.rd(H.REG_STATUS) == 0
    assert b.hpet.next_event(500) == 1_000
    b.run_to(1_000)
    assert b.rd(H.REG_STATUS) == 1 and b.hpet.gsi[3].level
    b.hpet.reset()
    assert b.rd(H.REG_CONFIG) == 0 and b.rd(H.REG_STATUS) == 0 and not b.wires[3].level
    assert b.hpet.next_event(b.clock.ns) is None


def test_the_machine_maps_it_and_legacy_mode_cuts_the_pit_off() -> None:
    from emu import Machine

    m = Machine()
    assert m.memory.find(H.HPET_BASE).name == "HPET"
    assert m.hpet in m.scheduler.timed and m._stateful_devices()["hpet"] is m.hpet
    m.pics.master.imr = 0  # unmask IRQ 0
    m.pit.irq0.raise_()
    m.pit.irq0.lower()
    assert m.pics.master.irr & 1
    m.pics.master.irr = 0
    m.hpet.mem_write(H.REG_CONFIG, 4, H.CFG_LEGACY)
    assert not m.scheduler.pit_connected()
    m.pit.irq0.raise_()
    m.pit.irq0.lower()
    assert not m.pics.master.irr & 1


@pytest.mark.images
def test_the_apic_probe_sees_the_tables_and_the_hpet_as_under_qemu(image) -> None:
    """images/apic up to its local APIC part (the tables both ways, the HPET's registers and
    bad accesses, its counter, one-shot, periodic and 32-bit timers through the 8259s with
    legacy replacement routing) prints what it printed under QEMU 7.2 (the whole probe is
    compared in test_platform_probes.py)."""
    from pathlib import Path

    from emu import Machine

    golden = Path(__file__).parent / "golden" / "qemu" / "apic.serial"
    theirs = golden.read_text(encoding="ascii").replace("\r\n", "\n").split("\n")
    r = Machine.from_elf(image("apic")).run(max_instructions=500_000_000)
    assert r.stop_reason == "debug-exit" and r.exit_code == 0, r.describe()
    ours = r.serial.decode("ascii").replace("\r\n", "\n").split("\n")

    def before_the_lapic(lines: list[str]) -> list[str]:
        end = next(i for i, line in enumerate(lines) if line.startswith("lapic: "))
        return lines[:end]

    expected = before_the_lapic(theirs)
    assert sum(line.startswith("hpet") for line in expected) >= 20
    assert before_the_lapic(ours) == expected


@pytest.mark.images
def test_a_checkpoint_in_the_middle_of_the_hpet_part_replays_the_same(image) -> None:
    from emu import Machine

    m = Machine.from_elf(image("apic"))

    def armed() -> bool:
        return any(t.due_ns is not None and t.config & H.TN_INT_ENABLE for t in m.hpet.timers)

    while not armed():  # into the HPET's timer tests: a timer on its way
        assert m.run(max_instructions=200).stop_reason == "instruction-limit"
    cp = m.checkpoint()
    first = m.run(max_instructions=500_000_000)
    m.restore(cp)
    again = m.run(max_instructions=500_000_000)
    assert first.stop_reason == again.stop_reason == "debug-exit"
    assert first.serial == again.serial and first.instructions == again.instructions


def test_a_one_shot_with_its_interrupt_off_is_no_event(b: Board) -> None:
    """Linux's hpet_calibrate rewrites such a comparator every few instructions: its firing
    would change nothing a guest sees, so it is no event the machine must stop for, and
    enabling the interrupt starts it from the comparator."""
    b.wr(H.REG_CONFIG, H.CFG_ENABLE)
    b.wr(b.timer(0), _route(2))
    b.hpet.events_changed = False
    for counter in range(10, 200, 10):
        b.wr64(b.timer(0, H.TN_COMPARATOR), counter)
        assert b.hpet.next_event(b.clock.ns) is None and not b.hpet.events_changed
    b.run_to(5_000)
    assert b.wires[2].edges == 0 and b.rd(H.REG_STATUS) == 0
    b.wr64(b.timer(0, H.TN_COMPARATOR), 1000)
    b.wr(b.timer(0), H.TN_INT_ENABLE | _route(2))
    assert b.hpet.events_changed and b.hpet.next_event(b.clock.ns) == 10_000
    b.run_to(10_000)
    assert b.wires[2].edges == 1
    # periodic with the interrupt off still runs: its comparator advances where a guest sees it
    b.wr(b.timer(1), H.TN_PERIODIC | H.TN_SET_VALUE | _route(2))
    b.wr64(b.timer(1, H.TN_COMPARATOR), 1100)
    b.wr64(b.timer(1, H.TN_COMPARATOR), 50)
    b.run_to(11_000)
    assert b.rd64(b.timer(1, H.TN_COMPARATOR)) > 1100 and b.wires[2].edges == 1
