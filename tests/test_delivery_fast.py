"""The compiled delivery of external interrupts (emu/faults/kernels.py) against its reference
twin, the Python IDT model (emu/faults/delivery.py).

Two cores are brought to the same state (a long-mode guest spinning at CPL 0 or 3, images of
test_delivery_oracle), then one delivers an external interrupt through the compiled path and
the other through the Python model. Compared: all of guest RAM (frame bytes, A/D bits), RIP, RSP,
RFLAGS, the CS and SS caches, hflags, QEMU's #DF tracker and the delivery result the fault trace
is built from. Cases the compiled path does not take (a check that faults, protected mode) must
decline with the expected reason, and the Python model must then give the same result as when
it runs alone.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import test_delivery_oracle as T
from unicorn import x86_const as X

from emu.core import internals as I
from emu.core.engine import KIND_DEADLINE, UnicornCore
from emu.errors import InternalError
from emu.faults import layout as DL

T.TRIGGERS["spin"] = "1: jmp 1b"
VECTOR = 0x20
CONFORMING = 0x38  # GDT slot 7 (after the 16-byte TSS descriptor): conforming 64-bit code, DPL 0


def _core(sc: dict) -> UnicornCore:
    ram = T.image({"mode": sc.get("mode", "long"), "trigger": "spin", **sc})
    struct.pack_into("<Q", ram, T.GDT + CONFORMING, 0x00AF9E000000FFFF)
    calls: list[tuple] = []
    core = UnicornCore(
        ram, lambda p, s: 0xFF, lambda p, s, v: None, on_delivery=lambda *a: calls.append(a)
    )
    core.calls = calls  # type: ignore[attr-defined]
    core.enter_grub_protected_mode(gdt_base=T.GDT, gdt_limit=0x3F, entry=T.CODE, registers={})
    end = core.run_slice(2_000, 1 << 40)
    assert end.kind == KIND_DEADLINE, end
    assert core.internals.hflags & 3 == sc.get("cpl", 0)
    for reg, value in sc.get("regs", {}).items():
        core.uc.reg_write(reg, value)
    if "rsp0" in sc:
        struct.pack_into("<Q", ram, T.TSS + 4, sc["rsp0"])
    return core


def _state(core: UnicornCore) -> dict:
    env = core.internals
    return {
        "rip": env.u64(I.ENV_EIP),
        "rsp": core.uc.reg_read(X.UC_X86_REG_RSP),
        "rflags": core.uc.reg_read(X.UC_X86_REG_RFLAGS),
        "cs": env.segment(I.SEG_CS),
        "ss": env.segment(I.SEG_SS),
        "hflags": env.hflags,
        "old_exception": env.old_exception,
        "cr2": env.u64(I.ENV_CR2),
    }


def _deliver_both(sc: dict, vector: int = VECTOR):
    fast, slow = _core(sc), _core(sc)
    slow.fast_delivery = False
    assert np.array_equal(fast.ram, slow.ram) and _state(fast) == _state(slow)
    r_fast = fast.deliver_external(vector)
    r_slow = slow.deliver_external(vector)
    return fast, slow, r_fast, r_slow


CASES = {
    "interrupt gate, CPL 0": {},
    "trap gate keeps IF": {"gate": {VECTOR: {"type_": 15}}, "regs": {X.UC_X86_REG_RFLAGS: 0x246}},
    "IST1, CPL 0": {"gate": {VECTOR: {"ist": 1}}},
    "CPL 3 to 0 through RSP0": {"cpl": 3},
    "CPL 3 through a DPL 0 gate": {"cpl": 3, "gate": {VECTOR: {"dpl": 0}}},
    "CPL 3 with IST1": {"cpl": 3, "gate": {VECTOR: {"ist": 1}}},
    "conforming code segment from CPL 3": {"cpl": 3, "gate": {VECTOR: {"selector": CONFORMING}}},
    "odd RSP is aligned down": {"regs": {X.UC_X86_REG_RSP: 0x7FFF9}},
    "flags TF NT RF are cleared": {"regs": {X.UC_X86_REG_RFLAGS: 0x14302 | 0x4000}},
}

DECLINED = {
    "gate not present": ({"gate": {VECTOR: {"present": False}}}, DL.FB_GATE),
    "not an interrupt or trap gate": ({"gate": {VECTOR: {"type_": 6}}}, DL.FB_GATE),
    "selector beyond the GDT": ({"gate": {VECTOR: {"selector": 0x40}}}, DL.FB_SELECTOR),
    "null selector": ({"gate": {VECTOR: {"selector": 0}}}, DL.FB_SELECTOR),
    "LDT selector": ({"gate": {VECTOR: {"selector": 0x0C}}}, DL.FB_SELECTOR),
    "data segment": ({"gate": {VECTOR: {"selector": 0x10}}}, DL.FB_CODE_SEGMENT),
    "stack not mapped": ({"stack_unmapped": True}, DL.FB_MEMORY),
    "RSP0 stack not mapped": ({"cpl": 3, "rsp0": T.UNMAPPED + 0x800}, DL.FB_MEMORY),
    "RSP0 stack read-only": ({"cpl": 3, "rsp0": T.READ_ONLY + 0x800}, DL.FB_MEMORY),
    "non-canonical RSP0": ({"cpl": 3, "rsp0": 0x0000_8000_0000_0000}, DL.FB_MEMORY),
    "IDT limit": ({"regs": {X.UC_X86_REG_IDTR: (0, T.IDT, 0x1FF, 0)}}, DL.FB_IDT_LIMIT),
    "IDT not mapped": ({"regs": {X.UC_X86_REG_IDTR: (0, T.UNMAPPED, 0xFFF, 0)}}, DL.FB_MEMORY),
    "no TSS": ({"cpl": 3, "regs": {X.UC_X86_REG_TR: (0, 0, 0, 0)}}, DL.FB_TSS),
}


def _same(fast, slow, r_fast, r_slow) -> None:
    assert _state(fast) == _state(slow)
    assert np.array_equal(fast.ram, slow.ram), "guest memory differs (frame or A/D bits)"
    assert r_fast.steps == r_slow.steps
    assert (r_fast.triple_fault, r_fast.unsupported) == (r_slow.triple_fault, r_slow.unsupported)
    assert len(fast.calls) == len(slow.calls) == 1
    (ev_f, exc_f, _), (ev_s, exc_s, _) = fast.calls[0], slow.calls[0]
    assert ev_f == ev_s
    assert (exc_f.vector, exc_f.rip, exc_f.mode, exc_f.cpl) == (
        exc_s.vector, exc_s.rip, exc_s.mode, exc_s.cpl
    )  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_compiled_delivery_matches_the_model(name: str) -> None:
    fast, slow, r_fast, r_slow = _deliver_both(CASES[name])
    assert fast.fast_deliveries == 1 and slow.fast_deliveries == 0
    _same(fast, slow, r_fast, r_slow)
    assert r_fast.steps[-1].ok


@pytest.mark.parametrize("name", DECLINED)
def test_compiled_delivery_declines_and_the_model_decides(name: str) -> None:
    sc, why = DECLINED[name]
    fast, slow, r_fast, r_slow = _deliver_both(sc)
    assert fast.fast_deliveries == 0
    assert int(fast._fast_out[DL.DO_STATUS]) == DL.FALLBACK
    assert int(fast._fast_out[DL.DO_WHY]) == why
    _same(fast, slow, r_fast, r_slow)


def test_the_frame_is_the_architectural_one() -> None:
    """Independent of the model: the 64-bit frame of SDM 6.14.2 on the RSP0 stack."""
    core = _core({"cpl": 3})
    before = _state(core)
    rflags = before["rflags"]
    core.deliver_external(VECTOR)
    after = _state(core)
    assert after["rip"] == T.HANDLERS + 16 * VECTOR
    assert after["rsp"] == T.RSP0 - 40 and after["hflags"] & 3 == 0
    assert after["cs"][0] == 0x08 and after["ss"][0] == 0
    assert after["rflags"] & 0x200 == 0
    frame = struct.unpack_from("<5Q", core.ram, T.RSP0 - 40)
    assert frame == (before["rip"], before["cs"][0], rflags, before["rsp"], before["ss"][0])


def test_the_guest_runs_on_in_the_handler() -> None:
    """After a compiled delivery the CPU really executes the handler (a HLT in the image)."""
    core = _core({})
    core.deliver_external(VECTOR)
    end = core.run_slice(1 << 40, 1 << 40)
    assert end.kind == "halt" or end.address == T.HANDLERS + 16 * VECTOR
    assert core.uc.reg_read(X.UC_X86_REG_RIP) == T.HANDLERS + 16 * VECTOR + 1


# ------------------------------------------------------------------ 32-bit protected mode
# The protected-mode image of the oracle corpus (flat code 0x08 and data 0x10, paging off, 32-bit
# gates), with a DPL 3 code (0x1B) and data (0x23) segment, a 32-bit TSS (0x28: ESP0 and SS0
# 0x10), a 16-bit data segment (0x30, B=0) and a conforming code segment (0x38).
T.TRIGGERS["ring3_spin32"] = (
    "movw $0x28, %ax; ltr %ax; pushl $0x23; pushl $0xB0000; pushl $0x202; pushl $0x1B; "
    "pushl $1f; iretl; 1: jmp 1b"
)
T.TRIGGERS["stack16_spin32"] = "movw $0x30, %ax; movw %ax, %ss; movl $0x12347FFE, %esp; 1: jmp 1b"
GDT32_EXTRA = [
    0x00CFFA000000FFFF,  # 0x18: user code, DPL 3
    0x00CFF2000000FFFF,  # 0x20: user data, DPL 3
    0x0000890000000067 | (T.TSS & 0xFFFFFF) << 16,  # 0x28: 32-bit TSS, available
    0x000092000000FFFF,  # 0x30: 16-bit data segment (B=0), base 0, limit 64 KiB
    0x00CF9E000000FFFF,  # 0x38: conforming 32-bit code, DPL 0
]


def _core32(sc: dict) -> UnicornCore:
    trigger = "ring3_spin32" if sc.get("cpl") == 3 else sc.get("trigger", "spin")
    ram = T.image({"mode": "prot", "trigger": trigger, "gate": sc.get("gate", {})})
    for i, d in enumerate(GDT32_EXTRA, 3):
        struct.pack_into("<Q", ram, T.GDT + 8 * i, d)
    struct.pack_into("<II", ram, T.TSS + 4, sc.get("esp0", T.RSP0), sc.get("ss0", 0x10))
    calls: list[tuple] = []
    core = UnicornCore(
        ram, lambda p, s: 0xFF, lambda p, s, v: None, on_delivery=lambda *a: calls.append(a)
    )
    core.calls = calls  # type: ignore[attr-defined]
    core.enter_grub_protected_mode(gdt_base=T.GDT, gdt_limit=0x3F, entry=T.CODE, registers={})
    end = core.run_slice(2_000, 1 << 40)
    assert end.kind == KIND_DEADLINE, end
    assert core.internals.hflags & (I.HF_LMA | I.HF_PE | 3) == I.HF_PE | sc.get("cpl", 0)
    for reg, value in sc.get("regs", {}).items():
        core.uc.reg_write(reg, value)
    return core


def _deliver_both32(sc: dict, vector: int = VECTOR):
    fast, slow = _core32(sc), _core32(sc)
    slow.fast_delivery = False
    assert np.array_equal(fast.ram, slow.ram) and _state(fast) == _state(slow)
    return fast, slow, fast.deliver_external(vector), slow.deliver_external(vector)


CASES32 = {
    "interrupt gate, CPL 0": {},
    "trap gate keeps IF": {"gate": {VECTOR: {"type_": 15}}, "regs": {X.UC_X86_REG_RFLAGS: 0x246}},
    "flags TF NT RF are cleared": {"regs": {X.UC_X86_REG_RFLAGS: 0x14302 | 0x4000}},
    "odd ESP, upper half of RSP kept": {"regs": {X.UC_X86_REG_RSP: 0x5_0007FFF9}},
    "16-bit stack: SP wraps, the upper half of ESP kept": {"trigger": "stack16_spin32"},
    "CPL 3 to 0 through the TSS's SS0:ESP0": {"cpl": 3},
    "CPL 3 through a DPL 3 trap gate": {"cpl": 3, "gate": {VECTOR: {"dpl": 3, "type_": 15}}},
    "conforming code segment from CPL 3": {"cpl": 3, "gate": {VECTOR: {"selector": 0x38}}},
}

DECLINED32 = {
    "gate not present": ({"gate": {VECTOR: {"present": False}}}, DL.FB_GATE),
    "16-bit interrupt gate": ({"gate": {VECTOR: {"type_": 6}}}, DL.FB_GATE),
    "task gate": ({"gate": {VECTOR: {"type_": 5}}}, DL.FB_GATE),
    "selector beyond the GDT": ({"gate": {VECTOR: {"selector": 0x40}}}, DL.FB_SELECTOR),
    "null selector": ({"gate": {VECTOR: {"selector": 0}}}, DL.FB_SELECTOR),
    "LDT selector": ({"gate": {VECTOR: {"selector": 0x0C}}}, DL.FB_SELECTOR),
    "data segment": ({"gate": {VECTOR: {"selector": 0x10}}}, DL.FB_CODE_SEGMENT),
    "IDT limit": ({"regs": {X.UC_X86_REG_IDTR: (0, T.IDT, 0xFF, 0)}}, DL.FB_IDT_LIMIT),
    "no TSS": ({"cpl": 3, "regs": {X.UC_X86_REG_TR: (0, 0, 0, 0)}}, DL.FB_TSS),
    "TSS SS0 null": ({"cpl": 3, "ss0": 0}, DL.FB_TSS),
    "TSS SS0 a code segment": ({"cpl": 3, "ss0": 0x08}, DL.FB_TSS),
    "TSS SS0 with RPL 3": ({"cpl": 3, "ss0": 0x13}, DL.FB_TSS),
    "TSS ESP0 beyond RAM": ({"cpl": 3, "esp0": 0x1000_0000}, DL.FB_MEMORY),
}


@pytest.mark.parametrize("name", CASES32)
def test_compiled_delivery_matches_the_model_in_protected_mode(name: str) -> None:
    fast, slow, r_fast, r_slow = _deliver_both32(CASES32[name])
    assert fast.fast_deliveries == 1 and slow.fast_deliveries == 0
    _same(fast, slow, r_fast, r_slow)
    assert r_fast.steps[-1].ok


@pytest.mark.parametrize("name", DECLINED32)
def test_compiled_delivery_declines_in_protected_mode_and_the_model_decides(name: str) -> None:
    sc, why = DECLINED32[name]
    fast, slow, r_fast, r_slow = _deliver_both32(sc)
    assert fast.fast_deliveries == 0
    assert int(fast._fast_out[DL.DO_STATUS]) == DL.FALLBACK
    assert int(fast._fast_out[DL.DO_WHY]) == why
    _same(fast, slow, r_fast, r_slow)


def test_the_32bit_frame_is_the_architectural_one() -> None:
    """Independent of the model: SDM 6.12.1's frame on the TSS's ring-0 stack, 4 bytes each."""
    core = _core32({"cpl": 3})
    before = _state(core)
    core.deliver_external(VECTOR)
    after = _state(core)
    assert after["rip"] == T.HANDLERS + 16 * VECTOR
    assert after["rsp"] == T.RSP0 - 20 and after["hflags"] & 3 == 0
    assert after["cs"][0] == 0x08 and after["ss"][0] == 0x10 and after["rflags"] & 0x200 == 0
    frame = struct.unpack_from("<5I", core.ram, T.RSP0 - 20)
    assert frame == (before["rip"], 0x1B, before["rflags"], 0xB0000, 0x23)


def test_real_mode_goes_through_the_model() -> None:
    core = _core32({})
    core.uc.reg_write(X.UC_X86_REG_CR0, core.uc.reg_read(X.UC_X86_REG_CR0) & ~1)
    core.internals.update_hflags()
    result = core.deliver_external(VECTOR)
    assert core.fast_deliveries == 0 and result is not None
    assert int(core._fast_out[DL.DO_WHY]) == DL.FB_REAL_MODE


# ------------------------------------------------------------------ armed timer interrupts


def _timer_guest(divisor: int, *, handler: str = "", loop: int = 30_000, user: bool = False):
    """A long-mode guest: PIC remapped to 0x20, the PIT at ``divisor``, IF=1, a busy loop (at
    CPL 3 with ``user``); the IRQ 0 handler counts, runs ``handler``, EOIs and returns."""
    import timer_guest

    return timer_guest.machine(divisor, loop=loop, handler=handler, user=user)


def _run(m, budget: int = 5_000_000):
    r = m.run(max_instructions=budget)
    return r, bytes(m.ram), r.trace.to_list()


@pytest.mark.parametrize(
    "handler",
    [
        "",  # the plain case
        "sti; nop; nop; cli",  # nested-capable window inside the handler
        "pushfq; popq %rbx; movq %rbx, 0x30100",  # the pushed flags, as the handler sees them
        "movq 24(%rsp), %rbx; movq %rbx, 0x30108",  # the CS in the frame
    ],
)
def test_armed_delivery_is_the_stop_path(handler: str) -> None:
    """The hook delivering the timer interrupt itself must change nothing but the speed."""
    runs = []
    for arm in (True, False):
        m = _timer_guest(2, handler=handler)
        m.arm_timer = arm
        outs = []
        write = m.core.port_write
        m.core.port_write = lambda p, s, v, w=write, o=outs: (o.append(p), w(p, s, v))[1]
        runs.append((_run(m), m.core.armed_deliveries, m.core.fast_deliveries, len(outs)))
    (armed, n_armed, fast, outs_armed), (stopped, n_stopped, _, outs_stopped) = runs
    assert n_armed > 50 and n_stopped == 0 and fast >= n_armed
    # the steady state: the EOIs were taken by the compiled OUT hook, not by Python
    assert outs_stopped >= n_armed and outs_armed < 5
    assert armed[0].instructions == stopped[0].instructions
    assert armed[0].stop_reason == stopped[0].stop_reason == "halted"
    assert armed[1] == stopped[1], "guest memory differs"
    assert armed[2] == stopped[2], "fault traces differ"


def test_armed_delivery_from_user_mode_switches_stacks() -> None:
    runs = []
    for arm in (True, False):
        m = _timer_guest(3, user=True, handler="movq 48(%rsp), %rbx; movq %rbx, 0x30110")
        m.arm_timer = arm
        runs.append((_run(m), m.core.armed_deliveries))
    (armed, n), (stopped, _) = runs
    assert n > 50
    assert armed[1] == stopped[1] and armed[2] == stopped[2]
    assert int.from_bytes(armed[1][0x30110:0x30118], "little") == 0x1B  # SS of the user frame
    cpls = {e["cpl"] for e in armed[2]}
    assert cpls == {3}  # every tick interrupted the user loop


def test_armed_delivery_declined_by_the_kernel_goes_to_the_model() -> None:
    """A gate the compiled path does not take: the hook stops and the Python model delivers."""
    m = _timer_guest(2, loop=2_000)
    entry = bytearray(m.ram[T.IDT + 16 * 0x20 : T.IDT + 16 * 0x21].tobytes())
    entry[2] |= 4  # selector 0x08 -> 0x0C (TI=1): not taken by the compiled path
    m.write_physical(T.IDT + 16 * 0x20, bytes(entry))
    r = m.run(max_instructions=1_000_000)
    assert m.core.armed_deliveries == 0
    assert r.trace.entries and r.trace.entries[0].vector == 0x20
    assert not r.trace.entries[0].delivered  # the model finds the LDT limit 0 and faults


# A 32-bit protected-mode kernel as GRUB starts it (flat segments, paging off): its timer
# interrupts are armed too. The handlers count at 0x200000 and end with the plain EOI.
_GUEST32 = """
    movl $0x1f0000, %esp
    movw %cs, %bx
    movl $pit_handler, %eax
    movl $(idt + 8 * 0x20), %edi
    call set_gate
    movl $lapic_handler, %eax
    movl $(idt + 8 * 0x40), %edi
    call set_gate
    lidt idtr
    movl $0, 0x200000
{setup}
    sti
    movl ${iterations}, %ecx
