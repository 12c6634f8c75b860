"""Exception delivery in real long-mode kernels (images/faults*), checked against QEMU + GRUB.

The serial output of each image and the exception chain were compared with the reference
(`qemu-ref --isa-exit`); the golden files record them, and the fault trace of the fatal one.
"""

from __future__ import annotations

import json

import pytest

from emu import Machine

pytestmark = pytest.mark.images
BUDGET = 5_000_000


def run(image, name: str):
    m = Machine.from_elf(image(name))
    return m, m.run(max_instructions=BUDGET)


def _trace(r) -> list[dict]:
    keep = ("vector", "name", "kind", "error_code", "error_decoded", "cr2", "rip", "location",
            "cpl", "mode", "delivered", "reason", "escalation", "instructions")  # fmt: skip
    return [{k: e[k] for k in keep} for e in r.trace.to_list()]


def test_recoverable_faults_are_delivered_and_resumed(image, golden) -> None:
    _, r = run(image, "faults")
    assert r.stop_reason == "debug-exit" and r.exit_code == 0, r.describe()
    assert r.serial.endswith(b"All tests passed\r\n")
    entries = r.trace.entries
    assert [(e.vector, e.kind, e.delivered) for e in entries] == [
        (0, "exception", True),
        (3, "software", True),
        (13, "exception", True),
        (14, "exception", True),
        (0x80, "software", True),
        (0x80, "software", True),
    ]
    gp, pf = entries[2], entries[3]
    assert gp.error_code == 0x40 and gp.error_decoded == "GDT selector 0x0040 (index 8)"
    assert pf.error_code == 0x3 and pf.cr2 == 0x400010  # exact CR2, not the page
    assert entries[4].cpl == 3 and entries[4].mode == "long64"
    assert b"syscall 42(7) from ring 3" in r.serial  # SYSCALL/SYSRET round trip
    golden("faults.serial", r.serial)
    golden("faults.trace.json", json.dumps(_trace(r), indent=1).encode())


def test_stack_overflow_double_faults_onto_the_ist_stack(image, golden) -> None:
    _, r = run(image, "faults-df")
    assert r.stop_reason == "debug-exit" and r.exit_code == 0, r.describe()
    pf, df = r.trace.entries
    assert pf.vector == 14 and not pf.delivered and pf.cr2 == 0x800E90
    assert pf.reason.startswith("pushing")  # the frame push hit the guard page
    assert df.vector == 8 and df.delivered and "IST1" in df.gate
    golden("faults-df.serial", r.serial)
    golden("faults-df.trace.json", json.dumps(_trace(r), indent=1).encode())


def test_deliberate_triple_fault(image, golden) -> None:
    _, r = run(image, "faults-triple")
    assert r.stop_reason == "triple-fault" and r.exit_status == 3
    assert r.detail == "#BP -> #GP(0x32) -> #DF -> triple fault"
    assert r.trace.entries[1].error_decoded == "IDT entry 3"
    assert [d.kind for d in r.diagnoses] == ["no-idt"]
    assert r.cpu.mode == "long64"
    golden("faults-triple.serial", r.serial)
    golden("faults-triple.trace.json", json.dumps(_trace(r), indent=1).encode())


def test_stop_on_an_exception_before_delivery_then_continue(image) -> None:
    m = Machine.from_elf(image("faults"))
    m.break_on_exceptions(14)
    r = m.run(max_instructions=BUDGET)
    assert r.stop_reason == "exception" and r.exception.vector == 14
    assert r.exception.cr2 == 0x400010 and r.exception.error_code == 0x3
    assert r.cpu.rip == r.exception.rip  # still on the faulting instruction
    assert b"#PF handled" not in r.serial
    rest = m.run(max_instructions=BUDGET)
    assert rest.stop_reason == "debug-exit" and rest.exit_code == 0
    plain = Machine.from_elf(image("faults")).run(max_instructions=BUDGET)
    assert (rest.instructions, rest.serial) == (plain.instructions, plain.serial)
