"""Checked access to the Unicorn 2.1.4 internals the design relies on.

Unicorn exposes no API for hidden CPU state (hflags, segment caches, the pending error code,
the sticky ``old_exception``), and hooks compiled with numba need the address of QEMU's
``CPUX86State env`` to read CR3 or IF without a call. This module finds ``env`` once per engine
and verifies every offset it uses by a register round trip, so a different Unicorn build fails
with one clear error instead of silently reading garbage (architecture.md, decision 4).

Offsets and the discovery method are from unicorn-2.1.4.md, Appendix A.
"""

from __future__ import annotations

import ctypes
import functools
import struct
from dataclasses import dataclass

import unicorn
from unicorn import x86_const as X

from ..errors import EngineError
from .x86_layout import (  # noqa: F401 - re-exported: callers use I.ENV_*, I.HF_*, I.SEG_*
    CPU_CFLAGS_NEXT_TB,
    ENV_CPUID_VENDOR,
    ENV_CR0,
    ENV_CR2,
    ENV_CR3,
    ENV_CR4,
    ENV_EFER,
    ENV_EFLAGS,
    ENV_EIP,
    ENV_ERROR_CODE,
    ENV_EXCEPTION_IS_INT,
    ENV_EXCEPTION_NEXT_EIP,
    ENV_FEATURES,
    ENV_GDT,
    ENV_HFLAGS,
    ENV_IDT,
    ENV_LDT,
    ENV_OLD_EXCEPTION,
    ENV_REGS,
    ENV_SEGS,
    ENV_TO_UCODE_REV,
    ENV_TR,
    FEATURE_WORDS,
    HF_CPL_MASK,
    HF_CS32,
    HF_CS64,
    HF_INHIBIT_IRQ,
    HF_LMA,
    HF_PE,
    HF_SS32,
    SEG_CS,
    SEG_DS,
    SEG_ES,
    SEG_FS,
    SEG_GS,
    SEG_SIZE,
    SEG_SS,
)

SUPPORTED_VERSION = 0x020104FF  # uc_version() of the 2.1.4 final release


MSR_EFER = 0xC0000080

# uc_struct.invalid_addr (include/uc_priv.h): the full address of the last refused TLB fill.
# Found in 2.1.4 by searching the struct for a known faulting address; every use is checked
# against the faulting page, which the fill hook does know.
UC_INVALID_ADDR = 1416

# Offsets found by the scan below for 2.1.4 (kept as the first guess, then verified).
_UC_REG_READ_SLOT = 136
_UC_CPU_POINTERS_AFTER_REG_READ = 38
_CPU_TO_ENV = 35408
CPU_TO_ENV = _CPU_TO_ENV  # env - CPU_TO_ENV is QEMU's CPUState (cpu_loop_exit takes it)
# CPUState.mem_io_pc: the host return address of the MMIO access being made (io_readx and
# io_writex set it before calling the region's handler). Found in 2.1.4 as the one CPUState
# word that differs between two MMIO callbacks from two instructions of one block; every use
# is checked (cpu_restore_state must find the block, and the RIP it gives must lie in it).
CPU_MEM_IO_PC = 0x8178


def _lib() -> ctypes.CDLL:
    return unicorn.unicorn_py3.unicorn.uclib  # the handle the binding itself loaded


def _u64(addr: int) -> int:
    return ctypes.c_uint64.from_address(addr).value


def uc_handle(uc: unicorn.Uc) -> int:
    """The ``uc_engine*`` of a Python ``Uc`` object, as an integer."""
    return int(uc._uch.value)


def function_address(name: str) -> int:
    """Address of an exported libunicorn function (for numba hooks that call it)."""
    return ctypes.cast(getattr(_lib(), name), ctypes.c_void_p).value or 0


