"""Real mode, as a trampoline meets it: interrupts and exceptions through the interrupt vector
table (SDM Vol. 3, 21.1.4), faults that escalate to #DF and shutdown as in protected mode, and a
trace and report that name real mode, CS:IP and the linear address. images/real-mode is the same
walk as a kernel, compared with QEMU + GRUB (tests/golden/qemu/real-mode.serial; QEMU's own
interrupt log is silent in real mode, so the serial output and the way the run ends are what is
compared)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mb2_kernel import build

from emu import Machine
from emu.faults.delivery import (
    IVT_ENTRY,
    DeliveryCpu,
    Event,
    IdtDelivery,
    SegmentCache,
)

GOLDEN = Path(__file__).resolve().parent / "golden" / "qemu"

# GRUB's 32-bit protected mode to a 16-bit protected-mode trampoline copied to 0x8000, as
# kernels do (the trampoline runs from "tramp" to "tramp_end", with DS and SS loaded).
TO_16_BIT = """
    cld
    movl $tramp, %esi
    movl $0x8000, %edi
    movl $(tramp_end - tramp), %ecx
    rep movsb
    lgdt gdt_desc
    ljmp $0x08, $0x8000
gdt:
    .quad 0
    .quad 0x00009A000000FFFF          /* 16-bit code, base 0 */
    .quad 0x000092000000FFFF          /* 16-bit data, base 0 */
gdt_desc:
    .word 23
    .long gdt
tramp:
    .code16
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %ss
"""

# ... then CR0.PE=0 and a far jump to real mode, and the real-mode IVT.
TO_REAL_MODE = (
    TO_16_BIT
    + """    movl %cr0, %eax
    andl $0xFFFFFFFE, %eax
    movl %eax, %cr0
    ljmp $0x0000, $(0x8000 + real - tramp)
real:
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %ss
    movw $0x7000, %sp
    lidt (0x8000 + ivt_desc - tramp)
    {call}
    hlt
handler:
    movw $0x5A5A, %bx
    iret
ivt_desc:
    .word {limit}
    .long 0
tramp_end:
    .code32
"""
)
HANDLER = "(0x8000 + handler - tramp)"


def _run(tmp_path, call: str, limit: int = 0x3FF):
    source = TO_REAL_MODE.replace("{call}", call).replace("{limit}", f"0x{limit:x}")
    m = Machine.from_elf(build(source, tmp_path))
    return m, m.run(max_instructions=100_000)


def test_int_n_goes_through_the_ivt_and_iret_comes_back(tmp_path) -> None:
    m, r = _run(
        tmp_path,
        f"movw ${HANDLER}, (0x80 * 4)\n    movw $0, (0x80 * 4 + 2)\n"
        "    movw $0x7000, %sp\n    int $0x80\n    movw %sp, %cx",
    )
    assert r.stop_reason == "halted", r.describe()
    assert r.cpu.mode == "real"
    assert r.cpu.gpr["rbx"] & 0xFFFF == 0x5A5A  # the handler ran
    assert r.cpu.gpr["rcx"] & 0xFFFF == 0x7000  # and IRET popped the 6-byte frame
    (entry,) = r.trace.entries
    assert entry.name == "INT 0x80" and entry.kind == "software" and entry.delivered
    assert entry.mode == "real" and entry.location.startswith("0000:80")
    assert entry.instruction.endswith("int 0x80")  # disassembled as 16-bit code
    assert m.read_physical(entry.rip, 2) == b"\xcd\x80"  # CS base 0: IP is the linear address
    assert entry.gate.startswith("IVT[0x80] @0x200: handler 0000:80")
    assert entry.reason == "delivered to real-mode IVT entry"
    # the frame on SS:SP: IP after the INT, CS, FLAGS
    ip, cs, flags = (int.from_bytes(m.read_physical(0x7000 - 6 + 2 * i, 2), "little")
                     for i in range(3))  # fmt: skip
    assert (ip, cs) == (entry.rip + 2, 0) and flags & 0x2


def test_a_vector_beyond_idtr_limit_is_gp_then_df_then_shutdown(tmp_path) -> None:
    """IDTR.limit 0x1F holds vectors 0-7: INT 0x80 is #GP(0x80 * 8 + 2), whose vector 13 is
    beyond it too, so #DF, whose vector 8 is as well: a triple fault, as on hardware."""
    _m, r = _run(tmp_path, "int $0x80", limit=0x1F)
    assert r.stop_reason == "triple-fault"
    assert r.detail == "INT 0x80 -> #GP(0x402) -> #DF -> triple fault"
    assert [e.mode for e in r.trace.entries] == ["real"] * 3
    assert "vector 0xd is beyond IDTR.limit 0x1f (real mode)" in r.trace.entries[1].reason
    text = r.describe()
    assert "#GP while delivering INT 0x80: handled serially" in text
    assert "#CP" not in text  # vector 21 would be #CP only as an exception


