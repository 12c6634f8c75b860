"""The I/O port bus: address decoding between IN/OUT instructions and device models.

Ranges are sorted and never overlap (``map`` raises on overlap or zero length); a table
indexed by port finds the range of an access in O(1). A 16- or
32-bit access to a byte-wide device is split into byte accesses here, not in the devices.
A read from a port nobody decodes returns all-ones for the access size, as an ISA bus with
pull-ups does, and is logged once per port; writes to such ports are dropped and counted.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .errors import ConfigError

log = logging.getLogger(__name__)

# One entry per port, and three more: a wide access at 0xFFFF reaches past the last port.
_TABLE_SIZE = 0x10000 + 3


class PortDevice(Protocol):
    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


@dataclass(frozen=True)
class PortRange:
    base: int
    length: int
    device: PortDevice
    name: str
    byte_only: bool = True
    # the device whose state an access changes (a device decoding several ranges: one owner)
    owner: object = None
    # An access changes no other timed device and no interrupt controller but through the
    # device's IRQ lines, and the device has ``events_changed`` (set when its own next event
    # may have moved): the machine then need not ask every device whether its events moved.
    quiet: bool = False
    owner_has_events: bool = False  # the owner has ``events_changed``
    # the device publishes something for the port read table (``stable_read``,
    # ``stable_write`` or ``queued_writes``, emu/port_cache.py): looked up once, here
    publishes: bool = False

    @property
    def end(self) -> int:
        return self.base + self.length


@dataclass
class PortBus:
    """Sorted, non-overlapping port ranges with all-ones for unmapped reads."""

    ranges: list[PortRange] = field(default_factory=list)
    unmapped_reads: int = 0
    unmapped_writes: int = 0
    _bases: list[int] = field(default_factory=list, repr=False)
    _logged_reads: set[int] = field(default_factory=set, repr=False)
    _logged_writes: set[int] = field(default_factory=set, repr=False)
    # the range decoding each port (None: nobody), filled by ``map``
    _table: list[PortRange | None] = field(default_factory=lambda: [None] * _TABLE_SIZE, repr=False)
    # called after a range is mapped (what was read from its ports before may not hold)
    on_map: Callable[[], None] | None = field(default=None, repr=False)

    def map(
        self,
        base: int,
        length: int,
        device: PortDevice,
        name: str,
        *,
        byte_only: bool = True,
        owner: object = None,
        quiet: bool = False,
    ) -> PortRange:
        if length <= 0:
            raise ConfigError(f"port range for {name} has zero length")
        if base < 0 or base + length > 0x10000:
            raise ConfigError(f"port range for {name} is outside 0x0000-0xFFFF")
        owner = device if owner is None else owner
        events = hasattr(owner, "events_changed")
        publishes = any(
            hasattr(device, a) for a in ("stable_read", "stable_write", "queued_writes")
        )
        new = PortRange(base, length, device, name, byte_only, owner, quiet, events, publishes)
        i = bisect.bisect_left(self._bases, base)
        for neighbour in self.ranges[max(0, i - 1) : i + 1]:
            if neighbour.base < new.end and base < neighbour.end:
                raise ConfigError(
                    f"ports 0x{base:x}-0x{new.end - 1:x} ({name}) overlap "
                    f"0x{neighbour.base:x}-0x{neighbour.end - 1:x} ({neighbour.name})"
                )
        self.ranges.insert(i, new)
        self._bases.insert(i, base)
        self._table[base : new.end] = [new] * length
        if self.on_map is not None:
            self.on_map()
        return new

    def find(self, port: int) -> PortRange | None:
        return self._table[port] if 0 <= port < _TABLE_SIZE else None

    def read(self, port: int, size: int) -> int:
        r = self._table[port]
        if size == 1:
            if r is None:
                self.unmapped_reads += 1
                if port not in self._logged_reads:
                    self.log_unmapped("read", port)
                return 0xFF
            return r.device.read(port - r.base, 1) & 0xFF
        if r is not None and not r.byte_only and port + size <= r.end:
            return r.device.read(port - r.base, size) & ((1 << (8 * size)) - 1)
        # Wide access to a byte device (or across ranges): one byte per port, little-endian.
        value = 0
        for i in range(size):
            value |= self.read(port + i, 1) << (8 * i)
        return value

    def write(self, port: int, size: int, value: int) -> None:
        r = self._table[port]
        if size == 1:
            if r is None:
                self.unmapped_writes += 1
                if port not in self._logged_writes:
                    self.log_unmapped("write", port)
                return
            r.device.write(port - r.base, 1, value & 0xFF)
            return
        if r is not None and not r.byte_only and port + size <= r.end:
            r.device.write(port - r.base, size, value & ((1 << (8 * size)) - 1))
            return
        for i in range(size):
            self.write(port + i, 1, (value >> (8 * i)) & 0xFF)

    def stable_read(self, port: int, size: int) -> tuple[int, int | None] | None:
        """What a read of ``port`` returns now with no side effect, and until when (virtual ns,
        exclusive; None: until a device is written or ticked): the device's own
        ``stable_read(offset)`` for a byte (a device without one promises nothing), all-ones
        for a port nobody decodes. None: no promise. Wide accesses promise nothing."""
        r = self._table[port] if 0 <= port < _TABLE_SIZE else None
        if r is None:
            # all-ones for ever (the read is counted in unmapped_reads, as often as it happens)
            return ((1 << (8 * size)) - 1, None) if self._table_clear(port, size) else None
        if size != 1:
            return None
        stable = getattr(r.device, "stable_read", None)
        return stable(port - r.base) if stable is not None else None

    def _table_clear(self, port: int, size: int) -> bool:
        return all(self._table[p] is None for p in range(port, min(port + size, _TABLE_SIZE)))

    def log_unmapped(self, kind: str, port: int) -> None:
        """Say once per port that a read (``kind`` "read") or write of it reached nobody."""
        logged = self._logged_reads if kind == "read" else self._logged_writes
        if port not in logged:
            logged.add(port)
            what = "reads as 0xFF" if kind == "read" else "write dropped"
            log.info("port 0x%04x: no device decodes this port (%s)", port, what)

    def describe(self) -> list[tuple[int, int, str]]:
        """(first port, last port, device name) for every range, in address order."""
        return [(r.base, r.end - 1, r.name) for r in self.ranges]