@dataclass(frozen=True)
class EngineInternals:
    """Where ``env`` lives for one engine, with read helpers that have no side effects."""

    env: int

    def u64(self, offset: int) -> int:
        return _u64(self.env + offset)

    def u32(self, offset: int) -> int:
        return ctypes.c_uint32.from_address(self.env + offset).value

    def i32(self, offset: int) -> int:
        return ctypes.c_int32.from_address(self.env + offset).value

    def write_i32(self, offset: int, value: int) -> None:
        ctypes.c_int32.from_address(self.env + offset).value = value

    def write_u32(self, offset: int, value: int) -> None:
        ctypes.c_uint32.from_address(self.env + offset).value = value & 0xFFFFFFFF

    def write_u64(self, offset: int, value: int) -> None:
        ctypes.c_uint64.from_address(self.env + offset).value = value & 0xFFFF_FFFF_FFFF_FFFF

    def write_segment(self, index: int, selector: int, base: int, limit: int, flags: int) -> None:
        """Load a segment cache directly (no descriptor-table read, no fault possible)."""
        addr = self.env + ENV_SEGS + index * SEG_SIZE
        ctypes.c_uint32.from_address(addr).value = selector & 0xFFFF
        ctypes.c_uint64.from_address(addr + 8).value = base & 0xFFFF_FFFF_FFFF_FFFF
        ctypes.c_uint32.from_address(addr + 16).value = limit & 0xFFFFFFFF
        ctypes.c_uint32.from_address(addr + 20).value = flags & 0xFFFFFFFF

    def update_hflags(self) -> None:
        """Recompute QEMU's hidden flags (CPL, CS32/CS64, SS32...) from the segment caches.

        ``x86_update_hflags`` reads env only and cannot fault, so it is safe to call from Python.
        """
        _update_hflags_fn()(ctypes.c_void_p(self.env))

    def restore_io_rip(self) -> bool:
        """Inside an MMIO handler: make env->eip the instruction making the access (QEMU keeps
        RIP at the block's start until something needs it). ``cpu_restore_state`` only reads
        the translated block's tables and writes EIP and the lazy condition-code operation of
        that instruction; it does not leave the CPU loop, so the access and the block go on
        (Unicorn's own TLB-fill path calls it the same way). False: not in an MMIO access."""
        cpu = self.env - CPU_TO_ENV
        host_pc = ctypes.c_uint64.from_address(cpu + CPU_MEM_IO_PC).value
        if host_pc == 0:
            return False
        return bool(_restore_state_fn()(ctypes.c_void_p(cpu), ctypes.c_void_p(host_pc), False))

    @property
    def hflags(self) -> int:
        return self.u32(ENV_HFLAGS)

    def segment(self, index: int) -> tuple[int, int, int, int]:
        """(selector, base, limit, flags) of a segment cache, as the CPU currently holds it."""
        base = self.env + ENV_SEGS + index * SEG_SIZE
        sel = ctypes.c_uint32.from_address(base).value
        seg_base = ctypes.c_uint64.from_address(base + 8).value
        limit = ctypes.c_uint32.from_address(base + 16).value
        flags = ctypes.c_uint32.from_address(base + 20).value
        return sel, seg_base, limit, flags

    @property
    def error_code(self) -> int:
        return self.u32(ENV_ERROR_CODE)

    @property
    def old_exception(self) -> int:
        return self.i32(ENV_OLD_EXCEPTION)

    def clear_old_exception(self) -> None:
        """Reset QEMU's sticky double-fault tracker (unicorn-2.1.4.md Q3)."""
        self.write_i32(ENV_OLD_EXCEPTION, -1)


@functools.cache
def _restore_state_fn():
    fn = _lib().cpu_restore_state_x86_64
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_bool]
    fn.restype = ctypes.c_bool
    return fn


def _update_hflags_fn():
    fn = _lib().x86_update_hflags_x86_64
    fn.argtypes = [ctypes.c_void_p]
    fn.restype = None
    return fn