def test_a_triple_fault_with_no_vector_table_is_explained(tmp_path) -> None:
    _m, r = _run(tmp_path, "int $0x15", limit=0)
    assert r.stop_reason == "triple-fault"
    assert r.detail == "INT 0x15 -> #GP(0xaa) -> #DF -> triple fault"
    (d,) = [d for d in r.diagnoses if d.kind == "no-idt"]
    assert "real mode" in d.message and "0x3FF" in d.message
    assert "CS:IP=0000:80" in r.describe() and "(linear 0x80" in r.describe()


def test_exceptions_in_real_mode_are_faults_with_the_ip_of_the_instruction(tmp_path) -> None:
    """#DE pushes the IP of the DIV (a fault), and no error code; the handler skips it."""
    de_handler = "(0x8000 + de - tramp)"
    call = (
        f"movw ${de_handler}, (0 * 4)\n    movw $0, (0 * 4 + 2)\n"
        "    movw $7, %ax\n    xorb %cl, %cl\n    divb %cl\n    jmp 2f\n"
        "de:\n    movw %sp, %bp\n    movw 0(%bp), %di\n    addw $2, 0(%bp)\n    iret\n2:"
    )
    m, r = _run(tmp_path, call)
    assert r.stop_reason == "halted", r.describe()
    (entry,) = r.trace.entries
    assert entry.name.startswith("#DE") and entry.error_code is None
    assert r.cpu.gpr["rdi"] & 0xFFFF == entry.rip  # the frame holds the faulting DIV
    assert m.read_physical(entry.rip, 2) == b"\xf6\xf1"


def test_real_mode_delivery_model_pushes_flags_cs_ip_and_keeps_the_segment_cache() -> None:
    """The model alone: FLAGS, CS, IP at SS:SP-6 (SP wraps at 64 KiB), IF/TF/AC/RF cleared,
    CS.base = segment * 16 with the cached limit kept (unreal mode), no error code pushed."""
    ram = bytearray(0x20000)
    ram[4 * 13 : 4 * 13 + 4] = (0x1234).to_bytes(2, "little") + (0xF000).to_bytes(2, "little")

    class Ram:
        def read(self, address: int, size: int) -> bytes:
            return bytes(ram[address : address + size])

        def write(self, address: int, data: bytes) -> None:
            ram[address : address + len(data)] = data

    flat = SegmentCache(0, 0, 0xFFFFFFFF, 0x00CF9300)
    cpu = DeliveryCpu(
        long_mode=False, cpl=0, rip=0x0042, rsp=0xABCD0004, rflags=0x40302 | (1 << 16),
        cs=SegmentCache(0x1000, 0x10000, 0xFFFFFFFF, 0x00CF9B00), ss=SegmentCache(0x1000, 0x10000, 0xFFFF, 0x9300),
        gdtr=(0, 0), ldtr=flat, idtr=(0, 0x3FF), tr=flat, cr2=0, real_mode=True,
    )  # fmt: skip
    result = IdtDelivery(Ram()).deliver(cpu, Event(13, "exception", 0))
    step = result.steps[0]
    assert (
        step.ok
        and step.gate.type == IVT_ENTRY
        and step.gate.describe().startswith("IVT[0xd] @0x34: handler f000:1234 (linear 0xf1234)")
    )
    new = result.cpu
    assert (new.rip, new.cs.selector, new.cs.base) == (0x1234, 0xF000, 0xF0000)
    assert new.cs.limit == 0xFFFFFFFF and new.cs.flags == 0x00CF9B00  # the cache survives
    assert new.rsp == 0xABCDFFFE  # SP 4 - 6 wraps to 0xFFFE; the upper half of ESP is kept
    assert new.rflags == 0x2  # IF, TF, AC and RF cleared; the rest as it was (bit 1)
    frame = ram[0x10000 + 0xFFFE : 0x10000 + 0x10000] + ram[0x10000 : 0x10000 + 4]
    assert frame == bytes.fromhex("4200 0010 0203")  # IP, CS, FLAGS: no error code


def test_the_compiled_delivery_declines_real_mode(tmp_path) -> None:
    """An external interrupt delivered between slices in real mode goes through the Python
    model (the compiled path handles long mode only), to the IVT."""
    m, r = _run(tmp_path, f"movw ${HANDLER}, (0x30 * 4)\n    movw $0, (0x30 * 4 + 2)")
    assert r.stop_reason == "halted" and m.core.fast_delivery
    before = m.core.fast_deliveries
    result = m.core.deliver_external(0x30)
    assert m.core.fast_deliveries == before
    assert result.steps[0].gate.type == IVT_ENTRY and result.steps[0].ok
    state = m.cpu_state()
    assert (state.segments["cs"].selector, state.rip) == (0, result.steps[0].gate.offset)


