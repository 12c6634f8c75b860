"""The 16550A programmed as a guest driver programs it (OSDev sequence, LSR polling, loopback,
interrupt handling), on each of COM1-COM4, plus its host-side adapters."""

from __future__ import annotations

import io
import logging
from collections import deque
from dataclasses import fields, replace

import pytest

from devices.irq import IrqLine
from devices.uart16550 import (
    COM_PORTS,
    DLL,
    DLM,
    FCR,
    IER,
    IIR,
    LCR,
    LSR,
    MCR,
    MSR,
    RBR,
    SCR,
    THR,
    SerialCapture,
    Uart16550,
    UartState,
    serial_input_from,
    serial_sink_for,
)

# every test also runs with the promises of stable_read checked (tests/stable_reads.py)
pytestmark = pytest.mark.usefixtures("port_table")

DR, OE, BI, THRE, FIFO_ERR = 0x01, 0x02, 0x10, 0x20, 0x80


class Chip:
    """One UART on a recording IRQ line, with the port accesses a driver makes."""

    def __init__(self, name: str = "COM1") -> None:
        self.edges: list[bool] = []  # every level change the PIC would see
        self.irq = IrqLine(name, self.edges.append)
        self.out = SerialCapture()
        self.uart = Uart16550(self.irq, self.out, name)

    def w(self, reg: int, value: int) -> None:
        self.uart.write(reg, 1, value)

    def r(self, reg: int) -> int:
        return self.uart.read(reg, 1)

    def osdev_init(self) -> bool:
        """OSDev "Serial Ports" init, returning the loopback self-test's verdict."""
        self.w(IER, 0x00)  # no interrupts
        self.w(LCR, 0x80)  # DLAB on
        self.w(DLL, 0x03)  # 38400 baud
        self.w(DLM, 0x00)
        self.w(LCR, 0x03)  # 8N1, DLAB off
        self.w(FCR, 0xC7)  # FIFOs on and cleared, trigger 14
        self.w(MCR, 0x0B)  # DTR, RTS, OUT2
        self.w(MCR, 0x1E)  # loopback
        self.w(THR, 0xAE)
        ok = self.r(RBR) == 0xAE
        self.w(MCR, 0x0F)  # normal operation
        return ok

    def send(self, text: bytes) -> None:
        for b in text:
            while not self.r(LSR) & THRE:
                pass
            self.w(THR, b)

    def drain(self) -> bytes:
        got = bytearray()
        while self.r(LSR) & DR:
            got.append(self.r(RBR))
        return bytes(got)


@pytest.fixture(params=sorted(COM_PORTS))
def chip(request: pytest.FixtureRequest) -> Chip:
    return Chip(request.param)


def test_com_port_table_is_the_pc_assignment() -> None:
    assert COM_PORTS == {
        "COM1": (0x3F8, 4),
        "COM2": (0x2F8, 3),
        "COM3": (0x3E8, 4),
        "COM4": (0x2E8, 3),
    }


def test_reset_values(chip: Chip) -> None:
    assert chip.r(IIR) == 0x01
    assert chip.r(LSR) == 0x60
    assert (chip.r(IER), chip.r(LCR), chip.r(MCR)) == (0, 0, 0)
    assert chip.r(MSR) == 0xB0  # CTS, DSR, DCD from a ready host; no deltas
    assert chip.uart.divisor == 12 and chip.uart.baud_rate == 9600
    assert not chip.irq.level and chip.edges == []


def test_osdev_init_loopback_then_polled_output(chip: Chip) -> None:
    assert chip.osdev_init()
    assert chip.uart.baud_rate == 38400
    assert chip.r(MCR) == 0x0F
    assert chip.out.data == b""  # the self-test byte never left the chip
    chip.send(b"hello\r\n")
    assert chip.out.data == b"hello\r\n"
    assert chip.r(LSR) & 0x60 == 0x60  # transmission is instant: THRE and TEMT set again


def test_self_test_fails_without_loopback(chip: Chip) -> None:
    chip.w(MCR, 0x0F)
    chip.w(THR, 0xAE)  # goes to the host, not back into the receiver
    assert chip.out.data == b"\xae"
    assert not chip.r(LSR) & DR and chip.r(RBR) != 0xAE


def test_host_input_waits_through_init_and_self_test(chip: Chip) -> None:
    chip.uart.enqueue_input(b"typed early")  # before the driver is ready
    assert chip.osdev_init()  # FCR clear and loopback see a quiet line
    assert chip.drain() == b"typed early"
    assert chip.uart.pending_input() == 0


