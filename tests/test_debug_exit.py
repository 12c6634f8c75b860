"""isa-debug-exit and the port 0xE9 console, alone and wired into a machine."""

from __future__ import annotations

import logging

import pytest

from devices.debug_exit import DebugConsole, DebugExit, exit_status


@pytest.mark.parametrize("value,status", [(0, 1), (1, 3), (0x10, 0x21), (0x7F, 0xFF)])
def test_exit_status_is_qemus(value: int, status: int) -> None:
    assert exit_status(value) == status


def test_write_reports_the_value_masked_to_the_device_width() -> None:
    seen: list[int] = []
    dev = DebugExit(seen.append)
    dev.write(0, 1, 0x42)
    dev.write(0, 2, 0x1234)  # a 1-byte device sees the low byte
    assert seen == [0x42, 0x34]
    wide = DebugExit(seen.append, iosize=4)
    wide.write(0, 4, 0x12345678)
    assert seen[-1] == 0x12345678


def test_read_is_not_decoded_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    dev = DebugExit(lambda v: None)
    with caplog.at_level(logging.INFO, logger="devices.debug_exit"):
        assert dev.read(0, 1) == 0xFF
        assert dev.read(0, 2) == 0xFFFF
    assert sum("write-only" in r.message for r in caplog.records) == 1


def test_console_prints_and_reads_back_e9() -> None:
    out = bytearray()
    con = DebugConsole(out.extend)
    for b in b"hi\n":
        con.write(0, 1, b)
    assert bytes(out) == b"hi\n"
    assert con.read(0, 1) == 0xE9


def test_bad_iosize() -> None:
    with pytest.raises(ValueError):
        DebugExit(lambda v: None, iosize=3)
