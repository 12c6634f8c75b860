"""The port bus: decoding, overlap rejection, all-ones for unmapped ports, access splitting."""

from __future__ import annotations

import logging

import pytest

from emu.bus import PortBus
from emu.errors import ConfigError


class Recorder:
    def __init__(self, value: int = 0) -> None:
        self.value = value
        self.log: list[tuple[str, int, int, int]] = []

    def read(self, offset: int, size: int) -> int:
        self.log.append(("r", offset, size, 0))
        return (self.value + offset) & ((1 << (8 * size)) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        self.log.append(("w", offset, size, value))


def test_dispatch_by_range_with_offsets() -> None:
    bus = PortBus()
    a, b = Recorder(0x10), Recorder(0x80)
    bus.map(0x3F8, 8, a, "COM1")
    bus.map(0x60, 1, b, "kbd")
    assert bus.read(0x3FD, 1) == 0x15
    bus.write(0x3F8, 1, 0x41)
    assert a.log == [("r", 5, 1, 0), ("w", 0, 1, 0x41)]
    assert bus.read(0x60, 1) == 0x80
    assert bus.describe() == [(0x60, 0x60, "kbd"), (0x3F8, 0x3FF, "COM1")]


@pytest.mark.parametrize("base,length", [(0x3F8, 1), (0x3F0, 9), (0x3FF, 4), (0x3F0, 0x20)])
def test_overlap_is_rejected(base: int, length: int) -> None:
    bus = PortBus()
    bus.map(0x3F8, 8, Recorder(), "COM1")
    with pytest.raises(ConfigError, match="overlap"):
        bus.map(base, length, Recorder(), "other")


def test_zero_length_and_out_of_space_are_rejected() -> None:
    bus = PortBus()
    with pytest.raises(ConfigError):
        bus.map(0x80, 0, Recorder(), "nothing")
    with pytest.raises(ConfigError):
        bus.map(0xFFFF, 2, Recorder(), "past the end")


def test_adjacent_ranges_are_fine() -> None:
    bus = PortBus()
    bus.map(0x20, 2, Recorder(), "pic1")
    bus.map(0x22, 2, Recorder(), "next")
    bus.map(0x1E, 2, Recorder(), "before")
    assert [r[0] for r in bus.describe()] == [0x1E, 0x20, 0x22]


@pytest.mark.parametrize("size,value", [(1, 0xFF), (2, 0xFFFF), (4, 0xFFFFFFFF)])
def test_unmapped_reads_all_ones_and_is_logged_once(
    size: int, value: int, caplog: pytest.LogCaptureFixture
) -> None:
    bus = PortBus()
    with caplog.at_level(logging.INFO, logger="emu.bus"):
        assert bus.read(0x1234, size) == value
        assert bus.read(0x1234, size) == value
    assert bus.unmapped_reads == 2 * size
    assert sum("0x1234" in r.message for r in caplog.records) == 1


def test_unmapped_write_is_dropped_and_counted() -> None:
    bus = PortBus()
    bus.write(0x80, 1, 0x12)
    assert bus.unmapped_writes == 1


def test_wide_access_to_byte_device_is_split_little_endian() -> None:
    bus = PortBus()
    dev = Recorder(0x10)
    bus.map(0x3F8, 8, dev, "COM1")
    assert bus.read(0x3F8, 2) == 0x1110
    bus.write(0x3F8, 4, 0x44332211)
    assert dev.log[2:] == [
        ("w", 0, 1, 0x11),
        ("w", 1, 1, 0x22),
        ("w", 2, 1, 0x33),
        ("w", 3, 1, 0x44),
    ]


def test_wide_access_to_wide_device_is_passed_through() -> None:
    bus = PortBus()
    dev = Recorder(0x1000)
    bus.map(0xCF8, 8, dev, "pci", byte_only=False)
    assert bus.read(0xCF8, 4) == 0x1000
    bus.write(0xCFC, 4, 0x80000000)
    assert dev.log[-1] == ("w", 4, 4, 0x80000000)


def test_wide_access_straddling_the_end_of_a_range() -> None:
    bus = PortBus()
    bus.map(0x3FE, 2, Recorder(0x40), "tail")
    # bytes 0x3FE, 0x3FF from the device, 0x400 and 0x401 unmapped (0xFF)
    assert bus.read(0x3FE, 4) == 0xFFFF4140


def test_a_range_knows_whether_its_device_publishes_for_the_port_table() -> None:
    """The port cache asks a device for table entries only where the range says it has any: a
    device with none of the publishing methods (the PIT) pays nothing for the table."""

    class Publisher(Recorder):
        def stable_read(self, offset: int) -> tuple[int, int | None] | None:
            return None

    class Queuer(Recorder):
        def queued_writes(self) -> tuple[int, ...]:
            return ()

    bus = PortBus()
    plain = bus.map(0x40, 4, Recorder(), "timer")
    reads = bus.map(0x60, 1, Publisher(), "kbd")
    queues = bus.map(0x3F8, 8, Queuer(), "COM1")
    assert (plain.publishes, reads.publishes, queues.publishes) == (False, True, True)


def test_the_machine_asks_the_pit_for_no_table_entries() -> None:
    from emu.machine import Machine

    m = Machine(serial_sink=None)
    by_device = {type(r.device).__name__: r.publishes for r in m.ports.bus.ranges}
    assert by_device["Pit8254"] is False
    assert by_device["CmosRtc"] is True and by_device["Uart16550"] is True
