"""The IDT delivery model on hand-built descriptor tables (flat memory, paging off)."""

from __future__ import annotations

import struct

import pytest

from emu.faults.delivery import (
    DESC_B,
    DESC_L,
    DeliveryCpu,
    Event,
    IdtDelivery,
    MemoryFault,
    SegmentCache,
)

IDT, GDT, TSS = 0x1000, 0x2000, 0x3000
CODE64 = 0x00AF9A000000FFFF  # L=1 D=0, DPL 0
CODE32 = 0x00CF9A000000FFFF
DATA = 0x00CF92000000FFFF
USER_CODE64 = 0x00AFFA000000FFFF
USER_DATA = 0x00CFF2000000FFFF


class FlatMemory:
    """Identity-mapped memory with holes that fault like unmapped pages."""

    def __init__(self, size: int = 1 << 20) -> None:
        self.data = bytearray(size)
        self.holes: list[tuple[int, int]] = []

    def _check(self, address: int, size: int, write: bool) -> None:
        for lo, hi in self.holes:
            if address < hi and lo < address + size:
                raise MemoryFault(14, 0b10 if write else 0, max(address, lo), "page not present")

    def read(self, address: int, size: int) -> bytes:
        self._check(address, size, False)
        return bytes(self.data[address : address + size])

    def write(self, address: int, data: bytes) -> None:
        self._check(address, len(data), True)
        self.data[address : address + len(data)] = data

    def q(self, address: int) -> int:
        return struct.unpack_from("<Q", self.data, address)[0]


def gate64(offset: int, selector: int = 0x08, type_: int = 14, dpl: int = 0, present=True, ist=0):
    lo = (offset & 0xFFFF) | (selector << 16)
    hi = (offset & 0xFFFF0000) | (int(present) << 15) | (dpl << 13) | (type_ << 8) | ist
    return struct.pack("<IIII", lo, hi, offset >> 32, 0)


def gate32(offset: int, selector: int = 0x10, type_: int = 14, dpl: int = 0, present=True):
    lo = (offset & 0xFFFF) | (selector << 16)
    hi = (offset & 0xFFFF0000) | (int(present) << 15) | (dpl << 13) | (type_ << 8)
    return struct.pack("<II", lo, hi)


def cpu64(mem: FlatMemory, *, cpl=0, rsp=0x8000, idt_limit=0xFFF, rflags=0x202) -> DeliveryCpu:
    gdt = [0, CODE64, DATA, USER_DATA, USER_CODE64, 0, 0]
    for i, d in enumerate(gdt):
        struct.pack_into("<Q", mem.data, GDT + 8 * i, d)
    cs_sel = 0x23 if cpl == 3 else 0x08
    cs_flags = (USER_CODE64 if cpl == 3 else CODE64) >> 32
    ss = (
        SegmentCache(0x1B, 0, 0xFFFFFFFF, USER_DATA >> 32)
        if cpl == 3
        else SegmentCache(0x10, 0, 0xFFFFFFFF, DATA >> 32)
    )
    return DeliveryCpu(
        long_mode=True,
        cpl=cpl,
        rip=0x4000,
        rsp=rsp,
        rflags=rflags,
        cs=SegmentCache(cs_sel, 0, 0xFFFFFFFF, cs_flags),
        ss=ss,
        gdtr=(GDT, 8 * len(gdt) - 1),
        ldtr=SegmentCache(0, 0, 0, 0),
        idtr=(IDT, idt_limit),
        tr=SegmentCache(0x28, TSS, 0x67, 0x8B00 | (1 << 15)),
        cr2=0,
    )


def grub_cpu32(mem: FlatMemory) -> DeliveryCpu:
    """The state GRUB hands over: GDT at 0x10B0 with a null 0x08 slot, IDTR limit 0."""
    for i, d in enumerate([0, 0, CODE32, 0x00CF93000000FFFF]):
        struct.pack_into("<Q", mem.data, 0x10B0 + 8 * i, d)
    return DeliveryCpu(
        long_mode=False,
        cpl=0,
        rip=0x100123,
        rsp=0x7FF00,
        rflags=0x2,
        cs=SegmentCache(0x10, 0, 0xFFFFFFFF, CODE32 >> 32),
        ss=SegmentCache(0x18, 0, 0xFFFFFFFF, 0x00CF93000000FFFF >> 32),
        gdtr=(0x10B0, 0x20),
        ldtr=SegmentCache(0, 0, 0, 0),
        idtr=(0, 0),
        tr=SegmentCache(0, 0, 0, 0),
        cr2=0,
    )


