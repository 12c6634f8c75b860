"""The 8254 programmed as kernels program it, in virtual time."""

from __future__ import annotations

from devices.irq import IrqLine
from devices.pit8254 import PIT_HZ, Pit8254, Port61, ticks_between, time_of_tick


class Timer:
    def __init__(self) -> None:
        self.t = 0
        self.edges = 0
        self.irq = IrqLine("IRQ0", lambda level: setattr(self, "edges", self.edges + level))
        self.pit = Pit8254(self.irq, lambda: self.t)
        self.port61 = Port61(self.pit)

    def out(self, port: int, value: int) -> None:
        self.pit.write(port - 0x40, 1, value)

    def inb(self, port: int) -> int:
        return self.pit.read(port - 0x40, 1)

    def program(self, channel: int, mode: int, count: int) -> None:
        self.out(0x43, (channel << 6) | 0x30 | (mode << 1))
        self.out(0x40 + channel, count & 0xFF)
        self.out(0x40 + channel, count >> 8)

    def latch(self, channel: int) -> int:
        self.out(0x43, channel << 6)
        return self.inb(0x40 + channel) | self.inb(0x40 + channel) << 8


def test_tick_arithmetic_is_exact() -> None:
    assert ticks_between(0, 1_000_000_000) == PIT_HZ
    t = time_of_tick(0, 11932)
    assert ticks_between(0, t) == 11932 and ticks_between(0, t - 1) == 11931


def test_mode2_rate_generator_100hz() -> None:
    tm = Timer()
    divisor = PIT_HZ // 100  # 11931
    tm.program(0, 2, divisor)
    assert tm.latch(0) == divisor
    tm.t = time_of_tick(0, 100)
    assert tm.latch(0) == divisor - 100
    # IRQ 0 edges: one per period, found through next_event
    tm.t = 0
    edges = []
    for _ in range(5):
        tm.t = tm.pit.next_event(tm.t)
        tm.pit.tick(tm.t)
        edges.append(tm.t)
    assert tm.edges == 5
    assert [ticks_between(0, e) for e in edges] == [divisor * k for k in range(1, 6)]


def test_mode3_square_wave_out() -> None:
    tm = Timer()
    tm.program(0, 3, 1000)
    assert tm.pit.out(0, time_of_tick(0, 100)) is True
    assert tm.pit.out(0, time_of_tick(0, 600)) is False
    assert tm.pit.out(0, time_of_tick(0, 1100)) is True
    assert tm.latch(0) == 1000 or tm.latch(0) % 2 == 0  # counts down by two


def test_mode0_interrupt_on_terminal_count() -> None:
    tm = Timer()
    tm.program(0, 0, 500)
    assert not tm.pit.out(0)
    assert tm.pit.next_event(0) == time_of_tick(0, 500)
    tm.t = time_of_tick(0, 500)
    tm.pit.tick(tm.t)
    assert tm.pit.out(0) and tm.edges == 1
    assert tm.pit.next_event(tm.t) is None  # one shot


def test_lobyte_only_and_read_back_status() -> None:
    tm = Timer()
    tm.out(0x43, 0b00010100)  # channel 0, lobyte, mode 2
    tm.out(0x40, 0x80)
    tm.out(0x43, 0b11100010)  # read-back status of channel 0 (count not latched)
    status = tm.inb(0x40)
    assert status & 0x0E == 0x04 and (status >> 4) & 3 == 1 and status & 0x80
    assert tm.inb(0x40) == 0x80  # then the live count, low byte


def test_latch_holds_the_value() -> None:
    tm = Timer()
    tm.program(0, 2, 10000)
    tm.t = time_of_tick(0, 10)
    tm.out(0x43, 0x00)
    tm.t = time_of_tick(0, 500)  # time passes after the latch
    assert tm.inb(0x40) | tm.inb(0x40) << 8 == 9990


def test_channel2_calibration_through_port61() -> None:
    """Linux's PIT calibration: gate channel 2 on, mode 0, poll OUT2 in port 0x61."""
    tm = Timer()
    tm.port61.write(0, 1, 0x00)
    tm.program(2, 0, 1193)  # 1 ms
    assert not tm.port61.read(0, 1) & 0x20
    tm.port61.write(0, 1, 0x01)  # gate high: counting starts
    tm.t = 999_000
    assert not tm.port61.read(0, 1) & 0x20
    tm.t = 1_000_500
    assert tm.port61.read(0, 1) & 0x20


def test_gate_low_pauses_mode2() -> None:
    tm = Timer()
    tm.port61.write(0, 1, 0x01)
    tm.program(2, 2, 1000)
    tm.t = time_of_tick(0, 100)
    tm.port61.write(0, 1, 0x00)  # gate low: paused
    tm.t = time_of_tick(0, 900)
    assert tm.latch(2) == 900


def test_a_never_programmed_channel_has_access_field_0() -> None:
    """QEMU's channel 1 (no control word since power-on): read-back status 0x06 with OUT in bit
    7, no count latch, and each read gives the live low byte."""
    tm = Timer()
    ch = tm.pit.channels[1]
    ch.mode, ch.access, ch.reload, ch.start_ns, ch.null_count = 3, 0, 0x10000, 0, False
    tm.out(0x43, 0xE4)
    assert tm.inb(0x41) & 0x7F == 0x06
    tm.t = 100_000  # 119 clocks: the count went down by 238
    tm.out(0x43, 0x40)  # counter latch: nothing to latch
    assert tm.pit.channels[1].latched is None
    assert tm.inb(0x41) == (0x10000 - 2 * 119) & 0xFF
    assert tm.inb(0x41) == (0x10000 - 2 * 119) & 0xFF


def _edges_one_by_one(pit: Pit8254, first: int, before: int | None, count: int) -> list[int]:
    """The reference of ``events_from``: ``next_event`` asked again at each edge."""
    out: list[int] = []
    e: int | None = first
    while e is not None and len(out) < count:
        out.append(e)
        if before is not None and e >= before:
            break
        nxt = pit.next_event(e)
        e = nxt if nxt is not None and nxt > e else None
    return out


def test_events_from_are_next_event_asked_at_each_edge() -> None:
    """The clock hook's edge table is filled in bulk: it must hold the instants the PIT's own
    ``next_event`` gives one by one, for every mode, divisor and load time."""
    for mode in (0, 2, 3, 4):
        for divisor in (2, 3, 1193, 11932, 0):
            for start in (0, 7, 123_456_789, 10**13 + 3):
                tm = Timer()
                tm.t = start
                tm.program(0, mode, divisor)
                if mode == 2 and divisor == 3:  # counting paused once by the gate
                    tm.pit.channels[0].paused_ticks = 1
                first = tm.pit.next_event(start)
                assert first is not None
                period_ns = (divisor or 0x10000) * 1_000_000_000 // PIT_HZ
                for before in (None, first, first + 1, first + 5 * period_ns + 1, 1 << 62):
                    for count in (1, 2, 7, 256):
                        got = tm.pit.events_from(first, before, count)
                        assert got == _edges_one_by_one(tm.pit, first, before, count), (
                            mode, divisor, start, before, count,
                        )  # fmt: skip
