"""Pictures of paging for slides and students: one walk, and the top of a tree (SVG, PNG).

``walk_drawing`` draws a ``PageWalk`` as a row of columns: the address cut into its fields
(sign extension, one index per level, the offset), under each index the table it selects an
entry of, that entry with its flags, an arrow to the next level, and last the frame plus the
offset (or the fault, drawn at the level where the walk stopped). ``tree_drawing`` draws every
table above the page tables, each present entry with the linear range it covers, and the merged
ranges (``mappings()``) those entries lead to.

Drawn with drawsvg (SVG as a document of shapes; no layout engine needed, since the pictures
are grids); PNG through CairoSVG, which drawsvg uses for rasterizing. Every shape that carries
meaning is in a group with a ``class`` and ``data-*`` attributes (the field, the level, the
index, the entry, the fault) so that tools and tests read the picture as data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import drawsvg as dw
import numpy as np

from . import Mapping, PageWalk, PagingMode
from .layout import MAXPHYADDR
from .view import human

FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
CHAR = 0.6  # a monospace character's width, in font sizes
LEVEL_COLOURS = ("#8e44ad", "#2471a3", "#1e8449", "#b9770e", "#a93226")  # per level, top first
LEVEL_FILLS = ("#f4ecf7", "#eaf2f8", "#e9f7ef", "#fef5e7", "#fdedec")
GREY, FAULT, OK = "#909497", "#c0392b", "#1e8449"
TABLE_NAMES = {"PML5E": "PML5", "PML4E": "PML4", "PDPTE": "PDPT", "PDE": "page directory",
               "PTE": "page table"}  # fmt: skip
FIELD_NAMES = {"PML5E": "PML5", "PML4E": "PML4", "PDPTE": "PDPT", "PDE": "PD", "PTE": "PT"}
FLAG_BITS = ((0, "P"), (1, "RW"), (2, "US"), (3, "PWT"), (4, "PCD"), (5, "A"), (6, "D"),
             (7, "PS"), (8, "G"), (63, "XD"))  # fmt: skip
SIZE_NAMES = {4096: "4K", 2 << 20: "2M", 4 << 20: "4M", 1 << 30: "1G"}
# per mode: the low bit of each level's index, and the top bit of the linear address
SHIFTS = {PagingMode.LONG5: (48, 39, 30, 21, 12), PagingMode.LONG4: (39, 30, 21, 12),
          PagingMode.PAE: (30, 21, 12), PagingMode.LEGACY32: (22, 12)}  # fmt: skip
TOP_BIT = {PagingMode.LONG5: 57, PagingMode.LONG4: 48, PagingMode.PAE: 32,
           PagingMode.LEGACY32: 32}  # fmt: skip


def save(drawing: dw.Drawing, svg: str | Path | None = None, png: str | Path | None = None) -> None:
    """Write the drawing as SVG and/or PNG (twice the SVG's size, for slides)."""
    if svg is not None:
        Path(svg).write_text(drawing.as_svg())
    if png is not None:
        import cairosvg

        # into memory first: cairo's own file writing reports a failure by a status number
        pixels = cairosvg.svg2png(bytestring=drawing.as_svg().encode(), scale=2.0,
                                  background_color="white")  # fmt: skip
        Path(png).write_bytes(pixels)


def _text(x: float, y: float, s: str, size: float = 13, **kw) -> dw.Text:
    return dw.Text(s, size, x, y, **kw)


def _canvas(width: float, height: float, headline: str, title: str) -> dw.Drawing:
    """A white page with the headline and, under it in grey, the title."""
    d = dw.Drawing(width, height, font_family=FONT)
    d.append(dw.Rectangle(0, 0, width, height, fill="white"))
    d.append(_text(MARGIN, 30, headline, 18, font_weight="bold", class_="headline"))
    if title:
        d.append(_text(MARGIN, 52, title, 13, fill=GREY))
    return d


def _arrow_marker(colour: str) -> dw.Marker:
    m = dw.Marker(-0.1, -0.5, 0.9, 0.5, scale=7, orient="auto")
    m.append(dw.Lines(-0.1, -0.5, -0.1, 0.5, 0.9, 0, fill=colour, close=True))
    return m


# ----------------------------------------------------------------------- one walk


@dataclass(frozen=True)
class Field:
    """A bit field of the linear address: ``state`` is "sign", "index", "offset" or
    "unreached" (an index or offset the walk never got to)."""

    name: str
    high: int
    low: int
    value: int
    state: str

    @property
    def bits(self) -> str:
        return f"{self.value:0{self.high - self.low + 1}b}"


def address_fields(w: PageWalk) -> list[Field]:
    """The fields of ``w.vaddr`` as this walk used them: a big page's offset takes the bits of
    the levels below its leaf; after a fault, the levels below are "unreached"."""
    mode, va = w.mode, w.vaddr
    shifts = SHIFTS[mode]
    names = mode.level_names
    top = TOP_BIT[mode]
    fields: list[Field] = []

    def cut(high: int, low: int) -> int:
        return va >> low & ((1 << (high - low + 1)) - 1)

    if mode in (PagingMode.LONG4, PagingMode.LONG5):
        sign_bad = w.fault == "non-canonical"
        fields.append(Field("sign", 63, top, cut(63, top), "unreached" if sign_bad else "sign"))
    used = len(w.levels)
    leaf_low = 12 if not w.ok else w.page_size.bit_length() - 1
    for level, low in enumerate(shifts):
        high = (shifts[level - 1] if level else top) - 1
        if w.ok and low < leaf_low:
            break  # a big page: these bits are the offset
        state = "index" if level < used else "unreached"
        fields.append(Field(FIELD_NAMES[names[level]], high, low, cut(high, low), state))
    offset_state = "offset" if w.ok else "unreached"
    fields.append(Field("offset", leaf_low - 1, 0, cut(leaf_low - 1, 0), offset_state))
    return fields


COL_W, COL_GAP, MARGIN = 260, 56, 24
FIELD_Y, FIELD_H = 78, 84
TABLE_Y = 200
ROW_H = 19


def walk_drawing(w: PageWalk, cr3: int, title: str = "") -> dw.Drawing:
    """The walk of ``w`` (from ``mmu.walk``) from ``cr3`` as a picture; ``title`` goes on top
    (say, the kernel and the point of its run)."""
    if w.mode is PagingMode.OFF:
        return _paging_off(w, title)
    fields = address_fields(w)
    sign = 1 if fields[0].name == "sign" else 0
    levels = w.mode.level_names
    # columns: CR3 (under the sign field, if any), one per level, the frame or the fault
    columns = 1 + len(levels) + 1
    width = 2 * MARGIN + columns * COL_W + (columns - 1) * COL_GAP
    who = "implicit supervisor" if w.implicit else f"CPL {w.cpl}"
    d = _canvas(width, 560, f"{w.mode.value}: {w.access} of 0x{w.vaddr:x} at {who}", title)

    def col_x(i: int) -> float:
        return MARGIN + i * (COL_W + COL_GAP)

    # the fields, each above its column
    by_column: dict[int, Field] = {}
    if sign:
        by_column[0] = fields[0]
    index_fields = [f for f in fields[sign:] if f.name != "offset"]
    for i, f in enumerate(index_fields):
        by_column[1 + i] = f
    by_column[columns - 1] = fields[-1]
    for col, f in by_column.items():
        level = col - 1
        colour = LEVEL_COLOURS[level] if 0 <= level < len(levels) and f.state == "index" else None
        _field_box(d, col_x(col), f, colour)

    # CR3
    x0 = col_x(0)
    g = dw.Group(class_="cr3", data_value=f"0x{cr3:x}")
    g.append(dw.Rectangle(x0, TABLE_Y, COL_W, 92, rx=6, fill="#f2f3f4", stroke="black"))
    g.append(_text(x0 + 12, TABLE_Y + 26, "CR3", 15, font_weight="bold"))
    g.append(_text(x0 + 12, TABLE_Y + 50, f"0x{cr3:x}", 14))
    top_name = TABLE_NAMES[levels[0]]
    g.append(_text(x0 + 12, TABLE_Y + 74, f"physical address of the {top_name}", 11, fill=GREY))
    d.append(g)
    arrow_from = (x0 + COL_W, TABLE_Y + 46)

    black = _arrow_marker("black")
    red = _arrow_marker(FAULT)
    for level, name in enumerate(levels):
        x = col_x(1 + level)
        if level >= len(w.levels):
            why = f"none: a {SIZE_NAMES.get(w.page_size, '')} page" if w.ok else "not reached"
            _unreached_table(d, x, TABLE_NAMES[name], name, why)
            continue
        lv = w.levels[level]
        failing = not w.ok and level == len(w.levels) - 1
        entries = 4 if w.mode is PagingMode.PAE and level == 0 else (512 if lv.wide else 1024)
        row_y = _table_box(d, x, lv, entries, LEVEL_COLOURS[level], LEVEL_FILLS[level],
                           failing, len(w.levels) - 1 == level)  # fmt: skip
        _connect(d, arrow_from, (x, TABLE_Y + 14), black)
        arrow_from = (x + COL_W, row_y)
    xr = col_x(columns - 1)
    if w.ok:
        _frame_box(d, xr, w, fields[-1])
        _connect(d, arrow_from, (xr, TABLE_Y + 14), black)
    else:
        _fault_box(d, xr, w)
        if w.levels:
            _connect(d, arrow_from, (xr, TABLE_Y + 14), red, colour=FAULT)
    return d


def _field_box(d: dw.Drawing, x: float, f: Field, colour: str | None) -> None:
    unreached = f.state == "unreached"
    stroke = colour or (GREY if unreached else "black")
    fill = "white" if unreached else ("#f8f9f9" if colour is None else "white")
    g = dw.Group(class_="field", data_name=f.name, data_high=f.high, data_low=f.low,
                 data_value=f.value, data_state=f.state)  # fmt: skip
    g.append(dw.Rectangle(x, FIELD_Y, COL_W, FIELD_H, rx=4, fill=fill, stroke=stroke,
                          stroke_width=2 if colour else 1,
                          stroke_dasharray="5,4" if unreached else None))  # fmt: skip
    label = {"sign": "sign extension", "offset": "offset"}.get(f.name, f"{f.name} index")
    ink = GREY if unreached else (colour or "black")
    g.append(_text(x + 10, FIELD_Y + 20, f"{label}  bits {f.high}:{f.low}", 13, fill=ink,
                   font_weight="bold"))  # fmt: skip
    bits = f.bits
    size = min(13.0, (COL_W - 20) / (CHAR * len(bits)))
    g.append(_text(x + 10, FIELD_Y + 44, bits, size, fill=ink, class_="bits"))
    if f.name == "sign":
        value = f"= 0x{f.value:x} (copies of bit {f.low - 1})"
    elif f.name == "offset":
        value = f"= 0x{f.value:x} into the page"
    else:
        value = f"= {f.value} (0x{f.value:x})"
    if unreached:
        value += ", not used" if f.name != "sign" else ", not canonical"
    g.append(_text(x + 10, FIELD_Y + 68, value, 13, fill=FAULT if f.name == "sign" and unreached
                   else ink))  # fmt: skip
    d.append(g)


def _flags_of(raw: int, wide: bool) -> list[tuple[str, bool]]:
    return [(n, bool(raw >> b & 1)) for b, n in FLAG_BITS if wide or b < 32]


def _table_box(d: dw.Drawing, x: float, lv, entries: int, colour: str, fill: str,
               failing: bool, last: bool) -> float:  # fmt: skip
    """A table of ``entries`` with the entry the walk used; returns the y of that entry's row."""
    flags = " ".join(name for name, on in _flags_of(lv.raw, lv.wide) if on)
    state = "fault" if failing else "ok"
    g = dw.Group(class_="table", data_level=lv.name, data_table=f"0x{lv.table:x}",
                 data_index=lv.index, data_entry=f"0x{lv.raw:x}", data_flags=flags,
                 data_state=state)  # fmt: skip
    stroke = FAULT if failing else colour
    height = 300
    g.append(dw.Rectangle(x, TABLE_Y, COL_W, height, rx=6, fill=fill, stroke=stroke,
                          stroke_width=3 if failing else 1.5))  # fmt: skip
    g.append(_text(x + 12, TABLE_Y + 22, TABLE_NAMES[lv.name], 15, font_weight="bold",
                   fill=colour))  # fmt: skip
    g.append(_text(x + 12, TABLE_Y + 42, f"table at 0x{lv.table:x}", 12))
    rows = []
    if lv.index > 0:
        rows += [(0, None)] + ([("…", None)] if lv.index > 1 else [])
    rows.append((lv.index, lv.raw))
    if lv.index < entries - 1:
        rows += ([("…", None)] if lv.index < entries - 2 else []) + [(entries - 1, None)]
    y = TABLE_Y + 58
    row_y = y
    digits = 16 if lv.wide else 8
    for index, raw in rows:
        if raw is None:
            label = "  ..." if index == "…" else f"[{index}]"
            g.append(_text(x + 12, y + 14, label, 12, fill=GREY))
        else:
            row_y = y + ROW_H / 2
            g.append(dw.Rectangle(x + 4, y, COL_W - 8, ROW_H + 2, fill="white",
                                  stroke=FAULT if failing else colour, stroke_width=2))  # fmt: skip
            g.append(_text(x + 10, y + 15, f"[{index}] 0x{raw:0{digits}x}", 12.5,
                           font_weight="bold", fill=FAULT if failing else "black",
                           class_="entry"))  # fmt: skip
        y += ROW_H + 3
    g.append(_text(x + 12, y + 12, f"entry at 0x{lv.entry_address:x}", 11, fill=GREY))
    y += 22
    chip_w, chip_h = 46, 20
    for k, (name, on) in enumerate(_flags_of(lv.raw, lv.wide)):
        cx = x + 10 + (k % 5) * (chip_w + 2)
        cy = y + (k // 5) * (chip_h + 4)
        chip = dw.Group(class_="flag", data_name=name, data_set=int(on))
        chip.append(dw.Rectangle(cx, cy, chip_w, chip_h, rx=3,
                                 fill=colour if on else "white",
                                 stroke=colour if on else GREY))  # fmt: skip
        chip.append(_text(cx + chip_w / 2, cy + 14, name if on else name.lower(), 12,
                          text_anchor="middle", fill="white" if on else GREY,
                          font_weight="bold" if on else "normal"))  # fmt: skip
        g.append(chip)
    y += 2 * (chip_h + 4) + 10
    if failing:
        what = "✗ the walk stops here"
        ink = FAULT
    elif last:
        size = _leaf_size(lv)
        what = f"→ {size} frame 0x{lv.raw & _frame_mask(lv) & ~(_page_bytes(size) - 1):x}"
        ink = "black"
    else:
        what = f"→ next table 0x{lv.target():x}"
        ink = "black"
    g.append(_text(x + 12, y + 12, what, 12.5, fill=ink, font_weight="bold"))
    d.append(g)
    return row_y


def _frame_mask(lv) -> int:
    return ((1 << MAXPHYADDR) - 1) & ~0xFFF if lv.wide else 0xFFFFF000


def _leaf_size(lv) -> str:
    if lv.name == "PTE":
        return "4K"
    if lv.name == "PDPTE":
        return "1G"
    return "2M" if lv.wide else "4M"


def _page_bytes(size: str) -> int:
    return {"4K": 1 << 12, "2M": 1 << 21, "4M": 1 << 22, "1G": 1 << 30}[size]


def _unreached_table(d: dw.Drawing, x: float, title: str, name: str, why: str) -> None:
    g = dw.Group(class_="table", data_level=name, data_state="unreached")
    g.append(dw.Rectangle(x, TABLE_Y, COL_W, 80, rx=6, fill="white", stroke=GREY,
                          stroke_dasharray="5,4"))  # fmt: skip
    g.append(_text(x + 12, TABLE_Y + 26, title, 15, fill=GREY))
    g.append(_text(x + 12, TABLE_Y + 50, why, 12, fill=GREY))
    d.append(g)


def _frame_box(d: dw.Drawing, x: float, w: PageWalk, offset: Field) -> None:
    assert w.paddr is not None
    size = SIZE_NAMES.get(w.page_size, hex(w.page_size))
    frame = w.paddr & ~(w.page_size - 1)
    g = dw.Group(class_="frame", data_physical=f"0x{w.paddr:x}", data_frame=f"0x{frame:x}",
                 data_page_size=size, data_rights=w.rights())  # fmt: skip
    g.append(dw.Rectangle(x, TABLE_Y, COL_W, 170, rx=6, fill="#e9f7ef", stroke=OK,
                          stroke_width=2))  # fmt: skip
    g.append(_text(x + 12, TABLE_Y + 24, f"{size} page frame", 15, font_weight="bold", fill=OK))
    g.append(_text(x + 12, TABLE_Y + 48, f"0x{frame:x}", 14))
    g.append(_text(x + 12, TABLE_Y + 72, f"+ offset 0x{offset.value:x}", 14))
    g.append(dw.Line(x + 12, TABLE_Y + 82, x + COL_W - 12, TABLE_Y + 82, stroke=OK))
    g.append(_text(x + 12, TABLE_Y + 104, f"= physical 0x{w.paddr:x}", 14, font_weight="bold",
                   fill=OK, class_="physical"))  # fmt: skip
    g.append(_text(x + 12, TABLE_Y + 128, f"rights {w.rights()}", 13))
    if not w.in_ram:
        g.append(_text(x + 12, TABLE_Y + 152, "beyond guest RAM", 12, fill=FAULT))
    d.append(g)


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def _fault_box(d: dw.Drawing, x: float, w: PageWalk) -> None:
    failing = w.levels[-1].name if w.levels else "address"
    if w.fault == "page-fault":
        title, code = "#PF page fault", f"error code 0x{w.error_code:x}"
    else:
        title, code = "#GP (#SS on the stack)", "no walk: not canonical"
    g = dw.Group(class_="fault", data_level=failing, data_kind=w.fault or "",
                 data_error_code="" if w.error_code is None else f"0x{w.error_code:x}",
                 data_reason=w.reason)  # fmt: skip
    lines = _wrap(w.reason, int((COL_W - 24) / (CHAR * 12)))
    height = 82 + 17 * len(lines)
    g.append(dw.Rectangle(x, TABLE_Y, COL_W, height, rx=6, fill="#fdedec", stroke=FAULT,
                          stroke_width=3))  # fmt: skip
    g.append(_text(x + 12, TABLE_Y + 24, title, 15, font_weight="bold", fill=FAULT))
    g.append(_text(x + 12, TABLE_Y + 48, code, 13, fill=FAULT))
    for k, line in enumerate(lines):
        g.append(_text(x + 12, TABLE_Y + 74 + 17 * k, line, 12, class_="reason"))
    d.append(g)


def _connect(d: dw.Drawing, a: tuple[float, float], b: tuple[float, float], marker,
             colour: str = "black") -> None:  # fmt: skip
    (x1, y1), (x2, y2) = a, b
    mid = (x1 + x2) / 2
    d.append(dw.Path(stroke=colour, stroke_width=2, fill="none", marker_end=marker,
                     class_="arrow").M(x1, y1).C(mid, y1, mid, y2, x2 - 6, y2))  # fmt: skip


def _paging_off(w: PageWalk, title: str) -> dw.Drawing:
    width = 640
    d = _canvas(width, 170, f"paging off: {w.access} of 0x{w.vaddr:x}", title)
    g = dw.Group(class_="frame", data_physical=f"0x{w.vaddr:x}")
    g.append(dw.Rectangle(MARGIN, 72, width - 2 * MARGIN, 70, rx=6, fill="#f2f3f4",
                          stroke="black"))  # fmt: skip
    g.append(_text(MARGIN + 12, 100, "CR0.PG=0: no page tables, no walk", 14))
    g.append(_text(MARGIN + 12, 126, f"linear 0x{w.vaddr:x} = physical 0x{w.vaddr:x}", 14,
                   font_weight="bold"))  # fmt: skip
    d.append(g)
    return d


# ----------------------------------------------------------------------- the tree's top

TREE_ROWS = 12  # entries drawn per table; the rest are counted
TREE_TABLES = 6  # tables drawn per level; the rest are counted
RANGE_ROWS = 28  # merged ranges drawn


@dataclass
class _Table:
    level: int
    address: int
    va: int  # the linear address its entry 0 maps
    parent: tuple[int, int] | None  # (table number in the level above, row) that points here
    rows: list[tuple[int, int, str]]  # (index, entry, kind: "table", "leaf")
    present: int = 0


def _entries(ram: np.ndarray, mode: PagingMode, level: int, table: int) -> list[int] | None:
    wide = mode.wide
    n = 4 if mode is PagingMode.PAE and level == 0 else (512 if wide else 1024)
    size = 8 if wide else 4
    if table + n * size > ram.size:
        return None
    return [int(e) for e in ram[table : table + n * size].view(np.uint64 if wide else np.uint32)]


def _leaf(mode: PagingMode, level: int, entry: int) -> bool:
    if level == len(SHIFTS[mode]) - 1:
        return True
    if mode is PagingMode.PAE and level == 0:
        return False
    if mode is PagingMode.LEGACY32:
        return bool(entry >> 7 & 1)
    return level > 0 and bool(entry >> 7 & 1)


def _canonical(mode: PagingMode, va: int) -> int:
    top = {PagingMode.LONG5: 56, PagingMode.LONG4: 47}.get(mode)
    if top is not None and va >> top & 1:
        va |= ((1 << 64) - 1) & ~((1 << top) - 1)
    return va


def tree_drawing(ram: np.ndarray, cr3: int, mode: PagingMode, maps: list[Mapping],
                 title: str = "") -> dw.Drawing:  # fmt: skip
    """Every table above the page tables of the tree at ``cr3`` (at most TREE_TABLES per level,
    TREE_ROWS present entries each), each entry with its linear range, and ``maps`` (from
    ``mappings()``) in a last column, linked from the entries they lie under."""
    shifts = SHIFTS[mode]
    depth = max(1, len(shifts) - 1)  # the page tables themselves are the ranges column
    wide = mode.wide
    mask = ((1 << MAXPHYADDR) - 1) & ~0xFFF if wide else 0xFFFFF000
    top = cr3 & (0xFFFFFFE0 if mode is PagingMode.PAE else mask)
    names = mode.level_names
    columns: list[list[_Table]] = [[] for _ in range(depth)]
    hidden = [0] * depth
    missing: list[str] = []

    def read(level: int, address: int, va: int, parent) -> None:
        if len(columns[level]) >= TREE_TABLES:
            hidden[level] += 1
            return
        entries = _entries(ram, mode, level, address)
        if entries is None:
            missing.append(f"{TABLE_NAMES[names[level]]} 0x{address:x} is outside RAM")
            return
        present = [(i, e) for i, e in enumerate(entries) if e & 1]
        t = _Table(level, address, va, parent, [], len(present))
        columns[level].append(t)
        number = len(columns[level]) - 1
        for i, e in present[:TREE_ROWS]:
            kind = "leaf" if _leaf(mode, level, e) else "table"
            t.rows.append((i, e, kind))
        for row, (i, e, kind) in enumerate(t.rows):
            if kind == "table" and level + 1 < depth:
                read(level + 1, e & mask, va | i << shifts[level], (number, row))

    read(0, top, 0, None)

    col_w, gap, row_h = 330, 70, 17
    table_x = [MARGIN + 170 + (col_w + gap) * k for k in range(depth)]
    range_x = table_x[-1] + col_w + gap
    range_w = 480
    width = range_x + range_w + MARGIN
    y_top = 80

    # lay the tables out: each column stacks its tables
    layout: dict[tuple[int, int], tuple[float, float]] = {}  # (level, n) -> (y, height)
    row_pos: dict[tuple[int, int, int], float] = {}  # (level, n, row) -> y of the row's middle
    heights = []
    for level, tables in enumerate(columns):
        y = y_top
        for n, t in enumerate(tables):
            h = 48 + row_h * (len(t.rows) + (1 if t.present > len(t.rows) else 0)) + 8
            layout[(level, n)] = (y, h)
            y += h + 18
        heights.append(y + (22 if hidden[level] else 0))
    shown_maps = maps[:RANGE_ROWS]
    range_h = 26 + 20 * (len(shown_maps) + (1 if len(maps) > RANGE_ROWS else 0))
    height = int(max([*heights, y_top + range_h + 20, y_top + 120]) + 30 + 18 * len(missing))
    d = _canvas(width, height, f"{mode.value}, CR3=0x{cr3:x}: the top of the tree", title)
    black = _arrow_marker("black")
    grey = _arrow_marker(GREY)

    g = dw.Group(class_="cr3", data_value=f"0x{cr3:x}")
    g.append(dw.Rectangle(MARGIN, y_top, 140, 56, rx=6, fill="#f2f3f4", stroke="black"))
    g.append(_text(MARGIN + 10, y_top + 22, "CR3", 14, font_weight="bold"))
    g.append(_text(MARGIN + 10, y_top + 42, f"0x{cr3:x}", 13))
    d.append(g)
    entry_points: list[tuple[float, float, int, int]] = []  # (x, y, va start, va end)
    for level, tables in enumerate(columns):
        colour, fill = LEVEL_COLOURS[level], LEVEL_FILLS[level]
        span = 1 << shifts[level]
        x = table_x[level]
        for n, t in enumerate(tables):
            y, h = layout[(level, n)]
            name = names[level]
            g = dw.Group(class_="table", data_level=name, data_table=f"0x{t.address:x}",
                         data_present=t.present)  # fmt: skip
            g.append(dw.Rectangle(x, y, col_w, h, rx=6, fill=fill, stroke=colour))
            g.append(_text(x + 10, y + 20, f"{TABLE_NAMES[name]} at 0x{t.address:x}", 13.5,
                           font_weight="bold", fill=colour))  # fmt: skip
            total = 4 if mode is PagingMode.PAE and level == 0 else (512 if wide else 1024)
            g.append(_text(x + 10, y + 38, f"{t.present} of {total} entries present", 11.5,
                           fill=GREY))  # fmt: skip
            for row, (i, e, kind) in enumerate(t.rows):
                ry = y + 48 + row_h * row
                start = _canonical(mode, t.va | i << shifts[level])
                end = start + span - 1
                if kind == "leaf":
                    size = SIZE_NAMES.get(span, hex(span))
                    rights = ("W" if e & 2 else "R") + ("U" if e & 4 else "S") + (
                        "-" if wide and e >> 63 & 1 else "X")  # fmt: skip
                    what = f"{size} page {rights}"
                else:
                    what = f"→ 0x{e & mask:x}"
                label = f"[{i:3}] {start:#x} {what}"
                r = dw.Group(class_="entry", data_level=name, data_index=i,
                             data_entry=f"0x{e:x}", data_kind=kind, data_start=f"0x{start:x}",
                             data_end=f"0x{end:x}")  # fmt: skip
                r.append(_text(x + 10, ry + 13, label, 11.5,
                               font_weight="bold" if kind == "leaf" else "normal"))  # fmt: skip
                g.append(r)
                if level == depth - 1:  # (a leaf above says its range itself)
                    entry_points.append((x + col_w, ry + 8, start, end))
                row_pos[(level, n, row)] = ry + 8
            if t.present > len(t.rows):
                ry = y + 48 + row_h * len(t.rows)
                g.append(_text(x + 10, ry + 13, f"… {t.present - len(t.rows)} more present", 11.5,
                               fill=GREY))  # fmt: skip
            d.append(g)
            if t.parent is None:
                _connect(d, (MARGIN + 140, y_top + 28), (x, y + 16), black)
            else:
                pn, prow = t.parent
                _connect(d, (table_x[level - 1] + col_w, row_pos[(level - 1, pn, prow)]),
                         (x, y + 16), black)  # fmt: skip
        if hidden[level]:
            y = heights[level] - 22
            d.append(_text(x + 10, y, f"… {hidden[level]} more tables", 12, fill=GREY))

    # the merged ranges
    g = dw.Group(class_="ranges", data_count=len(maps))
    g.append(dw.Rectangle(range_x, y_top, range_w, range_h, rx=6, fill="#fbfcfc",
                          stroke="black"))  # fmt: skip
    g.append(_text(range_x + 10, y_top + 18, f"{len(maps)} mapped range(s)", 13,
                   font_weight="bold"))  # fmt: skip
    range_y: list[float] = []
    for k, m in enumerate(shown_maps):
        ry = y_top + 26 + 20 * k
        rights = m.rights().upper()
        ad = ("G" if m.global_ else "-") + ("A" if m.accessed else "-") + ("D" if m.dirty else "-")
        ink = FAULT if m.writable and m.executable else ("#b9770e" if m.user else "black")
        row = dw.Group(class_="range", data_start=f"0x{m.virt:x}", data_end=f"0x{m.virt_end - 1:x}",
                       data_physical=f"0x{m.phys:x}", data_rights=rights)  # fmt: skip
        row.append(_text(range_x + 10, ry + 14,
                         f"{m.virt:016x}-{m.virt_end - 1:016x} → {m.phys:010x} "
                         f"{human(m.size):>5} {rights} {ad}",
                         11.5, fill=ink))  # fmt: skip
        g.append(row)
        range_y.append(ry + 9)
    if len(maps) > RANGE_ROWS:
        ry = y_top + 26 + 20 * len(shown_maps)
        g.append(_text(range_x + 10, ry + 14, f"… {len(maps) - RANGE_ROWS} more", 11.5,
                       fill=GREY))  # fmt: skip
    d.append(g)
    linked: set[int] = set()
    for x, y, start, end in entry_points:
        k = next((k for k, m in enumerate(shown_maps) if m.virt_end > start and m.virt <= end),
                 None)  # fmt: skip
        if k is not None and k not in linked:  # one link per range: the first entry under it
            linked.add(k)
            d.append(dw.Path(stroke=GREY, stroke_width=1, fill="none", marker_end=grey,
                             class_="link", opacity=0.7)
                     .M(x, y).C((x + range_x) / 2, y, (x + range_x) / 2, range_y[k],
                                range_x - 5, range_y[k]))  # fmt: skip
    for k, text in enumerate(missing):
        d.append(_text(MARGIN, height - 20 - 18 * k, text, 12, fill=FAULT))
    return d
