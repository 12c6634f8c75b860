"""Constants shared by the MMU kernels and Python (no numba import needed to use them)."""

from __future__ import annotations

# CPUX86State offsets the hook reads (emu/core/internals.py verifies them)
from ..core.x86_layout import ENV_CR0, ENV_CR3, ENV_CR4, ENV_EFER, ENV_EFLAGS, ENV_HFLAGS  # noqa: F401

MAXPHYADDR = 40  # Unicorn's CPUID 0x80000008 reports 40 physical address bits

# access kinds
ACC_READ = 0
ACC_WRITE = 1
ACC_FETCH = 2

# walk status
ST_OK = 0
ST_NOT_PRESENT = 1
ST_PROTECTION = 2
ST_RESERVED = 3
ST_NON_CANONICAL = 4
ST_OUTSIDE_RAM = 5  # a paging structure or the page itself lies outside guest RAM

# effective permission bits
PERM_READ = 1
PERM_WRITE = 2
PERM_EXEC = 4
PERM_USER = 8

# the walk's output array (uint64)
OUT_STATUS = 0
OUT_PADDR = 1
OUT_ERR = 2  # #PF error code
OUT_LEVEL = 3  # level of the last entry read (0 = top)
OUT_PAGE_SIZE = 4
OUT_PERMS = 5
OUT_RSVD_BIT = 6  # lowest reserved bit found set
OUT_LEVELS = 7  # levels in this paging mode
OUT_TRACE = 8  # per level: table physical address, index, raw entry
OUT_SIZE = OUT_TRACE + 3 * 5

# the TLB-fill hook's context array (uint64)
FILL_ENV = 0  # address of CPUX86State env
FILL_RAM = 1  # guest RAM pointer
FILL_RAM_SIZE = 2
FILL_COUNT = 3  # fills served
FILL_FAULTS = 4  # fills refused
FILL_VADDR = 5  # last refused fill: page address ...
FILL_ACCESS = 6  # ... access kind ...
FILL_ERR = 7  # ... #PF error code ...
FILL_LEVEL = 8  # ... walk status
FILL_OUT = 9  # address of a scratch walk-output array (the hook must not allocate)
FILL_PROBE_PAGE = 10  # the page emu_start probes at its end (see core/engine.py _UNTIL)
# ROM: physical ranges [base, end) the guest may read and execute but never write; a write fill
# there is answered with the sink page (write only), so the write is dropped (emu/memory.py)
FILL_ROM_TABLE = 13  # address of a uint64 array of (base, end) pairs
FILL_ROM_COUNT = 14  # pairs in it
FILL_SINK_PAGE = 15
ROM_RANGES_MAX = 16
FILL_TRACK = 16  # address of the dirty-page tracker's context (TK_* below), 0: nothing tracked
# Pages code was fetched from (uint8 per RAM page, 0: none kept): a write entry for such a page
# carries execute rights where the mapping allows them, so that Unicorn keeps sending its
# stores through the self-modifying-code check (emu/mmu/kernels.py tlb_fill). CODE_ADDED is set
# when a page joins: the TLB is then flushed before the next block runs (clock tb_hook), so
# that no older write entry for it (another mapping of the page, the victim TLB) goes without.
FILL_CODE_PAGES = 17
FILL_CODE_ADDED = 18
FILL_SIZE = 19

# The dirty-page tracker's context (uint64; emu/dirty_pages.py owns it). It says which pages of
# the machine's memory were written since the last checkpoint, and where a checkpoint wants a
# page's contents copied before its next write (copy-on-write). Pages are numbered: RAM first
# (index = physical page number), then each other host buffer (ROM beyond RAM, device memory).
TK_PAGES = 0  # pages tracked in all (0: nothing is tracked)
TK_RAM = 1  # host address of guest RAM (physical address 0)
TK_RAM_PAGES = 2  # pages of RAM
TK_MARKS = 3  # address of a uint8 array, one byte per page: written since the last checkpoint
TK_SAVE = (
    4  # address of a uint64 array, one per page: where to copy the page before a write (0: no)
)
TK_LIST = 5  # address of a uint64 array: the indices of the marked pages, in marking order
TK_COUNT = 6  # entries in that list
TK_SEG_COUNT = 7  # buffers besides RAM
TK_SEGS = 8  # per buffer TK_SEG_WORDS words: physical base, physical end, host address, first index
TK_SEG_WORDS = 4
TK_SEGS_MAX = 4
TK_SIZE = TK_SEGS + TK_SEG_WORDS * TK_SEGS_MAX
