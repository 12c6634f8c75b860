"""Intel 8259A programmable interrupt controller, and the PC's cascaded pair.

One ``Pic8259`` class models the chip; ``PicPair`` wires two of them as on every PC: the master
at 0x20/0x21 (IRQ 0-7), the slave at 0xA0/0xA1 (IRQ 8-15) on the master's input 2, and the
ELCR (edge/level control) registers at 0x4D0/0x4D1.

Modelled from the Intel 8259A datasheet: ICW1-ICW4 (edge/level triggering, cascade or single,
8086 mode, auto-EOI), OCW1 (the mask), OCW2 (non-specific, specific and rotating EOIs, set
priority), OCW3 (read IRR/ISR, poll, special mask mode); priority resolution with rotation;
INTA returning the vector; spurious IRQ 7/15 (ISR bit left clear) when the request goes away
before the acknowledge. Not modelled: MCS-80/85 mode (ICW1 IC4=0 with 8080 vectors), buffered
mode and special fully nested mode are stored but change nothing (logged once).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .irq import IrqLine

log = logging.getLogger(__name__)

ICW1_IC4 = 0x01  # ICW4 needed
ICW1_SNGL = 0x02  # single (no cascade)
ICW1_LTIM = 0x08  # level-triggered inputs
ICW1_INIT = 0x10  # this is ICW1 (on the command port)
ICW4_8086 = 0x01
ICW4_AEOI = 0x02  # auto end of interrupt
ICW4_SFNM = 0x10  # special fully nested mode
OCW3_RIS = 0x01  # read ISR (else IRR) ...
OCW3_RR = 0x02  # ... when RR is set
OCW3_POLL = 0x04
OCW3_SMM = 0x20  # special mask mode ...
OCW3_ESMM = 0x40  # ... changed only when ESMM is set
OCW_IS_OCW3 = 0x08  # with bit 4 clear: OCW3, else OCW2


@dataclass(frozen=True)
class PicState:
    irr: int
    isr: int
    imr: int
    lines: int
    priority_add: int
    vector_base: int
    read_isr: bool
    special_mask: bool
    auto_eoi: bool
    rotate_on_aeoi: bool
    level_triggered: int
    init_step: int


class Pic8259:
    """One 8259A. ``output`` is its INT pin; ``name`` names it in logs."""

    def __init__(self, output: IrqLine, name: str = "PIC") -> None:
        self.output = output
        self.name = name
        self.elcr = 0  # edge/level control: set bits are level-triggered inputs
        self.elcr_mask = 0xFF
        self._logged: set[str] = set()
        self.reset()

    def reset(self) -> None:
        # Set by everything that changes the chip's state during a run (ports, pins, INTA);
        # the scheduler clears it when it reads the state, and reschedules after a port
        # access only if it is set.
        self.events_changed = True
        self.irr = 0  # interrupt request register
        self.isr = 0  # in-service register
        self.imr = 0  # interrupt mask register
        self.lines = 0  # the input pins' levels
        self.priority_add = 0  # rotation: the IRQ with the highest priority
        self.vector_base = 0
        self.read_isr = False
        self.poll = False
        self.special_mask = False
        self.auto_eoi = False
        self.rotate_on_aeoi = False
        self.single = False
        self.ltim = False
        self.init_step = 0  # 0: operational, 2-4: expecting ICW2-ICW4
        self.icw4_needed = False
        self._update_irq()

    # ------------------------------------------------------------------ inputs
    def set_irq(self, line: int, level: bool) -> None:
        """An input pin changes level (edge-triggered inputs latch rising edges)."""
        self.events_changed = True
        mask = 1 << line
        level_mode = self.ltim or bool(self.elcr & mask)
        if level:
            if level_mode or not self.lines & mask:
                self.irr |= mask
            self.lines |= mask
        else:
            self.lines &= ~mask
            if level_mode:
                self.irr &= ~mask
        self._update_irq()

    def irq_line(self, line: int) -> IrqLine:
        """An IrqLine a device drives, connected to input ``line``."""
        return IrqLine(f"{self.name} IR{line}", lambda level: self.set_irq(line, level))

    # ------------------------------------------------------------------ priority
    def _highest(self, bits: int) -> int | None:
        """The highest-priority set bit under the current rotation, or None."""
        if not bits:
            return None
        pa = self.priority_add  # rotate so that line pa is bit 0, then take the lowest bit
        rotated = ((bits >> pa) | (bits << (8 - pa))) & 0xFF
        return ((rotated & -rotated).bit_length() - 1 + pa) & 7

    def pending(self) -> int | None:
        """The IRQ the chip is signalling, if any (IRR over IMR, against ISR priority)."""
        req = self._highest(self.irr & ~self.imr)
        if req is None:
            return None
        isr = self.isr & ~self.imr if self.special_mask else self.isr
        cur = self._highest(isr)
        if cur is not None and self._rank(cur) <= self._rank(req):
            return None  # something of higher or equal priority is in service
        return req

    def _rank(self, line: int) -> int:
        return (line - self.priority_add) & 7

    def _update_irq(self) -> None:
        self.output.set_level(self.pending() is not None)

    def acknowledge(self) -> int:
        """INTA: the IRQ line being serviced (7 for a spurious interrupt)."""
        self.events_changed = True
        line = self.pending()
        if line is None:
            return 7  # spurious: the request went away; ISR stays clear
        mask = 1 << line
        if not (self.ltim or self.elcr & mask):
            self.irr &= ~mask  # edge-triggered: the latched request is consumed
        if self.auto_eoi:
            if self.rotate_on_aeoi:
                self.priority_add = (line + 1) & 7
        else:
            self.isr |= mask
        self._update_irq()
        return line

    # ------------------------------------------------------------------ ports
    def read(self, offset: int, size: int) -> int:
        if self.poll:
            self.events_changed = True
            self.poll = False
            line = self.pending()
            if line is None:
                return 0
            self.acknowledge()
            return 0x80 | line
        if offset & 1:
            return self.imr
        return self.isr if self.read_isr else self.irr

    def write(self, offset: int, size: int, value: int) -> None:
        self.events_changed = True
        value &= 0xFF
        if offset & 1 == 0:
            if value & ICW1_INIT:
                self._icw1(value)
            elif value & OCW_IS_OCW3:
                self._ocw3(value)
            else:
                self._ocw2(value)
        elif self.init_step == 2:
            self.vector_base = value & 0xF8
            self.init_step = 3 if not self.single else (4 if self.icw4_needed else 0)
        elif self.init_step == 3:
            self.init_step = 4 if self.icw4_needed else 0  # ICW3: the cascade wiring is fixed
        elif self.init_step == 4:
            if not value & ICW4_8086:
                self._note("ICW4 MCS-80/85 mode")
            if value & ICW4_SFNM:
                self._note("special fully nested mode")
            self.auto_eoi = bool(value & ICW4_AEOI)
            self.init_step = 0
        else:
            self.imr = value  # OCW1
        self._update_irq()

    def _icw1(self, value: int) -> None:
        # Initialisation clears the mask and the in-service register and resets priorities.
        self.imr = 0
        self.isr = 0
        self.irr &= self.lines  # edge sense is re-armed
        self.priority_add = 0
        self.special_mask = False
        self.read_isr = False
        self.auto_eoi = False
        self.rotate_on_aeoi = False
        self.single = bool(value & ICW1_SNGL)
        self.ltim = bool(value & ICW1_LTIM)
        self.icw4_needed = bool(value & ICW1_IC4)
        if not self.icw4_needed:
            self._note("ICW1 without ICW4 (MCS-80/85 defaults)")
        self.init_step = 2

    def _ocw2(self, value: int) -> None:
        cmd = value >> 5
        level = value & 7
        if cmd in (1, 5):  # non-specific EOI (5: and rotate)
            line = self._highest(self.isr)
            if line is not None:
                self.isr &= ~(1 << line)
                if cmd == 5:
                    self.priority_add = (line + 1) & 7
        elif cmd in (3, 7):  # specific EOI (7: and rotate)
            self.isr &= ~(1 << level)
            if cmd == 7:
                self.priority_add = (level + 1) & 7
        elif cmd == 4:
            self.rotate_on_aeoi = True
        elif cmd == 0:
            self.rotate_on_aeoi = False
        elif cmd == 6:  # set priority: IRQ `level` becomes the lowest
            self.priority_add = (level + 1) & 7

    def _ocw3(self, value: int) -> None:
        if value & OCW3_ESMM:
            self.special_mask = bool(value & OCW3_SMM)
        if value & OCW3_POLL:
            self.poll = True
        if value & OCW3_RR:
            self.read_isr = bool(value & OCW3_RIS)

    def _note(self, what: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.info("%s: %s is not modelled", self.name, what)

    # ------------------------------------------------------------------ state
    def get_state(self) -> PicState:
        return PicState(self.irr, self.isr, self.imr, self.lines, self.priority_add,
                        self.vector_base, self.read_isr, self.special_mask, self.auto_eoi,
                        self.rotate_on_aeoi, self.elcr, self.init_step)  # fmt: skip

    def describe(self) -> str:
        """`info pic` style: IRR, ISR, IMR, base, ELCR."""
        return (
            f"{self.name}: irr={self.irr:02x} isr={self.isr:02x} imr={self.imr:02x} "
            f"base={self.vector_base:02x} prio={self.priority_add} elcr={self.elcr:02x}"
            + (" auto-eoi" if self.auto_eoi else "")
            + (" special-mask" if self.special_mask else "")
        )


class Elcr:
    """The two ELCR registers (0x4D0 master, 0x4D1 slave): edge (0) or level (1) per IRQ.
    IRQ 0, 1, 2, 8 and 13 are always edge-triggered on a PC."""

    def __init__(self, master: Pic8259, slave: Pic8259) -> None:
        self.pics = (master, slave)
        master.elcr_mask = 0xF8
        slave.elcr_mask = 0xDE

    def reset(self) -> None:
        for pic in self.pics:
            pic.elcr = 0
            pic.events_changed = True

    def read(self, offset: int, size: int) -> int:
        return self.pics[offset & 1].elcr

    def write(self, offset: int, size: int, value: int) -> None:
        pic = self.pics[offset & 1]
        pic.elcr = value & pic.elcr_mask
        pic.events_changed = True


class PicPair:
    """Master and slave 8259A cascaded on IRQ 2; ``cpu_line`` goes high when an IRQ is pending."""

    def __init__(self, cpu_line: IrqLine) -> None:
        self.cpu_line = cpu_line
        self.master = Pic8259(cpu_line, "PIC1")
        self.slave = Pic8259(IrqLine("PIC2 INT", self._cascade), "PIC2")
        self.elcr = Elcr(self.master, self.slave)
        self.last_acknowledged = ""  # "8259 IRQ n" of the last INTA, for the trace

    def _cascade(self, level: bool) -> None:
        self.master.set_irq(2, level)

    def reset(self) -> None:
        self.master.reset()
        self.slave.reset()
        self.elcr.reset()

    def irq_line(self, irq: int) -> IrqLine:
        """The IrqLine for ISA IRQ 0-15 (2 is the cascade: IRQ 9 takes its place)."""
        if irq < 8:
            return self.master.irq_line(irq)
        return self.slave.irq_line(irq - 8)

    def acknowledge(self) -> int:
        """The two INTA cycles: the vector of the highest-priority pending IRQ (its IRQ is
        ``last_acknowledged``)."""
        line = self.master.acknowledge()
        if line == 2 and not self.master.single:
            sline = self.slave.acknowledge()
            self.last_acknowledged = f"8259 IRQ {8 + sline}"
            return self.slave.vector_base + sline
        self.last_acknowledged = f"8259 IRQ {line}"
        return self.master.vector_base + line

    @property
    def interrupt_pending(self) -> bool:
        return self.cpu_line.level

    def describe(self) -> str:
        return self.master.describe() + "\n" + self.slave.describe()
