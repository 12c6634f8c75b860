"""16550A UART (National Semiconductor PC16550D datasheet), as found at COM1-COM4 on a PC.

Registers, by offset from the base port (DLAB = LCR bit 7):
  0  RBR (read) / THR (write); DLL when DLAB=1
  1  IER;                      DLM when DLAB=1
  2  IIR (read) / FCR (write)
  3  LCR   4 MCR   5 LSR   6 MSR   7 SCR

Modelling choices (documented in docs/devices.md):
- Transmission is instantaneous: a byte written to THR reaches the sink at once, so THRE and TEMT
  read as set again immediately; the THR-empty interrupt still follows the datasheet rules.
- The host never overruns the guest: input waits in a host-side queue and enters the 16-byte
  receive FIFO as it has room, like QEMU's character-device flow control.
- There is no character timing, so the receive timeout interrupt (IIR 0x0C) is raised as soon as
  the FIFO holds data below the trigger level; deterministic, like everything else.
- On a PC the interrupt output reaches the PIC through a gate driven by MCR OUT2; in loopback mode
  the datasheet disconnects the interrupt output from the pin (OUT2 is looped to DCD instead).
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields

from .irq import IrqLine

log = logging.getLogger(__name__)

COM_PORTS = {"COM1": (0x3F8, 4), "COM2": (0x2F8, 3), "COM3": (0x3E8, 4), "COM4": (0x2E8, 3)}
FIFO_SIZE = 16
CLOCK_DIVISOR_BASE = 115200  # 1.8432 MHz crystal / 16

# IER: interrupt enable
IER_ERBFI = 0x01  # received data available (and character timeout)
IER_ETBEI = 0x02  # transmitter holding register empty
IER_ELSI = 0x04  # receiver line status
IER_EDSSI = 0x08  # modem status

# IIR: interrupt identification (bit 0 = 1 means none pending)
IIR_NONE = 0x01
IIR_MSR = 0x00  # modem status change
IIR_THRE = 0x02  # THR empty
IIR_RDA = 0x04  # received data available
IIR_RLS = 0x06  # receiver line status
IIR_CTI = 0x0C  # character timeout
IIR_FIFO_ENABLED = 0xC0

# FCR: FIFO control (write only)
FCR_ENABLE = 0x01
FCR_CLEAR_RX = 0x02
FCR_CLEAR_TX = 0x04
FCR_TRIGGER = 0xC0
TRIGGER_LEVELS = (1, 4, 8, 14)

# LCR: line control
LCR_DLAB = 0x80

# MCR: modem control
MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08
MCR_LOOP = 0x10
MCR_MASK = 0x1F

# LSR: line status
LSR_DR = 0x01  # data ready
LSR_OE = 0x02  # overrun error
LSR_PE = 0x04  # parity error
LSR_FE = 0x08  # framing error
LSR_BI = 0x10  # break interrupt
LSR_THRE = 0x20  # THR empty
LSR_TEMT = 0x40  # transmitter empty
LSR_RX_FIFO_ERROR = 0x80  # error somewhere in the RX FIFO
LSR_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI

# MSR: modem status
MSR_DCTS = 0x01
MSR_DDSR = 0x02
MSR_TERI = 0x04
MSR_DDCD = 0x08
MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80
MSR_DELTAS = 0x0F

# Reset values (datasheet table "UART reset configuration").
RESET_IER = 0x00
RESET_IIR = IIR_NONE
RESET_LCR = 0x00
RESET_MCR = 0x00
RESET_LSR = LSR_THRE | LSR_TEMT


@dataclass(frozen=True)
class UartState:
    """Everything a snapshot needs to bring the chip back exactly (style.md, point 7)."""

    ier: int
    lcr: int
    mcr: int
    lsr: int
    msr: int
    scr: int
    dll: int
    dlm: int
    fcr: int
    rx_fifo: tuple[int, ...]
    host_queue: bytes
    thr_empty_pending: bool


class Uart16550:
    """One 16550A. ``read``/``write`` take offsets 0-7 from the base port."""

    def __init__(
        self, irq: IrqLine, sink: Callable[[bytes], None] | None = None, name: str = "COM1"
    ) -> None:
        self.irq = irq
        self.sink = sink
        self.name = name
        self._host: deque[int] = deque()
        self._logged: set[str] = set()
        self.reset()

    def reset(self) -> None:
        self.ier = RESET_IER
        self.lcr = RESET_LCR
        self.mcr = RESET_MCR
        self.lsr = RESET_LSR
        self.msr = 0
        self.scr = 0
        self.dll = 0
        self.dlm = 0
        self.fcr = 0
        self.rx_fifo: deque[int] = deque()
        self.thr_empty_pending = (
            False  # the THRE interrupt source (cleared by IIR read / THR write)
        )
        self._update_msr_inputs(initial=True)
        self._update_irq()

    # --------------------------------------------------------------- properties
    @property
    def fifo_enabled(self) -> bool:
        return bool(self.fcr & FCR_ENABLE)

    @property
    def rx_capacity(self) -> int:
        return FIFO_SIZE if self.fifo_enabled else 1

    @property
    def trigger_level(self) -> int:
        return TRIGGER_LEVELS[(self.fcr & FCR_TRIGGER) >> 6] if self.fifo_enabled else 1

    @property
    def divisor(self) -> int:
        return (self.dlm << 8) | self.dll

    @property
    def baud_rate(self) -> int | None:
        """Programmed baud rate, or None while the divisor is 0 (no clock)."""
        return CLOCK_DIVISOR_BASE // self.divisor if self.divisor else None

    @property
    def loopback(self) -> bool:
        return bool(self.mcr & MCR_LOOP)

    # ------------------------------------------------------------- interrupts
    def _pending(self) -> int:
        """The highest-priority interrupt identification (datasheet IIR priority table)."""
        if self.ier & IER_ELSI and self.lsr & LSR_ERRORS:
            return IIR_RLS
        if self.ier & IER_ERBFI and self.rx_fifo:
            if len(self.rx_fifo) >= self.trigger_level:
                return IIR_RDA
            return IIR_CTI if self.fifo_enabled else IIR_RDA
        if self.ier & IER_ETBEI and self.thr_empty_pending:
            return IIR_THRE
        if self.ier & IER_EDSSI and self.msr & MSR_DELTAS:
            return IIR_MSR
        return IIR_NONE

    def _update_irq(self) -> None:
        pending = self._pending() != IIR_NONE
        # The PC's interrupt gate: OUT2 enables the line to the PIC; in loopback the output
        # pin is disconnected.
        self.irq.set_level(pending and bool(self.mcr & MCR_OUT2) and not self.loopback)

    @property
    def interrupt_pending(self) -> bool:
        """The chip's internal INTR, before the OUT2 gate."""
        return self._pending() != IIR_NONE

    # -------------------------------------------------------------- host side
    def enqueue_input(self, data: bytes) -> int:
        """Host bytes waiting on the line; returns how many were accepted (all of them).

        They enter the receive FIFO at once when the receive interrupt is enabled, else when the
        guest looks at the chip (reads RBR, LSR or IIR, or enables the interrupt): a driver that
        clears the FIFOs and runs the loopback self-test at init finds the line quiet, and
        loses nothing."""
        self._host.extend(data)
        if self.ier & IER_ERBFI:
            self._refill()
            self._update_irq()
        return len(data)

    def pending_input(self) -> int:
        """Bytes received but not yet read by the guest (FIFO + host queue)."""
        return len(self._host) + len(self.rx_fifo)

    def _refill(self) -> None:
        if self.loopback:
            return  # the serial input pin is disconnected in loopback
        while self._host and len(self.rx_fifo) < self.rx_capacity:
            self.rx_fifo.append(self._host.popleft())
        self._sync_dr()

    def _sync_dr(self) -> None:
        if self.rx_fifo:
            self.lsr |= LSR_DR
        else:
            self.lsr &= ~LSR_DR

    def _receive(self, byte: int) -> None:
        """A character assembled by the receiver (loopback path)."""
        if len(self.rx_fifo) >= self.rx_capacity:
            self.lsr |= LSR_OE  # the shift register overwrote a character: it is lost
            return
        self.rx_fifo.append(byte)
        self._sync_dr()

    # ---------------------------------------------------------- register access
    def read(self, offset: int, size: int) -> int:
        if size != 1:
            self._note(f"{size}-byte read", "only the low byte is decoded")
        offset &= 7
        if offset == 0:
            if self.lcr & LCR_DLAB:
                return self.dll
            if not self.rx_fifo:
                self._refill()
            value = self.rx_fifo.popleft() if self.rx_fifo else 0
            self._refill()
            self._sync_dr()
            self._update_irq()
            return value
        if offset == 1:
            return self.dlm if self.lcr & LCR_DLAB else self.ier
        if offset == 2:
            self._refill()
            iir = self._pending()
            if iir == IIR_THRE:
                self.thr_empty_pending = False  # reading IIR while it reports THRE clears it
                self._update_irq()
            return iir | (IIR_FIFO_ENABLED if self.fifo_enabled else 0)
        if offset == 3:
            return self.lcr
        if offset == 4:
            return self.mcr
        if offset == 5:
            self._refill()
            value = self.lsr
            if self.fifo_enabled and self.lsr & (LSR_PE | LSR_FE | LSR_BI):
                value |= LSR_RX_FIFO_ERROR
            self.lsr &= ~(LSR_ERRORS | LSR_RX_FIFO_ERROR)  # reading LSR clears the error bits
            self._update_irq()
            return value
        if offset == 6:
            value = self.msr
            self.msr &= ~MSR_DELTAS  # reading MSR clears the delta bits
            self._update_irq()
            return value
        return self.scr

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 1:
            self._note(f"{size}-byte write", "only the low byte is decoded")
        offset &= 7
        value &= 0xFF
        if offset == 0:
            if self.lcr & LCR_DLAB:
                self.dll = value
                return
            self._transmit(value)
        elif offset == 1:
            if self.lcr & LCR_DLAB:
                self.dlm = value
                return
            old = self.ier
            self.ier = value & 0x0F
            if self.ier & IER_ERBFI:
                self._refill()
            # Enabling ETBEI while THR is empty raises the THRE interrupt (datasheet note).
            if self.ier & IER_ETBEI and not old & IER_ETBEI and self.lsr & LSR_THRE:
                self.thr_empty_pending = True
        elif offset == 2:
            self._write_fcr(value)
        elif offset == 3:
            self.lcr = value
        elif offset == 4:
            was_loop = self.loopback
            self.mcr = value & MCR_MASK
            self._update_msr_inputs()
            if was_loop and not self.loopback:
                self._refill()
        elif offset == 5:
            self._note("LSR write", "LSR is read-only in normal operation; the write is ignored")
        elif offset == 6:
            self._note("MSR write", "MSR is read-only; the write is ignored")
        else:
            self.scr = value
        self._update_irq()

    def _transmit(self, value: int) -> None:
        if self.loopback:
            self._receive(value)  # TX shift register feeds RX internally; nothing leaves the chip
        elif self.sink is not None:
            self.sink(bytes((value,)))
        # The holding register empties at once (no baud-rate timing is modelled).
        self.lsr |= LSR_THRE | LSR_TEMT
        self.thr_empty_pending = True

    def _write_fcr(self, value: int) -> None:
        enabling = bool(value & FCR_ENABLE)
        if enabling != self.fifo_enabled:
            # Switching FIFO mode resets both FIFOs (datasheet FCR bit 0).
            self.rx_fifo.clear()
        self.fcr = value & (FCR_ENABLE | FCR_TRIGGER)
        if value & FCR_CLEAR_RX or not enabling:
            self.rx_fifo.clear()
        # FCR bit 2 clears the TX FIFO: ours is always empty (instant transmission).
        self._sync_dr()

    def _update_msr_inputs(self, initial: bool = False) -> None:
        """Modem inputs. In loopback they follow MCR; otherwise a cable with the other end
        ready: CTS, DSR and DCD asserted, RI idle (what QEMU's chardev backend presents)."""
        if self.loopback:
            inputs = 0
            if self.mcr & MCR_RTS:
                inputs |= MSR_CTS
            if self.mcr & MCR_DTR:
                inputs |= MSR_DSR
            if self.mcr & MCR_OUT1:
                inputs |= MSR_RI
            if self.mcr & MCR_OUT2:
                inputs |= MSR_DCD
        else:
            inputs = MSR_CTS | MSR_DSR | MSR_DCD
        old = self.msr & 0xF0
        deltas = self.msr & MSR_DELTAS
        if not initial:
            changed = old ^ inputs
            if changed & MSR_CTS:
                deltas |= MSR_DCTS
            if changed & MSR_DSR:
                deltas |= MSR_DDSR
            if changed & MSR_DCD:
                deltas |= MSR_DDCD
            if old & MSR_RI and not inputs & MSR_RI:
                deltas |= MSR_TERI  # trailing edge of ring indicator
        self.msr = inputs | deltas

    def _note(self, what: str, why: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.info("%s: %s: %s", self.name, what, why)

    # --------------------------------------------------------------- snapshots
    def get_state(self) -> UartState:
        return UartState(
            ier=self.ier,
            lcr=self.lcr,
            mcr=self.mcr,
            lsr=self.lsr,
            msr=self.msr,
            scr=self.scr,
            dll=self.dll,
            dlm=self.dlm,
            fcr=self.fcr,
            rx_fifo=tuple(self.rx_fifo),
            host_queue=bytes(self._host),
            thr_empty_pending=self.thr_empty_pending,
        )

    @classmethod
    def from_state(
        cls,
        state: UartState,
        irq: IrqLine,
        sink: Callable[[bytes], None] | None = None,
        name: str = "COM1",
    ) -> Uart16550:
        uart = cls(irq, sink, name)
        for f in fields(state):
            if f.name in ("rx_fifo", "host_queue"):
                continue
            setattr(uart, f.name, getattr(state, f.name))
        uart.rx_fifo = deque(state.rx_fifo)
        uart._host = deque(state.host_queue)
        uart._update_irq()
        return uart


# ------------------------------------------------------------------ host adapters


class SerialCapture:
    """A sink that collects everything the guest transmits."""

    def __init__(self) -> None:
        self.data = bytearray()

    def __call__(self, data: bytes) -> None:
        self.data += data


class FileSink:
    """Serial output into a file, truncated when opened (like QEMU's ``file:`` backend)."""

    def __init__(self, path: str) -> None:
        try:
            self._file = open(path, "wb")  # noqa: SIM115 - open for the whole run
        except OSError as e:
            raise ValueError(f"serial output file {path}: {e.strerror}") from None

    def __call__(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def serial_sink_for(spec: str) -> Callable[[bytes], None] | None:
    """``stdio``, ``file:PATH`` or ``none`` -> a sink for ``Uart16550``."""
    if spec == "none":
        return None
    if spec == "stdio":
        out = sys.stdout.buffer

        def to_stdout(data: bytes) -> None:
            out.write(data)
            out.flush()

        return to_stdout
    if spec.startswith("file:") and len(spec) > 5:
        return FileSink(spec[5:])
    raise ValueError(f"serial output {spec!r}: use stdio, file:PATH or none")


def serial_input_from(spec: str) -> bytes:
    """``--serial-input``: ``file:PATH``, ``stdio`` (stdin when it is not a terminal) or text.

    Text may use \\n, \\r and \\t escapes."""
    if spec.startswith("file:"):
        path = spec[5:]
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ValueError(f"serial input file {path}: {e.strerror}") from None
    if spec == "stdio":
        if os.isatty(sys.stdin.fileno()):
            return b""
        return sys.stdin.buffer.read()
    return spec.encode().replace(b"\\n", b"\n").replace(b"\\r", b"\r").replace(b"\\t", b"\t")
