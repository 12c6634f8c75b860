"""Generated guests for the route-equivalence property (tests/test_generated_guests.py).

A guest is a valid prologue, assembled once per kind (32-bit protected mode as GRUB leaves it
or 64-bit long mode with identity 2 MiB pages; with an IDT or with none, so that any exception
is a triple fault), then random code written into the prologue's code area: ALU operations,
loads and stores to a scratch area, port I/O to the modelled devices (the 8254 PIT, the 8259s,
CMOS, COM1, port 61h, the POST port, the keyboard controller), int3, ud2, division by zero,
software interrupts, the trap flag, HLT with a timer armed, isa-debug-exit writes, jumps forward
and back, jumps into unassigned memory and undecodable bytes. The code ends in a debug-exit
write.

With an IDT, the handlers of the traps (#DB, #BP, #OF, INT n) return where the CPU left them;
the handlers of the faults return to the address in EBP/RBP, which the generator sets to the
instruction after each one it plants (a fault elsewhere returns wherever EBP points); IRQ 0
(the 8259s remapped to vector 0x20) sends the EOI and returns. Every handler writes its vector
to the 0xE9 console, so the routes' console bytes say which handlers ran.

Instructions are encoded here (no assembler per guest): each op is a tuple the hypothesis
strategy draws, turned into bytes by ``encode``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from hypothesis import strategies as st
from mb2_kernel import build

# the code area the random code is written into, and the scratch area loads and stores use
CODE_SIZE = 0x800
SCRATCH_SIZE = 0x1000
FAULT_VECTORS = (0, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19)
ERROR_CODE_VECTORS = (8, 10, 11, 12, 13, 14, 17)
TRAP_VECTORS = (1, 3, 4)
TIMER_VECTOR = 0x20
# eax, ecx, edx, ebx, esi, edi: the registers random code may change (not ESP, not EBP)
REGS = (0, 1, 2, 3, 6, 7)

_HANDLERS_32 = "\n".join(
    f"""
exc{v}:
    {"addl $4, %esp" if v in ERROR_CODE_VECTORS else ""}
    movb ${v}, %al
    outb %al, $0xe9
    {"movl %ebp, (%esp)" if v in FAULT_VECTORS else ""}
    iret"""
    for v in FAULT_VECTORS + TRAP_VECTORS
)
_HANDLERS_64 = _HANDLERS_32.replace("addl $4, %esp", "addq $8, %rsp")
_HANDLERS_64 = _HANDLERS_64.replace("movl %ebp, (%esp)", "movq %rbp, (%rsp)")
_HANDLERS_64 = _HANDLERS_64.replace("iret", "iretq")

_IDT_FILL_32 = (
    "\n".join(
        f"""    movl $exc{v}, %eax
    movw %ax, idt + 8 * {v}
    movw %cs, idt + 8 * {v} + 2
    movw $0x8F00, idt + 8 * {v} + 4
    shrl $16, %eax
    movw %ax, idt + 8 * {v} + 6"""
        for v in FAULT_VECTORS + TRAP_VECTORS
    )
    + """
    movl $irq0, %eax
    movw %ax, idt + 8 * 0x20
    movw %cs, idt + 8 * 0x20 + 2
    movw $0x8E00, idt + 8 * 0x20 + 4
    shrl $16, %eax
    movw %ax, idt + 8 * 0x20 + 6
    movl $spurious, %eax
    movw %ax, idt + 8 * 0x27
    movw %cs, idt + 8 * 0x27 + 2
    movw $0x8E00, idt + 8 * 0x27 + 4
    shrl $16, %eax
    movw %ax, idt + 8 * 0x27 + 6
