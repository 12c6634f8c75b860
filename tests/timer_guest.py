"""A small long-mode guest taking PIT interrupts in a busy loop, at CPL 0 or 3 (for the tests of
the interrupt paths). Built on test_delivery_oracle's image: its GDT, TSS, IDT and paging."""

from __future__ import annotations

import numpy as np
import test_delivery_oracle as T

from emu.machine import Machine

COUNTER = 0x30000
HANDLER = 0x40000


def machine(
    divisor: int, *, loop: int, handler: str = "", user: bool = False, **options
) -> Machine:
    """PIC remapped to 0x20 with only IRQ 0 unmasked and the PIT in mode 2 at ``divisor`` (set up
    through the port bus, as a driver would), then ``loop`` iterations of a busy loop with IF=1.
    The IRQ 0 handler counts at COUNTER, runs ``handler``, sends EOI and returns. The loop ends
    in a HLT with IF=0 (CPL 0) or a UD2 whose #UD handler halts (CPL 3)."""
    body = f"""
        movq ${loop}, %rcx
2:      addq %rcx, %rax
        movq %rax, 0x30200
        xorq $0x55, %rax
        decq %rcx
        jnz 2b
        """
    name = f"timer-{'user' if user else 'kernel'}-{loop}"
    T.TRIGGERS[name] = body + "ud2" if user else "sti\n" + body + "cli"
    ram = T.image({"mode": "long", "trigger": name, "cpl": 3 if user else 0})
    code = T.assemble(
        f".code64\n pushq %rax\n pushq %rbx\n incq {COUNTER}\n {handler}\n"
        " movb $0x20, %al\n outb %al, $0x20\n popq %rbx\n popq %rax\n iretq\n"
    )
    ram[HANDLER : HANDLER + len(code)] = np.frombuffer(code, np.uint8)
    ram[T.IDT + 16 * 0x20 : T.IDT + 16 * 0x21] = np.frombuffer(T.gate64(HANDLER), np.uint8)
    m = Machine(memory=len(ram), **options)
    m.write_physical(0, ram.tobytes())
    m.boot = True  # loaded by hand: not a Multiboot kernel
    m.core.enter_grub_protected_mode(gdt_base=T.GDT, gdt_limit=0x37, entry=T.CODE, registers={})
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFE),
                        (0x43, 0x34), (0x40, divisor & 0xFF), (0x40, divisor >> 8)):  # fmt: skip
        m.bus.write(port, 1, value)
    return m
