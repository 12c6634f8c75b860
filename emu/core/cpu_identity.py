"""The CPU identity Triplefault presents: QEMU 7.2's ``-cpu qemu64`` under TCG, as measured.

Everything here is data measured with the probe kernel ``images/probe-cpuid`` booted by
QEMU 7.2, SeaBIOS and GRUB 2.06 through qemu-ref::

    qemu-ref images/build/probe-cpuid.elf --isa-exit                          # qemu64
    qemu-ref images/build/probe-cpuid.elf --isa-exit --cpu qemu64,-svm        # the machine
    qemu-ref images/build/probe-cpuid.elf --isa-exit --cpu qemu64,-svm,-apic  # apic=False
    qemu-ref images/build/probe-cpuid.elf --isa-exit --cpu qemu64,level=0xb   # the range rule

Their serial output is kept in ``tests/golden/qemu/probe-cpuid*.serial`` and
``tests/test_cpu_identity.py`` checks every table here against it. ``docs/platform.md``
("CPU identity") explains each leaf.

The CPU: AuthenticAMD, family 0xF model 0x6B stepping 1, "QEMU Virtual CPU version 2.5+",
basic leaves up to 0xD, extended leaves up to 0x8000000A, the hypervisor bit set and the TCG
signature "TCGTCGTCGTCG" at 0x40000000. Features: the Pentium Pro set with SSE/SSE2, SSE3 and
CMPXCHG16B, LAHF in 64-bit mode, SYSCALL, NX and long mode; no 1 GiB-page bit, no RDTSCP, no
RDRAND, no XSAVE, nothing in leaf 7.

Where our answer differs from QEMU's qemu64 (each difference is itself a QEMU configuration,
measured, so the edited answers are QEMU's too):

=========================  ===========  ===========  ==============================================
where                      qemu64       Triplefault  why
=========================  ===========  ===========  ==============================================
CPUID.80000001:ECX[2] SVM  1            0            Unicorn's CPU model has no SVM: it drops
                                                     EFER.SVME writes and VMRUN raises #UD
CPUID.8000000A             1 0x10 0 0   0 0 0 0      the SVM leaf; QEMU answers 0 without SVM
=========================  ===========  ===========  ==============================================

What Unicorn 2.1.4's own CPU model (an Intel Haswell, ``Uc(UC_ARCH_X86, UC_MODE_64)``) answers
instead, leaf by leaf. The CPUID hook replaces all of it, but Unicorn's translator decides which
instructions exist from its own model, not from the hook's answer (see ``GATED_INSTRUCTIONS``):

===============  =====================================  =======================================
leaf             Unicorn's own answer                   qemu64 (ours)
===============  =====================================  =======================================
0                max 0xD, GenuineIntel                  max 0xD, AuthenticAMD
1 EAX            0x306C4 (family 6 model 0x3C step 4)   0x60FB1 (family 0xF model 0x6B step 1)
1 ECX            0xCED82203: also PCLMULQDQ, SSSE3,     0x80002001: SSE3, CX16, hypervisor
                 SSE4.1, SSE4.2, MOVBE, POPCNT, AES,
                 XSAVE, OSXSAVE, RDRAND
1 EDX            0x078BFBFD (APIC set)                  0x078BF9FD (APIC hidden)
2, 4, 6          Intel cache descriptors, 3 leaf-4      0 (QEMU gives an AMD CPU no Intel cache
                 caches, leaf 6 ARAT                    leaves)
7.0 EBX          0x389: FSGSBASE, BMI1, SMEP, BMI2,     0
                 ERMS
0xB              0 (no topology)                        SMT and core levels, 1 CPU each
0xD              XSAVE x87/SSE/AVX sizes                0 (no XSAVE)
0x40000000       0                                      0x40000001 "TCGTCGTCGTCG"
0x80000000       max 0x80000008                         max 0x8000000A
0x80000001 ECX   0x21: LAHF_LM, ABM (LZCNT)             0x1: LAHF_LM
0x80000001 EDX   0x28100800: SYSCALL, NX, RDTSCP, LM    0x2193F9FD: SYSCALL, NX, LM and the AMD
                                                        copies of the leaf 1 EDX bits
0x80000002-4     "Intel Core Processor (Haswell)"       "QEMU Virtual CPU version 2.5+"
0x80000006 EDX   0                                      0x00808140 (an L3 cache)
above a maximum  leaf 0xD with the same sub-leaf        leaf 0xD with the same sub-leaf (the same
                 (extended maximum 0x80000008)          rule, with qemu64's maxima)
===============  =====================================  =======================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

Registers = tuple[int, int, int, int]  # EAX, EBX, ECX, EDX

# --------------------------------------------------------------------------- CPUID

# Every leaf and sub-leaf the probe printed under -cpu qemu64, exactly as measured (the APIC and
# SVM bits still set). Leaves 4, 7, 0xB and 0xD have sub-leaves; the probe printed leaf 4 until
# cache type 0, leaf 7 up to its sub-leaf 0 EAX, leaf 0xB until level type 0 and the non-zero
# sub-leaves of 0xD (none).
QEMU64_CPUID: Mapping[tuple[int, int], Registers] = MappingProxyType(
    {
        (0x00000000, 0): (0x0000000D, 0x68747541, 0x444D4163, 0x69746E65),  # "AuthenticAMD"
        (0x00000001, 0): (0x00060FB1, 0x00000800, 0x80002001, 0x078BFBFD),
        (0x00000002, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x00000003, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x00000004, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x00000005, 0): (0x00000000, 0x00000000, 0x00000003, 0x00000000),
        (0x00000006, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x00000007, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x00000008, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x00000009, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x0000000A, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x0000000B, 0): (0x00000000, 0x00000001, 0x00000100, 0x00000000),  # SMT level
        (0x0000000B, 1): (0x00000000, 0x00000001, 0x00000201, 0x00000000),  # core level
        (0x0000000B, 2): (0x00000000, 0x00000000, 0x00000002, 0x00000000),  # invalid level
        (0x0000000C, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x0000000D, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x40000000, 0): (0x40000001, 0x54474354, 0x43544743, 0x47435447),  # "TCGTCGTCGTCG"
        (0x40000001, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x80000000, 0): (0x8000000A, 0x68747541, 0x444D4163, 0x69746E65),
        (0x80000001, 0): (0x00060FB1, 0x00000000, 0x00000005, 0x2193FBFD),
        (0x80000002, 0): (0x554D4551, 0x72695620, 0x6C617574, 0x55504320),  # "QEMU Virtual CPU"
        (0x80000003, 0): (0x72657620, 0x6E6F6973, 0x352E3220, 0x0000002B),  # " version 2.5+"
        (0x80000004, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x80000005, 0): (0x01FF01FF, 0x01FF01FF, 0x40020140, 0x40020140),  # L1 TLBs, caches
        (0x80000006, 0): (0x00000000, 0x42004200, 0x02008140, 0x00808140),  # L2 TLB, L2, L3
        (0x80000007, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x80000008, 0): (0x00003028, 0x00000000, 0x00000000, 0x00000000),  # 40/48 address bits
        (0x80000009, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x8000000A, 0): (0x00000001, 0x00000010, 0x00000000, 0x00000000),  # SVM rev 1, 16 ASIDs
    }
)

# Leaves whose answer depends on ECX. Every other leaf ignores it.
SUBLEAF_LEAVES = frozenset({0x4, 0x7, 0xB, 0xD})

HYPERVISOR_BASE = 0x40000000
EXTENDED_BASE = 0x80000000
CENTAUR_BASE = 0xC0000000
# QEMU answers the hypervisor range up to 0x40000001 whatever 0x40000000 says, and qemu64 has
# no Centaur range (its maximum is 0, so every leaf from 0xC0000000 is above it).
MAX_HYPERVISOR_LEAF = 0x40000001
MAX_CENTAUR_LEAF = 0

CPUID1_EDX_APIC = 1 << 9
CPUID80000001_EDX_APIC = 1 << 9  # AMD copies leaf 1 EDX bits 0-9, 12-17, 23, 24 into this leaf
CPUID80000001_ECX_SVM = 1 << 2
AMD_ALIAS_BITS = 0x0183F3FF  # the leaf 1 EDX bits an AMD CPU repeats in 0x80000001 EDX
SVM_LEAF = 0x8000000A


@dataclass(frozen=True)
class CpuidTable:
    """The CPUID answers of one CPU model and QEMU's rule for the leaves it does not list.

    Out of range (measured): a leaf above the maximum of its range (basic: leaf 0 EAX;
    0x40000000-0x7FFFFFFF: 0x40000001; 0x80000000-0xBFFFFFFF: 0x80000000 EAX; from
    0xC0000000: 0) answers as the highest basic leaf does, with ECX still selecting its
    sub-leaf. That is the Intel SDM rule, which QEMU applies to every vendor (a real AMD CPU
    returns zeros). Past its last listed sub-leaf, leaf 0xB answers an invalid level (ECX bits
    7-0 echo the level asked for) and the other sub-leaf leaves answer 0.
    """

    leaves: Mapping[tuple[int, int], Registers]

    @property
    def max_basic_leaf(self) -> int:
        return self.leaves[(0, 0)][0]

    @property
    def max_extended_leaf(self) -> int:
        return self.leaves[(EXTENDED_BASE, 0)][0]

    def range_limit(self, leaf: int) -> int:
        """The highest leaf of the range ``leaf`` falls in."""
        if leaf >= CENTAUR_BASE:
            return MAX_CENTAUR_LEAF
        if leaf >= EXTENDED_BASE:
            return self.max_extended_leaf
        if leaf >= HYPERVISOR_BASE:
            return MAX_HYPERVISOR_LEAF
        return self.max_basic_leaf

    def answer(self, leaf: int, subleaf: int = 0) -> Registers:
        """EAX, EBX, ECX, EDX for CPUID with EAX=leaf, ECX=subleaf (both taken as 32 bits)."""
        leaf &= 0xFFFFFFFF
        subleaf &= 0xFFFFFFFF
        if leaf > self.range_limit(leaf):
            leaf = self.max_basic_leaf
        if leaf not in SUBLEAF_LEAVES:
            subleaf = 0
        found = self.leaves.get((leaf, subleaf))
        if found is not None:
            return found
        if leaf == 0xB:
            return (0, 0, subleaf & 0xFF, 0)
        return (0, 0, 0, 0)

    def with_max_basic_leaf(self, level: int) -> CpuidTable:
        """The same CPU with basic leaves only up to ``level``, as QEMU's ``level=`` gives."""
        leaves = {
            key: regs
            for key, regs in self.leaves.items()
            if key[0] >= HYPERVISOR_BASE or key[0] <= level
        }
        eax, ebx, ecx, edx = leaves[(0, 0)]
        leaves[(0, 0)] = (level, ebx, ecx, edx)
        return CpuidTable(MappingProxyType(leaves))


