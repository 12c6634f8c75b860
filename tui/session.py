"""What the debugger does to a machine, apart from drawing it: step, continue, reverse step,
breakpoints and stopping on exceptions. Kept free of Textual so it can be driven and tested
directly (and reused by a gdb stub)."""

from __future__ import annotations

from dataclasses import dataclass, field

from emu import Machine
from emu.checkpoint import Checkpoint
from emu.errors import ConfigError
from emu.report import RunResult

# Runs that end the machine for good: only reverse steps (checkpoints) go on from there.
FINAL = {"triple-fault", "debug-exit", "halted", "reset", "unmapped-memory", "unsupported"}
ALL_EXCEPTIONS = tuple(range(32))
KEEP_CHECKPOINTS = 4  # each holds the pages written since the one before (emu/dirty_pages.py)


@dataclass
class DebugSession:
    machine: Machine
    budget: int = 50_000_000  # instructions per "continue", so a wild guest cannot hang the UI
    last: RunResult | None = None
    message: str = ""
    stop_on_exceptions: bool = False
    checkpoints: list[Checkpoint] = field(default_factory=list)

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
        self._keep(m.step())

    def cont(self) -> None:
        """Run until something stops the guest (a breakpoint, an exception if asked, the end),
        or ``budget`` instructions."""
        if self._refuse_if_ended():
            return
        self._checkpoint()
        self._keep(self.machine.run(max_instructions=self.budget))

    def run(self, count: int) -> None:
        if self._refuse_if_ended():
            return
        self._checkpoint()
        self._keep(self.machine.run(max_instructions=count))

    # ------------------------------------------------------------------ backward
    def goto(self, target: int) -> None:
        """Bring the machine to exactly ``target`` instructions: forward by running, backward by
        restoring the latest checkpoint before it and running the rest again."""
        m = self.machine
        if target < 0:
            self.message = "there is nothing before instruction 0"
            return
        if target >= m.instructions and not self.ended:
            if target > m.instructions:
                self.run(target - m.instructions)
            return
        cp = max(
            (c for c in self.checkpoints if c.instructions <= target), key=lambda c: c.instructions
        )
        self.last = None
        result = m.replay(cp, target)  # without stopping: the stops are for the user's runs
        if result is not None:
            self._keep(result)
            return
        self.message = f"at instruction {m.instructions:,}"

    def reverse_step(self) -> None:
        self.goto(self.machine.instructions - 1)

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
