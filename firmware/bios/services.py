"""The BIOS services behind the ROM stubs: one dispatcher, one function per interrupt.

The core traps at a stub's UD2 (firmware/pc_bios.py), copies the caller's registers into a
``BiosRegs`` and calls ``BiosServices.call(vector, regs, bus)``. The service works on the copy
and on the guest through the bus (memory, I/O ports: the CMOS clock, the i8042, the PICs and
the VGA registers are reached through their ports, as SeaBIOS reaches them), and returns None:
resume at the stub's IRET with the registers as changed; or a ``BiosStop``: the call cannot
finish now (``wait``: it waits for a device, retry after the next device event) or ends the
run (``halt``).

SeaBIOS 1.16 under QEMU 7.2 is the reference for every answer; images/bios measures them.
Functions SeaBIOS has that are not modelled here, and functions no BIOS has, answer CF=1 and
AH=86h ("unsupported", SeaBIOS's RET_EUNSUPPORTED) with one log line per function, except where
SeaBIOS answers an unknown function otherwise (docs/bios.md, "Unknown functions").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from . import clock, disk, keyboard, system, video
from .bda import Bda, pic_eoi_master, pic_eoi_slave
from .regs import BiosBus, BiosRegs, BiosStop

log = logging.getLogger(__name__)

UNSUPPORTED = 0x86  # AH of an unsupported function (RET_EUNSUPPORTED)


@dataclass
class Call:
    """One BIOS call: the bus, the BIOS data area, and the services' state."""

    services: BiosServices
    bus: BiosBus
    vector: int
    regs: BiosRegs
    bda: Bda = field(init=False)

    def __post_init__(self) -> None:
        self.bda = Bda(self.bus)

    def unsupported(self, what: str, ah: int | None = UNSUPPORTED) -> None:
        """Answer CF=1 (and AH=``ah``) and say once which function it was."""
        self.services.note(f"INT {self.vector:02X}h {what}")
        self.regs.fail(ah)

    def note(self, what: str) -> None:
        self.services.note(f"INT {self.vector:02X}h {what}")


Handler = Callable[[Call, BiosRegs], "BiosStop | None"]


def _nothing(_call: Call, _r: BiosRegs) -> None:
    """NMI (02h) and print screen (05h): SeaBIOS does nothing."""


def _int11(call: Call, r: BiosRegs) -> None:
    """Equipment list: AX = the BDA's equipment word (flags untouched)."""
    r.ax = call.bda.u16(0x10)


def _int12(call: Call, r: BiosRegs) -> None:
    """Conventional memory size: AX = KiB below the EBDA (flags untouched)."""
    r.ax = call.bda.u16(0x13)


def _no_boot_device(call: Call, r: BiosRegs) -> BiosStop:
    """INT 18h/19h: no boot device. SeaBIOS prints its message on the screen (through INT 10h
    teletype) and waits for ever (QEMU's default: no reboot timeout)."""
    video.print_text(call, "No bootable device.\n")
    what = "INT 18h (boot failure)" if call.vector == 0x18 else "INT 19h (bootstrap)"
    return BiosStop("halt", f"{what}: no bootable device (the BIOS prints so and waits)")


def _eoi_master(call: Call, r: BiosRegs) -> None:
    """IRQ 2-5 and 7 with no handler: a non-specific EOI to the master PIC."""
    pic_eoi_master(call.bus)


def _eoi_slave(call: Call, r: BiosRegs) -> None:
    """IRQ 9-11 and 15 with no handler: EOI to the slave PIC, then to the master."""
    pic_eoi_slave(call.bus)


def _irq6(call: Call, r: BiosRegs) -> None:
    """IRQ 6 (diskette): mark the interrupt in the recalibration status, EOI."""
    call.bda.set8(0x3E, call.bda.u8(0x3E) | 0x80)
    pic_eoi_master(call.bus)


def _irq13(call: Call, r: BiosRegs) -> None:
    """IRQ 13 (x87): clear the coprocessor's busy latch, EOI (SeaBIOS then calls INT 02h,
    which does nothing)."""
    call.bus.outb(0xF0, 0)
    pic_eoi_slave(call.bus)


def _irq14(call: Call, r: BiosRegs) -> None:
    """IRQ 14 (hard disk): EOI, then the BDA's disk interrupt flag."""
    pic_eoi_slave(call.bus)
    call.bda.set8(0x8E, 0xFF)


def _irq12(call: Call, r: BiosRegs) -> None:
    """IRQ 12 (PS/2 mouse): take the byte if it is the mouse's, EOI. No mouse handler is
    installed (SeaBIOS's INT 15h AH=C2h is not modelled), so the byte is dropped."""
    status = call.bus.inb(0x64)
    if status & 0x21 == 0x21:
        call.bus.inb(0x60)
    pic_eoi_slave(call.bus)


def _unsupported_vector(call: Call, r: BiosRegs) -> None:
    call.unsupported(f"AX={r.ax:04X}h (this BIOS service is not modelled)")


class BiosServices:
    """The services of one machine. ``ram_size`` fixes the memory map (INT 15h)."""

    def __init__(self, ram_size: int) -> None:
        self.ram_size = ram_size
        self._noted: dict[str, None] = {}
        self.handlers: dict[int, Handler] = {
            0x02: _nothing,
            0x05: _nothing,
            0x08: clock.int08,
            0x09: keyboard.int09,
            0x0A: _eoi_master,
            0x0E: _irq6,
            0x10: video.int10,
            0x11: _int11,
            0x12: _int12,
            0x13: disk.int13,
            0x15: system.int15,
            0x16: keyboard.int16,
            0x18: _no_boot_device,
            0x19: _no_boot_device,
            0x1A: clock.int1a,
            0x40: disk.int13,  # the diskette service: the same code for DL < 80h
            0x70: clock.int70,
            0x71: _eoi_slave,
            0x74: _irq12,
            0x75: _irq13,
            0x76: _irq14,
        }

    def note(self, what: str) -> None:
        """Log ``what`` (an unmodelled function) once per machine."""
        if what not in self._noted:
            self._noted[what] = None
            log.warning("BIOS: %s", what)

    @property
    def noted(self) -> tuple[str, ...]:
        """The unmodelled functions called so far, in order."""
        return tuple(self._noted)

    def call(self, vector: int, regs: BiosRegs, bus: BiosBus) -> BiosStop | None:
        """Serve the call of the stub with trap byte ``vector``, changing ``regs``."""
        handler = self.handlers.get(vector, _unsupported_vector)
        return handler(Call(self, bus, vector, regs), regs)
