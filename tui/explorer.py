"""The page-table explorer: the paging tree browsed one table at a time from CR3 down, each
present entry with its bits and the linear range it maps, and one address's walk with the index
bits of each level picked out in the address. Read from guest RAM without side effects; no
Textual in here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rich.text import Text

from emu import Machine, mmu
from emu.mmu import PagingMode
from emu.mmu import view as ptview

# per mode: the low bit of each level's index, and the index width
SHIFTS = {PagingMode.LONG5: (48, 39, 30, 21, 12), PagingMode.LONG4: (39, 30, 21, 12),
          PagingMode.PAE: (30, 21, 12), PagingMode.LEGACY32: (22, 12)}  # fmt: skip
LEVEL_STYLES = ("magenta", "cyan", "green", "yellow", "blue")
FLAGS = ((0, "P"), (1, "RW"), (2, "US"), (3, "PWT"), (4, "PCD"), (5, "A"), (6, "D"), (7, "PS"),
         (8, "G"))  # fmt: skip


@dataclass(frozen=True)
class Mark:
    """The page tables' ranges at one point of the run, to diff a later (or earlier) one with."""

    instructions: int
    cr3: int
    mode: PagingMode
    maps: tuple[mmu.Mapping, ...]


@dataclass
class Explorer:
    path: list[int] = field(default_factory=list)  # the entry chosen at each level above
    cursor: int = 0  # the entry selected in the table shown
    address: int | None = None  # the address whose walk is shown
    access: str = "r"  # that walk's access: r, w or x
    user: bool = False  # a user-mode access (CPL 3)
    mark: Mark | None = None  # the point the diff view compares with
    diff: bool = False  # the diff view in front of the tree


@dataclass(frozen=True)
class Geometry:
    mode: PagingMode
    shifts: tuple[int, ...]
    wide: bool

    def entries(self, level: int) -> int:
        if self.mode is PagingMode.PAE and level == 0:
            return 4
        return 512 if self.wide else 1024

    def index_bits(self, level: int) -> int:
        return 2 if self.mode is PagingMode.PAE and level == 0 else (9 if self.wide else 10)

    def canonical(self, va: int) -> int:
        top = {PagingMode.LONG5: 56, PagingMode.LONG4: 47}.get(self.mode)
        if top is not None and va >> top & 1:
            va |= ((1 << 64) - 1) & ~((1 << top) - 1)
        return va


def geometry(machine: Machine) -> Geometry | None:
    c = machine.cpu_state()
    mode = mmu.paging_mode(c.cr0, c.cr4, c.efer)
    if mode is PagingMode.OFF:
        return None
    return Geometry(mode, SHIFTS[mode], mode is not PagingMode.LEGACY32)


def _table(machine: Machine, g: Geometry, level: int, table: int) -> list[int] | None:
    n, size = g.entries(level), 8 if g.wide else 4
    ram = machine.ram
    if table + n * size > ram.size:
        return None
    view = ram[table : table + n * size].view(np.uint64 if g.wide else np.uint32)
    return [int(e) for e in view]


def _target(g: Geometry, entry: int) -> int:
    return entry & ((((1 << 52) - 1) & ~0xFFF) if g.wide else 0xFFFFF000)


def _is_leaf(g: Geometry, level: int, entry: int) -> bool:
    last = level == len(g.shifts) - 1
    big = entry >> 7 & 1 and not (g.mode is PagingMode.PAE and level == 0) and level > 0
    if g.mode is PagingMode.LEGACY32 and level == 0:
        big = bool(entry >> 7 & 1)
    return last or bool(big)


def _flags(entry: int, wide: bool) -> str:
    parts = [n if entry >> b & 1 else n.lower() for b, n in FLAGS]
    if wide:
        parts.append("XD" if entry >> 63 & 1 else "xd")
    return " ".join(parts)


def descend(machine: Machine, ex: Explorer) -> tuple[int, int, int, str | None]:
    """(level, table address, linear base, problem) of the table ``ex.path`` leads to; a path
    that no longer leads anywhere (the tables changed) is cut back to where it still does."""
    g = geometry(machine)
    assert g is not None
    c = machine.cpu_state()
    table = c.cr3 & (0xFFFFFFE0 if g.mode is PagingMode.PAE else ~0xFFF & ((1 << 52) - 1))
    va = 0
    for level, index in enumerate(list(ex.path)):
        entries = _table(machine, g, level, table)
        if entries is None or not entries[index] & 1 or _is_leaf(g, level, entries[index]):
            del ex.path[level:]
            return level, table, va, "the path changed: cut back here"
        va |= index << g.shifts[level]
        table = _target(g, entries[index])
    return len(ex.path), table, va, None


