"""The bundled kernels booted end to end, headless, as a kernel project's CI would."""

from __future__ import annotations

import pytest

from emu import Machine

pytestmark = pytest.mark.images

BUDGET = 50_000_000


def _vga_text(m: Machine) -> str:
    cells = m.read_physical(0xB8000, 80 * 25 * 2)
    rows = []
    for r in range(25):
        row = cells[r * 160 : (r + 1) * 160 : 2].decode("cp437")
        rows.append(row.rstrip("\x00 "))
    return "\n".join(rows).rstrip()


def test_hello_boots_into_long_mode_and_exits_cleanly(image, golden) -> None:
    m = Machine.from_elf(image("hello"), cmdline="console=com1 loglevel=7")
    r = m.run(max_instructions=BUDGET)
    assert r.stop_reason == "debug-exit", r.describe()
    assert r.exit_code == 0 and r.exit_status == 1
    assert b"All tests passed" in r.serial
    assert b"cmdline: console=com1 loglevel=7" in r.serial
    assert b"boot loader: GRUB 2.06-13+deb12u2" in r.serial
    assert r.cpu.mode == "long64"
    assert r.cpu.efer & 0x500 == 0x500  # LME and LMA
    assert "Triplefault" in _vga_text(m)
    golden("hello.serial", r.serial)


def test_hello_mb1_runs_in_protected_mode(image, golden) -> None:
    m = Machine.from_elf(image("hello-mb1"), cmdline="mb1 args")
    r = m.run(max_instructions=BUDGET)
    assert r.stop_reason == "debug-exit", r.describe()
    assert r.exit_code == 0
    assert b"All tests passed" in r.serial
    assert b"cmdline: mb1 args" in r.serial
    assert r.cpu.mode == "prot32"
    assert r.boot.protocol == "multiboot1"
    golden("hello-mb1.serial", r.serial)


def test_lost_in_32bit_triple_faults_in_malloc_in_protected_mode(image, golden) -> None:
    """The seed's bug: an ELF64 kernel never enters long mode (checked against QEMU + GRUB)."""
    m = Machine.from_elf(image("lost-in-32bit"))
    r = m.run(max_instructions=BUDGET)
    assert r.stop_reason == "triple-fault", r.describe()
    assert r.exception.mode == "prot32"  # the ELF is 64-bit: long mode was never entered
    assert r.boot.elf_class == 64
    assert "<malloc+" in r.location and "malloc.c:" in r.location
    chain = [(e.vector, e.error_code) for e in r.trace.last_chain()]
    assert chain == [(6, None), (13, 0x32), (8, 0)]
    assert r.detail == "#UD -> #GP(0x32) -> #DF -> triple fault"
    kinds = [d.kind for d in r.diagnoses]
    assert kinds[:2] == ["mode-mismatch", "no-idt"]
    assert "ELFCLASS64 x86-64, but the CPU is in 32-bit protected mode" in r.diagnoses[0].message
    assert "EFER.LME=0, CR0.PG=0" in r.diagnoses[0].message
    # both decodes of the faulting bytes, each instruction at its own address: the REX.W of
    # `add rdi` is a `dec eax` of its own, and a RIP-relative store becomes an absolute one
    details = r.diagnoses[0].details
    assert any("dec eax" in line for line in details)
    assert any("[rip + " in line for line in details)
    rows = [line.split() for line in details[1:] if "  0x" in line]
    addresses = [int(next(w for w in row if w.startswith("0x")), 16) for row in rows]
    first64 = next(i for i, row in enumerate(rows) if row[0] == "64-bit")
    assert rows[0][0] == "32-bit" and addresses[0] == addresses[first64] == 0x1003E8
    assert addresses[:first64] == sorted(addresses[:first64])
    assert addresses[first64:] == sorted(addresses[first64:])
    # 64-bit code decoded as 32-bit: every REX.W prefix became `dec eax`, so the first
    # character of each line comes out one lower ('B' -> 'A'), exactly as under QEMU + GRUB.
    assert r.serial == b"AareFlow kernel starting\nrerial: COM1 ready\nlalloc(64)...\n"
    golden("lost-in-32bit.serial", r.serial)


def test_runs_are_deterministic(image) -> None:
    results = []
    for _ in range(2):
        m = Machine.from_elf(image("hello"), cmdline="same flags")
        results.append(m.run(max_instructions=BUDGET))
    a, b = results
    assert a.instructions == b.instructions
    assert a.serial == b.serial
    assert a.cpu == b.cpu


def test_instruction_limit_is_exact(image) -> None:
    m = Machine.from_elf(image("hello"))
    r = m.run(max_instructions=10_007)
    assert r.stop_reason == "instruction-limit"
    assert r.instructions == 10_007
    # and the run can be continued to the same end as an uninterrupted one
    full = Machine.from_elf(image("hello")).run(max_instructions=BUDGET)
    rest = m.run(max_instructions=BUDGET)
    assert rest.stop_reason == full.stop_reason
    assert rest.instructions == full.instructions
    assert rest.serial == full.serial


def test_stepping_matches_running(image) -> None:
    m = Machine.from_elf(image("hello"))
    for _ in range(200):
        assert m.step() is None
    assert m.instructions == 200
    ref = Machine.from_elf(image("hello"))
    ref.run(max_instructions=200)
    assert m.cpu_state() == ref.cpu_state()


def test_timeout_stops_a_run(image) -> None:
    m = Machine.from_elf(image("hello"))
    r = m.run(timeout=1e-9)
    assert r.stop_reason == "timeout" and r.exit_status == 4


def test_serial_sink_sees_the_same_bytes(image) -> None:
    seen = bytearray()
    m = Machine.from_elf(image("hello"), serial_sink=seen.extend)
    r = m.run(max_instructions=BUDGET)
    assert bytes(seen) == r.serial


def test_paging_kernel_matches_the_hardware_behaviour(image, golden) -> None:
    """images/paging under our MMU (checked against QEMU + GRUB: same bytes)."""
    m = Machine.from_elf(image("paging"))
    r = m.run(max_instructions=BUDGET)
    assert r.stop_reason == "debug-exit" and r.exit_code == 0, r.describe()
    assert b"read page:  PTE 0x8000000000600023 A=1 D=0" in r.serial
    assert b"write page: PTE 0x8000000000604063 A=1 D=1" in r.serial
    assert b"#PF on write: CR2=0x40001008 error=0x3" in r.serial
    assert b"#PF on fetch: CR2=0x40005000 error=0x11" in r.serial
    assert b"after the PTE edit 0x1111 (stale), after INVLPG 0x2222" in r.serial
    golden("paging.serial", r.serial)


def test_breakpoint_stops_before_the_instruction_with_an_exact_count(image) -> None:
    m = Machine.from_elf(image("hello"))
    address = m.add_breakpoint("kmain")
    r = m.run(max_instructions=BUDGET)
    assert r.stop_reason == "breakpoint" and r.cpu.rip == address
    # the same point reached one instruction at a time
    ref = Machine.from_elf(image("hello"))
    while ref.cpu_state().rip != address:
        assert ref.step() is None
    assert ref.instructions == r.instructions
    # resuming runs to the same end as a run without the breakpoint
    rest = m.run(max_instructions=BUDGET)
    full = Machine.from_elf(image("hello")).run(max_instructions=BUDGET)
    assert (rest.stop_reason, rest.instructions, rest.serial) == (
        full.stop_reason,
        full.instructions,
        full.serial,
    )
