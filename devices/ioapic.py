"""The I/O APIC (82093AA-style, QEMU 7.2's ioapic version 0x20) at 0xFEC00000.

Registers, through IOREGSEL (offset 0x00, 8 bits kept) and IOWIN (offset 0x10, 32-bit
accesses only): 0x00 ID (bits 24-27), 0x01 version (0x00170020: 24 entries, version 0x20),
0x02 arbitration (reads 0), 0x10-0x3F the 24 redirection entries (low word at 0x10 + 2n).
Offset 0x40 is the EOI register of version 0x20 (a write ends the level-triggered interrupts
of that vector). Measured with images/probe-lapic: reserved indexes read 0; the delivery status
(bit 12) and remote IRR (bit 14) are read-only; the high word keeps all 32 bits.

Each entry has vector, delivery mode (fixed, lowest priority, SMI, NMI, INIT, ExtINT),
destination mode and destination, polarity, trigger mode with remote IRR, and mask. As in
QEMU: an edge on an unmasked pin delivers once (an edge on a masked pin is lost); a level-
triggered pin delivers while high and sets remote IRR, which the local APIC's EOI broadcast
(or the EOI register) clears, delivering again if the pin is still high. Polarity is stored
but not applied (QEMU does the same: the ISA inputs are active high). ExtINT asks the 8259s for
the vector. Destinations are matched against the one local APIC (``deliver``); one not
matching it reaches no processor (logged once).

The ISA IRQs are wired as on QEMU's pc machine: IRQ 0 (the PIT) to pin 2, IRQ n to pin n; the
machine gives each ISA line to both the 8259 pair and ``pin(n)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .irq import IrqLine

log = logging.getLogger(__name__)

IOAPIC_BASE = 0xFEC00000
MMIO_SIZE = 0x1000
PINS = 24
VERSION = 0x00170020  # max redirection entry 23, version 0x20

MASKED = 1 << 16
LEVEL = 1 << 15
REMOTE_IRR = 1 << 14
POLARITY_LOW = 1 << 13
DELIVERY_STATUS = 1 << 12
LOGICAL = 1 << 11
RO_BITS = REMOTE_IRR | DELIVERY_STATUS
DM_FIXED, DM_LOWEST, DM_SMI, DM_NMI, DM_INIT, DM_EXTINT = 0, 1, 2, 4, 5, 7
DELIVERY_MODES = {0: "fixed", 1: "lowest priority", 2: "SMI", 3: "reserved", 4: "NMI",
                  5: "INIT", 6: "reserved", 7: "ExtINT"}  # fmt: skip


def isa_pin(irq: int) -> int:
    """The I/O APIC pin an ISA IRQ reaches on QEMU's pc machine (IRQ 0 to pin 2)."""
    return 2 if irq == 0 else irq