"""
)

# 64-bit gates are 16 bytes: offset 15:0, selector, type, offset 31:16, offset 63:32 (zero)
_IDT_FILL_64 = (
    "\n".join(
        f"""    movl $exc{v}, %eax
    movw %ax, idt + 16 * {v}
    movw $0x08, idt + 16 * {v} + 2
    movw $0x8F00, idt + 16 * {v} + 4
    shrl $16, %eax
    movw %ax, idt + 16 * {v} + 6"""
        for v in FAULT_VECTORS + TRAP_VECTORS
    )
    + """
    movl $irq0, %eax
    movw %ax, idt + 16 * 0x20
    movw $0x08, idt + 16 * 0x20 + 2
    movw $0x8E00, idt + 16 * 0x20 + 4
    shrl $16, %eax
    movw %ax, idt + 16 * 0x20 + 6
    movl $spurious, %eax
    movw %ax, idt + 16 * 0x27
    movw $0x08, idt + 16 * 0x27 + 2
    movw $0x8E00, idt + 16 * 0x27 + 4
    shrl $16, %eax
    movw %ax, idt + 16 * 0x27 + 6
"""
)

_LONG_MODE = """
    movl $pdpt, %eax
    orl $0x3, %eax
    movl %eax, pml4
    movl $pd, %eax
    orl $0x3, %eax
    movl %eax, pdpt
    movl $pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    lgdt gdt64_pointer
    ljmp $0x08, $2f
    .code64
2:  movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $stack_top, %esp
"""

_TEMPLATE = """
    cli
    movl $stack_top, %esp
{idt_fill}
    lidt idt_desc
    movl $scratch, %ebx
    movl $code_end, %ebp
{long_mode}
    xorl %eax, %eax
    xorl %ecx, %ecx
    xorl %edx, %edx
    xorl %esi, %esi
    xorl %edi, %edi
    .globl code
code:
    .fill {code_size}, 1, 0xf4
code_end:
    movb $0, %al
    outb %al, $0xf4
    jmp code_end
{handlers}
irq0:
    push{q} %rax_or_eax
    movb $0x20, %al
    outb %al, $0x20
    movb $0x20, %al
    outb %al, $0xe9
    pop{q} %rax_or_eax
    iret{q}
spurious:
    iret{q}
    .align 16
gdt64:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
gdt64_pointer:
    .short 3 * 8 - 1
    .long gdt64
    .align 16
idt_desc:
    .short {idt_limit}
    .long idt, 0
    .align 16
idt:
    .fill 0x30 * {gate}, 1, 0
    .align 4096
pml4:
    .fill 4096, 1, 0
pdpt:
    .fill 4096, 1, 0
pd:  /* the first GiB, identity, in 2 MiB pages */
    .set page, 0
    .rept 512
    .long page * 0x200000 + 0x83, 0
    .set page, page + 1
    .endr
scratch:
    .fill {scratch_size}, 1, 0
stack:
    .fill 4096, 1, 0
