"""Small 32-bit guests that program the local APIC and the I/O APIC as a driver would, for
tests/test_lapic.py and tests/test_ioapic.py (built with tests/mb2_kernel.py).

Each guest gets an IDT whose 256 entries all lead to one handler. The handler appends the
vector to a log at ``LOG`` (a count at ``LOG``, the vectors after it, 32 bits each), writes
the local APIC's EOI unless the vector is in the no-EOI set (the spurious vector, NMI, 8259
vectors, which end with an OUT to the 8259), and returns. ``PIC_EOI`` vectors get an 8259 EOI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mb2_kernel import build

from emu import Machine

LOG = 0x200000
LAPIC = 0xFEE00000
IOAPIC = 0xFEC00000

SETUP = """
    movl $0x1f0000, %esp
    movl $LOG, %edi
    movl $0, (%edi)
    /* the IDT: 256 interrupt gates to the stubs, in the code segment GRUB left */
    movl $idt, %edi
    movl $stubs, %eax
    xorl %ecx, %ecx
    movw %cs, %bx
0:  movw %ax, (%edi)
    movw %bx, 2(%edi)
    movw $0x8E00, 4(%edi)
    movl %eax, %edx
    shrl $16, %edx
    movw %dx, 6(%edi)
    addl $8, %edi
    addl $16, %eax
    incl %ecx
    cmpl $256, %ecx
    jne 0b
    lidt idtr
    jmp body

    .balign 16
stubs:
    .set n, 0
    .rept 256
    .balign 16
    pushl $n
    jmp common
    .set n, n + 1
    .endr

common:
    pushl %eax
    pushl %ebx
    movl 8(%esp), %eax
    movl LOG, %ebx
    movl %eax, LOG + 4(,%ebx,4)
    incl LOG
    cmpl $2, %eax
    je 9f
    cmpl $0xff, %eax
    je 9f
    cmpl $0x20, %eax
    jb 9f
    cmpl $0x30, %eax
    jb 8f
    movl $0, 0xFEE000B0
    jmp 9f
8:  pushl %eax
    movb $0x20, %al
    outb %al, $0xa0
    outb %al, $0x20
    popl %eax
9:  popl %ebx
    popl %eax
    addl $4, %esp
    iret

    .data
    .balign 8
idtr:
    .short 256 * 8 - 1
    .long idt
    .balign 16
idt:
    .fill 256 * 8, 1, 0
    .text
body:
"""

# Masks both 8259s (a kernel that takes its interrupts through the APICs does this first).
MASK_PICS = """
    movb $0xff, %al
    outb %al, $0x21
    outb %al, $0xa1
"""


def lapic_write(offset: int, value: int) -> str:
    return f"    movl $0x{value:x}, 0x{LAPIC + offset:x}\n"


def ioapic_write(index: int, value: int) -> str:
    return f"    movl $0x{index:x}, 0x{IOAPIC:x}\n    movl $0x{value:x}, 0x{IOAPIC + 0x10:x}\n"


def spin(iterations: int) -> str:
    """A delay loop of 2 instructions per iteration."""
    return f"    movl ${iterations}, %ecx\n7:  decl %ecx\n    jnz 7b\n"


def kernel(body: str, directory: Path, name: str = "apic") -> Path:
    return build(f".equ LOG, 0x{LOG:x}\n" + SETUP + body, directory, name)


def vectors(m: Machine) -> list[int]:
    """The vectors the guest's handler saw, in order."""
    count = int(m.ram[LOG : LOG + 4].view(np.uint32)[0])
    return [int(v) for v in m.ram[LOG + 4 : LOG + 4 + 4 * count].view(np.uint32)]


def run(elf: Path, max_instructions: int = 20_000_000, **options) -> tuple[Machine, object]:
    m = Machine.from_elf(elf, **options)
    r = m.run(max_instructions=max_instructions)
    return m, r
