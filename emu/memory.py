"""The physical address space: what answers at each physical address (the memory twin of the
port bus).

A PC's physical addresses are not all RAM. Under QEMU 7.2's pc machine (measured with
images/probe-openbus and images/probe-bios, docs/platform.md):

- RAM from 0 to 640 KiB and from 1 MiB to the end of memory;
- the VGA window 0xA0000-0xBFFFF: in text mode only 0xB8000-0xBFFFF (the cells) is decoded, the
  rest reads all-ones and ignores writes;
- ROM in 0xC0000-0xFFFFF (the video BIOS and the system BIOS, which SeaBIOS leaves read-only:
  writes are dropped; between them two stretches of RAM SeaBIOS and QEMU use), and the 256 KiB
  BIOS flash at 0xFFFC0000-0xFFFFFFFF;
- device memory (a linear framebuffer) and MMIO registers owned by devices;
- everything else is unassigned: reads return 0, writes are dropped, and nothing stops. Page
  walks through unassigned memory read zeros (not present).

Guest RAM and the legacy ROM area are one host buffer (``ram``), so every reader sees the same
bytes; Unicorn is given it in pieces. ROM is read-only for the guest because our TLB-fill hook
never grants write access to a ROM page: a write is sent to a sink page instead
(emu/mmu/kernels.py). Unassigned space is mapped as MMIO with a Python handler, which notes
each access (the report shows them). ``strict=True`` leaves it unmapped: an access there stops
the run, as before this model existed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .errors import ConfigError

log = logging.getLogger(__name__)

# QEMU 7.2, pc machine: an unassigned physical read returns 0 at every size (probe-openbus).
UNASSIGNED_READ_VALUE = 0
MAXPHYADDR = 40  # physical address bits of the CPU (CPUID 0x80000008): the space's end
PHYS_END = 1 << MAXPHYADDR
# A page outside the physical address space that absorbs writes to ROM (never read).
SINK_PAGE = PHYS_END
HOLE_PIECE = 1 << 28  # unassigned space below 4 GiB is mapped in aligned pieces of this size

VGA_WINDOW = 0xA0000
VGA_TEXT = 0xB8000

# How many accesses to unassigned memory the report keeps, and how many distinct pages are
# remembered (for "noted once"): a guest that sweeps the whole space is counted, not stored.
KEEP_ACCESSES = 8
KEEP_PAGES = 4096


class MmioDevice(Protocol):
    def mem_read(self, offset: int, size: int) -> int: ...

    def mem_write(self, offset: int, size: int, value: int) -> None: ...


@dataclass(frozen=True)
class Region:
    base: int
    size: int
    kind: str  # "ram", "rom", "device" (host buffer), "mmio" (a device's handlers)
    name: str
    buffer: np.ndarray | None = field(default=None, repr=False, compare=False)
    device: MmioDevice | None = field(default=None, repr=False, compare=False)
    # C entry points instead of the device's Python handlers: (read callback, its user data,
    # write callback, its user data), as uc_mmio_map takes them (a compiled write hook)
    native: tuple[int, int, int, int] | None = field(default=None, repr=False, compare=False)

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass(frozen=True)
class UnassignedAccess:
    """One access to physical memory where nothing is."""

    address: int
    write: bool
    size: int
    value: int  # written, or read back (0)
    rip: int  # the instruction that made it (exact when the engine could say)
    icount: int

    def to_dict(self) -> dict:
        return {"address": self.address, "write": self.write, "size": self.size,
                "value": self.value, "rip": self.rip, "instructions": self.icount}  # fmt: skip


@dataclass
class UnassignedLog:
    """What the guest did to unassigned memory: counts, the first accesses, the pages."""

    reads: int = 0
    writes: int = 0
    first: list[UnassignedAccess] = field(default_factory=list)
    pages: set[int] = field(default_factory=set)
    more_pages: int = 0  # distinct pages beyond KEEP_PAGES (not remembered)

    @property
    def count(self) -> int:
        return self.reads + self.writes

    def page_count(self) -> int:
        return len(self.pages) + self.more_pages

    def copy(self) -> UnassignedLog:
        return UnassignedLog(self.reads, self.writes, list(self.first), set(self.pages),
                             self.more_pages)  # fmt: skip


class PhysicalMemory:
    """The regions of one machine's physical address space, installed into one engine.

    >>> ram = np.zeros(2 << 20, np.uint8)
    >>> pm = PhysicalMemory.pc(ram)
    >>> [(hex(r.base), r.kind) for r in pm.regions][:4]
    [('0x0', 'ram'), ('0xb8000', 'ram'), ('0xc0000', 'rom'), ('0xca000', 'ram')]
    """

    def __init__(self, ram: np.ndarray, *, strict: bool = False) -> None:
        if ram.dtype != np.uint8 or ram.ndim != 1 or not ram.flags.c_contiguous:
            raise ConfigError("guest RAM must be one contiguous uint8 buffer")
        self.ram = ram
        self.strict = strict
        self.regions: list[Region] = []
        self.unassigned = UnassignedLog()
        # Set by the engine: (the access) -> None, called for every unassigned access.
        self.on_unassigned: Callable[[UnassignedAccess], None] | None = None
        # The checkpoints' dirty-page tracker (emu/dirty_pages.py), told of every host write
        # and of every buffer mapped; None: nothing is tracked.
        self.pages = None
        # accesses to device registers through Python (fast-forward: a loop that made one
        # is not skipped)
        self.device_accesses = 0
        self._installed = None

    # ---------------------------------------------------------------- the map
    @classmethod
    def pc(cls, ram: np.ndarray, *, strict: bool = False) -> PhysicalMemory:
        """QEMU's pc machine for this RAM (firmware/pc_bios.py, measured): RAM, the ROMs, the
        upper-memory RAM SeaBIOS uses, the VGA text cells; the VGA device adds the rest of its
        window when it is wired; the machine adds the local APIC and the I/O APIC. The MMIO ranges
        of devices not modelled yet (the VGA BARs without a framebuffer) are unassigned."""
        from firmware import pc_bios

        pm = cls(ram, strict=strict)
        for r in pc_bios.physical_address_map(ram.size):
            if r.kind == "ram":
                pm.add_ram(r.base, r.end - r.base, r.name)
            elif r.kind == "rom":
                inside = r.end <= ram.size
                buffer = ram[r.base : r.end] if inside else np.zeros(r.end - r.base, np.uint8)
                pm.add_rom(r.base, buffer, r.name)
            elif r.kind == "mmio" and r.base == VGA_WINDOW:
                pm.add_ram(VGA_TEXT, r.end - VGA_TEXT, "VGA text memory")
        return pm

    def _add(self, region: Region) -> Region:
        if region.size <= 0 or region.base < 0 or region.end > PHYS_END:
            raise ConfigError(
                f"{region.name}: 0x{region.base:x}+0x{region.size:x} is not a range of the "
                f"{MAXPHYADDR}-bit physical address space"
            )
        if region.base & 0xFFF or region.size & 0xFFF:
            raise ConfigError(
                f"{region.name}: 0x{region.base:x}+0x{region.size:x} is not page aligned"
            )
        for other in self.regions:
            if region.base < other.end and other.base < region.end:
                raise ConfigError(
                    f"{region.name} at 0x{region.base:x}-0x{region.end - 1:x} overlaps "
                    f"{other.name} at 0x{other.base:x}-0x{other.end - 1:x}"
                )
        if self._installed is not None:
            self._carve(region)
            self._install_region(region)
        if self.pages is not None and region.buffer is not None:
            self.pages.track_region(region.base, region.buffer)
        self.regions.append(region)
        self.regions.sort(key=lambda r: r.base)
        return region

    def add_ram(self, base: int, size: int, name: str) -> Region:
        """Guest RAM: the slice [base, base+size) of the RAM buffer, at its own address."""
        if base + size > self.ram.size:
            raise ConfigError(f"{name}: 0x{base:x}+0x{size:x} is beyond the RAM buffer")
        return self._add(Region(base, size, "ram", name, self.ram[base : base + size]))

    def add_rom(self, base: int, buffer: np.ndarray, name: str) -> Region:
        """Read-only memory backed by ``buffer`` (guest writes are dropped)."""
        return self._add(Region(base, buffer.size, "rom", name, _checked_buffer(buffer, name)))

    def add_device_memory(self, base: int, buffer: np.ndarray, name: str) -> Region:
        """RAM-like memory a device owns (e.g. a framebuffer), backed by ``buffer``."""
        return self._add(Region(base, buffer.size, "device", name, _checked_buffer(buffer, name)))

    def add_mmio(
        self, base: int, size: int, device: MmioDevice, name: str,
        native: tuple[int, int, int, int] | None = None,
    ) -> Region:  # fmt: skip
        """Registers a device decodes: every access calls its ``mem_read``/``mem_write`` (or the
        C entry points ``native`` gives, which call them in the end)."""
        return self._add(Region(base, size, "mmio", name, device=device, native=native))

    def remove(self, region: Region) -> None:
        """Take a region out of the map (a device's registers move, as the local APIC's do
        through IA32_APIC_BASE): its range becomes unassigned space again."""
        self.regions.remove(region)
        uc = self._installed
        if uc is None:
            return
        uc.mem_unmap(region.base, region.size)
        if not self.strict:
            # the hole it leaves, joined with its neighbours
            for start, end in self.holes():
                if start <= region.base < end:
                    for piece in [h for h in self._mapped_holes if start <= h[0] < end]:
                        uc.mem_unmap(piece[0], piece[1] - piece[0])
                        self._mapped_holes.remove(piece)
                    self._map_hole(start, end)

    def find(self, address: int) -> Region | None:
        for r in self.regions:
            if r.base <= address < r.end:
                return r
        return None

    def rom_ranges(self) -> list[tuple[int, int]]:
        return [(r.base, r.end) for r in self.regions if r.kind == "rom"]

    def holes(self) -> list[tuple[int, int]]:
        """The unassigned ranges, [start, end), up to the end of the physical space."""
        out, at = [], 0
        for r in self.regions:
            if r.base > at:
                out.append((at, r.base))
            at = max(at, r.end)
        if at < PHYS_END:
            out.append((at, PHYS_END))
        return out

    def describe(self) -> list[tuple[int, int, str, str]]:
        """(start, end, kind, name) for every region and hole, in address order."""
        rows = [(r.base, r.end, r.kind, r.name) for r in self.regions]
        rows += [(a, b, "unassigned", "nothing (reads 0, writes dropped)") for a, b in self.holes()]
        return sorted(rows)

    # ------------------------------------------------------ host-side access
    def read(self, address: int, size: int) -> bytes:
        """What the guest would read at a physical address, without side effects: device
        registers (MMIO) are not read and show all-ones; unassigned space shows 0."""
        out = bytearray()
        while len(out) < size:
            at = address + len(out)
            r = self.find(at)
            if r is None or r.buffer is None:
                end = r.end if r is not None else self._hole_end(at)
                n = min(size - len(out), end - at)
                fill = 0xFF if r is not None else UNASSIGNED_READ_VALUE
                out += bytes([fill]) * n
                continue
            n = min(size - len(out), r.end - at)
            out += r.buffer[at - r.base : at - r.base + n].tobytes()
        return bytes(out)

    def write(self, address: int, data: bytes, *, rom: bool = False) -> None:
        """A write as the guest's would land (ROM and unassigned space drop it; ``rom=True``
        writes ROM too, as the firmware does when it builds it)."""
        done = 0
        while done < len(data):
            at = address + done
            r = self.find(at)
            end = r.end if r is not None else self._hole_end(at)
            n = min(len(data) - done, end - at)
            if r is not None and r.buffer is not None and (r.kind != "rom" or rom):
                if self.pages is not None:
                    self.pages.before_write(at, n)
                chunk = np.frombuffer(data[done : done + n], np.uint8)
                r.buffer[at - r.base : at - r.base + n] = chunk
            done += n

    def _hole_end(self, address: int) -> int:
        for r in self.regions:
            if r.base > address:
                return r.base
        return PHYS_END

    # ------------------------------------------------------------ the engine
    def install(self, uc, rip_of: Callable[[], tuple[int, int]]) -> None:
        """Map every region into a Unicorn engine, and the holes as unassigned MMIO unless
        strict. ``rip_of()`` gives (RIP, instruction count) of the access being made."""
        from unicorn import UC_PROT_WRITE

        self._installed = uc
        self._rip_of = rip_of
        self._keep: list[object] = []  # Unicorn holds raw pointers: keep buffers and callbacks
        for r in self.regions:
            self._install_region(r)
        self._sink = np.zeros(0x1000, np.uint8)
        uc.mem_map_ptr(SINK_PAGE, 0x1000, UC_PROT_WRITE, self._sink.ctypes.data)
        self._mapped_holes: list[tuple[int, int]] = []
        if not self.strict:
            for start, end in self.holes():
                self._map_hole(start, end)

    def _map_hole(self, start: int, end: int) -> None:
        # Below 4 GiB in pieces of at most HOLE_PIECE, aligned: unmapping costs Unicorn time in
        # proportion to the size (0.13 s for 4 GiB), and a device region added later (the
        # APICs, the HPET) takes only its piece out of the space above RAM.
        while start < end:
            piece_end = end
            if start < 1 << 32:
                piece_end = min(end, (start // HOLE_PIECE + 1) * HOLE_PIECE)
            read, write = self._unassigned_handlers(start)
            self._keep += [read, write]
            self._installed.mmio_map(start, piece_end - start, read, None, write, None)
            self._mapped_holes.append((start, piece_end))
            start = piece_end

    def _carve(self, region: Region) -> None:
        """A region added after installation takes its range out of the unassigned space."""
        for start, end in list(self._mapped_holes):
            if region.base < end and start < region.end:
                self._installed.mem_unmap(start, end - start)
                self._mapped_holes.remove((start, end))
                if start < region.base:
                    self._map_hole(start, region.base)
                if region.end < end:
                    self._map_hole(region.end, end)

    def _unassigned_handlers(self, base: int):
        # Unicorn gives offsets from the hole's start, and splits accesses into aligned pieces
        # (an 8-byte read is two 4-byte reads): each piece is noted where it lands.
        def read(_uc, offset: int, size: int, _ud) -> int:
            self._note(base + offset, False, size, UNASSIGNED_READ_VALUE)
            return UNASSIGNED_READ_VALUE

        def write(_uc, offset: int, size: int, value: int, _ud) -> None:
            self._note(base + offset, True, size, value)

        return read, write

    def _install_region(self, r: Region) -> None:
        from unicorn import UC_PROT_ALL

        uc = self._installed
        if r.buffer is not None:
            self._keep.append(r.buffer)
            uc.mem_map_ptr(r.base, r.size, UC_PROT_ALL, r.buffer.ctypes.data)
        elif r.native is not None:
            import unicorn

            err = unicorn.unicorn_py3.unicorn.uclib.uc_mmio_map(uc._uch, r.base, r.size, *r.native)
            if err:
                raise ConfigError(f"{r.name}: cannot map its registers (unicorn error {err})")
        else:
            device = r.device

            def read(_uc, offset, size, _ud, device=device):
                self.device_accesses += 1
                return device.mem_read(offset, size)

            def write(_uc, offset, size, value, _ud, device=device):
                self.device_accesses += 1
                device.mem_write(offset, size, value)

            self._keep += [read, write]
            uc.mmio_map(r.base, r.size, read, None, write, None)

    def _note(self, address: int, write: bool, size: int, value: int) -> None:
        u = self.unassigned
        rip, icount = self._rip_of()
        last = u.first[-1] if u.first else None
        if (
            last is not None and last.write == write and last.rip == rip
            and last.icount == icount and last.address + last.size == address
            and last.size + size <= 8
        ):  # fmt: skip
            # Unicorn split one access into aligned pieces: the next piece of the same one
            u.first[-1] = UnassignedAccess(last.address, write, last.size + size,
                                           last.value | value << (8 * last.size), rip, icount)  # fmt: skip
            return
        if write:
            u.writes += 1
        else:
            u.reads += 1
        page = address >> 12
        new_page = page not in u.pages
        if new_page:
            if len(u.pages) < KEEP_PAGES:
                u.pages.add(page)
            else:
                u.more_pages += 1
                new_page = False  # not remembered: not logged again either
        if new_page or len(u.first) < KEEP_ACCESSES:
            access = UnassignedAccess(address, write, size, value, rip, icount)
            if len(u.first) < KEEP_ACCESSES:
                u.first.append(access)
            if new_page:
                log.info(
                    "unassigned physical memory: %s of %d byte(s) at 0x%x from RIP 0x%x "
                    "(reads 0, writes are dropped)", "write" if write else "read", size,
                    address, rip,
                )  # fmt: skip
            if self.on_unassigned is not None:
                self.on_unassigned(access)


def _checked_buffer(buffer: np.ndarray, name: str) -> np.ndarray:
    if buffer.dtype != np.uint8 or buffer.ndim != 1 or not buffer.flags.c_contiguous:
        raise ConfigError(f"{name}: memory must be a contiguous uint8 buffer")
    return buffer
