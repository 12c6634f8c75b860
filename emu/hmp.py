"""QEMU monitor (HMP) text for a machine: ``info registers``, ``info mem``, ``info tlb`` and
``xp``, in QEMU 7.2's formats, so that output can be compared with QEMU's line for line.

The gdb stub answers ``monitor info registers`` etc. with these. Everything is read without side
effects: the page tables are read from physical memory, no accessed/dirty bit is set.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator

from unicorn import x86_const as X

from .core.cpu_state import CR0_PG, EFER_LMA, CpuState

ReadPhysical = Callable[[int, int], bytes]

# page-table entry bits (QEMU's PG_*_MASK)
PG_PRESENT, PG_RW, PG_USER, PG_PWT, PG_PCD = 1, 2, 4, 8, 16
PG_ACCESSED, PG_DIRTY, PG_PSE, PG_GLOBAL = 32, 64, 128, 256
PG_NX = 1 << 63
CR4_PSE, CR4_PAE, CR4_LA57 = 1 << 4, 1 << 5, 1 << 12
ADDRESS_MASK = 0x000F_FFFF_FFFF_F000  # QEMU's PG_ADDRESS_MASK (52-bit physical addresses)

# segment descriptor cache flag bits, as QEMU keeps them (the descriptor's high dword)
DESC_A, DESC_W_R, DESC_E_C, DESC_CS, DESC_S = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
DESC_P, DESC_L, DESC_B = 1 << 15, 1 << 21, 1 << 22
_SYSTEM_TYPES = (
    ("Reserved", "TSS16-avl", "LDT", "TSS16-busy", "CallGate16", "TaskGate", "IntGate16",
     "TrapGate16", "Reserved", "TSS32-avl", "Reserved", "TSS32-busy", "CallGate32", "Reserved",
     "IntGate32", "TrapGate32"),
    ("<hiword>", "Reserved", "LDT", "Reserved", "Reserved", "Reserved", "Reserved", "Reserved",
     "Reserved", "TSS64-avl", "Reserved", "TSS64-busy", "CallGate64", "Reserved", "IntGate64",
     "TrapGate64"),
)  # fmt: skip


def _segment_line(name: str, sel: int, base: int, limit: int, flags: int, lma: bool,
                  pe: bool) -> str:  # fmt: skip
    text = f"{name:<3}={sel:04x} " + (f"{base:016x}" if lma else f"{base & 0xFFFFFFFF:08x}")
    text += f" {limit & 0xFFFFFFFF:08x} {flags & 0xFFFFFFFF:08x}"
    if not pe or not flags & DESC_P:
        return text
    text += f" DPL={(flags >> 13) & 3} "
    if flags & DESC_S:
        if flags & DESC_CS:
            text += "CS64" if flags & DESC_L else ("CS32" if flags & DESC_B else "CS16")
            text += " [" + ("C" if flags & DESC_E_C else "-") + ("R" if flags & DESC_W_R else "-")
        else:
            text += "DS  " if flags & DESC_B or lma else "DS16"
            text += " [" + ("E" if flags & DESC_E_C else "-") + ("W" if flags & DESC_W_R else "-")
        return text + ("A" if flags & DESC_A else "-") + "]"
    return text + _SYSTEM_TYPES[lma][(flags >> 8) & 15]


def info_registers(uc, state: CpuState, halted: bool = False) -> str:
    """``info registers`` as QEMU 7.2 prints it for one x86-64 CPU (``CPU#0`` and the general,
    segment, control, debug, FPU and SSE registers). ``halted``: the CPU sits in HLT. II (the
    interrupt shadow) shows 0: it is not kept between instructions here; SMM is never entered
    and A20 is always on."""
    c = state
    lma = bool(c.efer & EFER_LMA)
    pe = bool(c.cr0 & 1)
    rf = c.rflags
    flags = "".join(ch if rf & bit else "-" for ch, bit in
                    (("D", 1 << 10), ("O", 1 << 11), ("S", 1 << 7), ("Z", 1 << 6),
                     ("A", 1 << 4), ("P", 1 << 2), ("C", 1 << 0)))  # fmt: skip
    tail = f"CPL={c.cpl} II=0 A20=1 SMM=0 HLT={int(c.halted or halted)}"
    g = c.gpr
    lines = ["", "CPU#0"]
    if lma:
        names = [("RAX", "RBX", "RCX", "RDX"), ("RSI", "RDI", "RBP", "RSP"),
                 ("R8 ", "R9 ", "R10", "R11"), ("R12", "R13", "R14", "R15")]  # fmt: skip
        for row in names:
            lines.append(" ".join(f"{n}={g[n.strip().lower()]:016x}" for n in row))
        lines.append(f"RIP={c.rip:016x} RFL={rf & 0xFFFFFFFF:08x} [{flags}] {tail}")
    else:
        for row in (("EAX", "EBX", "ECX", "EDX"), ("ESI", "EDI", "EBP", "ESP")):
            lines.append(" ".join(f"{n}={g['r' + n[1:].lower()] & 0xFFFFFFFF:08x}" for n in row))
        lines.append(f"EIP={c.rip & 0xFFFFFFFF:08x} EFL={rf & 0xFFFFFFFF:08x} [{flags}] {tail}")
    for name in ("es", "cs", "ss", "ds", "fs", "gs"):
        s = c.segments[name]
        lines.append(_segment_line(name.upper(), s.selector, s.base, s.limit, s.flags, lma, pe))
    for name, reg in (("LDT", X.UC_X86_REG_LDTR), ("TR", X.UC_X86_REG_TR)):
        sel, base, limit, fl = uc.reg_read(reg)
        lines.append(_segment_line(name, sel, base, limit, fl, lma, pe))
    for name, (base, limit) in (("GDT", c.gdtr), ("IDT", c.idtr)):
        lines.append(f"{name}=     " + (f"{base:016x}" if lma else f"{base & 0xFFFFFFFF:08x}")
                     + f" {limit:08x}")  # fmt: skip
    if lma:
        lines.append(f"CR0={c.cr0 & 0xFFFFFFFF:08x} CR2={c.cr2:016x} CR3={c.cr3:016x} "
                     f"CR4={c.cr4 & 0xFFFFFFFF:08x}")  # fmt: skip
    else:
        lines.append(f"CR0={c.cr0 & 0xFFFFFFFF:08x} CR2={c.cr2 & 0xFFFFFFFF:08x} "
                     f"CR3={c.cr3 & 0xFFFFFFFF:08x} CR4={c.cr4 & 0xFFFFFFFF:08x}")  # fmt: skip
    drs = [uc.reg_read(getattr(X, f"UC_X86_REG_DR{i}")) for i in (0, 1, 2, 3, 6, 7)]
    lines.append("".join(f"DR{i}={drs[i]:016x} " for i in range(4)))
    lines.append(f"DR6={drs[4]:016x} DR7={drs[5]:016x}")
    lines.append(f"EFER={c.efer:016x}")
    fpsw = uc.reg_read(X.UC_X86_REG_FPSW)
    top = (fpsw >> 11) & 7
    tags = uc.reg_read(X.UC_X86_REG_FPTAG)
    abridged = sum(1 << i for i in range(8) if (tags >> (2 * i)) & 3 != 3)
    lines.append(f"FCW={uc.reg_read(X.UC_X86_REG_FPCW):04x} FSW={fpsw:04x} [ST={top}] "
                 f"FTW={abridged:02x} MXCSR={uc.reg_read(X.UC_X86_REG_MXCSR):08x}")  # fmt: skip
    fpr = []
    for i in range(8):
        value = uc.reg_read(X.UC_X86_REG_ST0 + i)
        mantissa, exponent = value if isinstance(value, tuple) else (value, 0)
        fpr.append(f"FPR{i}={mantissa & (2**64 - 1):016x} {exponent & 0xFFFF:04x}")
    lines += [f"{fpr[i]} {fpr[i + 1]}" for i in range(0, 8, 2)]
    xmm = []
    for i in range(16 if lma else 8):
        v = uc.reg_read(X.UC_X86_REG_XMM0 + i)
        xmm.append(f"XMM{i:02d}={v >> 64:016x} {v & (2**64 - 1):016x}")
    lines += [f"{xmm[i]} {xmm[i + 1]}" for i in range(0, len(xmm), 2)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ page tables
def _q(read: ReadPhysical, address: int) -> int:
    return struct.unpack("<Q", read(address, 8))[0]


def _d(read: ReadPhysical, address: int) -> int:
    return struct.unpack("<I", read(address, 4))[0]


def _leaves(read: ReadPhysical, cr3: int, cr4: int, efer: int) -> Iterator[tuple[int, int, int, int]]:  # fmt: skip
    """Every present leaf: (virtual address, size, entry (the leaf's bits), QEMU's protection:
    the present/RW/US bits ANDed over the levels). In address order; virtual addresses are
    not sign-extended."""
    keep = PG_PRESENT | PG_RW | PG_USER
    if efer & EFER_LMA:
        pml4 = cr3 & ADDRESS_MASK
        for i1 in range(512):
            e1 = _q(read, pml4 + i1 * 8)
            if not e1 & PG_PRESENT:
                continue
            for i2 in range(512):
                e2 = _q(read, (e1 & ADDRESS_MASK) + i2 * 8)
                if not e2 & PG_PRESENT:
                    continue
                prot2 = e1 & e2 & keep
                va2 = (i1 << 39) | (i2 << 30)
                if e2 & PG_PSE:
                    yield va2, 1 << 30, e2, prot2
                    continue
                for i3 in range(512):
                    e3 = _q(read, (e2 & ADDRESS_MASK) + i3 * 8)
                    if not e3 & PG_PRESENT:
                        continue
                    va3, prot3 = va2 | (i3 << 21), prot2 & e3
                    if e3 & PG_PSE:
                        yield va3, 1 << 21, e3, prot3
                        continue
                    table = e3 & ADDRESS_MASK
                    for i4 in range(512):
                        e4 = _q(read, table + i4 * 8)
                        if e4 & PG_PRESENT:
                            yield va3 | (i4 << 12), 1 << 12, e4, prot3 & e4
    elif cr4 & CR4_PAE:
        for i1 in range(4):
            e1 = _q(read, (cr3 & ~0x1F & 0xFFFFFFFF) + i1 * 8)
            if not e1 & PG_PRESENT:
                continue
            for i2 in range(512):
                e2 = _q(read, (e1 & ADDRESS_MASK) + i2 * 8)
                if not e2 & PG_PRESENT:
                    continue
                va2 = (i1 << 30) | (i2 << 21)
                if e2 & PG_PSE:
                    yield va2, 1 << 21, e2, e2 & keep
                    continue
                for i3 in range(512):
                    e3 = _q(read, (e2 & ADDRESS_MASK) + i3 * 8)
                    if e3 & PG_PRESENT:
                        yield va2 | (i3 << 12), 1 << 12, e3, e2 & e3 & keep
    else:
        directory = cr3 & 0xFFFFF000
        for i1 in range(1024):
            e1 = _d(read, directory + i1 * 4)
            if not e1 & PG_PRESENT:
                continue
            if e1 & PG_PSE and cr4 & CR4_PSE:
                yield i1 << 22, 1 << 22, e1, e1 & keep
                continue
            for i2 in range(1024):
                e2 = _d(read, (e1 & 0xFFFFF000) + i2 * 4)
                if e2 & PG_PRESENT:
                    yield (i1 << 22) | (i2 << 12), 1 << 12, e2, e1 & e2 & keep


def _canonical(address: int, lma: bool) -> int:
    if lma and address & (1 << 47):
        return address | 0xFFFF_0000_0000_0000
    return address


def info_tlb(read: ReadPhysical, state: CpuState) -> str:
    """``info tlb``: every present leaf entry, ``VADDR: PADDR flags`` (XGPDACTUW)."""
    c = state
    if not c.cr0 & CR0_PG:
        return "PG disabled\n"
    lma = bool(c.efer & EFER_LMA)
    lines = []
    for va, size, entry, _prot in _leaves(read, c.cr3, c.cr4, c.efer):
        if lma or c.cr4 & CR4_PAE:
            phys = entry & ADDRESS_MASK & ~(size - 1)
        else:
            entry &= ~PG_PSE if size == 1 << 12 else ~0
            phys = entry & ~(size - 1) & 0xFFFFFFFF
            if size == 1 << 22:
                phys = entry & ~((1 << 21) - 1) & 0xFFFFFFFF  # QEMU masks 4M pages to 2M
        bits = "".join(ch if entry & bit else "-" for ch, bit in
                       (("X", PG_NX), ("G", PG_GLOBAL), ("P", PG_PSE), ("D", PG_DIRTY),
                        ("A", PG_ACCESSED), ("C", PG_PCD), ("T", PG_PWT), ("U", PG_USER),
                        ("W", PG_RW)))  # fmt: skip
        lines.append(f"{_canonical(va, lma):016x}: {phys:016x} {bits}")
    return "".join(line + "\n" for line in lines)


def info_mem(read: ReadPhysical, state: CpuState) -> str:
    """``info mem``: runs of virtual memory with the same rights, ``START-END SIZE urw``."""
    c = state
    if not c.cr0 & CR0_PG:
        return "PG disabled\n"
    lma = bool(c.efer & EFER_LMA)
    lines: list[str] = []
    start, last_prot, last_end = -1, 0, 0

    def change(end: int, prot: int) -> None:
        nonlocal start, last_prot
        if prot == last_prot:
            return
        if start != -1:
            lines.append(
                f"{_canonical(start, lma):016x}-{_canonical(end, lma):016x} "
                f"{_canonical(end - start, lma):016x} "
                + ("u" if last_prot & PG_USER else "-") + "r" + ("w" if last_prot & PG_RW else "-")
            )  # fmt: skip
        start = end if prot else -1
        last_prot = prot

    for va, size, _entry, prot in _leaves(read, c.cr3, c.cr4, c.efer):
        if va != last_end:
            change(last_end, 0)
        change(va, prot)
        last_end = va + size
    change(last_end, 0)
    return "".join(line + "\n" for line in lines)


# --------------------------------------------------------------------- xp / x
_XP = re.compile(r"^/(\d*)([xduobhwg]{0,2})$")


def parse_format(fmt: str) -> tuple[int, str, int]:
    """``/NFU`` -> (count, format, unit size). Raises ValueError for what is not offered."""
    m = _XP.match(fmt)
    if not m:
        raise ValueError(
            f"format {fmt!r}: use /NFU with F one of x d u o and U one of b h w g "
            "(i, c and s are not offered)"
        )
    letters = m.group(2)
    formats = [ch for ch in letters if ch in "xduo"]
    sizes = [ch for ch in letters if ch in "bhwg"]
    if len(formats) > 1 or len(sizes) > 1:
        raise ValueError(f"format {fmt!r}: one format letter and one size letter at most")
    size = {"b": 1, "h": 2, "w": 4, "g": 8}[sizes[0]] if sizes else 4
    return int(m.group(1) or 1), formats[0] if formats else "x", size


def memory_dump(data: bytes, address: int, fmt: str, size: int) -> str:
    """QEMU's memory_dump text for ``data`` read at ``address`` (lines of 16 bytes, 8 for
    bytes), each line ``ADDRESS: value value ...``."""
    line_size = 8 if size == 1 else 16
    digits = {"o": -(-size * 8 // 3), "x": size * 2}.get(fmt, -(-size * 80 // 33))
    lines = []
    for off in range(0, len(data), line_size):
        chunk = data[off : off + line_size]
        words = []
        for i in range(0, len(chunk) - size + 1, size):
            v = int.from_bytes(chunk[i : i + size], "little")
            if fmt == "d" and size >= 4 and v >> (size * 8 - 1):
                v -= 1 << (size * 8)  # QEMU loads words and giants signed
            if fmt == "x":
                words.append(f"0x{v:0{digits}x}")
            elif fmt == "o":
                words.append(f"{'0' + format(v, 'o') if v else '0':>{digits}}")
            else:
                words.append(f"{v:>{digits}}")
        lines.append(f"{address + off:016x}: " + " ".join(words))
    return "".join(line + "\n" for line in lines)
