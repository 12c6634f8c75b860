"""QEMU's isa-debug-exit device and the Bochs/QEMU port 0xE9 debug console.

isa-debug-exit (``-device isa-debug-exit,iobase=0xf4,iosize=0x01``): a write of value v, of any
width, anywhere in its window, ends the run; QEMU exits with status (v << 1) | 1, so a guest can
never produce status 0 and test harnesses map an agreed value to success. QEMU gives the device
a read handler that returns 0 (a guest can tell it from an empty ISA port, which reads all-ones);
there is no register behind it, so we return 0 too and log the first read.

Port 0xE9 (Bochs' "port e9 hack", QEMU's isa-debugcon): each byte written is printed on the
host; a read returns 0xE9 (isa-debugcon's default ``readback``), so a guest can detect that the
console exists before using it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

DEBUG_EXIT_PORT = 0xF4  # QEMU's customary iobase for isa-debug-exit
DEBUG_EXIT_IOSIZE = 1  # QEMU's default window, in ports
DEBUG_EXIT_READ_VALUE = 0x00  # what QEMU's read handler returns
DEBUG_CONSOLE_PORT = 0xE9
DEBUG_CONSOLE_READBACK = 0xE9  # isa-debugcon's default readback byte


def exit_status(value: int) -> int:
    """The process exit status QEMU ends with after a debug-exit write of ``value``:
    (value << 1) | 1, of which the host keeps the low 8 bits."""
    return ((value << 1) | 1) & 0xFF


def _access_mask(size: int) -> int:
    return (1 << (8 * size)) - 1


class DebugExit:
    """isa-debug-exit: ``on_exit(value)`` is called with each value written.

    ``iosize`` is the number of ports the device decodes (the machine maps that many); every
    port in the window behaves the same, as in QEMU."""

    def __init__(self, on_exit: Callable[[int], None], iosize: int = DEBUG_EXIT_IOSIZE) -> None:
        if iosize < 1:
            raise ValueError(f"isa-debug-exit iosize must be at least 1, not {iosize}")
        self.on_exit = on_exit
        self.iosize = iosize
        self._logged_read = False

    def reset(self) -> None:
        """Nothing to reset: the device has no registers."""

    def read(self, offset: int, size: int) -> int:
        if not self._logged_read:
            self._logged_read = True
            log.info("isa-debug-exit: read of a port with no register: returns 0, as QEMU does")
        return DEBUG_EXIT_READ_VALUE

    def write(self, offset: int, size: int, value: int) -> None:
        self.on_exit(value & _access_mask(size))


class DebugConsole:
    """Port 0xE9 console: every byte written goes to ``sink`` (None drops it)."""

    def __init__(self, sink: Callable[[bytes], None] | None) -> None:
        self.sink = sink
        self._logged_wide = False

    def reset(self) -> None:
        """Nothing to reset: the console is a wire to the host."""

    def read(self, offset: int, size: int) -> int:
        return DEBUG_CONSOLE_READBACK

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 1 and not self._logged_wide:
            self._logged_wide = True
            log.info("debug console: %d-byte write: only the low byte is printed", size)
        if self.sink is not None:
            self.sink(bytes((value & 0xFF,)))
