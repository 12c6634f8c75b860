"""Compiled delivery of interrupts and exceptions in long mode: the fast path of the IDT model.

``emu/faults/delivery.py`` (``IdtDelivery``) is the model: every gate type, every check, faults during
delivery and their escalation to #DF and triple fault. It is also this kernel's reference twin
(tests/test_delivery_fast.py compares both on the same states). Delivering a timer interrupt
through it costs about 100 us of Python, so the common case runs here instead: an external
interrupt, a software interrupt or an exception in IA-32e mode through a present 64-bit
interrupt or trap gate whose selector names a present 64-bit code segment in the GDT (and, for
INT n, whose DPL allows the CPL), with or without a stack switch (RSP0-2 or IST from the 64-bit
TSS), the error code pushed and CR2 written for a #PF, every access through our page walker as
an implicit supervisor access.

Anything else (legacy or compatibility... protected mode, an LDT selector, a check that would
fault, an access crossing a page or leaving RAM) returns FALLBACK before anything is written but
accessed/dirty bits, which the Python model then sets the same way: it redoes the delivery from
the same state and finds the same fault, so the outcome never depends on which path ran.

RFLAGS is computed as QEMU's own delivery does: ``env->eflags`` plus the lazily kept arithmetic
flags (``cpu_cc_compute_all``) plus DF. While the CPU runs, ``env->eflags`` holds neither; between
slices it holds both (x86_cpu_exec_exit folds them in) and adding them again changes nothing. Only
the control bits are cleared in ``env->eflags``, so the kernel is correct in both places: between
slices (Machine._take_interrupt) and inside the clock hook (an armed timer interrupt).
"""

from __future__ import annotations

import numpy as np
from numba import carray, jit, types

from ..core import x86_layout as X86
from ..core.intrinsics import call_cc_compute, call_ptr, load32, load64, store32, store64, voidptr
from ..mmu.kernels import TRACE_SIZE, _translate
from ..mmu.layout import ACC_READ, ACC_WRITE, ST_OK
from .layout import (
    DA_CC_COMPUTE_ALL,
    DA_CR2,
    DA_ENV,
    DA_ERROR,
    DA_FLAGS,
    DA_KIND,
    DA_RAM,
    DA_RAM_SIZE,
    DA_RETURN_RIP,
    DA_SIZE,
    DA_UPDATE_HFLAGS,
    DA_VECTOR,
    DELIVERED,
    DO_GATE_ADDRESS,
    DO_GATE_HIGH,
    DO_GATE_LOW,
    DO_NEW_RSP,
    DO_OLD_HFLAGS,
    DO_OLD_RIP,
    DO_OLD_RSP,
    DO_SCRATCH,
    DO_SIZE,
    DO_STATUS,
    DO_WHY,
    FALLBACK,
    FB_CODE_SEGMENT,
    FB_GATE,
    FB_GATE_DPL,
    FB_IDT_LIMIT,
    FB_MEMORY,
    FB_NOT_LONG_MODE,
    FB_SELECTOR,
    FB_TSS,
    FB_VM86,
    HAS_CR2,
    HAS_ERROR,
    HAS_RETURN_RIP,
    KIND_SOFTWARE,
)

DELIVER_SIGNATURE = types.uint64(types.voidptr, types.voidptr)

# The CPU state and architectural bits (emu/core/x86_layout.py; the offsets verified at start-up).
_ENV_RSP = X86.ENV_RSP
_ENV_EIP = X86.ENV_EIP
_ENV_EFLAGS = X86.ENV_EFLAGS
_ENV_CC_OP = X86.ENV_CC_OP
_ENV_DF = X86.ENV_DF
_ENV_HFLAGS = X86.ENV_HFLAGS
_ENV_SEGS = X86.ENV_SEGS
_SEG_SIZE = X86.SEG_SIZE
_SEG_CS = X86.SEG_CS
_SEG_SS = X86.SEG_SS
_ENV_TR = X86.ENV_TR
_ENV_GDT = X86.ENV_GDT
_ENV_IDT = X86.ENV_IDT
_ENV_CR0 = X86.ENV_CR0
_ENV_CR2 = X86.ENV_CR2
_ENV_CR3 = X86.ENV_CR3
_ENV_CR4 = X86.ENV_CR4
_ENV_EFER = X86.ENV_EFER
_ENV_OLD_EXCEPTION = X86.ENV_OLD_EXCEPTION

_HF_LMA = X86.HF_LMA
_HF_CPL = X86.HF_CPL_MASK

_DESC_S = X86.DESC_S
_DESC_CS = X86.DESC_CS
_DESC_C = X86.DESC_C
_DESC_P = X86.DESC_P
_DESC_L = X86.DESC_L
_DESC_B = X86.DESC_B
_DESC_G = X86.DESC_G

