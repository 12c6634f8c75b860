"""Compiled delivery of interrupts and exceptions: the fast path of the IDT model.

``emu/faults/delivery.py`` (``IdtDelivery``) is the model: every gate type, every check, faults during
delivery and their escalation to #DF and triple fault. It is also this kernel's reference twin
(tests/test_delivery_fast.py compares both on the same states). Delivering a timer interrupt
through it costs about 100 us of Python, so the common cases run here instead: an external
interrupt, a software interrupt or an exception

- in IA-32e mode through a present 64-bit interrupt or trap gate whose selector names a present
  64-bit code segment in the GDT (and, for INT n, whose DPL allows the CPL), with or without a
  stack switch (RSP0-2 or IST from the 64-bit TSS);
- in 32-bit protected mode, from flat 32-bit code (a 32-bit code segment at base 0), through a
  present 32-bit interrupt or trap gate whose selector names a present code segment in the GDT,
  on the same stack or on the inner one of the 32-bit TSS (SSn:ESPn, a writable data segment of
  the new CPL in the GDT), the 32-bit frame (SS, ESP, then EFLAGS, CS, EIP) as ``_push32``;

with the error code pushed and CR2 written for a #PF, every access through our page walker as
an implicit supervisor access.

Anything else (real mode, virtual-8086 mode, 16-bit gates, task gates, 16-bit or based code, an
LDT selector, a check that would fault, an access crossing a page or leaving RAM) returns
FALLBACK before anything is written but accessed/dirty bits and the frame values the model
writes to the same places, so the Python model redoes the delivery from the same state and finds
the same fault: the outcome never depends on which path ran.

RFLAGS is computed as QEMU's own delivery does (``cpu_compute_eflags``): ``env->eflags`` without
its arithmetic flags and DF, then the lazily kept arithmetic flags (``cpu_cc_compute_all``) and
DF. Between slices ``env->eflags`` holds both (x86_cpu_exec_exit folds them in); while the CPU runs
it usually holds neither, but a register write inside a hook (Unicorn's ``reg_write`` of EFLAGS, a
Python delivery) leaves the flags it wrote there while CC_OP moves on, so they are masked off,
never added. Only the control bits are cleared in ``env->eflags``, so the kernel is correct in
both places: between slices (Machine._take_interrupt) and inside the clock hook (an armed timer
interrupt).
"""

from __future__ import annotations

import numpy as np
from numba import carray, jit, types

from ..core import x86_layout as X86
from ..core.intrinsics import call_cc_compute, call_ptr, load32, load64, store32, store64, voidptr
from ..mmu.kernels import TRACE_SIZE, _touch, _translate
from ..mmu.layout import ACC_READ, ACC_WRITE, ST_OK, TK_SIZE
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
    DA_TRACK,
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
    FB_NOT_FLAT,
    FB_REAL_MODE,
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
_HF_PE = X86.HF_PE
_HF_CS32 = X86.HF_CS32
_HF_CPL = X86.HF_CPL_MASK

_DESC_S = X86.DESC_S
_DESC_CS = X86.DESC_CS
_DESC_C = X86.DESC_C
_DESC_P = X86.DESC_P
_DESC_L = X86.DESC_L
_DESC_B = X86.DESC_B
_DESC_G = X86.DESC_G
_DESC_W = X86.DESC_W

_RFLAGS_CLEARED = X86.RFLAGS_TF | X86.RFLAGS_NT | X86.RFLAGS_RF | X86.RFLAGS_VM
_RFLAGS_IF = X86.RFLAGS_IF
_RFLAGS_VM = X86.RFLAGS_VM
_DF_MASK = X86.RFLAGS_DF
# OF SF ZF AF PF CF and DF: what cpu_compute_eflags takes from CC_OP and env->df, not env->eflags
_CC_DF_MASK = 0x8D5 | X86.RFLAGS_DF

_U = np.uint64
_MASK64 = 0xFFFF_FFFF_FFFF_FFFF


@jit(nopython=True, inline="always")
def _phys(ram64, env, vaddr, size, write, scratch, tk):
    """Physical address of ``size`` bytes at ``vaddr`` (an implicit supervisor access, A/D set
    as the CPU does), or -1 when the walk fails, the access crosses a page or leaves RAM. A
    write is reported to the dirty-page tracker ``tk`` before it is made."""
    if (vaddr & _U(0xFFF)) + _U(size) > _U(0x1000):
        return np.int64(-1)
    status, paddr, _err, _lvl, _ps, _perms, _rsvd = _translate(
        ram64, load64(env + _U(_ENV_CR0)), load64(env + _U(_ENV_CR3)),
        load64(env + _U(_ENV_CR4)), load64(env + _U(_ENV_EFER)), vaddr,
        np.int64(ACC_WRITE if write else ACC_READ), np.int64(0), False, True, True, scratch, tk,
    )  # fmt: skip
    if status != _U(ST_OK) or paddr + _U(size) > _U(ram64.size) * _U(8):
        return np.int64(-1)
    if write:
        _touch(tk, paddr)
    return np.int64(paddr)


