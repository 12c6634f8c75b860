"""Real mode, until its delivery and the BIOS services are modelled: a kernel's trampoline that
asks the BIOS for something ends the run saying exactly which call it was, never a
protected-mode delivery no CPU would make."""

from __future__ import annotations

import pytest
from mb2_kernel import build

from emu import Machine

# From GRUB's 32-bit protected mode to real mode through a trampoline copied to 0x8000, as
# kernels do: 16-bit protected mode first, then CR0.PE=0 and a far jump, then the real-mode IVT.
TO_REAL_MODE = """
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
    movl %cr0, %eax
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
ivt_desc:
    .word 0x3FF
    .long 0
tramp_end:
    .code32
"""


def _run(tmp_path, call: str):
    m = Machine.from_elf(build(TO_REAL_MODE.replace("{call}", call), tmp_path))
    return m, m.run(max_instructions=100_000)


@pytest.mark.parametrize(
    "call",
    [
        "movl $0xE820, %eax\n    int $0x15",  # through the IVT, to SeaBIOS's INT 15h entry
        "movw $0xE820, %ax\n    pushfw\n    lcall $0xF000, $0xF859",  # chained to it directly
    ],
    ids=["int", "far-call"],
)
def test_a_bios_call_stops_and_says_which(tmp_path, call: str) -> None:
    _m, r = _run(tmp_path, call)
    assert r.stop_reason == "unsupported" and r.exit_status == 3
    assert r.detail == "BIOS call INT 0x15 AX=0xe820 from real mode (no BIOS services yet)"
    assert r.cpu.mode == "real"
    assert not [e for e in r.trace.entries if e.vector == 21]  # never "#CP": no delivery made


def test_an_interrupt_to_a_handler_of_its_own_names_the_handler(tmp_path) -> None:
    m, r = _run(
        tmp_path, "movw $0x1234, (0x80 * 4)\n    movw $0x0700, (0x80 * 4 + 2)\n    int $0x80"
    )
    assert r.stop_reason == "unsupported"
    assert "INT 0x80 in real mode" in r.detail and "0700:1234" in r.detail
    at = int(r.detail.split(" at 0000:")[1][:4], 16)  # the INT instruction itself
    assert m.read_physical(at, 2) == b"\xcd\x80"
    assert "not modelled yet" in r.detail
