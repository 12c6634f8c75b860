"""The clock rate (``Machine(cpu_mhz=N)``, ``--cpu-mhz N``): at N MHz an instruction takes
1000/N ns of virtual time, so every timer (PIT, RTC, TSC, local APIC timer) sees N/1000 times
as many instructions per period as at the nominal 1000 MHz."""

from __future__ import annotations

import re
import statistics

import pytest
import timer_guest

from emu import Machine
from emu.cli import main
from emu.errors import ConfigError

PIT_1KHZ = 1193  # 999,847 ns per period


def tick_intervals(cpu_mhz: int, instructions: int) -> list[int]:
    """Instructions between the PIT interrupts a busy loop (IF=1) takes at ``cpu_mhz``."""
    m = timer_guest.machine(PIT_1KHZ, loop=1 << 40, cpu_mhz=cpu_mhz)
    r = m.run(max_instructions=instructions)
    assert r.stop_reason == "instruction-limit", r.describe()
    ticks = [e.instructions for e in r.trace.entries if e.kind == "external" and e.vector == 0x20]
    assert int.from_bytes(
        m.ram[timer_guest.COUNTER : timer_guest.COUNTER + 8].tobytes(), "little"
    ) == len(ticks)
    return [b - a for a, b in zip(ticks, ticks[1:], strict=False)]


def test_a_1khz_pit_takes_ten_times_the_instructions_per_tick_at_10000_mhz() -> None:
    nominal = tick_intervals(1000, 12_500_000)
    fast = tick_intervals(10_000, 125_000_000)
    assert len(nominal) == len(fast) == 11  # 12.5 ms of virtual time, at both rates
    # 999,847 ns per period: as many instructions at 1000 MHz, ten times as many at 10000
    # (an interrupt is taken at a block boundary of the five-instruction loop)
    assert abs(statistics.median(nominal) - 999_847) <= 5
    assert abs(statistics.median(fast) - 9_998_470) <= 5


def test_a_slower_clock_takes_fewer_instructions_per_tick() -> None:
    slow = tick_intervals(100, 1_250_000)
    assert len(slow) == 11 and abs(statistics.median(slow) - 99_985) <= 5


@pytest.mark.images
def test_tsc_rtc_and_hlt_follow_the_clock_rate(image) -> None:
    """images/timer sleeps in HLT for 10 ticks of a 100 Hz PIT and reads the TSC around
    them: 100 ms of virtual time at any rate, in ten times the TSC cycles at 10000 MHz."""
    cycles = {}
    for mhz in (1000, 10_000):
        r = Machine.from_elf(image("timer"), cpu_mhz=mhz).run(max_instructions=5_000_000)
        assert r.stop_reason == "debug-exit" and r.exit_code == 0, r.describe()
        assert r.serial.count(b"RTC: 2024-01-01 00:00:00") == 2
        assert r.cpu_mhz == mhz and r.to_dict()["cpu_mhz"] == mhz
        cycles[mhz] = int(re.search(rb"10 ticks in (\d+) TSC cycles", r.serial).group(1))
    assert 99_900_000 < cycles[1000] < 100_100_000
    assert 999_000_000 < cycles[10_000] < 1_001_000_000


def test_virtual_time_of_a_result_uses_the_clock_rate() -> None:
    m = timer_guest.machine(PIT_1KHZ, loop=1 << 40, cpu_mhz=4000)
    r = m.run(max_instructions=4_000_000)
    assert r.virtual_time_ns == 1_000_000 == m.now_ns()
    assert "at 4000 MHz" in r.describe()


@pytest.mark.parametrize("value", [0, -5, 1_000_001, 2.5, "fast", True])
def test_a_bad_clock_rate_is_a_config_error(value) -> None:
    with pytest.raises(ConfigError, match="clock rate"):
        Machine(cpu_mhz=value)


@pytest.mark.parametrize("value", ["0", "abc", "1.5"])
def test_cli_rejects_a_bad_clock_rate_in_one_line(capsys, value: str) -> None:
    with pytest.raises(SystemExit) as e:
        main(["run", "hello", "--cpu-mhz", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--cpu-mhz" in err and err.count("\n") == 1