QEMU64 = CpuidTable(QEMU64_CPUID)


def _edited(table: Mapping[tuple[int, int], Registers], *, apic: bool) -> CpuidTable:
    """qemu64 with SVM hidden, and the local APIC hidden unless ``apic``."""
    leaves = dict(table)
    eax, ebx, ecx, edx = leaves[(0x80000001, 0)]
    ecx &= ~CPUID80000001_ECX_SVM
    if not apic:
        edx &= ~CPUID80000001_EDX_APIC
    leaves[(0x80000001, 0)] = (eax, ebx, ecx, edx)
    leaves[(SVM_LEAF, 0)] = (0, 0, 0, 0)
    if not apic:
        eax, ebx, ecx, edx = leaves[(1, 0)]
        leaves[(1, 0)] = (eax, ebx, ecx, edx & ~CPUID1_EDX_APIC)
    return CpuidTable(MappingProxyType(leaves))


# What Triplefault's CPU answers: as QEMU's -cpu qemu64,-svm,-apic (a core without a local
# APIC) and -cpu qemu64,-svm (the machine, which has one).
TRIPLEFAULT_CPUID = _edited(QEMU64_CPUID, apic=False)
TRIPLEFAULT_CPUID_WITH_APIC = _edited(QEMU64_CPUID, apic=True)


