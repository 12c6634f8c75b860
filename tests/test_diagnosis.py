"""Diagnoses on hand-made fault chains: each one fires on its pattern and stays quiet otherwise."""

from __future__ import annotations

from emu.core.cpu_state import CpuState, Segment
from emu.faults.diagnosis import diagnose
from emu.faults.trace import FaultTrace, TraceEntry


def cpu(mode: str = "long64", cr0: int = 0x80000011, efer: int = 0x500) -> CpuState:
    seg = Segment(0, 0, 0xFFFFFFFF, 0)
    return CpuState(0, 2, {}, cr0, 0, 0x1000, 0x20, efer, (0, 0), (0, 0xFFF),
                    {n: seg for n in ("es", "cs", "ss", "ds", "fs", "gs")}, 0, mode, 0)  # fmt: skip


def entry(vector: int, delivered: bool, reason: str = "", *, mode="long64", kind="exception",
          error=None, cr2=None, rip=0x1000, gate="", handler=None, rsp=0x8000) -> TraceEntry:  # fmt: skip
    return TraceEntry(0, 0, vector, f"#{vector}", kind, error, "", cr2, rip, f"0x{rip:x}", rsp, 0,
                      mode, "", gate, delivered, reason, "", "", handler)  # fmt: skip


def trace(*entries: TraceEntry, triple: bool = False) -> FaultTrace:
    t = FaultTrace()
    for e in entries:
        t.add(e)
    t.triple_fault = triple
    return t


def kinds(ds) -> list[str]:
    return [d.kind for d in ds]


def test_mode_mismatch_only_for_elf64_outside_long_mode() -> None:
    t = trace(entry(6, False, "IDTR.limit is 0: no IDT loaded", mode="prot32"), triple=True)
    ds = diagnose(cpu("prot32", cr0=0x11, efer=0), t, elf_class=64, elf_machine="EM_X86_64")
    assert kinds(ds) == ["mode-mismatch", "no-idt"]
    assert "EFER.LME=0, CR0.PG=0" in ds[0].message
    assert kinds(diagnose(cpu("prot32"), t, elf_class=32, elf_machine="EM_386")) == ["no-idt"]
    t64 = trace(entry(6, False, "IDTR.limit is 0: no IDT loaded"), triple=True)
    assert "mode-mismatch" not in kinds(diagnose(cpu(), t64, elf_class=64, elf_machine="EM_X86_64"))


def test_compatibility_mode_is_named() -> None:
    t = trace(entry(13, False, "x", mode="compat"))
    ds = diagnose(cpu("compat"), t, elf_class=64, elf_machine="EM_X86_64")
    assert "compatibility mode" in ds[0].message


def test_bad_gate_selector() -> None:
    t = trace(entry(32, False, "gate selector 0x0008 is a null descriptor in the current GDT",
                    kind="external", gate="IDT[32] ..."))  # fmt: skip
    ds = diagnose(cpu(), t, elf_class=32, elf_machine="EM_386")
    assert kinds(ds) == ["bad-gate-selector"] and "0x08" in ds[0].message


def test_stack_overflow() -> None:
    t = trace(entry(14, False, "pushing RIP at 0x7ff8 faulted: PTE[7] not present", cr2=0x7FF8),
              entry(8, False, "pushing SS at 0x7ff8 faulted"), triple=True)  # fmt: skip
    ds = diagnose(cpu(), t, elf_class=64, elf_machine="EM_X86_64")
    assert kinds(ds) == ["stack-overflow"]


def test_page_fault_inside_the_page_fault_handler() -> None:
    names = {0x5000: "page_fault_handler", 0x5010: "page_fault_handler", 0x4000: "main"}
    t = trace(
        entry(14, True, "delivered", cr2=0x1234, rip=0x4000, handler=0x5000),
        entry(14, False, "x", cr2=0xDEAD000, rip=0x5010),
        entry(8, False, "y"),
        triple=True,
    )
    ds = diagnose(cpu(), t, elf_class=64, elf_machine="EM_X86_64", symbol_of=names.get)
    assert "pf-in-pf-handler" in kinds(ds)
    t2 = trace(entry(14, True, "delivered", cr2=0x1234, rip=0x4000, handler=0x5000),
               entry(14, False, "x", cr2=0xDEAD000, rip=0x4000), triple=True)  # fmt: skip
    assert "pf-in-pf-handler" not in kinds(
        diagnose(cpu(), t2, elf_class=64, elf_machine="EM_X86_64", symbol_of=names.get)
    )


def test_stale_tlb_when_the_tables_now_allow_the_access() -> None:
    t = trace(entry(14, False, "x", error=0x3, cr2=0x40001008), entry(8, False, "y"), triple=True)
    allowed = diagnose(cpu(), t, elf_class=64, elf_machine="EM_X86_64", rewalk=lambda e: None)
    assert "stale-tlb" in kinds(allowed)
    refused = diagnose(cpu(), t, elf_class=64, elf_machine="EM_X86_64",
                       rewalk=lambda e: "PTE.RW=0 and CR0.WP=1 on a supervisor write")  # fmt: skip
    assert "stale-tlb" not in kinds(refused)


def test_nothing_to_say_without_a_chain() -> None:
    assert diagnose(cpu(), FaultTrace(), elf_class=64, elf_machine="EM_X86_64") == []


def test_stray_accesses_join_the_mode_mismatch_or_stand_alone() -> None:
    stray = {"address": 0x36D76287, "write": True, "size": 4, "value": 0x1467C8,
             "rip": 0x10001E, "location": "0x10001e <_start+0x6>", "instructions": 15}  # fmt: skip
    t = trace(entry(6, False, "IDTR.limit is 0: no IDT loaded", mode="prot32"), triple=True)
    ds = diagnose(cpu("prot32", cr0=0x11, efer=0), t, elf_class=64, elf_machine="EM_X86_64",
                  unassigned=[stray])  # fmt: skip
    assert kinds(ds) == ["mode-mismatch", "no-idt"]
    line = next(d for d in ds[0].details if "0x36d76287" in d)
    assert "just below the Multiboot2 magic" in line and "<_start+0x6>" in line
    ds = diagnose(cpu("prot32", cr0=0x11, efer=0), t, elf_class=32, elf_machine="EM_386",
                  unassigned=[stray])  # fmt: skip
    assert kinds(ds) == ["unassigned-memory", "no-idt"]
    assert kinds(diagnose(cpu("prot32"), t, elf_class=32, elf_machine="EM_386")) == ["no-idt"]


def test_lost_through_eax_names_its_stray_write(image) -> None:
    """The seed's other builds: a 64-bit entry decoded as 32-bit writes through EAX (the
    Multiboot2 magic minus two) before anything else; a PC drops the write and goes on to the
    same triple fault as lost-in-32bit (QEMU: test_qemu_differential)."""
    from emu import Machine

    r = Machine.from_elf(image("lost-through-eax")).run(max_instructions=5_000_000)
    assert r.stop_reason == "triple-fault"
    assert [(a["address"], a["write"], a["size"]) for a in r.unassigned["first"]] == [
        (0x36D76287, True, 4)
    ]
    assert "<_start+0x6>" in r.unassigned["first"][0]["location"]
    mismatch = next(d for d in r.diagnoses if d.kind == "mode-mismatch")
    assert any("0x36d76287" in x and "Multiboot2 magic" in x for x in mismatch.details)
    assert "write of 4 byte(s) of 0x" in r.describe()
