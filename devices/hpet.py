"""The HPET of QEMU's pc machine: one event timer block at 0xFED00000, three comparators.

Modelled after the IA-PC HPET specification 1.0a, with QEMU 7.2's values and choices
(hw/timer/hpet.c, read for understanding; measured with images/apic):

- General capabilities and ID: 0x8086A201 (vendor 8086, legacy replacement capable, 64-bit
  counter, 3 timers, revision 1) with the counter period 10,000,000 fs (100 MHz) above it.
- The main counter counts virtual time, one tick per 10 ns, while the general configuration's
  ENABLE bit is set; halted it holds its value and may be written.
- Each timer's capabilities: periodic and 64-bit capable, no FSB delivery, and the I/O APIC
  inputs it may be routed to (``route_capability``: QEMU's pc machine gives 0x00000004, input 2
  only). A timer fires when the counter reaches its comparator: one-shot, or periodic (the
  comparator advances by the period; "value set" lets the guest write the comparator itself
  while periodic), 32-bit mode (the comparator and the period truncated, and a one-shot also
  fires when the 32-bit counter wraps, as QEMU does), edge (a pulse) or level (the status bit
  and the line stay until the guest writes 1 to the status bit).
- Legacy replacement (general configuration bit 1): timer 0 drives GSI 0 (the 8259's IRQ 0,
  which QEMU's I/O APIC takes at its input 2) and timer 1 GSI 8 (the RTC's IRQ 8), and the PIT's
  and the RTC's own interrupt outputs are cut off (they reach their lines through
  ``pit_input``/``rtc_input``). Otherwise a timer drives the GSI its route field names.

The registers answer 4-byte accesses at 4-byte aligned offsets (QEMU's valid sizes are 4 and 8;
an 8-byte access arrives as two 4-byte ones, low half first). A 1- or 2-byte access reads 0
and is dropped, as QEMU's memory core does with an access the device does not accept; writes to
read-only registers are ignored; each is logged once. FSB (MSI) delivery is not modelled: a
timer with its FSB enable bit set (the capability is clear) raises nothing, logged once.
Timer block registers of a fourth timer and beyond, and reserved offsets, read 0.

Differences from QEMU that are about time, not registers: QEMU's timers run on the host clock
and fire some microseconds late, so a periodic comparator is always behind the counter when
its callback runs; here a timer fires exactly when the counter reaches the comparator, and a
periodic comparator advances by its period at that instant (as the specification says).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .irq import IrqLine

log = logging.getLogger(__name__)

HPET_BASE = 0xFED00000
HPET_SIZE = 0x400  # QEMU's region; the rest of the page is unassigned
NUM_TIMERS = 3
GSI_COUNT = 24  # the I/O APIC's inputs a route field can name
PERIOD_FS = 10_000_000  # 10 ns per tick
NS_PER_TICK = PERIOD_FS // 1_000_000
CAPABILITIES = (PERIOD_FS << 32) | 0x8086A001 | ((NUM_TIMERS - 1) << 8)
PC_ROUTE_CAPABILITY = 0x00000004  # QEMU's pc machine: I/O APIC input 2 only

# general registers
REG_ID, REG_PERIOD = 0x000, 0x004
REG_CONFIG = 0x010
REG_STATUS = 0x020
REG_COUNTER = 0x0F0
TIMER_BASE, TIMER_STRIDE = 0x100, 0x20
# within a timer's block
TN_CONFIG, TN_CAPS, TN_COMPARATOR, TN_FSB = 0x00, 0x04, 0x08, 0x10

CFG_ENABLE = 1 << 0
CFG_LEGACY = 1 << 1
CFG_WRITABLE = CFG_ENABLE | CFG_LEGACY

TN_LEVEL = 1 << 1
TN_INT_ENABLE = 1 << 2
TN_PERIODIC = 1 << 3
TN_PERIODIC_CAP = 1 << 4
TN_SIZE_CAP = 1 << 5  # 64-bit capable
TN_SET_VALUE = 1 << 6
TN_32BIT = 1 << 8
TN_ROUTE_SHIFT = 9
TN_ROUTE_MASK = 0x1F << TN_ROUTE_SHIFT
TN_FSB_ENABLE = 1 << 14
TN_FSB_CAP = 1 << 15
TN_WRITABLE = (
    TN_LEVEL | TN_INT_ENABLE | TN_PERIODIC | TN_SET_VALUE | TN_32BIT | TN_ROUTE_MASK | TN_FSB_ENABLE
)

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
LOW32, HIGH32 = MASK32, MASK64 ^ MASK32

LEGACY_GSI = (0, 8)  # timer 0 and timer 1 in legacy replacement mode


def _after32(a: int, b: int) -> bool:
    """a comes after b on a wrapping 32-bit counter."""
    return (b - a) & MASK32 >= 1 << 31 and a != b


def _after64(a: int, b: int) -> bool:
    return (b - a) & MASK64 >= 1 << 63 and a != b


@dataclass
class HpetTimer:
    """One comparator's registers and its hidden state."""

    config: int = 0  # capabilities (high 32 bits) and configuration (low 32)
    comparator: int = MASK64
    period: int = 0  # the last period written (periodic mode)
    fsb: int = 0  # FSB route: the message and its address (not delivered)
    due_ns: int | None = None  # when it next fires, or None (not running)
    wrap_pending: bool = False  # 32-bit one-shot: the next firing is the counter's wrap


