"""The CPU identity model (emu/core/cpu_identity.py) against what QEMU 7.2 printed for the
probe kernel.

The golden files are the serial output of images/probe-cpuid under qemu-ref: -cpu qemu64, and
the QEMU configurations our identity is made of (-svm; -svm,-apic) or that show the rule for
leaves out of range (level=0xb). A change to any table in the model fails here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn import x86_const as X

from emu.core import cpu_identity as ci

GOLDEN = Path(__file__).resolve().parent / "golden" / "qemu"

_WORD = r"([0-9a-f]{8})"
_CPUID = re.compile(rf"cpuid 0x{_WORD}\.([0-9a-f]+): {_WORD} {_WORD} {_WORD} {_WORD}")
_MSR = re.compile(r"msr 0x([0-9a-f]{8}): (#GP|#UD|0x[0-9a-f]{16})")
_WRMSR = re.compile(r"wrmsr 0x([0-9a-f]{8}) <- 0x([0-9a-f]{16}): (ok|#GP), reads 0x([0-9a-f]{16})")
_ENTRY = re.compile(r"entry (cr0|cr4|efer|eflags): 0x([0-9a-f]+)")
_INSN = re.compile(r"insn (.+): (\S+)")
_LINE = re.compile(r"([^:]+): (.*)")


@dataclass
class ProbeOutput:
    """The probe's lines, by kind."""

    cpuid: dict[tuple[int, int], ci.Registers] = field(default_factory=dict)  # within range
    cpuid_out_of_range: dict[tuple[int, int], ci.Registers] = field(default_factory=dict)
    msrs: dict[int, int | str] = field(default_factory=dict)  # a value, or "#GP"
    entry: dict[str, int] = field(default_factory=dict)
    insns: dict[str, str] = field(default_factory=dict)
    wrmsr: list[tuple[int, int, str, int]] = field(default_factory=list)  # in the probe's order
    other: dict[str, str] = field(default_factory=dict)  # vendor, signature, brand, ...

    def every_cpuid(self) -> dict[tuple[int, int], ci.Registers]:
        return {**self.cpuid, **self.cpuid_out_of_range}


def parse_probe(name: str) -> ProbeOutput:
    text = (GOLDEN / name).read_bytes().decode("ascii").replace("\r\n", "\n")
    lines = text.splitlines()
    assert lines[0] == "probe-cpuid: CPU identity" and lines[-1] == "probe-cpuid: done"
    out = ProbeOutput()
    cpuid = out.cpuid
    for line in lines[1:-1]:
        if line == "out of range:":
            cpuid = out.cpuid_out_of_range
        elif m := _CPUID.fullmatch(line):
            key = (int(m[1], 16), int(m[2], 16))
            assert key not in cpuid, f"{line!r} printed twice"
            cpuid[key] = (int(m[3], 16), int(m[4], 16), int(m[5], 16), int(m[6], 16))
        elif m := _WRMSR.fullmatch(line):
            out.wrmsr.append((int(m[1], 16), int(m[2], 16), m[3], int(m[4], 16)))
        elif m := _MSR.fullmatch(line):
            out.msrs[int(m[1], 16)] = m[2] if m[2].startswith("#") else int(m[2], 16)
        elif m := _ENTRY.fullmatch(line):
            out.entry[m[1]] = int(m[2], 16)
        elif m := _INSN.fullmatch(line):
            out.insns[m[1]] = m[2]
        elif m := _LINE.fullmatch(line):
            out.other[m[1]] = m[2]
        else:
            raise AssertionError(f"unexpected line {line!r}")
    return out


@pytest.fixture(scope="module")
def qemu64() -> ProbeOutput:
    return parse_probe("probe-cpuid.serial")


@pytest.fixture(scope="module")
def qemu64_no_svm() -> ProbeOutput:
    return parse_probe("probe-cpuid.no-svm.serial")


@pytest.fixture(scope="module")
def qemu64_no_svm_no_apic() -> ProbeOutput:
    return parse_probe("probe-cpuid.no-svm-no-apic.serial")


@pytest.fixture(scope="module")
def qemu64_level_b() -> ProbeOutput:
    return parse_probe("probe-cpuid.level-0xb.serial")


