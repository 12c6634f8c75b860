"""CPU state as plain data, and how to name the mode the CPU is in.

``CpuState`` is an immutable snapshot read without side effects; the run report, the JSON
output, the TUI and tests all show it. The engine behind it is in ``core/engine.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

GPR_NAMES = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
)  # fmt: skip

SEGMENT_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")

CR0_PE = 1 << 0
CR0_PG = 1 << 31
EFER_LME = 1 << 8
EFER_LMA = 1 << 10
RFLAGS_IF = 1 << 9

# Segment descriptor cache flag bits as QEMU keeps them (the descriptor's high dword).
DESC_L = 1 << 21
DESC_B = 1 << 22


@dataclass(frozen=True)
class Segment:
    selector: int
    base: int
    limit: int
    flags: int

    @property
    def long(self) -> bool:
        return bool(self.flags & DESC_L)

    @property
    def big(self) -> bool:
        return bool(self.flags & DESC_B)


@dataclass(frozen=True)
class CpuState:
    """Everything a report needs about the CPU at one instant."""

    rip: int
    rflags: int
    gpr: dict[str, int]
    cr0: int
    cr2: int
    cr3: int
    cr4: int
    efer: int
    gdtr: tuple[int, int]  # (base, limit)
    idtr: tuple[int, int]
    segments: dict[str, Segment]
    hflags: int
    mode: str  # "real", "prot16", "prot32", "long64" or "compat"
    cpl: int
    halted: bool = False
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def code_bits(self) -> int:
        return {"real": 16, "prot16": 16, "prot32": 32, "long64": 64, "compat": 32}[self.mode]

    @property
    def code_base(self) -> int:
        """CS.base: what turns RIP into the linear address of the next instruction (0 in
        64-bit mode, the segment times 16 in real mode)."""
        return 0 if self.mode == "long64" else self.segments["cs"].base

    @property
    def pc(self) -> int:
        """The linear address of the next instruction (CS.base + EIP; RIP in 64-bit mode)."""
        return self.code_base + self.rip if self.mode != "long64" else self.rip

    def where(self) -> str:
        """CS:IP as a person reads it in real and 16-bit mode ("f000:e05b"), else ""."""
        if self.mode in ("real", "prot16"):
            return f"{self.segments['cs'].selector:04x}:{self.rip & 0xFFFF:04x}"
        return ""

    @property
    def interrupts_enabled(self) -> bool:
        return bool(self.rflags & RFLAGS_IF)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["segments"] = {k: asdict(v) for k, v in self.segments.items()}
        return d


# QEMU hflags bits that decide how instructions decode (target/i386/cpu.h).
HF_CS32 = 1 << 4
HF_PE = 1 << 7
HF_LMA = 1 << 14
HF_CS64 = 1 << 15


def cpu_mode(hflags: int) -> str:
    """Name the operating mode the way the decoder sees it: PE, LMA and the CS L/D bits.

    hflags are what the CPU core decodes with, so they name the mode even in the instants
    after a mode switch where the CS descriptor cache still holds the old descriptor.
    """
    if not hflags & HF_PE:
        return "real"
    if hflags & HF_LMA:
        return "long64" if hflags & HF_CS64 else "compat"
    return "prot32" if hflags & HF_CS32 else "prot16"
