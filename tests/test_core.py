"""The CPU core on hand-assembled 32-bit guests: exact instruction counts, stops, RDTSC, steps."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from unicorn import x86_const as X

from emu.core import engine as core

GDT = 0x10B0
CODE = 0x2000


def _gdt(ram: np.ndarray) -> None:
    # GRUB's layout: null, null, flat code 0x10, flat data 0x18.
    entries = [0, 0, 0x00CF9A000000FFFF, 0x00CF93000000FFFF]
    ram[GDT : GDT + 32] = np.frombuffer(struct.pack("<4Q", *entries), np.uint8)


def _prologue(code_addr: int) -> bytes:
    """ljmp $0x10,$next; mov $0x18,%eax; mov %eax,%ds/%es/%ss; mov $0x7ff00,%esp (7 insns)."""
    nxt = code_addr + 7
    return (
        b"\xea" + struct.pack("<IH", nxt, 0x10)
        + b"\xb8\x18\x00\x00\x00"
        + b"\x8e\xd8\x8e\xc0\x8e\xd0"
        + b"\xbc\x00\xff\x07\x00"
    )  # fmt: skip


PROLOGUE_INSNS = 6
BODY = CODE + len(_prologue(CODE))


class Guest:
    def __init__(
        self, body: bytes, ports: dict[int, int] | None = None, deliver: bool = False
    ) -> None:
        self.ram = np.zeros(4 << 20, np.uint8)
        self.outs: list[tuple[int, int, int]] = []
        self.ports = ports or {}
        _gdt(self.ram)
        code = _prologue(CODE) + body
        self.ram[CODE : CODE + len(code)] = np.frombuffer(code, np.uint8)
        self.deliveries: list = []
        self.core = core.UnicornCore(
            self.ram,
            self._in,
            self._out,
            deliver_exceptions=deliver,
            on_delivery=lambda ev, exc, res: self.deliveries.append(res),
        )
        self.core.enter_grub_protected_mode(gdt_base=GDT, gdt_limit=0x20, entry=CODE, registers={})

    def _in(self, port: int, size: int) -> int:
        return self.ports.get(port, 0xFF)

    def _out(self, port: int, size: int, value: int) -> None:
        self.outs.append((port, size, value))
        if port == 0xF4:
            self.core.request_stop("exit")

    def run(self, deadline: int = 1 << 40, limit: int = 1 << 40) -> core.SliceEnd:
        return self.core.run_slice(deadline, limit)


def _loop(n: int) -> bytes:
    # mov $n,%ecx; 1: inc %ebx; dec %ecx; jnz 1b; cli; hlt
    return b"\xb9" + struct.pack("<I", n) + b"\x43\x49\x75\xfc\xfa\xf4"


def test_boot_state_is_grub_protected_mode() -> None:
    g = Guest(b"\xfa\xf4")
    s = g.core.state()
    assert s.mode == "prot32"
    assert s.cr0 == 0x11 and s.cr3 == 0 and s.cr4 == 0 and s.efer == 0
    assert not s.interrupts_enabled
    assert s.gdtr == (GDT, 0x20) and s.idtr == (0, 0)
    end = g.run()
    assert end.kind == core.KIND_HALT
    s = g.core.state()
    assert s.segments["cs"].selector == 0x10 and s.segments["ss"].selector == 0x18
    assert s.gpr["rsp"] == 0x7FF00


@pytest.mark.parametrize("n", [1, 7, 1000, 123_457])
def test_instruction_count_is_exact(n: int) -> None:
    g = Guest(_loop(n))
    end = g.run()
    assert end.kind == core.KIND_HALT
    # prologue + mov + 3 per iteration + cli + hlt
    assert g.core.icount == PROLOGUE_INSNS + 1 + 3 * n + 2
    assert g.core.state().gpr["rbx"] == n


def test_deadline_slices_are_deterministic_and_lose_nothing() -> None:
    counts = []
    for _ in range(2):
        g = Guest(_loop(50_000))
        seen = []
        while True:
            end = g.run(deadline=g.core.icount + 10_000)
            seen.append(g.core.icount)
            if end.kind != core.KIND_DEADLINE:
                break
        assert end.kind == core.KIND_HALT
        assert g.core.state().gpr["rbx"] == 50_000
        counts.append(seen)
    assert counts[0] == counts[1]
    assert counts[0][-1] == PROLOGUE_INSNS + 1 + 3 * 50_000 + 2
    # every slice ends on a block boundary at or just past its deadline
    assert all(b - a >= 10_000 for a, b in zip([0] + counts[0][:-2], counts[0][:-1], strict=True))


def test_hard_limit_is_never_crossed() -> None:
    g = Guest(_loop(1000))
    end = g.run(limit=500)
    assert end.kind == core.KIND_LIMIT
    assert g.core.icount <= 500
    while g.core.icount < 500:
        assert g.core.step() is None
    assert g.core.icount == 500
    end = g.run()
    assert end.kind == core.KIND_HALT
    assert g.core.icount == PROLOGUE_INSNS + 1 + 3000 + 2


def test_invalid_opcode_stops_with_ud_and_exact_count() -> None:
    # nop; nop; ud2
    g = Guest(b"\x90\x90\x0f\x0b")
    end = g.run()
    assert end.kind == core.KIND_EXCEPTION
    exc = end.exception
    assert exc.vector == 6 and exc.rip == BODY + 2 and exc.mode == "prot32"
    assert exc.error_code is None
    assert g.core.icount == PROLOGUE_INSNS + 2


def test_divide_error_is_a_fault_at_the_div() -> None:
    # xor %edx,%edx; xor %ecx,%ecx; mov $1,%eax; div %ecx
    body = b"\x31\xd2\x31\xc9\xb8\x01\x00\x00\x00\xf7\xf1"
    g = Guest(body)
    end = g.run()
    assert end.kind == core.KIND_EXCEPTION
    assert end.exception.vector == 0
    assert end.exception.rip == BODY + 9
    assert g.core.icount == PROLOGUE_INSNS + 3


def test_general_protection_carries_its_error_code() -> None:
    # mov $0x2b,%eax; mov %eax,%ds  -> #GP(0x28): selector 0x28 is beyond the GDT limit
    g = Guest(b"\xb8\x2b\x00\x00\x00\x8e\xd8")
    end = g.run()
    assert end.exception.vector == 13
    assert end.exception.error_code == 0x28


def test_int3_is_a_trap_reported_at_the_instruction() -> None:
    """INT3 retires (a trap: counted, RIP after it), and is reported at its own address, as
    QEMU's -d int reports it."""
    g = Guest(b"\x90\xcc\x90")
    end = g.run()
    assert end.exception.vector == 3 and end.exception.software
    assert end.exception.rip == BODY + 1
    assert g.core.uc.reg_read(X.UC_X86_REG_RIP) == BODY + 2
    assert g.core.icount == PROLOGUE_INSNS + 2