def _differences(
    answer: Callable[[int, int], ci.Registers], measured: dict[tuple[int, int], ci.Registers]
) -> list[tuple[int, int]]:
    """The measured leaves ``answer`` gets wrong."""
    return [key for key, regs in measured.items() if answer(*key) != regs]


# --------------------------------------------------------------------------- CPUID


def test_the_qemu64_table_is_every_leaf_the_probe_printed(qemu64: ProbeOutput) -> None:
    assert dict(ci.QEMU64_CPUID) == qemu64.cpuid


def test_qemu64_answers_as_qemu_did_in_range_and_out_of_range(qemu64: ProbeOutput) -> None:
    assert qemu64.cpuid_out_of_range, "the probe printed no leaf above a maximum"
    assert _differences(ci.qemu64_cpuid, qemu64.every_cpuid()) == []


def test_a_leaf_above_its_range_answers_as_the_highest_basic_leaf_with_the_same_subleaf(
    qemu64_level_b: ProbeOutput,
) -> None:
    """With level=0xb the highest basic leaf is the topology leaf, whose answer depends on the
    sub-leaf, so the measurement tells 'leaf 0xB, same ECX' from 'zeros' or 'sub-leaf 0'."""
    measured = qemu64_level_b.cpuid_out_of_range
    assert measured[(0xC, 0)] != measured[(0xC, 1)]
    assert measured[(0xC, 1)] == ci.QEMU64_CPUID[(0xB, 1)]
    limited = ci.QEMU64.with_max_basic_leaf(0xB)
    assert dict(limited.leaves) == qemu64_level_b.cpuid
    assert _differences(limited.answer, qemu64_level_b.every_cpuid()) == []


@pytest.mark.parametrize(
    ("leaf", "subleaf", "answered_by"),
    [
        (0xE, 0, (0xD, 0)),  # basic, above 0xD
        (0x3FFFFFFF, 0, (0xD, 0)),
        (0x40000002, 0, (0xD, 0)),  # above the hypervisor range's 0x40000001
        (0x8000000B, 1, (0xD, 1)),  # above the extended maximum, sub-leaf kept
        (0xC0000000, 0, (0xD, 0)),  # qemu64 has no Centaur range
        (0xFFFFFFFF, 0, (0xD, 0)),
    ],
)
def test_out_of_range_leaves(leaf: int, subleaf: int, answered_by: tuple[int, int]) -> None:
    limited = ci.QEMU64.with_max_basic_leaf(0xB)
    assert ci.QEMU64.answer(leaf, subleaf) == ci.QEMU64.answer(*answered_by)
    assert limited.answer(leaf, subleaf) == limited.answer(0xB, subleaf)
    assert limited.answer(leaf, 7) == (0, 0, 7, 0)  # an invalid topology level echoes ECX


def test_leaves_without_subleaves_ignore_ecx() -> None:
    for leaf, _ in ci.QEMU64_CPUID:
        if leaf not in ci.SUBLEAF_LEAVES:
            assert ci.cpuid(leaf, 5) == ci.cpuid(leaf, 0)


def test_our_identity_is_qemu64_without_svm_and_apic(qemu64_no_svm_no_apic: ProbeOutput) -> None:
    assert _differences(ci.cpuid, qemu64_no_svm_no_apic.every_cpuid()) == []


def test_with_an_apic_our_identity_is_qemu64_without_svm(qemu64_no_svm: ProbeOutput) -> None:
    def with_apic(leaf: int, subleaf: int) -> ci.Registers:
        return ci.cpuid(leaf, subleaf, apic=True)

    assert _differences(with_apic, qemu64_no_svm.every_cpuid()) == []


def test_the_apic_bits_are_hidden_by_default() -> None:
    assert ci.cpuid(1)[3] & ci.CPUID1_EDX_APIC == 0
    assert ci.cpuid(0x80000001)[3] & ci.CPUID80000001_EDX_APIC == 0
    assert ci.cpuid(1, apic=True)[3] & ci.CPUID1_EDX_APIC
    assert ci.cpuid(0x80000001, apic=True)[3] & ci.CPUID80000001_EDX_APIC
    assert ci.qemu64_cpuid(1)[3] & ci.CPUID1_EDX_APIC
    # nothing else changes with the APIC
    for key in ci.QEMU64_CPUID:
        if key not in ((1, 0), (0x80000001, 0)):
            assert ci.cpuid(*key) == ci.cpuid(*key, apic=True), key


