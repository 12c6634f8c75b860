"""Pictures of walks and trees (emu/mmu/picture.py, `translate`/`pt --svg/--png`), read back as
data: the SVG is parsed and its fields, entries, flags, frame and fault checked."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emu import mmu
from emu.mmu import picture

ROOT = Path(__file__).resolve().parent.parent
NS = "{http://www.w3.org/2000/svg}"
LONG = {"cr0": 0x80010011, "cr4": 0x20, "efer": 0xD00}  # PG, WP; PAE; LME, LMA, NXE


def _ram() -> np.ndarray:
    """PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000; PTE 5 maps 0x9000 RW, PTE 6 is
    read-only and no-execute; PDE 1 is a 2M page at 0x200000; PML4E 1 is absent."""
    ram = np.zeros(1 << 22, np.uint8)
    q = ram.view(np.uint64)
    q[0x1000 // 8], q[0x2000 // 8], q[0x3000 // 8] = 0x2003, 0x3003, 0x4003
    q[0x3000 // 8 + 1] = 0x200000 | 0x83
    q[0x4000 // 8 + 5] = 0x9000 | 0x3
    q[0x4000 // 8 + 6] = 0xA000 | 0x1 | 1 << 63
    return ram


def _svg(drawing) -> ET.Element:
    return ET.fromstring(drawing.as_svg())


def _groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{NS}g") if g.get("class") == cls]


def _texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{NS}text")]


def _fields(root: ET.Element) -> list[tuple[str, int, int, int, str]]:
    return [(g.get("data-name"), int(g.get("data-high")), int(g.get("data-low")),
             int(g.get("data-value")), g.get("data-state")) for g in _groups(root, "field")]  # fmt: skip


def test_a_4k_walk_is_drawn_field_by_field() -> None:
    va = 0x5123
    w = mmu.walk(_ram(), 0x1000, va, "w", **LONG)
    root = _svg(picture.walk_drawing(w, 0x1000, "a test"))
    assert _fields(root) == [("sign", 63, 48, 0, "sign"), ("PML4", 47, 39, 0, "index"),
                             ("PDPT", 38, 30, 0, "index"), ("PD", 29, 21, 0, "index"),
                             ("PT", 20, 12, 5, "index"), ("offset", 11, 0, 0x123, "offset")]  # fmt: skip
    pt_field = next(g for g in _groups(root, "field") if g.get("data-name") == "PT")
    assert "000000101" in _texts(pt_field)  # the index bits themselves
    tables = _groups(root, "table")
    assert [(t.get("data-level"), t.get("data-table"), t.get("data-index"), t.get("data-state"))
            for t in tables] == [("PML4E", "0x1000", "0", "ok"), ("PDPTE", "0x2000", "0", "ok"),
                                 ("PDE", "0x3000", "0", "ok"), ("PTE", "0x4000", "5", "ok")]  # fmt: skip
    assert tables[3].get("data-entry") == "0x9003" and tables[3].get("data-flags") == "P RW"
    flags = {f.get("data-name"): f.get("data-set") for f in tables[3] if f.get("class") == "flag"}
    assert flags == {"P": "1", "RW": "1", "US": "0", "PWT": "0", "PCD": "0", "A": "0", "D": "0",
                     "PS": "0", "G": "0", "XD": "0"}  # fmt: skip
    assert "[5] 0x0000000000009003" in _texts(tables[3])
    (frame,) = _groups(root, "frame")
    assert frame.get("data-physical") == "0x9123" and frame.get("data-page-size") == "4K"
    assert "= physical 0x9123" in _texts(frame)
    assert not _groups(root, "fault")
    assert len([p for p in root.iter(f"{NS}path") if p.get("class") == "arrow"]) == 5
    assert "4-level paging: write of 0x5123 at CPL 0" in _texts(root)


def test_a_big_page_takes_the_lower_fields_as_its_offset() -> None:
    w = mmu.walk(_ram(), 0x1000, 0x2ABCDE, "r", **LONG)
    root = _svg(picture.walk_drawing(w, 0x1000))
    assert _fields(root)[-2:] == [("PD", 29, 21, 1, "index"), ("offset", 20, 0, 0xABCDE, "offset")]
    states = [(t.get("data-level"), t.get("data-state")) for t in _groups(root, "table")]
    assert states[-1] == ("PTE", "unreached")
    assert "none: a 2M page" in _texts(root)
    (frame,) = _groups(root, "frame")
    assert frame.get("data-frame") == "0x200000" and frame.get("data-physical") == "0x2abcde"


@pytest.mark.parametrize(
    "va,access,level,code,reason",
    [
        (0x6000, "w", "PTE", "0x3", "PTE.RW=0 and CR0.WP=1 on a supervisor write"),
        (0x6000, "x", "PTE", "0x11", "no-execute page"),
        (0x8000000000, "r", "PML4E", "0x0", "PML4E[1] not present"),
        (0x7000, "r", "PTE", "0x0", "PTE[7] not present"),
    ],
)
def test_a_fault_is_drawn_where_it_happens(va, access, level, code, reason) -> None:
    w = mmu.walk(_ram(), 0x1000, va, access, **LONG)
    assert not w.ok
    root = _svg(picture.walk_drawing(w, 0x1000))
    (fault,) = _groups(root, "fault")
    assert fault.get("data-level") == level and fault.get("data-error-code") == code
    assert reason in fault.get("data-reason")
    assert "#PF page fault" in _texts(fault) and f"error code {code}" in _texts(fault)
    states = {t.get("data-level"): t.get("data-state") for t in _groups(root, "table")}
    names = ["PML4E", "PDPTE", "PDE", "PTE"]
    failing = names.index(level)
    assert states == {n: ("ok" if i < failing else "fault" if i == failing else "unreached")
                      for i, n in enumerate(names)}  # fmt: skip
    assert not _groups(root, "frame")
    # the fields below the failing level and the offset were never used
    unreached = [name for name, *_r, state in _fields(root) if state == "unreached"]
    assert unreached == [*["PML4", "PDPT", "PD", "PT"][failing + 1 :], "offset"]


def test_non_canonical_and_paging_off() -> None:
    w = mmu.walk(_ram(), 0x1000, 0x0000800000000000, "r", **LONG)
    root = _svg(picture.walk_drawing(w, 0x1000))
    assert _fields(root)[0] == ("sign", 63, 48, 0, "unreached")
    (fault,) = _groups(root, "fault")
    assert fault.get("data-kind") == "non-canonical" and "not canonical" in fault.get("data-reason")
    w = mmu.walk(_ram(), 0, 0x1234, "r", cr0=0x11, cr4=0, efer=0)
    root = _svg(picture.walk_drawing(w, 0))
    (frame,) = _groups(root, "frame")
    assert frame.get("data-physical") == "0x1234" and "paging off: read of 0x1234" in _texts(root)


def test_32_bit_and_pae_fields() -> None:
    ram = np.zeros(1 << 20, np.uint8)
    d = ram.view(np.uint32)
    d[0x1000 // 4 + 1] = 0x2003  # PDE 1 -> PT 0x2000
    d[0x2000 // 4 + 3] = 0x7003  # PTE 3 -> 0x7000
    w = mmu.walk(ram, 0x1000, 0x403ABC, "r", cr0=0x80000011, cr4=0, efer=0)
    assert w.ok
    root = _svg(picture.walk_drawing(w, 0x1000))
    assert _fields(root) == [("PD", 31, 22, 1, "index"), ("PT", 21, 12, 3, "index"),
                             ("offset", 11, 0, 0xABC, "offset")]  # fmt: skip
    assert [t.get("data-entry") for t in _groups(root, "table")] == ["0x2003", "0x7003"]
    w = mmu.walk(ram, 0x1000, 0xC0000000, "r", cr0=0x80000011, cr4=0x20, efer=0)  # PAE
    root = _svg(picture.walk_drawing(w, 0x1000))
    assert _fields(root)[0] == ("PDPT", 31, 30, 3, "index")
    assert _groups(root, "fault")[0].get("data-level") == "PDPTE"


def test_the_tree_picture_and_png(tmp_path) -> None:
    ram = _ram()
    maps = mmu.mappings(ram, 0x1000, **LONG)
    root = _svg(picture.tree_drawing(ram, 0x1000, mmu.PagingMode.LONG4, maps, "t"))
    tables = [(t.get("data-level"), t.get("data-table"), t.get("data-present"))
              for t in _groups(root, "table")]  # fmt: skip
    assert tables == [("PML4E", "0x1000", "1"), ("PDPTE", "0x2000", "1"), ("PDE", "0x3000", "2")]
    entries = [(e.get("data-level"), e.get("data-index"), e.get("data-kind"), e.get("data-start"))
               for e in _groups(root, "entry")]  # fmt: skip
    assert entries == [("PML4E", "0", "table", "0x0"), ("PDPTE", "0", "table", "0x0"),
                       ("PDE", "0", "table", "0x0"), ("PDE", "1", "leaf", "0x200000")]  # fmt: skip
    ranges = [(r.get("data-start"), r.get("data-end"), r.get("data-rights"))
              for r in _groups(root, "range")]  # fmt: skip
    assert ranges == [(f"0x{m.virt:x}", f"0x{m.virt_end - 1:x}", m.rights().upper()) for m in maps]
    assert len(ranges) == 3  # 0x5000 RW, 0x6000 read-only NX, the 2M page
    picture.save(picture.walk_drawing(mmu.walk(ram, 0x1000, 0x5000, "r", **LONG), 0x1000),
                 svg=tmp_path / "w.svg", png=tmp_path / "w.png")  # fmt: skip
    svg = ET.parse(tmp_path / "w.svg").getroot()
    with Image.open(tmp_path / "w.png") as png:
        assert png.format == "PNG"
        assert png.size == (2 * int(svg.get("width")), 2 * int(svg.get("height")))
        colours = png.convert("RGB").getcolors(1 << 20)
        assert colours is not None and len(colours) > 20  # drawn, not blank


# ---------------------------------------------------------------------- through the CLI
def triplefault(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emu", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=180)  # fmt: skip


@pytest.mark.images
def test_translate_and_pt_draw_the_paging_kernel(image, tmp_path) -> None:
    image("paging")
    svg, png = tmp_path / "walk.svg", tmp_path / "walk.png"
    p = triplefault("translate", "paging", "0x40001008", "--access", "write", "--at",
                    "paging_ready", "--plain", "--svg", svg, "--png", png)  # fmt: skip
    assert p.returncode == 1, p.stderr  # the walk faults, as without a picture
    assert "PTE.RW=0 and CR0.WP=1" in p.stdout and f"wrote {svg}" in p.stderr
    root = ET.parse(svg).getroot()
    (fault,) = _groups(root, "fault")
    assert fault.get("data-level") == "PTE" and fault.get("data-error-code") == "0x3"
    pte = [t for t in _groups(root, "table") if t.get("data-level") == "PTE"][0]
    assert pte.get("data-entry") == "0x8000000000601001" and pte.get("data-state") == "fault"
    assert "paging, at paging_ready (0x100180), after 7,561 instructions" in _texts(root)
    with Image.open(png) as picture_file:
        assert picture_file.format == "PNG"
    tree = tmp_path / "tree.svg"
    p = triplefault("pt", "paging", "--at", "paging_ready", "--plain", "--svg", tree)
    assert p.returncode == 0, p.stderr
    root = ET.parse(tree).getroot()
    assert [t.get("data-table") for t in _groups(root, "table")] == [
        "0x107000", "0x106000", "0x105000", "0x104000", "0x10a000"]  # fmt: skip
    assert len(_groups(root, "range")) == 9  # as `pt` lists them


@pytest.mark.images
def test_bad_picture_requests_get_one_line(image, tmp_path) -> None:
    image("paging")
    image("hello")
    for args, expected in [
        (("translate", "paging", "0x1000", "--svg", tmp_path / "nowhere" / "w.svg"),
         "--svg "),
        (("pt", "paging", "--png", tmp_path / "no" / "t.png"), "--png "),
        (("pt", "paging", "--png", tmp_path), f"--png {tmp_path}: Is a directory"),
        (("pt", "hello", "--after", "1", "--svg", tmp_path / "t.svg"),
         "paging is off (CR0.PG=0) there: no tree to draw"),
        (("translate", "paging", str(1 << 64)), "is not an address: 0 to 2^64-1"),
        (("pt", "paging", "--diff", "paging_ready", "--svg", tmp_path / "d.svg"),
         "not with --diff"),
    ]:  # fmt: skip
        p = triplefault(*args)
        assert p.returncode == 2, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert lines[-1].startswith("triplefault: error: ") and expected in lines[-1], lines
        assert "Traceback" not in p.stderr
    assert not (tmp_path / "t.svg").exists()


def test_the_tree_picture_of_32_bit_paging() -> None:
    """One level above the page tables: the page directory, a 4M page and a page table."""
    ram = np.zeros(1 << 20, np.uint8)
    d = ram.view(np.uint32)
    d[0x1000 // 4 + 1] = 0x2003  # PDE 1 -> the page table at 0x2000
    d[0x1000 // 4 + 2] = 0x00800000 | 0x87  # PDE 2: a 4M user page
    d[0x2000 // 4 + 3] = 0x7003  # PTE 3 -> 0x7000
    regs = {"cr0": 0x80000011, "cr4": 0x10, "efer": 0}  # PG, PSE
    maps = mmu.mappings(ram, 0x1000, **regs)
    root = _svg(picture.tree_drawing(ram, 0x1000, mmu.PagingMode.LEGACY32, maps))
    assert [(t.get("data-level"), t.get("data-present")) for t in _groups(root, "table")] == [
        ("PDE", "2")]  # fmt: skip
    assert [(e.get("data-index"), e.get("data-kind"), e.get("data-start"), e.get("data-end"))
            for e in _groups(root, "entry")] == [("1", "table", "0x400000", "0x7fffff"),
                                                 ("2", "leaf", "0x800000", "0xbfffff")]  # fmt: skip
    assert [(r.get("data-start"), r.get("data-rights")) for r in _groups(root, "range")] == [
        ("0x403000", "WSX"), ("0x800000", "WUX")]  # fmt: skip
    assert len([p for p in root.iter(f"{NS}path") if p.get("class") == "link"]) == 2