7:  decl %ecx
    jnz 7b
    cli
{teardown}
    jmp done
set_gate:
    movw %ax, (%edi)
    movw %bx, 2(%edi)
    movw $0x8E00, 4(%edi)
    shrl $16, %eax
    movw %ax, 6(%edi)
    ret
    .balign 16
pit_handler:
    incl 0x200000
    pushl %eax
    movb $0x20, %al
    outb %al, $0x20
    popl %eax
    iret
    .balign 16
lapic_handler:
    incl 0x200000
    movl $0, 0xFEE000B0
    iret
    .data
    .balign 8
idtr:
    .short 256 * 8 - 1
    .long idt
    .balign 16
idt:
    .fill 256 * 8, 1, 0
    .text
done:
"""
_TIMER32 = {
    # the 8259s at 0x20, IRQ 0 alone unmasked, the PIT at divisor 3 (about 2,500 instructions)
    "pit": (
        "    movb $0x11, %al; outb %al, $0x20; movb $0x20, %al; outb %al, $0x21\n"
        "    movb $0x04, %al; outb %al, $0x21; movb $0x01, %al; outb %al, $0x21\n"
        "    movb $0xfe, %al; outb %al, $0x21; movb $0xff, %al; outb %al, $0xa1\n"
        "    movb $0x34, %al; outb %al, $0x43; movb $3, %al; outb %al, $0x40\n"
        "    movb $0, %al; outb %al, $0x40\n",
        "    movb $0xff, %al; outb %al, $0x21\n",
    ),
    # the 8259s masked, the local APIC timer periodic every 2,000 ns at vector 0x40
    "lapic": (
        "    movb $0xff, %al; outb %al, $0x21; outb %al, $0xa1\n"
        "    movl $0xb, 0xFEE003E0; movl $0x20040, 0xFEE00320; movl $1999, 0xFEE00380\n",
        "    movl $0x10000, 0xFEE00320\n",
    ),
}


def _counting(write, where: int, seen: list[int]):
    """``write(where_or_port, size, value)`` that also notes each access to ``where``."""

    def counted(address: int, size: int, value: int) -> None:
        if address == where:
            seen.append(address)
        write(address, size, value)

    return counted


@pytest.mark.parametrize("timer", ["pit", "lapic"])
def test_a_32bit_guest_takes_its_timer_interrupts_on_the_fast_path(timer: str, tmp_path) -> None:
    """A 32-bit kernel's PIT and local APIC timer interrupts are delivered by the clock hook
    and their EOIs taken without Python, with the same instructions, memory, trace and device
    state as with the stop path and as with the Python delivery model alone."""
    from mb2_kernel import build

    from emu import Machine

    setup, teardown = _TIMER32[timer]
    elf = build(_GUEST32.format(setup=setup, teardown=teardown, iterations=300_000), tmp_path,
                f"timer32-{timer}")  # fmt: skip
    runs = []
    for how in ("armed", "stop path", "model"):
        m = Machine.from_elf(elf)
        m.arm_timer = how == "armed"
        m.core.fast_delivery = how != "model"
        eois: list[int] = []  # the EOIs that reached Python
        if timer == "pit":
            m.core.port_write = _counting(m.core.port_write, 0x20, eois)
        else:
            m.lapic.mem_write = _counting(m.lapic.mem_write, 0xB0, eois)
        r = m.run(max_instructions=5_000_000)
        assert r.stop_reason == "debug-exit", r.describe()
        state = (m.lapic.to_dict(), m.pics.master.irr, m.pics.master.isr, m.pit.count(0))
        trace = r.trace.to_list()
        runs.append((r.instructions, bytes(m.ram), trace, state))
        count = int(m.ram[0x200000:0x200004].view(np.uint32)[0])
        if how == "armed":
            assert m.core.armed_deliveries == count > 150 and len(eois) < 10
        else:
            assert m.core.armed_deliveries == 0 and len(eois) >= count
        assert {e["mode"] for e in trace} == {"prot32"} and len(trace) == count
        assert {e["source"] for e in trace} == {"8259 IRQ 0" if timer == "pit" else "LAPIC timer"}
    assert runs[0] == runs[1] == runs[2]


class _BrokenDevice:
    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        raise RuntimeError(f"device failure, value 0x{value:x}")


def test_an_error_in_a_port_handler_reaches_the_caller() -> None:
    """OUT reaches Python through a C callback, which cannot raise: the error must still
    surface from the run, not vanish."""
    T.TRIGGERS["out80"] = "movb $0x5a, %al; outb %al, $0x80"
    ram = T.image({"mode": "long", "trigger": "out80"})
    m = _timer_guest(2, loop=100)
    m.bus.map(0x80, 1, _BrokenDevice(), "broken")
    m.write_physical(0, ram.tobytes())
    m.core.enter_grub_protected_mode(gdt_base=T.GDT, gdt_limit=0x37, entry=T.CODE, registers={})
    with pytest.raises(InternalError, match="device failure, value 0x5a") as info:
        m.run(max_instructions=100_000)
    assert isinstance(info.value.error, RuntimeError)  # the device's own error, kept


@pytest.mark.parametrize("user", [False, True])
def test_clock_fast_path_counts_like_the_full_hook(user: bool, monkeypatch) -> None:
    """The IR hot path of the clock hook must count exactly as the numba hook alone does."""
    from emu.clock import fastpath as clock_fastpath
    from emu.core import native

    results = []
    for fast in (True, False):
        if not fast:  # Unicorn then calls the numba hook for every block
            monkeypatch.setattr(
                clock_fastpath,
                "load",
                lambda: native.load("emu.clock.kernels", "block_hook", "BLOCK_HOOK_SIGNATURE"),
            )
        m = _timer_guest(3, user=user, handler="rdtsc; movq %rax, 0x30120")
        r, ram, trace = _run(m)
        results.append((r.instructions, ram, trace, m.core.armed_deliveries))
    assert results[0][3] > 50
    assert results[0] == results[1]


# ------------------------------------------------------------------ exceptions, INT n


def _run_scenario(sc: dict, fast: bool):
    ram = T.image(sc)
    core = UnicornCore(ram, lambda p, s: 0xFF, lambda p, s, v: None)
    core.fast_delivery = fast
    core.enter_grub_protected_mode(gdt_base=T.GDT, gdt_limit=0x37, entry=T.CODE, registers={})
    end = core.run_slice(1 << 40, 1 << 40)
    return end.kind, _state(core), bytes(ram), core.fast_deliveries


@pytest.mark.parametrize("sc", T.SCENARIOS, ids=lambda s: str(s))
def test_exceptions_compiled_and_modelled_agree(sc: dict) -> None:
    """Every scenario of the QEMU oracle corpus (long and protected mode), compiled path on
    and off."""
    fast = _run_scenario(sc, True)
    model = _run_scenario(sc, False)
    assert fast[:3] == model[:3]
    assert model[3] == 0


@pytest.mark.parametrize("mode", ["long", "prot"])
def test_the_corpus_takes_the_compiled_path(mode: str) -> None:
    taken = [_run_scenario(s, True)[3] for s in T.SCENARIOS if s["mode"] == mode]
    assert sum(1 for n in taken if n) > len(taken) // 2
