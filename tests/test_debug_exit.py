"""isa-debug-exit and the port 0xE9 debug console, driven as a guest drives them."""

from __future__ import annotations

import logging

import pytest

from devices.debug_exit import (
    DEBUG_CONSOLE_READBACK,
    DEBUG_EXIT_IOSIZE,
    DebugConsole,
    DebugExit,
    exit_status,
)


@pytest.mark.parametrize("value,status", [(0, 1), (1, 3), (0x10, 0x21), (0x7F, 0xFF), (0x80, 1)])
def test_exit_status_is_qemus(value: int, status: int) -> None:
    assert exit_status(value) == status  # (v << 1) | 1, low 8 bits as the host sees them


def test_a_write_reports_the_value_masked_to_the_access_size() -> None:
    seen: list[int] = []
    dev = DebugExit(seen.append)
    assert dev.iosize == DEBUG_EXIT_IOSIZE == 1
    dev.write(0, 1, 0x42)  # outb
    dev.write(0, 1, 0x1FF)  # only the byte on the bus
    dev.write(0, 2, 0x12345)  # outw
    dev.write(0, 4, 0x1_2345_6789)  # outl
    assert seen == [0x42, 0xFF, 0x2345, 0x2345_6789]


def test_every_port_of_the_window_exits() -> None:
    seen: list[int] = []
    dev = DebugExit(seen.append, iosize=4)
    dev.write(3, 1, 0x21)
    assert seen == [0x21]


def test_read_returns_zero_like_qemu_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []
    dev = DebugExit(seen.append)
    with caplog.at_level(logging.INFO, logger="devices.debug_exit"):
        assert dev.read(0, 1) == 0
        assert dev.read(0, 4) == 0
    assert sum("returns 0" in r.getMessage() for r in caplog.records) == 1
    assert seen == []  # reading never ends the run


def test_iosize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="iosize"):
        DebugExit(lambda v: None, iosize=0)


def test_console_prints_bytes_and_reads_back_e9(caplog: pytest.LogCaptureFixture) -> None:
    out = bytearray()
    con = DebugConsole(out.extend)
    for b in b"hi\n":
        con.write(0, 1, b)
    with caplog.at_level(logging.INFO, logger="devices.debug_exit"):
        con.write(0, 2, 0x4142)  # a wide write prints its low byte
    assert bytes(out) == b"hi\nB"
    assert "low byte" in caplog.text
    assert con.read(0, 1) == DEBUG_CONSOLE_READBACK == 0xE9


def test_console_without_a_sink_drops_bytes() -> None:
    con = DebugConsole(None)
    con.write(0, 1, ord("x"))
    assert con.read(0, 1) == 0xE9