class Hpet:
    """The event timer block.

    Args:
        gsi: the lines of the global system interrupts 0-23 a timer may drive (the machine's
            ISA IRQ lines for 0-15, the I/O APIC's inputs for all of them).
        now_ns: the virtual clock.
        route_capability: bits 63:32 of each timer's capabilities register.
    """

    def __init__(
        self,
        gsi: Sequence[IrqLine],
        now_ns: Callable[[], int],
        route_capability: int = PC_ROUTE_CAPABILITY,
    ) -> None:
        if len(gsi) != GSI_COUNT:
            raise ValueError(f"the HPET needs {GSI_COUNT} GSI lines, not {len(gsi)}")
        self.gsi = tuple(gsi)
        self.now_ns = now_ns
        self.route_capability = route_capability & MASK32
        # the PIT's and the RTC's interrupt outputs pass through: cut off in legacy mode
        self.pit_input = IrqLine("PIT OUT0 (through the HPET)", self._pit_changed)
        self.rtc_input = IrqLine("RTC IRQ8 (through the HPET)", self._rtc_changed)
        self._logged: set[str] = set()
        self.reset()

    def reset(self) -> None:
        self.events_changed = True
        self.config = 0
        self.status = 0
        self.counter = 0  # the counter's value while halted
        self.offset_ns = 0  # while running: counter = (now + offset_ns) // 10 ns
        self.timers = [
            HpetTimer(config=(self.route_capability << 32) | TN_PERIODIC_CAP | TN_SIZE_CAP)
            for _ in range(NUM_TIMERS)
        ]
        for line in self.gsi:
            line.lower()
        self._forward_legacy_inputs()

    # ------------------------------------------------------------------ wiring
    @property
    def legacy(self) -> bool:
        """Legacy replacement routing is on: the PIT and the RTC do not reach their IRQs."""
        return bool(self.config & CFG_LEGACY)

    def _pit_changed(self, level: bool) -> None:
        if not self.legacy:
            self.gsi[0].set_level(level)

    def _rtc_changed(self, level: bool) -> None:
        if not self.legacy:
            self.gsi[8].set_level(level)

    def _forward_legacy_inputs(self) -> None:
        if not self.legacy:
            self.gsi[0].set_level(self.pit_input.level)
            self.gsi[8].set_level(self.rtc_input.level)

    def _route(self, n: int) -> int:
        if n < 2 and self.legacy:
            return LEGACY_GSI[n]
        return (self.timers[n].config & TN_ROUTE_MASK) >> TN_ROUTE_SHIFT

    def _line(self, n: int) -> IrqLine | None:
        route = self._route(n)
        if route >= GSI_COUNT:
            self._note(f"timer {n} routed to GSI {route}, which does not exist: no interrupt")
            return None
        return self.gsi[route]

    # ------------------------------------------------------------------ time
    @property
    def enabled(self) -> bool:
        return bool(self.config & CFG_ENABLE)

    def _ticks(self, now: int) -> int:
        """The running counter at ``now`` (also while halted: QEMU's timers read it so)."""
        return ((now + self.offset_ns) // NS_PER_TICK) & MASK64

    def read_counter(self, now: int | None = None) -> int:
        if not self.enabled:
            return self.counter
        return self._ticks(self.now_ns() if now is None else now)

    def next_event(self, now: int) -> int | None:
        dues = [t.due_ns for t in self.timers if t.due_ns is not None]
        return min(dues) if dues else None

    def tick(self, now: int) -> None:
        """Fire every timer whose time has come, in time order."""
        while True:
            due = [(t.due_ns, n) for n, t in enumerate(self.timers) if t.due_ns is not None]
            if not due:
                return
            at, n = min(due)
            if at > now:
                return
            self._fire(n, at)

    def _diff(self, timer: HpetTimer, current: int) -> int:
        """Ticks until the comparator, at least 1 (a comparator already passed fires at once)."""
        if timer.config & TN_32BIT:
            diff = (timer.comparator - current) & MASK32
            return diff if 0 < diff < 1 << 31 else 1
        diff = (timer.comparator - current) & MASK64
        return diff if 0 < diff < 1 << 63 else 1

    def _set_timer(self, n: int, now: int) -> None:
        """Start timer ``n`` towards its comparator (or, 32-bit one-shot, the wrap before it).

        A one-shot timer with its interrupt disabled is not started: its firing would change
        nothing a guest can see (no status bit, no line, the comparator stays; QEMU runs a
        timer that does nothing), and a driver that rewrites such a comparator in a loop (Linux's
        ``hpet_calibrate``, every few instructions) would otherwise reschedule the machine at
        every write. Enabling its interrupt starts it from the comparator then, as QEMU does."""
        timer = self.timers[n]
        before = timer.due_ns
        timer.wrap_pending = False
        if not timer.config & (TN_INT_ENABLE | TN_PERIODIC):
            timer.due_ns = None
        else:
            current = self._ticks(now)
            diff = self._diff(timer, current)
            if timer.config & TN_32BIT and not timer.config & TN_PERIODIC:
                to_wrap = MASK32 - (current & MASK32)
                if to_wrap < diff:
                    diff = to_wrap
                    timer.wrap_pending = True
            timer.due_ns = now + diff * NS_PER_TICK
        if timer.due_ns != before:
            self.events_changed = True

    def _stop_timer(self, n: int) -> None:
        self.timers[n].due_ns = None
        self.events_changed = True
        self._update_irq(n, False)

    def _fire(self, n: int, at: int) -> None:
        timer = self.timers[n]
        current = self._ticks(at)
        timer.due_ns = None
        if timer.config & TN_PERIODIC and timer.period:
            # the comparator advances by whole periods until it is ahead of the counter
            mask, after = (MASK32, _after32) if timer.config & TN_32BIT else (MASK64, _after64)
            period = timer.period & mask
            if not after(timer.comparator, current):
                behind = (current - timer.comparator) & mask
                timer.comparator = (timer.comparator + (behind // period + 1) * period) & mask
            timer.due_ns = at + self._diff(timer, current) * NS_PER_TICK
        elif timer.wrap_pending:
            timer.wrap_pending = False
            timer.due_ns = at + self._diff(timer, current) * NS_PER_TICK
        self.events_changed = True
        self._update_irq(n, True)

    def _update_irq(self, n: int, fire: bool) -> None:
        timer = self.timers[n]
        bit = 1 << n
        fsb = bool(timer.config & TN_FSB_ENABLE)
        if not fire or not timer.config & TN_INT_ENABLE or not self.enabled:
            self.status &= ~bit
            if not fsb and (line := self._line(n)) is not None:
                line.lower()
        elif fsb:
            self._note(f"timer {n}: FSB (MSI) delivery is not modelled; no interrupt")
        elif timer.config & TN_LEVEL:
            self.status |= bit
            if (line := self._line(n)) is not None:
                line.raise_()
        else:
            self.status &= ~bit
            if (line := self._line(n)) is not None:
                line.raise_()
                line.lower()

    # ------------------------------------------------------------------ registers
    def mem_read(self, offset: int, size: int) -> int:
        if size != 4 or offset & 3:
            self._note(f"a {size}-byte read at +0x{offset:x} (the HPET takes 4- and 8-byte "
                       "aligned accesses): reads 0")  # fmt: skip
            return 0
        return self.read_register(offset)

    def read_register(self, offset: int) -> int:
        """The 32-bit register at ``offset`` (4-byte aligned), without side effects."""
        if TIMER_BASE <= offset < HPET_SIZE:
            n, reg = divmod(offset - TIMER_BASE, TIMER_STRIDE)
            if n >= NUM_TIMERS:
                return 0
            timer = self.timers[n]
            value = {
                TN_CONFIG: timer.config,
                TN_CAPS: timer.config >> 32,
                TN_COMPARATOR: timer.comparator,
                TN_COMPARATOR + 4: timer.comparator >> 32,
                TN_FSB: timer.fsb,
                TN_FSB + 4: timer.fsb >> 32,
            }.get(reg, 0)
            return value & MASK32
        if offset in (REG_COUNTER, REG_COUNTER + 4):
            counter = self.read_counter()
            return (counter >> 32 if offset & 4 else counter) & MASK32
        value = {
            REG_ID: CAPABILITIES,
            REG_PERIOD: CAPABILITIES >> 32,
            REG_CONFIG: self.config,
            REG_STATUS: self.status,
        }.get(offset, 0)
        return value & MASK32

    def mem_write(self, offset: int, size: int, value: int) -> None:
        if size != 4 or offset & 3:
            self._note(f"a {size}-byte write at +0x{offset:x} (the HPET takes 4- and 8-byte "
                       "aligned accesses): dropped")  # fmt: skip
            return
        value &= MASK32
        now = self.now_ns()
        if TIMER_BASE <= offset < HPET_SIZE:
            n, reg = divmod(offset - TIMER_BASE, TIMER_STRIDE)
            if n >= NUM_TIMERS:
                self._note(f"a write to the registers of timer {n} (there are {NUM_TIMERS})")
                return
            self._write_timer(n, reg, value, now)
            return
        if offset == REG_CONFIG:
            self._write_config(value, now)
        elif offset == REG_STATUS:
            for n in range(NUM_TIMERS):
                if value & self.status & (1 << n):
                    self._update_irq(n, False)
        elif offset in (REG_COUNTER, REG_COUNTER + 4):
            if self.enabled:
                self._note("the main counter written while it runs (ignored until halted)")
            shift = 32 if offset & 4 else 0
            self.counter = (self.counter & ~(MASK32 << shift)) | (value << shift)
        elif offset in (REG_ID, REG_PERIOD):
            self._note("a write to the read-only capabilities register")
        elif offset >= HPET_SIZE:
            self._note("a write past the HPET's 1 KiB of registers (unassigned under QEMU)")
        else:
            self._note(f"a write to reserved offset +0x{offset:x}")

    def _write_config(self, value: int, now: int) -> None:
        old = self.config
        self.config = (old & ~CFG_WRITABLE) | (value & CFG_WRITABLE)
        if not old & CFG_ENABLE and value & CFG_ENABLE:
            # the counter runs on from where it was halted
            self.offset_ns = self.counter * NS_PER_TICK - now
            for n, timer in enumerate(self.timers):
                if timer.comparator != MASK64:
                    self._set_timer(n, now)
        elif old & CFG_ENABLE and not value & CFG_ENABLE:
            self.counter = self._ticks(now)
            for n in range(NUM_TIMERS):
                self._stop_timer(n)
        if not old & CFG_LEGACY and value & CFG_LEGACY:
            # the PIT and the RTC are cut off; timer 0 and 1 take their lines
            self.gsi[0].lower()
            self.gsi[8].lower()
        elif old & CFG_LEGACY and not value & CFG_LEGACY:
            self.gsi[0].lower()
            self._forward_legacy_inputs()
        self.events_changed = True

    def _write_timer(self, n: int, reg: int, value: int, now: int) -> None:
        timer = self.timers[n]
        due = timer.due_ns
        if reg == TN_CONFIG:
            old = timer.config
            if not old & TN_FSB_ENABLE and value & TN_FSB_ENABLE:
                self._update_irq(n, False)
            timer.config = (old & ~TN_WRITABLE) | (value & TN_WRITABLE)
            if value & TN_32BIT:
                timer.comparator &= MASK32
                timer.period &= MASK32
            if not old & TN_INT_ENABLE and value & TN_INT_ENABLE:
                self._set_timer(n, now)
            elif old & TN_INT_ENABLE and not value & TN_INT_ENABLE:
                self._stop_timer(n)
            elif (
                (old ^ value) & TN_PERIODIC and not value & TN_INT_ENABLE and self.enabled
                and timer.comparator != MASK64
            ):  # fmt: skip
                self._set_timer(n, now)  # interrupt off: it runs only while periodic (_set_timer)
            if self._route(n) < GSI_COUNT and not (
                self.route_capability >> self._route(n) & 1 or (n < 2 and self.legacy)
            ):
                self._note(f"timer {n} routed to I/O APIC input {self._route(n)}, outside its "
                           f"capability 0x{self.route_capability:08x} (QEMU drives it anyway)")  # fmt: skip
        elif reg in (TN_COMPARATOR, TN_COMPARATOR + 4):
            high = reg == TN_COMPARATOR + 4
            periodic = bool(timer.config & TN_PERIODIC)
            set_value = bool(timer.config & TN_SET_VALUE)
            bits32 = bool(timer.config & TN_32BIT)
            if not high:
                if bits32:
                    value &= MASK32
                if not periodic or set_value:
                    timer.comparator = (timer.comparator & HIGH32) | value
                if periodic:
                    timer.period = (timer.period & HIGH32) | (value & (0x7FFFFFFF if bits32
                                                                       else MASK32))  # fmt: skip
            else:
                if not periodic or set_value:
                    timer.comparator = (timer.comparator & LOW32) | (value << 32)
                else:
                    if bits32:
                        value &= 0x7FFFFFFF
                    timer.period = (timer.period & LOW32) | (value << 32)
            timer.config &= ~TN_SET_VALUE
            if self.enabled:
                self._set_timer(n, now)
        elif reg in (TN_FSB, TN_FSB + 4):
            shift = 32 if reg & 4 else 0
            timer.fsb = (timer.fsb & ~(MASK32 << shift)) | (value << shift)
        elif reg == TN_CAPS:
            self._note(f"a write to timer {n}'s read-only interrupt routing capability")
        else:
            self._note(f"a write to reserved offset +0x{TIMER_BASE + n * TIMER_STRIDE + reg:x}")
        if timer.due_ns != due:
            # the scheduler reads the timers' times only (their lines reach it through the
            # interrupt controllers, which say so themselves)
            self.events_changed = True

    # ------------------------------------------------------------------ reports
    def _note(self, what: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.info("HPET: %s", what)

    def describe(self) -> str:
        lines = [
            f"HPET: {'running' if self.enabled else 'halted'}"
            f"{', legacy replacement' if self.legacy else ''}, counter 0x{self.read_counter():x}, "
            f"status 0x{self.status:x}"
        ]
        for n, t in enumerate(self.timers):
            mode = "periodic" if t.config & TN_PERIODIC else "one-shot"
            lines.append(
                f"  timer {n}: config 0x{t.config & MASK32:04x} ({mode}, "
                f"{'32' if t.config & TN_32BIT else '64'}-bit, "
                f"{'level' if t.config & TN_LEVEL else 'edge'}, "
                f"{'enabled' if t.config & TN_INT_ENABLE else 'disabled'}, GSI {self._route(n)}) "
                f"comparator 0x{t.comparator:x} period 0x{t.period:x}"
            )
        return "\n".join(lines)
