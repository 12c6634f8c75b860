"""Stops are exact whatever the route: an OUT that ends the run (isa-debug-exit, a reset
request) ends it right after itself, as QEMU does, not at the end of its translation block; the
count and RIP do not depend on --max-instructions or on stepping."""

from __future__ import annotations

import struct

import pytest
from mb2_kernel import build

from emu import Machine
from emu.errors import ConfigError, InternalError, LoaderError

MB2 = 0xE85250D6


def _flat_elf(tmp_path, code: bytes):
    """A minimal Multiboot2 ELF: the header, then ``code`` at 0x100018."""
    hdr = struct.pack("<IIII", MB2, 0, 24, (-(MB2 + 24)) & 0xFFFFFFFF) + struct.pack(
        "<HHI", 0, 0, 8
    )
    blob = hdr + code
    eh = struct.pack("<16sHHIIIIIHHHHHH", b"\x7fELF\x01\x01\x01" + b"\0" * 9, 2, 3, 1,
                     0x100018, 52, 0, 0, 52, 32, 1, 40, 0, 0)  # fmt: skip
    ph = struct.pack("<IIIIIIII", 1, 0x1000, 0x100000, 0x100000, len(blob), len(blob), 7, 0x1000)
    head = eh + ph
    path = tmp_path / "k.elf"
    path.write_bytes(head + b"\0" * (0x1000 - len(head)) + blob)
    return path


# 8 NOPs, mov al,0; out 0xf4, al; then 600 NOPs and a HLT the run must never reach
EXIT_THEN_NOPS = b"\x90" * 8 + b"\xb0\x00\xe6\xf4" + b"\x90" * 600 + b"\xf4"


def _end(elf, **kw):
    m = Machine.from_elf(elf)
    r = m.run(**kw)
    return r.stop_reason, r.instructions, r.cpu.rip


def test_debug_exit_stops_right_after_the_out(tmp_path) -> None:
    elf = _flat_elf(tmp_path, EXIT_THEN_NOPS)
    free = _end(elf)
    assert free[0] == "debug-exit" and free[2] == 0x100024  # the instruction after OUT
    for limit in (free[1], free[1] + 1, 100, 10_000):
        assert _end(elf, max_instructions=limit) == free
    assert _end(elf, max_instructions=free[1] - 1) == ("instruction-limit", free[1] - 1, 0x100022)


@pytest.mark.parametrize("out", ["outb %al, $0xf4", "movw $0xf4, %dx\n    outb %al, %dx",
                                 "movw $0xf4, %dx\n    outl %eax, %dx"])  # fmt: skip
def test_every_form_of_out_stops_exactly(tmp_path, out: str) -> None:
    src = f"    movl $0, %eax\n    {out}\nafter:\n" + "    nop\n" * 300
    elf = build(src, tmp_path)
    m = Machine.from_elf(elf)
    r = m.run()
    assert r.stop_reason == "debug-exit"
    assert r.cpu.rip == m.symbolizer.address_of("after")
    assert _end(elf, max_instructions=r.instructions + 50) == (
        "debug-exit",
        r.instructions,
        r.cpu.rip,
    )


def test_a_reset_request_stops_right_after_the_out(tmp_path) -> None:
    src = "    movb $0xFE, %al\n    outb %al, $0x64\nafter:\n" + "    nop\n" * 300
    elf = build(src, tmp_path)
    m = Machine.from_elf(elf)
    r = m.run()
    assert r.stop_reason == "reset"
    assert r.cpu.rip == m.symbolizer.address_of("after")


def test_stepping_to_the_exit_lands_where_running_does(tmp_path) -> None:
    elf = _flat_elf(tmp_path, EXIT_THEN_NOPS)
    stop, count, rip = _end(elf)
    m = Machine.from_elf(elf)
    m.run(max_instructions=count - 3)
    result = None
    while result is None:
        result = m.step()
    assert (result.stop_reason, result.instructions, result.cpu.rip) == (stop, count, rip)