def test_dlab_switches_offsets_0_and_1_to_the_divisor_latch(chip: Chip) -> None:
    chip.w(LCR, 0x80)
    chip.w(DLL, 0x01)
    chip.w(DLM, 0x02)
    assert (chip.r(DLL), chip.r(DLM)) == (0x01, 0x02)
    chip.w(LCR, 0x03)
    chip.w(IER, 0x05)
    assert chip.r(IER) == 0x05 and chip.uart.divisor == 0x0201
    chip.w(LCR, 0x83)
    assert chip.r(IER) == 0x02  # DLM again, IER untouched
    chip.w(LCR, 0x03)
    chip.w(THR, 0x41)  # THR now: transmitted, not the divisor
    assert chip.out.data == b"A" and chip.uart.dll == 0x01


@pytest.mark.parametrize("dll,dlm,baud", [(1, 0, 115200.0), (0x80, 0x01, 300.0), (0, 0, None)])
def test_baud_rate_from_divisor(dll: int, dlm: int, baud: float | None) -> None:
    c = Chip()
    c.w(LCR, 0x80)
    c.w(DLL, dll)
    c.w(DLM, dlm)
    assert c.uart.baud_rate == baud


def test_ier_upper_bits_and_mcr_upper_bits_read_zero(chip: Chip) -> None:
    chip.w(IER, 0xF0)
    chip.w(MCR, 0xE0)
    assert chip.r(IER) == 0 and chip.r(MCR) == 0


def test_receive_fifo_timeout_then_trigger(chip: Chip) -> None:
    chip.osdev_init()  # FIFO on, trigger 14, OUT2 set
    chip.w(IER, 0x01)
    assert chip.r(IIR) == 0xC1  # FIFOs enabled, nothing pending
    chip.uart.enqueue_input(b"abc")
    assert chip.r(IIR) == 0xCC  # below the trigger: character timeout
    assert chip.irq.level
    chip.uart.enqueue_input(b"defghijklmnopqrstu")
    assert chip.r(IIR) == 0xC4  # the FIFO holds 16 >= 14
    assert chip.uart.fifo_capacity() == 0 and chip.uart.pending_input() == 21
    assert chip.drain() == b"abcdefghijklmnopqrstu"  # the line refills the FIFO as it drains
    assert chip.r(IIR) == 0xC1 and not chip.irq.level


@pytest.mark.parametrize("fcr,level", [(0x01, 1), (0x41, 4), (0x81, 8), (0xC1, 14)])
def test_trigger_levels(fcr: int, level: int) -> None:
    c = Chip()
    c.w(MCR, 0x08)
    c.w(FCR, fcr)
    c.w(IER, 0x01)
    c.uart.enqueue_input(b"x" * (level - 1))
    assert c.r(IIR) == (0xCC if level > 1 else 0xC1)
    c.uart.enqueue_input(b"x")
    assert c.r(IIR) == 0xC4 and c.irq.level
    c.r(RBR)
    assert c.r(IIR) == (0xCC if level > 1 else 0xC1)  # back below the trigger


def test_16450_mode_has_a_one_byte_holding_register(chip: Chip) -> None:
    chip.w(MCR, 0x08)
    chip.w(IER, 0x01)
    chip.uart.enqueue_input(b"xy")
    assert chip.r(IIR) == 0x04  # no FIFO bits, no timeout: data available at one byte
    assert chip.uart.fifo_capacity() == 0
    assert chip.r(RBR) == ord("x")
    assert chip.r(IIR) == 0x04 and chip.r(RBR) == ord("y")
    assert chip.r(IIR) == 0x01 and not chip.irq.level
    assert chip.r(RBR) == ord("y")  # an empty holding register reads its last character


def test_fcr_bit0_clear_returns_to_16450_mode(chip: Chip) -> None:
    chip.w(FCR, 0xC1)
    assert chip.r(IIR) & 0xC0 == 0xC0
    chip.w(FCR, 0xC0)  # bit 0 clear: FIFOs off, trigger bits not programmed
    assert chip.r(IIR) == 0x01 and chip.uart.trigger_level == 1


