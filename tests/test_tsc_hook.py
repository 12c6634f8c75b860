"""RDTSC and RDTSCP through the compiled hook (clock/kernels.py ``rdtsc_hook``) against its
readable model (``CpuInstructions._hook_rdtsc``): the same values, the same read counts and the
same machine, on every route (run, step, restore), in 32-bit code with and without a CS base
and in long mode with the timer interrupting."""

from __future__ import annotations

import hashlib
import struct

import pytest
import timer_guest
from mb2_kernel import build

from emu import Machine
from emu.errors import ConfigError

VALUES = 0x200000  # where the kernel stores what it read
LOOPS = 300

# Reads first, in the middle and last in a block, two in one block, in a code segment whose base
# is not 0 (blocks are at linear addresses, EIP is not), and a udelay-style wait on the TSC.
BODY = f"""
    lgdt gdtr
    ljmp $0x20, $(based - 0x100000)
based:
    rdtsc
    movl %eax, {VALUES}
    nop
    rdtsc
    movl %eax, {VALUES + 4}
    ljmp $0x10, $flat
flat:
    movl ${VALUES + 8}, %edi
    movl ${LOOPS}, %ecx
1:  rdtsc
    movl %eax, (%edi)
    addl $4, %edi
    incl %ebx
    rdtsc
    addl %eax, %esi
    decl %ecx
    jnz 1b
    movl %esi, (%edi)
    RDTSCP_PART
    rdtsc
    movl %eax, %ebp
2:  pause
    rdtsc
    subl %ebp, %eax
    cmpl $5000, %eax
    jb 2b
    movl %eax, {VALUES + 8 + 4 * LOOPS + 4}
    jmp after
    .align 8
gdt:
    .quad 0, 0, 0x00CF9A000000FFFF, 0x00CF93000000FFFF, 0x00CF9A100000FFFF
gdtr:
    .short 39
    .long gdt
after:
"""
RDTSCP = f"""
    movl $7, %ecx
    rdtscp
    movl %eax, {VALUES + 8 + 4 * LOOPS + 8}
    movl %ecx, {VALUES + 8 + 4 * LOOPS + 12}
"""


@pytest.fixture(scope="module", params=["qemu64", "unicorn"])
def kernel(request, tmp_path_factory) -> tuple[str, object]:
    cpu = request.param
    part = RDTSCP if cpu == "unicorn" else ""  # qemu64 has no RDTSCP (#UD)
    elf = build(BODY.replace("RDTSCP_PART", part), tmp_path_factory.mktemp("tsc"), f"tsc-{cpu}")
    return cpu, elf


def _machine(kernel, tsc_hook: str) -> Machine:
    cpu, elf = kernel
    return Machine.from_elf(elf, memory="8M", cpu=cpu, tsc_hook=tsc_hook)


def _state(m: Machine) -> tuple:
    s = m.cpu_state()
    return (
        m.core.icount,
        m.core.tsc_reads,
        s.rip,
        tuple(sorted(s.gpr.items())),
        hashlib.sha1(m.ram.tobytes()).hexdigest(),
    )


def _values(m: Machine, n: int) -> list[int]:
    return list(struct.unpack(f"<{n}I", m.read_physical(VALUES, 4 * n)))


def test_compiled_and_model_read_the_same_tsc(kernel) -> None:
    results = []
    for hook in ("compiled", "python"):
        m = _machine(kernel, hook)
        r = m.run(max_instructions=10_000_000)
        assert r.stop_reason == "debug-exit"
        results.append((_state(m), _values(m, 2 + LOOPS + 4)))
    assert results[0] == results[1]
    (_, reads, *_), values = results[0]
    based, loop, (total, waited, tscp, aux) = values[:2], values[2 : 2 + LOOPS], values[-4:]
    assert based[1] - based[0] == 3  # rdtsc, mov, nop: the TSC is the count at the instruction
    assert {b - a for a, b in zip(loop, loop[1:], strict=False)} == {8}  # the loop's 8
    assert total == sum(v + 4 for v in loop) & 0xFFFFFFFF  # the second read, 4 later
    assert 5000 <= waited < 5006  # the wait ends at the first read past 5,000 ticks
    cpu, _ = kernel
    expected_reads = 2 + 2 * LOOPS + 1 + (5000 + 5) // 5 + (cpu == "unicorn")
    assert reads in (expected_reads, expected_reads + 1)
    if cpu == "unicorn":
        assert tscp > loop[-1] and aux == 0  # RDTSCP: ECX = IA32_TSC_AUX = 0 (it was 7)


@pytest.mark.parametrize("k", [5, 40, 1_234, 3_000])
def test_steps_and_restores_read_what_a_run_reads(kernel, k: int) -> None:
    whole = _machine(kernel, "python")
    whole.run(max_instructions=10_000_000)
    expected = _state(whole)
    m = _machine(kernel, "compiled")
    m.run(max_instructions=k)
    cp = m.checkpoint()
    for _ in range(200):  # through RDTSCs one instruction at a time
        assert m.step() is None
    m.run(max_instructions=10_000_000)
    assert _state(m) == expected
    m.restore(cp)
    m.run(max_instructions=10_000_000)
    assert _state(m) == expected


def test_long_mode_reads_with_the_timer_interrupting() -> None:
    """A 64-bit handler of an armed PIT interrupt reads the TSC (the compiled delivery restarts
    the CPU loop at the handler, so the block entered last is the handler's)."""
    results = []
    for hook in ("compiled", "python"):
        m = timer_guest.machine(
            3, loop=20_000, handler="rdtsc; movq %rax, 0x30120; addq %rax, 0x30128",
            tsc_hook=hook,
        )  # fmt: skip
        r = m.run(max_instructions=2_000_000)
        results.append((r.instructions, _state(m), m.core.armed_deliveries))
    assert results[0][2] > 30
    assert results[0] == results[1]


def test_an_unknown_hook_is_refused() -> None:
    with pytest.raises(ConfigError, match="TSC hook"):
        Machine(tsc_hook="fast")