def test_hello_ends_at_the_same_count_with_any_limit_past_it(image) -> None:
    elf = image("hello")
    stop, count, rip = _end(elf)
    assert stop == "debug-exit"
    assert _end(elf, max_instructions=count) == (stop, count, rip)
    assert _end(elf, max_instructions=count + 1) == (stop, count, rip)
    assert _end(elf, max_instructions=count - 1)[:2] == ("instruction-limit", count - 1)


def test_an_error_inside_a_hook_is_never_lost(image) -> None:
    """The symbol lookup of the fault trace raises inside the #UD hook: the run does not end
    as if the #UD had not been delivered; the error surfaces, named, from run()."""
    m = Machine.from_elf(image("lost-in-32bit"))

    def broken(address: int) -> str:
        raise OverflowError("a damaged symbol table")

    m.recorder.describe = broken
    with pytest.raises(InternalError) as info:
        m.run(max_instructions=5_000_000)
    assert "_hook_invalid" in str(info.value) and "OverflowError" in str(info.value)
    assert isinstance(info.value.error, OverflowError)


def test_a_damaged_symbol_table_leaves_names_out_and_the_run_goes_on(image, tmp_path) -> None:
    """e_shoff pointing into the code: pyelftools raises OverflowError, not ELFError."""
    data = bytearray(image("lost-in-32bit").read_bytes())
    struct.pack_into("<Q", data, 0x28, 0x1000)
    path = tmp_path / "damaged.elf"
    path.write_bytes(bytes(data))
    r = Machine.from_elf(path).run(max_instructions=5_000_000)
    assert r.stop_reason == "triple-fault"
    assert r.detail == "#UD -> #GP(0x32) -> #DF -> triple fault"
    assert "<" not in r.trace.entries[0].location  # no symbol names: only the address


@pytest.mark.parametrize("seed", range(24))
def test_mutated_debug_information_never_fails_a_run(image, tmp_path, seed: int) -> None:
    """Bytes of the section headers and the .debug_* sections flipped: a run still ends as the
    kernel makes it end, and the report is written."""
    import random

    from elftools.elf.elffile import ELFFile

    original = image("lost-in-32bit").read_bytes()
    with open(image("lost-in-32bit"), "rb") as f:
        elf = ELFFile(f)
        ranges = [(s["sh_offset"], s["sh_size"]) for s in elf.iter_sections()
                  if s.name.startswith((".debug_", ".symtab", ".strtab"))]  # fmt: skip
        shoff, shsize = elf["e_shoff"], elf["e_shnum"] * elf["e_shentsize"]
    rng = random.Random(seed)
    data = bytearray(original)
    for _ in range(8):
        offset, size = rng.choice([*ranges, (shoff, shsize)])
        data[offset + rng.randrange(max(size, 1))] = rng.randrange(256)
    path = tmp_path / "mutated.elf"
    path.write_bytes(bytes(data))
    try:
        m = Machine.from_elf(path)
    except LoaderError as e:  # section headers GRUB would refuse too: one line, as documented
        assert "\n" not in str(e)
        return
    r = m.run(max_instructions=5_000_000)
    assert r.stop_reason == "triple-fault"
    r.describe()


HLT_WITH_PIT = """
    movl $handler, %eax
    movw %ax, idt + 8 * 8
    movw $0x10, idt + 8 * 8 + 2
    movw $0x8E00, idt + 8 * 8 + 4
    shrl $16, %eax
    movw %ax, idt + 8 * 8 + 6
    lidt idt_desc
    movb $0xFE, %al
    outb %al, $0x21                   /* only IRQ0 (vector 8, as SeaBIOS programs the 8259) */
    movb $0x34, %al
    outb %al, $0x43
    movb $0x00, %al
    outb %al, $0x40
    movb $0x10, %al
    outb %al, $0x40                   /* PIT channel 0, mode 2, every 4096 ticks */
    sti
halt_here:
    hlt
    cli
    jmp done
handler:
    movb $0x20, %al
    outb %al, $0x20
    iret
    .align 8
idt:
    .fill 16, 8, 0
idt_desc:
    .word 16 * 8 - 1
    .long idt
done:
"""