def test_no_idt_escalates_ud_to_gp_to_double_fault_to_triple_fault() -> None:
    mem = FlatMemory()
    r = IdtDelivery(mem).deliver(grub_cpu32(mem), Event(6, "exception"))
    assert r.triple_fault and r.cpu is None
    chain = [(s.event.vector, s.event.error_code) for s in r.steps]
    assert chain == [(6, None), (13, 0x32), (8, 0)]
    assert "IDTR.limit is 0" in r.steps[0].reason
    assert "double fault" in r.steps[1].escalation
    assert "triple fault" in r.steps[2].escalation


def test_grub_gdt_null_slot_gives_gp_with_selector_0x08() -> None:
    mem = FlatMemory()
    cpu = grub_cpu32(mem)
    mem.data[IDT + 32 * 8 : IDT + 33 * 8] = gate32(0x100000, selector=0x08)
    from dataclasses import replace

    cpu = replace(cpu, idtr=(IDT, 0x7FF))
    r = IdtDelivery(mem).deliver(cpu, Event(32, "external"))
    assert r.steps[0].event.vector == 32 and not r.steps[0].ok
    assert r.steps[1].event.vector == 13 and r.steps[1].event.error_code == 0x0008
    assert "null descriptor" in r.steps[0].reason


def test_long_mode_interrupt_gate_frame() -> None:
    mem = FlatMemory()
    mem.data[IDT + 14 * 16 : IDT + 15 * 16] = gate64(0xFFFF_FFFF_8010_0000)
    cpu = cpu64(mem, rsp=0x8008)
    r = IdtDelivery(mem).deliver(cpu, Event(14, "exception", error_code=0x2, cr2=0xDEAD008))
    assert not r.triple_fault and r.steps[-1].ok
    new = r.cpu
    assert new.rip == 0xFFFF_FFFF_8010_0000
    assert new.rsp == 0x8000 - 6 * 8  # aligned down to 16, then 6 pushes
    frame = [mem.q(new.rsp + 8 * i) for i in range(6)]
    assert frame == [0x2, 0x4000, 0x08, 0x202, 0x8008, 0x10]
    assert not new.rflags & (1 << 9)  # interrupt gate clears IF
    assert new.cr2 == 0xDEAD008 and new.cs.selector == 0x08


def test_trap_gate_keeps_if_and_software_int_returns_after_the_instruction() -> None:
    mem = FlatMemory()
    mem.data[IDT + 0x80 * 16 : IDT + 0x81 * 16] = gate64(0x5000, type_=15, dpl=3)
    r = IdtDelivery(mem).deliver(cpu64(mem), Event(0x80, "software", next_rip=0x4002))
    assert r.cpu.rflags & (1 << 9)
    assert mem.q(r.cpu.rsp) == 0x4002


def test_ring3_to_ring0_switches_to_rsp0_and_ist_wins() -> None:
    mem = FlatMemory()
    struct.pack_into("<Q", mem.data, TSS + 4, 0x9000)  # RSP0
    struct.pack_into("<Q", mem.data, TSS + 0x24, 0xA000)  # IST1
    mem.data[IDT + 13 * 16 : IDT + 14 * 16] = gate64(0x6000)
    mem.data[IDT + 8 * 16 : IDT + 9 * 16] = gate64(0x7000, ist=1)
    user = cpu64(mem, cpl=3, rsp=0x5555)
    r = IdtDelivery(mem).deliver(user, Event(13, "exception", error_code=0x10))
    assert r.cpu.cpl == 0 and r.cpu.rsp == 0x9000 - 48
    assert r.cpu.ss.selector == 0 and r.cpu.cs.selector == 0x08
    assert [mem.q(r.cpu.rsp + 8 * i) for i in range(6)] == [0x10, 0x4000, 0x23, 0x202, 0x5555, 0x1B]
    r = IdtDelivery(mem).deliver(cpu64(mem), Event(8, "exception", error_code=0))
    assert r.cpu.rsp == 0xA000 - 48


def test_user_int_through_dpl0_gate_is_gp() -> None:
    mem = FlatMemory()
    mem.data[IDT + 0x80 * 16 : IDT + 0x81 * 16] = gate64(0x5000, dpl=0)
    mem.data[IDT + 13 * 16 : IDT + 14 * 16] = gate64(0x6000)
    struct.pack_into("<Q", mem.data, TSS + 4, 0x9000)
    r = IdtDelivery(mem).deliver(cpu64(mem, cpl=3), Event(0x80, "software", next_rip=0x4002))
    assert [s.event.vector for s in r.steps] == [0x80, 13]
    assert r.steps[1].event.error_code == 0x80 * 16 + 2
    assert r.cpu.rip == 0x6000


