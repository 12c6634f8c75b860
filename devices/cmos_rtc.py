"""The CMOS real-time clock (Motorola MC146818A) at ports 0x70/0x71, on virtual time.

The clock starts at a fixed date (``base``, like QEMU's ``-rtc base=``) and advances with
virtual time, so a kernel that prints the date prints the same one on every run.

Modelled from the MC146818A datasheet: the time, alarm and date registers in BCD or binary
(status B DM bit) and in 24- or 12-hour format (B bit 1; PM in hour bit 7), the update-in-progress
flag (status A bit 7, set for the 244 us before each update), the periodic (rate from status A),
alarm and update-ended interrupts with their flags in status C (read-clears) on IRQ 8, the SET
bit (B bit 7) that freezes updates while the time is written, status D's valid-RAM bit, the
century byte at 0x32, the rest of the 128 bytes as plain CMOS RAM, and the NMI-disable bit 7 of
port 0x70. Daylight saving (B bit 0) and the square-wave output are stored, not modelled (logged).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from .irq import IrqLine

log = logging.getLogger(__name__)

SECONDS, SECONDS_ALARM, MINUTES, MINUTES_ALARM, HOURS, HOURS_ALARM = 0, 1, 2, 3, 4, 5
WEEKDAY, DAY, MONTH, YEAR = 6, 7, 8, 9
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
CENTURY = 0x32
# the registers that read the clock
TIME_REGISTERS = frozenset((SECONDS, MINUTES, HOURS, WEEKDAY, DAY, MONTH, YEAR, CENTURY))

A_UIP = 0x80
B_SET = 0x80
B_PIE = 0x40
B_AIE = 0x20
B_UIE = 0x10
B_DM_BINARY = 0x04
B_24H = 0x02
C_IRQF = 0x80
C_PF = 0x40
C_AF = 0x20
C_UF = 0x10
D_VRT = 0x80

NS = 1_000_000_000
UIP_NS = 244_000  # the update cycle is announced 244 us ahead
DEFAULT_BASE = dt.datetime(2024, 1, 1, 0, 0, 0)


def parse_rtc_base(text: str) -> dt.datetime:
    """``--rtc-base 2024-01-01T00:00:00`` (ISO 8601, no time zone)."""
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        raise ValueError(f"RTC base {text!r} is not a date such as 2024-01-01T00:00:00") from None


# the periodic interrupt's period for each rate select in register A (0: none)
_PERIODIC_NS: tuple[int | None, ...] = (None, NS // 256, NS // 128) + tuple(
    NS // (32768 >> (rate - 1)) for rate in range(3, 16)
)


class CmosRtc:
    # When the flags were last brought up to date: two states that differ only here behave the
    # same (the next tick sets the flags of every second since either), so fast-forward does
    # not count it as a change.
    CATCH_UP_FIELDS = ("_last_ns",)

    def __init__(
        self, irq8: IrqLine, now_ns: Callable[[], int], base: dt.datetime = DEFAULT_BASE
    ) -> None:
        self.irq8 = irq8
        self.now_ns = now_ns
        self.base = base
        self._logged: set[str] = set()
        self.reset()

    def reset(self) -> None:
        # Set by a write to a data register (``next_event`` reads registers A and B): the
        # scheduler clears it when it reads ``next_event`` and reschedules after a port access
        # only if it is set. Index writes and reads leave it.
        self.events_changed = True
        self.index = 0
        self.nmi_disabled = False
        self.ram = bytearray(128)
        self.ram[REG_A] = 0x26  # 32.768 kHz time base, 1024 Hz periodic rate
        self.ram[REG_B] = B_24H
        self.ram[REG_D] = D_VRT
        self.offset_s = 0  # seconds added by the guest setting the clock
        self.frozen_at: dt.datetime | None = None  # B.SET: the time registers as written
        self._last_ns = self.now_ns()
        self._update_irq()

    # ------------------------------------------------------------------ time
    def now(self, now_ns: int | None = None) -> dt.datetime:
        t = self.now_ns() if now_ns is None else now_ns
        if self.frozen_at is not None:
            return self.frozen_at
        return self.base + dt.timedelta(seconds=t // NS + self.offset_s)

    def _enc(self, value: int) -> int:
        if self.ram[REG_B] & B_DM_BINARY:
            return value
        return ((value // 10) << 4) | (value % 10)

    def _dec(self, value: int) -> int:
        if self.ram[REG_B] & B_DM_BINARY:
            return value
        return (value >> 4) * 10 + (value & 0xF)

    def _hour_out(self, hour: int) -> int:
        if self.ram[REG_B] & B_24H:
            return self._enc(hour)
        h12 = hour % 12 or 12
        return self._enc(h12) | (0x80 if hour >= 12 else 0)

    def _time_register(self, reg: int, t: dt.datetime) -> int:
        if reg == SECONDS:  # first: the register kernels poll
            return self._enc(t.second)
        if reg == MINUTES:
            return self._enc(t.minute)
        if reg == HOURS:
            return self._hour_out(t.hour)
        if reg == WEEKDAY:
            return self._enc(t.isoweekday() % 7 + 1)  # 1 = Sunday
        if reg == DAY:
            return self._enc(t.day)
        if reg == MONTH:
            return self._enc(t.month)
        if reg == YEAR:
            return self._enc(t.year % 100)
        if reg == CENTURY:
            return self._enc(t.year // 100)
        raise KeyError(reg)

    # ------------------------------------------------------------------ events
    def _periodic_ns(self) -> int | None:
        return _PERIODIC_NS[self.ram[REG_A] & 0x0F]

    def next_event(self, now: int) -> int | None:
        """The next instant an interrupt flag can be set (only when its interrupt is enabled)."""
        b = self.ram[REG_B]
        candidates = []
        if b & B_PIE and (p := self._periodic_ns()):
            candidates.append((now // p + 1) * p)
        if b & (B_UIE | B_AIE) and not b & B_SET:
            candidates.append((now // NS + 1) * NS)
        return min(candidates) if candidates else None

    def tick(self, now: int) -> None:
        """Set the flags for everything that happened since the last tick."""
        last, self._last_ns = self._last_ns, now
        if now <= last:
            return
        b = self.ram[REG_B]
        flags = 0
        p = self._periodic_ns()
        if p and now // p != last // p:
            flags |= C_PF
        if not b & B_SET:
            for second in range(last // NS + 1, now // NS + 1):
                flags |= C_UF
                if self._alarm_matches(self.base + dt.timedelta(seconds=second + self.offset_s)):
                    flags |= C_AF
        if flags:
            self.ram[REG_C] |= flags
            self._update_irq()

    def _alarm_matches(self, t: dt.datetime) -> bool:
        def match(reg: int, value: int) -> bool:
            alarm = self.ram[reg]
            return alarm >= 0xC0 or alarm == value  # 0xC0-0xFF: don't care

        return (
            match(SECONDS_ALARM, self._enc(t.second))
            and match(MINUTES_ALARM, self._enc(t.minute))
            and match(HOURS_ALARM, self._hour_out(t.hour))
        )

    def _update_irq(self) -> None:
        c = self.ram[REG_C] & (C_PF | C_AF | C_UF)
        enabled = self.ram[REG_B] & (B_PIE | B_AIE | B_UIE)
        if c & enabled:  # the flag bits of C line up with their enable bits in B
            self.ram[REG_C] |= C_IRQF
        else:
            self.ram[REG_C] &= ~C_IRQF & 0xFF
        self.irq8.set_level(bool(self.ram[REG_C] & C_IRQF))

    # ------------------------------------------------------------------ ports
    def read(self, offset: int, size: int) -> int:
        if offset & 1 == 0:
            self._note("read of the index port 0x70")
            return 0xFF
        now = self.now_ns()
        reg = self.index
        if reg == REG_A:  # _register, inlined for the bit kernels poll
            uip = A_UIP if (now % NS) >= NS - UIP_NS and not self.ram[REG_B] & B_SET else 0
            return (self.ram[REG_A] & 0x7F) | uip
        if reg == SECONDS and self.frozen_at is None:  # what kernels poll, without a datetime
            return self._enc((self.base.second + now // NS + self.offset_s) % 60)
        if reg != REG_C:
            return self._register(reg, now)
        # the flags of everything that happened by now (the only register they show in: reading
        # any other leaves the clock's state as it is)
        self.tick(now)
        value = self.ram[REG_C]
        self.ram[REG_C] = 0  # reading C clears the flags and acknowledges IRQ 8
        self._update_irq()
        return value

    def _register(self, reg: int, now: int) -> int:
        """What register ``reg`` (not C) reads at virtual time ``now``."""
        if reg == REG_A:  # first: status A's update-in-progress bit is what kernels poll
            uip = A_UIP if (now % NS) >= NS - UIP_NS and not self.ram[REG_B] & B_SET else 0
            return (self.ram[REG_A] & 0x7F) | uip
        if reg in TIME_REGISTERS:
            return self._time_register(reg, self.now(now))
        return self.ram[reg]

    def stable_read(self, offset: int) -> tuple[int, int | None] | None:
        """What a read of ``offset`` returns now, with no side effect, at every virtual time
        before ``until`` (None: until the next access): (value, until). The time registers
        hold until the next second (while SET freezes them: until the next access), register A
        until its update-in-progress bit next changes, register C (read-clears, and set by
        time) never; the index port only once its read has been logged."""
        if offset & 1 == 0:
            return (0xFF, None) if "read of the index port 0x70" in self._logged else None
        reg = self.index
        if reg == REG_C:
            return None
        if reg not in TIME_REGISTERS and reg != REG_A:
            return self.ram[reg], None
        now = self.now_ns()
        frozen = self.ram[REG_B] & B_SET
        if reg == REG_A:
            if frozen:
                return self.ram[REG_A] & 0x7F, None
            second = now - now % NS
            uip_from = second + NS - UIP_NS
            until = uip_from if now < uip_from else second + NS
        else:
            until = None if frozen else now - now % NS + NS
        return self._register(reg, now), until

    def stable_write(self, offset: int) -> int | None:
        """The value whose write to ``offset`` changes nothing: at the index port, the index
        (and NMI bit) already selected; None for the data port."""
        if offset & 1:
            return None
        return self.index | (0x80 if self.nmi_disabled else 0)

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset & 1 == 0:
            self.index = value & 0x7F
            self.nmi_disabled = value > 0x7F
            return
        self.events_changed = True
        reg = self.index
        if reg in TIME_REGISTERS:
            self._set_time(reg, value)
        elif reg == REG_B:
            was_set = self.ram[REG_B] & B_SET
            if value & B_SET and not was_set:
                self.frozen_at = self.now()
            if value & 0x09:
                self._note("daylight saving and square-wave output")
            self.ram[REG_B] = value
            if was_set and not value & B_SET and self.frozen_at is not None:
                live = self.base + dt.timedelta(seconds=self.now_ns() // NS)
                self.offset_s = int((self.frozen_at - live).total_seconds())
                self.frozen_at = None
            self._update_irq()
        elif reg in (REG_C, REG_D):
            self._note(f"write to read-only status register {'C' if reg == REG_C else 'D'}")
        else:
            self.ram[reg] = value

    def _set_time(self, reg: int, value: int) -> None:
        t = self.now()
        v = self._dec(value & 0x7F) if reg == HOURS else self._dec(value)
        if reg == HOURS and not self.ram[REG_B] & B_24H:
            v = v % 12 + (12 if value & 0x80 else 0)
        fields = {SECONDS: "second", MINUTES: "minute", HOURS: "hour", DAY: "day", MONTH: "month"}
        try:
            if reg in fields:
                t = t.replace(**{fields[reg]: v})
            elif reg == YEAR:
                t = t.replace(year=t.year // 100 * 100 + v)
            elif reg == CENTURY:
                t = t.replace(year=v * 100 + t.year % 100)
        except ValueError:
            self._note("an impossible date written to the clock")
            return
        if self.frozen_at is not None:
            self.frozen_at = t
        else:
            live = self.base + dt.timedelta(seconds=self.now_ns() // NS)
            self.offset_s = int((t - live).total_seconds())

    def _note(self, what: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.info("RTC: %s is not modelled", what)
