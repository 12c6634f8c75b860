"""INT 1Ah (time of day and the CMOS clock), INT 08h (the timer's IRQ 0) and INT 70h (the
CMOS clock's IRQ 8).

The tick count is the BDA's (40:6C, and the midnight flag at 40:70), counted by INT 08h: the
BIOS's own clock, set from the CMOS clock at POST, as in SeaBIOS. The CMOS clock is read and
written through ports 70h/71h, as SeaBIOS does (the register index with NMI disabled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import bda as B
from .bda import cmos_read, cmos_write, ivt_entry, pic_eoi_master, pic_eoi_slave
from .regs import BiosRegs

if TYPE_CHECKING:
    from .services import Call

TICKS_PER_DAY = 0x1800B0
RTC_SECONDS, RTC_MINUTES, RTC_HOURS = 0x00, 0x02, 0x04
RTC_DAY, RTC_MONTH, RTC_YEAR, RTC_CENTURY = 0x07, 0x08, 0x09, 0x32
STATUS_A, STATUS_B, STATUS_C = 0x0A, 0x0B, 0x0C
B_DSE, B_24HR, B_AIE, B_PIE = 0x01, 0x02, 0x20, 0x40
DEFAULT_IRET = (0xF000, 0xFF53)


def int08(call: Call, r: BiosRegs) -> None:
    """IRQ 0: one tick more (and the midnight flag at the day's end), EOI. SeaBIOS then calls
    INT 1Ch; a handler the guest put there is not called (logged)."""
    b = call.bda
    ticks = b.u32(B.TIMER_COUNTER) + 1
    if ticks >= TICKS_PER_DAY:
        ticks = 0
        b.set8(B.TIMER_ROLLOVER, b.u8(B.TIMER_ROLLOVER) + 1)
    b.set32(B.TIMER_COUNTER, ticks)
    user = ivt_entry(call.bus, 0x1C)
    if user != DEFAULT_IRET:
        call.note(f"a guest INT 1Ch handler at {user[0]:04X}:{user[1]:04X} (it is not called)")
    pic_eoi_master(call.bus)


def int70(call: Call, r: BiosRegs) -> None:
    """IRQ 8: acknowledge the CMOS clock (reading register C), EOI. The alarm's INT 4Ah and
    the periodic wait of INT 15h AH=83h/86h are not modelled."""
    flags = cmos_read(call.bus, STATUS_C)
    if flags & B_AIE:
        call.note("the CMOS alarm's INT 4Ah (it is not called)")
    pic_eoi_slave(call.bus)


def int1a(call: Call, r: BiosRegs) -> None:
    ah = r.ah
    b = call.bda
    bus = call.bus
    if ah == 0x00:  # read the tick count
        ticks = b.u32(B.TIMER_COUNTER)
        r.cx, r.dx = ticks >> 16, ticks & 0xFFFF
        r.al = b.u8(B.TIMER_ROLLOVER)
        b.set8(B.TIMER_ROLLOVER, 0)
        r.success()
    elif ah == 0x01:  # set the tick count
        b.set32(B.TIMER_COUNTER, (r.cx << 16) | r.dx)
        b.set8(B.TIMER_ROLLOVER, 0)
        r.code_success()
    elif ah == 0x02:  # read the CMOS time (BCD, as the clock keeps it)
        r.dh = cmos_read(bus, RTC_SECONDS)
        r.cl = cmos_read(bus, RTC_MINUTES)
        r.ch = cmos_read(bus, RTC_HOURS)
        r.dl = cmos_read(bus, STATUS_B) & B_DSE
        r.ah, r.al = 0, r.ch
        r.success()
    elif ah == 0x03:  # set the CMOS time
        cmos_write(bus, RTC_SECONDS, r.dh)
        cmos_write(bus, RTC_MINUTES, r.cl)
        cmos_write(bus, RTC_HOURS, r.ch)
        status_b = (cmos_read(bus, STATUS_B) & (B_PIE | B_AIE)) | B_24HR | (r.dl & B_DSE)
        cmos_write(bus, STATUS_B, status_b)
        r.ah, r.al = 0, status_b
        r.success()
    elif ah == 0x04:  # read the CMOS date
        r.ah = 0
        r.cl = cmos_read(bus, RTC_YEAR)
        r.dh = cmos_read(bus, RTC_MONTH)
        r.dl = cmos_read(bus, RTC_DAY)
        r.ch = cmos_read(bus, RTC_CENTURY)
        r.al = r.ch
        r.success()
    elif ah == 0x05:  # set the CMOS date
        cmos_write(bus, RTC_YEAR, r.cl)
        cmos_write(bus, RTC_MONTH, r.dh)
        cmos_write(bus, RTC_DAY, r.dl)
        cmos_write(bus, RTC_CENTURY, r.ch)
        status_b = cmos_read(bus, STATUS_B) & 0x7F
        cmos_write(bus, STATUS_B, status_b)
        r.ah, r.al = 0, status_b
        r.success()
    else:
        call.unsupported(f"AH={ah:02X}h (this clock function is not modelled)")
