"""Addresses to names: ELF symbols and DWARF line tables, read with pyelftools.

Reports, the fault trace and the debugger call ``Symbolizer.describe(addr)`` to turn a RIP into
``malloc+0x1c (kernel/malloc.c:42)``. Everything is read once, lazily, and kept sorted so a
lookup is a binary search. A kernel without symbols or debug info simply gets bare addresses.

Symbols never fail a run: whatever pyelftools raises on a damaged file (it raises more than
ELFError: AssertionError, OverflowError, struct errors...) leaves the names or lines out, with
one note in the log. DWARF is read per compilation unit, and only from sections whose sizes fit
in the file and in ``MAX_DWARF_BYTES``; a line program stops after ``MAX_LINE_ROWS`` rows.
"""

from __future__ import annotations

import bisect
import io
import logging
import os
from dataclasses import dataclass

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

log = logging.getLogger(__name__)

MAX_DWARF_BYTES = 256 << 20  # the .debug_* sections together
MAX_LINE_ROWS = 4_000_000  # rows of all line programs read, in all


@dataclass(frozen=True)
class SourceLine:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class Symbolizer:
    """Symbol and source-line lookup for one ELF file."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._symbols: list[tuple[int, int, str]] | None = None  # (start, size, name)
        self._starts: list[int] = []
        self._lines: list[tuple[int, int, SourceLine | None]] | None = None  # (addr, end, line)
        self._line_addrs: list[int] = []
        # With .debug_aranges only the compilation unit holding an address is decoded (a
        # kernel's whole line table costs tens of milliseconds, a report needs one line).
        self._dwarf = None
        self._aranges = None
        self._cu_lines: dict[int, tuple[list[tuple[int, int, SourceLine | None]], list[int]]] = {}
        self._rows_read = 0
        self._noted: set[str] = set()

    def _note(self, what: str, error: BaseException) -> None:
        """One log line per kind of failure: the names or lines are simply left out."""
        if what not in self._noted:
            self._noted.add(what)
            log.warning("%s: %s left out (%s: %s)", self.path, what, type(error).__name__, error)

    # ------------------------------------------------------------ symbols
    def _load_symbols(self) -> None:
        syms: list[tuple[int, int, str]] = []
        try:
            with open(self.path, "rb") as f:
                elf = ELFFile(f)
                file_size = os.fstat(f.fileno()).st_size
                for section in elf.iter_sections():
                    if not isinstance(section, SymbolTableSection):
                        continue
                    if section["sh_offset"] + section["sh_size"] > file_size:
                        raise ValueError(f"{section.name} runs past the end of the file")
                    for sym in section.iter_symbols():
                        kind = sym["st_info"]["type"]
                        if kind not in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE") or not sym.name:
                            continue
                        if sym["st_shndx"] in ("SHN_UNDEF", "SHN_ABS") or sym.name.startswith("."):
                            continue
                        syms.append((sym["st_value"], sym["st_size"], sym.name))
        except OSError as e:
            log.info("no symbols from %s: %s", self.path, e)
        except Exception as e:  # noqa: BLE001 - a damaged symbol table must not fail a run
            self._note("symbols", e)
        # Prefer sized symbols (functions, objects) over labels at the same address.
        syms.sort(key=lambda s: (s[0], s[1] == 0, s[2]))
        dedup: list[tuple[int, int, str]] = []
        for s in syms:
            if dedup and dedup[-1][0] == s[0]:
                continue
            dedup.append(s)
        self._symbols = dedup
        self._starts = [s[0] for s in dedup]
        # every name, also the labels deduplicated above (they share an address with another)
        self._addresses: dict[str, int] = {}
        for start, _size, name in syms:
            self._addresses.setdefault(name, start)

    def symbol(self, address: int) -> tuple[str, int] | None:
        """(name, offset) of the symbol containing ``address``, or None."""
        if self._symbols is None:
            self._load_symbols()
        assert self._symbols is not None
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        start, size, name = self._symbols[i]
        offset = address - start
        if size and offset >= size:
            return None
        if not size and offset > 0x10000:  # a bare label far away says nothing useful
            return None
        return name, offset

    def address_of(self, name: str) -> int | None:
        if self._symbols is None:
            self._load_symbols()
        return self._addresses.get(name)

    # ------------------------------------------------------------ lines
    def _open_dwarf(self):
        if self._dwarf is None:
            self._dwarf = False
            try:
                with open(self.path, "rb") as f:
                    data = f.read()
                elf = ELFFile(io.BytesIO(data))
                if elf.has_dwarf_info() and self._dwarf_fits(elf, len(data)):
                    self._dwarf = elf.get_dwarf_info()
                    self._aranges = self._dwarf.get_aranges()
            except OSError as e:
                log.info("no line table from %s: %s", self.path, e)
            except Exception as e:  # noqa: BLE001 - damaged DWARF must not fail a run
                self._dwarf = False
                self._note("source lines", e)
        return self._dwarf or None

    def _dwarf_fits(self, elf: ELFFile, file_size: int) -> bool:
        """The .debug_* sections lie inside the file and are not absurdly large."""
        total = 0
        for section in elf.iter_sections():
            if not section.name.startswith((".debug_", ".zdebug_")):
                continue
            size, offset = section["sh_size"], section["sh_offset"]
            if section["sh_type"] != "SHT_NOBITS" and offset + size > file_size:
                self._note(
                    "source lines", ValueError(f"{section.name} runs past the end of the file")
                )
                return False
            total += size
        if total > MAX_DWARF_BYTES:
            self._note("source lines", ValueError(f"{total} bytes of DWARF"))
            return False
        return True

    def _load_lines(self) -> None:
        """Every compilation unit's rows (when .debug_aranges cannot name the unit)."""
        rows: list[tuple[int, int, SourceLine | None]] = []
        dwarf = self._open_dwarf()
        try:
            for cu in dwarf.iter_CUs() if dwarf else ():
                prog = dwarf.line_program_for_CU(cu)
                if prog is not None:
                    rows.extend(self._rows(prog))
        except Exception as e:  # noqa: BLE001 - damaged DWARF must not fail a run
            self._note("source lines", e)
        rows.sort(key=lambda r: r[0])
        self._lines = rows
        self._line_addrs = [r[0] for r in rows]

    def _unit_lines(self, address: int):
        """The rows of the compilation unit .debug_aranges says holds ``address``, or None."""
        dwarf = self._open_dwarf()
        if dwarf is None or self._aranges is None:
            return None
        try:
            offset = self._aranges.cu_offset_at_addr(address)
            if offset is None:
                return None
            if offset not in self._cu_lines:
                prog = dwarf.line_program_for_CU(dwarf.get_CU_at(offset))
                rows = sorted(self._rows(prog), key=lambda r: r[0]) if prog is not None else []
                self._cu_lines[offset] = (rows, [r[0] for r in rows])
            return self._cu_lines[offset]
        except Exception as e:  # noqa: BLE001 - damaged DWARF must not fail a run
            self._note("source lines", e)
            return None

    def _rows(self, prog) -> list[tuple[int, int, SourceLine | None]]:
        header = prog.header
        version = header["version"]
        files = header["file_entry"]
        dirs = header["include_directory"]

        def name_of(index: int) -> str:
            # DWARF 5 numbers files from 0, earlier versions from 1.
            i = index if version >= 5 else index - 1
            if not 0 <= i < len(files):
                return "?"
            entry = files[i]
            fname = entry.name.decode(errors="replace")
            d = entry.dir_index if version >= 5 else entry.dir_index - 1
            if fname.startswith("/") or not 0 <= d < len(dirs):
                return fname
            directory = dirs[d].decode(errors="replace")
            return fname if directory in (".", "") else os.path.normpath(f"{directory}/{fname}")

        out: list[tuple[int, int, SourceLine | None]] = []
        prev = None
        for entry in prog.get_entries():
            self._rows_read += 1
            if self._rows_read > MAX_LINE_ROWS:
                raise ValueError(f"more than {MAX_LINE_ROWS:,} line-table rows")
            state = entry.state
            if state is None:
                continue
            if prev is not None:
                out.append((prev.address, state.address, SourceLine(name_of(prev.file), prev.line)))
            prev = None if state.end_sequence else state
        return out

    def source_line(self, address: int) -> SourceLine | None:
        unit = self._unit_lines(address) if self._lines is None else None
        if unit is not None:
            found = self._find(unit[0], unit[1], address)
            if found is not None:
                return found
        if self._lines is None:
            self._load_lines()
        assert self._lines is not None
        return self._find(self._lines, self._line_addrs, address)

    @staticmethod
    def _find(lines, addrs: list[int], address: int) -> SourceLine | None:
        i = bisect.bisect_right(addrs, address) - 1
        # Several rows can start at the same address; take the last that covers it.
        while i >= 0:
            start, end, line = lines[i]
            if start <= address < end:
                return line
            if start < address and end <= address:
                break
            i -= 1
        return None

    def describe(self, address: int) -> str:
        """'name+0xoff (file:line)', or just the hex address when nothing is known."""
        parts = [f"0x{address:x}"]
        sym = self.symbol(address)
        if sym is not None:
            name, off = sym
            parts.append(f"<{name}+0x{off:x}>" if off else f"<{name}>")
        line = self.source_line(address)
        if line is not None:
            parts.append(f"({line})")
        return " ".join(parts)