def test_our_answers_differ_from_qemu64_only_where_the_docstring_says(
    qemu64: ProbeOutput,
) -> None:
    differing = {key for key in qemu64.cpuid if ci.cpuid(*key) != qemu64.cpuid[key]}
    assert differing == {(1, 0), (0x80000001, 0), (ci.SVM_LEAF, 0)}
    assert ci.cpuid(0x80000001)[2] & ci.CPUID80000001_ECX_SVM == 0
    assert ci.cpuid(ci.SVM_LEAF) == (0, 0, 0, 0)


def test_rdrand_is_not_advertised() -> None:
    rdrand = 1 << 30
    assert ci.qemu64_cpuid(1)[2] & rdrand == 0
    assert ci.cpuid(1)[2] & rdrand == 0


def test_the_decoded_identity(qemu64: ProbeOutput) -> None:
    assert qemu64.other["vendor"] == ci.VENDOR
    fms = f"family {ci.FAMILY:#x} model {ci.MODEL:#x} stepping {ci.STEPPING:#x}"
    assert qemu64.other["signature"] == fms
    assert qemu64.other["brand"] == ci.BRAND
    assert qemu64.other["cpuid.1 ecx.hypervisor"] == "1"


def _unicorn_cpuid(leaf: int, subleaf: int = 0) -> ci.Registers:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0x1000, 0x1000)
    uc.mem_write(0x1000, b"\x0f\xa2")  # cpuid
    uc.reg_write(X.UC_X86_REG_RAX, leaf)
    uc.reg_write(X.UC_X86_REG_RCX, subleaf)
    uc.emu_start(0x1000, 0x1002)
    regs = (X.UC_X86_REG_RAX, X.UC_X86_REG_RBX, X.UC_X86_REG_RCX, X.UC_X86_REG_RDX)
    eax, ebx, ecx, edx = (uc.reg_read(r) & 0xFFFFFFFF for r in regs)
    return eax, ebx, ecx, edx


@pytest.mark.parametrize("apic", [False, True])
def test_every_feature_we_advertise_is_one_unicorns_cpu_model_has(apic: bool) -> None:
    """Unicorn runs an instruction only if its own model has the feature, so advertising a bit
    it lacks would promise what the core cannot do."""
    ours = ci.translator_feature_words(apic=apic)
    leaf1, leaf7, ext1 = _unicorn_cpuid(1), _unicorn_cpuid(7, 0), _unicorn_cpuid(0x80000001)
    unicorn = {
        "FEAT_1_EDX": leaf1[3],
        "FEAT_1_ECX": leaf1[2],
        "FEAT_7_0_EBX": leaf7[1],
        "FEAT_7_0_ECX": leaf7[2],
        "FEAT_7_0_EDX": leaf7[3],
        "FEAT_7_1_EAX": _unicorn_cpuid(7, 1)[0],
        # an Intel model leaves out the AMD copies of the leaf 1 EDX bits
        "FEAT_8000_0001_EDX": ext1[3] | (leaf1[3] & ci.AMD_ALIAS_BITS),
        "FEAT_8000_0001_ECX": ext1[2],
    }
    missing = {
        name: hex(ours[name] & ~unicorn[name]) for name in ours if ours[name] & ~unicorn[name]
    }
    assert missing == {}
    # and it is what the CPUID answers say
    assert ours["FEAT_1_ECX"] == ci.cpuid(1, apic=apic)[2]
    assert ours["FEAT_8000_0001_EDX"] == ci.cpuid(0x80000001, apic=apic)[3]


def test_the_address_sizes_match_unicorns() -> None:
    """The MMU's MAXPHYADDR (40) comes from the same leaf."""
    assert ci.cpuid(0x80000008)[0] & 0xFFFF == _unicorn_cpuid(0x80000008)[0] & 0xFFFF == 0x3028


# --------------------------------------------------------------------------- MSRs


