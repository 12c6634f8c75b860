"""FaultTrace: every exception, interrupt and delivery step of a run, explained.

This is the record the CLI prints after a crash, ``--json`` exports and the debugger shows. Each
entry says what was raised (vector, mnemonic, decoded error code, CR2), where (CS:RIP with symbol
and source line, RSP, CPL, mode, the instruction), which IDT gate was read, why delivery succeeded
or failed, and what the failure escalated to.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ..report import vector_name


def decode_error_code(vector: int, code: int | None, long_mode: bool = False) -> str:
    """Human-readable error code: selector form for #TS/#NP/#SS/#GP, P/W/U/R/I for #PF.

    An IDT reference carries the vector times the gate size (16 in long mode, as QEMU
    reports it) plus 2."""
    if code is None:
        return ""
    if vector == 14:
        bits = [
            "protection violation" if code & 1 else "page not present",
            "write" if code & 2 else "read",
            "user mode" if code & 4 else "supervisor mode",
        ]
        if code & 8:
            bits.append("reserved bit set in a paging entry")
        if code & 16:
            bits.append("instruction fetch")
        if code & 32:
            bits.append("protection key")
        return ", ".join(bits)
    if vector in (10, 11, 12, 13, 17) or vector == 8:
        if code == 0:
            return "0 (no selector)"
        ext = " (external event)" if code & 1 else ""
        if code & 2:
            return f"IDT entry {code >> 4 if long_mode else code >> 3}{ext}"
        table = "LDT" if code & 4 else "GDT"
        return f"{table} selector 0x{code & 0xFFF8:04x} (index {code >> 3}){ext}"
    return f"0x{code:x}"


@dataclass(frozen=True)
class TraceEntry:
    """One event and one attempt to deliver it."""

    index: int
    instructions: int  # virtual time (instructions retired) when it happened
    vector: int
    name: str  # "#PF (page fault)"
    kind: str  # "exception", "software", "external"
    error_code: int | None
    error_decoded: str
    cr2: int | None
    rip: int
    location: str  # RIP with symbol and source line
    rsp: int
    cpl: int
    mode: str
    instruction: str  # the instruction at RIP, disassembled in the CPU's current mode
    gate: str  # the IDT gate read, decoded ("" when none could be read)
    delivered: bool
    reason: str  # why delivery succeeded or failed, in words
    escalation: str  # what a failure turned into
    cause: str = ""  # why the event happened (e.g. the walk that failed)
    handler: int | None = None  # the gate's target offset, when a gate was read
    # an external interrupt's origin: "8259 IRQ 0", "I/O APIC pin 2", "LAPIC timer", "IPI",
    # "LINT0", "NMI (LINT1)", "spurious" (the local APIC's spurious vector)
    source: str = ""

    def line(self) -> str:
        """One line, in the spirit of QEMU's `-d int`."""
        text = f"[{self.instructions:>12,}] {self.name}"
        if self.source:
            text += f" from {self.source}"
        if self.error_code is not None:
            text += f" err=0x{self.error_code:x} ({self.error_decoded})"
        if self.cr2 is not None:
            text += f" CR2=0x{self.cr2:x}"
        text += f" at {self.location} CPL{self.cpl} {self.mode} RSP=0x{self.rsp:x}"
        return text

    def explain(self) -> list[str]:
        out = [self.line()]
        if self.instruction:
            out.append(f"    instruction: {self.instruction}")
        if self.cause:
            out.append(f"    cause: {self.cause}")
        if self.gate:
            out.append(f"    gate: {self.gate}")
        out.append(f"    {'delivered' if self.delivered else 'delivery failed'}: {self.reason}")
        if self.escalation:
            out.append(f"    -> {self.escalation}")
        return out


