"""What the debugger's panes show, as Rich text, computed from a machine without side effects:
registers, disassembly, memory, the stack, breakpoints, source lines, page tables. Kept apart
from the Textual app so each can be rendered and tested on its own."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from rich.text import Text

from emu import Machine, mmu
from emu.core.cpu_state import CpuState

FLAG_NAMES = ((0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"),
              (10, "DF"), (11, "OF"), (14, "NT"), (16, "RF"), (17, "VM"), (18, "AC"))  # fmt: skip
# a direct branch: capstone writes its target as one hex immediate
BRANCH = re.compile(r"^(call|jmp|j[a-z]{1,3}|loop[a-z]*|jrcxz|jecxz|jcxz)\s+(0x[0-9a-f]+)$")
MAX_FUNCTION_BYTES = 0x2000  # decode from a symbol's start when RIP is this close to it


def registers_text(c: CpuState, instructions: int, where: str, columns: int = 88) -> Text:
    """The registers, as many general registers to a row as ``columns`` holds."""
    t = Text()
    t.append(f"{c.mode} CPL{c.cpl}  ", style="bold")
    t.append(f"RIP {c.rip:#x}", style="bold yellow")
    t.append(f"  {where}\n")
    flags = " ".join(name for bit, name in FLAG_NAMES if c.rflags >> bit & 1)
    t.append(f"RFLAGS {c.rflags:#x} [{flags}]   instructions {instructions:,}\n")
    names = list(c.gpr)
    per_row = max(2, min(4, (columns + 2) // 22))
    for i in range(0, len(names), per_row):
        row = names[i : i + per_row]
        t.append("  ".join(f"{n.upper():>3} {c.gpr[n]:016x}" for n in row) + "\n")
    segs = "  ".join(f"{k.upper()} {v.selector:04x}" for k, v in c.segments.items())
    t.append(segs + "\n")
    t.append(f"CR0 {c.cr0:#x}  CR2 {c.cr2:#x}  CR3 {c.cr3:#x}  CR4 {c.cr4:#x}  EFER {c.efer:#x}\n")
    t.append(f"GDTR {c.gdtr[0]:#x}/{c.gdtr[1]:#x}  IDTR {c.idtr[0]:#x}/{c.idtr[1]:#x}")
    return t


def symbolize_operands(machine: Machine, text: str) -> str:
    """``call 0x101770`` -> ``call 0x101770 <vga_puts>``: direct branch targets by name."""
    sym = machine.symbolizer
    m = BRANCH.match(text)
    if sym is None or m is None:
        return text
    named = sym.symbol(int(m.group(2), 16))
    if named is None:
        return text
    name, off = named
    return f"{text} <{name}+{off:#x}>" if off else f"{text} <{name}>"


def disassembly_rows(
    machine: Machine, c: CpuState, top: int | None, rows: int
) -> list[tuple[int, bytes, str]]:
    """``rows`` decoded instructions in the CPU's current mode: from ``top``, or (None) around
    RIP with RIP about a third of the way down. Before RIP, the instructions are decoded from
    the start of the function that holds it, so they are the real instruction boundaries."""
    core = machine.core
    bits = c.code_bits
    if top is not None:
        return core.disassemble(top, bits, rows)
    before = max(0, min(8, rows // 3))
    sym = machine.symbolizer
    named = sym.symbol(c.rip) if sym is not None else None
    if named is not None and 0 < named[1] <= MAX_FUNCTION_BYTES and before:
        start = c.rip - named[1]
        found = core.disassemble(start, bits, named[1] + rows)
        at = next((i for i, r in enumerate(found) if r[0] == c.rip), None)
        if at is not None:
            first = max(0, at - before)
            found = found[first : first + rows]
            if len(found) < rows:
                found += core.disassemble(found[-1][0] + len(found[-1][1]), bits, rows)[1:]
            return found[:rows]
    return core.disassemble(c.rip, bits, rows)


def disassembly_text(machine: Machine, c: CpuState, rows: int = 40, top: int | None = None) -> Text:
    t = Text(no_wrap=True, overflow="crop")
    try:
        found = disassembly_rows(machine, c, top, rows)
    except Exception as e:  # noqa: BLE001 - unreadable memory is shown, not raised
        return Text(f"cannot read code at {top if top is not None else c.rip:#x}: {e}", style="red")
    if not found:
        return Text(
            f"no instruction decodes at {top if top is not None else c.rip:#x}", style="red"
        )
    breakpoints = set(machine.core.breakpoints)
    sym = machine.symbolizer
    t.append(f"{c.code_bits}-bit code\n", style="dim")
    for address, raw, text in found:
        if sym is not None:
            label = sym.symbol(address)
            if label is not None and label[1] == 0:
                t.append(f"<{label[0]}>:\n", style="bold cyan")
        mark = "●" if address in breakpoints else " "
        arrow = "▶" if address == c.rip else " "
        style = "bold yellow" if address == c.rip else ("dim" if address < c.rip else "")
        t.append(f"{mark}{arrow} {address:#x}  {raw.hex(' '):<24.24} ", style=style)
        t.append(symbolize_operands(machine, text) + "\n", style=style)
    return t


def memory_row_bytes(columns: int) -> int:
    """Bytes per memory row that fit ``columns``: 16, 8 or 4 (an address, the hex, ASCII)."""
    return next((n for n in (16, 8) if 19 + 4 * n <= columns), 4)


def memory_text(
    machine: Machine, address: int, size: int, before: bytes | None, per_row: int = 16
) -> Text:
    """Hex and ASCII at a linear address through the page tables (no A/D bits set), ``per_row``
    bytes a row; bytes that differ from ``before`` (the same range at the previous stop) are
    highlighted."""
    data = machine.read_linear(address, size)
    where = machine.symbolizer.describe(address) if machine.symbolizer else f"{address:#x}"
    t = Text(f"{size} bytes at linear {where}\n", style="bold")
    if not data:
        t.append("not mapped (the walk fails: try walk ADDR)", style="red")
        return t
    changed_style = "bold reverse red"
    ascii_at = 19 + 3 * per_row  # after the address, the hex and two spaces
    for off in range(0, len(data), per_row):
        chunk = data[off : off + per_row]
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        row = f"{address + off:016x}  {chunk.hex(' '):<{3 * per_row - 1}}  {ascii_}\n"
        at = len(t)
        t.append(row)
        if before is None:
            continue
        old = before[off : off + per_row]
        for i, b in enumerate(chunk):
            if i < len(old) and old[i] != b:
                t.stylize(changed_style, at + 18 + 3 * i, at + 20 + 3 * i)
                t.stylize(changed_style, at + ascii_at + i, at + ascii_at + i + 1)
    if len(data) < size:
        t.append(f"(stops at {address + len(data):#x}: not mapped)", style="red")
    return t


def _word(data: bytes, at: int, width: int) -> int | None:
    if at + width > len(data):
        return None
    return int.from_bytes(data[at : at + width], "little")


def stack_text(machine: Machine, c: CpuState, slots: int = 32) -> Text:
    """The raw stack from RSP, each slot that points at a symbol named, return addresses (a
    call just before them) marked, then the frames found by following the RBP chain."""
    width = 8 if c.code_bits == 64 else 4
    sp = c.gpr["rsp"] if width == 8 else c.gpr["rsp"] & 0xFFFFFFFF
    bp = c.gpr["rbp"] if width == 8 else c.gpr["rbp"] & 0xFFFFFFFF
    sym = machine.symbolizer
    t = Text(f"stack at {sp:#x} ({width * 8}-bit slots)\n", style="bold", no_wrap=True,
             overflow="crop")  # fmt: skip
    data = machine.read_linear(sp, slots * width)
    if not data:
        t.append("not mapped", style="red")
        return t
    for i in range(len(data) // width):
        value = _word(data, i * width, width)
        assert value is not None
        address = sp + i * width
        note, style = "", "dim"
        named = sym.symbol(value) if sym is not None and value else None
        if named is not None:
            note = f"<{named[0]}+{named[1]:#x}>" if named[1] else f"<{named[0]}>"
            if named[1] and after_a_call(machine, value):
                note, style = f"return to {note}", "cyan"
        if address == bp:
            note = (note + "  <- rbp").strip()
        t.append(f"{address:#018x}  {value:0{width * 2}x}  ")
        t.append(note + "\n", style=style)
    frames = frames_by_rbp(machine, bp, width)
    t.append("frames (RBP chain)\n", style="bold")
    t.append(f"  #0 {sym.describe(c.rip) if sym else hex(c.rip)}\n")
    if not frames:
        t.append("  no frame pointer chain at RBP\n", style="dim")
    for n, (frame, ret) in enumerate(frames, 1):
        t.append(f"  #{n} {sym.describe(ret) if sym else hex(ret)}  (frame {frame:#x})\n")
    return t


def after_a_call(machine: Machine, address: int) -> bool:
    """Whether the bytes before ``address`` end with a call (E8 rel32, or FF /2 through a
    register or memory, with or without a REX prefix): then it is a return address."""
    code = machine.read_linear(address - 7, 7) if address >= 7 else b""
    if len(code) < 7:
        return False
    if code[2] == 0xE8:
        return True
    for n in (2, 3, 4, 6, 7):
        at = 7 - n
        if code[at] == 0xFF and (code[at + 1] >> 3) & 7 == 2:
            return True
    return False


def frames_by_rbp(machine: Machine, bp: int, width: int, limit: int = 16) -> list[tuple[int, int]]:
    """(frame, return address) up the saved-RBP chain while it climbs the stack and each return
    address lies in a named function."""
    sym = machine.symbolizer
    out: list[tuple[int, int]] = []
    for _ in range(limit):
        if bp == 0:
            break
        data = machine.read_linear(bp, 2 * width)
        saved, ret = _word(data, 0, width), _word(data, width, width)
        if saved is None or ret is None:
            break
        if sym is None or sym.symbol(ret) is None:
            break
        out.append((bp, ret))
        if saved <= bp:
            break
        bp = saved
    return out


def breakpoints_text(machine: Machine) -> Text:
    sym = machine.symbolizer
    t = Text()
    bps = machine.core.breakpoints
    wps = machine.watchpoints
    if not bps and not wps:
        return Text("no breakpoints or watchpoints (b at RIP, :break, :watch)", style="dim")
    for n, address in enumerate(bps, 1):
        t.append(f"#{n:<3} break  {sym.describe(address) if sym else hex(address)}\n")
    for n, (address, size, kind) in enumerate(wps, len(bps) + 1):
        where = sym.describe(address) if sym else hex(address)
        t.append(f"#{n:<3} watch  {kind:<2} {size} byte(s) at {where}\n")
    t.append("(:delete #N, :delete ADDR|SYMBOL or :delete all)", style="dim")
    return t


@dataclass
class SourceView:
    """A window of one source file, the line of interest marked."""

    path: str | None  # the file found on disk, or None
    name: str  # as the DWARF line table names it
    line: int
    at_rip: bool


def find_source(kernel: str, name: str) -> str | None:
    """The file a DWARF line names: absolute, or relative to the ELF's folder or one of its
    parents (the compilation directory of a build that maps its prefix to ".", as the bundled
    images do), or to the working directory."""
    if os.path.isabs(name):
        return name if os.path.isfile(name) else None
    here = os.path.dirname(os.path.abspath(kernel)) if kernel else os.getcwd()
    for _ in range(4):
        candidate = os.path.join(here, name)
        if os.path.isfile(candidate):
            return candidate
        here = os.path.dirname(here)
    return name if os.path.isfile(name) else None


def source_text(view: SourceView | None, rows: int) -> Text:
    if view is None:
        return Text("no source line for RIP (no DWARF line here)", style="dim")
    if view.path is None:
        return Text(f"{view.name}:{view.line} (file not found)", style="yellow")
    try:
        with open(view.path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        return Text(f"{view.name}: {e.strerror}", style="red")
    first = max(1, view.line - rows // 3)
    t = Text(f"{view.name}:{view.line}{'' if view.at_rip else '  (list: back to RIP)'}\n",
             style="bold", no_wrap=True, overflow="crop")  # fmt: skip
    for n in range(first, min(len(lines), first + rows - 1) + 1):
        mark = "▶" if n == view.line else " "
        style = "bold yellow" if n == view.line else ""
        t.append(f"{mark}{n:5} {lines[n - 1]}\n", style=style)
    return t


def walk_text(machine: Machine, vaddr: int) -> Text:
    """Every paging level of one translation, explained (no side effects)."""
    c = machine.cpu_state()
    mode = mmu.paging_mode(c.cr0, c.cr4, c.efer)
    if mode is mmu.PagingMode.OFF:
        return Text(
            f"paging is off (CR0.PG=0): no page walk; linear {vaddr:#x} is physical "
            f"{vaddr & 0xFFFFFFFF:#x}"
        )
    w = mmu.walk(machine.ram, c.cr3, vaddr, "r", cr0=c.cr0, cr4=c.cr4, efer=c.efer, cpl=c.cpl)
    return Text(w.explain(), style="" if w.ok else "red")
