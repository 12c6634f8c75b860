"""Our IDT delivery model against QEMU's own delivery code, on a corpus of scenarios.

libunicorn exports QEMU's ``x86_cpu_do_interrupt_x86_64`` (unicorn-2.1.4.md Q3). The oracle
engine calls it from compiled (numba) INTR and invalid-instruction hooks, so a nested fault
during delivery longjmps through compiled frames only. The same guest image then runs on our
machine core, whose Python model delivers. Compared after the handler is reached (each handler
is a HLT at a known address) or the CPU shut down: RIP, RSP, CS, SS, RFLAGS, the stack bytes
and whether it was a triple fault.
"""

from __future__ import annotations

import ctypes
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import unicorn
from llvmlite import ir
from numba import carray, cfunc, types
from numba.extending import intrinsic
from unicorn import x86_const as X

from emu.core import internals as I
from emu.core.engine import KIND_HALT, KIND_TRIPLE_FAULT, UnicornCore, leave_reset_state
from emu.core.intrinsics import load32, load64, store64

RAM = 4 << 20
GDT, IDT, TSS, PML4 = 0x1000, 0x2000, 0x3000, 0x4000
CODE, USER_CODE, HANDLERS = 0x10000, 0x11000, 0x20000
RSP0, IST1, KSTACK, USTACK = 0x90000, 0xA0000, 0x80000, 0xB0000
UNMAPPED, READ_ONLY = 0x1F0000, 0x1E0000
CPU_TO_ENV = 35408


# ------------------------------------------------------------------ QEMU's delivery, compiled


@intrinsic
def _call(typingctx, fnptr, arg):
    sig = types.int32(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(8).as_pointer()])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(fn, [builder.inttoptr(args[1], ir.IntType(8).as_pointer())])

    return sig, codegen


@cfunc(types.void(types.voidptr, types.uint32, types.voidptr), nopython=True)
def native_intr(uc, intno, user_data):
    ctx = carray(user_data, (6,), np.uint64)
    ctx[2] += np.uint64(1)
    if load32(ctx[4]) != 0:
        # Unicorn has moved EIP past INT n before the hook (QEMU keeps it on the instruction,
        # and returns to exception_next_eip): a fault while delivering it is reported at the
        # INT itself, as QEMU and the SDM have it.
        store64(ctx[3], load64(ctx[3]) - ctx[5])
    _call(ctx[0], ctx[1])  # x86_cpu_do_interrupt_x86_64(cpu)


@cfunc(types.boolean(types.voidptr, types.voidptr), nopython=True)
def native_invalid(uc, user_data):
    ctx = carray(user_data, (6,), np.uint64)
    ctx[2] += np.uint64(1)
    _call(ctx[0], ctx[1])
    return True


# ------------------------------------------------------------------ the guests


def assemble(source: str) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        s, o, e, b = (Path(d) / n for n in ("g.S", "g.o", "g.elf", "g.bin"))
        s.write_text(source)
        subprocess.run(["as", "--64", "-o", str(o), str(s)], check=True)
        subprocess.run(["ld", "-Ttext", hex(CODE), "--build-id=none", "-o", str(e), str(o)],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(e), str(b)], check=True)
        return b.read_bytes()


TRIGGERS = {
    "ud2": "ud2",
    "div0": "xorl %edx, %edx; xorl %ecx, %ecx; movl $1, %eax; divl %ecx",
    "int3": "int3",
    "int80": "int $0x80",
    "gp_selector": "movl $0x43, %eax; movl %eax, %ds",
    "pf_unmapped": f"movl {UNMAPPED + 0x10}, %eax",
    "pf_write_ro": f"movl %eax, {READ_ONLY + 0x24}",
}


