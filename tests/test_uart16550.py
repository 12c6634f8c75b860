"""The 16550A programmed as a guest driver programs it (OSDev sequence, LSR polling, loopback)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from devices.irq import IrqLine
from devices.uart16550 import (
    COM_PORTS,
    SerialCapture,
    Uart16550,
    UartState,
    serial_input_from,
    serial_sink_for,
)

RBR = THR = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR, MCR, LSR, MSR, SCR = 3, 4, 5, 6, 7


class Chip:
    def __init__(self, name: str = "COM1") -> None:
        self.levels: list[bool] = []
        self.irq = IrqLine(name, self.levels.append)
        self.out = SerialCapture()
        self.uart = Uart16550(self.irq, self.out, name)

    def w(self, reg: int, value: int) -> None:
        self.uart.write(reg, 1, value)

    def r(self, reg: int) -> int:
        return self.uart.read(reg, 1)

    def osdev_init(self) -> bool:
        self.w(IER, 0x00)
        self.w(LCR, 0x80)
        self.w(DLL, 0x03)
        self.w(DLM, 0x00)
        self.w(LCR, 0x03)
        self.w(FCR, 0xC7)
        self.w(MCR, 0x0B)
        self.w(MCR, 0x1E)
        self.w(THR, 0xAE)
        ok = self.r(RBR) == 0xAE
        self.w(MCR, 0x0F)
        return ok

    def send(self, text: bytes) -> None:
        for b in text:
            while not self.r(LSR) & 0x20:
                pass
            self.w(THR, b)


@pytest.fixture(params=sorted(COM_PORTS))
def chip(request) -> Chip:
    return Chip(request.param)


def test_reset_values(chip: Chip) -> None:
    assert chip.r(IIR) == 0x01
    assert chip.r(LSR) == 0x60
    assert chip.r(LCR) == 0 and chip.r(MCR) == 0 and chip.r(IER) == 0
    assert not chip.irq.level


def test_osdev_init_loopback_and_polled_output(chip: Chip) -> None:
    assert chip.osdev_init()
    assert chip.uart.baud_rate == 38400
    assert chip.out.data == b""  # the loopback byte never left the chip
    chip.send(b"hello\r\n")
    assert chip.out.data == b"hello\r\n"


def test_dlab_switches_divisor_latch(chip: Chip) -> None:
    chip.w(LCR, 0x80)
    chip.w(DLL, 0x01)
    chip.w(DLM, 0x02)
    assert chip.r(DLL) == 0x01 and chip.r(DLM) == 0x02
    chip.w(LCR, 0x03)
    chip.w(IER, 0x05)
    assert chip.r(IER) == 0x05 and chip.uart.divisor == 0x0201
    chip.w(LCR, 0x83)
    assert chip.r(IER) == 0x02  # DLM again
    chip.w(LCR, 0x03)
    chip.w(DLL, 0x41)  # THR: transmitted, not the divisor
    assert chip.out.data == b"A" and chip.uart.dll == 0x01


def test_receive_fifo_trigger_level_and_timeout(chip: Chip) -> None:
    chip.osdev_init()  # FIFO on, trigger 14
    chip.w(IER, 0x01)
    assert chip.r(IIR) == 0xC1  # FIFOs enabled, nothing pending
    chip.uart.enqueue_input(b"abc")
    assert chip.r(IIR) == 0xCC  # below the trigger: character timeout
    assert chip.irq.level  # OUT2 is set: the line reaches the PIC
    chip.uart.enqueue_input(b"defghijklmnopqrstu")
    assert chip.r(IIR) == 0xC4  # 16 in the FIFO >= 14
    got = bytearray()
    while chip.r(LSR) & 0x01:
        got.append(chip.r(RBR))
    assert bytes(got) == b"abcdefghijklmnopqrstu"
    assert chip.r(IIR) == 0xC1 and not chip.irq.level
    assert chip.uart.pending_input() == 0


@pytest.mark.parametrize("fcr,level", [(0x01, 1), (0x41, 4), (0x81, 8), (0xC1, 14)])
def test_trigger_levels(fcr: int, level: int) -> None:
    c = Chip()
    c.w(FCR, fcr)
    c.w(IER, 0x01)
    c.uart.enqueue_input(b"x" * (level - 1))
    assert c.r(IIR) & 0x0F == (0x0C if level > 1 else 0x01)
    c.uart.enqueue_input(b"x")
    assert c.r(IIR) & 0x0F == 0x04


def test_thr_empty_interrupt_rules(chip: Chip) -> None:
    chip.w(MCR, 0x08)  # OUT2
    chip.w(IER, 0x02)  # enabling ETBEI with THR empty raises THRE at once
    assert chip.r(IIR) == 0x02
    assert chip.r(IIR) == 0x01  # reading IIR while it reports THRE cleared it
    chip.w(THR, ord("x"))
    assert chip.irq.level and chip.r(IIR) == 0x02


def test_iir_priority_order(chip: Chip) -> None:
    chip.w(MCR, 0x10)  # loopback: the modem inputs drop (delta bits set)
    chip.w(MCR, 0x1B)  # loopback with OUT2, to produce an overrun
    chip.w(IER, 0x0F)
    for b in b"ab":  # no FIFO: a one-byte holding register, the second byte overruns
        chip.w(THR, b)
    assert chip.r(IIR) == 0x06  # line status (overrun) first
    lsr = chip.r(LSR)
    assert lsr & 0x02 and lsr & 0x01
    assert chip.r(IIR) == 0x04  # then received data
    assert chip.r(RBR) == ord("a")
    assert chip.r(IIR) == 0x02  # then THR empty
    assert chip.r(IIR) == 0x00  # then modem status (loopback changed the modem lines)
    chip.r(MSR)
    assert chip.r(IIR) == 0x01


def test_loopback_modem_lines(chip: Chip) -> None:
    chip.w(MCR, 0x10)
    chip.r(MSR)
    chip.w(MCR, 0x1F)  # DTR RTS OUT1 OUT2 in loopback
    msr = chip.r(MSR)
    assert msr & 0xF0 == 0xF0  # CTS DSR RI DCD follow RTS DTR OUT1 OUT2
    assert msr & 0x0B == 0x0B  # delta CTS, DSR, DCD
    chip.w(MCR, 0x10)
    assert chip.r(MSR) & 0x04  # trailing edge of RI


def test_loopback_disconnects_the_interrupt_pin(chip: Chip) -> None:
    chip.w(IER, 0x01)
    chip.w(MCR, 0x18)  # loopback + OUT2
    chip.w(THR, 0x55)
    assert chip.uart.interrupt_pending and not chip.irq.level
    chip.w(MCR, 0x08)  # back to normal: the pending RX data interrupt reaches the pin
    assert chip.irq.level


def test_out2_gates_the_irq(chip: Chip) -> None:
    chip.w(IER, 0x01)
    chip.uart.enqueue_input(b"z")
    assert chip.uart.interrupt_pending and not chip.irq.level
    chip.w(MCR, 0x08)
    assert chip.irq.level


def test_fifo_clear_and_scratch(chip: Chip) -> None:
    chip.w(FCR, 0x01)
    chip.uart.enqueue_input(b"12345678901234567890")
    assert chip.r(LSR) & 1
    chip.w(FCR, 0x03)  # clear RX: the FIFO empties and the host queue refills it
    assert chip.r(RBR) == ord("7")
    chip.w(SCR, 0x5A)
    assert chip.r(SCR) == 0x5A


def test_state_round_trip_compares_every_field() -> None:
    c = Chip()
    c.osdev_init()
    c.w(IER, 0x03)
    c.w(SCR, 0x42)
    c.uart.enqueue_input(b"pending input longer than the sixteen byte fifo")
    state = c.uart.get_state()
    levels: list[bool] = []
    clone = Uart16550.from_state(state, IrqLine("x", levels.append))
    assert clone.get_state() == state
    assert {f.name for f in fields(UartState)} >= {"ier", "lcr", "mcr", "lsr", "msr", "scr"}
    assert clone.irq.level == c.irq.level


def test_host_adapters(tmp_path) -> None:
    assert serial_sink_for("none") is None
    out = tmp_path / "s.txt"
    out.write_bytes(b"old")
    sink = serial_sink_for(f"file:{out}")
    sink(b"new")
    sink.close()
    assert out.read_bytes() == b"new"  # truncated at open, like QEMU's file: backend
    with pytest.raises(ValueError, match="stdio, file:PATH or none"):
        serial_sink_for("tcp:1234")
    src = tmp_path / "in.txt"
    src.write_bytes(b"typed")
    assert serial_input_from(f"file:{src}") == b"typed"
    assert serial_input_from("a\\nb") == b"a\nb"