def cpuid(leaf: int, subleaf: int = 0, *, apic: bool = False) -> Registers:
    """What the CPUID instruction answers on Triplefault's CPU for any EAX and ECX.

    ``apic=False`` (the default) hides the local APIC: a core without one.
    """
    table = TRIPLEFAULT_CPUID_WITH_APIC if apic else TRIPLEFAULT_CPUID
    return table.answer(leaf, subleaf)


def qemu64_cpuid(leaf: int, subleaf: int = 0) -> Registers:
    """What QEMU 7.2's -cpu qemu64 answers (APIC and SVM advertised)."""
    return QEMU64.answer(leaf, subleaf)


# The feature words of QEMU's CPUX86State.features[] (FeatureWord order FEAT_1_EDX, FEAT_1_ECX,
# FEAT_7_0_EBX, FEAT_7_0_ECX, FEAT_7_0_EDX, FEAT_7_1_EAX, FEAT_8000_0001_EDX, FEAT_8000_0001_ECX)
# that make Unicorn's translator accept exactly qemu64's instructions. Leaf 1 ECX has no bit
# computed at run time here (no XSAVE, so no OSXSAVE).
def translator_feature_words(*, apic: bool = False) -> dict[str, int]:
    """Triplefault's CPUID feature bits by QEMU feature-word name."""
    table = TRIPLEFAULT_CPUID_WITH_APIC if apic else TRIPLEFAULT_CPUID
    leaf1 = table.answer(1)
    leaf7 = table.answer(7, 0)
    ext1 = table.answer(0x80000001)
    return {
        "FEAT_1_EDX": leaf1[3],
        "FEAT_1_ECX": leaf1[2],
        "FEAT_7_0_EBX": leaf7[1],
        "FEAT_7_0_ECX": leaf7[2],
        "FEAT_7_0_EDX": leaf7[3],
        "FEAT_7_1_EAX": table.answer(7, 1)[0],
        "FEAT_8000_0001_EDX": ext1[3],
        "FEAT_8000_0001_ECX": ext1[2],
    }


