"""Where GRUB 2.06 puts things: a model of its relocator and of the heap it takes memory from.

GRUB loads a kernel's segments, its ELF sections, the modules and the boot information into
"chunks" of its relocator (grub-core/lib/relocator.c), which take their memory from GRUB's heap:
on a BIOS PC one region from 1 MiB to the top of the RAM below 4 GiB, all free at that point but
for GRUB's own objects at its top. The heap works in 16-byte cells, and the way a chunk is cut
out of it decides where the next one can go. That is what this module models, because it is
what a kernel sees: its sections, modules and boot information land exactly where GRUB puts
them (measured against GRUB 2.06 with the images/probe-mbi kernels and hand-made layouts).

The rules, as the relocator applies them:

* The heap region starts at 1 MiB with a 16-byte region header, its first free block right
  after it. Memory from the region's start (less its ``pre_size``, the bytes before the header
  that belong to it) to 32 bytes before the end of that first block is free for a chunk; a chunk
  taken from there moves the region header to the next 16-byte boundary after the chunk, so the
  next chunk can start at the very next byte.
* A chunk taken from any other free block leaves a free block behind it only from the next
  16-byte boundary (and only if 16 bytes or more remain); the block before it keeps whole cells.
* A chunk at a fixed address (a segment) takes its memory from the heap at that address when it
  is free there; otherwise from the lowest free place above, else the highest below; below
  1 MiB from the top of the heap. Chunks placed by alignment (sections, modules, the boot
  information) go to the lowest free heap address that fits, away from every other chunk's
  target; when the heap has no room in their range (the Multiboot information and the
  trampoline live below 1 MiB), the target is the lowest suitable address of the firmware
  memory map, moved past any chunk it would overlap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from emu.errors import LoaderError

CELL = 16  # GRUB_MM_ALIGN on i386: the heap's unit, and the size of a block or region header
HEAP_BASE = 0x100000  # the heap region begins at 1 MiB (GRUB reclaims its decompression area)
LOW_MEMORY = 0x100000
ADDR_MAX = (1 << 64) - 1

PREFERENCE_NONE, PREFERENCE_LOW, PREFERENCE_HIGH = 0, 1, 2


def align_up(value: int, align: int) -> int:
    """GRUB's ALIGN_UP (a power-of-two alignment)."""
    return (value + align - 1) & ~(align - 1)


def align_down(value: int, align: int) -> int:
    return value & ~(align - 1)


@dataclass(frozen=True)
class Chunk:
    target: int  # where the bytes are when the kernel starts
    size: int
    what: str

    @property
    def end(self) -> int:
        return self.target + self.size


@dataclass(frozen=True)
class _Range:
    lo: int
    hi: int
    block: int  # index into the heap's free blocks
    region_start: bool  # the range of the block right after the region header


class GrubHeap:
    """GRUB's heap as its relocator sees it: one region and its free blocks (16-byte cells)."""

    def __init__(self, start: int, end: int) -> None:
        self.region = start  # the region header
        self.pre_size = 0  # bytes before the header that belong to the region
        self.blocks: list[list[int]] = []  # free blocks [start, end), in address order
        if end - start > 2 * CELL:
            self.blocks.append([start + CELL, align_down(end, CELL)])

    @property
    def top(self) -> int:
        """The end of the highest free block."""
        return self.blocks[-1][1] if self.blocks else self.region

    def ranges(self) -> Iterator[_Range]:
        """The free ranges a chunk can take, in address order."""
        for i, (start, end) in enumerate(self.blocks):
            if start == self.region + CELL:
                lo, hi = self.region - self.pre_size, end - 2 * CELL
                if hi > lo:
                    yield _Range(lo, hi, i, True)
            else:
                yield _Range(start, end, i, False)

    def take(self, target: int, size: int) -> None:
        """Cut [target, target + size) out of the free ranges it lies in."""
        end = target + size
        for r in reversed(list(self.ranges())):  # from the top, so indices stay valid
            lo, hi = max(r.lo, target), min(r.hi, end)
            if lo >= hi:
                continue
            if r.region_start and self.region + CELL > target:
                self._take_region_start(lo, hi - lo)
            else:
                self._take_in_block(r.block, lo, hi - lo)

    def _take_region_start(self, addr: int, size: int) -> None:
        # The chunk runs from the region's start: the region header moves up behind it, and
        # the first free block now starts right after the moved header.
        raw = addr + size
        new_region = align_up(raw, CELL)
        block_end = self.blocks[0][1]
        self.region, self.pre_size = new_region, new_region - raw
        if new_region + CELL < block_end:
            self.blocks[0] = [new_region + CELL, block_end]
        else:
            del self.blocks[0]

    def _take_in_block(self, index: int, addr: int, size: int) -> None:
        start, end = self.blocks[index]
        following = align_up(addr + size, CELL)
        pieces = []
        if addr - start >= CELL:
            pieces.append([start, start + align_down(addr - start, CELL)])
        if following + CELL <= end:
            pieces.append([following, end])
        self.blocks[index : index + 1] = pieces


