"""The CPU model at work (emu/core/instructions.py): Triplefault's CPU is QEMU 7.2's qemu64
without SVM (and, on a bare core without the machine's local APIC, without the APIC), on every
route a run can take.

The differential test boots images/probe-cpuid and compares its serial output with what QEMU
printed for the same kernel (tests/golden/qemu/probe-cpuid.no-svm.serial), byte for
byte: every CPUID leaf, every MSR at entry, the entry flags, and which instructions exist. The
guests below check the parts one at a time, including the RDMSR intercept's instruction count
across run, single steps, breakpoints and replays from a checkpoint, and that
``cpu_model="unicorn"`` is still Unicorn's own CPU.
"""

from __future__ import annotations

import struct
from pathlib import Path

import capstone
import numpy as np
import pytest
from elftools.elf.elffile import ELFFile

from emu import Machine
from emu.core import cpu_identity as ci
from emu.core import engine as core
from emu.core import internals as I
from emu.core.instructions import _native_cpuid_leaf1
from emu.errors import EngineError

GOLDEN = Path(__file__).resolve().parent / "golden" / "qemu"
GDT = 0x10B0
CODE = 0x2000
EFER = 0xC0000080

CLI_HLT = b"\xfa\xf4"
OSFXSR_ON = b"\x0f\x20\xe0\x0d\x00\x02\x00\x00\x0f\x22\xe0"  # mov cr4,eax; or $0x200; mov eax,cr4


def _mov(reg: int, value: int) -> bytes:
    """mov $value, %reg (B8+reg: 0 eax, 1 ecx, 2 edx, 3 ebx, 6 esi)."""
    return bytes([0xB8 + reg]) + struct.pack("<I", value & 0xFFFFFFFF)


def _rdmsr(msr: int) -> bytes:
    return _mov(1, msr) + b"\x0f\x32"


def _wrmsr(msr: int, value: int) -> bytes:
    return _mov(1, msr) + _mov(0, value) + _mov(2, value >> 32) + b"\x0f\x30"


class Guest:
    """A 32-bit protected-mode guest on a bare core, entered the way GRUB's stub enters."""

    PROLOGUE_INSNS = 6

    def __init__(self, body: bytes, cpu_model: str = "qemu64", deliver: bool = False) -> None:
        self.ram = np.zeros(4 << 20, np.uint8)
        entries = [0, 0, 0x00CF9A000000FFFF, 0x00CF93000000FFFF]
        self.ram[GDT : GDT + 32] = np.frombuffer(struct.pack("<4Q", *entries), np.uint8)
        prologue = (b"\xea" + struct.pack("<IH", CODE + 7, 0x10) + b"\xb8\x18\x00\x00\x00"
                    + b"\x8e\xd8\x8e\xc0\x8e\xd0" + b"\xbc\x00\xff\x07\x00")  # fmt: skip
        self.body = CODE + len(prologue)
        code = prologue + body
        self.ram[CODE : CODE + len(code)] = np.frombuffer(code, np.uint8)
        self.core = core.UnicornCore(
            self.ram, lambda p, s: 0xFF, lambda p, s, v: None, deliver_exceptions=deliver,
            cpu_model=cpu_model,
        )  # fmt: skip
        self.core.enter_grub_protected_mode(gdt_base=GDT, gdt_limit=0x20, entry=CODE, registers={})

    def run(self, limit: int = 1 << 40) -> core.SliceEnd:
        return self.core.run_slice(1 << 40, limit)

    def reg(self, name: str) -> int:
        return self.core.state().gpr[name]

    def snapshot(self) -> tuple:
        s = self.core.state()
        return s.rip, s.rflags, tuple(sorted(s.gpr.items())), self.core.icount


# --------------------------------------------------------------------- against QEMU