def guest_source(mode: str, trigger: str, cpl: int) -> str:
    if mode == "prot":
        # ring 3: the 32-bit TSS (0x28) gives SS0:ESP0; user code 0x1B and data 0x23 (image)
        ring3 = f"""
        movw $0x28, %ax; ltr %ax
        pushl $0x23
        pushl ${USTACK}
        pushl $0x202
        pushl $0x1B
        pushl ${USER_CODE}
        iretl
        """
        return f"""
        .code32
        ljmp $0x08, $1f
1:      movl $0x10, %eax; movl %eax, %ds; movl %eax, %es; movl %eax, %ss
        movl ${KSTACK}, %esp
        lidt idtr
        {ring3 if cpl == 3 else TRIGGERS[trigger]}
        hlt
        .align 8
idtr:   .short 0x7FF
        .long {IDT}
        .org {USER_CODE - CODE}
        {TRIGGERS[trigger]}
        hlt
        """
    ring3 = ""
    if cpl == 3:
        ring3 = f"""
        pushq $0x1B
        pushq ${USTACK}
        pushq $0x202
        pushq $0x23
        pushq ${USER_CODE}
        iretq
        """
    return f"""
        .code32
        movl ${PML4}, %eax; movl %eax, %cr3
        movl %cr4, %eax; orl $0x20, %eax; movl %eax, %cr4
        movl $0xC0000080, %ecx; rdmsr; orl $0x100, %eax; wrmsr
        movl %cr0, %eax; orl $0x80010001, %eax; movl %eax, %cr0
        ljmp $0x08, $1f
        .code64
1:      movw $0x10, %ax; movw %ax, %ds; movw %ax, %es; movw %ax, %ss
        movq ${KSTACK}, %rsp
        movw $0x28, %ax; ltr %ax
        lidt idtr
        {ring3 if cpl == 3 else TRIGGERS[trigger]}
        hlt
        .align 8
idtr:   .short 0xFFF
        .quad {IDT}
        .org {USER_CODE - CODE}
        {TRIGGERS[trigger]}
        hlt
        """


def gate64(offset: int, selector=0x08, type_=14, dpl=0, present=True, ist=0) -> bytes:
    lo = (offset & 0xFFFF) | (selector << 16)
    hi = (offset & 0xFFFF0000) | (int(present) << 15) | (dpl << 13) | (type_ << 8) | ist
    return struct.pack("<IIII", lo, hi, offset >> 32, 0)


def gate32(offset: int, selector=0x08, type_=14, dpl=0, present=True) -> bytes:
    lo = (offset & 0xFFFF) | (selector << 16)
    hi = (offset & 0xFFFF0000) | (int(present) << 15) | (dpl << 13) | (type_ << 8)
    return struct.pack("<II", lo, hi)