def test_stepping_onto_hlt_waits_for_the_interrupt(tmp_path) -> None:
    """HLT with IF=1 and the PIT running: the step waits in virtual time, as a run does, and
    ends at the interrupt handler; the run has not ended."""
    m = Machine.from_elf(build(HLT_WITH_PIT, tmp_path))
    m.add_breakpoint("halt_here")
    r = m.run(max_instructions=100_000)
    assert r.stop_reason == "breakpoint"
    assert m.step() is None  # HLT: the run has not ended
    assert m.idle_ns > 0  # the clock went on to the PIT's edge
    assert m.step() is None  # the interrupt, then the handler's first instruction
    handler = m.symbolizer.address_of("handler")
    assert m.cpu_state().rip == handler + 2  # after its movb $0x20, %al
    assert m.run(max_instructions=100_000).stop_reason == "debug-exit"


def test_running_on_from_a_checkpoint_taken_at_a_breakpoint(tmp_path) -> None:
    m = Machine.from_elf(build(HLT_WITH_PIT, tmp_path))
    m.add_breakpoint("halt_here")
    assert m.run(max_instructions=100_000).stop_reason == "breakpoint"
    cp = m.checkpoint()
    first = m.run(max_instructions=100_000)
    m.restore(cp)
    again = m.run(max_instructions=100_000)
    assert again.stop_reason == first.stop_reason == "debug-exit"
    assert again.instructions == first.instructions > cp.instructions


@pytest.mark.parametrize("address,size", [(0xFFFF_FFFF_FFFF_FFF0, 0x20), (-8, 4), (0x1000, 0)])
def test_a_watchpoint_outside_the_address_space_is_refused(tmp_path, address, size) -> None:
    m = Machine.from_elf(build("    nop\n", tmp_path))
    with pytest.raises(ConfigError):
        m.add_watchpoint(address, size, "rw")
    assert m.watchpoints == []
    m.add_watchpoint(0xFFFF_FFFF_FFFF_FFF0, 0x10, "rw")  # up to the last byte is fine
    assert m.run(max_instructions=100_000).stop_reason == "debug-exit"


# HLT with IF=1 while the only timer that pulses is masked at the 8259 (the PIT, every 84 us):
# its pulses set the IRR bit but wake nothing, so the CPU stays halted until the local APIC
# timer's one-shot interrupt (1 ms). The COM1 line says how many interrupts the handler took
# before HLT returned (QEMU: 1); with ``{lapic}`` 0x10041 (masked) nothing can ever wake it.
HLT_MASKED_PULSE = """
    movl $handler, %eax
    movw %ax, idt + 8 * 0x41
    movw %cs, idt + 8 * 0x41 + 2
    movw $0x8E00, idt + 8 * 0x41 + 4
    shrl $16, %eax
    movw %ax, idt + 8 * 0x41 + 6
    lidt idt_desc
    movb $0xFF, %al
    outb %al, $0x21
    outb %al, $0xA1                   /* every 8259 input masked */
    movb $0x34, %al
    outb %al, $0x43
    movb $100, %al
    outb %al, $0x40
    movb $0, %al
    outb %al, $0x40                   /* PIT channel 0, mode 2, every 100 ticks (84 us) */
    movl $0xB, 0xFEE003E0             /* divide by 1 */
    movl ${lapic}, 0xFEE00320         /* one-shot, vector 0x41 */
    movl $1000000, 0xFEE00380         /* in 1 ms */
    sti
halt_here:
    hlt
after_hlt:
    cli
    movb count, %al
    addb $0x30, %al
    movw $0x3F8, %dx
    outb %al, %dx
    movb $0x0A, %al
    outb %al, %dx
    jmp done
handler:
    incb count
    movl $0, 0xFEE000B0
    iret
    .align 8
count:
    .long 0
idt:
    .fill 0x42, 8, 0
idt_desc:
    .word 0x42 * 8 - 1
    .long idt
done:
"""