_RFLAGS_CLEARED = X86.RFLAGS_TF | X86.RFLAGS_NT | X86.RFLAGS_RF | X86.RFLAGS_VM
_RFLAGS_IF = X86.RFLAGS_IF
_RFLAGS_VM = X86.RFLAGS_VM
_DF_MASK = X86.RFLAGS_DF

_U = np.uint64
_MASK64 = 0xFFFF_FFFF_FFFF_FFFF


@jit(nopython=True, inline="always")
def _phys(ram64, env, vaddr, size, write, scratch):
    """Physical address of ``size`` bytes at ``vaddr`` (an implicit supervisor access, A/D set
    as the CPU does), or -1 when the walk fails, the access crosses a page or leaves RAM."""
    if (vaddr & _U(0xFFF)) + _U(size) > _U(0x1000):
        return np.int64(-1)
    status, paddr, _err, _lvl, _ps, _perms, _rsvd = _translate(
        ram64, load64(env + _U(_ENV_CR0)), load64(env + _U(_ENV_CR3)),
        load64(env + _U(_ENV_CR4)), load64(env + _U(_ENV_EFER)), vaddr,
        np.int64(ACC_WRITE if write else ACC_READ), np.int64(0), False, True, True, scratch,
    )  # fmt: skip
    if status != _U(ST_OK) or paddr + _U(size) > _U(ram64.size) * _U(8):
        return np.int64(-1)
    return np.int64(paddr)


@jit(nopython=True, inline="always")
def _fallback(out, why):
    out[DO_STATUS] = _U(FALLBACK)
    out[DO_WHY] = _U(why)
    return _U(FALLBACK)


