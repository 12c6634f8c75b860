"""What the debugger does to a machine, apart from drawing it: step, continue, reverse step,
breakpoints and stopping on exceptions. Kept free of Textual so it can be driven and tested
directly (and reused by a gdb stub).

Runs (continue, ``run N``, ``goto N``, reverse steps) go in chunks of about a quarter of a
second of wall time, calling a progress callback between chunks; ``stop()``, from any thread,
ends the run at the CPU's next block boundary. Chunking changes nothing the guest sees: a run
of N instructions in pieces is the same machine as one run of N (tests/test_route_equivalence.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from emu import Machine
from emu.checkpoint import Checkpoint
from emu.errors import ConfigError
from emu.report import RunResult

# Runs that end the machine for good: only reverse steps (checkpoints) go on from there.
FINAL = {"triple-fault", "debug-exit", "halted", "reset", "unmapped-memory", "unsupported"}
ALL_EXCEPTIONS = tuple(range(32))
KEEP_CHECKPOINTS = 4  # each holds the pages written since the one before (emu/dirty_pages.py)
CHUNK_SECONDS = 0.25  # wall time between progress reports of a run
CHECKPOINT_SECONDS = 5.0  # a long run keeps a checkpoint this often, so going back is quick
FIRST_CHUNK = 200_000  # instructions; later chunks are sized from the measured rate
STOP_DETAIL = "stopped by the user"


@dataclass
class Progress:
    """Where a run in progress is, reported between chunks."""

    instructions: int
    virtual_ns: int
    mips: float  # millions of instructions per wall second since the run began
    serial: bytes  # everything the guest wrote to COM1 so far
    screen: str  # the VGA text screen


@dataclass
class DebugSession:
    machine: Machine
    last: RunResult | None = None
    message: str = ""
    stop_on_exceptions: bool = False
    checkpoints: list[Checkpoint] = field(default_factory=list)
    running: bool = False
    mips: float = 0.0  # the rate of the last run (0 before any)
    run_seconds: float = 0.0  # how long the last run took
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # where each step since the last other move started: (instructions, trace entries)
    _stepped_from: list[tuple[int, int]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.checkpoints.append(self.machine.checkpoint())

    # ------------------------------------------------------------------ state
    @property
    def ended(self) -> bool:
        return self.last is not None and self.last.stop_reason in FINAL

    @property
    def instructions(self) -> int:
        return self.machine.instructions

    def _refuse_if_ended(self) -> bool:
        if self.ended:
            assert self.last is not None
            self.message = f"the run has ended ({self.last.headline()}): reverse step (u) or goto"
            return True
        return False

    def _keep(self, result: RunResult | None) -> None:
        if result is not None:
            self.last = result
            self.message = result.headline()
        else:
            self.message = ""

    # ------------------------------------------------------------------ forward
    def step(self) -> None:
        """One instruction; a stopped-on exception is delivered first (that is the step)."""
        if self._refuse_if_ended():
            return
        m = self.machine
        if m.pending_exception is not None:
            self._keep(m.deliver_pending())
            if not self.message:
                self.message = "delivered; the next step runs the handler"
            return
        # a step that delivers a fault retires nothing: the count alone does not say where it
        # started, so the reverse step goes back to this position (count, trace entries)
        self._stepped_from.append((m.instructions, len(m.trace.entries)))
        self._keep(m.step())

    def cont(self, report: Callable[[Progress], None] | None = None) -> None:
        """Run until something stops the guest (a breakpoint, a watchpoint, an exception if
        asked, the end of the run) or ``stop()`` is called."""
        if self._refuse_if_ended():
            return
        self._stepped_from.clear()
        self._checkpoint()
        self._keep(self._run_chunks(None, report, stops=True))

    def run(self, count: int, report: Callable[[Progress], None] | None = None) -> None:
        """Run ``count`` more instructions, or less if something stops the guest first."""
        if self._refuse_if_ended():
            return
        if count < 1:
            self.message = f"run needs a count of at least 1, not {count}"
            return
        self._stepped_from.clear()
        self._checkpoint()
        result = self._run_chunks(self.machine.instructions + count, report, stops=True)
        self._keep(result)
        if result is None:
            self.message = f"ran {count:,} instructions, at {self.machine.instructions:,}"

    def stop(self) -> bool:
        """End the run in progress at the next block boundary (from any thread); the run then
        ends with stop reason "interrupted", a stop like any other. False if nothing runs."""
        with self._lock:
            if self.running:
                self.machine.interrupt(STOP_DETAIL)
                return True
        return False

    def _run_chunks(
        self, target: int | None, report: Callable[[Progress], None] | None, *, stops: bool
    ) -> RunResult | None:
        """Run to instruction ``target`` (None: until a stop) in chunks, reporting between
        them. With ``stops`` False, breakpoints, watchpoints and exception stops are set
        aside (a replay: ``goto`` lands on its count). Returns None on reaching ``target``."""
        m = self.machine
        start, t0 = m.instructions, time.perf_counter()
        chunk = FIRST_CHUNK
        kept = t0
        with self._lock:
            self.running = True
        try:
            with m.stops_set_aside(not stops):
                while True:
                    n = chunk if target is None else min(chunk, target - m.instructions)
                    if n <= 0:
                        return None
                    t = time.perf_counter()
                    result = m.run(max_instructions=n)
                    dt = time.perf_counter() - t
                    if result.stop_reason != "instruction-limit":
                        return result
                    # the next chunk lasts about CHUNK_SECONDS at the rate just measured
                    chunk = max(10_000, min(int(n * CHUNK_SECONDS / max(dt, 1e-4)), 1 << 34))
                    if stops and t - kept >= CHECKPOINT_SECONDS:
                        self._checkpoint()
                        kept = t
                    if report is not None:
                        report(self.progress(t0, start))
        finally:
            with self._lock:
                self.running = False
                # a stop that came after the last chunk had ended must not end the next run
                m.cancel_interrupt()
            elapsed = time.perf_counter() - t0
            self.run_seconds = elapsed
            self.mips = (m.instructions - start) / elapsed / 1e6 if elapsed > 0 else 0.0

    def progress(self, t0: float, start: int) -> Progress:
        m = self.machine
        elapsed = time.perf_counter() - t0
        done = m.instructions - start
        return Progress(
            instructions=m.instructions,
            virtual_ns=m.now_ns(),
            mips=done / elapsed / 1e6 if elapsed > 0 else 0.0,
            serial=bytes(m.serial),
            screen=m.screen_text(),
        )

    # ------------------------------------------------------------------ backward
    def goto(self, target: int, report: Callable[[Progress], None] | None = None) -> None:
        """Bring the machine to exactly ``target`` instructions, whatever breakpoints,
        watchpoints or exception stops lie between: forward by running on with the stops set
        aside, backward by restoring the latest checkpoint before it and running the rest
        again. Only the end of the run (or ``stop()``) lands short of it."""
        m = self.machine
        self._stepped_from.clear()
        if target < 0:
            self.message = "there is nothing before instruction 0"
            return
        if target == m.instructions and not self.ended:
            self.message = f"at instruction {m.instructions:,}"
            return
        first = self.checkpoints[0].instructions
        if target < first:
            self.message = (f"instruction {target:,} is before the debugger's first checkpoint "
                            f"(at {first:,}, where it started)")  # fmt: skip
            return
        if target > m.instructions and not self.ended:
            self._checkpoint()
        else:
            cp = max(
                (c for c in self.checkpoints if c.instructions <= target),
                key=lambda c: c.instructions,
            )
            self.last = None
            m.restore(cp)
        result = self._run_chunks(target, report, stops=False)
        if result is not None:
            self._keep(result)
            return
        self.message = f"at instruction {m.instructions:,}"

    def visit(
        self,
        target: int,
        look: Callable[[Machine], object],
        report: Callable[[Progress], None] | None = None,
    ) -> object | None:
        """``look(machine)`` with the machine at exactly instruction ``target`` (reached as
        ``goto`` does), then everything back as it was: the machine from a checkpoint of now,
        the session's last stop and reverse-step history as they were. Returns what ``look``
        returned, or None if ``target`` was not reached (the run ends first, or ``stop()``);
        ``message`` then says why."""
        m = self.machine
        here = m.checkpoint()
        last, stepped = self.last, list(self._stepped_from)
        value = None
        try:
            self.goto(target, report)
            reached = m.instructions == target
            why = self.message
            if reached:
                value = look(m)
        finally:
            m.restore(here)
            self.last, self._stepped_from = last, stepped
        self.message = "" if reached else f"instruction {target:,} not reached ({why})"
        return value

    def reverse_step(self, report: Callable[[Progress], None] | None = None) -> None:
        """Back to where the last step started (``s, s, u, u`` returns to the start, even
        across a fault delivered at one count), else one instruction back."""
        m = self.machine
        if not self._stepped_from:
            self.goto(m.instructions - 1, report)
            return
        count, entries = self._stepped_from.pop()
        cp = max((c for c in self.checkpoints if c.instructions <= count),
                 key=lambda c: c.instructions)  # fmt: skip
        self.last = None
        m.restore(cp)
        result = self._run_chunks(count, report, stops=False)
        while result is None and m.instructions == count and len(m.trace.entries) < entries:
            result = m.step()  # the delivery the step started after
        if result is not None:
            self._keep(result)
            return
        self.message = f"at instruction {m.instructions:,}"

    # ------------------------------------------------------------------ setup
    def toggle_breakpoint(self, where: int | str) -> None:
        m = self.machine
        try:
            address = where if isinstance(where, int) else m.add_breakpoint(where)
        except ConfigError as e:
            self.message = str(e)
            return
        if isinstance(where, int) and address in m.core.breakpoints:
            m.remove_breakpoint(address)
            self.message = f"breakpoint at 0x{address:x} removed"
            return
        if isinstance(where, int):
            m.add_breakpoint(address)
        self.message = f"breakpoint at 0x{address:x}"

    def toggle_watchpoint(self, where: int | str, size: int = 1, kind: str = "w") -> None:
        """Watch (or stop watching) ``size`` bytes at an address or symbol for r, w or rw."""
        m = self.machine
        try:
            address = where if isinstance(where, int) else m.add_watchpoint(where, size, kind)
            if isinstance(where, int):
                if (address, size, kind) in m.watchpoints:
                    m.remove_watchpoint(address, size, kind)
                    self.message = f"watchpoint at 0x{address:x} removed"
                    return
                m.add_watchpoint(address, size, kind)
        except ConfigError as e:
            self.message = str(e)
            return
        self.message = f"watching {size} byte(s) at 0x{address:x} for {kind}"

    def controller_state(self, which: str) -> str:
        """The state of an interrupt controller as text: "lapic", "ioapic" or "pic"."""
        m = self.machine
        device = {"lapic": m.lapic, "ioapic": m.ioapic, "pic": m.pics}[which]
        return device.describe()

    def set_stop_on_exceptions(self, on: bool) -> None:
        self.stop_on_exceptions = on
        self.machine.break_on_exceptions(*(ALL_EXCEPTIONS if on else ()))
        self.message = "stop on exceptions: " + ("on (before delivery)" if on else "off")

    def _checkpoint(self) -> None:
        if self.checkpoints[-1].instructions == self.machine.instructions:
            return
        self.checkpoints.append(self.machine.checkpoint())
        if len(self.checkpoints) > KEEP_CHECKPOINTS:
            del self.checkpoints[1]  # the first one (the boot) always stays