stack_top:
"""


@dataclass(frozen=True)
class Kind:
    """The prologue of a guest: its code size and whether it has an IDT."""

    bits: int
    idt: bool

    @property
    def name(self) -> str:
        return f"{self.bits}-bit-{'idt' if self.idt else 'no-idt'}"


KINDS = tuple(Kind(bits, idt) for bits in (32, 64) for idt in (True, False))


@cache
def template(kind: Kind, directory: Path) -> Path:
    """The prologue ELF of a kind (assembled once per test session)."""
    q = "q" if kind.bits == 64 else ""
    gate = 16 if kind.bits == 64 else 8
    src = _TEMPLATE.format(
        long_mode=_LONG_MODE if kind.bits == 64 else "",
        idt_fill=(_IDT_FILL_64 if kind.bits == 64 else _IDT_FILL_32) if kind.idt else "",
        q=q,
        code_size=CODE_SIZE,
        handlers=(_HANDLERS_64 if kind.bits == 64 else _HANDLERS_32) if kind.idt else "",
        idt_limit=0x30 * gate - 1 if kind.idt else 0,
        gate=gate,
        scratch_size=SCRATCH_SIZE,
    ).replace("%rax_or_eax", "%rax" if kind.bits == 64 else "%eax")
    return build(src, directory, name=kind.name)


# ------------------------------------------------------------------------- the random code
# An op is a tuple: (name, *parameters). encode() turns a list of them into bytes, given where
# the code and the scratch area are. Jumps name their target as an op index.

_ALU = (0x01, 0x29, 0x31, 0x21, 0x09, 0x11, 0x19, 0x39, 0x85, 0x89)  # add sub xor and or ...
_OUT_PORTS = (0x40, 0x42, 0x43, 0x20, 0x21, 0xA0, 0xA1, 0x61, 0x70, 0x71, 0x80, 0xE9, 0x64,
              0x60, 0x92, 0xF4, 0x4C)  # fmt: skip
_IN_PORTS = (0x40, 0x41, 0x42, 0x43, 0x20, 0x21, 0xA0, 0xA1, 0x61, 0x71, 0x64, 0x60, 0x80)
# Stores to the local APIC (32-bit kinds; the 64-bit kinds map only the first GiB: a #PF):
# the TPR, the EOI, and self-IPIs (a gate, no gate, one the TPR may hold): interrupts raised and
# let in by a MOV in mid-block
_LAPIC_WRITES = ((0x80, 0), (0x80, 0x30), (0x80, 0xF0), (0xB0, 0), (0x300, 0x40020),
                 (0x300, 0x40027), (0x300, 0x40031), (0x300, 0x40045))  # fmt: skip
_DX_PORTS = (0x3F8, 0x3F9, 0x3FA, 0x3FB, 0x3FC, 0x3FD, 0x3FE, 0x2F8, 0xCF8, 0xCFC, 0x1234)
# unassigned physical space (past the end of RAM, the PCI hole), the top of the BIOS ROM, and
# the IVT at 0: executed, its words (53 FF 00 F0: push, then inc (%rax) with RAX 0) rewrite the
# block that runs them
_WILD_TARGETS = (0x300000, 0xE0000000, 0xFFFFFF00, 0)

reg = st.sampled_from(REGS)
imm32 = st.one_of(
    st.integers(0, 0xFFFFFFFF), st.sampled_from([0, 1, 0xFFFFFFFF, 0x80000000, 7, 0x100])
)


@cache
def _ops(n_code: int):
    """Strategies for one op (``n_code``: how many ops the guest has, for jump targets); made
    once per length (building them for every guest cost more than drawing from them)."""
    target = st.integers(0, n_code)
    return st.one_of(
        st.tuples(st.just("mov"), reg, imm32),
        st.tuples(st.just("alu"), st.sampled_from(_ALU), reg, reg),
        st.tuples(st.just("imul"), reg, reg),
        st.tuples(st.just("shift"), st.sampled_from((0, 4, 5, 7)), reg, st.integers(0, 31)),
        st.tuples(st.just("unary"), st.sampled_from((0, 1, 2, 3)), reg),  # inc dec not neg
        st.tuples(st.just("store"), reg, st.integers(0, SCRATCH_SIZE - 4)),
        st.tuples(st.just("load"), reg, st.integers(0, SCRATCH_SIZE - 4)),
        st.tuples(st.just("storeb"), reg, st.integers(0, SCRATCH_SIZE - 1)),
        st.tuples(st.just("lock_mem"), st.integers(0, SCRATCH_SIZE // 4 - 1)),
        st.tuples(st.just("lock_reg"), reg, reg),  # #UD: LOCK on a register operand
        st.tuples(st.just("push_pop"), reg, reg),
        st.tuples(st.just("out"), st.sampled_from(_OUT_PORTS), st.integers(0, 255)),
        st.tuples(st.just("in"), st.sampled_from(_IN_PORTS)),
        st.tuples(st.just("out_dx"), st.sampled_from(_DX_PORTS), st.integers(0, 255)),
        st.tuples(st.just("in_dx"), st.sampled_from(_DX_PORTS)),
        st.tuples(st.just("pit"), st.sampled_from((0x34, 0x30, 0x36, 0x32)), st.integers(2, 200)),
        st.tuples(st.just("pic_mask"), st.sampled_from((0xFE, 0xFF, 0xFC, 0x00))),
        st.tuples(st.just("lapic"), st.sampled_from(_LAPIC_WRITES)),
        st.tuples(st.just("eoi")),
        st.just(("sti",)),
        st.just(("cli",)),
        st.just(("hlt",)),
        st.just(("sti_hlt",)),
        st.just(("int3",)),
        st.just(("ud2",)),
        st.just(("div0",)),
        st.tuples(st.just("int"), st.sampled_from((1, 3, 4, 0x20, 0x27, 0x80, 0xFF))),
        st.just(("tf_on",)),
        st.just(("tf_off",)),
        st.tuples(st.just("exit"), st.integers(0, 255)),
        st.tuples(st.just("jmp"), target),
        st.tuples(st.just("jcc"), st.integers(0, 15), target),
        st.tuples(st.just("smc"), target, st.integers(0, 255)),
        st.tuples(st.just("loop"), st.integers(1, 6), st.integers(1, 4)),
        st.tuples(st.just("wild"), st.sampled_from(_WILD_TARGETS)),
        st.tuples(st.just("bytes"), st.binary(min_size=1, max_size=4)),
        st.just(("rdtsc",)),
        st.just(("cpuid",)),
        st.just(("nop",)),
    )


@st.composite
def guests(draw) -> tuple[Kind, list[tuple]]:
    """A guest: its kind and its ops (the first may arm the timer: the 8259s remapped to 0x20,
    IRQ 0 unmasked, the PIT in mode 2 at a short period, IF set)."""
    kind = draw(st.sampled_from(KINDS))
    n = draw(st.integers(1, 40))
    ops = draw(st.lists(_ops(n), min_size=n, max_size=n))
    if kind.idt and draw(st.booleans()):
        ops.insert(0, ("timer", draw(st.integers(3, 120))))
    return kind, ops


def _modrm(mod: int, reg_: int, rm: int) -> int:
    return (mod << 6) | (reg_ << 3) | rm


def _abs(opcode: bytes, reg_: int, address: int) -> bytes:
    """``opcode`` with a ModRM + SIB naming the absolute address (disp32, no base, no index),
    which means the same in 32-bit and 64-bit code."""
    return opcode + bytes([_modrm(0, reg_, 4), 0x25]) + struct.pack("<I", address)


def _out(port: int, value: int) -> bytes:
    return bytes([0xB0, value, 0xE6, port])


def _mov_ebp(address: int) -> bytes:
    return b"\xbd" + struct.pack("<I", address)  # where a fault handler returns


def _encode_op(op: tuple, scratch: int) -> tuple[bytes, bool]:
    """The bytes of one op without its jump displacement; whether it needs EBP = its end."""
    name, *p = op
    match name:
        case "mov":
            return bytes([0xB8 + p[0]]) + struct.pack("<I", p[1]), False
        case "alu":
            return bytes([p[0], _modrm(3, p[1], p[2])]), False
        case "imul":
            return bytes([0x0F, 0xAF, _modrm(3, p[0], p[1])]), False
        case "shift":
            return bytes([0xC1, _modrm(3, p[0], p[1]), p[2]]), False
        case "unary":
            opcode, sub = (0xFF, p[0]) if p[0] < 2 else (0xF7, p[0])
            return bytes([opcode, _modrm(3, sub, p[1])]), False
        case "store":
            return _abs(b"\x89", p[0], scratch + p[1]), False
        case "load":
            return _abs(b"\x8b", p[0], scratch + p[1]), False
        case "storeb":
            return _abs(b"\x88", p[0] & 3, scratch + p[1]), False
        case "lock_mem":
            return b"\xf0" + _abs(b"\x01", 0, scratch + 4 * p[0]), False
        case "lock_reg":
            return bytes([0xF0, 0x01, _modrm(3, p[0], p[1])]), True
        case "push_pop":
            return bytes([0x50 + p[0], 0x58 + p[1]]), False
        case "out":
            return _out(p[0], p[1]), False
        case "in":
            return bytes([0xE4, p[0]]), False
        case "out_dx":
            return b"\x66\xba" + struct.pack("<H", p[0]) + bytes([0xB0, p[1], 0xEE]), False
        case "in_dx":
            return b"\x66\xba" + struct.pack("<H", p[0]) + b"\xec", False
        case "pit":
            return _out(0x43, p[0]) + _out(0x40, p[1]) + _out(0x40, 0), False
        case "pic_mask":
            return _out(0x21, p[0]), False
        case "eoi":
            return _out(0x20, 0x20), False
        case "lapic":  # movl $value, 0xFEE00000 + offset
            offset, value = p[0]
            return _abs(b"\xc7", 0, 0xFEE00000 + offset) + struct.pack("<I", value), True
        case "timer":  # ICW1-4: master at vector 0x20, cascade on 2, 8086 mode; only IRQ 0
            pic = _out(0x20, 0x11) + _out(0x21, 0x20) + _out(0x21, 4) + _out(0x21, 1)
            return pic + _out(0x21, 0xFE) + _out(0x43, 0x34) + _out(0x40, p[0]) + _out(
                0x40, 0
            ) + b"\xfb", False
        case "sti":
            return b"\xfb", False
        case "cli":
            return b"\xfa", False
        case "hlt":
            return b"\xf4", False
        case "sti_hlt":
            return b"\xfb\xf4", False
        case "int3":
            return b"\xcc", False
        case "ud2":
            return b"\x0f\x0b", True
        case "div0":
            return b"\x31\xc9\xf7\xf1", True
        case "int":
            return bytes([0xCD, p[0]]), True
        case "tf_on":  # pushf; orl $0x100, (%esp); popf
            return b"\x9c\x81\x0c\x24\x00\x01\x00\x00\x9d", False
        case "tf_off":
            return b"\x9c\x81\x24\x24\xff\xfe\xff\xff\x9d", False
        case "exit":
            return _out(0xF4, p[0]), False
        case "loop":  # mov $n, %ecx; body of nops; loop back
            return b"\xb9" + struct.pack("<I", p[0]) + b"\x90" * p[1] + bytes(
                [0xE2, (-(p[1] + 2)) & 0xFF]
            ), False
        case "wild":  # mov $target, %eax; jmp *%eax
            return b"\xb8" + struct.pack("<I", p[0]) + b"\xff\xe0", True
        case "bytes":
            return p[0], True
        case "rdtsc":
            return b"\x0f\x31", False
        case "cpuid":
            return b"\x0f\xa2", False
        case "nop":
            return b"\x90", False
    raise ValueError(f"unknown op {name!r}")


def encode(ops: list[tuple], code: int, scratch: int) -> bytes:
    """The random code for the code area at ``code``, then a debug-exit write. Jumps reach the
    start of an op (or that write); an op that may fault is preceded by ``mov $end, %ebp``."""
    # two passes: lay the ops out (a jump is always 5 or 6 bytes), then fill in the targets
    bodies: list[bytes] = []
    for op in ops:
        if op[0] in _JUMPS:
            bodies.append(b"\0" * _JUMPS[op[0]])
            continue
        body, faults = _encode_op(op, scratch)
        bodies.append(_mov_ebp(0) + body if faults else body)
    starts = [0]
    for body in bodies:
        starts.append(starts[-1] + len(body))
    out = bytearray()
    for i, (op, body) in enumerate(zip(ops, bodies, strict=True)):
        end = code + starts[i + 1]
        if op[0] == "jmp":
            out += b"\xe9" + struct.pack("<i", code + starts[op[1]] - end)
        elif op[0] == "jcc":
            out += bytes([0x0F, 0x80 + op[1]]) + struct.pack("<i", code + starts[op[2]] - end)
        elif op[0] == "smc":  # movb $v, code[target]: the guest rewrites its own code
            out += _abs(b"\xc6", 0, code + starts[op[1]]) + bytes([op[2]])
        elif body[:1] == b"\xbd" and _encode_op(op, scratch)[1]:
            out += _mov_ebp(end) + body[5:]
        else:
            out += body
    out += _out(0xF4, 0)
    assert len(out) <= CODE_SIZE, len(out)
    return bytes(out)


_JUMPS = {"jmp": 5, "jcc": 6, "smc": 8}