def deliver(args_ptr, out_ptr):
    a = carray(args_ptr, (DA_SIZE,), np.uint64)
    out = carray(out_ptr, (DO_SIZE,), np.uint64)
    env = a[DA_ENV]
    ram = a[DA_RAM]
    ram64 = carray(voidptr(ram), (a[DA_RAM_SIZE] >> _U(3),), np.uint64)
    for k in range(DO_SIZE):
        out[k] = _U(0)
    scratch = out[DO_SCRATCH : DO_SCRATCH + TRACE_SIZE]  # the walks' per-level trace, unused
    hflags = _U(load32(env + _U(_ENV_HFLAGS)))
    if not (hflags & _U(_HF_LMA)):
        return _fallback(out, FB_NOT_LONG_MODE)
    cpl = hflags & _U(_HF_CPL)
    vector = a[DA_VECTOR]

    # the gate
    idt_base = load64(env + _U(_ENV_IDT + 8))
    idt_limit = _U(load32(env + _U(_ENV_IDT + 16)))
    if vector * _U(16) + _U(15) > idt_limit:
        return _fallback(out, FB_IDT_LIMIT)
    gate_addr = (idt_base + vector * _U(16)) & _U(_MASK64)
    p = _phys(ram64, env, gate_addr, 16, False, scratch)
    if p < 0:
        return _fallback(out, FB_MEMORY)
    g_low = load64(ram + _U(p))
    g_high = load64(ram + _U(p) + _U(8))
    e1 = g_low & _U(0xFFFFFFFF)
    e2 = g_low >> _U(32)
    gtype = (e2 >> _U(8)) & _U(0x1F)
    if (gtype != _U(14) and gtype != _U(15)) or not (e2 & _U(_DESC_P)):
        return _fallback(out, FB_GATE)
    if a[DA_KIND] == _U(KIND_SOFTWARE) and ((e2 >> _U(13)) & _U(3)) < cpl:
        return _fallback(out, FB_GATE_DPL)
    flags = a[DA_FLAGS]
    offset = (e2 & _U(0xFFFF0000)) | (e1 & _U(0xFFFF)) | ((g_high & _U(0xFFFFFFFF)) << _U(32))
    ist = e2 & _U(7)
    sel = e1 >> _U(16)

    # the code segment
    if (sel & _U(0xFFFC)) == _U(0) or (sel & _U(4)):
        return _fallback(out, FB_SELECTOR)
    gdt_base = load64(env + _U(_ENV_GDT + 8))
    gdt_limit = _U(load32(env + _U(_ENV_GDT + 16)))
    index = sel & _U(0xFFF8)
    if index + _U(7) > gdt_limit:
        return _fallback(out, FB_SELECTOR)
    p = _phys(ram64, env, (gdt_base + index) & _U(_MASK64), 8, False, scratch)
    if p < 0:
        return _fallback(out, FB_MEMORY)
    desc = load64(ram + _U(p))
    d1 = desc & _U(0xFFFFFFFF)
    d2 = desc >> _U(32)
    dpl = (d2 >> _U(13)) & _U(3)
    if (
        not (d2 & _U(_DESC_S))
        or not (d2 & _U(_DESC_CS))
        or dpl > cpl
        or not (d2 & _U(_DESC_P))
        or not (d2 & _U(_DESC_L))
        or (d2 & _U(_DESC_B))
    ):
        return _fallback(out, FB_CODE_SEGMENT)
    if d2 & _U(_DESC_C):
        dpl = cpl

    # the stack
    env_eflags = load64(env + _U(_ENV_EFLAGS))
    rflags = env_eflags | call_cc_compute(
        a[DA_CC_COMPUTE_ALL], env, _U(load32(env + _U(_ENV_CC_OP)))
    )
    if load32(env + _U(_ENV_DF)) & np.uint32(_DF_MASK):  # df is +1 or -1
        rflags |= _U(_DF_MASK)
    old_rsp = load64(env + _U(_ENV_RSP))
    new_stack = dpl < cpl or ist != _U(0)
    if new_stack:
        tr = env + _U(_ENV_TR)
        tr_base = load64(tr + _U(8))
        tr_limit = _U(load32(tr + _U(16)))
        tr_flags = _U(load32(tr + _U(20)))
        field = _U(8) * (ist + _U(3) if ist != _U(0) else dpl) + _U(4)
        if not (tr_flags & _U(_DESC_P)) or field + _U(7) > tr_limit:
            return _fallback(out, FB_TSS)
        p = _phys(ram64, env, (tr_base + field) & _U(_MASK64), 8, False, scratch)
        if p < 0:
            return _fallback(out, FB_MEMORY)
        rsp = load64(ram + _U(p))
    else:
        if rflags & _U(_RFLAGS_VM):
            return _fallback(out, FB_VM86)
        rsp = old_rsp
    rsp &= ~_U(0xF)

    # the frame: SS, RSP, RFLAGS, CS, RIP, then the error code if there is one
    cs = env + _U(_ENV_SEGS + _SEG_CS * _SEG_SIZE)
    ss = env + _U(_ENV_SEGS + _SEG_SS * _SEG_SIZE)
    old_rip = a[DA_RETURN_RIP] if flags & _U(HAS_RETURN_RIP) else load64(env + _U(_ENV_EIP))
    frame = (
        _U(load32(ss)),
        old_rsp,
        rflags,
        _U(load32(cs)),
        old_rip,
    )
    for value in frame:
        rsp = (rsp - _U(8)) & _U(_MASK64)
        p = _phys(ram64, env, rsp, 8, True, scratch)
        if p < 0:
            return _fallback(out, FB_MEMORY)
        store64(ram + _U(p), value)
    if flags & _U(HAS_ERROR):
        rsp = (rsp - _U(8)) & _U(_MASK64)
        p = _phys(ram64, env, rsp, 8, True, scratch)
        if p < 0:
            return _fallback(out, FB_MEMORY)
        store64(ram + _U(p), a[DA_ERROR])

    # the new state
    new_rflags = env_eflags & ~_U(_RFLAGS_CLEARED)
    if gtype == _U(14):
        new_rflags &= ~_U(_RFLAGS_IF)
    base = (d1 >> _U(16)) | ((d2 & _U(0xFF)) << _U(16)) | (d2 & _U(0xFF000000))
    limit = (d1 & _U(0xFFFF)) | (d2 & _U(0x000F0000))
    if d2 & _U(_DESC_G):
        limit = (limit << _U(12)) | _U(0xFFF)
    store32(cs, (sel & ~_U(3)) | dpl)
    store64(cs + _U(8), base)
    store32(cs + _U(16), limit)
    store32(cs + _U(20), d2)
    if new_stack:
        store32(ss, dpl)
        store64(ss + _U(8), _U(0))
        store32(ss + _U(16), _U(0))
        store32(ss + _U(20), dpl << _U(13))
    store64(env + _U(_ENV_RSP), rsp)
    store64(env + _U(_ENV_EIP), offset)
    store64(env + _U(_ENV_EFLAGS), new_rflags)
    if flags & _U(HAS_CR2):
        store64(env + _U(_ENV_CR2), a[DA_CR2])
    store32(env + _U(_ENV_OLD_EXCEPTION), _U(0xFFFFFFFF))  # -1: QEMU's #DF tracker reset
    call_ptr(a[DA_UPDATE_HFLAGS], voidptr(env))

    out[DO_STATUS] = _U(DELIVERED)
    out[DO_GATE_ADDRESS] = gate_addr
    out[DO_GATE_LOW] = g_low
    out[DO_GATE_HIGH] = g_high
    out[DO_OLD_RIP] = old_rip
    out[DO_OLD_RSP] = old_rsp
    out[DO_NEW_RSP] = rsp
    out[DO_OLD_HFLAGS] = hflags
    return _U(DELIVERED)
