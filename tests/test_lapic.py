"""The local APIC (devices/lapic.py): programmed register by register as a driver would, at the
device level and from small guest kernels (tests/apic_guest.py) on the whole machine."""

from __future__ import annotations

import pytest
from apic_guest import LAPIC, MASK_PICS, kernel, lapic_write, run, spin, vectors

from devices.irq import IrqLine
from devices.lapic import (
    ESR_ILLEGAL_REGISTER,
    ESR_RECEIVE_ILLEGAL_VECTOR,
    ESR_SEND_ILLEGAL_VECTOR,
    VERSION,
    LocalApic,
)
from emu import Machine


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def apic() -> tuple[LocalApic, IrqLine, Clock]:
    intr, clock = IrqLine("INTR"), Clock()
    return LocalApic(intr, clock), intr, clock


def no_pic() -> int:
    raise AssertionError("the 8259s were asked")


# ---------------------------------------------------------------- the device
def test_state_at_hand_over_is_what_seabios_leaves() -> None:
    a, intr, _ = apic()
    assert a.read_base_msr() == 0xFEE00900
    assert a.mem_read(0x30, 4) == VERSION == 0x00050014
    assert a.mem_read(0xF0, 4) == 0x1FF
    assert a.mem_read(0xE0, 4) == 0xFFFFFFFF
    assert [a.mem_read(o, 4) for o in (0x320, 0x350, 0x360, 0x370)] == [
        0x10000, 0x8700, 0x8400, 0x10000
    ]  # fmt: skip
    assert not intr.level