def move(machine: Machine, ex: Explorer, delta: int) -> None:
    """The cursor to the next present entry up or down."""
    g = geometry(machine)
    if g is None:
        return
    level, table, _va, _p = descend(machine, ex)
    entries = _table(machine, g, level, table) or []
    present = [i for i, e in enumerate(entries) if e & 1]
    if not present:
        return
    after = [i for i in present if (i > ex.cursor if delta > 0 else i < ex.cursor)]
    ex.cursor = (after[0] if delta > 0 else after[-1]) if after else ex.cursor


def enter(machine: Machine, ex: Explorer) -> None:
    """Into the table the selected entry points at (a leaf has none)."""
    g = geometry(machine)
    if g is None:
        return
    level, table, _va, _p = descend(machine, ex)
    entries = _table(machine, g, level, table) or []
    if ex.cursor < len(entries):
        e = entries[ex.cursor]
        if e & 1 and not _is_leaf(g, level, e):
            ex.path.append(ex.cursor)
            ex.cursor = -1
            move(machine, ex, 1)  # the first present entry of the table below
            ex.cursor = max(ex.cursor, 0)


def leave(ex: Explorer) -> None:
    if ex.path:
        ex.cursor = ex.path.pop()


def _walk(machine: Machine, ex: Explorer, address: int) -> mmu.PageWalk:
    c = machine.cpu_state()
    return mmu.walk(machine.ram, c.cr3, address, ex.access, cr0=c.cr0, cr4=c.cr4, efer=c.efer,
                    cpl=3 if ex.user else 0)  # fmt: skip


def open_at(
    machine: Machine, ex: Explorer, address: int, access: str = "r", user: bool = False
) -> None:
    """The walk of ``address``, the tree opened along it to the last table it reaches."""
    g = geometry(machine)
    ex.address, ex.access, ex.user = address, access, user
    if g is None:
        return
    w = _walk(machine, ex, address)
    ex.path = [lv.index for lv in w.levels[:-1]]
    ex.cursor = w.levels[-1].index if w.levels else 0


def open_at_fault(machine: Machine, ex: Explorer) -> bool:
    """The walk of the #PF pending or last in the fault trace, with the access its error code
    names (write, instruction fetch, user mode); False if there is none."""
    pending = machine.pending_exception
    found = None
    if pending is not None and pending.vector == 14 and pending.cr2 is not None:
        found = (pending.cr2, pending.error_code or 0)
    else:
        for e in reversed(machine.trace.entries):
            if e.vector == 14 and e.cr2 is not None:
                found = (e.cr2, e.error_code or 0)
                break
    if found is None:
        return False
    cr2, code = found
    open_at(machine, ex, cr2, "x" if code & 0x10 else "w" if code & 2 else "r", bool(code & 4))
    return True


def _ranges(machine: Machine) -> tuple[int, PagingMode, list[mmu.Mapping]]:
    c = machine.cpu_state()
    mode = mmu.paging_mode(c.cr0, c.cr4, c.efer)
    if mode is PagingMode.OFF:
        return c.cr3, mode, []
    return c.cr3, mode, mmu.mappings(machine.ram, c.cr3, cr0=c.cr0, cr4=c.cr4, efer=c.efer)


def mark(machine: Machine, ex: Explorer) -> Mark:
    """Remember the ranges mapped now (paging off: none), for ``diff_text``."""
    cr3, mode, maps = _ranges(machine)
    ex.mark = Mark(machine.instructions, cr3, mode, tuple(maps))
    return ex.mark


def diff_text(machine: Machine, ex: Explorer) -> Text:
    """The ranges added, removed and changed (frame, rights, A/D) from the mark to now."""
    t = Text(no_wrap=True, overflow="crop")
    m = ex.mark
    if m is None:
        t.append("no mark yet: m (or :ptmark) marks this point, d shows what changed since\n")
        return t
    cr3, mode, maps = _ranges(machine)
    t.append(f"from the mark at {m.instructions:,} instructions ({m.mode.value}, CR3 {m.cr3:#x})"
             f"\n  to now at {machine.instructions:,} ({mode.value}, CR3 {cr3:#x})\n",
             style="bold")  # fmt: skip
    diff = mmu.diff_mappings(list(m.maps), maps, accessed_dirty=True)
    t.append(ptview.diff_title(diff) + "  (d: back to the tree, m: mark again)\n", style="dim")
    for sign, r in ptview.diff_rows(diff):
        t.append(f"{sign} ", style="bold green" if sign == "+" else "bold red")
        page = ptview.SIZE_NAMES.get(r.page_size, ptview.human(r.page_size))
        t.append(f"{r.virt:016x}-{r.virt_end - 1:016x}  {r.phys:010x}  "
                 f"{ptview.human(r.size):>5}  {page:>3}  ")  # fmt: skip
        t.append_text(ptview.flags_text(r))
        t.append("\n")
    return t