@pytest.mark.images
def test_probe_cpuid_prints_byte_for_byte_what_qemu_printed(image) -> None:
    r = Machine.from_elf(image("probe-cpuid")).run(max_instructions=50_000_000)
    assert r.stop_reason == "debug-exit" and r.exit_code == 0
    expected = (GOLDEN / "probe-cpuid.no-svm.serial").read_bytes()
    assert r.serial == expected


# --------------------------------------------------------------------- CPUID


@pytest.mark.parametrize(
    ("leaf", "subleaf"),
    [(0, 0), (1, 0), (7, 0), (0xB, 1), (0xD, 0), (0xE, 1), (0x40000000, 0), (0x80000001, 0),
     (0x80000004, 0), (0x8000000A, 0), (0x8000000B, 1), (0xFFFFFFFF, 1)],
)  # fmt: skip
def test_cpuid_answers_every_leaf_from_the_model(leaf: int, subleaf: int) -> None:
    g = Guest(_mov(0, leaf) + _mov(1, subleaf) + b"\x0f\xa2" + CLI_HLT)
    assert g.run().kind == core.KIND_HALT
    assert tuple(g.reg(r) for r in ("rax", "rbx", "rcx", "rdx")) == ci.cpuid(leaf, subleaf)


# --------------------------------------------------------------------- instructions


# (name, code, what qemu64 does: "#UD" or EAX, what Unicorn's own model does)
GATED = [
    ("popcnt", _mov(1, 0xFF) + b"\xf3\x0f\xb8\xc1", "#UD", 8),
    ("lzcnt (BSR without ABM)", _mov(0, 0x55) + _mov(1, 1) + b"\xf3\x0f\xbd\xc1", 0, 0x1F),
    ("tzcnt (BSF without BMI1)", _mov(0, 0x55) + _mov(1, 0) + b"\xf3\x0f\xbc\xc1", 0x55, 0x20),
    ("movbe", _mov(1, CODE) + b"\x0f\x38\xf0\x01", "#UD", 0xEA072000),  # the ljmp's bytes
    ("crc32", _mov(0, 0) + _mov(1, 0x55) + b"\xf2\x0f\x38\xf1\xc1", "#UD", 0xE4A57591),
    ("rdtscp", b"\x0f\x01\xf9", "#UD", None),
    ("pshufb (SSSE3)", OSFXSR_ON + b"\x66\x0f\x38\x00\xc0", "#UD", None),
    ("aesenc", OSFXSR_ON + b"\x66\x0f\x38\xdc\xc0", "#UD", None),
    ("extrq (SSE4A)", OSFXSR_ON + b"\x66\x0f\x79\xc1", "#UD", None),
    ("insertq (SSE4A)", OSFXSR_ON + b"\xf2\x0f\x78\xc1\x04\x00", "#UD", None),
    ("movntsd (SSE4A)", OSFXSR_ON + _mov(0, 0x3000) + b"\xf2\x0f\x2b\x00", "#UD", None),
]


def _addresses(code: bytes, at: int) -> list[int]:
    return [
        i.address for i in capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32).disasm(code, at)
    ]


def _insns(code: bytes) -> int:
    return len(_addresses(code, 0))


@pytest.mark.parametrize(("name", "code", "qemu64", "unicorn"), GATED, ids=[g[0] for g in GATED])
def test_an_instruction_qemu64_lacks_raises_ud_exactly_where_it_is(
    name: str, code: bytes, qemu64: str | int, unicorn: int | None
) -> None:
    for cpu_model, expected in (("qemu64", qemu64), ("unicorn", unicorn)):
        g = Guest(code + CLI_HLT, cpu_model=cpu_model)
        end = g.run()
        if expected == "#UD":
            assert end.kind == core.KIND_EXCEPTION and end.exception.vector == 6, cpu_model
            last = _addresses(code, g.body)[-1]
            assert end.exception.rip == g.core.state().rip == last, cpu_model
            assert g.core.icount == g.PROLOGUE_INSNS + _insns(code) - 1, cpu_model
        else:
            assert end.kind == core.KIND_HALT, (cpu_model, end)
            if expected is not None:
                assert g.reg("rax") == expected, cpu_model