def test_hlt_stays_halted_through_a_masked_pulse(tmp_path) -> None:
    """A pulse of a masked timer is no interrupt: HLT returns only after one is delivered
    (in the run, in a step, and from a checkpoint taken while halted)."""
    elf = build(HLT_MASKED_PULSE.format(lapic=0x41), tmp_path)
    m = Machine.from_elf(elf)
    r = m.run(max_instructions=1_000_000)
    assert r.stop_reason == "debug-exit", r.describe()
    assert r.serial == b"1\n"
    assert m.idle_ns > 990_000  # the clock waited for the local APIC timer (1 ms)
    assert m.pics.master.irr & 1  # the PIT's pulses latched IRQ 0, masked

    s = Machine.from_elf(elf)
    s.add_breakpoint("halt_here")
    assert s.run(max_instructions=1_000_000).stop_reason == "breakpoint"
    assert s.step() is None  # HLT: waits to the PIT's first pulse, which wakes nothing
    assert s.step() is None  # ... and so on to the next one
    assert s.cpu_state().rip == s.symbolizer.address_of("after_hlt")  # still halted there
    assert 0 < s.idle_ns < 1_000_000 and s.ram[s.symbolizer.address_of("count")] == 0
    cp = s.checkpoint()
    rest = s.run(max_instructions=1_000_000)
    assert (rest.stop_reason, rest.serial, rest.instructions) == ("debug-exit", b"1\n",
                                                                  r.instructions)  # fmt: skip
    s.restore(cp)
    again = s.run(max_instructions=1_000_000)
    assert (again.serial, again.instructions) == (rest.serial, rest.instructions)


def test_hlt_that_nothing_unmasked_can_wake_ends_halted(tmp_path, monkeypatch) -> None:
    """Every interrupt source masked, a masked timer still pulsing: a PC (and QEMU) stays
    halted forever; the run waits through HLT_WAIT_EVENTS pulses, then ends as halted."""
    import emu.machine

    monkeypatch.setattr(emu.machine, "HLT_WAIT_EVENTS", 500)
    m = Machine.from_elf(build(HLT_MASKED_PULSE.format(lapic=0x10041), tmp_path))
    r = m.run(max_instructions=1_000_000)
    assert r.stop_reason == "halted" and "500 device events" in r.detail, r.describe()
    assert r.serial == b"" and r.cpu.rip == m.symbolizer.address_of("after_hlt")
    assert 500 * 83_000 < m.idle_ns < 502 * 85_000  # the PIT's pulses, one by one


def test_hlt_masked_pulse_same_as_qemu(tmp_path) -> None:
    """The guest above under QEMU + GRUB: HLT returns after the one interrupt it takes."""
    from test_qemu_differential import MISSING, _qemu

    if MISSING:
        pytest.skip(f"the QEMU reference needs {', '.join(MISSING)} (not installed)")
    elf = build(HLT_MASKED_PULSE.format(lapic=0x41), tmp_path)
    ours = Machine.from_elf(elf).run(max_instructions=1_000_000)
    ref = _qemu(elf)
    assert ref["serial"] == ours.serial.decode() == "1\n"
    assert ref["end"] == "isa-debug-exit" and ours.stop_reason == "debug-exit"


def _stepped(elf, **kw):
    """Step from the first instruction to the end: the stop, count and RIP."""
    m = Machine.from_elf(elf, **kw)
    result = None
    while result is None:
        result = m.step()
    return result.stop_reason, result.instructions, result.cpu.rip


def test_stepping_onto_ud_without_an_idt_is_a_triple_fault(tmp_path) -> None:
    """LOCK on a register operand (#UD) with an empty IDT: #UD -> #GP -> #DF -> triple fault,
    stepped as run (the step said "exception": the triple fault its #UD hook raised was lost)."""
    idt_desc = 0x100018 + 16  # six zero bytes after the code: limit 0, base 0
    code = b"\x0f\x01\x1d" + struct.pack("<I", idt_desc) + b"\x90\xf0\x01\xde"
    elf = _flat_elf(tmp_path, code + b"\0" * (16 - len(code)) + b"\0" * 8)
    ran = _end(elf)
    assert ran[0] == "triple-fault" and ran[2] == 0x100018 + 8  # on the LOCK ADD
    assert _stepped(elf) == ran


def test_stepping_a_jump_into_unassigned_memory_counts_the_jump(tmp_path) -> None:
    """mov $0x300000, %eax; jmp *%eax with 2M of RAM: the jump retired, the fetch at its
    target found nothing; the step counted nothing for it (one short of the run)."""
    elf = _flat_elf(tmp_path, b"\x90\xb8\x00\x00\x30\x00\xff\xe0")
    m = Machine.from_elf(elf, memory="2M")
    r = m.run(max_instructions=100)
    ran = r.stop_reason, r.instructions, r.cpu.rip
    assert ran[0] == "unsupported" and ran[2] == 0x300000
    assert _stepped(elf, memory="2M") == ran