VENDOR = "AuthenticAMD"
FAMILY, MODEL, STEPPING = 0xF, 0x6B, 0x1
BRAND = "QEMU Virtual CPU version 2.5+"


# --------------------------------------------------------------------------- MSRs

IA32_APIC_BASE = 0x1B
MSR_SMI_COUNT = 0x34
MSR_CORE_THREAD_COUNT = 0x35
IA32_EFER = 0xC0000080
APIC_BASE_BSP = 1 << 8  # this CPU is the bootstrap processor
APIC_BASE_ENABLE = 1 << 11  # the xAPIC is enabled
APIC_BASE_ADDRESS = 0xFEE00000

MSR_NAMES: Mapping[int, str] = MappingProxyType(
    {
        0x17: "IA32_PLATFORM_ID",
        0x1B: "IA32_APIC_BASE",
        0x34: "MSR_SMI_COUNT",
        0x35: "MSR_CORE_THREAD_COUNT",
        0x3A: "IA32_FEATURE_CONTROL",
        0x3B: "IA32_TSC_ADJUST",
        0x8B: "IA32_BIOS_SIGN_ID",
        0xFE: "IA32_MTRRCAP",
        0x174: "IA32_SYSENTER_CS",
        0x175: "IA32_SYSENTER_ESP",
        0x176: "IA32_SYSENTER_EIP",
        0x179: "IA32_MCG_CAP",
        0x17A: "IA32_MCG_STATUS",
        0x17B: "IA32_MCG_CTL",
        0x186: "IA32_PERFEVTSEL0",
        0x198: "IA32_PERF_STATUS",
        0x1A0: "IA32_MISC_ENABLE",
        0x1D9: "IA32_DEBUGCTL",
        **{0x200 + 2 * n: f"IA32_MTRR_PHYSBASE{n}" for n in range(8)},
        **{0x201 + 2 * n: f"IA32_MTRR_PHYSMASK{n}" for n in range(8)},
        0x250: "IA32_MTRR_FIX64K_00000",
        0x258: "IA32_MTRR_FIX16K_80000",
        0x259: "IA32_MTRR_FIX16K_A0000",
        **{0x268 + n: f"IA32_MTRR_FIX4K_{0xC0000 + n * 0x8000:05X}" for n in range(8)},
        0x277: "IA32_PAT",
        0x2FF: "IA32_MTRR_DEF_TYPE",
        0x38F: "IA32_PERF_GLOBAL_CTRL",
        0x400: "IA32_MC0_CTL",
        0x401: "IA32_MC0_STATUS",
        0x402: "IA32_MC0_ADDR",
        0x403: "IA32_MC0_MISC",
        0x6E0: "IA32_TSC_DEADLINE",
        0x802: "IA32_X2APIC_APICID",
        0x808: "IA32_X2APIC_TPR",
        0x830: "IA32_X2APIC_ICR",
        0xD90: "IA32_BNDCFGS",
        0xC0000080: "IA32_EFER",
        0xC0000081: "IA32_STAR",
        0xC0000082: "IA32_LSTAR",
        0xC0000083: "IA32_CSTAR",
        0xC0000084: "IA32_FMASK",
        0xC0000100: "IA32_FS_BASE",
        0xC0000101: "IA32_GS_BASE",
        0xC0000102: "IA32_KERNEL_GS_BASE",
        0xC0000103: "IA32_TSC_AUX",
        0xC0010015: "AMD_HWCR",
        0xC0010114: "AMD_VM_CR",
        0xC0010117: "AMD_VM_HSAVE_PA",
    }
)

