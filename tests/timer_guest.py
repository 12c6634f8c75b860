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
    install_handler(
        ram,
        f"pushq %rax\n pushq %rbx\n incq {COUNTER}\n {handler}\n"
        " movb $0x20, %al\n outb %al, $0x20\n popq %rbx\n popq %rax\n iretq\n",
    )
    m = boot(ram, **options)
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFE),
                        (0x43, 0x34), (0x40, divisor & 0xFF), (0x40, divisor >> 8)):  # fmt: skip
        m.bus.write(port, 1, value)
    return m


def pic_and_pit(divisor: int, mask: int = 0xFE) -> str:
    """Guest code that sets up the master 8259 as a driver does (ICW1-4: vectors from 0x20,
    the IRQs whose bit in ``mask`` is clear unmasked) and the PIT's channel 0 in mode 2 at
    ``divisor`` (0: 65536)."""
    return f"""
        movb $0x11, %al; outb %al, $0x20
        movb $0x20, %al; outb %al, $0x21
        movb $0x04, %al; outb %al, $0x21
        movb $0x01, %al; outb %al, $0x21
        movb ${mask}, %al; outb %al, $0x21
        movb $0x34, %al; outb %al, $0x43
        movb ${divisor & 0xFF}, %al; outb %al, $0x40
        movb ${divisor >> 8}, %al; outb %al, $0x40
"""


def install_handler(ram: np.ndarray, handler: str, vector: int = 0x20) -> None:
    """Put the 64-bit ``handler`` (assembly) at HANDLER in an image of test_delivery_oracle's
    and point ``vector``'s interrupt gate at it."""
    code = T.assemble(".code64\n " + handler)
    ram[HANDLER : HANDLER + len(code)] = np.frombuffer(code, np.uint8)
    ram[T.IDT + 16 * vector : T.IDT + 16 * (vector + 1)] = np.frombuffer(
        T.gate64(HANDLER), np.uint8
    )


def boot(ram: np.ndarray, **options) -> Machine:
    """A Machine whose memory is ``ram`` (an image of test_delivery_oracle's, written as the
    host writes, so checkpoints see it) with the CPU as GRUB leaves it at the image's entry."""
    m = Machine(memory=len(ram), **options)
    m.write_physical(0, ram.tobytes())
    m.boot = True  # loaded by hand: not a Multiboot kernel
    m.core.enter_grub_protected_mode(gdt_base=T.GDT, gdt_limit=0x37, entry=T.CODE, registers={})
    m.core.uc.ctl_flush_tb()
    return m
