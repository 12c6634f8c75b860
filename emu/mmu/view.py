"""Page tables on a terminal: the ranges view, the tree view and an explained walk (rich).

What a teacher projects in class: ``triplefault pt`` and ``triplefault translate`` print these.
Colours mark the rights (writable, user, executable) and the problems (W+X); without a
terminal the same text comes out plain.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import Mapping, MappingDiff, PageWalk, PagingMode, WalkLevel, paging_mode

SIZE_NAMES = {4096: "4K", 2 << 20: "2M", 4 << 20: "4M", 1 << 30: "1G"}
FILTERS = {
    "wx": lambda m: m.writable and m.executable,
    "user": lambda m: m.user,
    "kernel": lambda m: not m.user,
    "nx": lambda m: not m.executable,
    "x": lambda m: m.executable,
    "w": lambda m: m.writable,
    "ro": lambda m: not m.writable,
    "accessed": lambda m: m.accessed,
    "dirty": lambda m: m.dirty,
    "global": lambda m: m.global_,
}


def human(n: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def flags_text(m: Mapping) -> Text:
    t = Text()
    t.append("W" if m.writable else "R", style="bold red" if m.writable else "green")
    t.append("U" if m.user else "S", style="bold yellow" if m.user else "cyan")
    if m.executable:
        t.append("X", style="bold magenta" if m.writable else "magenta")
    else:
        t.append("-", style="dim")
    t.append(" ")
    t.append("G" if m.global_ else "-", style="blue" if m.global_ else "dim")
    t.append("A" if m.accessed else "-", style="white" if m.accessed else "dim")
    t.append("D" if m.dirty else "-", style="white" if m.dirty else "dim")
    if m.writable and m.executable:
        t.append("  W+X", style="bold red")
    return t


def ranges_table(maps: list[Mapping], title: str) -> Table:
    return _table(title, [(None, m) for m in maps])


def diff_title(diff: MappingDiff) -> str:
    n = len(diff.added) + len(diff.removed) + len(diff.changed)
    if not n:
        return "no change"
    return (f"{n} change(s): {len(diff.added)} added, {len(diff.removed)} removed, "
            f"{len(diff.changed)} changed")  # fmt: skip


def diff_rows(diff: MappingDiff) -> list[tuple[str, Mapping]]:
    """The ranges a diff found, in virtual-address order, as a diff prints them: ``+`` added,
    ``-`` removed, a changed range as its ``-`` before row and its ``+`` after row."""
    rows: list[tuple[int, int, str, Mapping]] = []
    rows += [(m.virt, 1, "+", m) for m in diff.added]
    rows += [(m.virt, 0, "-", m) for m in diff.removed]
    for before, after in diff.changed:
        rows += [(before.virt, 0, "-", before), (after.virt, 1, "+", after)]
    return [(sign, m) for _va, _order, sign, m in sorted(rows, key=lambda r: (r[0], r[1]))]


def diff_table(diff: MappingDiff, title: str) -> Table:
    return _table(title, diff_rows(diff))


def _table(title: str, rows: list[tuple[str | None, Mapping]]) -> Table:
    """Ranges as rows of a table; a diff's rows start with their sign."""
    signed = any(sign is not None for sign, _m in rows)
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    if signed:
        table.add_column("", no_wrap=True)
    table.add_column("virtual", no_wrap=True)
    table.add_column("physical", no_wrap=True)
    table.add_column("size", justify="right")
    table.add_column("page", justify="right")
    table.add_column("rights", no_wrap=True)
    for sign, m in rows:
        cells = [Text(sign, style="bold green" if sign == "+" else "bold red")] if signed else []
        table.add_row(
            *cells,
            f"{m.virt:016x}-{m.virt_end - 1:016x}",
            f"{m.phys:010x}",
            human(m.size),
            SIZE_NAMES.get(m.page_size, human(m.page_size)),
            flags_text(m),
        )
    return table