def locate(uc: unicorn.Uc) -> EngineInternals:
    """Find and verify ``env`` for an x86-64 engine, or raise EngineError."""
    version = unicorn.uc_version()[2]
    if version != SUPPORTED_VERSION:
        raise EngineError(
            f"unicorn {unicorn.__version__} (0x{version:08x}) is installed, but Triplefault is "
            "verified against unicorn 2.1.4 only: pip install unicorn==2.1.4"
        )
    uc.reg_read(X.UC_X86_REG_RAX)  # Unicorn initialises the CPU lazily: force it
    handle = uc_handle(uc)
    target = function_address("reg_read_x86_64")
    slot = None
    if _u64(handle + _UC_REG_READ_SLOT) == target:
        slot = _UC_REG_READ_SLOT
    else:
        for off in range(0, 4096, 8):
            if _u64(handle + off) == target:
                slot = off
                break
    if slot is None:
        raise EngineError("cannot locate the CPU inside the Unicorn engine (reg_read slot)")
    cpu = _u64(handle + slot + 8 * _UC_CPU_POINTERS_AFTER_REG_READ)
    if cpu == 0:
        raise EngineError("cannot locate the CPU inside the Unicorn engine (null cpu)")
    internals = EngineInternals(cpu + _CPU_TO_ENV)
    _verify(uc, internals)
    if ctypes.c_uint32.from_address(cpu + CPU_CFLAGS_NEXT_TB).value != 0xFFFF_FFFF:
        # -1 between blocks (cpu_common_reset): the clock hook cuts blocks through it
        raise EngineError("Unicorn internals differ from the verified 2.1.4 layout (cflags)")
    return internals


def _verify(uc: unicorn.Uc, env: EngineInternals) -> None:
    """Round-trip every field we read through the public API; restore the registers after."""
    saved = uc.context_save()
    try:
        probes = {
            X.UC_X86_REG_RAX: (ENV_REGS + 0, 0x1122334455667788),
            X.UC_X86_REG_R15: (ENV_REGS + 15 * 8, 0x8877665544332211),
            X.UC_X86_REG_RIP: (ENV_EIP, 0x0000_7F12_3456_7000),
            X.UC_X86_REG_CR3: (ENV_CR3, 0x0000_0000_0012_3000),
            X.UC_X86_REG_CR2: (ENV_CR2, 0x0000_0000_DEAD_B000),
        }
        for reg, (offset, value) in probes.items():
            uc.reg_write(reg, value)
            if env.u64(offset) != value:
                raise EngineError(
                    f"Unicorn internals differ from the verified 2.1.4 layout (offset {offset})"
                )
        for reg, offset in ((X.UC_X86_REG_CR0, ENV_CR0), (X.UC_X86_REG_CR4, ENV_CR4)):
            if env.u64(offset) != uc.reg_read(reg):
                raise EngineError(
                    f"Unicorn internals differ from the verified 2.1.4 layout (offset {offset})"
                )
        for reg, offset in ((X.UC_X86_REG_GDTR, ENV_GDT), (X.UC_X86_REG_IDTR, ENV_IDT)):
            uc.reg_write(reg, (0, 0x0000_7F00_1234_5000, 0xABC, 0))
            if env.u64(offset + 8) != 0x0000_7F00_1234_5000 or env.u32(offset + 16) != 0xABC:
                raise EngineError(
                    f"Unicorn internals differ from the verified 2.1.4 layout (offset {offset})"
                )
        uc.reg_write(X.UC_X86_REG_TR, (0x28, 0x0000_7F00_0000_9000, 0x67, 0x8900))
        if env.u64(ENV_TR + 8) != 0x0000_7F00_0000_9000 or env.u32(ENV_TR + 16) != 0x67:
            raise EngineError("Unicorn internals differ from the verified 2.1.4 layout (TR)")
        if env.u64(ENV_EFER) != uc.msr_read(MSR_EFER):
            raise EngineError("Unicorn internals differ from the verified 2.1.4 layout (EFER)")
        if env.u64(ENV_EFLAGS) & 0xFFFFFFFF != uc.reg_read(X.UC_X86_REG_EFLAGS) & 0xFFFFFFFF:
            raise EngineError("Unicorn internals differ from the verified 2.1.4 layout (EFLAGS)")
    finally:
        uc.context_restore(saved)