@pytest.mark.parametrize(
    "call",
    [
        "movl $0xE820, %eax\n    int $0x15",  # through the IVT, to SeaBIOS's INT 15h entry
        "movw $0xE820, %ax\n    pushfw\n    lcall $0xF000, $0xF859",  # chained to it directly
    ],
    ids=["int", "far-call"],
)
def test_a_bios_call_reaches_the_bios_entry_point(tmp_path, call: str) -> None:
    """Both ways reach the service (tests/test_bios_services.py): E820h without the 'SMAP'
    signature is refused (AH=86h, CF=1), and the stub's IRET returns to the caller."""
    _m, r = _run(tmp_path, call)
    assert r.stop_reason == "halted" and r.cpu.mode == "real"
    assert r.cpu.gpr["rax"] & 0xFFFF == 0x8620 and r.cpu.rflags & 1
    # INT 0x15 goes through the IVT like any other: named by its vector, never as #CP
    assert all(e.name == "INT 0x15" for e in r.trace.entries if e.vector == 21)
    assert "#CP" not in r.describe()


def test_real_mode_image_prints_what_qemu_printed(image) -> None:
    """16-bit protected mode and back, INT n, INT3, #DE, #UD, a fault inside a handler, #GP for
    a vector beyond IDTR.limit, IRQ0 into HLT, then a triple fault: as under QEMU + GRUB."""
    expected = (GOLDEN / "real-mode.serial").read_bytes()
    r = Machine.from_elf(image("real-mode")).run(max_instructions=10_000_000)
    assert r.serial == expected
    assert r.stop_reason == "triple-fault"
    assert r.detail == "INT 0x80 -> #GP(0x402) -> #DF -> triple fault"
    assert r.trace.entries[-1].location.startswith("0800:")  # CS:IP with CS.base 0x8000
    kinds = {(e.name.split(" ")[0], e.mode) for e in r.trace.entries}
    assert {("INT", "real"), ("#BP", "real"), ("#DE", "real"), ("#UD", "real"),
            ("#GP", "real"), ("IRQ", "real")} <= kinds  # fmt: skip


PROT16 = (
    TO_16_BIT
    + """
    movl $0x7000, %esp
    lidtl (0x8000 + idt_desc - tramp)
    int $0x80
    movl %esp, %ecx
    hlt
handler:
    movw $0x1616, %bx
    movl 8(%esp), %edx               /* the 32-bit frame: EFLAGS above CS and EIP */
    iretl
    .align 8
idt:
    .fill 0x80, 8, 0
    .word (0x8000 + handler - tramp), 0x08, 0x8E00, 0   /* a 32-bit interrupt gate */
idt_end:
idt_desc:
    .word idt_end - idt - 1
    .long (0x8000 + idt - tramp)
tramp_end:
    .code32
"""
)


def test_16_bit_protected_mode_takes_a_32_bit_gate(tmp_path) -> None:
    """16-bit code in protected mode, through a 32-bit interrupt gate into a 16-bit code
    segment: the gate's size decides the frame (three dwords), IRETL pops it."""
    m = Machine.from_elf(build(PROT16, tmp_path))
    r = m.run(max_instructions=100_000)
    assert r.stop_reason == "halted" and r.cpu.mode == "prot16", r.describe()
    assert r.cpu.gpr["rbx"] & 0xFFFF == 0x1616
    assert r.cpu.gpr["rcx"] == 0x7000  # a 12-byte frame pushed and popped
    assert r.cpu.gpr["rdx"] & 0x2  # EFLAGS, read at ESP+8 of the frame
    (entry,) = r.trace.entries
    assert entry.mode == "prot16" and entry.name == "INT 0x80" and entry.delivered
    assert entry.location.startswith("0008:80") and "interrupt gate" in entry.gate
    assert entry.instruction.endswith("int 0x80")


def test_a_far_call_to_a_bios_entry_point_is_served(tmp_path) -> None:
    """E820h answered (the first entry of the map into ES:DI), then the stub's IRET returns to
    the caller, which halts."""
    m, r = _run(
        tmp_path,
        "xorw %ax, %ax\n    movw %ax, %es\n    movw $0x6000, %di\n    xorl %ebx, %ebx\n"
        "    movl $20, %ecx\n    movl $0x534D4150, %edx\n    movl $0xE820, %eax\n"
        "    pushfw\n    lcall $0xF000, $0xF859",
    )
    assert r.stop_reason == "halted" and r.cpu.mode == "real"
    assert r.cpu.gpr["rax"] & 0xFFFFFFFF == 0x534D4150 and r.cpu.gpr["rbx"] == 1
    assert m.read_physical(0x6000, 20) == bytes.fromhex("000000000000000000fc09000000000001000000")
    assert not [e for e in r.trace.entries if e.vector == 21]


def test_an_unsupported_bios_function_returns_cf_and_ah_86h(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="firmware.bios.services"):
        _m, r = _run(tmp_path, "movw $0x9900, %ax\n    pushfw\n    lcall $0xF000, $0xF859")
    assert r.stop_reason == "halted"
    assert (r.cpu.gpr["rax"] >> 8) & 0xFF == 0x86 and r.cpu.rflags & 1
    assert any("INT 15h AX=9900h" in rec.message for rec in caplog.records)
