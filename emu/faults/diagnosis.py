"""Diagnoses: the likely cause of a crash, in words, on top of the raw fault chain.

Each diagnosis looks at the final CPU state, the boot plan (what kind of ELF was booted) and the
FaultTrace, and either says nothing or explains one known way kernels die. They are ordered from
the most fundamental cause to the most specific symptom.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..core.cpu_state import CR0_PG, EFER_LME, CpuState
from .trace import FaultTrace, TraceEntry


@dataclass(frozen=True)
class Diagnosis:
    kind: (
        str  # "mode-mismatch", "unassigned-memory", "no-idt", "bad-gate-selector",
        # "stack-overflow", "pf-in-pf-handler", "stale-tlb", "undeliverable-interrupt"
    )
    message: str
    details: tuple[str, ...] = ()


Disassembler = Callable[[int, int, int], list[tuple[int, bytes, str]]]  # (addr, bits, count)


def diagnose(
    cpu: CpuState,
    trace: FaultTrace,
    *,
    elf_class: int | None,
    elf_machine: str | None,
    disassemble: Disassembler | None = None,
    symbol_of: Callable[[int], str | None] | None = None,
    rewalk: Callable[[TraceEntry], str | None] | None = None,
    unassigned: Sequence[dict] = (),
) -> list[Diagnosis]:
    """``rewalk(entry)`` walks a #PF's address through the page tables as they are now and
    returns None when the access would now be allowed, else the reason it still faults.
    ``unassigned`` lists the first accesses to physical memory where nothing is (as the report
    has them: address, write, size, value, rip, location, instructions)."""
    chain = trace.last_chain()
    if not chain:
        return []
    out: list[Diagnosis] = []
    first = chain[0]
    mm = _mode_mismatch(cpu, first, elf_class, elf_machine, disassemble, unassigned)
    if mm:
        out.append(mm)
    elif unassigned:
        out.append(_stray_accesses(unassigned))
    for check in (_no_idt, _bad_gate_selector, _stack_overflow, _undeliverable_interrupt):
        d = check(chain)
        if d:
            out.append(d)
    d = _pf_in_pf_handler(trace, symbol_of)
    if d:
        out.append(d)
    d = _stale_tlb(chain, rewalk)
    if d:
        out.append(d)
    return out


def _undeliverable_interrupt(chain: list[TraceEntry]) -> Diagnosis | None:
    """The chain began with an external interrupt the IDT could not deliver: say which
    controller raised it, the thing to mask or to give a handler."""
    first = chain[0]
    if first.kind != "external" or first.delivered or not first.source:
        return None
    return Diagnosis(
        "undeliverable-interrupt",
        f"an interrupt from {first.source} (vector 0x{first.vector:02x}) arrived and could not "
        f"be delivered: {first.reason}",
        (
            "give the vector an IDT gate, or mask the source (the 8259s' IMR, the I/O APIC "
            "entry's mask bit, the local APIC's LVT entry) until it has one",
        ),
    )


def _stale_tlb(chain: list[TraceEntry], rewalk) -> Diagnosis | None:
    if rewalk is None:
        return None
    for e in chain:
        if e.vector == 14 and e.kind == "exception" and e.cr2 is not None and rewalk(e) is None:
            return Diagnosis(
                "stale-tlb",
                f"the page fault at CR2=0x{e.cr2:x} disagrees with the page tables as they are now: "
                "they allow this access. The fault came from a translation the TLB still held, "
                "or the tables were changed after it: a PTE edited without INVLPG (or a CR3 reload)?",
            )
    return None


def _mode_mismatch(
    cpu: CpuState,
    first: TraceEntry,
    elf_class: int | None,
    elf_machine: str | None,
    disassemble: Disassembler | None,
    unassigned: Sequence[dict] = (),
) -> Diagnosis | None:
    if elf_class != 64 or elf_machine not in ("EM_X86_64", None) or first.mode == "long64":
        return None
    if first.mode == "compat":
        why = "long mode is active but CS is a 32-bit (compatibility mode) segment"
    else:
        lme = "EFER.LME=1" if cpu.efer & EFER_LME else "EFER.LME=0"
        pg = "CR0.PG=1" if cpu.cr0 & CR0_PG else "CR0.PG=0"
        why = f"long mode was never enabled ({lme}, {pg})"
    mode_words = {
        "prot32": "32-bit protected mode",
        "prot16": "16-bit protected mode",
        "real": "real mode",
        "compat": "compatibility mode",
    }[first.mode]
    message = (
        f"this ELF is ELFCLASS64 x86-64, but the CPU is in {mode_words}: {why}. "
        "Its 64-bit code is being decoded as 32-bit instructions."
    )
    details: list[str] = []
    if disassemble is not None:
        # the same bytes both ways: three instructions as compiled, and as many 32-bit ones as
        # cover them (each with its address, since the two decodes go out of step)
        bits64 = disassemble(first.rip, 64, 3)
        end = bits64[-1][0] + len(bits64[-1][1]) if bits64 else first.rip + 8
        bits32 = [i for i in disassemble(first.rip, 32, 12) if i[0] < end]
        if bits32 or bits64:
            details.append(
                f"the bytes at 0x{first.rip:x} as the CPU decodes them (32-bit) and as they "
                "were compiled (64-bit):"
            )
            rows = [("32-bit", i) for i in bits32] + [("64-bit", i) for i in bits64]
            width = max(len(raw.hex(" ")) for _, (_, raw, _) in rows)
            previous = ""
            for label, (address, raw, text) in rows:
                shown = label if label != previous else ""
                previous = label
                details.append(f"  {shown:<6}  0x{address:x}  {raw.hex(' '):<{width}}  {text}")
    for access in unassigned:
        details.append(
            f"a 32-bit decode of 64-bit code made a {_stray(access)}: no memory is there "
            "(a PC reads 0 and drops the write, so the kernel went on)"
        )
    details.append(
        "GRUB hands a Multiboot kernel 32-bit protected mode with paging off, even for an ELF64: "
        "the boot code must build page tables, set CR4.PAE, EFER.LME and CR0.PG, and far-jump "
        "to a 64-bit code segment before calling 64-bit code."
    )
    return Diagnosis("mode-mismatch", message, tuple(details))


# Values a kernel finds in EAX at entry: an address next to one is EAX used as a pointer.
_ENTRY_MAGICS = {
    0x36D76289: "the Multiboot2 magic GRUB leaves in EAX",
    0x2BADB002: "the Multiboot magic GRUB leaves in EAX",
}


def _stray(access: dict) -> str:
    """'write of 4 bytes at 0x36d76287 (just below the Multiboot2 magic ...) at <where>'"""
    what = "write" if access["write"] else "read"
    address = access["address"]
    near = ""
    for magic, name in _ENTRY_MAGICS.items():
        if abs(address - magic) <= 16:
            side = "just below" if address < magic else "just above" if address > magic else "at"
            near = f" ({side} {name}, 0x{magic:x})"
    return (
        f"{what} of {access['size']} byte(s) at 0x{address:x}{near} by the instruction at "
        f"{access['location']}"
    )


def _stray_accesses(unassigned: Sequence[dict]) -> Diagnosis:
    return Diagnosis(
        "unassigned-memory",
        f"before this fault the kernel accessed physical memory where nothing is "
        f"({len(unassigned)} access(es) listed): a wild pointer, or code running in the wrong mode",
        tuple(_stray(a) for a in unassigned),
    )


def _no_idt(chain: list[TraceEntry]) -> Diagnosis | None:
    for e in chain:
        if not e.delivered and "IDTR.limit is 0" in e.reason and e.mode == "real":
            return Diagnosis(
                "no-idt",
                "IDTR.limit is 0 in real mode: there is no interrupt vector table, so every "
                "interrupt becomes #GP, then #DF, then a triple fault (a trampoline that loads a "
                "null IDT before it drops to real mode must load IDTR base 0, limit 0x3FF, the "
                "BIOS's table, before it calls the BIOS or enables interrupts).",
            )
        if not e.delivered and "IDTR.limit is 0" in e.reason:
            return Diagnosis(
                "no-idt",
                "no IDT is loaded (IDTR.limit is 0): every exception becomes #GP, then #DF, "
                "then a triple fault. Load an IDT (lidt) with handlers before anything can fault.",
            )
    return None


def _bad_gate_selector(chain: list[TraceEntry]) -> Diagnosis | None:
    for e in chain:
        if not e.delivered and "gate selector" in e.reason:
            return Diagnosis(
                "bad-gate-selector",
                f"the IDT gate for {e.name.split(' ')[0]} points at a bad code segment: {e.reason}. "
                "Gates must use a code selector of the GDT the kernel loaded "
                "(GRUB's GDT has no descriptor at 0x08).",
                (e.gate,) if e.gate else (),
            )
    return None


def _stack_overflow(chain: list[TraceEntry]) -> Diagnosis | None:
    for e in chain:
        if not e.delivered and e.reason.startswith("pushing"):
            return Diagnosis(
                "stack-overflow",
                f"pushing the exception frame faulted (RSP=0x{e.rsp:x}): the stack ran into "
                "an unmapped or read-only page, typically a stack overflow into a guard page. "
                "Give #DF (and #PF) their own IST stack to see the real culprit.",
                (e.reason,),
            )
    return None


def _pf_in_pf_handler(
    trace: FaultTrace, symbol_of: Callable[[int], str | None] | None
) -> Diagnosis | None:
    if symbol_of is None:
        return None
    delivered_pf = [
        e for e in trace.entries if e.vector == 14 and e.delivered and e.kind == "exception"
    ]
    if not delivered_pf:
        return None
    last = trace.entries[-1] if trace.entries else None
    if last is None or last.vector not in (14, 8):
        return None
    chain = trace.last_chain()
    first = chain[0] if chain else None
    if first is None or first.vector != 14:
        return None
    target = delivered_pf[-1].handler
    handler = symbol_of(target) if target is not None else None
    here = symbol_of(first.rip)
    if handler and here and handler == here:
        return Diagnosis(
            "pf-in-pf-handler",
            f"a page fault was raised inside the page-fault handler ({here}): the handler "
            "itself touches memory that is not mapped.",
        )
    return None