def test_fifo_clear_and_mode_switch_empty_the_receiver(chip: Chip) -> None:
    sent = bytes(range(0x30, 0x58))  # 40 distinct bytes
    chip.w(FCR, 0x01)
    chip.uart.enqueue_input(sent)
    assert chip.r(LSR) & DR  # the guest looked: 16 bytes entered the FIFO
    chip.w(FCR, 0x03)  # clear RX: those 16 are gone, the line refills the FIFO
    assert chip.r(RBR) == sent[16]  # and the read made room for sent[32]
    chip.w(FCR, 0x00)  # leaving FIFO mode empties it as well: sent[17:33] lost
    assert chip.drain() == sent[33:]  # what was still on the line
    chip.w(SCR, 0x5A)
    assert chip.r(SCR) == 0x5A


def test_thr_empty_interrupt_rules(chip: Chip) -> None:
    chip.w(MCR, 0x08)  # OUT2
    chip.w(IER, 0x02)  # enabling ETBEI with THR empty raises THRE at once
    assert chip.irq.level and chip.r(IIR) == 0x02
    assert chip.r(IIR) == 0x01 and not chip.irq.level  # that IIR read cleared it
    chip.w(THR, ord("x"))  # the byte leaves at once: THR is empty again
    assert chip.irq.level and chip.r(IIR) == 0x02
    # Linux's THRE test: ETBEI off and on again re-raises THRE although IIR cleared it.
    chip.w(IER, 0x00)
    chip.w(IER, 0x02)
    assert chip.r(IIR) == 0x02
    chip.w(IER, 0x00)
    assert chip.r(IIR) == 0x01 and not chip.irq.level


def test_iir_priority_order(chip: Chip) -> None:
    chip.w(MCR, 0x10)  # loopback (16450 mode): the modem inputs drop, setting delta bits
    chip.w(IER, 0x0F)
    chip.w(THR, ord("a"))
    chip.w(THR, ord("b"))  # the holding register was full: overrun
    assert chip.r(IIR) == 0x06  # 1: line status
    assert chip.r(LSR) == 0x60 | OE | DR  # reading LSR clears OE
    assert chip.r(IIR) == 0x04  # 2: received data
    assert chip.r(RBR) == ord("b")  # in 16450 mode the new character overwrote the old
    assert chip.r(IIR) == 0x02  # 3: THR empty (cleared by this read)
    assert chip.r(IIR) == 0x00  # 4: modem status
    assert chip.r(MSR) & 0x0F  # reading MSR clears the deltas
    assert chip.r(IIR) == 0x01


def test_fifo_overrun_loses_the_incoming_character(chip: Chip) -> None:
    chip.w(FCR, 0x07)
    chip.w(MCR, 0x10)
    for b in range(17):
        chip.w(THR, 0x40 + b)
    lsr = chip.r(LSR)
    assert lsr & OE and lsr & DR
    assert not chip.r(LSR) & OE  # cleared by the read
    assert chip.drain() == bytes(range(0x40, 0x50))  # the 17th never entered the FIFO


def test_line_status_interrupt_reaches_the_pic_through_out2(chip: Chip) -> None:
    chip.w(FCR, 0x01)
    chip.w(IER, 0x04)
    chip.w(MCR, 0x08)
    chip.uart.enqueue_break()
    assert not chip.irq.level  # the line delivers when the guest looks (ERBFI is off)
    assert chip.r(IIR) == 0xC6 and chip.irq.level
    assert chip.r(LSR) & (BI | DR) == BI | DR
    assert not chip.irq.level and chip.r(IIR) == 0xC1


def test_break_shows_when_its_character_reaches_the_top(chip: Chip) -> None:
    chip.w(FCR, 0xC1)  # trigger 14
    chip.w(IER, 0x05)
    chip.uart.enqueue_input(b"ab")
    chip.uart.enqueue_break()
    chip.uart.enqueue_input(b"c")
    lsr = chip.r(LSR)
    assert lsr & FIFO_ERR and not lsr & BI  # an error is in the FIFO, not yet at the top
    assert chip.r(IIR) == 0xCC
    assert chip.r(RBR) == ord("a") and chip.r(RBR) == ord("b")
    assert chip.r(IIR) == 0xC6  # the break character is at the top now
    lsr = chip.r(LSR)
    assert lsr & (BI | FIFO_ERR | DR) == BI | FIFO_ERR | DR
    assert chip.r(RBR) == 0x00  # a break loads one zero character
    assert not chip.r(LSR) & (BI | FIFO_ERR)  # no further errors in the FIFO
    assert chip.r(RBR) == ord("c")


def test_break_in_16450_mode_has_no_fifo_error_bit(chip: Chip) -> None:
    chip.uart.enqueue_break()
    assert chip.r(LSR) == 0x60 | BI | DR
    assert chip.r(RBR) == 0