class FaultTrace:
    """All trace entries of a run, in order, and whether it ended in a triple fault.

    Only the newest ``limit`` entries are kept (a storm of IRQs must not eat the host's memory);
    ``dropped`` counts the others. An entry may be recorded as a function that builds it later
    (``add_deferred``), and a run of entries as one ``DeferredEntries`` (``add_batch``):
    interrupts delivered by the compiled path are frequent, and building their text (or even
    one Python object each) only when somebody reads the trace keeps them cheap.
    """

    def __init__(
        self, entries: list[TraceEntry] | None = None, triple_fault: bool = False,
        limit: int = 10_000,
    ) -> None:  # fmt: skip
        self.limit = limit
        self.triple_fault = triple_fault
        self.dropped = 0
        self._items: deque[TraceEntry | Callable[[], TraceEntry] | DeferredEntries] = deque()
        self._count = 0  # entries held (a batch holds several)
        for entry in entries or ():
            self.add(entry)

    def add(self, entry: TraceEntry) -> None:
        self.add_deferred(entry)

    def add_deferred(self, entry: TraceEntry | Callable[[], TraceEntry]) -> None:
        self._items.append(entry)
        self._count += 1
        if self._count > self.limit:
            self._trim()

    def add_batch(self, batch: DeferredEntries) -> None:
        """Entries ``next_index()`` on, built on demand by ``batch``."""
        if len(batch):
            self._items.append(batch)
            self._count += len(batch)
            if self._count > self.limit:
                self._trim()

    def _trim(self) -> None:
        """Drop the oldest entries beyond ``limit``."""
        items = self._items
        while self._count > self.limit:
            excess = self._count - self.limit
            oldest = items[0]
            if isinstance(oldest, DeferredEntries) and len(oldest) > excess:
                # a copy: a checkpoint may hold this batch, as it was when it was taken
                oldest = items[0] = copy.copy(oldest)
                oldest.drop_first(excess)
                n = excess
            else:
                items.popleft()
                n = len(oldest) if isinstance(oldest, DeferredEntries) else 1
            self._count -= n
            self.dropped += n

    @property
    def entries(self) -> list[TraceEntry]:
        out: list[TraceEntry] = []
        for item in self._items:
            if isinstance(item, TraceEntry):
                out.append(item)
            elif isinstance(item, DeferredEntries):
                out.extend(item.build())
            else:
                out.append(item())
        self._items = deque(out)  # built once
        return list(out)

    @entries.setter
    def entries(self, value: list[TraceEntry]) -> None:
        self._items = deque(value[-self.limit :] if self.limit else ())
        self._count = len(self._items)

    def save(self) -> tuple:
        """What a checkpoint keeps (entries not built yet stay so)."""
        return list(self._items), self.triple_fault, self.dropped

    def load(self, saved: tuple) -> None:
        items, self.triple_fault, self.dropped = saved
        # the count with them: a batch holds several entries (the count left from before the
        # load trimmed entries recorded after it)
        self._items = deque(items)
        self._count = sum(len(i) if isinstance(i, DeferredEntries) else 1 for i in items)

    def next_index(self) -> int:
        return self.dropped + self._count

    def __len__(self) -> int:
        return self._count

    def last_chain(self) -> list[TraceEntry]:
        """The entries of the last event chain: from the last successful delivery on."""
        chain: list[TraceEntry] = []
        for e in reversed(self.entries):
            if e.delivered and chain:
                break
            chain.append(e)
        return list(reversed(chain))

    def chain_summary(self) -> str:
        """'#UD -> #GP(0x32) -> #DF -> triple fault' for the last chain."""
        parts = []
        for e in self.last_chain():
            # "INT 0x15" and "IRQ vector 0x20" whole; "#GP (general protection)" as "#GP"
            short = (
                e.name if e.kind != "exception" and e.vector not in (3, 4) else e.name.split(" ")[0]
            )
            parts.append(
                f"{short}(0x{e.error_code:x})"
                if e.error_code is not None and e.vector != 8
                else short
            )
        if self.triple_fault:
            parts.append("triple fault")
        return " -> ".join(parts)

    def to_list(self) -> list[dict]:
        return [asdict(e) for e in self.entries]


class DeferredEntries:
    """A run of consecutive trace entries kept as raw values and built when the trace is read:
    ``make(i)`` builds the entry of the ``i``-th of the ``count`` values."""

    def __init__(self, count: int, make: Callable[[int], TraceEntry]) -> None:
        self._start = 0
        self._stop = count
        self._make = make

    def __len__(self) -> int:
        return self._stop - self._start

    def drop_first(self, n: int) -> None:
        self._start += n

    def build(self) -> list[TraceEntry]:
        return [self._make(i) for i in range(self._start, self._stop)]


def name_of(vector: int, kind: str) -> str:
    if kind == "external":
        return f"IRQ vector 0x{vector:02x}"
    if kind == "software" and vector not in (3, 4):
        return f"INT 0x{vector:02x}"
    return vector_name(vector)