def walk_text(w: PageWalk) -> Text:
    t = Text()
    t.append(f"{w.mode.value}: ", style="bold")
    t.append(f"{w.access} of 0x{w.vaddr:x} at CPL {3 if w.user else 0}\n")
    for lv in w.levels:
        _level_line(t, lv)
    if w.ok:
        t.append("  -> ", style="bold")
        t.append(f"physical 0x{w.paddr:x}", style="bold green")
        rights = (
            ("W" if w.writable else "R")
            + ("U" if w.user_page else "S")
            + ("X" if w.executable else "-")
        )
        t.append(f" ({SIZE_NAMES.get(w.page_size, human(w.page_size))} page, {rights})\n")
    else:
        t.append("  -> ", style="bold")
        code = f" (error code 0x{w.error_code:x})" if w.error_code is not None else ""
        t.append(f"{w.fault}{code}: {w.reason}\n", style="bold red")
    return t


def _level_line(t: Text, lv: WalkLevel) -> None:
    digits = 16 if lv.wide else 8
    t.append(f"  {lv.name:5s}", style="bold cyan")
    t.append(f" table 0x{lv.table:x} [{lv.index:3d}] @0x{lv.entry_address:x} = ")
    t.append(f"0x{lv.raw:0{digits}x}", style="yellow")
    t.append(f"  {lv.flags()}\n")


def tree_text(ram, cr3: int, *, cr0: int, cr4: int, efer: int, max_leaves: int = 16) -> Text:
    """Present entries level by level; runs of leaf entries are folded into one line."""
    import numpy as np

    mode = paging_mode(cr0, cr4, efer)
    t = Text()
    if mode is PagingMode.OFF:
        t.append("paging is off (CR0.PG=0): linear addresses are physical\n")
        return t
    t.append(f"{mode.value}, CR3=0x{cr3:x}\n", style="bold")
    wide = mode is not PagingMode.LEGACY32
    view = ram.view(np.uint64) if wide else ram.view(np.uint32)
    names = mode.level_names
    shifts = {PagingMode.LONG5: (48, 39, 30, 21, 12), PagingMode.LONG4: (39, 30, 21, 12),
              PagingMode.PAE: (30, 21, 12), PagingMode.LEGACY32: (22, 12)}[mode]  # fmt: skip
    top_bit = {PagingMode.LONG5: 56, PagingMode.LONG4: 47}.get(mode)
    mask = ((1 << 40) - 1) & ~0xFFF if wide else 0xFFFFF000
    top = cr3 & (0xFFFFFFE0 if mode is PagingMode.PAE else mask)
    count = 4 if mode is PagingMode.PAE else (512 if wide else 1024)

    def visit(table: int, level: int, va: int, n: int, indent: str) -> None:
        esize = 8 if wide else 4
        if table + n * esize > ram.size:
            t.append(f"{indent}(table 0x{table:x} is outside RAM)\n", style="red")
            return
        entries = [(i, int(view[table // esize + i])) for i in range(n)]
        present = [(i, e) for i, e in entries if e & 1]
        leaf_level = level == len(shifts) - 1
        leaves_shown = 0
        for i, e in present:
            v = va | (i << shifts[level])
            if top_bit is not None and v >> top_bit:
                v |= ((1 << 64) - 1) & ~((1 << top_bit) - 1)  # canonical form
            big = not leaf_level and e & 0x80 and not (mode is PagingMode.PAE and level == 0)
            if not (leaf_level or big):
                t.append(f"{indent}{names[level]}[{i}] ", style="cyan")
                t.append(f"0x{e:x}", style="yellow")
                t.append(f" -> table 0x{e & mask:x}  (va 0x{v:x})\n")
                visit(e & mask, level + 1, v, 512 if wide else 1024, indent + "  ")
                continue
            leaves_shown += 1
            if leaves_shown > max_leaves:
                continue
            size = 1 << shifts[level]
            t.append(f"{indent}{names[level]}[{i}] ", style="cyan")
            t.append(f"0x{e:x}", style="yellow")
            rights = (
                ("W" if e & 2 else "R")
                + ("U" if e & 4 else "S")
                + ("-" if wide and e >> 63 else "X")
            )
            target = e & mask & ~(size - 1)
            t.append(
                f" va 0x{v:x} -> pa 0x{target:x} {SIZE_NAMES.get(size, human(size))} {rights}\n"
            )
        if leaves_shown > max_leaves:
            t.append(f"{indent}... {leaves_shown - max_leaves} more {names[level]}s\n", style="dim")

    visit(top, 0, 0, count, "")
    return t


def console(plain: bool) -> Console:
    return Console(highlight=False, no_color=plain, soft_wrap=True)