def test_priority_classes_tpr_ppr_and_eoi() -> None:
    a, intr, _ = apic()
    for v in (0x31, 0x51, 0x42):
        a.accept(v, False, "IPI")
    assert intr.level
    order = []
    got = a.acknowledge(no_pic)
    order.append(got.vector)
    assert a.mem_read(0xA0, 4) == 0x50  # PPR: the in-service class
    # 0x42's class is below 0x51's: masked until the EOI
    assert a.acknowledge(no_pic).source == "spurious" and not intr.level
    a.mem_write(0xB0, 4, 0)
    while (got := a.acknowledge(no_pic)) is not None:
        order.append(got.vector)
        a.mem_write(0xB0, 4, 0)
    assert order == [0x51, 0x42, 0x31]
    a.accept(0x41, False, "IPI")
    a.mem_write(0x80, 4, 0x40)  # TPR class 4 masks 0x41
    assert not intr.level and a.mem_read(0xA0, 4) == 0x40
    a.mem_write(0x80, 4, 0x30)
    assert intr.level and a.acknowledge(no_pic).vector == 0x41
    assert a.mem_read(0x100 + 0x10 * (0x41 // 32), 4) == 1 << (0x41 % 32)  # ISR


def test_register_masks_and_read_only_registers_as_qemu() -> None:
    a, _, _ = apic()
    for offset, ones in ((0x20, 0xFF000000), (0x80, 0xFF), (0xD0, 0xFF000000),
                         (0xE0, 0xFFFFFFFF), (0xF0, 0x1FF), (0x3E0, 0xB), (0x310, 0xFFFFFFFF),
                         (0x320, 0xFFFFFFFF)):  # fmt: skip
        a.mem_write(offset, 4, 0xFFFFFFFF)
        assert a.mem_read(offset, 4) == ones, hex(offset)
    a.mem_write(0xE0, 4, 0)
    assert a.mem_read(0xE0, 4) == 0x0FFFFFFF
    for offset in (0x30, 0x90, 0xA0, 0x100, 0x180, 0x200, 0x390):
        before = a.mem_read(offset, 4)
        a.mem_write(offset, 4, 0x5A5A5A5A)
        assert a.mem_read(offset, 4) == before
    assert a.mem_read(0x20, 1) == 0  # narrower than 32 bits: 0
    assert a.mem_read(0x34, 4) == a.mem_read(0x30, 4)  # inside a register's 16 bytes


def test_esr_latches_errors_at_each_write_as_the_sdm_says() -> None:
    a, _, _ = apic()
    a.mem_read(0x40, 4)  # reserved
    assert a.mem_read(0x280, 4) == 0  # not latched yet
    a.mem_write(0x280, 4, 0)
    assert a.mem_read(0x280, 4) == ESR_ILLEGAL_REGISTER
    a.mem_write(0x280, 4, 0)
    assert a.mem_read(0x280, 4) == 0
    a.mem_write(0x300, 4, 0x40000 | 0x05)  # self IPI, vector 5: not sent
    a.accept(0x07, False, "I/O APIC pin 1")  # received illegal vector: dropped
    a.mem_write(0x280, 4, 0)
    assert a.mem_read(0x280, 4) == ESR_SEND_ILLEGAL_VECTOR | ESR_RECEIVE_ILLEGAL_VECTOR
    assert a.irr == 0


def test_an_error_raises_the_lvt_error_vector() -> None:
    a, intr, _ = apic()
    a.mem_write(0x370, 4, 0xFE)
    a.mem_write(0x3F0, 4, 1)  # reserved offset
    assert intr.level and a.acknowledge(no_pic).vector == 0xFE
    a.mem_write(0x370, 4, 0x05)  # an error vector that is itself illegal does not loop
    a.mem_read(0x40, 4)
    a.mem_write(0x280, 4, 0)
    assert a.mem_read(0x280, 4) == ESR_ILLEGAL_REGISTER | ESR_RECEIVE_ILLEGAL_VECTOR


def test_ipis_shorthands_destinations_and_absent_processors() -> None:
    a, _, _ = apic()
    a.mem_write(0x300, 4, (1 << 18) | 0x40)  # self
    a.mem_write(0x310, 4, 0)
    a.mem_write(0x300, 4, 0x41)  # physical destination 0: this APIC
    a.mem_write(0x310, 4, 3 << 24)
    a.mem_write(0x300, 4, 0x42)  # physical 3: nobody
    a.mem_write(0x300, 4, (3 << 18) | 0x43)  # all excluding self
    a.mem_write(0x300, 4, (2 << 18) | 0x44)  # all including self
    a.mem_write(0xD0, 4, 0x01000000)
    a.mem_write(0x310, 4, 0x03000000)
    a.mem_write(0x300, 4, (1 << 11) | 0x45)  # logical flat, MDA 3 includes LDR 1
    assert sorted(v for v in range(256) if a.irr >> v & 1) == [0x40, 0x41, 0x44, 0x45]
    # INIT and STARTUP to the processors that do not exist: accepted, nothing happens
    a.mem_write(0x300, 4, (3 << 18) | 0x4500)
    a.mem_write(0x300, 4, (3 << 18) | 0x4608)
    assert a.mem_read(0x300, 4) & (1 << 12) == 0  # delivery status: idle
    a.mem_write(0x300, 4, (1 << 18) | 0x400)  # NMI to self
    assert a.nmi_pending and a.take_nmi() and not a.nmi_pending


def test_timer_one_shot_periodic_divide_and_current_count() -> None:
    a, intr, clock = apic()
    a.mem_write(0x3E0, 4, 0xB)  # divide by 1
    a.mem_write(0x320, 4, 0x40)  # one-shot, vector 0x40
    clock.now = 1000
    a.mem_write(0x380, 4, 500)
    assert a.next_event(clock.now) == 1000 + 501
    clock.now = 1200
    assert a.mem_read(0x390, 4) == 300
    clock.now = 1501
    a.tick(clock.now)
    assert intr.level and a.next_event(clock.now) is None and a.mem_read(0x390, 4) == 0
    a.acknowledge(no_pic)
    a.mem_write(0xB0, 4, 0)
    a.mem_write(0x3E0, 4, 0x3)  # divide by 16
    a.mem_write(0x320, 4, 0x20041)  # periodic, vector 0x41
    clock.now = 10_000
    a.mem_write(0x380, 4, 99)  # period (99 + 1) << 4 = 1600 ns
    assert a.next_event(clock.now) == 11_600
    clock.now = 11_600 + 1600 * 3 + 5  # missed periods coalesce
    a.tick(clock.now)
    assert a.next_event(clock.now) == 11_600 + 1600 * 4
    assert a.mem_read(0x390, 4) == 99 - (5 >> 4)
    a.mem_write(0x320, 4, 0x30041)  # masked: no more events
    assert a.next_event(clock.now) is None


def test_expiries_from_are_expiry_after_one_by_one() -> None:
    """The clock hook's table of timer interrupts is filled in bulk: the same instants as
    ``expiry_after`` one at a time (periodic at each divide, one-shot, masked)."""
    for lvt, divide, initial in ((0x20040, 0xB, 1675), (0x20040, 0x3, 99), (0x20041, 0xA, 0),
                                 (0x40, 0xB, 500), (0x20040, 0x9, 7)):  # fmt: skip
        a, _intr, clock = apic()
        a.mem_write(0x3E0, 4, divide)
        a.mem_write(0x320, 4, lvt)
        clock.now = 12_345
        a.mem_write(0x380, 4, initial)
        first = a.next_event(clock.now)
        if first is None:
            continue
        for before in (None, first, first + 1, first + 10 * 1676 + 3, 1 << 62):
            for count in (1, 3, 256):
                want, e = [], first
                while e is not None and len(want) < count:
                    want.append(e)
                    if before is not None and e >= before:
                        break
                    e = a.expiry_after(e)
                assert a.expiries_from(first, before, count) == want, (lvt, divide, before)


def test_msr_disable_cannot_be_undone_and_relocation_is_reported() -> None:
    moves = []
    a = LocalApic(IrqLine(), lambda: 0, on_base_change=lambda o, n: moves.append((o, n)))
    a.write_base_msr(0xFEF00800)
    assert a.read_base_msr() == 0xFEF00900 and moves == [(0xFEE00000, 0xFEF00000)]
    a.write_base_msr(0xFEF00000)
    assert a.read_base_msr() == 0xFEF00100 and a.mem_read(0xF0, 4) == 0xFF
    a.write_base_msr(0xFEF00800)
    assert a.read_base_msr() == 0xFEF00100


def test_lint0_passes_the_8259s_through_unless_masked() -> None:
    """QEMU's request semantics: INTA takes the request, the 8259s still asking raise it again;
    masking LINT0 leaves a raised request as it is (INTA then finds nothing), a masked LINT0
    does not hear the 8259s, and unmasking it with INTR high delivers again."""
    a, intr, _ = apic()
    a.set_lint0(True)
    assert intr.level
    assert a.acknowledge(lambda: 0x20).source == "8259"
    assert intr.level  # the 8259s still ask
    a.mem_write(0x350, 4, 0x18700)  # LINT0 masked
    assert intr.level and a.acknowledge(no_pic) is None and not intr.level
    a.set_lint0(False)
    a.set_lint0(True)
    assert not intr.level
    a.mem_write(0x350, 4, 0x8700)
    assert intr.level
    a.set_lint0(False)
    assert not intr.level


def test_spurious_when_lint0_changes_under_a_request() -> None:
    """images/apic's spurious interrupt, as QEMU gives it: the 8259s raise the request, LINT0
    becomes a fixed vector the TPR holds back, the 8259s are masked: INTA finds the spurious
    vector, and the held vectors follow once the TPR is lowered."""
    a, intr, _ = apic()
    a.mem_write(0x80, 4, 0x60)
    a.mem_write(0x300, 4, 0x40000 | 0x50)
    a.set_lint0(True)
    a.mem_write(0x350, 4, 0x5F)
    a.set_lint0(False)
    assert intr.level
    assert a.acknowledge(no_pic).source == "spurious"
    a.mem_write(0x80, 4, 0)
    assert a.acknowledge(no_pic).vector == 0x5F
    a.mem_write(0xB0, 4, 0)
    assert a.acknowledge(no_pic).vector == 0x50


def test_lint1_nmi() -> None:
    a, _, _ = apic()
    a.pulse_lint1()
    assert a.nmi_pending and a.nmi_source == "LINT1"


# ---------------------------------------------------------------- guests
@pytest.fixture
def tmp(tmp_path):
    return tmp_path


def test_a_guest_sends_itself_ipis_in_priority_order(tmp) -> None:
    body = (
        lapic_write(0x300, 0x40000 | 0x31)
        + lapic_write(0x300, 0x40000 | 0x51)
        + lapic_write(0x300, 0x40000 | 0x42)
        + "    sti\n    nop\n    cli\n"
    )
    m, r = run(kernel(body, tmp))
    assert r.stop_reason == "debug-exit", r.describe()
    assert vectors(m) == [0x51, 0x42, 0x31]
    sources = [e.source for e in r.trace.entries]
    assert sources == ["IPI", "IPI", "IPI"]


def test_tpr_holds_an_ipi_until_lowered(tmp) -> None:
    body = (
        lapic_write(0x80, 0x50)
        + "    sti\n"
        + lapic_write(0x300, 0x40000 | 0x45)
        + spin(100)
        + "    movl LOG, %esi\n"
        + lapic_write(0x80, 0)
        # taken right after the MOV, as a step takes it (tests/test_exact_stops.py)
        + "    jmp 1f\n1:  nop\n    cli\n    movl %esi, LOG + 0x100\n"
    )
    m, r = run(kernel(body, tmp))
    assert r.stop_reason == "debug-exit", r.describe()
    assert vectors(m) == [0x45]
    assert int(m.ram[0x200100]) == 0  # nothing delivered while the TPR held it


def timer_guest(tmp, lvt: int, initial: int, iterations: int, divide: int = 0xB):
    body = (
        MASK_PICS
        + lapic_write(0x3E0, divide)
        + lapic_write(0x320, lvt)
        + lapic_write(0x380, initial)
        + "    sti\n"
        + spin(iterations)
        + "    cli\n"
        + f"    movl 0x{LAPIC + 0x390:x}, %eax\n    movl %eax, LOG + 0x1000\n"
    )
    return kernel(body, tmp, f"timer{lvt:x}")


def test_the_periodic_timer_interrupts_at_its_period_deterministically(tmp) -> None:
    elf = timer_guest(tmp, 0x20040, 9999, 500_000)  # 10,000 ns; ~1 ms of spinning
    counts = []
    for arm in (True, False):
        m = Machine.from_elf(elf)
        m.arm_timer = arm
        r = m.run(max_instructions=5_000_000)
        assert r.stop_reason == "debug-exit", r.describe()
        counts.append((vectors(m), r.instructions))
    assert counts[0] == counts[1]
    seen = counts[0][0]
    assert set(seen) == {0x40} and 95 <= len(seen) <= 101
    m2, r2 = run(elf, 5_000_000)
    assert (vectors(m2), r2.instructions) == counts[0]
    assert {e.source for e in r2.trace.entries} == {"LAPIC timer"}


def test_the_one_shot_timer_fires_once(tmp) -> None:
    m, r = run(timer_guest(tmp, 0x40, 20_000, 50_000))
    assert r.stop_reason == "debug-exit", r.describe()
    assert vectors(m) == [0x40]
    assert int(m.ram[0x201000:0x201004].view("<u4")[0]) == 0  # current count at the end


def test_nmi_ipi_is_taken_with_interrupts_disabled(tmp) -> None:
    body = lapic_write(0x300, 0x40000 | 0x400) + spin(10)
    m, r = run(kernel(body, tmp))
    assert r.stop_reason == "debug-exit", r.describe()
    assert vectors(m) == [2]
    assert r.trace.entries[0].source == "NMI (IPI)"


def test_an_illegal_vector_sets_esr_and_raises_the_error_interrupt(tmp) -> None:
    body = (
        lapic_write(0x370, 0x4E)
        + lapic_write(0x280, 0)
        + lapic_write(0x300, 0x40000 | 0x03)
        + "    sti\n    nop\n    cli\n"
        + lapic_write(0x280, 0)
        + f"    movl 0x{LAPIC + 0x280:x}, %eax\n    movl %eax, LOG + 0x1000\n"
    )
    m, r = run(kernel(body, tmp))
    assert r.stop_reason == "debug-exit", r.describe()
    assert vectors(m) == [0x4E]
    assert int(m.ram[0x201000]) == ESR_SEND_ILLEGAL_VECTOR
    assert r.trace.entries[0].source == "LAPIC error"


def test_relocation_through_the_msr_moves_the_registers(tmp) -> None:
    body = """
    movl $0x1b, %ecx
    rdmsr
    movl %eax, LOG + 0x1000
    movl $0xfef00800, %eax
    xorl %edx, %edx
    wrmsr
    movl 0xfef00030, %eax
    movl %eax, LOG + 0x1004
    movl 0xfee00030, %eax
    movl %eax, LOG + 0x1008
    rdmsr
    movl %eax, LOG + 0x100c
"""
    m, r = run(kernel(body, tmp))
    assert r.stop_reason == "debug-exit", r.describe()
    got = [int(x) for x in m.ram[0x201000:0x201010].view("<u4")]
    assert got == [0xFEE00900, VERSION, 0, 0xFEF00900]
    assert m.lapic.base == 0xFEF00000
    cp = m.checkpoint()
    m.lapic.reset()  # back at the default address
    assert m.read_physical(0xFEE00030, 4) == b"\xff" * 4  # registers (not read: all ones)
    m.restore(cp)
    assert m._lapic_region.base == 0xFEF00000


def test_checkpoint_round_trip_of_a_running_timer(tmp) -> None:
    elf = timer_guest(tmp, 0x20040, 4999, 200_000)
    m = Machine.from_elf(elf)
    m.run(max_instructions=150_000)
    cp = m.checkpoint()
    first = m.run(max_instructions=5_000_000)
    seen = vectors(m)
    m.restore(cp)
    again = m.run(max_instructions=5_000_000)
    assert vectors(m) == seen and again.instructions == first.instructions
    assert m.lapic.timer_interrupts == len(seen)


@pytest.mark.images
def test_a_pic_kernel_is_unchanged_by_the_apic(image) -> None:
    """The timer image programs the 8259s and the PIT only: every interrupt comes through
    LINT0 (virtual wire) from the 8259s, and the APIC state stays as the firmware left it."""
    m = Machine.from_elf(image("timer"))
    r = m.run(max_instructions=50_000_000)
    assert r.stop_reason == "debug-exit", r.describe()
    sources = {e.source for e in r.trace.entries if e.kind == "external"}
    assert sources == {"8259 IRQ 0"}
    fresh = Machine()
    assert m.lapic.to_dict() | {"timer": None, "lint0": None} == (
        fresh.lapic.to_dict() | {"timer": None, "lint0": None}
    )
    assert m.lapic.irr == m.lapic.isr == 0


# ---------------------------------------------------------------- reports
def test_trace_json_and_debugger_name_the_sources(tmp) -> None:
    import json

    from tui.session import DebugSession

    body = (
        lapic_write(0x300, 0x40000 | 0x41)
        + "    sti\n    nop\n    cli\n"
        + lapic_write(0x3E0, 0xB)
        + lapic_write(0x320, 0x42)
        + lapic_write(0x380, 1000)
        + "    sti\n"
        + spin(2000)
        + "    cli\n"
    )
    lines: list[str] = []
    m = Machine.from_elf(kernel(body, tmp), trace_sink=lines.append)
    r = m.run(max_instructions=1_000_000)
    assert r.stop_reason == "debug-exit", r.describe()
    assert vectors(m) == [0x41, 0x42]
    heads = [x for x in lines if x.startswith("[")]
    assert "IRQ vector 0x41 from IPI" in heads[0] and "IRQ vector 0x42 from LAPIC timer" in heads[1]
    data = json.loads(json.dumps(r.to_dict()))
    lapic = data["interrupt_controllers"]["lapic"]
    assert lapic["apic_base"] == 0xFEE00900 and lapic["timer"]["interrupts"] == 1
    assert data["interrupt_controllers"]["ioapic"]["version"] == 0x00170020
    assert [e["source"] for e in data["fault_trace"]] == ["IPI", "LAPIC timer"]
    session = DebugSession(m)
    assert "LAPIC id 0 base 0xfee00000 enabled" in session.controller_state("lapic")
    assert "every pin masked" in session.controller_state("ioapic")
    assert "PIC1" in session.controller_state("pic")


def test_an_undeliverable_interrupt_names_its_controller(tmp) -> None:
    """An IPI to a vector whose IDT entry is empty (and #GP's and #DF's too): the triple fault's
    chain says the interrupt came from an IPI."""
    clear = "".join(f"    movl $0, idt + 8 * {v} + 4\n" for v in (0x61, 13, 8))
    body = clear + lapic_write(0x300, 0x40000 | 0x61) + "    sti\n    nop\n    cli\n"
    m, r = run(kernel(body, tmp))
    assert r.stop_reason == "triple-fault"
    first = r.trace.last_chain()[0]
    assert first.vector == 0x61 and not first.delivered and first.source == "IPI"
    assert "IRQ vector 0x61 from IPI" in r.describe()
    assert any(
        d.kind == "undeliverable-interrupt" and "from IPI (vector 0x61)" in d.message
        for d in r.diagnoses
    )