class IoApic:
    """One I/O APIC. ``deliver(dest, logical, mode, vector, level, source)`` sends a message
    to the local APIC (the machine connects it); ``pic_vector`` gives the 8259s' vector for an
    ExtINT entry."""

    def __init__(
        self,
        deliver: Callable[[int, bool, int, int, bool, str], bool] | None = None,
        pic_vector: Callable[[], int] | None = None,
    ) -> None:
        self.deliver = deliver
        self.pic_vector = pic_vector
        self._logged: set[str] = set()
        self._pins = tuple(IrqLine(f"I/O APIC pin {n}", self._pin_handler(n)) for n in range(PINS))
        self.reset()

    def reset(self) -> None:
        self.ioregsel = 0
        self.ioapic_id = 0
        self.redirection = [MASKED] * PINS
        self.irr = 0  # pins requesting (edge seen, or level high)
        self.levels = 0  # each pin's input level
        self.deliveries = 0
        self.events_changed = True

    def _note(self, what: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.info("I/O APIC: %s", what)

    # ---------------------------------------------------------------- wiring
    def pin(self, n: int) -> IrqLine:
        """The input line of pin ``n`` (0-23): drive it from a device or fan an ISA IRQ into
        it. An ISA IRQ goes to ``pin(isa_pin(irq))``."""
        if not 0 <= n < PINS:
            raise ValueError(f"the I/O APIC has pins 0-{PINS - 1}, not {n}")
        return self._pins[n]

    def _pin_handler(self, n: int) -> Callable[[bool], None]:
        return lambda level: self.set_pin(n, level)

    def set_pin(self, n: int, level: bool) -> None:
        mask = 1 << n
        entry = self.redirection[n]
        self.levels = self.levels | mask if level else self.levels & ~mask
        if entry & LEVEL:
            if level:
                self.irr |= mask
                if not entry & REMOTE_IRR:
                    self._service()
            else:
                self.irr &= ~mask
        elif level and not entry & MASKED:
            self.irr |= mask
            self._service()

    # ------------------------------------------------------------- delivery
    def _service(self) -> None:
        for n in range(PINS):
            mask = 1 << n
            if not self.irr & mask:
                continue
            entry = self.redirection[n]
            if entry & MASKED:
                continue
            if entry & LEVEL:
                if entry & REMOTE_IRR:
                    continue
                self.redirection[n] = entry | REMOTE_IRR
            else:
                self.irr &= ~mask
            self._send(n, entry)

    def _send(self, n: int, entry: int) -> None:
        mode = (entry >> 8) & 7
        vector = entry & 0xFF
        if mode in (3, 6):
            self._note(f"pin {n}: reserved delivery mode {mode}: not delivered")
            return
        if mode in (DM_SMI, DM_INIT):
            self._note(f"pin {n}: {DELIVERY_MODES[mode]} delivery is not modelled: dropped")
            return
        if mode == DM_EXTINT:
            if self.pic_vector is None:
                return
            vector = self.pic_vector()
        self.deliveries += 1
        dest = self.redirection[n] >> 56
        if self.deliver is not None and not self.deliver(
            dest, bool(entry & LOGICAL), mode, vector, bool(entry & LEVEL), f"I/O APIC pin {n}"
        ):
            self._note(
                f"pin {n}: destination 0x{dest:02x} ({'logical' if entry & LOGICAL else 'physical'})"
                " matches no local APIC: the interrupt reaches no processor"
            )

    def eoi(self, vector: int) -> None:
        """An EOI for ``vector`` (broadcast by the local APIC, or the EOI register): the level-
        triggered entries with that vector clear remote IRR and deliver again if still high."""
        for n in range(PINS):
            entry = self.redirection[n]
            if entry & 0xFF == vector and entry & LEVEL and entry & REMOTE_IRR:
                self.redirection[n] = entry & ~REMOTE_IRR
                self.events_changed = True
                if not entry & MASKED and self.irr >> n & 1:
                    self._service()

    # ------------------------------------------------------------ registers
    def mem_read(self, offset: int, size: int) -> int:
        offset &= 0xFF
        if offset == 0x00:
            return self.ioregsel
        if offset == 0x10 and size == 4:
            return self.read_register(self.ioregsel)
        if offset == 0x10:
            self._note("IOWIN accesses narrower than 32 bits read 0 (as QEMU)")
        return 0

    def read_register(self, index: int) -> int:
        if index == 0x00:
            return self.ioapic_id << 24
        if index == 0x01:
            return VERSION
        if 0x10 <= index < 0x10 + 2 * PINS:
            entry = self.redirection[(index - 0x10) >> 1]
            return (entry >> 32) & 0xFFFFFFFF if index & 1 else entry & 0xFFFFFFFF
        return 0  # arbitration ID and reserved indexes

    def mem_write(self, offset: int, size: int, value: int) -> None:
        offset &= 0xFF
        if offset == 0x00:
            self.ioregsel = value & 0xFF
        elif offset == 0x10:
            if size != 4:
                self._note("IOWIN writes narrower than 32 bits are dropped (as QEMU)")
                return
            self.write_register(self.ioregsel, value & 0xFFFFFFFF)
        elif offset == 0x40:
            self.eoi(value & 0xFF)
        else:
            self._note(f"write to offset 0x{offset:02x} (nothing there) ignored")

    def write_register(self, index: int, value: int) -> None:
        if index == 0x00:
            self.ioapic_id = (value >> 24) & 0xF
        elif index in (0x01, 0x02):
            self._note(f"write to read-only register 0x{index:02x} ignored")
        elif 0x10 <= index < 0x10 + 2 * PINS:
            n = (index - 0x10) >> 1
            entry = self.redirection[n]
            ro = entry & RO_BITS
            high, low = (value, entry & 0xFFFFFFFF) if index & 1 else (entry >> 32, value)
            entry = (high << 32) | low
            entry = (entry & ~RO_BITS) | ro
            if not entry & LEVEL:
                entry &= ~REMOTE_IRR  # QEMU: an edge-triggered entry has no remote IRR
            mode = (entry >> 8) & 7
            if mode in (3, 6):
                self._note(f"pin {n}: reserved delivery mode {mode} written")
            if entry & POLARITY_LOW:
                self._note("active-low polarity is stored but not applied (as QEMU)")
            self.redirection[n] = entry
            self.events_changed = True
            self._service()
        else:
            self._note(f"write to reserved register 0x{index:02x} ignored")

    # -------------------------------------------------------------- reports
    def describe(self) -> str:
        lines = [
            f"I/O APIC id {self.ioapic_id} at 0x{IOAPIC_BASE:08x}, IOREGSEL 0x{self.ioregsel:02x}"
        ]
        for n, entry in enumerate(self.redirection):
            if entry & MASKED and not self.levels >> n & 1:
                continue
            lines.append(f"  pin {n:2}: {describe_entry(entry)}, input {self.levels >> n & 1}")
        if len(lines) == 1:
            lines.append("  every pin masked")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "id": self.ioapic_id, "version": VERSION, "ioregsel": self.ioregsel,
            "redirection": [f"0x{e:016x}" for e in self.redirection],
            "irr": self.irr, "levels": self.levels, "deliveries": self.deliveries,
        }  # fmt: skip


def describe_entry(entry: int) -> str:
    mode = DELIVERY_MODES[(entry >> 8) & 7]
    dest = entry >> 56
    return (
        f"vector 0x{entry & 0xFF:02x} {mode}, dest 0x{dest:02x} "
        f"{'logical' if entry & LOGICAL else 'physical'}, "
        f"{'level' if entry & LEVEL else 'edge'}{' remote-IRR' if entry & REMOTE_IRR else ''}, "
        f"active {'low' if entry & POLARITY_LOW else 'high'}"
        f"{', masked' if entry & MASKED else ''}"
    )
