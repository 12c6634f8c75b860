"""Fixed-point fast-forward: skip the iterations of a polling loop that cannot change anything
before the next device event (docs/time.md, "Fast-forward").

A loop is skipped only when one of its iterations is a fixed point of the whole machine: the
loop head is reached again with the same CPU state (every register and flag: the engine's
context, byte for byte), the iteration wrote no memory with a changed value, made no access to
device memory, read no TSC, raised no exception, its port writes left every device it touched
(and the interrupt controllers) as they were, no interrupt is pending, and each of its port
reads came with the device's promise (``stable_read``) that it returns the same value until
some virtual time. Then every further iteration does exactly the same until the first of: the
next device event, the earliest promise's end, the instruction limit. The skip stops short of
that in whole iterations, so the instruction count after it is one the plain run reaches at the
loop head with the same state, and from there the plain run goes on: instruction counts, serial
bytes, traces and the final state are the same as without fast-forward.

Finding a loop costs little: a slice that ends (at its deadline, at its instruction budget or
after ``IO_SLICE`` port accesses) near the PC where the previous one ended (or the first) is a
candidate. The
candidate is run one straight stretch of code at a time (the run loop's own slices, each ending
at the first instruction that may jump: ``_straight_run``; nothing is speculative) for two
iterations while its port accesses and memory writes are
recorded; the second is compared with the state between them. A candidate that is no fixed
point is not looked at again for a while (exponential back-off), and slices grow back to their
normal length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unicorn import UC_HOOK_MEM_WRITE
from unicorn.x86_const import UC_X86_REG_RIP

from ..checkpoint import save_device
from ..core import engine as core
from . import layout as K
from .scheduler import MAX_SLICE_INSTRUCTIONS, NO_LIMIT, SLICE_INSTRUCTIONS

MAX_BLOCKS = 64  # straight stretches of code (slices) in one observed iteration at most
MAX_ITERATION = 4096  # instructions in one observed iteration at most
MIN_SKIP = 4  # fewer iterations than this are not worth a skip
MIN_GAP = 1024  # instructions to the horizon below which no loop is looked for
NEAR = 256  # bytes: two slice ends this close may be in the same loop
SLICE = SLICE_INSTRUCTIONS  # the first slice, and the one to grow back to after a skip
MAX_SLICE = MAX_SLICE_INSTRUCTIONS  # ... and the longest, where looks keep failing:
LONG_AFTER = 8  # once the back-off passes up this many candidates
SHORT_SLICE = 4096  # the slice after a skip: the loop is likely to come back soon
IO_SLICE = 256  # port accesses that end a slice to look for a loop ...
MAX_IO_SLICE = 4096  # ... and at most, after failed looks
MAX_BACKOFF = 256  # candidates passed up after repeated failures
MAX_MISSES = 4  # slice ends in a row that were no loop head before back-off applies to them
MAX_NOT_LOOPS = 64
# A saved context is a 40-byte header (host pointers among it) and then CPUX86State up to
# end_reset_fields: every register, flag, segment, control register and MSR of the CPU.
_CONTEXT_HEADER = 40
# Mnemonics (capstone's) of the instructions after which the next one may be elsewhere: a
# straight stretch ends with the first of them (``_straight_run``)
_LEAVES = ("j", "call", "lcall", "ret", "lret", "iret", "int", "loop", "sys", "hlt", "ud",
           "into", "bound", "rsm", "vm", "xabort", "xbegin", "xend")  # fmt: skip
_STRAIGHT = MAX_ITERATION // MAX_BLOCKS  # instructions in a stretch at most


@dataclass
class FastForwardStats:
    """What fast-forward skipped in a run (RunResult.fast_forward)."""

    loops: int = 0  # skips made
    iterations: int = 0  # loop iterations skipped
    instructions: int = 0  # instructions skipped (counted in the run's instructions)

    def to_dict(self) -> dict[str, int]:
        return {"loops": self.loops, "iterations": self.iterations,
                "instructions": self.instructions}  # fmt: skip


@dataclass
class _Iteration:
    """What one observed iteration did."""

    ports: list[tuple[str, int, int, int]] = field(default_factory=list)  # (in/out, port, size, v)
    devices: dict[int, object] = field(default_factory=dict)  # id -> device it touched
    until: int = NO_LIMIT  # the earliest end of its reads' promises (virtual ns)
    unpromised: bool = False  # a read came without a promise, or not with the value promised
    memory_changed: bool = False  # a write changed memory
    instructions: int = 0


class FastForward:
    """Fast-forward of one machine's polling loops (``Machine.fast_forward`` turns it off).

    ``machine`` is the Machine: its core, scheduler, port bus and read table, physical memory, interrupt
    controllers, stateful devices, and its serial, console, exit and reset state, which an
    iteration must leave as they were.
    """

    def __init__(self, machine) -> None:
        self.machine = machine
        self.stats = FastForwardStats()
        self.slice_budget = SLICE
        self.io_budget = IO_SLICE
        self._last_rip: int | None = None
        self._pass = 0  # candidates still to pass up
        self._backoff = 1
        # slice ends where the code did not come back within an iteration's bounds: no loop
        # head (up to MAX_NOT_LOOPS), and how many such in a row since the last skip
        self._not_loops: set[int] = set()
        self._misses = 0
        self._no_loop = False  # the last look found no loop (rather than no fixed point)
        self._straight: dict[tuple[int, int, int], int] = {}  # (RIP, hflags, head) -> length

    def reset_stats(self) -> None:
        self.stats = FastForwardStats()

    # ------------------------------------------------------------------ run loop
    def after_slice(self, limit: int) -> core.SliceEnd:
        """A slice ended at its deadline: look for a loop there and skip it if it is a fixed
        point. Returns how the run goes on: a deadline end (skipped or not), or the end of one
        of the observed blocks (an exception, HLT, an exit...) for the run loop to handle."""
        # slices grow back to their normal length, and past it where the loop here has been
        # no fixed point again and again (a loop that computes): looks cost little there
        grown = MAX_SLICE if self._backoff >= LONG_AFTER else SLICE
        self.slice_budget = min(grown, self.slice_budget * 2)
        m = self.machine
        c = m.core
        rip = c.uc.reg_read(UC_X86_REG_RIP)
        last, self._last_rip = self._last_rip, rip
        if last is not None and abs(rip - last) > NEAR:
            return core.SliceEnd(core.KIND_DEADLINE)
        if rip in self._not_loops:
            # not the head of a short loop (the end of an interrupt handler, where the armed
            # timer's table ran out): the loop it returns to may be: look again soon
            self.slice_budget = SHORT_SLICE
            return core.SliceEnd(core.KIND_DEADLINE)
        if self._pass:
            self._pass -= 1
            return core.SliceEnd(core.KIND_DEADLINE)
        # what the run loop does first at this instant: the devices take what is due (the
        # slice may have ended at an event), so the loop is looked at as the plain run goes on
        m.scheduler.tick(m.now_ns())
        if not self._eligible(limit):
            return core.SliceEnd(core.KIND_DEADLINE)
        end, skipped = self._try(rip, limit)
        if skipped:
            self._misses = 0
            self._backoff = 1
            self.slice_budget = SHORT_SLICE
            self.io_budget = IO_SLICE
        elif skipped is False and self._no_loop and self._misses < MAX_MISSES:
            self._misses += 1
            if len(self._not_loops) >= MAX_NOT_LOOPS:
                self._not_loops.clear()
            self._not_loops.add(rip)
            self.slice_budget = SHORT_SLICE
        elif skipped is False:
            self._pass = self._backoff
            self._backoff = min(MAX_BACKOFF, self._backoff * 2)
            self.io_budget = min(MAX_IO_SLICE, self.io_budget * 2)
        return end or core.SliceEnd(core.KIND_DEADLINE)

    def _eligible(self, limit: int) -> bool:
        """Nothing stops or watches the run here, nothing is pending, and the next event is
        far enough for two observed iterations and a skip."""
        m = self.machine
        c = m.core
        if c.breakpoints or c.watchpoints or c.break_vectors or m.realtime:
            return False
        if c._pending_exception is not None or c._ctxv[K.CTX_IN_SERVICE]:
            return False
        lapic = m.lapic
        if lapic.nmi_pending:
            return False
        if (lapic.interrupt_pending or m.pics.cpu_line.level) and c.can_take_interrupt():
            return False  # taken at the next block (with IF=0 it waits, and the loop may too)
        if m._exit_value is not None or m._reset_requested:
            return False
        return self._horizon(limit) - c.icount > MIN_GAP

    def _horizon(self, limit: int, until: int = NO_LIMIT) -> int:
        """The instruction count a skip must not pass: the next device event, the end of the
        reads' promises, the limit."""
        s = self.machine.scheduler
        event = s.next_event(s.now_ns())
        horizon = limit
        if event is not None:
            horizon = min(horizon, s.count_at(event))
        if until != NO_LIMIT:
            horizon = min(horizon, s.count_at(until))
        return horizon

    # --------------------------------------------------------------- observing
    def _try(self, head: int, limit: int) -> tuple[core.SliceEnd | None, bool | None]:
        """Two iterations from ``head`` under observation, then the skip. (an end of the run
        loop's to handle or None, True: skipped / False: no fixed point / None: a fixed point
        too close to its horizon to skip)."""
        m = self.machine
        # the observed blocks stop where the plain run would stop for the next event
        due = self._horizon(NO_LIMIT)
        first = _Iteration()
        end = self._iterate(head, limit, due, first)
        self._no_loop = end is None and not first.instructions
        if end is not None or not first.instructions:
            return end, None if m.core.icount >= due else False
        before = self._state(first)
        second = _Iteration()
        end = self._iterate(head, limit, due, second)
        if end is not None or second.instructions != first.instructions:
            return end, None if m.core.icount >= due else False
        if (
            second.unpromised
            or second.memory_changed
            or second.ports != first.ports
            or not second.devices.keys() <= first.devices.keys()
            or before != self._state(first)
        ):
            return None, False
        c = m.core
        k = second.instructions
        now = c.icount
        iterations = (self._horizon(limit, second.until) - now) // k
        if iterations < MIN_SKIP:
            return None, None
        bus = m.bus
        reads = sum(1 for d, p, s, _ in second.ports if d == "in" and bus.find(p) is None)
        writes = sum(1 for d, p, s, _ in second.ports if d == "out" and bus.find(p) is None)
        m.ports.sync()  # what was published holds for instruction counts of before
        c.resume_count_at(now + iterations * k)
        bus.unmapped_reads += reads * iterations
        bus.unmapped_writes += writes * iterations
        self.stats.loops += 1
        self.stats.iterations += iterations
        self.stats.instructions += iterations * k
        return None, True

    def _state(self, seen: _Iteration) -> tuple:
        """What an iteration must leave as it was: the CPU, the devices it touched and the
        interrupt controllers, what the machine has sent out and whether it is ending."""
        m = self.machine
        devices = {id(d): d for d in (m.pics.master, m.pics.slave, m.lapic, m.ioapic)}
        devices.update(seen.devices)
        states = []
        for key in sorted(devices):
            device = devices[key]
            state = save_device(device)
            ignored = ("events_changed", *getattr(device, "CATCH_UP_FIELDS", ()))
            values = {n: v for n, v in state.values.items() if n not in ignored}
            states.append((key, values, state.lines))
        u = m.memory.unassigned
        outside = (len(m._serial), len(m._console), m._exit_value, m._reset_requested,
                   m.trace.next_index(), u.reads, u.writes, m.memory.device_accesses,
                   m.core.tsc_reads, m.lapic.interrupt_pending, m.lapic.nmi_pending)  # fmt: skip
        return bytes(m.core.uc.context_save())[_CONTEXT_HEADER:], states, outside

    def _iterate(self, head: int, limit: int, due: int, seen: _Iteration) -> core.SliceEnd | None:
        """Run from the loop head one block at a time, recording, until the head comes again
        (``seen.instructions`` is then the iteration's length; 0 if it did not come back within
        MAX_BLOCKS blocks and MAX_ITERATION instructions, or a device event at instruction
        count ``due`` came first). A block that ends otherwise than at
        its deadline ends the observation: its end is returned for the run loop."""
        m = self.machine
        c, s, bus = m.core, m.scheduler, m.bus
        start = c.icount
        read, write = c.port_read, c.port_write

        def observed_read(port: int, size: int) -> int:
            promise = bus.stable_read(port, size)
            value = read(port, size)
            seen.ports.append(("in", port, size, value))
            _touch(seen, bus, port)
            if promise is None or promise[0] != value:
                seen.unpromised = True
            elif promise[1] is not None:
                seen.until = min(seen.until, promise[1])
            return value

        def observed_write(port: int, size: int, value: int) -> None:
            seen.ports.append(("out", port, size, value))
            _touch(seen, bus, port)
            write(port, size, value)

        def memory_write(_uc, _access, address, size, value, _ud) -> None:
            try:
                old = c.read_linear(address, size)
                if (
                    size > 8
                    or len(old) != size
                    or int.from_bytes(old, "little") != value & ((1 << (8 * size)) - 1)
                ):
                    seen.memory_changed = True
            except Exception:  # noqa: BLE001 - a hook must not raise; unknown means changed
                seen.memory_changed = True

        # every access through Python, where it is recorded: the port read table answers
        # nothing meanwhile (and what it answered so far is counted)
        ports = m.ports
        table = ports.enabled
        ports.sync()
        ports.enabled = False
        c.port_read, c.port_write = observed_read, observed_write
        hook = c.uc.hook_add(UC_HOOK_MEM_WRITE, memory_write)
        try:
            for _ in range(MAX_BLOCKS):
                if c.icount >= due:
                    return None  # an event is due: the run loop takes it, as in the plain run
                s.slice_end = c.icount + self._straight_run(head)
                end = c.run_slice(s.schedule(s.now_ns()), limit)
                if end.kind != core.KIND_DEADLINE:
                    return end
                if c.uc.reg_read(UC_X86_REG_RIP) == head:
                    seen.instructions = c.icount - start
                    return None
                if c.icount - start > MAX_ITERATION:
                    return None
            return None
        finally:
            c.uc.hook_del(hook)
            c.port_read, c.port_write = read, write
            ports.enabled = table

    def _straight_run(self, head: int) -> int:
        """How many instructions from RIP on run in a straight line: up to and including the
        first that may go elsewhere (a jump, a call, a return, an interrupt...), and short of
        the loop ``head``; at most ``_STRAIGHT``, at least 1. The observed slices end there, so
        the head can only come at a slice's end. (Where the guessed length is wrong, as when
        the code is rewritten or an exception leaves the stretch, the head may be missed and
        the loop is not skipped: the length decides only how fast the observation goes, never
        what it finds.)"""
        c = self.machine.core
        rip = c.uc.reg_read(UC_X86_REG_RIP)
        hflags = c.internals.hflags
        key = (rip, hflags, head)
        n = self._straight.get(key)
        if n is None:
            if len(self._straight) >= 4096:
                self._straight.clear()
            n = self._straight[key] = c.straight_run(_LEAVES, _STRAIGHT, head)
        return n


def _touch(seen: _Iteration, bus, port: int) -> None:
    r = bus.find(port)
    if r is not None:
        device = getattr(r.device, "device", r.device)  # a port of a bigger chip: the chip
        seen.devices[id(device)] = device
