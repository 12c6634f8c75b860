"""The local APIC of the one CPU (xAPIC mode, memory-mapped at IA32_APIC_BASE, 0xFEE00000).

Modelled after the Intel SDM vol. 3A chapter 11, with the values and choices of QEMU 7.2's
TCG APIC where the SDM leaves room (measured with images/probe-lapic, docs/devices.md):

- state at hand-over: enabled at 0xFEE00000 (IA32_APIC_BASE 0xFEE00900, BSP), SVR 0x1FF
  (SeaBIOS enabled it), LINT0 0x8700 (ExtINT: the 8259s in virtual-wire mode), LINT1 0x8400
  (NMI), the other LVT entries masked, DFR all ones, version 0x00050014 (6 LVT entries);
- registers: ID (8 bits), version, TPR, APR (0), PPR, EOI, LDR, DFR, SVR (9 bits), ISR, TMR,
  IRR, ESR, ICR, the six LVT entries (kept as written, all 32 bits, as QEMU keeps them), the
  timer's initial count, current count and divide configuration (bits 0, 1, 3). Accesses
  narrower than 4 bytes read 0 and are dropped, any offset inside a register's 16 bytes is that
  register, and a reserved offset sets ESR bit 7 (illegal register address);
- priorities: an interrupt in IRR is delivered when its class (vector >> 4) is above the PPR's
  (the higher of TPR and the highest in-service vector's class); EOI ends the highest in-service
  vector and, if it was level-triggered (TMR), broadcasts the EOI to the I/O APIC;
- the 8259s' INTR arrives on LINT0. In ExtINT mode (and while the APIC is disabled in the MSR)
  it passes straight to the CPU and the PIC answers INTA, before any fixed interrupt (QEMU's
  order: ExtINT ignores priorities). LINT1 in NMI mode gives an NMI;
- the timer counts down from virtual time: one tick per nanosecond divided by the divide
  configuration (QEMU's 1 GHz APIC bus), one-shot or periodic. The period is
  ``(initial count + 1) << shift`` ns, as QEMU computes it. qemu64 has no TSC-deadline mode
  (CPUID.1:ECX[24] is 0), so LVT timer mode 2 counts as one-shot, as in QEMU;
- ICR: fixed and lowest-priority IPIs to this APIC (physical ID, flat or cluster logical
  destination, or a shorthand), NMI IPIs; INIT and STARTUP to processors that do not exist
  are accepted and ignored (logged once), as on QEMU with one CPU;
- errors as the SDM says: a fixed IPI with a vector below 16 sets ESR bit 5 (send illegal
  vector) and is not sent, a fixed interrupt received with such a vector sets bit 6 (receive
  illegal vector) and is dropped, a reserved offset sets bit 7. Errors are latched into the
  readable ESR by a write to it, and raise the LVT error interrupt when it is unmasked.
  (QEMU differs: it sets bit 7 only, never clears the ESR and never raises the error vector.)

Not modelled, each logged once when a guest uses it: SMI delivery, an INIT sent to this CPU
(the CPU would reset), the x2APIC mode, the focus-processor check, EOI-broadcast suppression,
NMI blocking until IRET.

The device is given ``intr`` (the CPU's INTR pin), ``now_ns`` (virtual time), ``eoi_broadcast``
(to the I/O APIC) and ``on_base_change`` (the machine moves the MMIO mapping); the machine asks
``acknowledge`` (INTA) which interrupt to take, with the 8259 pair's INTA as ``pic_acknowledge``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .irq import IrqLine

log = logging.getLogger(__name__)

APIC_BASE_DEFAULT = 0xFEE00000
APIC_BASE_BSP = 1 << 8
APIC_BASE_ENABLE = 1 << 11
APIC_BASE_ADDRESS_MASK = 0xFFFFF000
MMIO_SIZE = 0x1000
VERSION = 0x00050014  # QEMU: version 0x14, 6 LVT entries (max LVT index 5)

# register offsets
ID, VER, TPR, APR, PPR, EOI, LDR, DFR, SVR = 0x20, 0x30, 0x80, 0x90, 0xA0, 0xB0, 0xD0, 0xE0, 0xF0
ISR, TMR, IRR, ESR, ICR_LO, ICR_HI = 0x100, 0x180, 0x200, 0x280, 0x300, 0x310
LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR = range(6)
LVT_NAMES = ("timer", "thermal", "performance counter", "LINT0", "LINT1", "error")
LVT_OFFSETS = (0x320, 0x330, 0x340, 0x350, 0x360, 0x370)
TIMER_INITIAL, TIMER_CURRENT, TIMER_DIVIDE = 0x380, 0x390, 0x3E0

SVR_ENABLE = 1 << 8
LVT_MASKED = 1 << 16
LVT_LEVEL = 1 << 15
TIMER_PERIODIC = 1 << 17
ESR_SEND_ILLEGAL_VECTOR = 1 << 5
ESR_RECEIVE_ILLEGAL_VECTOR = 1 << 6
ESR_ILLEGAL_REGISTER = 1 << 7

DM_FIXED, DM_LOWEST, DM_SMI, DM_NMI, DM_INIT, DM_STARTUP, DM_EXTINT = 0, 1, 2, 4, 5, 6, 7
DELIVERY_MODES = {0: "fixed", 1: "lowest priority", 2: "SMI", 3: "reserved", 4: "NMI",
                  5: "INIT", 6: "STARTUP", 7: "ExtINT"}  # fmt: skip
SHORTHANDS = ("destination field", "self", "all including self", "all excluding self")


def _highest(bits: int) -> int:
    """The highest vector set in a 256-bit register, or -1."""
    return bits.bit_length() - 1


@dataclass(frozen=True)
class Acknowledged:
    """What INTA gave: the vector and where it came from ("8259", "LAPIC", "spurious")."""

    vector: int
    source: str


class LocalApic:
    """One xAPIC. See the module docstring for what is modelled."""

    def __init__(
        self,
        intr: IrqLine,
        now_ns: Callable[[], int],
        *,
        eoi_broadcast: Callable[[int], None] | None = None,
        on_base_change: Callable[[int, int], None] | None = None,
    ) -> None:
        self.intr = intr
        self.now_ns = now_ns
        self.eoi_broadcast = eoi_broadcast
        self.on_base_change = on_base_change  # (old physical base, new physical base)
        self._logged: set[str] = set()
        self.reset()

    # ---------------------------------------------------------------- state
    def reset(self) -> None:
        """The state SeaBIOS and GRUB leave (measured): enabled, virtual wire on LINT0."""
        old = getattr(self, "apic_base", APIC_BASE_DEFAULT | APIC_BASE_BSP | APIC_BASE_ENABLE)
        self.apic_base = APIC_BASE_DEFAULT | APIC_BASE_BSP | APIC_BASE_ENABLE
        self.apic_id = 0
        self.tpr = 0
        self.ldr = 0
        self.dfr_model = 0xF
        self.svr = 0x1FF
        self.isr = 0
        self.tmr = 0
        self.irr = 0
        self.esr = 0  # what the guest reads
        self.esr_pending = 0  # errors since the last write to the ESR
        # SeaBIOS's last IPI: STARTUP (vector 0x10) to all excluding self, level assert
        self.icr_lo = 0x000C4610
        self.icr_hi = 0
        self.lvt = [LVT_MASKED] * 6
        self.lvt[LVT_LINT0] = 0x8700
        self.lvt[LVT_LINT1] = 0x8400
        self.initial_count = 0
        self.load_time = 0  # virtual ns when the initial count was written
        self.divide = 0
        self.count_shift = 1  # divide configuration 0: divide by 2
        self.next_expiry: int | None = None  # virtual ns of the timer's next interrupt
        self.lint0_level = False  # the 8259 pair's INTR
        self.nmi_pending = False
        self.nmi_source = ""
        self.last_source = ""  # what put the highest IRR vector there (for the trace)
        self.irr_sources: dict[int, str] = {}
        self.timer_interrupts = 0
        self.events_changed = True
        if old & APIC_BASE_ADDRESS_MASK != APIC_BASE_DEFAULT and self.on_base_change:
            self.on_base_change(old & APIC_BASE_ADDRESS_MASK, APIC_BASE_DEFAULT)
        self._update()

    @property
    def enabled(self) -> bool:
        """Globally enabled (IA32_APIC_BASE bit 11)."""
        return bool(self.apic_base & APIC_BASE_ENABLE)

    @property
    def software_enabled(self) -> bool:
        return bool(self.svr & SVR_ENABLE)

    @property
    def base(self) -> int:
        return self.apic_base & APIC_BASE_ADDRESS_MASK

    def _note(self, what: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.info("local APIC: %s", what)

    # -------------------------------------------------------------- the MSR
    def read_base_msr(self) -> int:
        return self.apic_base

    def write_base_msr(self, value: int) -> None:
        """WRMSR IA32_APIC_BASE: the base moves; clearing bit 11 disables the APIC, which then
        cannot be enabled again before a reset (QEMU 7.2, measured); the BSP bit is read-only."""
        old_base = self.base
        new = (value & APIC_BASE_ADDRESS_MASK) | (
            self.apic_base & (APIC_BASE_BSP | APIC_BASE_ENABLE)
        )
        if value >> 32:
            self._note(f"IA32_APIC_BASE bits above 31 ignored (0x{value:x})")
        if value & (1 << 10):
            self._note("x2APIC mode (IA32_APIC_BASE bit 10) is not modelled: stays xAPIC")
        if not value & APIC_BASE_ENABLE:
            if self.enabled:
                self._note("disabled through IA32_APIC_BASE (cannot be enabled before a reset)")
            new &= ~APIC_BASE_ENABLE
            self.svr &= ~SVR_ENABLE
        elif not self.enabled:
            self._note("IA32_APIC_BASE: enabling again after a disable is ignored (as QEMU)")
        self.apic_base = new
        if self.base != old_base and self.on_base_change is not None:
            self.on_base_change(old_base, self.base)
        self.events_changed = True

    # ------------------------------------------------------------ registers
    def mem_read(self, offset: int, size: int) -> int:
        if size < 4:
            self._note("accesses narrower than 32 bits read 0 (as QEMU)")
            return 0
        value = self.read_register(offset & 0xFF0)
        return value if value is not None else 0

    def read_register(self, offset: int) -> int | None:
        """A 32-bit register read (side effects: a reserved offset sets ESR bit 7)."""
        value = self.peek(offset)
        if value is None:
            self.esr_pending |= ESR_ILLEGAL_REGISTER
            self._note(f"read of reserved offset 0x{offset:03x}: ESR illegal register address")
            self._error()
            return None
        return value

    def peek(self, offset: int) -> int | None:
        """The register at ``offset`` without side effects; None for a reserved offset."""
        offset &= 0xFF0
        if offset == ID:
            return self.apic_id << 24
        if offset == VER:
            return VERSION
        if offset == TPR:
            return self.tpr
        if offset == APR:
            return 0
        if offset == PPR:
            return self.ppr
        if offset == EOI:
            return 0
        if offset == LDR:
            return self.ldr << 24
        if offset == DFR:
            return (self.dfr_model << 28) | 0x0FFFFFFF
        if offset == SVR:
            return self.svr
        for base, bits in ((ISR, self.isr), (TMR, self.tmr), (IRR, self.irr)):
            if base <= offset < base + 0x80:
                return (bits >> (32 * ((offset - base) >> 4))) & 0xFFFFFFFF
        if offset == ESR:
            return self.esr
        if offset == ICR_LO:
            return self.icr_lo
        if offset == ICR_HI:
            return self.icr_hi
        if 0x320 <= offset <= 0x370:
            return self.lvt[(offset - 0x320) >> 4]
        if offset == TIMER_INITIAL:
            return self.initial_count
        if offset == TIMER_CURRENT:
            return self.current_count(self.now_ns())
        if offset == TIMER_DIVIDE:
            return self.divide
        return None

    def mem_write(self, offset: int, size: int, value: int) -> None:
        if size < 4:
            self._note("writes narrower than 32 bits are dropped (as QEMU)")
            return
        self.write_register(offset & 0xFF0, value & 0xFFFFFFFF)

    def write_register(self, offset: int, value: int) -> None:
        if offset == ID:
            self.apic_id = value >> 24
        elif offset == TPR:
            self.tpr = value & 0xFF
            self._update()
        elif offset == EOI:
            self._eoi()
            self._update()
        elif offset == LDR:
            self.ldr = value >> 24
        elif offset == DFR:
            self.dfr_model = value >> 28
            if self.dfr_model not in (0x0, 0xF):
                self._note(f"DFR model 0x{self.dfr_model:x} is reserved (neither flat nor cluster)")
        elif offset == SVR:
            self.svr = value & 0x1FF
            if not self.enabled:
                self.svr &= ~SVR_ENABLE  # the MSR disabled the APIC: the SVR cannot enable it
            if value & (1 << 12):
                self._note("SVR bit 12 (EOI-broadcast suppression) is not supported: dropped")
            self._update()
        elif offset == ESR:
            self.esr, self.esr_pending = self.esr_pending, 0
        elif offset == ICR_LO:
            self.icr_lo = value & ~(1 << 12)  # delivery status reads idle: IPIs are instant
            self._send_ipi()
        elif offset == ICR_HI:
            self.icr_hi = value
        elif 0x320 <= offset <= 0x370:
            n = (offset - 0x320) >> 4
            self.lvt[n] = value
            if n == LVT_TIMER:
                if (value >> 17) & 3 == 2:
                    self._note("LVT timer TSC-deadline mode: qemu64 has none, counts as one-shot")
                self._rearm(self.now_ns())
            elif n == LVT_LINT0 and self._check_pic():
                self._update()
        elif offset == TIMER_INITIAL:
            self.initial_count = value
            self.load_time = self.now_ns()
            self._rearm(self.load_time)
        elif offset == TIMER_DIVIDE:
            self.divide = value & 0xB
            v = (self.divide & 3) | ((self.divide >> 1) & 4)
            self.count_shift = (v + 1) & 7
            self._note_divide_change()
        elif offset in (VER, APR, PPR, TIMER_CURRENT) or ISR <= offset < ESR:
            self._note(f"write to read-only register 0x{offset:03x} ignored")
        else:
            self.esr_pending |= ESR_ILLEGAL_REGISTER
            self._note(f"write to reserved offset 0x{offset:03x}: ESR illegal register address")
            self._error()

    def _note_divide_change(self) -> None:
        # QEMU keeps the load time and the next expiry; the count reads with the new shift
        self.events_changed = True

    # ------------------------------------------------------------ priorities
    @property
    def ppr(self) -> int:
        isrv = max(_highest(self.isr), 0)
        return self.tpr if (self.tpr >> 4) >= (isrv >> 4) else isrv & 0xF0

    def _deliverable(self) -> int:
        """QEMU's apic_irq_pending: the vector to deliver (> 0), 0 if none, -1 if all masked
        by the PPR."""
        if not self.software_enabled:
            return 0
        irrv = _highest(self.irr)
        if irrv < 0:
            return 0
        ppr = self.ppr
        if ppr and (irrv & 0xF0) <= (ppr & 0xF0):
            return -1
        return irrv

    @property
    def accepts_pic(self) -> bool:
        """QEMU's apic_accept_pic_intr: the 8259s' INTR reaches this APIC (and INTA may go to
        them): the APIC is disabled in the MSR, or LINT0 is unmasked."""
        return not self.enabled or not self.lvt[LVT_LINT0] & LVT_MASKED

    @property
    def extint_active(self) -> bool:
        """The 8259s' INTR is high and passes through to the CPU (virtual wire)."""
        return self.lint0_level and self.accepts_pic

    @property
    def interrupt_pending(self) -> bool:
        """The CPU's INTR pin (an NMI is ``nmi_pending``). It behaves as QEMU's hard interrupt
        request: raised by a deliverable vector or the 8259s through LINT0, lowered by INTA or
        when neither can be the cause any more (``_update``), and left as it is otherwise (so
        masking LINT0 after the 8259s raised it leaves it up, and INTA then finds the spurious
        vector, as under QEMU)."""
        return self.intr.level

    def _update(self) -> None:
        """QEMU's apic_update_irq."""
        if self._deliverable() > 0:
            self.intr.set_level(True)
        elif not self.accepts_pic or not self.lint0_level:
            self.intr.set_level(False)

    def _check_pic(self) -> bool:
        """QEMU's apic_check_pic: the 8259s' INTR is high and accepted: it is delivered again."""
        if not self.extint_active:
            return False
        self._lint0_rise()
        return True

    def accept(self, vector: int, level: bool, source: str) -> None:
        """A fixed (or lowest-priority) interrupt arrives for this APIC: into IRR."""
        if vector < 16:
            self.esr_pending |= ESR_RECEIVE_ILLEGAL_VECTOR
            self._note(f"received illegal vector {vector} ({source}): ESR receive illegal vector")
            if source != "LAPIC error":  # an illegal error vector does not fire itself again
                self._error()
            self._update()
            return
        bit = 1 << vector
        self.irr |= bit
        if level:
            self.tmr |= bit
        else:
            self.tmr &= ~bit
        self.irr_sources[vector] = source
        self._update()

    def acknowledge(self, pic_acknowledge: Callable[[], int]) -> Acknowledged | None:
        """INTA: the interrupt the CPU takes now (QEMU's order: the 8259s through ExtINT first,
        then the highest deliverable IRR vector into ISR, the spurious vector if the PPR masks
        every requested one). None if nothing is pending any more."""
        self.intr.set_level(False)  # INTA takes the request
        if self.software_enabled:
            intno = self._deliverable()
            if intno < 0 and not self._check_pic():
                return Acknowledged(self.svr & 0xFF, "spurious")
            if intno > 0 and not self._check_pic():
                bit = 1 << intno
                self.irr &= ~bit
                self.isr |= bit
                self.last_source = self.irr_sources.pop(intno, "LAPIC")
                self._update()
                return Acknowledged(intno, self.last_source)
        if not self.accepts_pic or not self.lint0_level:
            self._update()
            return None
        vector = pic_acknowledge()
        if self.lint0_level:
            self._lint0_rise()  # the 8259s still request: INTR stays up
        self._update()
        return Acknowledged(vector, "8259")

    def take_nmi(self) -> bool:
        """The CPU takes a pending NMI (vector 2): True if there was one."""
        if not self.nmi_pending:
            return False
        self.nmi_pending = False
        return True

    def _eoi(self) -> None:
        isrv = _highest(self.isr)
        if isrv < 0:
            self._note("EOI with nothing in service ignored")
            return
        self.isr &= ~(1 << isrv)
        if self.tmr >> isrv & 1 and self.eoi_broadcast is not None:
            self.eoi_broadcast(isrv)
        self.events_changed = True

    # -------------------------------------------------------- local interrupts
    def set_lint0(self, level: bool) -> None:
        """The LINT0 pin (the 8259 pair's INTR on a PC)."""
        level = bool(level)
        if level == self.lint0_level:
            return
        self.lint0_level = level
        self.events_changed = True
        if not self.accepts_pic:
            return  # QEMU's pic_irq_request: the change does not reach this APIC
        if level:
            self._lint0_rise()
            return
        lvt0 = self.lvt[LVT_LINT0]
        mode = (lvt0 >> 8) & 7
        if mode == DM_FIXED and lvt0 & LVT_LEVEL:
            self.irr &= ~(1 << (lvt0 & 0xFF))
            self._update()
        elif mode == DM_EXTINT:
            self._update()  # (a fixed edge-triggered LINT0 leaves the request as it is: QEMU)

    def _lint0_rise(self) -> None:
        """The 8259s' INTR rises on LINT0 (QEMU's apic_deliver_pic_intr(1))."""
        self._local(LVT_LINT0, "LINT0")

    def pulse_lint1(self) -> None:
        """A pulse on LINT1 (the NMI input: nothing on QEMU's pc machine drives it but the
        monitor's ``nmi`` command)."""
        self._local(LVT_LINT1, "LINT1")

    def _local(self, n: int, source: str) -> None:
        """QEMU's apic_local_deliver: an LVT entry fires."""
        lvt = self.lvt[n]
        if lvt & LVT_MASKED:
            return
        mode = (lvt >> 8) & 7
        if mode == DM_NMI:
            self.deliver_nmi(source)
        elif mode == DM_FIXED:
            level = n in (LVT_LINT0, LVT_LINT1) and bool(lvt & LVT_LEVEL)
            self.accept(lvt & 0xFF, level, source)
        elif mode == DM_EXTINT:
            self.intr.set_level(True)  # the CPU asks the 8259s at INTA
        elif mode == DM_SMI:
            self._note(f"SMI delivery ({LVT_NAMES[n]} LVT) is not modelled: dropped")
        else:
            self._note(f"reserved delivery mode {mode} in the {LVT_NAMES[n]} LVT: dropped")

    def deliver_nmi(self, source: str) -> None:
        self.nmi_pending = True
        self.nmi_source = source
        self.events_changed = True

    def _error(self) -> None:
        """An error was detected: the LVT error entry fires (SDM 11.5.3)."""
        self._local(LVT_ERROR, "LAPIC error")

    # ------------------------------------------------------------------ IPIs
    def matches(self, dest: int, logical: bool) -> bool:
        """Whether a destination (physical ID or logical MDA) addresses this APIC."""
        if not logical:
            return dest == 0xFF or dest == self.apic_id
        if self.dfr_model == 0xF:
            return bool(dest & self.ldr)
        if self.dfr_model == 0x0:
            return (dest & 0xF0) == (self.ldr & 0xF0) and bool(dest & self.ldr & 0x0F)
        return False

    def _send_ipi(self) -> None:
        lo = self.icr_lo
        vector, mode = lo & 0xFF, (lo >> 8) & 7
        logical, level = bool(lo & (1 << 11)), bool(lo & (1 << 15))
        level_assert = bool(lo & (1 << 14))
        shorthand = (lo >> 18) & 3
        dest = self.icr_hi >> 24
        if shorthand == 0:
            to_self = self.matches(dest, logical)
            to_absent = not to_self or (dest == 0xFF and not logical)
        else:
            to_self, to_absent = shorthand != 3, shorthand != 1
        if mode in (3, 7):
            self._note(f"IPI with reserved delivery mode {mode} ({DELIVERY_MODES[mode]}) ignored")
            return
        if mode in (DM_FIXED, DM_LOWEST) and vector < 16:
            self.esr_pending |= ESR_SEND_ILLEGAL_VECTOR
            self._note(f"IPI with illegal vector {vector}: ESR send illegal vector, not sent")
            self._error()
            return
        if to_absent:
            self._note(
                f"{DELIVERY_MODES[mode]} IPI to processors that do not exist "
                f"({SHORTHANDS[shorthand]}): this machine has one CPU, accepted and ignored"
            )
        if not to_self:
            return
        if mode in (DM_FIXED, DM_LOWEST):
            self.accept(vector, level, "IPI")
        elif mode == DM_NMI:
            self.deliver_nmi("IPI")
        elif mode == DM_INIT:
            if level_assert or not level:
                self._note("INIT IPI to this CPU is not modelled (it would reset it): ignored")
        elif mode == DM_STARTUP:
            self._note("STARTUP IPI to this CPU ignored (it is not waiting for one)")
        elif mode == DM_SMI:
            self._note("SMI IPI is not modelled: dropped")

    # ----------------------------------------------------------------- timer
    def current_count(self, now: int) -> int:
        if not self.initial_count:
            return 0
        d = (now - self.load_time) >> self.count_shift
        if self.lvt[LVT_TIMER] & TIMER_PERIODIC:
            return self.initial_count - d % (self.initial_count + 1)
        return 0 if d >= self.initial_count else self.initial_count - d

    def _next_expiry(self, now: int) -> int | None:
        """QEMU's apic_next_timer: the instant of the timer's next interrupt after ``now``."""
        lvt = self.lvt[LVT_TIMER]
        if lvt & LVT_MASKED:
            return None
        d = (now - self.load_time) >> self.count_shift
        period = self.initial_count + 1
        if lvt & TIMER_PERIODIC:
            if not self.initial_count:
                return None
            d = (d // period + 1) * period
        else:
            if d >= self.initial_count:
                return None
            d = period
        return self.load_time + (d << self.count_shift)

    def _rearm(self, now: int) -> None:
        self.next_expiry = self._next_expiry(now)
        self.events_changed = True

    def next_event(self, now: int) -> int | None:
        return self.next_expiry

    def tick(self, now: int) -> None:
        expiry = self.next_expiry
        if expiry is None or expiry > now:
            return
        self.timer_interrupts += 1
        self._local(LVT_TIMER, "LAPIC timer")
        self.next_expiry = self._next_expiry(expiry)
        if self.next_expiry is not None and self.next_expiry <= now:
            # missed periods coalesce in IRR (counted, as QEMU's timer would have fired them)
            period = (self.initial_count + 1) << self.count_shift
            self.timer_interrupts += (now - self.next_expiry) // period + 1
            self.next_expiry = self._next_expiry(now)
        self.events_changed = True

    def expiry_after(self, expiry: int) -> int | None:
        """The timer's interrupt after the one at ``expiry`` (None: one-shot, or stopped)."""
        return self._next_expiry(expiry)

    def expiries_from(self, first: int, before: int | None, count: int) -> list[int]:
        """The timer's interrupt at ``first`` and those after it: every one before ``before``
        (None: no bound), then the first at or after it; ``count`` at most. The same instants
        as ``expiry_after`` one by one (a periodic timer's interrupts are one period apart)."""
        lvt = self.lvt[LVT_TIMER]
        if lvt & LVT_MASKED or not lvt & TIMER_PERIODIC or not self.initial_count:
            return [first][:count]
        step = (self.initial_count + 1) << self.count_shift
        n = count if before is None else min(count, max(0, -((first - before) // step)) + 1)
        return list(range(first, first + n * step, step))

    # -------------------------------------------------------------- reports
    def describe(self) -> str:
        def vectors(bits: int) -> str:
            return ",".join(f"0x{v:02x}" for v in range(256) if bits >> v & 1) or "-"

        lvts = " ".join(f"{LVT_NAMES[i]}=0x{v:08x}" for i, v in enumerate(self.lvt))
        return (
            f"LAPIC id {self.apic_id} base 0x{self.base:08x} "
            f"{'enabled' if self.enabled else 'disabled (MSR)'}, SVR 0x{self.svr:03x} "
            f"({'software enabled' if self.software_enabled else 'software disabled'}), "
            f"TPR 0x{self.tpr:02x} PPR 0x{self.ppr:02x} IRR {vectors(self.irr)} "
            f"ISR {vectors(self.isr)} TMR {vectors(self.tmr)} ESR 0x{self.esr:02x}\n"
            f"  LVT {lvts}\n"
            f"  timer: initial {self.initial_count} current {self.current_count(self.now_ns())} "
            f"divide 0x{self.divide:x} next "
            f"{'-' if self.next_expiry is None else f'{self.next_expiry:,} ns'}"
        )

    def to_dict(self) -> dict:
        now = self.now_ns()
        return {
            "apic_base": self.apic_base, "id": self.apic_id, "version": VERSION,
            "enabled": self.enabled, "software_enabled": self.software_enabled,
            "svr": self.svr, "tpr": self.tpr, "ppr": self.ppr, "ldr": self.ldr << 24,
            "dfr": (self.dfr_model << 28) | 0x0FFFFFFF,
            "irr": [v for v in range(256) if self.irr >> v & 1],
            "isr": [v for v in range(256) if self.isr >> v & 1],
            "tmr": [v for v in range(256) if self.tmr >> v & 1],
            "esr": self.esr, "icr": (self.icr_hi << 32) | self.icr_lo,
            "lvt": dict(zip(LVT_NAMES, self.lvt, strict=True)),
            "timer": {"initial_count": self.initial_count,
                      "current_count": self.current_count(now), "divide": self.divide,
                      "next_expiry_ns": self.next_expiry,
                      "interrupts": self.timer_interrupts},
            "lint0": self.lint0_level, "nmi_pending": self.nmi_pending,
        }  # fmt: skip