def image(sc: dict) -> np.ndarray:
    ram = np.zeros(RAM, np.uint8)
    code = assemble(guest_source(sc["mode"], sc["trigger"], sc.get("cpl", 0)))
    ram[CODE : CODE + len(code)] = np.frombuffer(code, np.uint8)
    for v in range(256):
        ram[HANDLERS + 16 * v] = 0xF4  # hlt
    q = ram.view(np.uint64)
    if sc["mode"] == "prot":
        gdt = [0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF]
        if sc.get("cpl") == 3:  # user code and data, DPL 3, and a 32-bit TSS (available)
            gdt += [0x00CFFA000000FFFF, 0x00CFF2000000FFFF, 0x0000890000000067 | TSS << 16]
            struct.pack_into("<II", ram, TSS + 4, RSP0, 0x10)  # ESP0, SS0
        for i, d in enumerate(gdt):
            q[GDT // 8 + i] = d
        for v in range(256):
            g = gate32(HANDLERS + 16 * v, **sc.get("gate", {}).get(v, {}))
            ram[IDT + 8 * v : IDT + 8 * v + 8] = np.frombuffer(g, np.uint8)
        return ram
    tss_base, tss_limit = TSS, 0x67
    tss = tss_limit | (tss_base & 0xFFFFFF) << 16 | 0x89 << 40 | (tss_base >> 24 & 0xFF) << 56
    gdt = [
        0,
        0x00AF9A000000FFFF,
        0x00CF92000000FFFF,
        0x00CFF2000000FFFF,
        0x00AFFA000000FFFF,
        tss,
        0,
    ]
    for i, d in enumerate(gdt):
        q[GDT // 8 + i] = d
    struct.pack_into("<Q", ram, TSS + 4, RSP0)
    struct.pack_into("<Q", ram, TSS + 0x24, IST1)
    for v in range(256):
        g = gate64(HANDLERS + 16 * v, **sc.get("gate", {}).get(v, {}))
        ram[IDT + 16 * v : IDT + 16 * v + 16] = np.frombuffer(g, np.uint8)
    # paging: 0-2 MiB in 4K pages (user-accessible), the rest 2M pages
    q[PML4 // 8] = (PML4 + 0x1000) | 7
    q[(PML4 + 0x1000) // 8] = (PML4 + 0x2000) | 7
    q[(PML4 + 0x2000) // 8] = (PML4 + 0x3000) | 7
    for i in range(512):
        q[(PML4 + 0x3000) // 8 + i] = (i << 12) | 7
    for i in range(1, 512):
        q[(PML4 + 0x2000) // 8 + i] = (i << 21) | 0x87
    q[(PML4 + 0x3000) // 8 + (UNMAPPED >> 12)] = 0
    q[(PML4 + 0x3000) // 8 + (READ_ONLY >> 12)] = READ_ONLY | 5
    if sc.get("stack_unmapped"):
        q[(PML4 + 0x3000) // 8 + ((KSTACK - 1) >> 12)] = 0
        q[(PML4 + 0x3000) // 8 + ((RSP0 - 1) >> 12)] = 0
    return ram


def grub_gdt(ram: np.ndarray) -> None:
    """The GDT the CPU starts with (the GRUB layout: code 0x10, data 0x18)."""
    for i, d in enumerate([0, 0, 0x00CF9A000000FFFF, 0x00CF93000000FFFF]):
        struct.pack_into("<Q", ram, 0x10B0 + 8 * i, d)


def start_state(core_uc: unicorn.Uc, sc: dict) -> None:
    core_uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT, 0x37 if sc["mode"] == "long" else 0x17, 0))


# ------------------------------------------------------------------ both runs


def run_model(sc: dict) -> dict:
    ram = image(sc)
    core = UnicornCore(ram, lambda p, s: 0xFF, lambda p, s, v: None)
    core.enter_grub_protected_mode(gdt_base=GDT, gdt_limit=0x37, entry=CODE, registers={})
    end = core.run_slice(1 << 40, 1 << 40)
    assert end.kind in (KIND_HALT, KIND_TRIPLE_FAULT), end
    return snapshot(core.uc, ram, triple=end.kind == KIND_TRIPLE_FAULT)


def run_native(sc: dict) -> dict:
    ram = image(sc)
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map_ptr(0, RAM, unicorn.UC_PROT_ALL, ram.ctypes.data)
    env = I.locate(uc)
    leave_reset_state(uc, GDT, 0x37)
    uc.reg_write(X.UC_X86_REG_EFLAGS, 2)
    env.clear_old_exception()
    ctx = np.zeros(6, np.uint64)
    ctx[0] = I.function_address("x86_cpu_do_interrupt_x86_64")
    ctx[1] = env.env - CPU_TO_ENV
    ctx[3] = env.env + I.ENV_EIP
    ctx[4] = env.env + I.ENV_EXCEPTION_IS_INT
    ctx[5] = 1 if sc["trigger"] in ("int3", "into") else 2  # INT3/INTO, else INT n (CD nn)
    for htype, fn in (
        (unicorn.UC_HOOK_INTR, native_intr),
        (unicorn.UC_HOOK_INSN_INVALID, native_invalid),
    ):
        h = ctypes.c_size_t()
        I._lib().uc_hook_add(uc._uch, ctypes.byref(h), htype, ctypes.c_void_p(fn.address),
                             ctypes.c_void_p(ctx.ctypes.data), ctypes.c_uint64(1),
                             ctypes.c_uint64(0))  # fmt: skip
    uc.emu_start(CODE, 0xFFFF_FFFF_FFFF_FFFF, 0, 200)
    rip = uc.reg_read(X.UC_X86_REG_RIP)
    halted_in_handler = HANDLERS <= rip - 1 < HANDLERS + 16 * 256
    triple = not halted_in_handler and env.old_exception == 8
    return snapshot(uc, ram, triple=triple)


def snapshot(uc: unicorn.Uc, ram: np.ndarray, *, triple: bool) -> dict:
    if triple:
        return {"triple": True}
    rsp = uc.reg_read(X.UC_X86_REG_RSP)
    env = I.locate(uc)
    return {
        "triple": False,
        "rip": uc.reg_read(X.UC_X86_REG_RIP),
        "rsp": rsp,
        "cs": env.segment(I.SEG_CS)[0],
        "ss": env.segment(I.SEG_SS)[0],
        "cpl": env.hflags & 3,
        "rflags": uc.reg_read(X.UC_X86_REG_RFLAGS) & ~0x8D5,  # arithmetic flags aside
        "stack": ram[rsp : rsp + 48].tobytes() if rsp + 48 <= RAM else b"",
    }


SCENARIOS: list[dict] = []
for mode in ("long", "prot"):
    for trigger in TRIGGERS:
        if mode == "prot" and trigger.startswith("pf"):
            continue  # no paging in the protected-mode guests
        SCENARIOS.append({"mode": mode, "trigger": trigger})
        SCENARIOS.append({"mode": mode, "trigger": trigger, "gate": {13: {"present": False}}})
for trigger in ("ud2", "int3", "int80", "gp_selector", "pf_unmapped", "div0"):
    SCENARIOS.append(
        {"mode": "long", "trigger": trigger, "cpl": 3, "gate": {0x80: {"dpl": 3}, 3: {"dpl": 3}}}
    )
    SCENARIOS.append({"mode": "long", "trigger": trigger, "cpl": 3})  # INT n through DPL 0 gates
    if not trigger.startswith("pf"):  # 32-bit ring 3 to ring 0 through the TSS's SS0:ESP0
        SCENARIOS.append(
            {"mode": "prot", "trigger": trigger, "cpl": 3, "gate": {80: {"dpl": 3}, 3: {"dpl": 3}}}
        )
        SCENARIOS.append({"mode": "prot", "trigger": trigger, "cpl": 3})
# INT n for every vector through DPL 3 gates, from ring 0 and from ring 3 (software interrupts
# never push an error code, whatever the vector)
for n in range(0, 256, 1):
    TRIGGERS[f"int{n}"] = f"int ${n}"
    if n < 32 or n % 17 == 0:
        SCENARIOS.append({"mode": "long", "trigger": f"int{n}", "gate": {n: {"dpl": 3}}})
    if n < 32 and n % 3 == 0:
        SCENARIOS.append({"mode": "long", "trigger": f"int{n}", "cpl": 3, "gate": {n: {"dpl": 3}}})
        SCENARIOS.append({"mode": "prot", "trigger": f"int{n}"})
SCENARIOS += [
    {"mode": "long", "trigger": "pf_unmapped", "gate": {14: {"ist": 1}}},
    {"mode": "long", "trigger": "ud2", "gate": {6: {"present": False}}},
    {"mode": "long", "trigger": "ud2", "gate": {6: {"selector": 0x40}}},
    {"mode": "long", "trigger": "ud2", "gate": {6: {"selector": 0x10}}},  # a data segment
    {"mode": "long", "trigger": "ud2", "gate": {6: {"type_": 15}}},  # trap gate keeps IF
    {"mode": "long", "trigger": "ud2", "gate": {6: {"type_": 6}}},  # not a valid 64-bit gate
    {"mode": "long", "trigger": "ud2", "gate": {6: {"present": False}, 11: {"present": False}}},
    {"mode": "long", "trigger": "pf_unmapped", "stack_unmapped": True},
    {"mode": "long", "trigger": "pf_unmapped", "stack_unmapped": True, "gate": {8: {"ist": 1}}},
    {"mode": "long", "trigger": "ud2", "cpl": 3, "stack_unmapped": True},
    {"mode": "long", "trigger": "div0", "gate": {0: {"selector": 0x40}, 8: {"present": False}}},
    {"mode": "prot", "trigger": "ud2", "gate": {6: {"selector": 0x18}}},
    {"mode": "prot", "trigger": "int3", "gate": {3: {"type_": 5, "present": False}}},
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[str(s) for s in SCENARIOS])
def test_model_matches_qemu_delivery(sc: dict) -> None:
    if sc["mode"] == "prot":
        sc = dict(sc)
    native = run_native(sc)
    model = run_model(sc)
    assert model == native


def test_corpus_covers_the_families() -> None:
    assert len(SCENARIOS) >= 100
    assert any(s.get("cpl") == 3 for s in SCENARIOS)
    assert any("ist" in g for s in SCENARIOS for g in s.get("gate", {}).values())
    assert any(s.get("stack_unmapped") for s in SCENARIOS)