# What RDMSR returns when the kernel's first instruction runs under -cpu qemu64, after SeaBIOS
# and GRUB, for every MSR the probe read. Non-zero ones: the xAPIC enabled at its default
# address (BSP), fast strings (MISC_ENABLE bit 0), SeaBIOS's MTRRs (write-back by default,
# 2-4 GiB uncached, the fixed ranges: RAM below 640 KiB write-back, the VGA window uncached,
# 0xC0000-0xFFFFF write-protected), the reset PAT, 10 machine-check banks with MCG_CTL and the
# bank 0 control all ones, QEMU's AMD microcode revision 0x01000065, the three SMIs SeaBIOS
# raised (the same at 32 MiB, 128 MiB and 1 GiB), one core with one thread, and QEMU's constant
# PERF_STATUS (a TSC increment of 1000 and multiplier 4).
QEMU64_MSRS_AT_ENTRY: Mapping[int, int] = MappingProxyType(
    {
        0x17: 0,
        0x1B: 0xFEE00900,
        0x34: 3,
        0x35: 0x10001,  # cores << 16 | threads
        0x3A: 0,
        0x3B: 0,
        0x8B: 0x01000065,
        0xFE: 0x508,  # 8 variable MTRRs, fixed MTRRs, write-combining
        0x174: 0,
        0x175: 0,
        0x176: 0,
        0x179: 0x100010A,  # 10 banks, MCG_CTL present, software error recovery
        0x17A: 0,
        0x17B: 0xFFFFFFFFFFFFFFFF,
        0x186: 0,
        0x198: 0x400000003E8,
        0x1A0: 0x1,
        0x1D9: 0,
        0x200: 0x80000000,  # from 2 GiB, type 0 (uncached)
        0x201: 0xFF80000800,  # 2 GiB long, valid
        **{msr: 0 for msr in range(0x202, 0x210)},
        0x250: 0x0606060606060606,
        0x258: 0x0606060606060606,
        0x259: 0,
        **{msr: 0x0505050505050505 for msr in range(0x268, 0x270)},
        0x277: 0x0007040600070406,
        0x2FF: 0xC06,  # MTRRs and fixed MTRRs enabled, default write-back
        0x38F: 0,
        0x400: 0xFFFFFFFFFFFFFFFF,
        0x401: 0,
        0x402: 0,
        0x403: 0,
        0x6E0: 0,
        0x802: 0,
        0x808: 0,
        0x830: 0,
        0xD90: 0,
        # EFER as GRUB hands over. (The probe's own "msr 0xc0000080" line reads 0xD01: its
        # long-mode entry has set SCE, LME and NXE by then; its "entry efer" line is this value.)
        0xC0000080: 0,
        0xC0000081: 0,
        0xC0000082: 0,
        0xC0000083: 0,
        0xC0000084: 0,
        0xC0000100: 0,
        0xC0000101: 0,
        0xC0000102: 0,
        0xC0000103: 0,
        0xC0010015: 0,
        0xC0010114: 0,
        0xC0010117: 0,
    }
)