def test_int_n_is_reported_at_the_instruction_with_a_prefix() -> None:
    g = Guest(b"\x90\x66\xcd\x41\x90")  # a prefixed INT 0x41 (three bytes)
    end = g.run()
    assert end.exception.vector == 0x41 and end.exception.software
    assert end.exception.rip == BODY + 1
    assert g.core.uc.reg_read(X.UC_X86_REG_RIP) == BODY + 4


def test_rdtsc_is_virtual_time() -> None:
    # nop x3; rdtsc; mov %eax,%esi; rdtsc; cli; hlt
    body = b"\x90\x90\x90\x0f\x31\x89\xc6\x0f\x31\xfa\xf4"
    values = []
    for _ in range(2):
        g = Guest(body)
        assert g.run().kind == core.KIND_HALT
        s = g.core.state()
        values.append((s.gpr["rsi"], s.gpr["rax"], s.gpr["rdx"]))
    assert values[0] == values[1]
    first, second, high = values[0]
    assert first == PROLOGUE_INSNS + 3  # instructions retired before the first RDTSC
    assert second == first + 2 and high == 0


def test_out_reaches_ports_and_a_device_can_stop_the_run() -> None:
    # mov $0x41,%al; out %al,$0xe9; mov $0x7,%al; out %al,$0xf4; jmp .
    g = Guest(b"\xb0\x41\xe6\xe9\xb0\x07\xe6\xf4\xeb\xfe")
    end = g.run()
    assert end.kind == core.KIND_REQUESTED
    assert g.outs == [(0xE9, 1, 0x41), (0xF4, 1, 7)]


def test_in_reads_the_port_value() -> None:
    # in $0x60,%al; mov %eax,%ebx; cli; hlt
    g = Guest(b"\xb8\x00\x00\x00\x00\xe4\x60\x89\xc3\xfa\xf4", ports={0x60: 0x5A})
    assert g.run().kind == core.KIND_HALT
    assert g.core.state().gpr["rbx"] == 0x5A


def test_access_outside_ram_is_a_clear_stop() -> None:
    # mov 0x40000000,%eax (1 GiB, RAM is 4 MiB)
    g = Guest(b"\xa1\x00\x00\x00\x40")
    end = g.run()
    assert end.kind == core.KIND_UNMAPPED
    assert "0x40000000" in end.detail and "outside guest RAM" in end.detail


def test_single_step_counts_one_instruction_each() -> None:
    g = Guest(_loop(3))
    for i in range(1, 12):
        assert g.core.step() is None
        assert g.core.icount == i
    assert g.core.state().mode == "prot32"


IDT = 0x3000
IDTR_PTR = 0x3800


def _idt_guest(body: bytes, handlers: dict[int, bytes]) -> Guest:
    """A guest that loads a 32-bit IDT whose gates point at the given handler bytes."""
    lidt = b"\x0f\x01\x1d" + struct.pack("<I", IDTR_PTR)
    g = Guest(lidt + body, deliver=True)
    struct.pack_into("<HI", g.ram, IDTR_PTR, 0x7FF, IDT)
    at = 0x4000
    for vector, code in handlers.items():
        g.ram[at : at + len(code)] = np.frombuffer(code, np.uint8)
        lo = (at & 0xFFFF) | (0x10 << 16)
        hi = (at & 0xFFFF0000) | 0x8E00  # present, DPL 0, 32-bit interrupt gate
        struct.pack_into("<II", g.ram, IDT + 8 * vector, lo, hi)
        at += 0x100
    return g


