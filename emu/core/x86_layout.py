"""The CPU's layout, written once: QEMU's ``CPUX86State`` offsets inside Unicorn 2.1.4 (verified
at start-up by ``core/internals.py``), its hidden-flag bits, and the architectural bits the compiled
kernels test. Python code and the numba/IR kernels import these names (a ``*_layout.py`` file, so
a change recompiles the cached kernels, see ``native.py``); no numba needed to use them."""

from __future__ import annotations

# CPUX86State field offsets, relative to env (QEMU 5.0 layout inside Unicorn 2.1.4).
ENV_REGS = 0  # regs[16]: RAX RCX RDX RBX RSP RBP RSI RDI R8..R15
ENV_RSP = ENV_REGS + 4 * 8
ENV_EIP = 128
ENV_EFLAGS = 136
ENV_CC_OP = 168  # the lazily kept arithmetic flags' operation (uint32)
ENV_DF = 172  # +1 or -1 (int32)
ENV_HFLAGS = 176
ENV_SEGS = 184  # segs[6] (ES CS SS DS FS GS), 24 bytes each: u32 sel, u64 base, u32 limit, flags
SEG_SIZE = 24
ENV_LDT = 328  # then ldt, tr, gdt, idt: SegmentCache each (gdt/idt use base and limit only)
ENV_TR = 352
ENV_GDT = 376
ENV_IDT = 400
ENV_CR0 = 424
ENV_CR2 = 440
ENV_CR3 = 448
ENV_CR4 = 456
ENV_EFER = 592
ENV_ERROR_CODE = 5384
ENV_EXCEPTION_IS_INT = 5388
ENV_EXCEPTION_NEXT_EIP = 5392  # target_ulong, right after exception_is_int
ENV_OLD_EXCEPTION = 5496
# What the CPU model is, as the translator and the MSR helpers read it (not part of a context):
ENV_CPUID_VENDOR = 5616  # cpuid_vendor1..3: u32 each, leaf 0's EBX, EDX, ECX ("GenuineIntel")
ENV_FEATURES = 5632  # features[]: u64 each, in QEMU's FeatureWord order (FEATURE_WORDS)
FEATURE_WORDS = (
    "FEAT_1_EDX",
    "FEAT_1_ECX",
    "FEAT_7_0_EBX",
    "FEAT_7_0_ECX",
    "FEAT_7_0_EDX",
    "FEAT_7_1_EAX",
    "FEAT_8000_0001_EDX",
    "FEAT_8000_0001_ECX",
)
# X86CPU.ucode_rev, right after env (what RDMSR IA32_BIOS_SIGN_ID answers), relative to env
ENV_TO_UCODE_REV = 7008

SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS = range(6)

# hflags bits (target/i386/cpu.h)
HF_CPL_MASK = 0x3
HF_INHIBIT_IRQ = 1 << 3  # STI / MOV SS interrupt shadow
HF_CS32 = 1 << 4
HF_SS32 = 1 << 5
HF_PE = 1 << 7
HF_LMA = 1 << 14
HF_CS64 = 1 << 15

# Descriptor bits (high dword of a descriptor, as QEMU's segment caches keep it).
DESC_TYPE_SHIFT = 8
DESC_S = 1 << 12
DESC_DPL_SHIFT = 13
DESC_P = 1 << 15
DESC_L = 1 << 21
DESC_B = 1 << 22
DESC_G = 1 << 23
DESC_CS = 1 << 11  # code segment (with S=1)
DESC_C = 1 << 10  # conforming (code) / expand-down (data)
DESC_W = 1 << 9  # writable (data)

RFLAGS_TF = 1 << 8
RFLAGS_IF = 1 << 9
RFLAGS_DF = 1 << 10
RFLAGS_NT = 1 << 14
RFLAGS_RF = 1 << 16
RFLAGS_VM = 1 << 17

# CPUState (env - CPU_TO_ENV, core/internals.py): cflags_next_tb, the cflags of the next block
# cpu_exec looks up or translates (-1: the usual ones). Its low 15 bits (CF_COUNT_MASK) cut that
# block to at most so many instructions (tb_gen_code's max_insns); such a block is cached
# under its cflags like any other.
CPU_CFLAGS_NEXT_TB = 24
CF_COUNT_MASK = 0x7FFF