def test_not_present_gate_is_np() -> None:
    mem = FlatMemory()
    mem.data[IDT + 3 * 16 : IDT + 4 * 16] = gate64(0x5000, present=False)
    mem.data[IDT + 11 * 16 : IDT + 12 * 16] = gate64(0x6000)
    r = IdtDelivery(mem).deliver(cpu64(mem), Event(3, "software", next_rip=0x4001))
    assert r.steps[1].event.vector == 11 and r.steps[1].event.error_code == 3 * 16 + 2
    assert r.cpu.rip == 0x6000


def test_stack_overflow_into_unmapped_guard_page_double_faults_on_ist() -> None:
    mem = FlatMemory()
    mem.holes.append((0x7000, 0x8000))  # guard page below the stack
    struct.pack_into("<Q", mem.data, TSS + 0x24, 0xC000)  # IST1 for #DF
    mem.data[IDT + 14 * 16 : IDT + 15 * 16] = gate64(0x6000)
    mem.data[IDT + 8 * 16 : IDT + 9 * 16] = gate64(0x7100 + 0x10000, ist=1)
    r = IdtDelivery(mem).deliver(
        cpu64(mem, rsp=0x8000), Event(14, "exception", error_code=2, cr2=0x7FF8)
    )
    assert [s.event.vector for s in r.steps] == [14, 8]
    assert "pushing" in r.steps[0].reason
    assert r.cpu.rip == 0x17100 and r.cpu.rsp == 0xC000 - 48


def test_page_fault_in_page_fault_handler_delivery_is_triple_fault_without_df_gate() -> None:
    mem = FlatMemory()
    mem.holes.append((0x7000, 0x8000))
    mem.data[IDT + 14 * 16 : IDT + 15 * 16] = gate64(0x6000)
    # #DF gate uses the same (broken) stack: #PF -> #DF -> triple fault
    mem.data[IDT + 8 * 16 : IDT + 9 * 16] = gate64(0x6100)
    r = IdtDelivery(mem).deliver(
        cpu64(mem, rsp=0x8000), Event(14, "exception", error_code=2, cr2=0x7FF8)
    )
    assert r.triple_fault
    assert [s.event.vector for s in r.steps] == [14, 8]


@pytest.mark.parametrize(
    "descriptor,reason",
    [
        (CODE32, "not a 64-bit code segment"),
        (DATA, "not a code segment"),
        (CODE64 & ~(1 << 47), "not present"),
    ],
)
def test_gate_target_descriptor_checks(descriptor: int, reason: str) -> None:
    mem = FlatMemory()
    cpu = cpu64(mem)
    struct.pack_into("<Q", mem.data, GDT + 5 * 8, descriptor)
    mem.data[IDT + 32 * 16 : IDT + 33 * 16] = gate64(0x5000, selector=0x28)
    mem.data[IDT + 13 * 16 : IDT + 14 * 16] = gate64(0x6000)
    mem.data[IDT + 11 * 16 : IDT + 12 * 16] = gate64(0x6000)
    r = IdtDelivery(mem).deliver(cpu, Event(32, "external"))
    assert reason in r.steps[0].reason
    assert r.steps[1].event.error_code == 0x28


def test_contributory_during_divide_error_is_double_fault() -> None:
    mem = FlatMemory()
    mem.data[IDT + 0 : IDT + 16] = gate64(0x5000, selector=0x38)  # beyond the GDT limit
    mem.data[IDT + 8 * 16 : IDT + 9 * 16] = gate64(0x6000)
    r = IdtDelivery(mem).deliver(cpu64(mem), Event(0, "exception"))
    assert [(s.event.vector, s.event.error_code) for s in r.steps] == [(0, None), (8, 0)]
    assert "beyond the GDT limit" in r.steps[0].reason
    assert r.cpu.rip == 0x6000 and mem.q(r.cpu.rsp) == 0  # #DF pushes error code 0


def test_descriptor_bits_used_for_mode_checks() -> None:
    assert CODE64 >> 32 & DESC_L and not CODE64 >> 32 & DESC_B


def test_present_task_gate_is_a_clear_unsupported_stop() -> None:
    mem = FlatMemory()
    cpu = grub_cpu32(mem)
    from dataclasses import replace

    cpu = replace(cpu, idtr=(IDT, 0x7FF))
    mem.data[IDT + 8 * 8 : IDT + 9 * 8] = gate32(0, selector=0x28, type_=5)
    r = IdtDelivery(mem).deliver(cpu, Event(8, "exception", error_code=0))
    assert r.unsupported.startswith("IDT[8] is a task gate: task gates are not supported")
    assert r.cpu is None and not r.triple_fault
