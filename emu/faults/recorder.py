"""Deliveries into the fault trace: each delivery attempt and escalation step becomes one
``TraceEntry`` with what a person needs to read it (where, in which mode, the instruction,
the gate, why it failed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..core.cpu_state import cpu_mode
from ..core.internals import ENV_REGS
from .raising import FastDelivery
from .trace import DeferredEntries, FaultTrace, TraceEntry, decode_error_code, name_of


class TraceRecorder:
    """Records the deliveries of one CPU core into a ``FaultTrace``.

    Args:
        core: the CPU core (its engine state, clock and disassembler).
        trace: where the entries go.
        describe: an address as a person reads it (symbol+offset and source line, or hex).
        sink: receives every entry's lines as it happens (``--trace int``), or None.
    """

    def __init__(
        self,
        core,
        trace: FaultTrace,
        describe: Callable[[int], str],
        sink: Callable[[str], None] | None = None,
    ) -> None:
        self.core = core
        self.trace = trace
        self.describe = describe
        self.sink = sink
        # Where the external interrupt being delivered came from ("8259 IRQ 0", "I/O APIC pin
        # 2", "LAPIC timer", "IPI", "NMI (LINT1)"): set by whoever does the INTA.
        self.source = ""

    def record_delivery(
        self, event, exc, result, icount: int | None = None, source: str | None = None
    ) -> None:
        """Turn one delivery (all its escalation steps) into FaultTrace entries."""
        core = self.core
        source = self.source if source is None else source
        # Cheap reads only: this runs for every interrupt (a full state() costs ~100 us).
        env = core.internals
        if exc.rsp is None:  # the CPU still holds the state the event happened in
            hflags = env.hflags
            exc = replace(exc, mode=cpu_mode(hflags), cpl=hflags & 3,
                          rsp=env.u64(ENV_REGS + 4 * 8))  # fmt: skip
        icount = core.icount if icount is None else icount
        index = self.trace.next_index()
        insn = ""
        if event.kind in ("exception", "software"):
            bits = {"long64": 64, "compat": 32, "prot32": 32}.get(exc.mode, 16)
            dis = core.disassemble(exc.linear, bits, 1)
            if dis:
                _addr, raw, text = dis[0]
                insn = f"{raw.hex(' ')}  {text}"
        for entry in self.entries(event, exc, result, icount, index, insn, source):
            self.trace.add(entry)
            if self.sink is not None:
                for line in entry.explain():
                    self.sink(line)
        if result.triple_fault:
            self.trace.triple_fault = True

    def record_fast_delivery(
        self, raw, icount: int | None = None, source: str | None = None
    ) -> None:
        """An interrupt the compiled path delivered: its entry is built when the trace is read
        (nothing in it depends on memory), unless --trace prints it now."""
        source = self.source if source is None else source
        if self.sink is not None:
            result, exc = raw.describe()
            self.record_delivery(result.steps[0].event, exc, result, icount, source)
            return
        icount = self.core.icount if icount is None else icount
        index = self.trace.next_index()

        def entry() -> TraceEntry:
            result, exc = raw.describe()
            return self.entries(result.steps[0].event, exc, result, icount, index, "", source)[0]

        self.trace.add_deferred(entry)

    def record_fast_deliveries(self, log, source: str | None = None) -> None:
        """Interrupts the clock hook delivered, as rows of its log (clock/layout.py LOG_*: the
        instruction count, then the ``FastDelivery`` values): one deferred batch, no Python
        object per delivery until the trace is read (a periodic timer makes many)."""
        source = self.source if source is None else source
        if self.sink is not None:
            for row in log.tolist():
                self.record_fast_delivery(FastDelivery(*row[1:]), row[0], source)
            return
        index = self.trace.next_index()

        def entry(i: int) -> TraceEntry:
            row = log[i].tolist()
            result, exc = FastDelivery(*row[1:]).describe()
            event = result.steps[0].event
            return self.entries(event, exc, result, row[0], index + i, "", source)[0]

        self.trace.add_batch(DeferredEntries(len(log), entry))

    def entries(
        self, event, exc, result, icount: int, index: int, insn: str, source: str = ""
    ) -> list[TraceEntry]:
        where = self.describe(exc.linear)
        if exc.cs is not None and exc.mode in ("real", "prot16"):
            where = (
                f"{exc.cs:04x}:{exc.rip & 0xFFFF:04x} = {where}"  # CS:IP, then the linear address
            )
        entries = []
        for step in result.steps:
            ev = step.event
            entries.append(
                TraceEntry(
                    index=index + len(entries),
                    instructions=icount,
                    vector=ev.vector,
                    name=name_of(ev.vector, ev.kind),
                    kind=ev.kind,
                    error_code=ev.error_code,
                    error_decoded=decode_error_code(
                        ev.vector, ev.error_code, exc.mode in ("long64", "compat")
                    ),
                    cr2=ev.cr2,
                    rip=exc.rip,
                    location=where,
                    rsp=exc.rsp,
                    cpl=exc.cpl,
                    mode=exc.mode,
                    instruction=insn,
                    gate=step.gate.describe() if step.gate else "",
                    delivered=step.ok,
                    reason=step.reason,
                    escalation=step.escalation,
                    cause=ev.reason,
                    handler=step.gate.offset if step.gate else None,
                    source=source if ev.kind == "external" else "",
                )
            )
        return entries