@jit(nopython=True, inline="always")
def _fallback(out, why):
    out[DO_STATUS] = _U(FALLBACK)
    out[DO_WHY] = _U(why)
    return _U(FALLBACK)


@jit(nopython=True, inline="always")
def _descriptor_base(lo, hi):
    return (lo >> _U(16)) | ((hi & _U(0xFF)) << _U(16)) | (hi & _U(0xFF000000))


@jit(nopython=True, inline="always")
def _descriptor_limit(lo, hi):
    limit = (lo & _U(0xFFFF)) | (hi & _U(0x000F0000))
    if hi & _U(_DESC_G):
        limit = (limit << _U(12)) | _U(0xFFF)
    return limit


@jit(nopython=True, inline="always")
def _gate_refused(a, e2, cpl):
    """Why the compiled delivery declines the gate whose high word is ``e2`` (0: it takes it):
    not a present interrupt or trap gate, or INT n from above the gate's DPL."""
    gtype = (e2 >> _U(8)) & _U(0x1F)
    if (gtype != _U(14) and gtype != _U(15)) or not (e2 & _U(_DESC_P)):
        return _U(FB_GATE)
    if a[DA_KIND] == _U(KIND_SOFTWARE) and ((e2 >> _U(13)) & _U(3)) < cpl:
        return _U(FB_GATE_DPL)
    return _U(0)


@jit(nopython=True, inline="always")
def _guest_rflags(a, env, env_eflags):
    """The guest's whole EFLAGS: QEMU keeps the arithmetic flags lazily (CC_OP) and DF apart,
    and what ``env->eflags`` holds of them may be stale (a register write inside a hook)."""
    rflags = (env_eflags & ~_U(_CC_DF_MASK)) | call_cc_compute(
        a[DA_CC_COMPUTE_ALL], env, _U(load32(env + _U(_ENV_CC_OP)))
    )
    if load32(env + _U(_ENV_DF)) & np.uint32(_DF_MASK):  # df is +1 or -1
        rflags |= _U(_DF_MASK)
    return rflags


@jit(nopython=True, inline="always")
def _phys32(ram64, env, vaddr, size, write, scratch, tk):
    """``_phys`` for a protected-mode linear address: -1 also when the access would wrap
    past 4 GiB (the model does not wrap those)."""
    if vaddr + _U(size) > _U(0x1_0000_0000):
        return np.int64(-1)
    return _phys(ram64, env, vaddr, size, write, scratch, tk)


