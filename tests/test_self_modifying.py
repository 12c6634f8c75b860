"""Stores into code the CPU has translated reach the code it runs next, on every route.

QEMU checks a store for self-modifying code only through a TLB entry whose page it holds as
code; Unicorn 2.1.4 keeps doing so for a write entry only while that entry has execute rights,
so the TLB-fill hook gives a write entry for a page code was fetched from execute rights where
the mapping allows (emu/mmu/kernels.py ``_code_rights``). Without them, the first store into
such a page (data beside code: a kernel's IDT, a variable) turned the check off for the entry,
and a function patched after it ran its old bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from mb2_kernel import build

from emu import Machine

# f returns 1; a byte beside the code is written, then f's immediate is patched to 2, and f
# runs again: the value it returns goes to isa-debug-exit
PATCHED_AFTER_A_STORE = """
    call 5f
    movb $0xaa, 7f
    movb $2, 5f+1
    call 5f
    outb %al, $0xf4
    jmp 6f
5:  movl $1, %eax
    ret
7:  .byte 0
6:
"""

# the same, with the patch written many times over (each time a new value) and f called after
# each: every call sees the byte written last
PATCHED_IN_A_LOOP = """
    call 5f
    movb $0xaa, 7f
    movl $2, %ecx
3:  movb %cl, 5f+1
    call 5f
    cmpl %eax, %ecx
    jne 4f
    incl %ecx
    cmpl $200, %ecx
    jne 3b
    movb $2, %al
    outb %al, $0xf4
4:  movb $1, %al
    outb %al, $0xf4
    jmp 6f
5:  movl $1, %eax
    ret
7:  .byte 0
6:
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [(PATCHED_AFTER_A_STORE, 2), (PATCHED_IN_A_LOOP, 2)],
    ids=["after-a-store", "in-a-loop"],
)
def test_a_function_patched_beside_data_runs_its_new_bytes(
    tmp_path: Path, body: str, expected: int
) -> None:
    elf = build(body, tmp_path)
    ran = Machine.from_elf(elf).run(max_instructions=10_000_000)
    assert (ran.stop_reason, ran.exit_code) == ("debug-exit", expected)
    m = Machine.from_elf(elf)
    stepped = None
    while stepped is None and m.core.icount <= ran.instructions:
        stepped = m.step()
    assert stepped is not None
    assert (stepped.stop_reason, stepped.exit_code, stepped.instructions) == (
        "debug-exit", expected, ran.instructions
    )  # fmt: skip
