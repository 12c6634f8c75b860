"""The scheduler: virtual time, device deadlines, HLT, and arming the clock hook.

Time inside the guest is one nanosecond per retired instruction at the nominal clock rate
(``cpu_mhz`` 1000; at N MHz an instruction takes 1000/N ns) plus the time skipped while the CPU
was halted (``idle_ns``). ``time_at`` and ``count_at`` are the only conversions between
instruction counts and nanoseconds: every deadline the core is given goes through ``count_at``. Each timed device says when its next event is (``next_event``) and
catches up when ticked (``tick``). The machine runs the CPU up to the earliest event, ticks, and
delivers what is pending; HLT with IF=1 skips the clock straight to the next event. When the next
event is a PIT pulse alone, the clock hook is armed to deliver that timer interrupt itself, so a
periodic timer costs no stop at all (see ``schedule``).

The LAPIC timer and the HPET plug in here: a new timed device is one more entry in ``timed``; a
new way of skipping time is one more rule in ``wait_for_interrupt``. The polling fast-forward
(``fastforward.py``) skips time between slices, in whole loop iterations.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from ..core.internals import ENV_HFLAGS, HF_PE
from ..errors import EngineError
from . import layout as K

NO_LIMIT = 1 << 62
# A slice is the longest stretch run without looking at the wall clock or the devices. Each
# slice end costs Python's run loop, and its cut block (the deadline falls inside a block: it
# is cut there, and the rest starts a block of its own) a translation or two: about 0.1 ms in
# all, 12 % of a 41-instruction loop's time at 2 million instructions a slice (bench/irq.py).
# So slices grow to MAX_SLICE_INSTRUCTIONS, from SLICE_INSTRUCTIONS where fast-forward looks
# for a polling loop (emu/clock/fastforward.py: it starts there, and again after a skip).
SLICE_INSTRUCTIONS = 2_000_000
MAX_SLICE_INSTRUCTIONS = 16_000_000
_HFLAGS_SLOT = ENV_HFLAGS // 4  # in the core's 32-bit view of env
_ICOUNT = K.CTX_ICOUNT


class TimedDevice(Protocol):
    def next_event(self, now: int) -> int | None: ...

    def tick(self, now: int) -> None: ...


class Scheduler:
    """Virtual time for one machine: its timed devices, the PIT that may be armed, the PICs.

    Args:
        core: the CPU core (its clock context is where deadlines and arming are written).
        record_fast_deliveries: records the clock hook's deliveries in the fault trace
            ``(rows of its log, source)``; source None: the recorder's own.
        realtime: pace virtual time to the wall clock (a HLT sleeps until its event).
        cpu_mhz: instructions per microsecond of virtual time (1000: one per nanosecond).

    The devices are attached once they exist (they read the clock while being wired).
    """

    def __init__(
        self,
        core,
        record_fast_deliveries: Callable[..., None],
        *,
        realtime: bool = False,
        cpu_mhz: int = 1000,
    ) -> None:
        self.core = core
        self._ctxv = core._ctxv
        self._precise_icount = core.precise_icount  # bound once: devices read the time per access
        self.cpu_mhz = cpu_mhz
        self.record_fast_deliveries = record_fast_deliveries
        self.realtime = realtime
        self.pics = None
        self.lapic = None
        self.pit = None
        self.timed: tuple[TimedDevice, ...] = ()
        self.arm_timer = True  # False: every interrupt through a stop between slices
        self.slice_end = 0  # where the running slice ends at the latest (no device event)
        self.realtime_origin = (0.0, 0)  # (wall seconds, virtual ns) when the run started
        self._idle_ns = 0
        # False: every port access reschedules (the reference the fast path is tested against)
        self.io_fast_path = True
        self._watched: tuple = ()  # what after_io looks at: the timed devices and the PICs
        self._unwatched = False  # a timed device without ``events_changed``: always reschedule
        self._due = 0  # the earliest event at the last schedule, as an instruction count
        self._first_event: int | None = None  # ... and in virtual ns (None: none)
        self._armed_eoi = K.EOI_PIC  # which EOI ends the interrupt armed last
        # hflags, when the timer was not armed only because the CPU is in real mode
        self._hflags_view: ctypes.c_uint32 | None = None
        # Whether the PIT's channel 0 reaches IRQ 0 (the HPET's legacy replacement cuts it off):
        # the clock hook may deliver PIT interrupts only then.
        self.pit_connected: Callable[[], bool] = lambda: True
        # Forgets the port reads the devices published (emu/port_cache.py): called when the
        # devices tick or idle time is skipped, which can change what a read returns.
        self.forget_published: Callable[[], None] = lambda: None

    def attach(self, pics, pit, timed: Sequence[TimedDevice], lapic=None) -> None:
        """The 8259 pair (INTA, and whether a timer interrupt would be the only one pending),
        the 8254 whose channel 0 pulses the armed clock hook may deliver, every device with
        events in virtual time (the PIT included), and the local APIC between the 8259s and
        the CPU (None: the 8259s' INTR is the CPU's pin)."""
        self.pics = pics
        self.lapic = lapic
        self.pit = pit
        self.timed = tuple(timed)
        self._watched = (*self.timed, pics.master, pics.slave)
        if lapic is not None and lapic not in self._watched:
            self._watched += (lapic,)
        self._unwatched = not all(hasattr(d, "events_changed") for d in self._watched)

    # Port accesses that reached Python in the running slice, and how many end it (the machine
    # sets both per slice; fast-forward looks for a polling loop where it ends). They live in
    # the clock context, where the compiled IN and OUT hooks count what they pass on (the core
    # starts them at 0 and no limit).
    io_count = K.ContextSlot(K.CTX_PY_IO_COUNT)
    io_budget = K.ContextSlot(K.CTX_PY_IO_BUDGET)

    def note_io(self) -> None:
        """Count a port or MMIO access that reached Python other than from the compiled IN and
        OUT hooks (which count theirs: clock/kernels.py ``_python_io_done``), after its
        ``after_io``: the slice ends at the next block when it has had its budget."""
        ctx = self._ctxv
        n = ctx[K.CTX_PY_IO_COUNT] = ctx[K.CTX_PY_IO_COUNT] + 1
        if n >= ctx[K.CTX_PY_IO_BUDGET]:
            ctx[K.CTX_DEADLINE] = 0

    @property
    def idle_ns(self) -> int:
        """Virtual time skipped while halted, waiting for an interrupt."""
        return self._idle_ns

    @idle_ns.setter
    def idle_ns(self, value: int) -> None:
        if value != self._idle_ns:
            self.forget_published()  # their ends are instruction counts at the old idle time
        self._idle_ns = value
        # RDTSC reads the same clock: the TSC ticks at cpu_mhz, once per instruction
        self.core.time_offset = value * self.cpu_mhz // 1000

    def time_at(self, icount: int) -> int:
        """Virtual time (ns) when ``icount`` instructions have retired."""
        mhz = self.cpu_mhz
        if mhz == 1000:
            return icount + self._idle_ns
        return icount * 1000 // mhz + self._idle_ns

    def count_at(self, ns: int) -> int:
        """The first instruction count whose virtual time is at or after ``ns``."""
        mhz = self.cpu_mhz
        if mhz == 1000:
            return ns - self._idle_ns
        return -((self._idle_ns - ns) * mhz // 1000)

    def now_ns(self) -> int:
        """Virtual time: 1000/cpu_mhz ns per retired instruction, plus the time spent halted."""
        icount = self._precise_icount()  # time_at, inlined: devices read the time per access
        mhz = self.cpu_mhz
        if mhz == 1000:
            return icount + self._idle_ns
        return icount * 1000 // mhz + self._idle_ns

    def start_run(self, wall: float) -> None:
        self.realtime_origin = (wall, self.now_ns())

    def tick(self, now: int) -> None:
        self.forget_published()
        for device in self.timed:
            device.tick(now)

    def next_event(self, now: int) -> int | None:
        events = [e for e in (d.next_event(now) for d in self.timed) if e is not None]
        return min(events) if events else None

    def schedule(self, now: int, *, in_block: bool = False) -> int:
        """Where the running slice must stop next (an instruction count), and whether the clock
        hook may deliver the next timer interrupts itself (arming).

        Without arming, the slice stops at the next device event and Python ticks the devices,
        acknowledges and delivers. When that next event is a PIT channel 0 pulse alone, the PIC
        would answer INTA with IRQ 0 at that moment and nothing is pending now, the hook is
        armed: from that instant, at the first block boundary with IF=1 outside the interrupt
        shadow, it delivers the vector (compiled, emu/faults/kernels.py) and goes on without
        stopping. If the PICs had nothing else requested or in service, the handler's plain EOI
        is then taken by the compiled OUT hook, which arms the next edge from ``core.edges``.
        ``core.settle`` hands all of it to ``armed_delivered`` before Python looks at anything
        else, and that brings the devices to the same state the stop path would have: same
        instructions, same device state, same trace. The slice still ends at every other
        device's next event, and every port access that reaches Python reschedules.
        """
        ctx = self.core._ctxv
        count_at = self.count_at
        if ctx[K.CTX_ARMED] and ctx[K.CTX_ICOUNT] >= ctx[K.CTX_ARM_TIME]:
            # The armed edge came while the CPU could not take it (IF=0): the devices take it
            # now, as the stop path did at its deadline. Arming again would drop it, and the
            # interrupt would wait for a later tick (the next edge, the end of the slice).
            self.tick(now)
        elif in_block and self._first_event is not None and self._first_event <= now:
            # A port access inside the block that passed the earliest event: the devices take
            # it now, as the armed edge above. The devices' next events are those after now, so
            # scheduling without the tick would lose it until the slice ended elsewhere (a PIT
            # edge polled in the IRR with IF=0 was seen up to a whole slice late).
            self.tick(now)
        ctx[K.CTX_ARMED] = ctx[K.CTX_EDGE_COUNT] = ctx[K.CTX_FAST_EOI_OK] = 0
        for device in self._watched:
            device.events_changed = False
        self._hflags_view = None
        first = other = None  # the earliest event, and the earliest of the devices but the PIT
        lapic_event = not_lapic = None  # the local APIC timer's, and the earliest of the others
        lapic = self.lapic
        for device in self.timed:
            e = device.next_event(now)
            if e is None:
                continue
            if first is None or e < first:
                first = e
            if device is not self.pit and (other is None or e < other):
                other = e
            if device is lapic:
                lapic_event = e
            elif not_lapic is None or e < not_lapic:
                not_lapic = e
        slice_end = self.slice_end
        ctx[K.CTX_SLICE_END] = slice_end
        ctx[K.CTX_OTHER_EVENT] = NO_LIMIT if other is None else count_at(other)
        self._first_event = first
        if first is None:
            self._due = -1 if self._unwatched else NO_LIMIT
            ctx[K.CTX_EVENT_DUE] = K.NO_EVENT
            self._open_port_table()
            if self.lapic is not None and self.lapic.nmi_pending:
                slice_end = 0
            ctx[K.CTX_DEADLINE] = slice_end
            return slice_end
        first_count = count_at(first)
        self._due = -1 if self._unwatched else first_count
        ctx[K.CTX_EVENT_DUE] = max(first_count, 0)
        # Between slices the slice must make progress (at least one block); from a port access
        # inside a block (``in_block``: the count already holds the whole block) an event due
        # now ends the slice at the next block, not one block later each time the loop polls
        deadline = min(slice_end, max(self.core.icount + (0 if in_block else 1), first_count))
        pit_first = other is None or first < other
        if pit_first and first > now and self._timer_armable():
            deadline = self._arm(first, other, self.pit.events_from, self.pics.master.vector_base,
                                 K.EOI_PIC, self._timer_steady(), slice_end)  # fmt: skip
        elif (
            lapic_event == first and first > now and (not_lapic is None or first < not_lapic)
            and self._lapic_timer_armable()
        ):  # fmt: skip
            # the local APIC timer's expiries, delivered by the hook; in the steady state its
            # EOI (a write to the EOI register) is taken by the compiled MMIO write hook
            ctx[K.CTX_OTHER_EVENT] = NO_LIMIT if not_lapic is None else count_at(not_lapic)
            deadline = self._arm(first, not_lapic, lapic.expiries_from, lapic.lvt[0] & 0xFF,
                                 K.EOI_LAPIC, self._lapic_steady(), slice_end)  # fmt: skip
        if self.lapic is not None and self.lapic.nmi_pending:
            deadline = 0  # an NMI is taken at the next block boundary, whatever IF says
        ctx[K.CTX_DEADLINE] = deadline
        self._open_port_table()
        return deadline

    def _open_port_table(self) -> None:
        """The compiled port hooks answer from the port read table only where ``after_io``
        would not reschedule either: before ``_due``, and with the CPU not yet in protected
        mode where that alone kept the timer from being armed."""
        ctx = self.core._ctxv
        ctx[K.CTX_IO_DUE] = max(self._due, 0) if self.io_fast_path else 0
        ctx[K.CTX_IO_PE_WATCH] = int(self._hflags_view is not None)

    def _arm(self, first: int, other: int | None, edges_from, vector: int, eoi_kind: int,
             steady: bool, slice_end: int) -> int:  # fmt: skip
        """Arm the clock hook to deliver ``vector`` at the timer edge ``first`` (virtual ns),
        with the next edges (``edges_from(first, before, count)``) before ``other`` and the
        slice's end for the compiled EOI to re-arm (instruction counts); the slice's deadline.
        The edge after the last one armable ends the table: a deadline."""
        ctx = self.core._ctxv
        count_at = self.count_at
        idle = self._idle_ns
        edges = self.core.edges
        end = self.time_at(slice_end)
        before = end if other is None else min(other, end)
        times = edges_from(first, before, edges.size)
        n = len(times)
        if self.cpu_mhz == 1000:
            edges[:n] = times
            edges[:n] -= np.uint64(idle)
        else:
            edges[:n] = [self.count_at(int(t)) for t in times]
        ctx[K.CTX_EDGE_COUNT] = n
        ctx[K.CTX_EDGE_INDEX] = 0
        ctx[K.CTX_ARM_TIME] = count_at(first)
        ctx[K.CTX_ARM_VECTOR] = vector
        ctx[K.CTX_ARMED] = 1
        ctx[K.CTX_EOI_KIND] = eoi_kind
        ctx[K.CTX_FAST_EOI_OK] = int(steady)
        self._armed_eoi = eoi_kind
        after = edges[1] if n > 1 else NO_LIMIT
        return min(slice_end, int(after), ctx[K.CTX_OTHER_EVENT])

    def _lapic_steady(self) -> bool:
        """Nothing in service or requested on the local APIC: the timer's interrupt and its EOI
        leave it as it was (the compiled MMIO hook may take the EOI). The 8259s do not matter:
        their INTR is low (``_lapic_timer_armable``) and stays so up to their next event, which
        ends the armed window; a masked IRQ 0 the PIT latched in their IRR (the BIOS's 18.2 Hz
        timer under a kernel that masked it) changes nothing."""
        lapic = self.lapic
        return not (lapic.isr or lapic.irr)

    def _timer_armable(self) -> bool:
        """Would a PIT pulse now make the PICs signal IRQ 0 and nothing else (protected or
        long mode, the compiled delivery available)?"""
        c = self.core
        if not (self.arm_timer and c.fast_delivery and c.translate is None and c.tlb == "virtual"):
            return False
        if self.pics.cpu_line.level or not self.pit_connected() or not self._virtual_wire():
            return False
        if not c.internals.hflags & HF_PE:
            # after_io looks again: the guest may enter protected mode
            self._hflags_view = ctypes.c_uint32.from_address(c.internals.env + ENV_HFLAGS)
            return False
        pic = self.pics.master
        if pic.init_step or pic.poll or pic.ltim or pic.elcr & 1:
            return False
        irr = pic.irr
        pic.irr = irr | 1
        try:
            return pic.pending() == 0
        finally:
            pic.irr = irr

    def _lapic_timer_armable(self) -> bool:
        """Would the local APIC timer's expiry make INTA answer its vector and nothing else
        (nothing pending now, the 8259s quiet, the vector above the PPR, protected or long
        mode, the compiled delivery available)?"""
        c = self.core
        if not (self.arm_timer and c.fast_delivery and c.translate is None and c.tlb == "virtual"):
            return False
        lapic = self.lapic
        lvt = lapic.lvt[0]
        vector = lvt & 0xFF
        if lapic.irr or lapic.nmi_pending or lapic.intr.level or self.pics.cpu_line.level:
            return False
        if lvt & 0x10700 or vector < 16 or not lapic.software_enabled:
            return False  # masked, not fixed, an illegal vector, or software disabled
        ppr = lapic.ppr
        if ppr and (vector & 0xF0) <= (ppr & 0xF0):
            return False
        if not c.internals.hflags & HF_PE:
            self._hflags_view = ctypes.c_uint32.from_address(c.internals.env + ENV_HFLAGS)
            return False
        return True

    def _virtual_wire(self) -> bool:
        """The local APIC passes the 8259s' INTR straight to the CPU and has nothing of its own
        requested: an INTA then answers with the PICs' vector."""
        lapic = self.lapic
        if lapic is None:
            return True
        if lapic.irr or lapic.nmi_pending:
            return False
        lvt0 = lapic.lvt[3]
        return not lapic.enabled or (not lvt0 & 0x10000 and (lvt0 >> 8) & 7 == 7)

    def _timer_steady(self) -> bool:
        """Nothing requested or in service on the PICs and no mode that makes INTA or EOI do
        more than set and clear ISR bit 0: a timer interrupt and its plain EOI leave them as
        they are (the compiled OUT hook may then take the EOI)."""
        m, sl = self.pics.master, self.pics.slave
        return not (
            m.irr | m.isr | m.lines | sl.irr | sl.isr or m.special_mask or m.auto_eoi
            or m.rotate_on_aeoi
        )  # fmt: skip

    def armed_delivered(self, log, eoi_done: bool) -> None:
        """The clock hook delivered armed timer interrupts (rows of its log, ``layout.LOG_*``),
        and the EOI hook took the EOIs of all of them, or of all but the last. Bring the devices
        to the last delivery (its timer edge, INTA; the earlier ones were each acknowledged and
        ended by their EOI, which from the steady state leaves the controllers as they were),
        apply the last EOI if it came, and record every delivery with its instruction count."""
        icount, last_vector = (int(x) for x in log[-1, : K.LOG_VECTOR + 1])
        self.tick(self.time_at(icount))
        source = None
        if self.lapic is not None:
            taken = self.lapic.acknowledge(self.pics.acknowledge)
            vector = taken.vector if taken is not None else -1
            source = (
                self.pics.last_acknowledged
                if taken and taken.source == "8259"
                else (taken.source if taken else "")
            )
        else:
            vector = self.pics.acknowledge()
        if vector != last_vector:
            raise EngineError(
                f"internal error: the armed interrupt was vector 0x{last_vector:x}, "
                f"the PICs acknowledged 0x{vector:x}"
            )
        if eoi_done:
            if self._armed_eoi == K.EOI_LAPIC:
                self.lapic.mem_write(0xB0, 4, 0)
            else:
                self.pics.master.write(0, 1, 0x20)
        self.record_fast_deliveries(log, source)

    def after_io(self) -> None:
        """A port access may have changed what the devices do next: reschedule, unless
        nothing ``schedule`` reads can have changed since it last ran.

        ``schedule`` depends on the timed devices' next events and the PICs' state (each says
        with ``events_changed`` that it may have changed: a port access, a pin, INTA, a
        delivery the clock hook made and ``settle`` reported), on the CPU mode where it alone
        kept the timer from being armed, and on the time only once the earliest event is due:
        before that, every event is still where it was and the same ``schedule`` would write
        the same clock context. In every other case, or when a device cannot say, it runs."""
        for device in self._watched:
            if device.events_changed:
                self._reschedule_after_io()
                return
        self.after_quiet_io()

    def after_quiet_io(self) -> None:
        """``after_io`` for an access that changed no timed device and no interrupt controller
        (so no ``events_changed``): only the time and the CPU mode can make it reschedule (the
        port read table's ``port_table_open`` is the same test: where the compiled hook found
        it open, the port cache does not ask)."""
        if (
            self.io_fast_path
            and self._ctxv[_ICOUNT] < self._due
            and (self._hflags_view is None or not self.core._env32[_HFLAGS_SLOT] & HF_PE)
        ):
            return
        self._reschedule_after_io()

    def _reschedule_after_io(self) -> None:
        if self.timed:
            self.schedule(self.now_ns(), in_block=True)

    def skip_to_next_event(self) -> bool:
        """The CPU waits inside the BIOS for a device (INT 16h for a key): skip virtual time to
        the next device event, whatever IF is. False: no device has an event to come."""
        now = self.now_ns()
        event = self.next_event(now)
        if event is None:
            return False
        self.idle_ns = self._idle_ns + max(0, event - now)
        if self.realtime:
            wall0, virtual0 = self.realtime_origin
            ahead = (self.now_ns() - virtual0) / 1e9 - (time.perf_counter() - wall0)
            if ahead > 0:
                time.sleep(ahead)
        return True

    def wait_for_interrupt(self) -> bool:
        """HLT with IF=1: skip virtual time to the next device event. False: nothing can wake
        the CPU (IF=0, or no device will ever interrupt)."""
        if self.lapic is not None and self.lapic.nmi_pending:
            return True
        if not self.core.can_take_interrupt():
            return False
        if (self.lapic or self.pics).interrupt_pending:
            return True
        return self.skip_to_next_event()