# MSR numbers no CPU of this kind has, probed: they read 0 too.
ABSENT_MSRS_PROBED = (0x12345, 0xC0011000, 0x40000000, 0x4B564D00, 0xFFFFFFFF)

# RDMSR raises #GP for no MSR number under QEMU 7.2's TCG, and WRMSR ignores numbers it does not
# know: every MSR that is not modelled reads 0. (A real CPU raises #GP for these.)
MSRS_RAISING_GP: frozenset[int] = frozenset()
UNKNOWN_MSR_VALUE = 0

# IA32_APIC_BASE without a local APIC: QEMU (-cpu qemu64,-apic) reports the BSP bit alone.
APIC_BASE_WITHOUT_APIC = APIC_BASE_BSP


def msr_at_entry(msr: int, *, apic: bool = False) -> int | None:
    """What RDMSR ``msr`` returns before the kernel writes it; None would mean #GP (never).

    ``apic=False`` (the default) is the machine without a local APIC.
    """
    if msr in MSRS_RAISING_GP:
        return None
    if msr == IA32_APIC_BASE and not apic:
        return APIC_BASE_WITHOUT_APIC
    return QEMU64_MSRS_AT_ENTRY.get(msr, UNKNOWN_MSR_VALUE)


# EFER bits WRMSR can change: SCE, LME, NXE (qemu64 has SYSCALL, LM and NX; FFXSR no). EFER.SVME
# (bit 12) sticks on qemu64, not once SVM is hidden. LMA is set by the CPU, not by WRMSR.
EFER_WRITABLE = (1 << 0) | (1 << 8) | (1 << 11)