_MSR_MTRRCAP = 0xFE
_MSR_BIOS_SIGN_ID = 0x8B
_CPUID1_EDX_MTRR = 1 << 12
_CPUID1_ECX_OSXSAVE = 1 << 27  # computed from CR4 by CPUID, not a feature word bit
# (feature word, its bit, the EFER bit WRMSR may change only with it)
_EFER_GATES = ((6, 1 << 20, 1 << 11), (7, 1 << 2, 1 << 12))  # NX -> NXE, SVM -> SVME


@functools.cache
def _own_feature_words() -> tuple[int, ...]:
    """Unicorn's own CPU model's feature words, as its CPUID reports them (a scratch engine)."""
    scratch = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    scratch.mem_map(0x1000, 0x1000)
    scratch.mem_write(0x1000, b"\x0f\xa2")  # cpuid

    def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, ...]:
        scratch.reg_write(X.UC_X86_REG_RAX, leaf)
        scratch.reg_write(X.UC_X86_REG_RCX, subleaf)
        scratch.emu_start(0x1000, 0x1002)
        regs = (X.UC_X86_REG_RAX, X.UC_X86_REG_RBX, X.UC_X86_REG_RCX, X.UC_X86_REG_RDX)
        return tuple(scratch.reg_read(r) & 0xFFFFFFFF for r in regs)

    leaf1, leaf7, ext1 = cpuid(1), cpuid(7, 0), cpuid(0x80000001)
    return (leaf1[3], leaf1[2] & ~_CPUID1_ECX_OSXSAVE, leaf7[1], leaf7[2], leaf7[3],
            cpuid(7, 1)[0], ext1[3], ext1[2])  # fmt: skip


def verify_cpu_model(uc: unicorn.Uc, env: EngineInternals) -> None:
    """Check the CPU model's fields, which the context blob does not cover, on a fresh engine
    (before anything changes them): they hold Unicorn's own model (vendor, every feature word as
    its CPUID reports it), and writes to them reach the helpers that read them (MTRRcap follows
    FEAT_1_EDX, what WRMSR EFER keeps follows the two 0x8000_0001 words, RDMSR
    IA32_BIOS_SIGN_ID reads ucode_rev). Everything is restored."""

    def differs(what: str) -> EngineError:
        return EngineError(f"Unicorn internals differ from the verified 2.1.4 layout ({what})")

    vendor = struct.pack("<3I", *(env.u32(ENV_CPUID_VENDOR + 4 * i) for i in range(3)))
    if vendor != b"GenuineIntel":
        raise differs("cpuid_vendor")
    words = [env.u64(ENV_FEATURES + 8 * i) for i in range(len(FEATURE_WORDS))]
    if tuple(words) != _own_feature_words():
        raise differs("features")
    ucode_rev = env.u64(ENV_TO_UCODE_REV)
    saved = uc.context_save()
    try:
        env.write_u64(ENV_TO_UCODE_REV, 0x1122334455667788)
        if uc.msr_read(_MSR_BIOS_SIGN_ID) != 0x1122334455667788:
            raise differs("ucode_rev")
        caps = []
        for edx in (words[0] & ~_CPUID1_EDX_MTRR, words[0] | _CPUID1_EDX_MTRR):
            env.write_u64(ENV_FEATURES, edx)
            caps.append(uc.msr_read(_MSR_MTRRCAP))
        if caps[0] != 0 or caps[1] == 0:
            raise differs("FEAT_1_EDX")
        for index, bit, efer_bit in _EFER_GATES:
            for present in (False, True):
                word = words[index] | bit if present else words[index] & ~bit
                env.write_u64(ENV_FEATURES + 8 * index, word)
                uc.msr_write(MSR_EFER, uc.msr_read(MSR_EFER) | efer_bit)
                if bool(uc.msr_read(MSR_EFER) & efer_bit) != present:
                    raise differs(FEATURE_WORDS[index])
                env.write_u64(ENV_FEATURES + 8 * index, words[index])
    finally:
        for i, word in enumerate(words):
            env.write_u64(ENV_FEATURES + 8 * i, word)
        env.write_u64(ENV_TO_UCODE_REV, ucode_rev)
        uc.context_restore(saved)