def test_loopback_modem_lines_follow_mcr(chip: Chip) -> None:
    chip.w(MCR, 0x10)
    chip.r(MSR)
    chip.w(MCR, 0x1F)  # DTR RTS OUT1 OUT2 in loopback
    msr = chip.r(MSR)
    assert msr & 0xF0 == 0xF0  # CTS DSR RI DCD follow RTS DTR OUT1 OUT2
    assert msr & 0x0F == 0x0B  # delta CTS, DSR, DCD; RI rose, which is not a trailing edge
    chip.w(MCR, 0x1A)  # loopback, RTS, OUT2 (Linux's probe for a real UART)
    assert chip.r(MSR) == 0x90 | 0x04 | 0x02  # CTS+DCD; RI trailing edge, DSR changed
    chip.w(MCR, 0x00)  # leave loopback: the host's lines again
    assert chip.r(MSR) & 0xF0 == 0xB0


def test_modem_status_interrupt(chip: Chip) -> None:
    chip.w(IER, 0x08)
    chip.w(MCR, 0x1F)  # loopback with every output on: CTS, DSR, DCD unchanged, RI rises
    assert chip.r(IIR) == 0x01  # a rising RI is not a modem status change
    chip.w(MCR, 0x1B)  # OUT1 off: RI's trailing edge
    assert chip.r(IIR) == 0x00 and chip.uart.interrupt_pending
    chip.r(MSR)
    assert chip.r(IIR) == 0x01


def test_loopback_keeps_the_interrupt_off_the_pin(chip: Chip) -> None:
    chip.w(IER, 0x01)
    chip.w(MCR, 0x18)  # loopback + OUT2: the OUT2 pin is forced inactive
    chip.w(THR, 0x55)
    assert chip.uart.interrupt_pending and chip.r(IIR) == 0x04
    assert not chip.irq.level
    chip.w(MCR, 0x08)  # normal operation: the pending data interrupt reaches the PIC
    assert chip.irq.level
    assert chip.r(RBR) == 0x55 and not chip.irq.level


def test_out2_gates_the_irq(chip: Chip, caplog: pytest.LogCaptureFixture) -> None:
    chip.w(IER, 0x01)
    with caplog.at_level(logging.INFO, logger="devices.uart16550"):
        chip.uart.enqueue_input(b"z")
    assert chip.uart.interrupt_pending and not chip.irq.level
    assert "MCR.OUT2 clear" in caplog.text  # the kernel developer is told why
    chip.w(MCR, 0x08)
    assert chip.irq.level
    chip.w(MCR, 0x00)
    assert not chip.irq.level
    assert chip.edges == [True, False]


def test_host_input_is_held_while_in_loopback(chip: Chip) -> None:
    chip.w(MCR, 0x10)
    chip.uart.enqueue_input(b"q")
    assert not chip.r(LSR) & DR  # the serial input pin is disconnected
    chip.w(MCR, 0x00)
    assert chip.r(LSR) & DR and chip.r(RBR) == ord("q")


def test_reset_is_a_master_reset(chip: Chip) -> None:
    chip.osdev_init()
    chip.w(SCR, 0x77)
    chip.w(IER, 0x02)
    assert chip.irq.level
    chip.uart.enqueue_input(b"later")
    chip.uart.reset()
    assert (chip.r(IER), chip.r(LCR), chip.r(MCR), chip.r(IIR), chip.r(LSR)) == (0, 0, 0, 1, 0x61)
    assert not chip.irq.level
    assert chip.r(SCR) == 0x77 and chip.uart.divisor == 3  # not in the reset table
    assert chip.drain() == b"later"  # the host's bytes were still on the line


def test_wide_and_read_only_accesses_are_logged_once(
    chip: Chip, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="devices.uart16550"):
        chip.uart.write(SCR, 2, 0x1234)
        chip.uart.write(SCR, 2, 0x1234)
        assert chip.uart.read(SCR, 4) == 0x34  # a byte access of the low byte
        chip.w(LSR, 0x00)
        chip.w(MSR, 0xFF)
    assert chip.r(LSR) == 0x60 and chip.r(MSR) == 0xB0  # the writes changed nothing
    messages = [r.getMessage() for r in caplog.records]
    assert sum("2-byte write" in m for m in messages) == 1
    assert any("4-byte read" in m for m in messages)
    assert any("LSR write" in m for m in messages) and any("MSR write" in m for m in messages)
    assert all(m.startswith(chip.uart.name) for m in messages)