def test_an_ud_from_the_intercept_counts_as_a_natural_one_when_stepped() -> None:
    for code in (_mov(1, 0xFF) + b"\xf3\x0f\xb8\xc1", OSFXSR_ON + b"\x66\x0f\x79\xc1"):
        stepped = Guest(code + CLI_HLT)
        while (end := stepped.core.step()) is None:
            pass
        run = Guest(code + CLI_HLT)
        assert run.run().kind == end.kind == core.KIND_EXCEPTION
        assert end.exception.vector == 6 and end.exception.rip == run.core.state().rip
        assert stepped.core.icount == run.core.icount


def test_the_ud_is_delivered_through_the_idt_and_the_run_goes_on() -> None:
    """SSE4A raised from the code hook lands in the guest's handler (here: no IDT, so a
    triple fault) with the same chain a natural #UD gives."""
    chains = []
    for code in (b"\xf3\x0f\xb8\xc1", OSFXSR_ON + b"\x66\x0f\x79\xc1"):
        g = Guest(code + CLI_HLT, deliver=True)
        deliveries: list = []
        g.core.on_delivery = lambda ev, exc, res, d=deliveries: d.append(res)
        assert g.run().kind == core.KIND_TRIPLE_FAULT
        chains.append([(s.event.vector, s.event.error_code) for s in deliveries[0].steps])
    assert chains[0] == chains[1] == [(6, None), (13, 0x32), (8, 0)]


# --------------------------------------------------------------------- MSRs


def test_the_msrs_at_entry_are_what_seabios_and_grub_leave_under_qemu() -> None:
    g = Guest(CLI_HLT)
    for msr in ci.QEMU64_MSRS_AT_ENTRY:
        assert g.core.read_msr(msr) == ci.msr_at_entry(msr), hex(msr)


@pytest.mark.images
def test_the_kernel_starts_with_grubs_flags_and_msrs(image) -> None:
    m = Machine.from_elf(image("probe-cpuid"))
    m.add_breakpoint(m.boot.entry)  # probe_entry, the first instruction of the kernel
    assert m.run(max_instructions=1_000).stop_reason == "breakpoint"
    assert m.cpu_state().rflags == ci.ENTRY_EFLAGS == 0x46
    assert all(m.core.read_msr(n) == ci.msr_at_entry(n, apic=True) for n in ci.QEMU64_MSRS_AT_ENTRY)


def test_rdmsr_of_apic_base_reads_the_bsp_bit_and_writes_do_not_change_it() -> None:
    body = _rdmsr(0x1B) + b"\x89\xc6" + _wrmsr(0x1B, 0xFEE00800) + _rdmsr(0x1B) + CLI_HLT
    g = Guest(body)
    assert g.run().kind == core.KIND_HALT
    assert g.reg("rsi") == ci.APIC_BASE_BSP == 0x100
    assert g.reg("rax") == 0x100 and g.reg("rdx") == 0
    # 6 + (mov, rdmsr, mov esi) + (4 of wrmsr) + (mov, rdmsr) + cli, hlt: none lost, none doubled
    assert g.core.icount == g.PROLOGUE_INSNS + 3 + 4 + 2 + 2


def test_rdmsr_of_the_microcode_revision_is_qemus_amd_value() -> None:
    g = Guest(_rdmsr(0x8B) + CLI_HLT)
    assert g.run().kind == core.KIND_HALT
    assert (g.reg("rdx") << 32) | g.reg("rax") == 0x01000065


def test_wrmsr_efer_changes_sce_lme_and_nxe_only() -> None:
    g = Guest(_wrmsr(EFER, 0xFFFF) + _rdmsr(EFER) + CLI_HLT)
    assert g.run().kind == core.KIND_HALT
    assert g.reg("rax") == ci.EFER_WRITABLE == 0x901  # no SVME, FFXSR, LMSLE, TCE; LMA stays 0