SMC = """
    call blk
    movl $0x9000408d, blk   # lea 0(%eax), %eax; nop: the same six bytes in four instructions
    call blk
    jmp after
blk:
    nop
    nop
    nop
    nop
    nop
    ret
after:
"""


def test_code_the_guest_rewrites_is_counted_from_its_new_bytes(tmp_path) -> None:
    """A block run once, rewritten by the guest into fewer instructions in the same bytes, then
    run again: QEMU translates it again, and the count follows (the block table's entry, keyed
    by pc and size, counted six where four ran). Every limit lands where stepping does."""
    elf = build(SMC, tmp_path)
    m = Machine.from_elf(elf)
    rips = [m.cpu_state().rip]
    while (r := m.step()) is None:
        rips.append(r.cpu.rip if r is not None else m.cpu_state().rip)
    stepped = r.stop_reason, r.instructions, r.cpu.rip
    assert _end(elf) == stepped
    for limit in range(1, stepped[1]):
        assert _end(elf, max_instructions=limit) == ("instruction-limit", limit, rips[limit])


STALE_CUT = """
import sys
from emu import Machine
from emu.clock import layout as K
m = Machine.from_elf(sys.argv[1])
blk = m.symbolizer.address_of("blk")
while m.cpu_state().rip != m.symbolizer.address_of("_start"):  # past the firmware's own code
    assert m.step() is None
base = m.instructions
m.run(max_instructions=7)  # the call and the block: learned
assert m.instructions == base + 7
core = m.core
(slot,) = [i for i, k in enumerate(core._keys) if int(k) == blk]
core._vals[slot] = int(core._vals[slot]) + 2  # a stale count: two more than the block holds
core.ctx[K.CTX_CACHE_PC] = K.EMPTY_KEY
# the nop, the second call, then a cut past the block's six as the table has it (at 7 of 8):
# the block QEMU translates for the cut is the whole block again
r = m.run(max_instructions=9)
print(r.stop_reason, r.instructions - base, r.cpu.rip)
r = m.run()
print(r.stop_reason, r.instructions, r.cpu.rip)
"""


