"""Guest memory in checkpoints: each keeps only the pages written since the one before it.

How a write is seen (architecture decision 6: the MMU withholds write permission until the first
write after a checkpoint). Pages are numbered: guest RAM first (index = physical page number),
then each other host buffer the guest can reach (the BIOS flash above RAM, a linear
framebuffer). For every page the tracker keeps a mark, "written since the last checkpoint", and
a list of the marked pages.

- The guest's own writes: the TLB-fill hook (emu/mmu/kernels.py ``tlb_fill``) grants write
  access to a page only on a write fill or when the page is already marked, and marks it on a
  write fill. A checkpoint clears the marks and flushes Unicorn's TLB, so the first write to each
  page after it comes back to the hook. This holds with paging off too (Unicorn calls the hook in
  every mode).
- Every write that does not go through a TLB entry calls ``_touch`` (compiled) or
  ``before_write`` first: the A/D bits our page walker sets, the frames the IDT delivery pushes
  (compiled and Python), the BIOS services, the loader, the firmware tables, the debugger's and
  the gdb stub's writes (``PhysicalMemory.write``), a framebuffer cleared by a mode set.
  ROM written by the guest goes to the sink page, which is not guest-visible and not tracked.

What a checkpoint holds (copy-on-write): the list of pages marked since the checkpoint before
it, and room for their contents, not filled yet. Each of those pages is then "pending": the
tracker's save table holds the address of its slot, and the first write to the page after the
checkpoint (the fill hook, or any host writer through ``_touch``) copies the page there first.
A page never written again is never copied: its contents at the checkpoint are still the
memory's. So a checkpoint costs a scan of the marked pages and a TLB flush (no copy), and it holds
memory in proportion to the pages written since the one before it.

Checkpoints form a tree (a restore followed by a run starts a new branch). The live machine
descends from ``head``, differing from it on the marked pages. Restoring checkpoint X rewrites
the pages on the path from the live state to X (the marked ones and those of every checkpoint
between), each with its contents at X: from the nearest checkpoint at or above X that holds it,
or zero (the power-on state) if none does. A checkpoint whose handle is gone is folded into its
only child (or into the live state), so memory stays bounded by the checkpoints kept.

Cost model (measured by bench/checkpoint.py): a checkpoint is O(pages marked since the last one)
plus a TLB flush; the first write after it to each of those pages costs one 4 KiB copy; a restore
is O(pages that differ) copies. ``TRIPLEFAULT_VERIFY_CHECKPOINTS=1`` (the test suite sets it)
also keeps a full copy of memory with each checkpoint and checks, at every checkpoint and
restore, that no write went unseen.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from collections.abc import Callable

import numpy as np

from .errors import ConfigError, EngineError
from .mmu import layout as ML

PAGE = 4096
_PAGE_SHIFT = 12
_CFUNC_TOUCH = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_CFUNC_TOUCH_RANGE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


def verify_from_environment() -> bool:
    return os.environ.get("TRIPLEFAULT_VERIFY_CHECKPOINTS", "") not in ("", "0")


class _Node:
    """One checkpoint's memory: the pages that differ from its parent's, and their contents
    (a row is filled when the page is next written; until then it is the memory's)."""

    __slots__ = ("parent", "pages", "data", "kids", "pinned", "dead", "full", "__weakref__")

    def __init__(self, parent: _Node | None, pages: np.ndarray) -> None:
        self.parent = parent
        self.pages = pages  # sorted int64 page indices
        self.data = np.empty((pages.size, PAGE), np.uint8)  # reserved, filled on demand
        self.kids: list[_Node] = []
        self.pinned = True  # a MemoryCheckpoint refers to it
        self.dead = False
        self.full: list[np.ndarray] | None = None  # verification: all of memory, copied

    def slots(self) -> np.ndarray:
        """The host address of each row."""
        return np.uint64(self.data.ctypes.data) + np.arange(
            self.pages.size, dtype=np.uint64
        ) * np.uint64(PAGE)


class MemoryCheckpoint:
    """Guest memory at one checkpoint (``Machine.checkpoint``). Cheap to take and to keep: it
    holds the pages written since the checkpoint before it. Dropping every reference to it
    releases them (they are folded into the next checkpoint when that one still needs them)."""

    def __init__(self, node: _Node, tracker: DirtyPages) -> None:
        self._node = node
        self._tracker = weakref.ref(tracker)
        weakref.finalize(self, tracker._released.append, node)

    @property
    def pages(self) -> int:
        """Pages this checkpoint holds (written between the checkpoint before it and it)."""
        return int(self._node.pages.size)

    @property
    def nbytes(self) -> int:
        """Bytes this checkpoint holds at most (its pages, once all are copied)."""
        return self.pages * PAGE

    @property
    def copied_bytes(self) -> int:
        """Bytes copied so far (a page is copied when it is next written)."""
        tracker = self._tracker()
        if tracker is None or not self._node.pages.size:
            return 0
        pending = tracker._save[self._node.pages] == self._node.slots()
        return int(np.count_nonzero(~pending)) * PAGE


class DirtyPages:
    """Which pages of the machine's memory were written since the last checkpoint, and the
    checkpoints' pages (see the module's docstring). ``ctx`` is the context the compiled code
    reads (mmu/layout.py TK_*)."""

    def __init__(
        self, ram: np.ndarray, flush_tlb: Callable[[], None], *, verify: bool | None = None
    ) -> None:
        if ram.size % PAGE:
            raise ConfigError("guest RAM must be a whole number of pages")
        self.ram = ram
        self.ram_pages = ram.size >> _PAGE_SHIFT
        self.flush_tlb = flush_tlb
        self.verify = verify_from_environment() if verify is None else verify
        self.buffers: list[tuple[int, np.ndarray, int]] = []  # (physical base, buffer, first index)
        self.ctx = np.zeros(ML.TK_SIZE, np.uint64)
        self.ctx[ML.TK_RAM] = ram.ctypes.data
        self.ctx[ML.TK_RAM_PAGES] = self.ram_pages
        self._marks = np.zeros(0, np.uint8)
        self._save = np.zeros(0, np.uint64)
        self._written = np.zeros(0, np.uint64)
        self._grow(self.ram_pages)
        self.head: _Node | None = None  # the checkpoint the live state descends from
        self._released: list[_Node] = []  # nodes whose handle is gone, folded in later
        from .core import native

        mod = "emu.mmu.kernels"
        self._touch_pages = _CFUNC_TOUCH(native.load(mod, "touch_pages", "TOUCH_SIGNATURE").address)
        self._touch_range = _CFUNC_TOUCH_RANGE(
            native.load(mod, "touch_range", "TOUCH_RANGE_SIGNATURE").address
        )

    # ------------------------------------------------------------ the pages
    @property
    def pages(self) -> int:
        return int(self.ctx[ML.TK_PAGES])

    def _grow(self, pages: int) -> None:
        old = self._marks.size
        marks, save, written = (np.zeros(pages, t) for t in (np.uint8, np.uint64, np.uint64))
        marks[:old], save[:old], written[:old] = self._marks, self._save, self._written
        self._marks, self._save, self._written = marks, save, written
        c = self.ctx
        c[ML.TK_MARKS], c[ML.TK_SAVE] = marks.ctypes.data, save.ctypes.data
        c[ML.TK_LIST] = written.ctypes.data
        c[ML.TK_PAGES] = pages

    def add_buffer(self, base: int, buffer: np.ndarray) -> None:
        """Track a host buffer the guest reaches at physical ``base`` outside RAM (ROM above
        RAM, device memory). Its present contents count as written."""
        if len(self.buffers) == ML.TK_SEGS_MAX:
            raise EngineError(f"the dirty-page tracker follows {ML.TK_SEGS_MAX} buffers at most")
        if buffer.size % PAGE or base % PAGE:
            raise EngineError("a tracked buffer must be whole pages")
        first = self.pages
        self._grow(first + (buffer.size >> _PAGE_SHIFT))
        k = ML.TK_SEGS + ML.TK_SEG_WORDS * len(self.buffers)
        self.ctx[k : k + 4] = (base, base + buffer.size, buffer.ctypes.data, first)
        self.buffers.append((base, buffer, first))
        self.ctx[ML.TK_SEG_COUNT] = len(self.buffers)
        self._mark(np.arange(first, self.pages, dtype=np.int64))

    def track_region(self, base: int, buffer: np.ndarray) -> None:
        """A region of the physical address space backed by ``buffer``: tracked as RAM when it is
        a piece of the RAM buffer at its own address, else as a buffer of its own."""
        offset = buffer.ctypes.data - self.ram.ctypes.data
        if 0 <= offset < self.ram.size:
            if offset != base:
                raise EngineError(f"RAM at 0x{offset:x} is mapped at 0x{base:x}: not tracked")
            return
        self.add_buffer(base, buffer)

    def _views(self) -> list[tuple[int, np.ndarray]]:
        """(first index, pages as rows) of RAM and of every buffer."""
        views = [(0, self.ram.reshape(-1, PAGE))]
        views += [(first, buf.reshape(-1, PAGE)) for _base, buf, first in self.buffers]
        return views

    def _pieces(self, index: np.ndarray):
        """Split sorted page indices by the buffer holding them: (positions, rows view, rows)."""
        views = self._views()
        for i, (first, rows) in enumerate(views):
            end = views[i + 1][0] if i + 1 < len(views) else self.pages
            lo, hi = np.searchsorted(index, (first, end))
            if lo < hi:
                yield slice(lo, hi), rows, index[lo:hi] - first

    def _gather(self, index: np.ndarray) -> np.ndarray:
        out = np.empty((index.size, PAGE), np.uint8)
        for where, rows, local in self._pieces(index):
            out[where] = rows[local]
        return out

    def _scatter(self, index: np.ndarray, data: np.ndarray | None) -> None:
        """Write rows of ``data`` (None: zeros) into the pages ``index``."""
        for where, rows, local in self._pieces(index):
            rows[local] = 0 if data is None else data[where]

    def _mark(self, index: np.ndarray) -> None:
        """Mark pages as written (no copy: for pages whose contents are already kept)."""
        new = index[self._marks[index] == 0]
        if new.size:
            new = np.unique(new)
            self._marks[new] = 1
            count = int(self.ctx[ML.TK_COUNT])
            self._written[count : count + new.size] = new
            self.ctx[ML.TK_COUNT] = count + new.size

    def marked(self) -> np.ndarray:
        """The pages written since the last checkpoint (sorted indices)."""
        return np.sort(self._written[: int(self.ctx[ML.TK_COUNT])].astype(np.int64))

    def _clear_marks(self) -> None:
        count = int(self.ctx[ML.TK_COUNT])
        self._marks[self._written[:count]] = 0
        self.ctx[ML.TK_COUNT] = 0

    # ----------------------------------------------------------- host writes
    def before_write(self, phys: int, size: int) -> None:
        """The host is about to write ``size`` bytes at physical ``phys`` (outside the guest's
        TLB): keep what checkpoints want of those pages, and mark them."""
        if size <= 0:
            return
        first, last = phys >> _PAGE_SHIFT, (phys + size - 1) >> _PAGE_SHIFT
        if last < self.ram_pages:
            self._touch_range(self.ctx.ctypes.data, first, last + 1)
            return
        if first < self.ram_pages:
            self._touch_range(self.ctx.ctypes.data, first, self.ram_pages)
        for base, buf, index in self.buffers:
            lo, hi = max(phys, base), min(phys + size, base + buf.size)
            if lo < hi:
                a = index + ((lo - base) >> _PAGE_SHIFT)
                b = index + ((hi - 1 - base) >> _PAGE_SHIFT) + 1
                self._touch_range(self.ctx.ctypes.data, a, b)

    def _touch_all(self, index: np.ndarray) -> None:
        index = np.ascontiguousarray(index, np.int64)
        if index.size:
            self._touch_pages(self.ctx.ctypes.data, index.ctypes.data, index.size)

    # ---------------------------------------------------------- checkpoints
    def checkpoint(self) -> MemoryCheckpoint:
        """Memory now, as a child of the last checkpoint (the caller flushes nothing: this
        flushes the TLB, so that the first write to every page comes back to the fill hook)."""
        self._collect()
        pages = self.marked()
        node = _Node(self.head, pages)
        if self.verify:
            self._verify_unmarked(pages)
            node.full = [rows.copy() for _first, rows in self._views()]
        if pages.size:
            if np.any(self._save[pages]):
                raise EngineError("internal error: a page written since the last checkpoint is "
                                  "still waiting to be copied")  # fmt: skip
            self._save[pages] = node.slots()
        self._clear_marks()
        if self.head is not None:
            self.head.kids.append(node)
        self.head = node
        self.flush_tlb()
        return MemoryCheckpoint(node, self)

    def restore(self, checkpoint: MemoryCheckpoint) -> None:
        """Bring memory back to ``checkpoint`` (the caller flushes the TLB and translated code)."""
        target = checkpoint._node
        if checkpoint._tracker() is not self or target.dead:
            raise ConfigError("this checkpoint belongs to another machine")
        self._collect()
        # the pages that may differ: the marked ones, and those of every node between
        parts = [self.marked()]
        ours = self._ancestors(self.head)
        theirs = self._ancestors(target)
        common = {id(n) for n in ours} & {id(n) for n in theirs}
        parts += [n.pages for n in ours + theirs if id(n) not in common]
        differ = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        # checkpoints that still wait for these pages take them now, before they change
        self._touch_all(differ)
        todo, node = differ, target
        while todo.size and node is not None:
            at = np.searchsorted(node.pages, todo)
            at[at == node.pages.size] = 0
            hit = node.pages[at] == todo if node.pages.size else np.zeros(todo.size, bool)
            if hit.any():
                self._scatter(todo[hit], node.data[at[hit]])
            todo, node = todo[~hit], node.parent
        if todo.size:
            self._scatter(todo, None)  # written since power-on, in no checkpoint: zeros then
        self._clear_marks()
        old, self.head = self.head, target
        if old is not None and old is not target:
            self._fold(old)
        if self.verify:
            self._verify_against(target)

    @staticmethod
    def _ancestors(node: _Node | None) -> list[_Node]:
        out = []
        while node is not None:
            out.append(node)
            node = node.parent
        return out

    # ------------------------------------------------------------ releasing
    def _collect(self) -> None:
        while self._released:
            node = self._released.pop()
            node.pinned = False
            self._fold(node)

    def _unpend(self, node: _Node) -> None:
        """The node's rows not copied yet will never be: drop its claims on those pages."""
        if node.pages.size:
            mine = self._save[node.pages] == node.slots()
            self._save[node.pages[mine]] = 0

    def _fold(self, node: _Node) -> None:
        """Fold an unpinned node away when nothing needs it as it is: with no child it goes,
        with one child its pages go to that child (or, for the live state, become marked)."""
        while node is not None and not node.pinned and not node.dead:
            live = self.head is node
            children = len(node.kids) + live
            parent = node.parent
            if children == 0:
                self._unpend(node)
                node.dead = True
                if parent is not None:
                    parent.kids.remove(node)
                node = parent
                continue
            if children > 1:
                return
            if live:
                # the live state differs from the parent on the node's pages too
                self._unpend(node)
                self._touch_all(node.pages)
                self.head = parent
                if parent is not None:
                    parent.kids.remove(node)
            else:
                child = node.kids[0]
                self._merge_into(node, child)
                child.parent = parent
                if parent is not None:
                    parent.kids[parent.kids.index(node)] = child
            node.dead = True
            return

    def _merge_into(self, node: _Node, child: _Node) -> None:
        """The child now holds the node's pages it lacked (their contents at the node are
        their contents at the child: they did not change between the two)."""
        moving = ~np.isin(node.pages, child.pages)
        if not moving.any():
            self._unpend(node)
            return
        pages = np.concatenate([child.pages, node.pages[moving]])
        order = np.argsort(pages, kind="stable")
        pending = np.concatenate([
            self._save[child.pages] == child.slots() if child.pages.size else np.zeros(0, bool),
            (self._save[node.pages] == node.slots())[moving],
        ])[order]  # fmt: skip
        rows = [child.data, node.data[moving]]
        source = np.concatenate([np.arange(r.shape[0]) for r in rows])[order]
        which = np.concatenate([np.full(r.shape[0], i) for i, r in enumerate(rows)])[order]
        self._unpend(node)
        merged = _Node(None, pages[order])
        for i, r in enumerate(rows):
            sel = (which == i) & ~pending  # rows not copied yet stay uncopied
            merged.data[sel] = r[source[sel]]
        child.pages, child.data = merged.pages, merged.data
        if pending.any():
            self._save[child.pages[pending]] = child.slots()[pending]

    # --------------------------------------------------------- verification
    def _verify_unmarked(self, marked: np.ndarray) -> None:
        """Every page not marked must be as it was at the head (or zero before any)."""
        unmarked = np.ones(self.pages, bool)
        unmarked[marked] = False
        reference = self.head.full if self.head is not None else None
        for k, (first, rows) in enumerate(self._views()):
            keep = unmarked[first : first + rows.shape[0]]
            if reference is not None and k >= len(reference):
                continue  # a buffer added since: all its pages are marked
            if reference is None:
                bad = np.flatnonzero(keep & rows.any(axis=1))
            else:
                bad = np.flatnonzero(keep & (rows != reference[k]).any(axis=1))
            if bad.size:
                raise EngineError(
                    f"internal error: {bad.size} page(s) changed without being tracked, the "
                    f"first is page {first + int(bad[0])} of the tracked memory"
                )

    def _verify_against(self, node: _Node) -> None:
        if node.full is None:
            return
        for k, (first, rows) in enumerate(self._views()):
            reference = node.full[k] if k < len(node.full) else np.zeros_like(rows)
            bad = np.flatnonzero((rows != reference).any(axis=1))
            if bad.size:
                raise EngineError(
                    f"internal error: restoring a checkpoint left {bad.size} page(s) different, "
                    f"the first is page {first + int(bad[0])} of the tracked memory"
                )
