"""QEMU's isa-debug-exit device and the Bochs/QEMU port 0xE9 debug console.

isa-debug-exit (default port 0xF4, one byte wide): a write of value v ends the run; QEMU exits
with status (v << 1) | 1, so a guest can never produce status 0, and test harnesses map an agreed
value to success. QEMU registers the device with a write handler only, so a read of its port is
not decoded by it: we log that once and return all-ones, as an undecoded ISA port reads.

Port 0xE9 (Bochs "port e9 hack", QEMU's isa-debugcon): bytes written are printed on the host;
a read returns 0xE9 so a guest can detect that the console exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

DEBUG_EXIT_PORT = 0xF4
DEBUG_CONSOLE_PORT = 0xE9
DEBUG_CONSOLE_READBACK = 0xE9


def exit_status(value: int) -> int:
    """The process exit status QEMU uses for a debug-exit write of ``value``."""
    return ((value << 1) | 1) & 0xFF


class DebugExit:
    """isa-debug-exit: ``on_exit(value)`` is called with the value written."""

    def __init__(self, on_exit: Callable[[int], None], iosize: int = 1) -> None:
        if iosize not in (1, 2, 4):
            raise ValueError("isa-debug-exit iosize must be 1, 2 or 4")
        self.on_exit = on_exit
        self.iosize = iosize
        self._read_logged = False
        self.reset()

    def reset(self) -> None:
        self.last_value: int | None = None

    def read(self, offset: int, size: int) -> int:
        if not self._read_logged:
            self._read_logged = True
            log.info("isa-debug-exit: read of a write-only port: reads as all-ones")
        return (1 << (8 * size)) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        value &= (1 << (8 * min(size, self.iosize))) - 1
        self.last_value = value
        self.on_exit(value)


class DebugConsole:
    """Port 0xE9 console: every byte written goes to ``sink``."""

    def __init__(self, sink: Callable[[bytes], None] | None) -> None:
        self.sink = sink

    def reset(self) -> None:
        pass  # no state: the console is a wire to the host

    def read(self, offset: int, size: int) -> int:
        return DEBUG_CONSOLE_READBACK

    def write(self, offset: int, size: int, value: int) -> None:
        if self.sink is not None:
            self.sink(bytes((value & 0xFF,)))