def test_an_intercepted_address_whose_code_changed_runs_what_is_there_now() -> None:
    g = Guest(_rdmsr(0x1B) + b"\x89\xc6" + CLI_HLT)
    assert g.run().kind == core.KIND_HALT and g.reg("rsi") == 0x100
    site = g.body + 5
    assert site in g.core._intercepts
    g.ram[site : site + 2] = 0x90  # rdmsr -> nop; nop
    g.core.uc.ctl_flush_tb()
    g.core.uc.reg_write(core.X.UC_X86_REG_RAX, 0x5555)
    g.core.uc.reg_write(core.X.UC_X86_REG_RIP, g.body)
    assert g.run().kind == core.KIND_HALT
    assert g.reg("rsi") == 0x5555


# ------------------------------------------------------------ the intercept on every route

ROUTE_BODY = (
    b"\x43" + _rdmsr(0x1B) + b"\x89\xc6\x43"  # inc ebx; mov ecx; rdmsr; mov esi,eax; inc ebx
    + b"\xfb" + _rdmsr(0x1B) + b"\x43"  # sti; (the shadow) mov ecx; rdmsr; inc ebx
    + _rdmsr(EFER) + b"\x89\xc7\x43"  # an MSR Unicorn answers itself
    + CLI_HLT
)  # fmt: skip


def test_run_and_single_steps_agree_at_every_instruction_around_rdmsr() -> None:
    whole = Guest(ROUTE_BODY)
    assert whole.run().kind == core.KIND_HALT
    total = whole.core.icount
    assert total == Guest.PROLOGUE_INSNS + _insns(ROUTE_BODY)
    assert whole.reg("rsi") == 0x100 and whole.reg("rbx") == 4
    stepped = Guest(ROUTE_BODY)
    for k in range(1, total + 1):
        end = stepped.core.step()
        assert end is None or (k == total and end.kind == core.KIND_HALT)
        assert stepped.core.icount == k
        limited = Guest(ROUTE_BODY)  # run as far as whole blocks go, then step: Machine.run(N)
        limited.run(limit=k)
        while limited.core.icount < k:
            limited.core.step()
        assert limited.snapshot() == stepped.snapshot(), k
    assert stepped.snapshot()[2] == whole.snapshot()[2]