def test_divide_error_is_delivered_to_the_guest_handler_and_resumes() -> None:
    # handler: inc %esi; addl $2,(%esp) (skip the 2-byte div); iret
    handler = b"\x46\x83\x04\x24\x02\xcf"
    body = b"\x31\xd2\x31\xc9\xb8\x01\x00\x00\x00\xf7\xf1\xfa\xf4"
    g = _idt_guest(body, {0: handler})
    end = g.run()
    assert end.kind == core.KIND_HALT
    s = g.core.state()
    assert s.gpr["rsi"] == 1 and s.gpr["rsp"] == 0x7FF00 and s.mode == "prot32"
    assert len(g.deliveries) == 1 and g.deliveries[0].steps[0].ok
    # prologue + lidt + 3 + div(faulted, not retired) + handler 3 + cli + hlt
    assert g.core.icount == PROLOGUE_INSNS + 1 + 3 + 3 + 2


def test_no_idt_is_a_triple_fault_with_the_grub_chain() -> None:
    g = Guest(b"\x90\x0f\x0b", deliver=True)
    end = g.run()
    assert end.kind == core.KIND_TRIPLE_FAULT
    chain = [(s.event.vector, s.event.error_code) for s in g.deliveries[0].steps]
    assert chain == [(6, None), (13, 0x32), (8, 0)]
    assert g.deliveries[0].triple_fault
    assert g.core.icount == PROLOGUE_INSNS + 1


def test_sysenter_transfers_to_the_msr_entry_point() -> None:
    # wrmsr 0x174 (CS=0x10), 0x175 (ESP=0x6000), 0x176 (EIP=0x3000); sti; sysenter
    def wrmsr(msr: int, value: int) -> bytes:
        return (b"\xb9" + struct.pack("<I", msr) + b"\xb8" + struct.pack("<I", value)
                + b"\x31\xd2\x0f\x30")  # fmt: skip

    body = wrmsr(0x174, 0x10) + wrmsr(0x175, 0x6000) + wrmsr(0x176, 0x3000) + b"\xfb\x0f\x34"
    g = Guest(body, deliver=True)
    g.ram[0x3000] = 0xF4  # hlt at the entry point
    end = g.run()
    assert end.kind == core.KIND_HALT
    s = g.core.state()
    assert s.rip == 0x3001 and s.gpr["rsp"] == 0x6000
    assert s.segments["cs"].selector == 0x10 and s.segments["ss"].selector == 0x18
    assert not s.interrupts_enabled  # SYSENTER clears IF


def test_sysenter_without_a_cs_msr_is_gp() -> None:
    g = Guest(b"\x0f\x34", deliver=False)
    g.core.deliver_exceptions = False
    end = g.run()
    assert end.kind == core.KIND_EXCEPTION
    assert end.exception.vector == 13 and end.exception.error_code == 0


def test_int1_icebp_is_a_debug_trap() -> None:
    # nop; int1; nop; cli; hlt -- the #DB handler counts in %esi and returns after INT1
    g = _idt_guest(b"\x90\xf1\x90\xfa\xf4", {1: b"\x46\xcf"})
    assert g.run().kind == core.KIND_HALT
    assert g.core.state().gpr["rsi"] == 1
    assert [s.event.vector for s in g.deliveries[0].steps] == [1]


def test_into_raises_overflow_only_when_of_is_set() -> None:
    # mov $0x7fffffff,%eax; inc %eax (OF=1); into
    g = Guest(b"\xb8\xff\xff\xff\x7f\x40\xce\xfa\xf4")
    end = g.run()
    assert end.exception.vector == 4 and end.exception.software
    g = Guest(b"\xb8\x01\x00\x00\x00\x40\xce\xfa\xf4")  # no overflow: INTO does nothing
    assert g.run().kind == core.KIND_HALT


def test_cpuid_hides_the_local_apic_it_does_not_have() -> None:
    # mov $1,%eax; xor %ecx,%ecx; cpuid; mov %edx,%esi; mov $0x80000001,%eax; cpuid; cli; hlt
    body = b"\xb8\x01\x00\x00\x00\x31\xc9\x0f\xa2\x89\xd6\xb8\x01\x00\x00\x80\x0f\xa2\xfa\xf4"
    g = Guest(body)
    assert g.run().kind == core.KIND_HALT
    s = g.core.state()
    assert not s.gpr["rsi"] & (1 << 9)  # leaf 1 EDX.APIC cleared
    assert s.gpr["rsi"] & 1  # FPU and the rest are still reported
    assert s.gpr["rdx"] & (1 << 29)  # other leaves unchanged: 0x80000001 EDX.LM