def _inside(
    free: Sequence[tuple[int, int]], avoid: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The free ranges less the avoided ones (merged, in address order)."""
    merged: list[list[int]] = []
    for lo, hi in sorted(free):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    out = []
    for lo, hi in merged:
        pieces = [(lo, hi)]
        for a, b in avoid:
            nxt = []
            for p, q in pieces:
                if b <= p or a >= q:
                    nxt.append((p, q))
                    continue
                if p < a:
                    nxt.append((p, a))
                if b < q:
                    nxt.append((b, q))
            pieces = nxt
        out.extend(pieces)
    return sorted(out)


class Relocator:
    """GRUB's relocator for one boot: the chunks so far and the heap they came from.

    ``available`` is the firmware memory map's available RAM (base, end); ``heap_top`` where
    GRUB's own heap objects begin.
    """

    def __init__(self, available: Sequence[tuple[int, int]], heap_top: int) -> None:
        self.available = list(available)
        self.heap_top = heap_top
        self.heap = GrubHeap(HEAP_BASE, heap_top)
        self.chunks: list[Chunk] = []  # most recent first, as GRUB keeps them
        self._sources: dict[int, int] = {}  # id of a chunk -> where its bytes wait in the heap
        self.postchunks = ADDR_MAX
        self.highest_non_post = 0

    # ------------------------------------------------------------------ search
    def _search(self, lo: int, hi: int, align: int, size: int, from_low: bool,
                collisions: bool) -> int | None:  # fmt: skip
        """malloc_in_range: a free heap address for ``size`` bytes in [lo, hi)."""
        start = align_up(lo, align)
        end = align_down(hi - size, align) + size
        if end < start + size:
            return None
        free = [(r.lo, r.hi) for r in self.heap.ranges()]
        avoid = [(c.target, c.end) for c in self.chunks] if collisions else []
        inside = _inside(free, avoid)
        if from_low:
            for a, b in inside:
                target = max(align_up(a, align), start)
                if target + size <= end and target + size <= b:
                    return target
            return None
        for a, b in reversed(inside):
            if b < size:
                continue
            target = align_down(b - size, align)
            target = min(target, end - size)
            if target >= start and target >= a:
                return target
        return None

    def _limits(self, lo: int, hi: int) -> tuple[int, int]:
        """adjust_limits: keep the sources in the same order as their targets."""
        low, high = 0, self.postchunks
        for c in self.chunks:
            src = self._sources.get(id(c), c.target)
            if c.target > hi and src < high and src < self.postchunks:
                high = src
            if c.end <= lo and src + c.size > low and src < self.postchunks:
                low = src + c.size
        return low, high

    def _record(self, target: int, size: int, src: int, what: str, *, fixed: bool) -> Chunk:
        chunk = Chunk(target, size, what)
        self.chunks.insert(0, chunk)
        self._sources[id(chunk)] = src
        if fixed and src < self.postchunks:  # only chunks at fixed addresses count here
            self.highest_non_post = max(self.highest_non_post, target + size, src + size)
        return chunk

    def _high_source(self, size: int) -> int | None:
        src = self._search(self.highest_non_post, ADDR_MAX, 1, size, False, True)
        if src is not None:
            self.postchunks = min(self.postchunks, src)
        return src

    # ------------------------------------------------------------------ chunks
    def overlapping(self, target: int, size: int) -> Chunk | None:
        for c in self.chunks:
            if c.target <= target < c.end or target <= c.target < target + size:
                return c
        return None

    def at(self, target: int, size: int, what: str) -> Chunk:
        """grub_relocator_alloc_chunk_addr: ``size`` bytes that must end up at ``target``."""
        other = self.overlapping(target, size)
        if other is not None:
            raise LoaderError(
                f"{what} at {_span(target, size)} overlaps {other.what} at "
                f"{_span(other.target, other.size)} (GRUB 2.06: 'overlap detected')"
            )
        if target >= LOW_MEMORY and target + size > self.heap_top:
            raise LoaderError(
                f"{what} at {_span(target, size)} reaches past 0x{self.heap_top - 1:x}, the end "
                "of the RAM GRUB 2.06 can load into (its own memory and QEMU's reserved top "
                "128 KiB follow, then the end of RAM); GRUB does not boot it"
            )
        low, high = self._limits(target, target)
        src = None
        if target < LOW_MEMORY:
            src = self._high_source(size)
        if src is None:
            src = self._search(target, high, 1, size, True, False)
        if src is None:
            src = self._search(low, target, 1, size, False, False)
        if src is None:
            src = self._high_source(size)
        if src is None:
            raise LoaderError(f"{what} ({size} bytes): GRUB 2.06 runs out of memory for it")
        self.heap.take(src, size)
        return self._record(target, size, src, what, fixed=True)

    def aligned(self, lo: int, hi: int, size: int, align: int, what: str,
                preference: int = PREFERENCE_NONE) -> Chunk:  # fmt: skip
        """grub_relocator_alloc_chunk_align: ``size`` bytes at an ``align``-aligned address from
        ``lo`` up, away from every other chunk. As in GRUB, ``hi`` bounds the chunk's end in
        the heap and its start in the memory map."""
        lo = max(lo, 0x1000)  # GRUB on a BIOS PC never allocates page 0
        hi = min(hi, ADDR_MAX - size)
        from_low = preference != PREFERENCE_HIGH
        src = self._search(lo, hi, align, size, from_low, True)
        if src is not None:
            self.heap.take(src, size)
            return self._record(src, size, src, what, fixed=False)
        low, high = self._limits(lo, hi)
        src = self._search(low, high, align, size, True, True)
        if src is None:
            src = self._high_source(size)
        if src is None:
            raise LoaderError(f"no room for {what} ({size} bytes): GRUB 2.06 runs out of memory")
        self.heap.take(src, size)
        target = self._map_target(lo, hi, size, align, preference)
        if target is None:
            raise LoaderError(
                f"no room for {what} ({size} bytes) at 0x{lo:x}-0x{hi + size - 1:x} in the "
                "memory map (GRUB 2.06: 'couldn't find suitable memory target')"
            )
        while True:
            other = self.overlapping(target, size)
            if other is None:
                break
            if preference == PREFERENCE_HIGH:
                target = align_down(other.target, align)
            else:
                target = align_up(other.end, align)
        return self._record(target, size, src, what, fixed=False)

    def _map_target(self, lo: int, hi: int, size: int, align: int,
                    preference: int) -> int | None:  # fmt: skip
        """The target chosen from the firmware memory map when the heap has no room."""
        found = None
        for base, end in self.available:
            candidate = align_up(base, align)
            if candidate < lo:
                candidate = align_up(lo, align)
            if candidate + size > end or candidate > align_down(hi, align):
                continue
            if preference == PREFERENCE_HIGH:
                candidate = align_down(min(end - size, hi), align)
            if (
                found is None
                or (preference == PREFERENCE_HIGH and candidate > found)
                or (preference == PREFERENCE_LOW and candidate < found)
            ):
                found = candidate
        return found


def _span(start: int, size: int) -> str:
    return f"0x{start:x}-0x{start + max(size, 1) - 1:x}"
