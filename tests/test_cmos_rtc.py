"""The CMOS clock read and programmed as kernels do, on virtual time."""

from __future__ import annotations

import datetime as dt

import pytest

from devices.cmos_rtc import NS, CmosRtc, parse_rtc_base
from devices.irq import IrqLine

# every test also runs with the promises of stable_read checked (tests/stable_reads.py)
pytestmark = pytest.mark.usefixtures("port_table")


class Clock:
    def __init__(self, base=dt.datetime(2024, 1, 1, 0, 0, 0)) -> None:
        self.t = 0
        self.levels: list[bool] = []
        self.rtc = CmosRtc(IrqLine("IRQ8", self.levels.append), lambda: self.t, base)

    def get(self, reg: int) -> int:
        self.rtc.write(0, 1, reg)
        return self.rtc.read(1, 1)

    def put(self, reg: int, value: int) -> None:
        self.rtc.write(0, 1, reg)
        self.rtc.write(1, 1, value)


def test_bcd_24h_time_and_date_advance_with_virtual_time() -> None:
    c = Clock(dt.datetime(2024, 2, 29, 23, 59, 58))
    assert [c.get(r) for r in (0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32)] == [
        0x58, 0x59, 0x23, 0x29, 0x02, 0x24, 0x20,
    ]  # fmt: skip
    assert c.get(0x06) == 5  # Thursday (1 = Sunday)
    c.t = 3 * NS
    assert (c.get(0x00), c.get(0x04), c.get(0x07), c.get(0x08)) == (0x01, 0x00, 0x01, 0x03)


def test_binary_and_12_hour_modes() -> None:
    c = Clock(dt.datetime(2024, 1, 1, 15, 4, 5))
    c.put(0x0B, 0x04)  # binary, 12-hour
    assert c.get(0x04) == 0x80 | 3  # 3 PM
    assert c.get(0x02) == 4 and c.get(0x00) == 5


def test_update_in_progress_flag_before_each_second() -> None:
    c = Clock()
    c.t = NS // 2
    assert not c.get(0x0A) & 0x80
    c.t = NS - 100_000
    assert c.get(0x0A) & 0x80
    assert c.get(0x0A) & 0x7F == 0x26


def test_periodic_interrupt_on_irq8_and_read_c_acknowledges() -> None:
    c = Clock()
    c.put(0x0A, 0x26)  # 1024 Hz
    c.put(0x0B, 0x42)  # PIE, 24h
    ev = c.rtc.next_event(0)
    assert ev == NS // 1024
    c.t = ev
    c.rtc.tick(c.t)
    assert c.levels[-1] is True
    assert c.get(0x0C) == 0xC0  # IRQF | PF
    assert c.levels[-1] is False and c.get(0x0C) == 0


def test_update_ended_and_alarm_interrupts() -> None:
    c = Clock()
    c.put(0x01, 0x02)  # alarm at hh:mm:02
    c.put(0x03, 0xFF)
    c.put(0x05, 0xFF)
    c.put(0x0B, 0x32)  # AIE | UIE | 24h
    c.t = NS
    c.rtc.tick(c.t)
    assert c.get(0x0C) == 0xD0  # update (and the periodic flag, set whatever PIE says)
    c.t = 2 * NS
    c.rtc.tick(c.t)
    assert c.get(0x0C) == 0xF0  # update and alarm


def test_setting_the_clock_with_the_set_bit() -> None:
    c = Clock()
    c.put(0x0B, 0x82)  # SET: updates stop
    c.put(0x04, 0x12)
    c.put(0x02, 0x34)
    c.t = 5 * NS
    assert c.get(0x00) == 0x00  # frozen
    c.put(0x0B, 0x02)
    c.t = 7 * NS
    assert (c.get(0x04), c.get(0x02), c.get(0x00)) == (0x12, 0x34, 0x02)


def test_cmos_ram_and_nmi_bit() -> None:
    c = Clock()
    c.rtc.write(0, 1, 0x80 | 0x40)
    assert c.rtc.nmi_disabled
    c.rtc.write(1, 1, 0x5A)
    assert c.get(0x40) == 0x5A
    assert c.get(0x0D) == 0x80


def test_rtc_base_parsing() -> None:
    assert parse_rtc_base("2030-05-06T07:08:09") == dt.datetime(2030, 5, 6, 7, 8, 9)


@pytest.mark.parametrize("mode", [0x02, 0x06])  # BCD and binary, 24-hour
def test_the_seconds_register_follows_the_date_it_shows(mode: int) -> None:
    """The seconds register a kernel polls is computed without building the date: it must be
    the second of that date at every instant, across minute ends and a clock the guest set
    backwards or forwards (its offset may be negative)."""
    c = Clock(dt.datetime(2023, 12, 31, 23, 58, 37, 250_000))
    c.put(0x0B, mode)
    for step, offset in ((0, 0), (1, -3_725), (2, 86_399), (3, -1)):
        c.rtc.offset_s = offset
        for t in range(0, 130 * NS, 7 * NS + step * 333_333_333):
            c.t = t
            shown = c.rtc.now(t).second
            assert c.get(0x00) == (shown if mode & 0x04 else (shown // 10) << 4 | shown % 10), t