@jit(nopython=True)
def _deliver_protected(a, out, env, ram, ram64, scratch, hflags, tk):
    """32-bit protected mode, after ``IdtDelivery._deliver_one`` and ``_push32`` (32-bit
    interrupt and trap gates only)."""
    cs = env + _U(_ENV_SEGS + _SEG_CS * _SEG_SIZE)
    ss = env + _U(_ENV_SEGS + _SEG_SS * _SEG_SIZE)
    if not (hflags & _U(_HF_CS32)) or load64(cs + _U(8)) != _U(0):
        return _fallback(out, FB_NOT_FLAT)
    env_eflags = load64(env + _U(_ENV_EFLAGS))
    if env_eflags & _U(_RFLAGS_VM):
        return _fallback(out, FB_VM86)
    cpl = hflags & _U(_HF_CPL)
    vector = a[DA_VECTOR]

    # the gate: 8 bytes at IDTR.base + 8 * vector
    idt_base = load64(env + _U(_ENV_IDT + 8))
    idt_limit = _U(load32(env + _U(_ENV_IDT + 16)))
    if vector * _U(8) + _U(7) > idt_limit:
        return _fallback(out, FB_IDT_LIMIT)
    gate_addr = idt_base + vector * _U(8)
    p = _phys32(ram64, env, gate_addr, 8, False, scratch, tk)
    if p < 0:
        return _fallback(out, FB_MEMORY)
    g_low = load64(ram + _U(p))
    e1 = g_low & _U(0xFFFFFFFF)
    e2 = g_low >> _U(32)
    refused = _gate_refused(a, e2, cpl)
    if refused:
        return _fallback(out, refused)
    gtype = (e2 >> _U(8)) & _U(0x1F)
    flags = a[DA_FLAGS]
    offset = (e2 & _U(0xFFFF0000)) | (e1 & _U(0xFFFF))
    sel = e1 >> _U(16)

    # the code segment
    if (sel & _U(0xFFFC)) == _U(0) or (sel & _U(4)):
        return _fallback(out, FB_SELECTOR)
    gdt_base = load64(env + _U(_ENV_GDT + 8))
    gdt_limit = _U(load32(env + _U(_ENV_GDT + 16)))
    index = sel & _U(0xFFF8)
    if index + _U(7) > gdt_limit:
        return _fallback(out, FB_SELECTOR)
    p = _phys32(ram64, env, gdt_base + index, 8, False, scratch, tk)
    if p < 0:
        return _fallback(out, FB_MEMORY)
    desc = load64(ram + _U(p))
    d1 = desc & _U(0xFFFFFFFF)
    d2 = desc >> _U(32)
    dpl = (d2 >> _U(13)) & _U(3)
    if not (d2 & _U(_DESC_S)) or not (d2 & _U(_DESC_CS)) or dpl > cpl or not (d2 & _U(_DESC_P)):
        return _fallback(out, FB_CODE_SEGMENT)
    if d2 & _U(_DESC_C):
        dpl = cpl

    # the stack: the 32-bit TSS's SSn:ESPn for an inner level, else the current one
    rflags = _guest_rflags(a, env, env_eflags)
    old_rsp = load64(env + _U(_ENV_RSP))
    new_stack = dpl < cpl
    ss_sel = _U(0)
    ss_base = load64(ss + _U(8))
    ss_limit = _U(load32(ss + _U(16)))
    ss_flags = _U(load32(ss + _U(20)))
    esp = old_rsp
    if new_stack:
        tr = env + _U(_ENV_TR)
        tr_base = load64(tr + _U(8))
        tr_limit = _U(load32(tr + _U(16)))
        tr_flags = _U(load32(tr + _U(20)))
        sp_field = _U(8) * dpl + _U(4)  # ESPn at 4 + 8n, SSn at 8 + 8n
        if not (tr_flags & _U(_DESC_P)) or sp_field + _U(7) > tr_limit:
            return _fallback(out, FB_TSS)
        p = _phys32(ram64, env, tr_base + sp_field, 4, False, scratch, tk)
        if p < 0:
            return _fallback(out, FB_MEMORY)
        esp = _U(load32(ram + _U(p)))
        p = _phys32(ram64, env, tr_base + sp_field + _U(4), 4, False, scratch, tk)
        if p < 0:
            return _fallback(out, FB_MEMORY)
        ss_sel = _U(load32(ram + _U(p))) & _U(0xFFFF)
        if (ss_sel & _U(0xFFFC)) == _U(0) or (ss_sel & _U(3)) != dpl or (ss_sel & _U(4)):
            return _fallback(out, FB_TSS)
        sindex = ss_sel & _U(0xFFF8)
        if sindex + _U(7) > gdt_limit:
            return _fallback(out, FB_TSS)
        p = _phys32(ram64, env, gdt_base + sindex, 8, False, scratch, tk)
        if p < 0:
            return _fallback(out, FB_MEMORY)
        sdesc = load64(ram + _U(p))
        s1 = sdesc & _U(0xFFFFFFFF)
        s2 = sdesc >> _U(32)
        if (
            ((s2 >> _U(13)) & _U(3)) != dpl
            or not (s2 & _U(_DESC_S))
            or (s2 & _U(_DESC_CS))
            or not (s2 & _U(_DESC_W))
            or not (s2 & _U(_DESC_P))
        ):
            return _fallback(out, FB_TSS)
        ss_base = _descriptor_base(s1, s2)
        ss_limit = _descriptor_limit(s1, s2)
        ss_flags = s2
    sp_mask = _U(0xFFFFFFFF) if ss_flags & _U(_DESC_B) else _U(0xFFFF)

    # the frame: SS and ESP on a new stack, EFLAGS, CS, EIP, then the error code, 4 bytes each
    old_rip = a[DA_RETURN_RIP] if flags & _U(HAS_RETURN_RIP) else load64(env + _U(_ENV_EIP))
    frame = (
        _U(load32(ss)),
        old_rsp,
        rflags,
        _U(load32(cs)),
        old_rip,
        a[DA_ERROR],
    )
    first = 0 if new_stack else 2
    last = 6 if flags & _U(HAS_ERROR) else 5
    for k in range(first, last):
        esp = (esp - _U(4)) & sp_mask
        p = _phys32(ram64, env, (ss_base + esp) & _U(0xFFFFFFFF), 4, True, scratch, tk)
        if p < 0:
            return _fallback(out, FB_MEMORY)
        store32(ram + _U(p), frame[k] & _U(0xFFFFFFFF))

    # the new state
    new_rflags = env_eflags & ~_U(_RFLAGS_CLEARED)
    if gtype == _U(14):
        new_rflags &= ~_U(_RFLAGS_IF)
    store32(cs, (sel & ~_U(3)) | dpl)
    store64(cs + _U(8), _descriptor_base(d1, d2))
    store32(cs + _U(16), _descriptor_limit(d1, d2))
    store32(cs + _U(20), d2)
    if new_stack:
        store32(ss, ss_sel)
        store64(ss + _U(8), ss_base)
        store32(ss + _U(16), ss_limit)
        store32(ss + _U(20), ss_flags)
        store64(env + _U(_ENV_RSP), esp)
    else:
        store64(env + _U(_ENV_RSP), (old_rsp & ~sp_mask) | esp)
    store64(env + _U(_ENV_EIP), offset)
    store64(env + _U(_ENV_EFLAGS), new_rflags)
    if flags & _U(HAS_CR2):
        store64(env + _U(_ENV_CR2), a[DA_CR2])
    store32(env + _U(_ENV_OLD_EXCEPTION), _U(0xFFFFFFFF))  # -1: QEMU's #DF tracker reset
    call_ptr(a[DA_UPDATE_HFLAGS], voidptr(env))

    out[DO_STATUS] = _U(DELIVERED)
    out[DO_GATE_ADDRESS] = gate_addr
    out[DO_GATE_LOW] = g_low
    out[DO_GATE_HIGH] = _U(0)  # an 8-byte gate
    out[DO_OLD_RIP] = old_rip
    out[DO_OLD_RSP] = old_rsp
    out[DO_NEW_RSP] = esp  # where the frame ends, as the model reports it
    out[DO_OLD_HFLAGS] = hflags
    return _U(DELIVERED)