def test_short_words_pass_whole_and_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    c = Chip()
    with caplog.at_level(logging.INFO, logger="devices.uart16550"):
        c.w(THR, 0xFF)  # LCR=0 at reset: 5 data bits
    assert c.out.data == b"\xff"
    assert any("word length" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------ snapshots

NOT_STATE = {"irq", "sink", "name", "_logged"}  # wiring and log bookkeeping


def _plain(value: object) -> object:
    return list(value) if isinstance(value, deque) else value


def test_state_round_trip_covers_every_attribute() -> None:
    c = Chip("COM2")
    c.osdev_init()
    c.w(IER, 0x0F)
    c.w(SCR, 0x42)
    c.uart.enqueue_input(b"ab")
    c.uart.enqueue_break()
    c.uart.enqueue_input(b"pending input longer than the sixteen-byte FIFO")
    c.r(RBR)
    state = c.uart.get_state()
    assert len(state.rx_fifo) == 16 and any(err for _, err in state.rx_fifo)
    attributes = set(vars(c.uart)) - NOT_STATE
    assert attributes == {f.name for f in fields(UartState)}  # nothing left out of the state

    line = IrqLine("restored")
    clone = Uart16550.from_state(state, line, name="COM2")
    assert clone.get_state() == state
    for name in attributes:
        assert _plain(getattr(clone, name)) == _plain(getattr(c.uart, name)), name
    assert line.level and line.level == c.irq.level  # the pending interrupt is re-asserted
    assert clone.read(RBR, 1) == c.r(RBR)  # and it behaves the same from there


def test_restore_does_not_glitch_a_high_line() -> None:
    c = Chip()
    c.w(MCR, 0x08)
    c.w(IER, 0x02)
    edges: list[bool] = []
    line = IrqLine("pic input", edges.append)
    line.raise_()
    Uart16550.from_state(c.uart.get_state(), line)
    assert edges == [True] and line.level


@pytest.mark.parametrize(
    "change",
    [
        {"ier": 0x10},
        {"lcr": 0x100},
        {"rx_fifo": ((1, 0), (2, 0))},  # two characters in 16450 mode
        {"lsr": 0x60 | DR},  # data ready with an empty FIFO
        {"host_queue": (0x101,)},
    ],
)
def test_restore_rejects_broken_state(change: dict) -> None:
    state = replace(Chip().uart.get_state(), **change)
    with pytest.raises(ValueError, match="invalid 16550A state"):
        Uart16550.from_state(state, IrqLine())


# ------------------------------------------------------------------------ host adapters


def test_serial_capture_collects_bytes() -> None:
    cap = SerialCapture()
    cap(b"ab")
    cap(b"c")
    assert cap.data == b"abc"


def test_sink_specs(tmp_path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert serial_sink_for("none") is None
    serial_sink_for("stdio")(b"raw \x00\xff")
    assert capsysbinary.readouterr().out == b"raw \x00\xff"
    out = tmp_path / "serial.log"
    out.write_bytes(b"old ")
    sink = serial_sink_for(f"file:{out}")
    sink(b"new")
    sink.close()
    assert out.read_bytes() == b"new"  # truncated first, as QEMU does: runs are repeatable
    for bad in ("tcp:1234", "file:", "", "STDIO"):
        with pytest.raises(ValueError, match="stdio, file:PATH or none"):
            serial_sink_for(bad)
    with pytest.raises(ValueError, match="serial output file"):
        serial_sink_for(f"file:{tmp_path / 'missing' / 'x.log'}")


def test_input_specs(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert serial_input_from("a\\nb\\tc\\r\\\\d\\x41é") == b"a\nb\tc\r\\dA\xc3\xa9"
    assert serial_input_from("\\q") == b"\\q"  # unknown escapes stay as typed
    src = tmp_path / "in.bin"
    src.write_bytes(b"typed\x00")
    assert serial_input_from(f"file:{src}") == b"typed\x00"
    with pytest.raises(ValueError, match="needs a path"):
        serial_input_from("file:")
    with pytest.raises(ValueError, match="serial input file"):
        serial_input_from(f"file:{tmp_path / 'missing'}")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"piped\n")))
    assert serial_input_from("stdio") == b"piped\n"


def test_stdio_input_from_a_terminal_reads_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Terminal(io.TextIOWrapper):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal(io.BytesIO(b"must not be read")))
    with caplog.at_level(logging.WARNING, logger="devices.uart16550"):
        assert serial_input_from("stdio") == b""
    assert "terminal" in caplog.text
