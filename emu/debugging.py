"""What a debugger does to a machine: breakpoints, watchpoints, exception stops, single steps,
replay to an exact instruction count, and reads and writes at linear addresses.

``Machine`` inherits these methods; they rely only on its core, its symbols, ``run``,
``checkpoint``/``restore`` and how it turns a stop into a result. The gdb stub, the debugger and
the pytest plugin use nothing else.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import mmu
from .core import engine as core
from .errors import ConfigError, EngineError

if TYPE_CHECKING:
    from .checkpoint import Checkpoint
    from .report import RunResult


class DebugFeatures:
    """Breakpoints, watchpoints, exception stops, stepping and replay (mixed into Machine)."""

    # ------------------------------------------------------------ addresses
    def _address_of(self, where: int | str) -> int:
        """An address, or the address of a symbol of the loaded kernel."""
        if isinstance(where, str):
            address = self.symbolizer.address_of(where) if self.symbolizer else None
            if address is None:
                raise ConfigError(f"no symbol {where!r} in {self.kernel_path}")
            return address
        return where

    def read_linear(self, address: int, size: int) -> bytes:
        """Memory at a linear address, through the page tables without side effects (no A/D
        bits); shorter than asked where a page is not mapped."""
        return self.core.read_linear(address, size)

    def write_linear(self, address: int, data: bytes) -> None:
        """A debugger's write at a linear address: through the page tables, ignoring write
        protection (as gdb's writes into QEMU do), no A/D bits. Translated code is dropped."""
        c = self.cpu_state()
        done = 0
        while done < len(data):
            lin = address + done
            chunk = min(len(data) - done, 0x1000 - (lin & 0xFFF))
            if c.cr0 & 0x80000000:
                w = mmu.walk(self.ram, c.cr3, lin, "r", cr0=c.cr0, cr4=c.cr4, efer=c.efer)
                if not w.ok or w.paddr is None:
                    raise ConfigError(f"linear 0x{lin:x} is not mapped")
                phys = w.paddr
            else:
                phys = lin & 0xFFFFFFFF
            # as gdb's writes into QEMU: RAM, ROM and device memory take it, nothing else does
            self.memory.write(phys, data[done : done + chunk], rom=True)
            done += chunk
        self.core.uc.ctl_flush_tb()

    # ---------------------------------------------------------- breakpoints
    def add_breakpoint(self, where: int | str) -> int:
        """Stop before the instruction at an address or a symbol; returns the address."""
        address = self._address_of(where)
        self.core.add_breakpoint(address)
        return address

    def remove_breakpoint(self, address: int) -> None:
        self.core.remove_breakpoint(address)

    # ---------------------------------------------------------- watchpoints
    def add_watchpoint(self, where: int | str, size: int = 1, kind: str = "w") -> int:
        """Stop right after an instruction reads (``r``), writes (``w``) or accesses (``rw``)
        ``size`` bytes at a linear address or symbol; returns the address. While watchpoints
        exist, each run keeps a checkpoint of its start: a hit is found exactly by going back
        to it and replaying the block one instruction at a time."""
        address = self._address_of(where)
        if kind not in ("r", "w", "rw"):
            raise ConfigError(f"a watchpoint watches r, w or rw, not {kind!r}")
        if size < 1 or not 0 <= address <= address + size - 1 <= 0xFFFF_FFFF_FFFF_FFFF:
            raise ConfigError(
                f"a watchpoint of {size} byte(s) at 0x{address:x} must lie inside the linear "
                "address space (it would wrap past 2^64)"
            )
        self.core.add_watchpoint(address, size, kind)
        return address

    def remove_watchpoint(self, address: int, size: int = 1, kind: str = "w") -> None:
        self.core.remove_watchpoint(address, size, kind)

    @property
    def watchpoints(self) -> list[tuple[int, int, str]]:
        return self.core.watchpoints

    def _land_on_watchpoint(self, start: Checkpoint, block_start: int, t0: float) -> RunResult:
        """A watched address was accessed somewhere in the block that began after
        ``block_start`` instructions: go back to the run's start, replay to that block without
        stopping, then step until the access, so the run stops right after that instruction."""
        c = self.core
        ended = self.replay(start, block_start)
        if ended is not None:
            return ended
        for _ in range(10_000):
            c.watch_hits.clear()
            ended = self.step()
            if c.watch_hits:
                address, size, value, what = c.watch_hits[0]
                verb = "write of" if what == "w" else "read of"
                where = self.symbolizer.describe(address) if self.symbolizer else f"0x{address:x}"
                self.watch_hit = (address, size, value, what)
                return self._result(
                    "watchpoint", t0, detail=f"{verb} {size} byte(s) at {where}: 0x{value:x}"
                )
            if ended is not None:
                return ended
        raise EngineError("internal error: a watchpoint hit was not found again by stepping")

    # --------------------------------------------------------------- replay
    def replay(self, checkpoint: Checkpoint, instructions: int) -> RunResult | None:
        """Go back to ``checkpoint`` and run forward to exactly ``instructions`` with every stop
        set aside (breakpoints, watchpoints, exception stops): runs are deterministic, so this
        is the same instant again. Returns the result if the run ended before that count."""
        self.restore(checkpoint)
        with self.stops_set_aside():
            if instructions > self.instructions:
                result = self.run(max_instructions=instructions - self.instructions)
                if result.stop_reason != "instruction-limit":
                    return result
        return None

    @contextlib.contextmanager
    def stops_set_aside(self, aside: bool = True) -> Iterator[None]:
        """Runs inside this block ignore breakpoints, watchpoints and exception stops (all
        kept, and in force again after it). With ``aside`` False it changes nothing."""
        c = self.core
        if not aside:
            yield
            return
        breakpoints, vectors = c.breakpoints, set(c.break_vectors)
        for address in breakpoints:
            c.remove_breakpoint(address)
        c.break_vectors = set()
        c.watch_armed = False
        try:
            yield
        finally:
            c.watch_armed = True
            c.break_vectors = vectors
            for address in breakpoints:
                c.add_breakpoint(address)

    def cancel_interrupt(self) -> None:
        """Forget an ``interrupt()`` that came after the run it was meant for had ended, so it
        does not end the next run."""
        self._interrupt = None

    # ------------------------------------------------------- exception stops
    def break_on_exceptions(self, *vectors: int) -> None:
        """Stop (stop_reason "exception") when one of these exceptions is raised, before it is
        delivered: the state is the fault's. Running again delivers it and goes on."""
        self.core.break_vectors = set(vectors)

    @property
    def pending_exception(self) -> core.GuestException | None:
        """The exception a run stopped on (``break_on_exceptions``), not delivered yet."""
        pending = self.core._pending_exception
        return pending[0] if pending is not None else None

    def deliver_pending(self) -> RunResult | None:
        """Deliver the exception the run stopped on, executing no instruction (the state is then
        the handler's first instruction, or the end of the run if delivery failed for good)."""
        if self.core._pending_exception is None:
            return None
        t0 = time.perf_counter()
        icount = self.core.icount
        end = self.core.run_slice(icount, icount)
        if end.kind in (core.KIND_LIMIT, core.KIND_DEADLINE):
            return None
        return self._finish(end, t0)

    # ------------------------------------------------------------- stepping
    def step(self) -> RunResult | None:
        """Execute one instruction. Returns a result if that ended the run, else None."""
        t0 = time.perf_counter()
        # As in a run: what the devices raised by now is delivered before the instruction
        # (a delivery retires nothing), then the instruction executes.
        self.scheduler.tick(self.now_ns())
        if self._halted and not self._wakes():
            # in the HLT state, and the last event woke nothing: the step waits for the next
            return self._wait_halted(t0)
        if self._wakes():  # the CPU's interrupt pin (the 8259s reach it through LINT0)
            self._halted = False
            ended = self._take_interrupt()
            if ended is not None:
                return self._finish(ended, t0)
        end = self.core.step()
        if self._exit_value is not None:
            return self._result("debug-exit", t0, detail=f"exit code {self._exit_value}")
        if end is not None and end.kind == core.KIND_HALT and self.scheduler.wait_for_interrupt():
            # HLT with IF=1 and a device that will interrupt: the CPU waits as in a run,
            # virtual time goes on to that event, and the next step takes the interrupt (or,
            # if that event woke nothing, waits on)
            self._halted = True
            self._halt_events = 0
            self.scheduler.tick(self.now_ns())
            return None
        if end is None:
            self.scheduler.tick(self.now_ns())  # as every stop leaves them (``_result``)
            return None
        return self._finish(end, t0)

    def _step_to(self, limit: int) -> core.SliceEnd | None:
        """Single-step the few instructions left before an exact instruction limit."""
        while self.core.icount < limit:
            end = self.core.step()
            if end is not None and end.kind != core.KIND_HALT:
                return end
            if self._exit_value is not None:
                return core.SliceEnd(core.KIND_REQUESTED)
            if end is not None:
                return end
        return None
