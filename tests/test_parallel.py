"""The parallel port with nothing plugged in, as SeaBIOS probes it and a kernel reads it."""

from __future__ import annotations

from devices.parallel import ParallelPort


def test_reset_values_are_qemus() -> None:
    p = ParallelPort()
    assert (p.read(0, 1), p.read(1, 1), p.read(2, 1)) == (0x00, 0xD9, 0xCC)


def test_seabios_probe_leaves_0xaa_in_the_data_latch() -> None:
    p = ParallelPort()
    p.write(2, 1, p.read(2, 1) & ~0x20)
    p.write(0, 1, 0xAA)
    assert p.read(0, 1) == 0xAA


def test_control_bits_6_and_7_read_as_1_and_status_is_read_only() -> None:
    p = ParallelPort()
    p.write(2, 1, 0x04)
    assert p.read(2, 1) == 0xC4
    p.write(1, 1, 0x00)
    assert p.read(1, 1) == 0xD9
    p.reset()
    assert p.read(2, 1) == 0xCC
