"""16550A UART (National Semiconductor PC16550D datasheet), as found at COM1-COM4 on a PC.

Registers, by offset from the base port (DLAB is LCR bit 7):
  0  RBR (read) / THR (write); DLL when DLAB=1
  1  IER;                      DLM when DLAB=1
  2  IIR (read) / FCR (write)
  3  LCR   4 MCR   5 LSR   6 MSR   7 SCR

Modelling choices (also in docs/devices.md):
- Transmission is instantaneous (no baud-rate timing): a byte written to THR reaches the sink at
  once, so THRE and TEMT read as set again immediately; the THR-empty interrupt still follows
  the chip's rules (raised when THR empties and on the rising edge of IER.ETBEI, cleared by an
  IIR read that reports it or by a THR write).
- The host never overruns the guest: input waits in a host-side queue and enters the receive
  FIFO as it has room, like QEMU's character-device flow control. The line starts delivering
  when the guest is ready for it: when the receive interrupt is enabled, or when the guest reads
  RBR, LSR or IIR. Never in loopback, where the serial input is disconnected.
- There is no character timing, so the receive timeout interrupt (IIR 0x0C) is raised as soon
  as the FIFO holds data below the trigger level; deterministic, like everything else.
- Characters travel whole: the word length, parity and stop bits of LCR are kept but do not
  change the data (as in QEMU), so a guest that never programs LCR still prints.
- On a PC the INTR output reaches the PIC through a buffer enabled by the OUT2 pin. In loopback
  the datasheet forces the modem-control output pins inactive (OUT2 is looped to DCD instead),
  so the interrupt stays internal: IIR reports it, the IRQ line does not see it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields

from .irq import IrqLine

log = logging.getLogger(__name__)

# name -> (base port, ISA IRQ), the PC's standard assignment
COM_PORTS: dict[str, tuple[int, int]] = {
    "COM1": (0x3F8, 4),
    "COM2": (0x2F8, 3),
    "COM3": (0x3E8, 4),
    "COM4": (0x2E8, 3),
}
PORT_COUNT = 8  # registers decoded from the base port
FIFO_SIZE = 16  # bytes in each FIFO of the 16550A
BAUD_CLOCK = 115200  # 1.8432 MHz crystal / 16 samples per bit: the baud rate for divisor 1

# Register offsets from the base port.
RBR = THR = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

# IER: interrupt enable (bits 4-7 always read 0)
IER_ERBFI = 0x01  # received data available, and the character timeout
IER_ETBEI = 0x02  # transmitter holding register empty
IER_ELSI = 0x04  # receiver line status (OE, PE, FE, BI)
IER_EDSSI = 0x08  # modem status (MSR delta bits)
IER_MASK = 0x0F

# IIR: interrupt identification, bits 0-3 (bit 0 = 1: nothing pending)
IIR_NONE = 0x01
IIR_MSR = 0x00  # priority 4: modem status changed
IIR_THRE = 0x02  # priority 3: transmitter holding register empty
IIR_RDA = 0x04  # priority 2: received data at the trigger level
IIR_CTI = 0x0C  # priority 2: character timeout (data below the trigger level)
IIR_RLS = 0x06  # priority 1: receiver line status
IIR_FIFOS_ENABLED = 0xC0  # bits 6-7 read 11 while FCR bit 0 is set

# FCR: FIFO control (write only)
FCR_ENABLE = 0x01  # FIFO mode; 0 = 16450 mode with one-byte holding registers
FCR_CLEAR_RX = 0x02  # empty the receive FIFO (self-clearing)
FCR_CLEAR_TX = 0x04  # empty the transmit FIFO (self-clearing)
FCR_DMA_MODE = 0x08  # RXRDY/TXRDY pin mode 1 (pins only)
FCR_TRIGGER = 0xC0  # receive FIFO trigger level, index into TRIGGER_LEVELS
FCR_TRIGGER_SHIFT = 6
TRIGGER_LEVELS = (1, 4, 8, 14)

# LCR: line control
LCR_WORD_LENGTH = 0x03  # 5 + n data bits
LCR_WORD_8 = 0x03
LCR_BREAK = 0x40  # force the serial output to spacing
LCR_DLAB = 0x80  # divisor latch access: offsets 0/1 become DLL/DLM

# MCR: modem control (bits 5-7 always 0 on the 16550A)
MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08  # on a PC: enables the IRQ buffer between INTR and the PIC
MCR_LOOP = 0x10  # local loopback (diagnostic mode)
MCR_MASK = 0x1F

# LSR: line status
LSR_DR = 0x01  # data ready: the receive FIFO / holding register is not empty
LSR_OE = 0x02  # overrun: a received character was lost
LSR_PE = 0x04  # parity error (travels with its character)
LSR_FE = 0x08  # framing error (travels with its character)
LSR_BI = 0x10  # break (travels with its zero character)
LSR_THRE = 0x20  # transmitter holding register (FIFO) empty
LSR_TEMT = 0x40  # transmitter empty: THR and shift register
LSR_RX_FIFO_ERROR = 0x80  # FIFO mode: a character with PE/FE/BI is in the FIFO
LSR_LINE_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI  # the line-status interrupt sources
RX_CHAR_ERRORS = LSR_PE | LSR_FE | LSR_BI  # revealed when their character reaches the top

# MSR: modem status; bits 4-7 are the (complemented) input pins
MSR_DCTS = 0x01  # CTS changed
MSR_DDSR = 0x02  # DSR changed
MSR_TERI = 0x04  # RI trailing edge (RI went inactive)
MSR_DDCD = 0x08  # DCD changed
MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80
MSR_DELTAS = 0x0F
MSR_LINES = 0xF0
# Outside loopback the far end is a ready host (CTS, DSR and DCD asserted, no ring), which is
# what QEMU's character backends present.
HOST_MODEM_LINES = MSR_CTS | MSR_DSR | MSR_DCD

# Master-reset values (datasheet table "UART Reset Configuration").
RESET_IER = 0x00
RESET_IIR = IIR_NONE  # bit 0 high, the rest low
RESET_FCR = 0x00
RESET_LCR = 0x00
RESET_MCR = 0x00
RESET_LSR = LSR_THRE | LSR_TEMT  # transmitter idle
# Not in the reset table (a master reset leaves them alone); their power-on contents are
# undefined, so we use QEMU's: divisor 12 (9600 baud) and a zero scratch register.
POWER_ON_DIVISOR = 12
POWER_ON_SCR = 0x00

HOST_BREAK = 0x100  # in the host queue: a break condition on the line, not a byte


@dataclass(frozen=True)
class UartState:
    """Every register and queue of one UART (style.md, point 7). Field names are attribute names."""

    ier: int
    fcr: int
    lcr: int
    mcr: int
    lsr: int
    msr: int
    scr: int
    dll: int
    dlm: int
    rbr: int  # the last character read out (what RBR returns when the FIFO is empty)
    thr_empty_pending: bool  # the THRE interrupt source
    rx_fifo: tuple[tuple[int, int], ...]  # (character, its PE/FE/BI bits), oldest first
    host_queue: tuple[int, ...]  # bytes still on the line, HOST_BREAK for a break


class Uart16550:
    """One 16550A. ``read``/``write`` take offsets 0-7 from the base port.

    ``irq`` is the chip's interrupt wire to the PIC (gated by MCR.OUT2, as on a PC), ``sink``
    receives every transmitted byte, ``name`` labels log lines.
    """

    def __init__(
        self, irq: IrqLine, sink: Callable[[bytes], None] | None = None, name: str = "COM1"
    ) -> None:
        self._attach(irq, sink, name)
        self.host_queue: deque[int] = deque()
        self.scr = POWER_ON_SCR
        self.dll = POWER_ON_DIVISOR & 0xFF
        self.dlm = POWER_ON_DIVISOR >> 8
        self.reset()

    def _attach(self, irq: IrqLine, sink: Callable[[bytes], None] | None, name: str) -> None:
        self.irq = irq
        self.sink = sink
        self.name = name
        self._logged: set[str] = set()

    def reset(self) -> None:
        """Master reset (the MR pin). SCR and the divisor latch keep their values, and bytes
        still waiting on the host side stay there: the line is not part of the chip."""
        self.ier = RESET_IER
        self.fcr = RESET_FCR
        self.lcr = RESET_LCR
        self.mcr = RESET_MCR
        self.lsr = RESET_LSR
        self.msr = self._modem_inputs()  # delta bits low, upper bits follow the inputs
        self.rbr = 0
        self.rx_fifo: deque[tuple[int, int]] = deque()
        self.thr_empty_pending = False
        self._update_irq()

    # ------------------------------------------------------------------ properties
    @property
    def fifo_enabled(self) -> bool:
        return bool(self.fcr & FCR_ENABLE)

    @property
    def rx_capacity(self) -> int:
        """16 bytes in FIFO mode, the one-byte holding register in 16450 mode."""
        return FIFO_SIZE if self.fcr & FCR_ENABLE else 1

    @property
    def trigger_level(self) -> int:
        if not self.fcr & FCR_ENABLE:
            return 1
        return TRIGGER_LEVELS[(self.fcr & FCR_TRIGGER) >> FCR_TRIGGER_SHIFT]

    @property
    def divisor(self) -> int:
        return (self.dlm << 8) | self.dll

    @property
    def baud_rate(self) -> float | None:
        """The programmed rate, 115200 / divisor; None for divisor 0, which the datasheet leaves
        undefined (the baud generator has nothing to divide by)."""
        divisor = self.divisor
        return BAUD_CLOCK / divisor if divisor else None

    @property
    def loopback(self) -> bool:
        return bool(self.mcr & MCR_LOOP)

    @property
    def interrupt_pending(self) -> bool:
        """The chip's INTR output, before the OUT2 gate of the PC."""
        return self._interrupt_id() != IIR_NONE

    # ------------------------------------------------------------------ host side
    def enqueue_input(self, data: bytes) -> int:
        """Bytes the host sends down the line; all are accepted (returns how many).

        They wait here and enter the receive FIFO as it has room (see the module notes)."""
        self.host_queue.extend(data)
        if self.ier & IER_ERBFI:
            self._deliver_host_input()
            self._update_irq()
        return len(data)

    def enqueue_break(self) -> None:
        """The host holds the line at spacing for longer than a character: the receiver loads
        one zero character flagged with BI (datasheet, LSR bit 4)."""
        self.host_queue.append(HOST_BREAK)
        if self.ier & IER_ERBFI:
            self._deliver_host_input()
            self._update_irq()

    def pending_input(self) -> int:
        """Characters received but not yet read by the guest (FIFO and host queue)."""
        return len(self.host_queue) + len(self.rx_fifo)

    def fifo_capacity(self) -> int:
        """Room left in the receive FIFO (or the 16450 holding register)."""
        return self.rx_capacity - len(self.rx_fifo)

    # ------------------------------------------------------------------ registers
    def read(self, offset: int, size: int) -> int:
        if size != 1:
            self._note(f"{size}-byte read", "accessed as a byte (the low byte of the port)")
        offset &= 7
        if offset == LSR:  # first: the register polled before every byte
            return self._read_lsr()
        dlab = self.lcr & LCR_DLAB
        if offset == RBR:
            return self.dll if dlab else self._read_rbr()
        if offset == IER:
            return self.dlm if dlab else self.ier
        if offset == IIR:
            return self._read_iir()
        if offset == LCR:
            return self.lcr
        if offset == MCR:
            return self.mcr
        if offset == MSR:
            return self._read_msr()
        return self.scr

    def stable_read(self, offset: int) -> tuple[int, int | None] | None:
        """What a byte read of ``offset`` returns, with no side effect, until the UART is next
        accessed or the host sends it something: (value, None); None where the read would
        change the chip (a character to take, error or delta bits to clear, a THRE interrupt
        the IIR read acknowledges) or bytes wait on the host side to enter the FIFO."""
        if self.host_queue and not self.mcr & MCR_LOOP:
            return None  # a read of RBR, IIR or LSR lets the line deliver
        offset &= 7
        dlab = self.lcr & LCR_DLAB
        if offset == RBR:
            if dlab:
                return self.dll, None
            return None if self.rx_fifo else (self.rbr, None)
        if offset == IER:
            return (self.dlm if dlab else self.ier), None
        if offset == IIR:
            iid = self._interrupt_id()
            if iid == IIR_THRE:
                return None
            return iid | (IIR_FIFOS_ENABLED if self.fcr & FCR_ENABLE else 0), None
        if offset == LCR:
            return self.lcr, None
        if offset == MCR:
            return self.mcr, None
        if offset == LSR:
            if self.lsr & (LSR_LINE_ERRORS | LSR_RX_FIFO_ERROR):
                return None
            return self.lsr, None
        if offset == MSR:
            return None if self.msr & MSR_DELTAS else (self.msr, None)
        return self.scr, None

    def queued_writes(self) -> tuple[int, ...]:
        """The offsets where a byte write now only transmits the byte and changes nothing else
        (docs/devices.md "Stable reads"): THR outside DLAB and loopback, with THR and the shift
        register empty and the THR-empty source already pending (a write clears it and the byte
        moving on raises it again), nothing waiting on the host side, and nothing left to log.
        Such bytes may reach the sink later, in order, through ``write_queued``."""
        if (
            self.lcr & LCR_DLAB
            or self.mcr & MCR_LOOP
            or not self.thr_empty_pending
            or self.host_queue
            or self.lsr & (LSR_THRE | LSR_TEMT) != LSR_THRE | LSR_TEMT
            or (self.lcr & LCR_WORD_LENGTH != LCR_WORD_8 and "word length" not in self._logged)
            or (
                "OUT2" not in self._logged
                and not self.mcr & MCR_OUT2
                and self._interrupt_id() != IIR_NONE
            )
        ):
            return ()
        return (THR,)

    def write_queued(self, offset: int, data: bytes) -> None:
        """Byte writes of ``data`` to ``offset``, made while ``queued_writes`` named it: what
        they do (the bytes go to the sink; the chip's state is as it was)."""
        if offset != THR:
            raise ValueError(f"{self.name}: writes to offset {offset} are never queued")
        if self.sink is not None:
            self.sink(data)

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 1:
            self._note(f"{size}-byte write", "accessed as a byte (the low byte of the value)")
        offset &= 7
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if offset == THR:
            if dlab:
                self.dll = value
            else:
                self._transmit(value)
        elif offset == IER:
            if dlab:
                self.dlm = value
            else:
                self._write_ier(value)
        elif offset == FCR:
            self._write_fcr(value)
        elif offset == LCR:
            self.lcr = value
            if value & LCR_BREAK and not self.loopback:
                self._note("break", "a break on the transmit line is not signalled to the host")
        elif offset == MCR:
            self._write_mcr(value)
        elif offset == LSR:
            self._note("LSR write", "factory-test writes to LSR are ignored")
        elif offset == MSR:
            self._note("MSR write", "MSR is read-only; the write is ignored")
        else:
            self.scr = value
        if self.ier & IER_ERBFI:
            self._deliver_host_input()  # e.g. after leaving loopback or clearing the FIFO
        self._update_irq()

    def _read_rbr(self) -> int:
        self._deliver_host_input()
        if self.rx_fifo:
            self.rbr = self.rx_fifo.popleft()[0]
            self._reveal_top_errors()
            self._deliver_host_input()  # the line sends the next character into the room
            self._sync_data_ready()
        # An empty FIFO reads as the last character again: the holding register is not cleared.
        self._update_irq()
        return self.rbr

    def _read_iir(self) -> int:
        self._deliver_host_input()
        iid = self._interrupt_id()
        if iid == IIR_THRE:
            self.thr_empty_pending = False  # reading IIR while it reports THRE clears it
        self._update_irq()
        return iid | (IIR_FIFOS_ENABLED if self.fcr & FCR_ENABLE else 0)

    def _read_lsr(self) -> int:
        value = self.lsr
        if not value & (LSR_LINE_ERRORS | LSR_RX_FIFO_ERROR) and (
            not self.host_queue or self.mcr & MCR_LOOP
        ):
            # nothing to clear and nothing for the line to deliver: the state, and so the IRQ
            # line (set from it at every change), stay as they are
            return value
        self._deliver_host_input()
        value = self.lsr
        self.lsr &= ~LSR_LINE_ERRORS  # reading LSR clears OE, PE, FE and BI
        # Bit 7 clears when no later character in the FIFO carries an error.
        if value & LSR_RX_FIFO_ERROR and not any(err for _, err in list(self.rx_fifo)[1:]):
            self.lsr &= ~LSR_RX_FIFO_ERROR
        self._update_irq()
        return value

    def _read_msr(self) -> int:
        value = self.msr
        self.msr &= ~MSR_DELTAS  # reading MSR clears the delta bits
        self._update_irq()
        return value

    def _write_ier(self, value: int) -> None:
        old = self.ier
        self.ier = value & IER_MASK
        if (old ^ self.ier) & IER_ETBEI:
            # A rising edge of ETBEI while THR is empty raises THRE again even after an IIR read
            # cleared it (Linux's THRE test relies on it); a falling edge drops the source.
            self.thr_empty_pending = bool(self.ier & IER_ETBEI and self.lsr & LSR_THRE)

    def _write_fcr(self, value: int) -> None:
        enable = bool(value & FCR_ENABLE)
        if enable != bool(self.fcr & FCR_ENABLE):
            self._clear_rx()  # switching between 16450 and FIFO mode empties both FIFOs
        if not enable:
            self.fcr = 0  # the other bits are only programmed while bit 0 is written as 1
            return
        self.fcr = value & (FCR_ENABLE | FCR_DMA_MODE | FCR_TRIGGER)
        if value & FCR_CLEAR_RX:
            self._clear_rx()
        # FCR_CLEAR_TX has nothing to clear: transmission is instant, the TX FIFO always empty.
        if value & FCR_DMA_MODE:
            self._note("DMA mode", "FCR bit 3 changes only the RXRDY/TXRDY pins, not modelled")

    def _write_mcr(self, value: int) -> None:
        self.mcr = value & MCR_MASK
        self._set_modem_inputs(self._modem_inputs())

    # ------------------------------------------------------------------ transmit / receive
    def _transmit(self, value: int) -> None:
        if self.lcr & LCR_WORD_LENGTH != LCR_WORD_8:
            self._note("word length", "LCR selects fewer than 8 data bits; bytes pass whole")
        if self.loopback:
            self._receive_looped(value)  # TX shift register feeds RX; nothing leaves the chip
        elif self.sink is not None:
            self.sink(bytes((value,)))
        # THR and the shift register empty at once (no baud-rate timing): writing THR cleared
        # the THRE interrupt, and the byte moving on raises it again.
        self.lsr |= LSR_THRE | LSR_TEMT
        self.thr_empty_pending = True

    def _receive_looped(self, char: int) -> None:
        """A character assembled by the receiver from the loopback path."""
        if len(self.rx_fifo) < self.rx_capacity:
            self._push_rx(char, 0)
            return
        self.lsr |= LSR_OE
        if not self.fcr & FCR_ENABLE:
            # 16450 mode: the new character overwrites the unread one in RBR.
            self.rx_fifo[0] = (char, 0)
        # FIFO mode: the character in the shift register is overwritten, never stored.

    def _deliver_host_input(self) -> None:
        """Move host bytes into the receive FIFO while it has room (never in loopback, where the
        serial input pin is disconnected)."""
        if not self.host_queue or self.mcr & MCR_LOOP:
            return
        while self.host_queue and len(self.rx_fifo) < self.rx_capacity:
            item = self.host_queue.popleft()
            if item == HOST_BREAK:
                self._push_rx(0, LSR_BI)  # a break loads one zero character
            else:
                self._push_rx(item, 0)

    def _push_rx(self, char: int, errors: int) -> None:
        self.rx_fifo.append((char, errors))
        self.lsr |= LSR_DR
        if errors and self.fcr & FCR_ENABLE:
            self.lsr |= LSR_RX_FIFO_ERROR
        if len(self.rx_fifo) == 1:
            self.lsr |= errors  # it is at the top: its errors show in LSR now

    def _reveal_top_errors(self) -> None:
        """PE/FE/BI of a character appear in LSR when it reaches the top of the FIFO."""
        if self.rx_fifo:
            self.lsr |= self.rx_fifo[0][1]

    def _clear_rx(self) -> None:
        self.rx_fifo.clear()
        self.lsr &= ~(LSR_DR | LSR_RX_FIFO_ERROR)

    def _sync_data_ready(self) -> None:
        if self.rx_fifo:
            self.lsr |= LSR_DR
        else:
            self.lsr &= ~LSR_DR

    # ------------------------------------------------------------------ modem lines
    def _modem_inputs(self) -> int:
        """MSR bits 4-7: in loopback MCR drives them (RTS->CTS, DTR->DSR, OUT1->RI,
        OUT2->DCD), otherwise the host end of the line."""
        if not self.mcr & MCR_LOOP:
            return HOST_MODEM_LINES
        mcr = self.mcr
        return (
            (MSR_CTS if mcr & MCR_RTS else 0)
            | (MSR_DSR if mcr & MCR_DTR else 0)
            | (MSR_RI if mcr & MCR_OUT1 else 0)
            | (MSR_DCD if mcr & MCR_OUT2 else 0)
        )

    def _set_modem_inputs(self, inputs: int) -> None:
        old = self.msr & MSR_LINES
        changed = old ^ inputs
        deltas = self.msr & MSR_DELTAS
        if changed & MSR_CTS:
            deltas |= MSR_DCTS
        if changed & MSR_DSR:
            deltas |= MSR_DDSR
        if changed & MSR_DCD:
            deltas |= MSR_DDCD
        if old & MSR_RI and not inputs & MSR_RI:
            deltas |= MSR_TERI  # only the trailing edge of RI counts
        self.msr = inputs | deltas

    # ------------------------------------------------------------------ interrupts
    def _interrupt_id(self) -> int:
        """IIR bits 0-3: the highest-priority pending source (datasheet IIR table)."""
        ier = self.ier
        if ier & IER_ELSI and self.lsr & LSR_LINE_ERRORS:
            return IIR_RLS
        if ier & IER_ERBFI and self.rx_fifo:
            return IIR_RDA if len(self.rx_fifo) >= self.trigger_level else IIR_CTI
        if ier & IER_ETBEI and self.thr_empty_pending:
            return IIR_THRE
        if ier & IER_EDSSI and self.msr & MSR_DELTAS:
            return IIR_MSR
        return IIR_NONE

    def _update_irq(self) -> None:
        """The IRQ line: INTR through the PC's OUT2 gate; the OUT2 pin is inactive in loopback."""
        pending = self._interrupt_id() != IIR_NONE
        gate_open = self.mcr & (MCR_OUT2 | MCR_LOOP) == MCR_OUT2
        if pending and not self.mcr & (MCR_OUT2 | MCR_LOOP) and "OUT2" not in self._logged:
            # Forgetting OUT2 is a kernel bug QEMU hides (it has no gate): say so, once.
            self._note("OUT2", "interrupt pending with MCR.OUT2 clear: held off the PIC until set")
        self.irq.set_level(gate_open and pending)

    def _note(self, what: str, why: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.info("%s: %s: %s", self.name, what, why)

    # ------------------------------------------------------------------ snapshots
    def get_state(self) -> UartState:
        return UartState(
            ier=self.ier,
            fcr=self.fcr,
            lcr=self.lcr,
            mcr=self.mcr,
            lsr=self.lsr,
            msr=self.msr,
            scr=self.scr,
            dll=self.dll,
            dlm=self.dlm,
            rbr=self.rbr,
            thr_empty_pending=self.thr_empty_pending,
            rx_fifo=tuple(self.rx_fifo),
            host_queue=tuple(self.host_queue),
        )

    @classmethod
    def from_state(
        cls,
        state: UartState,
        irq: IrqLine,
        sink: Callable[[bytes], None] | None = None,
        name: str = "COM1",
    ) -> Uart16550:
        """A UART in ``state``, driving ``irq`` to the level that state implies. Raises
        ValueError when the state breaks the chip's invariants."""
        _check_state(state)
        uart = cls.__new__(cls)  # not __init__: a reset would pulse a line that is already high
        uart._attach(irq, sink, name)
        for f in fields(state):
            setattr(uart, f.name, getattr(state, f.name))
        uart.rx_fifo = deque(state.rx_fifo)
        uart.host_queue = deque(state.host_queue)
        uart._update_irq()
        return uart


def _check_state(state: UartState) -> None:
    def bad(why: str) -> ValueError:
        return ValueError(f"invalid 16550A state: {why}")

    for name in ("ier", "fcr", "lcr", "mcr", "lsr", "msr", "scr", "dll", "dlm", "rbr"):
        if not 0 <= getattr(state, name) <= 0xFF:
            raise bad(f"{name}={getattr(state, name)!r} is not a byte")
    if state.ier & ~IER_MASK or state.mcr & ~MCR_MASK:
        raise bad("reserved IER or MCR bits are set")
    capacity = FIFO_SIZE if state.fcr & FCR_ENABLE else 1
    if len(state.rx_fifo) > capacity:
        raise bad(f"{len(state.rx_fifo)} characters in a receive buffer of {capacity}")
    for char, errors in state.rx_fifo:
        if not 0 <= char <= 0xFF or errors & ~RX_CHAR_ERRORS:
            raise bad(f"receive FIFO entry {(char, errors)!r}")
    if bool(state.lsr & LSR_DR) != bool(state.rx_fifo):
        raise bad("LSR.DR disagrees with the receive FIFO")
    if any(not 0 <= item <= HOST_BREAK for item in state.host_queue):
        raise bad("host queue holds a value that is neither a byte nor a break")


# ---------------------------------------------------------------------- host adapters


class SerialCapture:
    """A sink that collects everything the guest transmits in ``data``."""

    def __init__(self) -> None:
        self.data = bytearray()

    def __call__(self, data: bytes) -> None:
        self.data += data


class StdoutSink:
    """Raw bytes to the process's standard output, flushed at once (looked up at each write,
    so a replaced ``sys.stdout`` is honoured)."""

    def __call__(self, data: bytes) -> None:
        out = sys.stdout.buffer
        out.write(data)
        out.flush()


class FileSink:
    """Serial output written to a file (truncated first, as QEMU's ``-serial file:``, so two runs
    leave the same bytes), flushed at each write so a crash loses nothing."""

    def __init__(self, path: str) -> None:
        try:
            self._file = open(path, "wb")  # noqa: SIM115 - open for the whole run
        except OSError as e:
            raise ValueError(f"serial output file {path!r}: {e.strerror}") from None
        self.path = path

    def __call__(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serial_sink_for(spec: str) -> Callable[[bytes], None] | None:
    """``--serial``: ``stdio``, ``file:PATH`` (truncated first) or ``none`` -> a sink, or None."""
    if spec == "none":
        return None
    if spec == "stdio":
        return StdoutSink()
    if spec.startswith("file:") and len(spec) > len("file:"):
        return FileSink(spec[len("file:") :])
    raise ValueError(f"serial output {spec!r}: use stdio, file:PATH or none")


_ESCAPE = re.compile(rb"\\(x[0-9A-Fa-f]{2}|[nrt\\])")
_ESCAPED = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"\\": b"\\"}


def _unescape(match: re.Match[bytes]) -> bytes:
    code = match.group(1)
    return bytes((int(code[1:], 16),)) if code[:1] == b"x" else _ESCAPED[code]


def serial_input_from(spec: str) -> bytes:
    """``--serial-input``: ``file:PATH``, ``stdio`` or literal text, as bytes for COM1.

    Literal text is UTF-8 and may use the escapes \\n, \\r, \\t, \\\\ and \\xNN. ``stdio``
    reads standard input to its end, but only when it is not a terminal (a pipe or a file):
    there is no interactive input, so at a terminal it gives nothing (and says so in the log)
    instead of waiting for end-of-file before the run starts."""
    if spec.startswith("file:"):
        path = spec[len("file:") :]
        if not path:
            raise ValueError("serial input 'file:' needs a path: file:PATH")
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ValueError(f"serial input file {path!r}: {e.strerror}") from None
    if spec == "stdio":
        stdin = sys.stdin
        if stdin is None or stdin.isatty():
            log.warning("--serial-input stdio: standard input is a terminal; nothing is read")
            return b""
        return stdin.buffer.read()
    return _ESCAPE.sub(_unescape, spec.encode())