def test_a_stale_count_at_a_cut_never_loops(tmp_path) -> None:
    """A block whose table entry counts more than it holds, with the limit inside that count:
    the cut block QEMU translates is the same block again, and cutting it again would restart
    the CPU loop for ever (as a Linux boot did at its patched code). It is learned again from
    its bytes and the run stops where stepping does. In a child process: a loop would hang."""
    import subprocess
    import sys

    src = SMC.replace("movl $0x9000408d, blk", "nop")
    elf = build(src, tmp_path)
    m = Machine.from_elf(elf)
    while m.cpu_state().rip != m.symbolizer.address_of("_start"):
        assert m.step() is None
    for _ in range(16):
        assert m.step() is None
    at_limit = m.cpu_state().rip
    out = subprocess.run([sys.executable, "-c", STALE_CUT, str(elf)], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == [
        f"instruction-limit 16 {at_limit}",
        " ".join(str(x) for x in _stepped(elf)),
    ]


def _taken(elf, vector: int, limit: int = 10**6) -> tuple[tuple[int, int], tuple[int, int], str]:
    """Where ``vector`` is first taken (count, RIP) by a run of ``limit`` instructions, and by
    steps from 8 instructions before it; how the run ended."""
    m = Machine.from_elf(elf)
    r = m.run(max_instructions=limit)
    ran = next((e.instructions, e.rip) for e in m.trace.entries if e.vector == vector)
    m = Machine.from_elf(elf)
    m.run(max_instructions=ran[0] - 8)
    while m.core.icount < ran[0] + 3 and m.step() is None:
        pass
    stepped = next((e.instructions, e.rip) for e in m.trace.entries if e.vector == vector)
    return ran, stepped, r.stop_reason


_AFTER = "    incl %esi\n    incl %esi\n    incl %esi\n    jmp 1f\n1:  cli\n"


@pytest.mark.parametrize("sti", ["", "    sti\n"], ids=["IF set before", "in the STI shadow"])
def test_a_tpr_write_that_lets_an_interrupt_through_is_followed_by_it(tmp_path, sti) -> None:
    """Lowering the local APIC's TPR under a pending self-IPI (IF=1) lets it in right after the
    MOV, as a step takes it: a run used to take it at the end of the block, three INCs later.
    After an STI the MOV is in the interrupt shadow, which ends with it."""
    from apic_guest import kernel, lapic_write, spin

    body = lapic_write(0x80, 0x50) + ("" if sti else "    sti\n")
    body += lapic_write(0x300, 0x40000 | 0x45) + spin(10) + sti + lapic_write(0x80, 0) + _AFTER
    elf = kernel(body, tmp_path)
    ran, stepped, end = _taken(elf, 0x45)
    assert end == "debug-exit"
    assert ran == stepped
    m = Machine.from_elf(elf)
    m.run(max_instructions=ran[0] + 1)  # the interrupt, and the handler's first instruction
    assert m.trace.entries[-1].vector == 0x45 and m.cpu_state().gpr["rsi"] == 0  # no INC yet


def test_an_out_in_the_sti_shadow_that_unmasks_an_irq_is_followed_by_it(tmp_path) -> None:
    """`sti; outb %al, $0x21` unmasking a latched IRQ 0: the interrupt comes right after the
    OUT, which ends the shadow. The run ended the OUT's block there but left the shadow set, so
    it took the interrupt one instruction later than a step."""
    from apic_guest import kernel, spin

    body = "    movb $0x11, %al\n    outb %al, $0x20\n    movb $0x20, %al\n    outb %al, $0x21\n"
    body += "    movb $4, %al\n    outb %al, $0x21\n    movb $1, %al\n    outb %al, $0x21\n"
    body += "    movb $0xff, %al\n    outb %al, $0x21\n    outb %al, $0xa1\n"
    body += "    movb $0x34, %al\n    outb %al, $0x43\n    movb $100, %al\n    outb %al, $0x40\n"
    body += "    movb $0, %al\n    outb %al, $0x40\n" + spin(200_000)  # IRQ 0 latched, masked
    body += "    movb $0xfe, %al\n    sti\n    outb %al, $0x21\n" + _AFTER
    ran, stepped, end = _taken(kernel(body, tmp_path), 0x20)
    assert end == "debug-exit"
    assert ran == stepped


def test_an_io_apic_write_that_unmasks_a_raised_pin_is_followed_by_its_interrupt(tmp_path) -> None:
    """The RTC's IRQ 8 held high (its periodic flag unread) on a masked level-triggered I/O APIC
    pin: the MOV to IOWIN that unmasks it raises INTR, and the interrupt comes right after the
    MOV on a run as on a step (the compiled device write hook leaves the CPU loop there), not at
    the end of the block. The handler never reads register C, so the pin stays high and the
    interrupt comes back after every EOI: only the first one is compared (the run ends soon
    after it, while the fault trace still holds it)."""
    from apic_guest import MASK_PICS, ioapic_write, kernel, spin

    rtc = "    movb ${}, %al\n    outb %al, $0x70\n    movb ${}, %al\n    outb %al, $0x71\n"
    body = MASK_PICS + ioapic_write(0x10 + 16, 0x18048)  # pin 8: vector 0x48, level, masked
    body += rtc.format(0x0A, 0x23) + rtc.format(0x0B, 0x42)  # 8192 Hz periodic interrupt on
    body += "    sti\n" + spin(100_000)  # IRQ 8 is high by now
    body += ioapic_write(0x10 + 16, 0x8048) + _AFTER  # unmasked
    elf = kernel(body, tmp_path)
    ran, stepped, _end = _taken(elf, 0x48, limit=210_000)
    assert ran == stepped
    m = Machine.from_elf(elf)
    m.run(max_instructions=ran[0] + 1)  # the interrupt, and the handler's first instruction
    assert m.trace.entries[-1].vector == 0x48 and m.cpu_state().gpr["rsi"] == 0  # no INC yet
