"""The port read table: values the devices publish ahead of time, answered by compiled code.

Kernels poll: the UART's line status before every byte, the i8042 status, the CMOS
update-in-progress bit, ports nobody decodes. Each such read through Python costs a few
microseconds; the compiled IN hook (``clock/kernels.py`` ``in_hook``) answers it from this table
in a fraction of that, and hands every other access to Python (``PortCache.read``), which keeps
the table true. The Python device models stay the single source of truth:

- After a 1-byte read reaches a device through Python, the device is asked what a read of that
  port would return from now on (``stable_read(offset)``, docs/devices.md "Stable reads"):
  ``(value, until_ns)``, a promise that the read returns ``value`` and changes nothing in the
  device at every virtual time before ``until_ns`` (None: until the device is next accessed or
  its state changes otherwise). The value goes into the table with ``until`` as an instruction
  count. Reads of undecoded ports are published as all-ones (and still counted as unmapped).
- A device may also name the one value whose write to a port changes nothing
  (``stable_write(offset)``, the CMOS index already selected): the compiled OUT hook drops such
  writes without Python.
- A device may also name the ports whose writes, for now, only hand the byte on and change
  nothing else in it (``queued_writes()``, a UART's THR while it transmits): the compiled OUT
  hook puts such writes in a queue, and Python gives the device the queued bytes, in order,
  through ``write_queued(offset, data)`` before anything else reaches the device or sees its
  output (every Python port access, every drop of what it published, ``sync``, ``drain``).
- The PIT's counters move at every instant, so they are no entries: after a Python access to
  the PIT, each channel whose latches and reads are a function of time alone
  (``Pit8254.counter_reads``) goes into the PIT shadow, and the compiled hooks compute its
  latch commands and reads from the instruction count; Python takes the latch state back
  (``Pit8254.resume_reads``) before anything else reaches the PIT (``drain``).
- Every Python access to a device drops what it published (its other registers may change with
  it); every tick of the timed devices, interrupt delivery report, MMIO access, change of the
  port map, skip of idle time and checkpoint restore drops everything. Entries are republished
  by the next read that misses.
- The compiled hooks answer only when Python itself would not reschedule after the access
  (``CTX_IO_DUE``, see ``Scheduler.after_io``) and no delivery awaits ``settle``, so taking the
  table changes no instruction count, no device state and no trace.

``enabled=False`` (``Machine(port_table=False)``, ``--no-port-table``) publishes nothing: every
access goes through Python, the reference the tests compare the table against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from devices.irq import IrqLine

from .clock import layout as K

if TYPE_CHECKING:
    from .bus import PortBus

PORTS = 0x10000
_PY_IO, _OPEN = K.CTX_PY_IO, K.PY_IO_OPEN
# entries[2 * port]: the instruction count before which the entry holds (0: no entry);
# entries[2 * port + 1]: the byte read, with ENTRY_UNMAPPED for a port nobody decodes
ENTRY_UNMAPPED = K.PORT_ENTRY_UNMAPPED
# noop_writes[port]: NOOP_VALID | the byte whose write to the port changes nothing
NOOP_VALID = K.PORT_NOOP_VALID
# noop_writes[port] == NOOP_QUEUE: every byte written goes into the write queue
NOOP_QUEUE = K.PORT_NOOP_QUEUE
NO_END = (1 << 64) - 1
# counts: reads the compiled hook answered, of them from undecoded ports, writes it dropped,
# writes it queued (the queue's length)
COUNT_READS, COUNT_UNMAPPED, COUNT_WRITES, COUNT_QUEUED = 0, 1, 2, 3


def _nothing() -> None:
    pass


class PortCache:
    """The port bus as the CPU reaches it: ``read``/``write`` for the accesses Python takes
    (each followed by the machine's rescheduling), and the table the compiled IN/OUT hooks
    answer the others from.

    Args:
        bus: the port bus (decoding, unmapped ports).
        count_at: virtual time (ns) -> the first instruction count at or after it.
    """

    def __init__(self, bus: PortBus, count_at: Callable[[int], int]) -> None:
        self.bus = bus
        self._ranges = bus._table  # the range of each port (the bus keeps it up to date)
        self.count_at = count_at
        self.enabled = True
        self.entries = np.zeros(2 * PORTS, np.uint64)
        self.noop_writes = np.zeros(PORTS, np.uint64)
        self.counts = np.zeros(4, np.uint64)
        self.queue = np.zeros(K.PORT_QUEUE_CAP, np.uint64)  # port << 8 | byte, oldest first
        self._entries = memoryview(self.entries)  # Python ints, faster than numpy scalars
        self._noops = memoryview(self.noop_writes)
        self._counts = memoryview(self.counts)
        # what is published, by owner (a device, or None for undecoded ports): its ports
        self._live: dict[object, list[int]] = {}
        # after each access the machine reschedules: ``after_quiet_io`` where the access changed
        # no timed device or interrupt controller (an undecoded port; a quiet range whose IRQ
        # lines kept their levels and whose device does not say its events changed), else
        # ``after_io`` (Scheduler)
        self.after_io: Callable[[], None] = _nothing
        self.after_quiet_io: Callable[[], None] = _nothing
        # counts an access that did not come from the compiled hooks (Scheduler.note_io)
        self.note_io: Callable[[], None] = _nothing
        # the clock context (``attach``): its CTX_PY_IO says whether the compiled hook that
        # passed the access on found the table open (then a quiet access asks nobody)
        self._ctxv = memoryview(np.zeros(K.CTX_SIZE, np.uint64))
        # the Python access counts of what the compiled hooks answered, folded in by ``sync``
        self.reads_answered = 0
        self.writes_dropped = 0
        self.writes_queued = 0
        # the PIT's counters for the compiled hooks (``shadow_pit``): its latch commands and
        # counter reads are computed there while a channel is published (K.PIT_* layout)
        self.pit_shadow = np.zeros(K.PIT_SIZE, np.uint64)
        self._pit_words = memoryview(self.pit_shadow)
        self._pit: object = None
        self._pit_clock: Callable[[], tuple[int, int]] = lambda: (0, 1000)
        self._pit_live = False
        bus.on_map = self.drop_all

    def attach(self, ctx: np.ndarray) -> None:
        """Give the compiled hooks the table (its addresses in the clock context)."""
        ctx[K.CTX_PORT_ENTRIES] = self.entries.ctypes.data
        ctx[K.CTX_PORT_NOOPS] = self.noop_writes.ctypes.data
        ctx[K.CTX_PORT_COUNTS] = self.counts.ctypes.data
        ctx[K.CTX_PORT_QUEUE] = self.queue.ctypes.data
        ctx[K.CTX_PIT] = self.pit_shadow.ctypes.data
        self._ctxv = memoryview(ctx)

    def shadow_pit(self, pit, clock: Callable[[], tuple[int, int]]) -> None:
        """Let the compiled hooks take ``pit``'s counter latches and reads (devices/pit8254.py
        ``counter_reads``); ``clock()`` gives the virtual clock as (idle ns, cpu_mhz)."""
        self._pit, self._pit_clock = pit, clock

    # ------------------------------------------------------------ the Python path
    def read(self, port: int, size: int) -> int:
        if self._counts[COUNT_QUEUED]:
            self.drain()
        passed = self._ctxv[_PY_IO]  # how the access came (K.PY_IO_*)
        r = self._ranges[port]
        if r is None:  # an undecoded port: changes nothing
            if size == 1:
                bus = self.bus  # PortBus.read, inlined
                bus.unmapped_reads += 1
                if port not in bus._logged_reads:
                    bus.log_unmapped("read", port)
                value = 0xFF
            else:
                value = self.bus.read(port, size)
            if passed != _OPEN:
                self.after_quiet_io()
        else:
            if self._live:
                self._drop(r.owner)
                if self._pit_live and not r.quiet:
                    self._fold_pit()  # an access that may reach other devices (port 0x61)
            if size == 1:
                changes = IrqLine.changes
                value = r.device.read(port - r.base, 1) & 0xFF  # PortBus.read, inlined
            else:
                changes = -1
                value = self.bus.read(port, size)
            if (
                r.quiet
                and IrqLine.changes == changes
                and not (r.owner_has_events and r.owner.events_changed)
            ):
                if passed != _OPEN:
                    self.after_quiet_io()
            else:
                self.after_io()
        if not passed:
            self.note_io()
        if size == 1 and self.enabled:
            if r is None:
                self._publish(None, port, 0xFF | ENTRY_UNMAPPED, NO_END)
            elif r.device is self._pit:
                self._publish_pit()
            elif r.publishes:  # a device that publishes nothing costs nothing here
                stable = getattr(r.device, "stable_read", None)
                if stable is not None:
                    answer = stable(port - r.base)
                    if answer is not None:
                        v, until = answer
                        end = NO_END if until is None else self.count_at(until)
                        self._publish(r.owner, port, v & 0xFF, end)
                self._publish_writes(r)
        return value

    def write(self, port: int, size: int, value: int) -> None:
        if self._counts[COUNT_QUEUED]:
            self.drain()
        passed = self._ctxv[_PY_IO]  # how the access came (K.PY_IO_*)
        r = self._ranges[port]
        if self._live and r is not None:
            self._drop(r.owner)
            if self._pit_live and not r.quiet:
                self._fold_pit()  # an access that may reach other devices (port 0x61)
        changes = IrqLine.changes
        if size == 1 and r is not None:
            r.device.write(port - r.base, 1, value & 0xFF)  # PortBus.write, inlined
        else:
            self.bus.write(port, size, value)
        if r is None or (
            r.quiet
            and size == 1
            and IrqLine.changes == changes
            and not (r.owner_has_events and r.owner.events_changed)
        ):
            if passed != _OPEN:
                self.after_quiet_io()
        else:
            self.after_io()
        if not passed:
            self.note_io()
        if size == 1 and self.enabled and r is not None:
            if r.device is self._pit:
                self._publish_pit()
            elif r.publishes:
                self._publish_writes(r)

    # ------------------------------------------------------------ the table
    def _publish_writes(self, r) -> None:
        """The writes to ``r``'s ports the compiled OUT hook may take without Python: those
        that change nothing (``stable_write``) and those the device queues (``queued_writes``)."""
        noop = getattr(r.device, "stable_write", None)
        if noop is not None:
            self._publish_noop(r, noop)
        queued = getattr(r.device, "queued_writes", None)
        if queued is not None:
            self._publish_queued(r, queued())

    def _publish(self, owner: object, port: int, value: int, until: int) -> None:
        if until <= 0:
            return
        self._entries[2 * port + 1] = value
        self._entries[2 * port] = until
        self._live.setdefault(owner, []).append(port)

    def _publish_noop(self, r, stable_write) -> None:
        for offset in range(r.length):
            v = stable_write(offset)
            if v is not None:
                port = r.base + offset
                self._noops[port] = NOOP_VALID | (v & 0xFF)
                self._live.setdefault(r.owner, []).append(port)

    def _publish_queued(self, r, offsets: tuple[int, ...]) -> None:
        if offsets:
            ports = self._live.setdefault(r.owner, [])
            for offset in offsets:
                self._noops[r.base + offset] = NOOP_QUEUE
                ports.append(r.base + offset)

    def _publish_pit(self) -> None:
        """After a Python access to the PIT: publish every channel whose latches and reads are
        a function of time (``Pit8254.counter_reads``) for the compiled hooks."""
        pit, words = self._pit, self._pit_words
        live = False
        for channel in range(3):
            reads = pit.counter_reads(channel)
            if reads is None:
                continue
            b = channel * K.PIT_STRIDE
            latched = reads.latched
            words[b + K.PIT_START_TICK] = reads.start_tick
            words[b + K.PIT_PAUSED] = reads.paused
            words[b + K.PIT_PERIOD] = reads.period
            words[b + K.PIT_MODE] = reads.mode
            words[b + K.PIT_ACCESS] = reads.access
            words[b + K.PIT_READS] = len(latched) | (K.PIT_HIGH_NEXT if reads.read_high_next else 0)
            words[b + K.PIT_LATCH_BYTES] = int.from_bytes(bytes(latched), "little")
            words[b + K.PIT_LIVE] = 1
            live = True
        if live:
            idle, mhz = self._pit_clock()
            words[K.PIT_IDLE_NS] = idle
            words[K.PIT_MHZ] = mhz
            self._pit_live = True
            self._live.setdefault(pit, [])  # a Python access to the PIT drops it (_drop)

    def _fold_pit(self) -> None:
        """Give the PIT back what the compiled hooks' latches and reads left, and let Python
        take its accesses again."""
        self._pit_live = False
        words = self._pit_words
        for channel in range(3):
            b = channel * K.PIT_STRIDE
            if words[b + K.PIT_LIVE]:
                words[b + K.PIT_LIVE] = 0
                reads = words[b + K.PIT_READS]
                latched = words[b + K.PIT_LATCH_BYTES].to_bytes(8, "little")[: reads & 3]
                self._pit.resume_reads(channel, tuple(latched), bool(reads & K.PIT_HIGH_NEXT))

    def drain(self) -> None:
        """Give the devices what the compiled hooks took: the writes the OUT hook queued, in
        order (runs of bytes to one port as one ``write_queued``), and the PIT's latches and
        reads (it is no longer published)."""
        if self._pit_live:
            self._fold_pit()
        c = self._counts
        n = c[COUNT_QUEUED]
        if not n:
            return
        queued = self.queue[:n]
        ports = (queued >> np.uint64(8)).astype(np.int64)
        data = (queued & np.uint64(0xFF)).astype(np.uint8).tobytes()
        c[COUNT_QUEUED] = 0  # first: the device's output may reach Python code that drains
        self.writes_queued += n
        ranges = self._ranges
        starts = [0, *(np.flatnonzero(ports[1:] != ports[:-1]) + 1).tolist(), n]
        for start, end in zip(starts, starts[1:]):  # noqa: B905 - one shorter by construction
            port = int(ports[start])
            r = ranges[port]
            r.device.write_queued(port - r.base, data[start:end])

    def _drop(self, owner: object) -> None:
        if self._counts[COUNT_QUEUED]:
            self.drain()
        if self._pit_live and owner is self._pit:
            self._fold_pit()
        ports = self._live.pop(owner, None)
        if ports:
            entries, noops = self._entries, self._noops
            for port in ports:
                entries[2 * port] = 0
                noops[port] = 0

    def drop_all(self) -> None:
        """Forget everything published (a device may have changed outside a port access)."""
        if self._counts[COUNT_QUEUED] or self._pit_live:
            self.drain()
        if self._live:
            entries, noops = self._entries, self._noops
            for ports in self._live.values():
                for port in ports:
                    entries[2 * port] = 0
                    noops[port] = 0
            self._live.clear()

    def sync(self) -> None:
        """Fold what the compiled hooks answered into the Python counters (the bus's count of
        unmapped reads), and forget everything published."""
        c = self._counts
        if c[COUNT_READS] or c[COUNT_WRITES]:
            self.reads_answered += c[COUNT_READS]
            self.writes_dropped += c[COUNT_WRITES]
            self.bus.unmapped_reads += c[COUNT_UNMAPPED]
            c[COUNT_READS] = c[COUNT_UNMAPPED] = c[COUNT_WRITES] = 0
        self.drop_all()

    def published(self) -> dict[int, tuple[int, int]]:
        """Every live read entry: port -> (value, until as an instruction count)."""
        return {
            port: (self._entries[2 * port + 1] & 0xFF, self._entries[2 * port])
            for ports in self._live.values()
            for port in ports
            if self._entries[2 * port]
        }
