"""Small Multiboot2 kernels built from a few lines of GNU as, for tests of the machine around
the CPU (memory map, firmware areas): 32-bit code that GRUB's state can run directly."""

from __future__ import annotations

import subprocess
from pathlib import Path

HEADER = """
    .section .multiboot2, "a"
    .align 8
hdr:
    .long 0xE85250D6, 0, hdr_end - hdr, -(0xE85250D6 + (hdr_end - hdr))
    .short 0, 0
    .long 8
hdr_end:
    .text
    .code32
    .globl _start
_start:
"""

TRAILER = """
    movb $0, %al
    outb %al, $0xf4
1:  cli
    hlt
    jmp 1b
"""

LINK = """
ENTRY(_start)
SECTIONS {
    . = 0x100000;
    .text : { *(.multiboot2) *(.text) }
    .data : { *(.data) *(.bss) }
}
"""


def build(body: str, directory: Path, name: str = "kernel") -> Path:
    """An ELF32 Multiboot2 kernel at 1 MiB running ``body`` (32-bit code, GRUB's state), then
    writing 0 to isa-debug-exit."""
    directory.mkdir(parents=True, exist_ok=True)
    src, obj, lds, elf = (directory / f"{name}{ext}" for ext in (".S", ".o", ".ld", ".elf"))
    src.write_text(HEADER + body + TRAILER)
    lds.write_text(LINK)
    subprocess.run(["as", "--32", "-o", str(obj), str(src)], check=True, capture_output=True)
    subprocess.run(
        ["ld", "-m", "elf_i386", "--build-id=none", "-T", str(lds), "-o", str(elf), str(obj)],
        check=True,
        capture_output=True,
    )
    return elf