# What WRMSR leaves, in the probe's order ("wrmsr" lines; the kernel runs in long mode with EFER
# 0xD01): (MSR, value written, "ok" or the fault, what RDMSR reads next). No write faults; the
# machine-check controls take 0 or all ones only, SYSENTER_CS keeps 16 bits, EFER keeps SCE, LME
# and NXE (and LMA), the read-only and absent MSRs ignore writes. Without an APIC (the default)
# IA32_APIC_BASE stays at the BSP bit; with one, a write moves and disables it
# (``QEMU64_APIC_BASE_WRITES``).
QEMU64_WRMSR: tuple[tuple[int, int, str, int], ...] = (
    (0xC0000080, 0xED01, "ok", 0xD01),
    (0xC0000080, 0x501, "ok", 0x501),
    (0xC0000080, 0x901, "ok", 0xD01),
    (0xC0000080, 0xD01, "ok", 0xD01),
    (0x1B, 0xFEE00800, "ok", APIC_BASE_WITHOUT_APIC),
    (0x1B, 0, "ok", APIC_BASE_WITHOUT_APIC),
    (0x174, 0x12345, "ok", 0x2345),
    (0x174, 0, "ok", 0),
    (0x17B, 5, "ok", 0xFFFFFFFFFFFFFFFF),
    (0x17B, 0, "ok", 0),
    (0x17B, 0xFFFFFFFFFFFFFFFF, "ok", 0xFFFFFFFFFFFFFFFF),
    (0x400, 5, "ok", 0xFFFFFFFFFFFFFFFF),
    (0x401, 5, "ok", 5),
    (0x401, 0, "ok", 0),
    (0x17A, 3, "ok", 3),
    (0x17A, 0, "ok", 0),
    (0x1A0, 0x12345, "ok", 0x12345),
    (0x1A0, 1, "ok", 1),
    (0x277, 0x0007040600070407, "ok", 0x0007040600070407),
    (0x277, 0x0007040600070406, "ok", 0x0007040600070406),
    (0x2FF, 0xC00, "ok", 0xC00),
    (0x2FF, 0xC06, "ok", 0xC06),
    (0xC0000081, 0x0023001000000000, "ok", 0x0023001000000000),
    (0xC0000102, 0xFFFF800000001000, "ok", 0xFFFF800000001000),
    (0xC0000103, 0x1234567890, "ok", 0x1234567890),
    (0xC0010117, 0x1000, "ok", 0x1000),
    (0xD90, 1, "ok", 1),
    (0xD90, 0, "ok", 0),
    (0x8B, 0, "ok", 0x01000065),
    (0x34, 1, "ok", 3),
    (0x35, 0, "ok", 0x10001),
    (0x198, 1, "ok", 0x400000003E8),
    (0x3A, 5, "ok", 0),
    (0x3B, 5, "ok", 0),
    (0x1D9, 1, "ok", 0),
    (0xC0010015, 8, "ok", 0),
    (0xC0010114, 8, "ok", 0),
    (0x12345, 0x55, "ok", 0),
)
# With a local APIC (-cpu qemu64 and -svm) the two IA32_APIC_BASE rows read instead:
QEMU64_APIC_BASE_WRITES = {0xFEE00800: 0xFEE00900, 0: APIC_BASE_BSP}


# --------------------------------------------------------------------------- at entry

# CR0, CR4, EFER and EFLAGS at the kernel's first instruction, as GRUB 2.06 leaves them
# (EFLAGS: bit 1, PF and ZF).
ENTRY_CR0 = 0x11
ENTRY_CR4 = 0x0
ENTRY_EFER = 0x0
ENTRY_EFLAGS = 0x46


# --------------------------------------------------------------------------- instructions


@dataclass(frozen=True)
class GatedInstruction:
    """An instruction a CPUID bit announces, as the probe ran it ("insn NAME: ...")."""

    probe_name: str
    announced_by: str  # the CPUID bit (or the vendor) that decides whether it exists
    qemu64: str  # what QEMU's qemu64 did: a result in EAX, "runs", "#UD" or "#GP"
    unicorn: str  # what Unicorn 2.1.4's own (Haswell) model does (cpu_model="unicorn")
    translator_gate: str  # the CPUX86State field Unicorn's translator checks ("" if none)