def deliver(args_ptr, out_ptr):
    a = carray(args_ptr, (DA_SIZE,), np.uint64)
    out = carray(out_ptr, (DO_SIZE,), np.uint64)
    env = a[DA_ENV]
    ram = a[DA_RAM]
    ram64 = carray(voidptr(ram), (a[DA_RAM_SIZE] >> _U(3),), np.uint64)
    for k in range(DO_SIZE):
        out[k] = _U(0)
    scratch = out[DO_SCRATCH : DO_SCRATCH + TRACE_SIZE]  # the walks' per-level trace, unused
    tracker = a[DA_TRACK]
    tk = carray(voidptr(tracker), (TK_SIZE if tracker != _U(0) else 0,), np.uint64)
    hflags = _U(load32(env + _U(_ENV_HFLAGS)))
    if not (hflags & _U(_HF_LMA)):
        if not (hflags & _U(_HF_PE)):
            return _fallback(out, FB_REAL_MODE)
        return _deliver_protected(a, out, env, ram, ram64, scratch, hflags, tk)
    cpl = hflags & _U(_HF_CPL)
    vector = a[DA_VECTOR]

    # the gate
    idt_base = load64(env + _U(_ENV_IDT + 8))
    idt_limit = _U(load32(env + _U(_ENV_IDT + 16)))
    if vector * _U(16) + _U(15) > idt_limit:
        return _fallback(out, FB_IDT_LIMIT)
    gate_addr = (idt_base + vector * _U(16)) & _U(_MASK64)
    p = _phys(ram64, env, gate_addr, 16, False, scratch, tk)
    if p < 0:
        return _fallback(out, FB_MEMORY)
    g_low = load64(ram + _U(p))
    g_high = load64(ram + _U(p) + _U(8))
    e1 = g_low & _U(0xFFFFFFFF)
    e2 = g_low >> _U(32)
    refused = _gate_refused(a, e2, cpl)
    if refused:
        return _fallback(out, refused)
    gtype = (e2 >> _U(8)) & _U(0x1F)
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
    p = _phys(ram64, env, (gdt_base + index) & _U(_MASK64), 8, False, scratch, tk)
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
    rflags = _guest_rflags(a, env, env_eflags)
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
        p = _phys(ram64, env, (tr_base + field) & _U(_MASK64), 8, False, scratch, tk)
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
        p = _phys(ram64, env, rsp, 8, True, scratch, tk)
        if p < 0:
            return _fallback(out, FB_MEMORY)
        store64(ram + _U(p), value)
    if flags & _U(HAS_ERROR):
        rsp = (rsp - _U(8)) & _U(_MASK64)
        p = _phys(ram64, env, rsp, 8, True, scratch, tk)
        if p < 0:
            return _fallback(out, FB_MEMORY)
        store64(ram + _U(p), a[DA_ERROR])

    # the new state
    new_rflags = env_eflags & ~_U(_RFLAGS_CLEARED)
    if gtype == _U(14):
        new_rflags &= ~_U(_RFLAGS_IF)
    store32(cs, (sel & ~_U(3)) | dpl)
    store64(cs + _U(8), _descriptor_base(d1, d2))
    store32(cs + _U(16), _descriptor_limit(d1, d2))
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
