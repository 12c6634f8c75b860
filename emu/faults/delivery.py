"""IDT delivery: exceptions and interrupts taken through the guest's IDT, with #DF and triple fault.

Unicorn reports an exception and delivers nothing (unicorn-2.1.4.md Q3); delivery is this model
(Intel SDM Vol. 3, ch. 6.12-6.15; AMD APM Vol. 2, ch. 8). It is a pure function of the CPU state
and of guest memory reached through ``LinearMemory`` (our MMU, so a fault while reading the IDT or
pushing the frame is a real nested fault), and every step records a reason a person can read.

Escalation follows SDM Table 6-5: benign events are handled serially; contributory after
contributory, or a contributory fault or #PF after a #PF, becomes #DF with error code 0; any
fault while delivering #DF is a triple fault (shutdown).

In real mode (CR0.PE=0) the IDT is the interrupt vector table: 4-byte offset:segment entries at
IDTR.base + 4n, a 6-byte FLAGS, CS, IP frame on SS:SP, no gate checks and no error code pushed
(SDM Vol. 3, 21.1.4 "Interrupt and Exception Handling"; QEMU's do_interrupt_real). An entry
beyond IDTR.limit raises #GP, and the escalation to #DF and shutdown follows the same table.

Error codes follow the processor model QEMU 5 implements (the differential oracle of the tests):
a fault on an IDT entry reports ``vector * 8 + 2`` (16 in long mode) with the EXT bit clear, e.g.
#GP(0x32) for a #UD with no IDT loaded, which is also what `qemu -d int` shows users.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from typing import Protocol

from ..core.x86_layout import (  # noqa: F401 - the architectural bits, defined once
    DESC_B,
    DESC_C,
    DESC_CS,
    DESC_DPL_SHIFT,
    DESC_G,
    DESC_L,
    DESC_P,
    DESC_S,
    DESC_TYPE_SHIFT,
    DESC_W,
    RFLAGS_IF,
    RFLAGS_NT,
    RFLAGS_RF,
    RFLAGS_TF,
    RFLAGS_VM,
)

# Exception classes (SDM Table 6-4).
CONTRIBUTORY = frozenset({0, 10, 11, 12, 13})
PAGE_FAULT = 14
DOUBLE_FAULT = 8
ERROR_CODE_VECTORS = frozenset({8, 10, 11, 12, 13, 14, 17})


IVT_ENTRY = 0x100  # Gate.type of a real-mode vector table entry (not a descriptor type)
RFLAGS_AC = 1 << 18

GATE_TYPES = {
    IVT_ENTRY: "real-mode IVT entry",
    5: "task gate",
    6: "16-bit interrupt gate",
    7: "16-bit trap gate",
    14: "interrupt gate",
    15: "trap gate",
}


class MemoryFault(Exception):
    """A guest memory access failed: the exception it raises (#PF with CR2, or #GP/#SS)."""

    def __init__(self, vector: int, error_code: int, cr2: int | None, reason: str) -> None:
        super().__init__(reason)
        self.vector = vector
        self.error_code = error_code
        self.cr2 = cr2
        self.reason = reason


class LinearMemory(Protocol):
    """Supervisor accesses at linear addresses, through the MMU (A/D bits updated)."""

    def read(self, address: int, size: int) -> bytes: ...

    def write(self, address: int, data: bytes) -> None: ...


@dataclass(frozen=True)
class SegmentCache:
    selector: int
    base: int
    limit: int
    flags: int  # the descriptor's high dword

    @property
    def dpl(self) -> int:
        return (self.flags >> DESC_DPL_SHIFT) & 3


@dataclass(frozen=True)
class DeliveryCpu:
    """The CPU state delivery reads and writes (a snapshot; the core applies the result)."""

    long_mode: bool  # EFER.LMA
    cpl: int
    rip: int
    rsp: int
    rflags: int  # architectural RFLAGS (computed flags included)
    cs: SegmentCache
    ss: SegmentCache
    gdtr: tuple[int, int]  # (base, limit)
    ldtr: SegmentCache
    idtr: tuple[int, int]
    tr: SegmentCache
    cr2: int
    real_mode: bool = False  # CR0.PE=0: delivery through the IVT


@dataclass(frozen=True)
class Event:
    """Something to deliver: an exception, a software interrupt or an external interrupt."""

    vector: int
    kind: str  # "exception", "software" (INT n/INT3/INTO) or "external"
    error_code: int | None = None
    cr2: int | None = None  # for #PF: the faulting linear address
    next_rip: int | None = None  # software interrupts return after the instruction
    reason: str = ""  # why it happened, in words

    @property
    def has_error_code(self) -> bool:
        return self.kind == "exception" and self.vector in ERROR_CODE_VECTORS


@dataclass(frozen=True)
class Gate:
    vector: int
    address: int  # linear address of the IDT entry
    raw: bytes
    type: int
    dpl: int
    present: bool
    selector: int
    offset: int
    ist: int

    @property
    def kind(self) -> str:
        name = GATE_TYPES.get(self.type, f"type {self.type} (not a valid gate)")
        return name

    def describe(self) -> str:
        if self.type == IVT_ENTRY:
            return (
                f"IVT[0x{self.vector:x}] @0x{self.address:x}: handler "
                f"{self.selector:04x}:{self.offset:04x} (linear 0x{(self.selector << 4) + self.offset:x})"
            )
        text = (
            f"IDT[{self.vector}] @0x{self.address:x}: {self.kind}, selector 0x{self.selector:04x}, "
            f"offset 0x{self.offset:x}, DPL {self.dpl}, {'present' if self.present else 'NOT present'}"
        )
        if self.ist:
            text += f", IST{self.ist}"
        return text


@dataclass(frozen=True)
class DeliveryStep:
    """One attempt to deliver one event, and what came of it."""

    event: Event
    gate: Gate | None
    ok: bool
    reason: str  # why it succeeded or failed, in words
    escalation: str = ""  # what the failure turned into (a second event, #DF, triple fault)
    frame_rsp: int | None = None  # where the frame was pushed


@dataclass
class DeliveryResult:
    steps: list[DeliveryStep] = field(default_factory=list)
    triple_fault: bool = False
    unsupported: str = ""  # why delivery could not be modelled (the run stops)
    cpu: DeliveryCpu | None = None  # the new state when delivery succeeded


class _Unsupported(Exception):
    """Delivery needs something the model does not implement: the run must stop, clearly."""


class _Fault(Exception):
    """A fault raised while delivering: becomes the next event."""

    def __init__(self, vector: int, error_code: int, reason: str, cr2: int | None = None) -> None:
        super().__init__(reason)
        self.event = Event(vector, "exception", error_code, cr2, None, reason)


def _u32(data: bytes, offset: int) -> int:
    return struct.unpack_from("<I", data, offset)[0]


def _seg_base(e1: int, e2: int) -> int:
    return (e1 >> 16) | ((e2 & 0xFF) << 16) | (e2 & 0xFF000000)


def _seg_limit(e1: int, e2: int) -> int:
    limit = (e1 & 0xFFFF) | (e2 & 0x000F0000)
    return (limit << 12) | 0xFFF if e2 & DESC_G else limit


def _escalate(first: Event, second: Event) -> tuple[Event | None, str]:
    """SDM Table 6-5: what a fault during the delivery of ``first`` turns into."""
    if first.kind == "exception" and first.vector == DOUBLE_FAULT:
        return None, "a fault while delivering #DF: triple fault, the processor shuts down"
    first_contrib = first.kind == "exception" and first.vector in CONTRIBUTORY
    first_pf = first.kind == "exception" and first.vector == PAGE_FAULT
    second_contrib = second.vector in CONTRIBUTORY
    if (first_contrib and second_contrib) or (
        first_pf and (second_contrib or second.vector == PAGE_FAULT)
    ):
        what = "page fault" if first_pf else "contributory"
        return (
            Event(DOUBLE_FAULT, "exception", 0, None, None, f"{what} then {_name(second.vector)}"),
            f"{_name(second.vector)} while delivering {_event_name(first)}: double fault (SDM Table 6-5)",
        )
    return (
        second,
        f"{_name(second.vector)} while delivering {_event_name(first)}: handled serially",
    )


def _event_name(event: Event) -> str:
    """'INT 0x15' for a software interrupt (never the exception of the same vector)."""
    if event.kind == "software" and event.vector not in (3, 4):
        return f"INT 0x{event.vector:x}"
    if event.kind == "external":
        return f"the interrupt of vector 0x{event.vector:x}"
    return _name(event.vector)


def _name(vector: int) -> str:
    from ..report import EXCEPTION_NAMES

    return EXCEPTION_NAMES.get(vector, (f"vector {vector}", ""))[0]


class IdtDelivery:
    """Delivers events for one CPU through ``memory`` (supervisor, through the MMU)."""

    def __init__(self, memory: LinearMemory) -> None:
        self.memory = memory

    def deliver(self, cpu: DeliveryCpu, event: Event) -> DeliveryResult:
        result = DeliveryResult()
        current = event
        while True:
            try:
                gate_box: list[Gate] = []
                new_cpu, rsp = self._deliver_one(cpu, current, gate_box)
            except _Unsupported as why:
                result.unsupported = str(why)
                result.steps.append(
                    DeliveryStep(current, gate_box[0] if gate_box else None, False, str(why))
                )
                return result
            except _Fault as fault:
                nxt, why = _escalate(current, fault.event)
                result.steps.append(
                    DeliveryStep(
                        current, gate_box[0] if gate_box else None, False, fault.event.reason, why
                    )
                )
                if nxt is None:
                    result.triple_fault = True
                    return result
                current = nxt
                continue
            result.steps.append(
                DeliveryStep(
                    current, gate_box[0], True, f"delivered to {gate_box[0].kind}", "", rsp
                )
            )
            result.cpu = new_cpu
            return result

    # ------------------------------------------------------------------ helpers
    def _read(self, address: int, size: int, what: str) -> bytes:
        try:
            return self.memory.read(address, size)
        except MemoryFault as f:
            raise _Fault(
                f.vector, f.error_code, f"reading {what} faulted: {f.reason}", f.cr2
            ) from None

    def _descriptor(self, cpu: DeliveryCpu, selector: int, what: str) -> tuple[int, int] | None:
        table = cpu.ldtr if selector & 4 else None
        base, limit = (table.base, table.limit) if table is not None else cpu.gdtr
        index = selector & ~7
        if index + 7 > limit:
            return None
        raw = self._read(base + index, 8, f"the {what} descriptor 0x{selector:04x}")
        return _u32(raw, 0), _u32(raw, 4)

    def _real_mode(
        self, cpu: DeliveryCpu, ev: Event, gate_box: list[Gate]
    ) -> tuple[DeliveryCpu, int]:
        """Real-mode delivery: the IVT entry, then FLAGS, CS and IP pushed on SS:SP (16-bit
        pushes, SP wraps at 64 KiB); IF, TF, AC and RF cleared; CS.base = segment * 16, the
        cached limit and attributes kept (unreal mode survives an interrupt, as on hardware)."""
        base, limit = cpu.idtr
        if ev.vector * 4 + 3 > limit:
            if limit == 0:
                why = f"IDTR.limit is 0: no interrupt vector table (vector 0x{ev.vector:x} needs bytes {ev.vector * 4}-{ev.vector * 4 + 3})"
            else:
                why = f"vector 0x{ev.vector:x} is beyond IDTR.limit 0x{limit:x} (real mode)"
            raise _Fault(13, ev.vector * 8 + 2, why)
        address = (base + ev.vector * 4) & 0xFFFFFFFF
        raw = self._read(address, 4, f"IVT entry 0x{ev.vector:x}")
        offset, segment = struct.unpack("<HH", raw)
        gate = Gate(ev.vector, address, raw, IVT_ENTRY, 0, True, segment, offset, 0)
        gate_box.append(gate)
        old_ip = ev.next_rip if ev.next_rip is not None else cpu.rip
        sp = cpu.rsp & 0xFFFF
        for value, name in ((cpu.rflags, "FLAGS"), (cpu.cs.selector, "CS"), (old_ip, "IP")):
            sp = (sp - 2) & 0xFFFF
            self._write(
                (cpu.ss.base + sp) & 0xFFFFFFFF, value & 0xFFFF, 2, f"{name} at SS:0x{sp:04x}"
            )
        rflags = cpu.rflags & ~(RFLAGS_IF | RFLAGS_TF | RFLAGS_AC | RFLAGS_RF)
        cs = SegmentCache(segment, segment << 4, cpu.cs.limit, cpu.cs.flags)
        rsp = (cpu.rsp & ~0xFFFF) | sp
        new = replace(cpu, rip=offset, rsp=rsp, rflags=rflags, cs=cs)
        return new, rsp

    def _gate(self, cpu: DeliveryCpu, vector: int) -> Gate:
        base, limit = cpu.idtr
        size = 16 if cpu.long_mode else 8
        err = vector * size + 2
        if vector * size + size - 1 > limit:
            if limit == 0:
                why = f"IDTR.limit is 0: no IDT loaded (vector {vector} needs bytes {vector * size}-{vector * size + size - 1})"
            else:
                why = f"vector {vector} is beyond IDTR.limit 0x{limit:x}"
            raise _Fault(13, err, why)
        address = base + vector * size
        raw = self._read(address, size, f"IDT entry {vector}")
        e1, e2 = _u32(raw, 0), _u32(raw, 4)
        offset = (e2 & 0xFFFF0000) | (e1 & 0xFFFF)
        if cpu.long_mode:
            offset |= _u32(raw, 8) << 32
        return Gate(
            vector=vector,
            address=address,
            raw=raw,
            type=(e2 >> DESC_TYPE_SHIFT) & 0x1F,
            dpl=(e2 >> DESC_DPL_SHIFT) & 3,
            present=bool(e2 & DESC_P),
            selector=e1 >> 16,
            offset=offset,
            ist=(e2 & 7) if cpu.long_mode else 0,
        )

    # ------------------------------------------------------------------ delivery
    def _deliver_one(
        self, cpu: DeliveryCpu, ev: Event, gate_box: list[Gate]
    ) -> tuple[DeliveryCpu, int]:
        if cpu.real_mode:
            return self._real_mode(cpu, ev, gate_box)
        long_mode = cpu.long_mode
        size = 16 if long_mode else 8
        gate_err = ev.vector * size + 2
        gate = self._gate(cpu, ev.vector)
        gate_box.append(gate)
        valid = (14, 15) if long_mode else (5, 6, 7, 14, 15)
        if gate.type not in valid:
            raise _Fault(
                13,
                gate_err,
                f"IDT[{ev.vector}] is not an interrupt or trap gate (type {gate.type})",
            )
        if gate.type == 5:
            if not gate.present:
                raise _Fault(11, gate_err, f"IDT[{ev.vector}] (task gate) is not present")
            raise _Unsupported(
                f"IDT[{ev.vector}] is a task gate: task gates are not supported "
                "(hardware task switching is not modelled)"
            )
        if ev.kind == "software" and gate.dpl < cpu.cpl:
            raise _Fault(
                13,
                gate_err,
                f"INT {ev.vector:#x} from CPL {cpu.cpl} through a gate with DPL {gate.dpl}",
            )
        if not gate.present:
            raise _Fault(11, gate_err, f"IDT[{ev.vector}] is not present (P=0)")
        sel = gate.selector
        if sel & 0xFFFC == 0:
            raise _Fault(13, 0, f"IDT[{ev.vector}] uses the null selector 0x{sel:04x}")
        desc = self._descriptor(cpu, sel, "gate's code segment")
        table = "LDT" if sel & 4 else "GDT"
        if desc is None:
            lim = cpu.ldtr.limit if sel & 4 else cpu.gdtr[1]
            raise _Fault(
                13, sel & 0xFFFC, f"gate selector 0x{sel:04x} is beyond the {table} limit 0x{lim:x}"
            )
        e1, e2 = desc
        if not (e2 & DESC_S) or not (e2 & DESC_CS):
            what = "a null descriptor" if (e1 | e2) == 0 else "not a code segment"
            raise _Fault(
                13, sel & 0xFFFC, f"gate selector 0x{sel:04x} is {what} in the current {table}"
            )
        dpl = (e2 >> DESC_DPL_SHIFT) & 3
        if dpl > cpu.cpl:
            raise _Fault(
                13, sel & 0xFFFC, f"code segment 0x{sel:04x} has DPL {dpl} > CPL {cpu.cpl}"
            )
        if not e2 & DESC_P:
            raise _Fault(11, sel & 0xFFFC, f"code segment 0x{sel:04x} is not present")
        if long_mode and (not e2 & DESC_L or e2 & DESC_B):
            raise _Fault(
                13,
                sel & 0xFFFC,
                f"code segment 0x{sel:04x} is not a 64-bit code segment (L=1, D=0)",
            )
        if e2 & DESC_C:
            dpl = cpu.cpl
        # Traps (INT n, INT3, INTO, INT1) return after the instruction.
        old_rip = ev.next_rip if ev.next_rip is not None else cpu.rip
        if long_mode:
            return self._push64(cpu, ev, gate, sel, e1, e2, dpl, old_rip)
        return self._push32(cpu, ev, gate, sel, e1, e2, dpl, old_rip)

    def _tss_read(self, cpu: DeliveryCpu, offset: int, size: int, what: str) -> int:
        if not cpu.tr.flags & DESC_P:
            raise _Fault(10, cpu.tr.selector & 0xFFFC, f"{what}: no TSS loaded (TR is null)")
        if offset + size - 1 > cpu.tr.limit:
            raise _Fault(
                10, cpu.tr.selector & 0xFFFC, f"{what} is beyond the TSS limit 0x{cpu.tr.limit:x}"
            )
        raw = self._read(cpu.tr.base + offset, size, what)
        return int.from_bytes(raw, "little")

    def _write(self, address: int, value: int, size: int, what: str) -> None:
        try:
            self.memory.write(address, value.to_bytes(size, "little"))
        except MemoryFault as f:
            raise _Fault(
                f.vector, f.error_code, f"pushing {what} faulted: {f.reason}", f.cr2
            ) from None

    def _push64(self, cpu, ev, gate, sel, e1, e2, dpl, old_rip) -> tuple[DeliveryCpu, int]:
        if dpl < cpu.cpl or gate.ist:
            level = gate.ist + 3 if gate.ist else dpl
            what = f"IST{gate.ist}" if gate.ist else f"RSP{dpl}"
            rsp = self._tss_read(cpu, 8 * level + 4, 8, f"the TSS {what} field")
            new_stack = True
        else:
            if cpu.rflags & RFLAGS_VM:
                raise _Fault(
                    13, sel & 0xFFFC, "interrupt to the same privilege level from VM86 mode"
                )
            rsp = cpu.rsp
            new_stack = False
        rsp &= ~0xF
        values = [cpu.ss.selector, cpu.rsp, cpu.rflags, cpu.cs.selector, old_rip]
        names = ["SS", "RSP", "RFLAGS", "CS", "RIP"]
        if ev.has_error_code:
            values.append(ev.error_code or 0)
            names.append("error code")
        for value, name in zip(values, names, strict=True):
            rsp = (rsp - 8) & 0xFFFF_FFFF_FFFF_FFFF
            self._write(rsp, value & 0xFFFF_FFFF_FFFF_FFFF, 8, f"{name} at 0x{rsp:x}")
        rflags = cpu.rflags & ~(RFLAGS_TF | RFLAGS_VM | RFLAGS_RF | RFLAGS_NT)
        if gate.type & 1 == 0:
            rflags &= ~RFLAGS_IF
        ss = cpu.ss
        if new_stack:
            ss = SegmentCache(dpl, 0, 0, dpl << DESC_DPL_SHIFT)
        cs = SegmentCache((sel & ~3) | dpl, _seg_base(e1, e2), _seg_limit(e1, e2), e2)
        new = replace(cpu, cpl=dpl, rip=gate.offset, rsp=rsp, rflags=rflags, cs=cs, ss=ss)
        if ev.vector == PAGE_FAULT and ev.kind == "exception" and ev.cr2 is not None:
            new = replace(new, cr2=ev.cr2)
        return new, rsp

    def _push32(self, cpu, ev, gate, sel, e1, e2, dpl, old_rip) -> tuple[DeliveryCpu, int]:
        if dpl < cpu.cpl:
            ss_off, sp_off = 8 * dpl + 8, 8 * dpl + 4  # 32-bit TSS: ESPn at 4+8n, SSn at 8+8n
            esp = self._tss_read(cpu, sp_off, 4, f"the TSS ESP{dpl} field")
            ss_sel = self._tss_read(cpu, ss_off, 2, f"the TSS SS{dpl} field")
            if ss_sel & 0xFFFC == 0 or ss_sel & 3 != dpl:
                raise _Fault(
                    10, ss_sel & 0xFFFC, f"TSS SS{dpl}=0x{ss_sel:04x} is null or has RPL != {dpl}"
                )
            sdesc = self._descriptor(cpu, ss_sel, "TSS stack segment")
            if sdesc is None:
                raise _Fault(
                    10, ss_sel & 0xFFFC, f"TSS SS{dpl}=0x{ss_sel:04x} is beyond the table limit"
                )
            s1, s2 = sdesc
            if (
                (s2 >> DESC_DPL_SHIFT) & 3 != dpl
                or not s2 & DESC_S
                or s2 & DESC_CS
                or not s2 & DESC_W
                or not s2 & DESC_P
            ):
                raise _Fault(
                    10,
                    ss_sel & 0xFFFC,
                    f"TSS SS{dpl}=0x{ss_sel:04x} is not a writable present data segment of DPL {dpl}",
                )
            ss = SegmentCache(ss_sel, _seg_base(s1, s2), _seg_limit(s1, s2), s2)
            new_stack = True
        else:
            if cpu.rflags & RFLAGS_VM:
                raise _Fault(
                    13, sel & 0xFFFC, "interrupt to the same privilege level from VM86 mode"
                )
            ss, esp, new_stack = cpu.ss, cpu.rsp, False
        sp_mask = 0xFFFFFFFF if ss.flags & DESC_B else 0xFFFF
        width = 4 if gate.type >= 14 else 2
        values, names = [], []
        if new_stack:
            values += [cpu.ss.selector, cpu.rsp]
            names += ["SS", "ESP"]
        values += [cpu.rflags, cpu.cs.selector, old_rip]
        names += ["EFLAGS", "CS", "EIP"]
        if ev.has_error_code:
            values.append(ev.error_code or 0)
            names.append("error code")
        for value, name in zip(values, names, strict=True):
            esp = (esp - width) & sp_mask
            address = (ss.base + esp) & 0xFFFFFFFF
            self._write(
                address, value & ((1 << (8 * width)) - 1), width, f"{name} at 0x{address:x}"
            )
        rflags = cpu.rflags & ~(RFLAGS_TF | RFLAGS_VM | RFLAGS_RF | RFLAGS_NT)
        if gate.type & 1 == 0:
            rflags &= ~RFLAGS_IF
        new_rsp = (cpu.rsp & ~sp_mask) | esp if not new_stack else esp
        cs = SegmentCache((sel & ~3) | dpl, _seg_base(e1, e2), _seg_limit(e1, e2), e2)
        offset = gate.offset if width == 4 else gate.offset & 0xFFFF
        new = replace(cpu, cpl=dpl, rip=offset, rsp=new_rsp, rflags=rflags, cs=cs, ss=ss)
        if ev.vector == PAGE_FAULT and ev.kind == "exception" and ev.cr2 is not None:
            new = replace(new, cr2=ev.cr2)
        return new, esp
