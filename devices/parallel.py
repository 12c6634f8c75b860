"""A PC parallel port (LPT1 at 0x378-0x37A) with nothing plugged in, as QEMU's isa-parallel
shows it to a kernel.

Three registers (IBM PC parallel adapter, standard mode):

  base+0  data: the latch the CPU writes; a read gives the latch back
  base+1  status (read-only): bit 7 /BUSY (1: not busy), bit 6 /ACK, bit 5 PE (paper end),
          bit 4 SELECT, bit 3 /ERROR, bit 0 the EPP timeout bit
  base+2  control: bit 4 IRQ enable, bit 3 SELECT IN, bit 2 /INIT, bit 1 AUTOFD, bit 0 STROBE;
          bits 6-7 read as 1

With no printer the status never changes: 0xD9, what QEMU's port reads with its default
backend (not busy, no acknowledge pending, selected, no error, timeout bit set; measured with
images/probe-devices). At reset the data latch is 0 and the control register 0xCC (/INIT and
SELECT IN high, the two unused bits as 1s), as in QEMU. Nothing is printed: a byte strobed out
goes nowhere (logged once), the bidirectional and EPP/ECP modes and the interrupt are not
modelled (logged once).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

LPT1_BASE = 0x378
DATA, STATUS, CONTROL = 0, 1, 2
STATUS_NO_PRINTER = 0xD9  # /BUSY | /ACK | SELECT | /ERROR | timeout
CONTROL_RESET = 0xCC  # bits 6-7 (read as 1), SELECT IN, /INIT
CONTROL_FIXED = 0xC0  # bits 6-7 are not implemented and read as 1
CONTROL_STROBE = 0x01
CONTROL_IRQ = 0x10
CONTROL_INPUT = 0x20  # direction (bidirectional ports only)


class ParallelPort:
    """One parallel port, registers at offsets 0-2 of its base."""

    def __init__(self, name: str = "LPT1") -> None:
        self.name = name
        self._logged: set[str] = set()
        self.reset()

    def reset(self) -> None:
        self.data = 0x00
        self.control = CONTROL_RESET

    def read(self, offset: int, size: int) -> int:
        if offset == DATA:
            return self.data
        if offset == STATUS:
            return STATUS_NO_PRINTER
        return self.control

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset == DATA:
            self.data = value
        elif offset == CONTROL:
            if value & CONTROL_STROBE and not self.control & CONTROL_STROBE:
                self._note("printing (a strobed byte goes nowhere: no printer)")
            if value & (CONTROL_IRQ | CONTROL_INPUT):
                self._note("the interrupt and the bidirectional mode")
            self.control = value | CONTROL_FIXED
        else:
            self._note("a write to the status register")

    def _note(self, what: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.info("%s: %s is not modelled", self.name, what)