def _rdmsr_sites(elf: Path) -> list[int]:
    with open(elf, "rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        code, base = text.data(), text["sh_addr"]
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    cs.skipdata = True  # (32-bit code and data in between)
    return [i.address for i in cs.disasm(code, base) if i.mnemonic == "rdmsr"]


def _run_to_the_apic_base_rdmsr(m: Machine) -> None:
    """Continue from breakpoint to breakpoint up to the first RDMSR of IA32_APIC_BASE (the
    probe's MSR loop), stopped before it."""
    while True:
        r = m.run(max_instructions=5_000_000)
        assert r.stop_reason == "breakpoint"
        if m.cpu_state().gpr["rcx"] & 0xFFFFFFFF == 0x1B:
            return


def _state(m: Machine) -> tuple:
    s = m.cpu_state()
    return s.rip, s.rflags, tuple(sorted(s.gpr.items())), m.instructions


@pytest.mark.images
def test_rdmsr_retires_once_on_run_step_and_replay_from_a_checkpoint(image) -> None:
    elf = image("probe-cpuid")
    m = Machine.from_elf(elf)
    boot = m.checkpoint()
    sites = _rdmsr_sites(elf)
    for site in sites:  # breakpoints set before any block is learned
        m.add_breakpoint(site)
    _run_to_the_apic_base_rdmsr(m)
    site, before = m.cpu_state().rip, m.instructions
    assert m.core.read_msr(0x1B) == 0xFEE00900 and site in m.core._intercepts
    # continuing from the breakpoint executes the RDMSR once, as the intercept answers it
    r = m.run(max_instructions=1)
    assert r.stop_reason == "instruction-limit" and m.instructions == before + 1
    rip, _flags, gpr, _n = _state(m)
    assert rip == site + 2 and dict(gpr)["rax"] == 0xFEE00900 and dict(gpr)["rdx"] == 0
    for address in sites:
        m.remove_breakpoint(address)
    m.restore(boot)
    assert m.run(max_instructions=before).stop_reason == "instruction-limit"
    at_site = m.checkpoint()
    assert m.cpu_state().rip == site
    for n in (1, 2, 7, 40, 400):
        m.restore(at_site)
        m.run(max_instructions=n)
        by_run = _state(m)
        m.restore(at_site)
        for _ in range(n):
            assert m.step() is None
        by_step = _state(m)
        assert m.replay(boot, before + n) is None
        by_replay = _state(m)
        assert by_run == by_step == by_replay, n
        assert by_run[3] == before + n
    # and the whole run is the same run
    m.restore(boot)
    assert (
        m.run(max_instructions=50_000_000).serial
        == (GOLDEN / "probe-cpuid.no-svm.serial").read_bytes()
    )


@pytest.mark.images
def test_a_breakpoint_set_after_the_rdmsr_was_learned_still_stops_before_it(image) -> None:
    elf = image("probe-cpuid")
    m = Machine.from_elf(elf)
    boot = m.checkpoint()
    m.run(max_instructions=50_000_000)
    sites = [s for s in _rdmsr_sites(elf) if s in m.core._intercepts]
    assert sites
    m.restore(boot)
    for site in sites:
        m.add_breakpoint(site)
    _run_to_the_apic_base_rdmsr(m)
    site, before = m.cpu_state().rip, m.instructions
    assert site in sites and m.cpu_state().gpr["rax"] != 0xFEE00900
    m.run(max_instructions=1)
    s = m.cpu_state()
    assert m.instructions == before + 1 and s.rip == site + 2 and s.gpr["rax"] == 0xFEE00900


# --------------------------------------------------------------------- "unicorn"


def test_the_unicorn_model_is_unicorns_own_cpu_as_before() -> None:
    body = _mov(0, 0) + b"\x0f\xa2" + b"\x89\xde" + _mov(0, 1) + b"\x0f\xa2" + b"\x89\xd7"
    g = Guest(body + _rdmsr(0x1B) + CLI_HLT, cpu_model="unicorn")
    assert g.core.read_msr(0x1A0) == 0 and g.core.read_msr(0x8B) == 0x1_0000_0000
    assert g.run().kind == core.KIND_HALT
    assert struct.pack("<I", g.reg("rsi")) == b"Genu"
    assert g.reg("rdi") == _native_cpuid_leaf1()[3] & ~(1 << 9)  # only the APIC bit hidden
    assert g.reg("rax") == 0  # IA32_APIC_BASE as Unicorn hard-wires it
    assert g.core._intercepts == {}


def test_an_unknown_cpu_model_is_an_error() -> None:
    with pytest.raises(EngineError, match="unknown CPU model 'pentium'"):
        Guest(CLI_HLT, cpu_model="pentium")


# --------------------------------------------------------------------- the layout


@pytest.mark.parametrize(
    ("name", "what"),
    [("ENV_FEATURES", "features"), ("ENV_CPUID_VENDOR", "cpuid_vendor"),
     ("ENV_TO_UCODE_REV", "ucode_rev")],
)  # fmt: skip
def test_a_different_layout_of_the_cpu_model_fields_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, name: str, what: str
) -> None:
    monkeypatch.setattr(I, name, getattr(I, name) + 8)
    with pytest.raises(EngineError, match=f"differ from the verified 2.1.4 layout \\({what}\\)"):
        Guest(CLI_HLT)