def test_msrs_at_entry_are_what_the_probe_read(qemu64: ProbeOutput) -> None:
    probed = {msr for msr in qemu64.msrs if msr not in ci.ABSENT_MSRS_PROBED}
    assert probed == set(ci.QEMU64_MSRS_AT_ENTRY)
    for msr, value in qemu64.msrs.items():
        if value == "#GP":
            assert ci.msr_at_entry(msr, apic=True) is None, hex(msr)
        elif msr == ci.IA32_EFER:
            assert ci.msr_at_entry(msr) == qemu64.entry["efer"] == ci.ENTRY_EFER
            assert value == 0xD01  # SCE, LME, NXE set by the probe's long-mode entry, and LMA
        else:
            assert ci.msr_at_entry(msr, apic=True) == value, hex(msr)


def test_no_msr_raises_gp_under_qemu(qemu64: ProbeOutput) -> None:
    assert "#GP" not in qemu64.msrs.values()
    assert frozenset() == ci.MSRS_RAISING_GP
    for msr in ci.ABSENT_MSRS_PROBED:
        assert qemu64.msrs[msr] == ci.UNKNOWN_MSR_VALUE == ci.msr_at_entry(msr)


def test_apic_base_keeps_the_bsp_bit_with_and_without_an_apic(
    qemu64: ProbeOutput, qemu64_no_svm_no_apic: ProbeOutput
) -> None:
    assert qemu64.msrs[ci.IA32_APIC_BASE] == ci.msr_at_entry(ci.IA32_APIC_BASE, apic=True)
    assert ci.msr_at_entry(ci.IA32_APIC_BASE, apic=True) == (
        ci.APIC_BASE_ADDRESS | ci.APIC_BASE_ENABLE | ci.APIC_BASE_BSP
    )
    assert qemu64_no_svm_no_apic.msrs[ci.IA32_APIC_BASE] == ci.msr_at_entry(ci.IA32_APIC_BASE)
    assert ci.msr_at_entry(ci.IA32_APIC_BASE) == ci.APIC_BASE_BSP


def test_the_apic_variant_changes_no_other_msr(
    qemu64: ProbeOutput, qemu64_no_svm_no_apic: ProbeOutput
) -> None:
    changed = {m for m in qemu64.msrs if qemu64.msrs[m] != qemu64_no_svm_no_apic.msrs[m]}
    assert changed == {ci.IA32_APIC_BASE}


def test_efer_svme_sticks_only_with_svm(
    qemu64: ProbeOutput, qemu64_no_svm_no_apic: ProbeOutput
) -> None:
    assert qemu64.other["efer set bit 12 (svme)"] == "reads 0x1d01"
    assert qemu64_no_svm_no_apic.other["efer set bit 12 (svme)"] == "reads 0xd01"
    assert not ci.EFER_WRITABLE & (1 << 12)


# --------------------------------------------------------------------------- entry, instructions


def test_the_entry_state(qemu64: ProbeOutput) -> None:
    assert qemu64.entry == {
        "cr0": ci.ENTRY_CR0,
        "cr4": ci.ENTRY_CR4,
        "efer": ci.ENTRY_EFER,
        "eflags": ci.ENTRY_EFLAGS,
    }


def test_the_gated_instructions_are_what_qemu64_did(
    qemu64: ProbeOutput, qemu64_no_svm_no_apic: ProbeOutput
) -> None:
    table = {g.probe_name: g.qemu64 for g in ci.GATED_INSTRUCTIONS}
    assert table == qemu64.insns == qemu64_no_svm_no_apic.insns


def test_what_wrmsr_leaves_is_what_qemu_left(
    qemu64: ProbeOutput, qemu64_no_svm: ProbeOutput, qemu64_no_svm_no_apic: ProbeOutput
) -> None:
    assert list(ci.QEMU64_WRMSR) == qemu64_no_svm_no_apic.wrmsr
    assert all(result == "ok" for _msr, _value, result, _reads in ci.QEMU64_WRMSR)
    with_apic = [
        (
            msr,
            value,
            result,
            ci.QEMU64_APIC_BASE_WRITES[value] if msr == ci.IA32_APIC_BASE else reads,
        )
        for msr, value, result, reads in ci.QEMU64_WRMSR
    ]
    assert with_apic == qemu64_no_svm.wrmsr == qemu64.wrmsr
    efer = [reads for msr, _value, _result, reads in ci.QEMU64_WRMSR if msr == ci.IA32_EFER]
    assert {e & ~(1 << 10) for e in efer} <= {ci.EFER_WRITABLE, ci.EFER_WRITABLE & ~(1 << 11)}