def address_fields(g: Geometry, address: int) -> Text:
    """The address in binary, each level's index bits in that level's colour."""
    t = Text()
    names = g.mode.level_names
    top = g.shifts[0] + g.index_bits(0)
    bits = f"{address & ((1 << top) - 1):0{top}b}"
    t.append(f"{address:#x} = ", style="bold")
    if top < 64 and g.wide and g.mode is not PagingMode.PAE:
        t.append(f"sign[{63}:{top}] ", style="dim")
    spans: list[tuple[int, int, str, str]] = []
    for level, shift in enumerate(g.shifts):
        width = g.index_bits(level)
        spans.append((shift + width - 1, shift, names[level], LEVEL_STYLES[level]))
    spans.append((g.shifts[-1] - 1, 0, "offset", "bold"))
    for high, low, _name, style in spans:
        field_bits = bits[top - 1 - high : top - low]
        t.append(field_bits, style=f"{style} reverse")
        t.append(" ")
    t.append("\n")
    for high, low, name, style in spans:
        value = address >> low & ((1 << (high - low + 1)) - 1)
        t.append(f"  {name}[{high}:{low}] = {value:#x}", style=style)
        t.append(f" ({value})\n" if name != "offset" else "\n")
    return t


def render(machine: Machine, ex: Explorer, rows: int = 40) -> Text:
    if ex.diff:
        return diff_text(machine, ex)
    g = geometry(machine)
    if g is None:
        return Text("paging is off (CR0.PG=0): there is no page-table tree")
    c = machine.cpu_state()
    t = Text(no_wrap=True, overflow="crop")
    names = g.mode.level_names
    walk = None
    if ex.address is not None:
        walk = _walk(machine, ex, ex.address)
        who = "user" if ex.user else "supervisor"
        t.append(f"{walk.access} of {ex.address:#x} by the {who} ({g.mode.value})\n",
                 style="bold")  # fmt: skip
        t.append_text(address_fields(g, ex.address))
        for level, lv in enumerate(walk.levels):
            failing = not walk.ok and level == len(walk.levels) - 1
            style = "bold red" if failing else LEVEL_STYLES[level % len(LEVEL_STYLES)]
            t.append(f"  {lv.name:5} [{lv.index:4}] = {lv.raw:#018x}  {lv.flags()}", style=style)
            t.append("   <- fails here\n" if failing else "\n", style="bold red")
        if walk.ok:
            size = {1 << 12: "4K", 1 << 21: "2M", 1 << 22: "4M", 1 << 30: "1G"}[walk.page_size]
            t.append(f"  -> physical {walk.paddr:#x} ({size} page)\n", style="bold")
        else:
            t.append(f"  -> {walk.fault}: {walk.reason}\n", style="bold red")
        t.append("\n")
    level, table, va, problem = descend(machine, ex)
    crumbs = [f"CR3 {c.cr3:#x}"] + [f"{names[i]}[{n}]" for i, n in enumerate(ex.path)]
    t.append(" > ".join(crumbs) + f" > {names[level]} table {table:#x}\n", style="bold")
    if problem:
        t.append(problem + "\n", style="yellow")
    entries = _table(machine, g, level, table)
    if entries is None:
        t.append(f"table {table:#x} is outside RAM\n", style="red")
        return t
    on_walk = walk.levels[level].index if walk is not None and level < len(walk.levels) else None
    present = [(i, e) for i, e in enumerate(entries) if e & 1]
    t.append(f"{len(present)} of {len(entries)} entries present (Up/Down, Enter: into, "
             "Backspace: up)\n", style="dim")  # fmt: skip
    span = 1 << g.shifts[level]
    shown = present
    at = next((k for k, (i, _e) in enumerate(shown) if i >= ex.cursor), 0)
    first = max(0, at - rows // 2)
    for i, e in shown[first : first + rows]:
        start = g.canonical(va | i << g.shifts[level])
        leaf = _is_leaf(g, level, e)
        what = f"frame {_target(g, e):#x}" if leaf else f"-> table {_target(g, e):#x}"
        mark = "▶" if i == ex.cursor else ("*" if i == on_walk else " ")
        style = "reverse" if i == ex.cursor else ("bold" if i == on_walk else "")
        t.append(f"{mark}[{i:4}] {e:#018x}  {_flags(e, g.wide)}  "
                 f"{start:#018x}-{start + span - 1:#018x}  {what}\n", style=style)  # fmt: skip
    return t