# Unicorn's translator checks its own feature words (and vendor), not the CPUID hook's answer:
# an instruction whose bit we hide still runs unless that field is edited too. The SSE4A ones it
# never checks: the qemu64 model intercepts them (core/instructions.py) and raises #UD.
GATED_INSTRUCTIONS: tuple[GatedInstruction, ...] = (
    GatedInstruction(
        "lzcnt eax<-ecx=1", "80000001.ECX[5] ABM", "0x00000000", "0x0000001f", "FEAT_8000_0001_ECX"
    ),
    GatedInstruction(
        "tzcnt eax=0x55<-ecx=0", "7.0.EBX[3] BMI1", "0x00000055", "0x00000020", "FEAT_7_0_EBX"
    ),  # without the bit, LZCNT and TZCNT are BSR and BSF with an ignored REP prefix
    GatedInstruction("popcnt eax<-ecx=0xff", "1.ECX[23] POPCNT", "#UD", "0x00000008", "FEAT_1_ECX"),
    GatedInstruction(
        "movbe eax<-[rcx]=0x11223344", "1.ECX[22] MOVBE", "#UD", "0x44332211", "FEAT_1_ECX"
    ),
    GatedInstruction(
        "crc32 eax=0<-ecx=0x55", "1.ECX[20] SSE4.2", "#UD", "0xe4a57591", "FEAT_1_ECX"
    ),
    GatedInstruction("lahf in 64-bit mode", "80000001.ECX[0] LAHF_LM", "runs", "runs", ""),
    # RDRAND returns host entropy under Unicorn: a run would not repeat
    GatedInstruction("rdrand eax", "1.ECX[30] RDRAND", "#UD", "runs", "FEAT_1_ECX"),
    GatedInstruction("rdtscp", "80000001.EDX[27] RDTSCP", "#UD", "runs", "FEAT_8000_0001_EDX"),
    # SYSENTER_CS is 0: #GP(0) where 64-bit SYSENTER exists; AMD CPUs have none. Unicorn's
    # value is Triplefault's SYSENTER hook raising #GP(0).
    GatedInstruction(
        "sysenter in 64-bit mode", "vendor AuthenticAMD", "#UD", "#GP", "cpuid_vendor1"
    ),
    GatedInstruction("sse2 pxor xmm0,xmm0", "1.EDX[26] SSE2", "runs", "runs", ""),
    GatedInstruction("sse3 haddpd xmm0,xmm0", "1.ECX[0] SSE3", "runs", "runs", ""),
    GatedInstruction("ssse3 pshufb xmm0,xmm0", "1.ECX[9] SSSE3", "#UD", "runs", "FEAT_1_ECX"),
    GatedInstruction("sse4.1 ptest xmm0,xmm0", "1.ECX[19] SSE4.1", "#UD", "runs", "FEAT_1_ECX"),
    # Unicorn's translator does not check the SSE4A bit: these run whatever the features say
    GatedInstruction("sse4a extrq xmm0,xmm1", "80000001.ECX[6] SSE4A", "#UD", "runs", ""),
    GatedInstruction("sse4a extrq xmm0,4,0", "80000001.ECX[6] SSE4A", "#UD", "runs", ""),
    GatedInstruction("sse4a insertq xmm0,xmm1", "80000001.ECX[6] SSE4A", "#UD", "runs", ""),
    GatedInstruction("sse4a insertq xmm0,xmm1,4,0", "80000001.ECX[6] SSE4A", "#UD", "runs", ""),
    GatedInstruction("sse4a movntss [rax],xmm0", "80000001.ECX[6] SSE4A", "#UD", "runs", ""),
    GatedInstruction("sse4a movntsd [rax],xmm0", "80000001.ECX[6] SSE4A", "#UD", "runs", ""),
    # the missing feature comes before CR0.TS: #UD, not #NM (Unicorn raises #NM)
    GatedInstruction(
        "sse4a extrq xmm0,xmm1 with cr0.ts", "80000001.ECX[6] SSE4A", "#UD", "#NM", ""
    ),
    GatedInstruction("aes aesenc xmm0,xmm0", "1.ECX[25] AES", "#UD", "runs", "FEAT_1_ECX"),
    GatedInstruction("pclmulqdq xmm0,xmm0,0", "1.ECX[1] PCLMULQDQ", "#UD", "runs", "FEAT_1_ECX"),
)
