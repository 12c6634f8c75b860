"""Intel 8254 programmable interval timer (ports 0x40-0x43) and port 0x61 (system control B).

Three 16-bit counters clocked at 1.193182 MHz, computed from virtual time rather than stepped:
a counter's value and its OUT pin are functions of the nanoseconds since it was loaded, so the
machine can run the CPU straight to the next interesting instant (``next_event``) and the same
program sees the same counts on every run. Channel 0's OUT drives IRQ 0; channel 2's GATE and
OUT go through port 0x61 (kernels calibrate their delay loops with it).

Modelled from the Intel 8254 datasheet: modes 0-5, binary counting (BCD is logged once and
counted in binary), lobyte/hibyte/lohi access with the read and write flip-flops, the counter
latch command, the read-back command (count and status latches), the status byte (OUT, null
count, access, mode, BCD), and the GATE input (modes 1 and 5 trigger on its rising edge, modes 2
and 3 reload on it, and counting pauses while it is low in modes 0, 2, 3 and 4).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from .irq import IrqLine

log = logging.getLogger(__name__)

PIT_HZ = 1_193_182
NS = 1_000_000_000


def ticks_at(ns: int) -> int:
    """The input clock edges since time 0 at ``ns`` (exact integer arithmetic)."""
    return (ns * PIT_HZ) // NS


def ticks_between(t0_ns: int, t1_ns: int) -> int:
    """Whole PIT input clock edges between two instants: ticks_at(t1) - ticks_at(t0)."""
    return (t1_ns * PIT_HZ) // NS - (t0_ns * PIT_HZ) // NS  # inlined: a read runs it


def time_of_tick(t0_ns: int, ticks: int) -> int:
    """The first instant by which ``ticks`` clock edges have passed since ``t0_ns``."""
    target = (t0_ns * PIT_HZ) // NS + ticks
    return -((-target * NS) // PIT_HZ)  # ceil(target * NS / PIT_HZ)


def _latch_bytes(count: int, access: int) -> list[int] | None:
    """The bytes a counter latch holds, in read order (none for access 0: nothing is latched)."""
    if access == 3:
        return [count & 0xFF, count >> 8]
    if access == 1:
        return [count & 0xFF]
    if access == 2:
        return [count >> 8]
    return None


@dataclass
class Channel:
    mode: int = 0
    # 1 lobyte, 2 hibyte, 3 lobyte then hibyte; 0 only in a channel never programmed since the
    # board's power-on (QEMU's channel 1: no latch, each read gives the live low byte)
    access: int = 3
    bcd: bool = False
    reload: int = 0x10000  # the count written (0 means 65536)
    start_ns: int | None = None  # when counting (re)started, None: not counting
    gate: bool = True
    write_low: int | None = None  # lohi: low byte written, high byte awaited
    read_high_next: bool = False
    latched: list[int] | None = None  # bytes of a latched count, in read order
    status_latched: int | None = None
    null_count: bool = True
    out_at_load: bool = False  # OUT level right after a mode/count write
    paused_ticks: int = 0  # counts consumed before the gate went low (modes 0, 2-4)

    def period(self) -> int:
        return self.reload or 0x10000


class CounterReads(NamedTuple):
    """A counting channel as counter latches and reads see it (``Pit8254.counter_reads``).
    Its count after the input clock edge numbered ``tick`` (edges since time 0, ``ticks_at``)
    is ``count_after(paused + tick - start_tick)``."""

    start_tick: int  # the edge counting (re)started after: ticks_at(start_ns)
    paused: int  # edges counted before the gate last held the channel
    period: int  # 1-65536
    mode: int  # 0-5
    access: int  # 1 lobyte, 2 hibyte, 3 lobyte then hibyte
    latched: tuple[int, ...]  # latched bytes still to be read, in order
    read_high_next: bool  # a live lohi read gives the high byte next


def count_after(mode: int, period: int, elapsed: int) -> int:
    """The counting element after ``elapsed`` input clock edges of counting."""
    if mode == 3:  # decrements by two, running through the count twice per period
        return (period - (2 * elapsed) % period) & 0xFFFF
    if mode == 2:
        return (period - (elapsed % period)) & 0xFFFF
    # modes 0, 1, 4, 5: count down once from n, then wrap through 0xFFFF
    return (period - elapsed) & 0xFFFF


class Pit8254:
    """The timer. ``irq0`` is channel 0's OUT; ``now_ns`` returns virtual time."""

    def __init__(self, irq0: IrqLine, now_ns: Callable[[], int]) -> None:
        self.irq0 = irq0
        self.now_ns = now_ns
        self._logged: set[str] = set()
        self.reset()

    def reset(self) -> None:
        # Set by everything that may move channel 0's next event (a control word other than a
        # latch, a count, a gate): the scheduler clears it when it reads ``next_event`` and
        # reschedules after a port access only if it is set. Latches and reads leave it.
        self.events_changed = True
        self.channels = [Channel() for _ in range(3)]
        self.irq0.lower()
        self._last_edge_ns = 0

    # ------------------------------------------------------------ the counters as functions of time
    def _elapsed(self, ch: Channel, now: int) -> int | None:
        if ch.start_ns is None:
            return None
        if not ch.gate and ch.mode in (0, 2, 3, 4):
            return ch.paused_ticks
        return ch.paused_ticks + ticks_between(ch.start_ns, now)

    def count(self, index: int, now: int | None = None) -> int:
        """The counting element's value (what a latch would read)."""
        ch = self.channels[index]  # _elapsed, inlined: every latch and live read runs this
        start = ch.start_ns
        if start is None:
            return ch.reload & 0xFFFF
        if not ch.gate and ch.mode in (0, 2, 3, 4):
            e = ch.paused_ticks
        else:
            t = self.now_ns() if now is None else now
            e = ch.paused_ticks + (t * PIT_HZ) // NS - (start * PIT_HZ) // NS
        return count_after(ch.mode, ch.reload or 0x10000, e)

    def out(self, index: int, now: int | None = None) -> bool:
        ch = self.channels[index]
        now = self.now_ns() if now is None else now
        e = self._elapsed(ch, now)
        n = ch.period()
        if e is None:
            return ch.out_at_load
        if ch.mode == 0:
            return e >= n
        if ch.mode == 1:
            return e >= n
        if ch.mode == 2:
            return e % n != n - 1  # low for the one clock when the count is 1
        if ch.mode == 3:
            return e % n < (n + 1) // 2  # high for the first half (the longer one if odd)
        if ch.mode in (4, 5):
            return e != n  # a one-clock low strobe at terminal count
        return True

    def next_event(self, now: int) -> int | None:
        """The next instant channel 0's OUT rises (IRQ 0), or None if it never will."""
        ch = self.channels[0]
        e = self._elapsed(ch, now)
        if e is None or (not ch.gate and ch.mode in (0, 2, 3, 4)):
            return None
        n = ch.period()
        if ch.mode in (0, 1):
            if e >= n:
                return None
            return time_of_tick(ch.start_ns, n - ch.paused_ticks)
        if ch.mode == 2:  # OUT rises when the count reloads: every n clocks
            k = e // n + 1
            return time_of_tick(ch.start_ns, k * n - ch.paused_ticks)
        if ch.mode == 3:
            k = e // n + 1
            return time_of_tick(ch.start_ns, k * n - ch.paused_ticks)
        if ch.mode in (4, 5):
            if e > n:
                return None
            return time_of_tick(ch.start_ns, n + 1 - ch.paused_ticks)
        return None

    def events_from(self, first: int, before: int | None, count: int) -> list[int]:
        """Channel 0's rising edge at ``first`` (a ``next_event``) and those after it: every
        one before ``before`` (None: no bound), then the first at or after it; ``count`` at
        most. The same instants as ``next_event`` asked again at each (modes 2 and 3 rise every
        ``n`` input clocks; the other modes rise once)."""
        ch = self.channels[0]
        if ch.mode not in (2, 3):
            return [first][:count]
        n = ch.period()
        target = (first * PIT_HZ) // NS  # the input clocks counted by the edge at ``first``
        k = count
        if before is not None:
            # an edge ceil(t * NS / PIT_HZ) is before ``before`` when t <= last
            last = ((before - 1) * PIT_HZ) // NS
            k = min(count, (max(-1, (last - target) // n) + 1) + 1)
        return [-((-t * NS) // PIT_HZ) for t in range(target, target + k * n, n)]

    def tick(self, now: int) -> None:
        """Bring IRQ 0 up to date at ``now``: a rising OUT edge since the last tick is passed
        to the PIC as a pulse (its edge-triggered input latches it)."""
        ch = self.channels[0]
        if ch.start_ns is None:
            return
        edge = self._last_rise_before(now)
        if edge is not None and edge > self._last_edge_ns:
            self._last_edge_ns = edge
            self.irq0.raise_()
            self.irq0.lower()

    def _last_rise_before(self, now: int) -> int | None:
        ch = self.channels[0]
        e = self._elapsed(ch, now)
        if e is None:
            return None
        n = ch.period()
        if ch.mode in (0, 1):
            return time_of_tick(ch.start_ns, n - ch.paused_ticks) if e >= n else None
        if ch.mode in (2, 3):
            k = e // n
            return time_of_tick(ch.start_ns, k * n - ch.paused_ticks) if k else None
        if ch.mode in (4, 5):
            return time_of_tick(ch.start_ns, n + 1 - ch.paused_ticks) if e > n else None
        return None

    # ------------------------------------------------------------ reads computed without Python
    def counter_reads(self, index: int) -> CounterReads | None:
        """What counter latches and reads of channel ``index`` do from now on, as long as
        nothing else reaches the PIT (a count, a mode, a read-back, a gate, a reset): the count
        is then a pure function of the input clock edges, which compiled code may compute
        (emu/port_cache.py). None where a read is not such a function: the channel does not
        count, its gate holds it, a read-back status waits to be read, or it was never
        programmed (access 0)."""
        ch = self.channels[index]
        if ch.start_ns is None or ch.status_latched is not None or ch.access == 0:
            return None
        if not ch.gate and ch.mode in (0, 2, 3, 4):
            return None
        latched = tuple(ch.latched or ())
        return CounterReads(
            ticks_at(ch.start_ns), ch.paused_ticks, ch.period(), ch.mode, ch.access,
            latched, ch.read_high_next,
        )  # fmt: skip

    def resume_reads(self, index: int, latched: tuple[int, ...], read_high_next: bool) -> None:
        """Take back what latches and reads done outside this model (``counter_reads``) left:
        the latched bytes still to be read and which byte a live lohi read gives next."""
        ch = self.channels[index]
        ch.latched = list(latched) or None
        ch.read_high_next = read_high_next

    # ------------------------------------------------------------ ports 0x40-0x43
    def read(self, offset: int, size: int) -> int:
        offset &= 3
        if offset == 3:
            self._note("read of the control word register")
            return 0xFF
        ch = self.channels[offset]
        if ch.status_latched is not None:
            value, ch.status_latched = ch.status_latched, None
            return value
        if ch.latched:
            value = ch.latched.pop(0)
            if not ch.latched:
                ch.latched = None
            return value
        count = self.count(offset)
        if ch.access in (0, 1):
            return count & 0xFF
        if ch.access == 2:
            return count >> 8
        value = (count >> 8) if ch.read_high_next else (count & 0xFF)
        ch.read_high_next = not ch.read_high_next
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        offset &= 3
        value &= 0xFF
        if offset == 3:
            if value >> 6 != 3 and (value >> 4) & 3:  # not a read-back, not a counter latch
                self.events_changed = True
            self._control(value)
            return
        self.events_changed = True
        ch = self.channels[offset]
        if ch.access == 3:
            if ch.write_low is None:
                ch.write_low = value
                if ch.mode == 0:  # writing the first byte stops counting in mode 0
                    ch.start_ns = None
                    ch.out_at_load = False
                return
            self._load(offset, ch.write_low | (value << 8))
            ch.write_low = None
        elif ch.access == 1:
            self._load(offset, value)
        else:
            self._load(offset, value << 8)

    def _control(self, value: int) -> None:
        sc = value >> 6
        if sc == 3:
            self._read_back(value)
            return
        ch = self.channels[sc]
        rw = (value >> 4) & 3
        if rw == 0:  # counter latch command
            if ch.latched is None:
                ch.latched = _latch_bytes(self.count(sc), ch.access)
            return
        mode = (value >> 1) & 7
        if mode > 5:
            mode -= 4  # modes 6 and 7 are aliases of 2 and 3
        ch.mode, ch.access, ch.bcd = mode, rw, bool(value & 1)
        if ch.bcd:
            self._note("BCD counting (counted in binary)")
        ch.start_ns = None
        ch.write_low = None
        ch.read_high_next = False
        ch.latched = None
        ch.null_count = True
        ch.paused_ticks = 0
        ch.out_at_load = mode != 0  # mode 0 drives OUT low; the others high
        if sc == 0:
            self.irq0.lower()

    def _read_back(self, value: int) -> None:
        for i in range(3):
            if not value & (2 << i):
                continue
            ch = self.channels[i]
            if not value & 0x20 and ch.latched is None:
                ch.latched = _latch_bytes(self.count(i), ch.access)
            if not value & 0x10 and ch.status_latched is None:
                ch.status_latched = (
                    (0x80 if self.out(i) else 0) | (0x40 if ch.null_count else 0)
                    | (ch.access << 4) | (ch.mode << 1) | int(ch.bcd)
                )  # fmt: skip

    def _load(self, index: int, value: int) -> None:
        ch = self.channels[index]
        ch.reload = value & 0xFFFF
        ch.null_count = False
        now = self.now_ns()
        if ch.mode in (1, 5):
            ch.start_ns = None  # waits for a gate trigger
            ch.out_at_load = True
            return
        if ch.mode in (2, 3) and ch.start_ns is not None:
            return  # a new count in modes 2/3 takes effect at the next reload
        # counting starts on the clock edge after the load
        ch.start_ns = now
        ch.paused_ticks = 0
        if index == 0:
            self._last_edge_ns = now

    def set_gate(self, index: int, level: bool) -> None:
        ch = self.channels[index]
        now = self.now_ns()
        if level == ch.gate:
            return
        self.events_changed = True
        if not level and ch.mode in (0, 2, 3, 4) and ch.start_ns is not None:
            ch.paused_ticks = self._elapsed(ch, now)
        if level:
            if ch.mode in (1, 5) or (ch.mode in (2, 3) and ch.start_ns is not None):
                ch.start_ns, ch.paused_ticks = now, 0  # trigger / reload on the rising edge
            elif ch.start_ns is not None:
                ch.start_ns = now  # resume counting from the paused value
        ch.gate = level

    def _note(self, what: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.info("PIT: %s is not modelled", what)


class Port61:
    """System control port B (0x61): bit 0 channel 2 GATE, bit 1 speaker data (stored),
    bit 4 a refresh toggle (flips every 15 us of virtual time), bit 5 channel 2 OUT."""

    def __init__(self, pit: Pit8254) -> None:
        self.pit = pit
        self.reset()

    def reset(self) -> None:
        self.value = 0
        self.pit.set_gate(2, False)

    def read(self, offset: int, size: int) -> int:
        now = self.pit.now_ns()
        refresh = 0x10 if (now // 15_085) & 1 else 0
        out2 = 0x20 if self.pit.out(2, now) else 0
        return (self.value & 0x0F) | refresh | out2

    def write(self, offset: int, size: int, value: int) -> None:
        self.value = value & 0x0F
        self.pit.set_gate(2, bool(value & 1))
