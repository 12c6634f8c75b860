"""The page walker: every compiled kernel of the MMU (Intel SDM Vol. 3, chapter 4).

One walk, ``_translate``, implements every paging mode (paging off, 32-bit with 4K/4M pages and
PSE-36, PAE with 4K/2M pages, 4-level and 5-level with 4K/2M/1G pages) with the access rights of
SDM 4.6 (U/S and CPL, R/W with CR0.WP, XD with EFER.NXE, SMEP, SMAP with RFLAGS.AC), the reserved
bits of SDM 4.3-4.5 (MAXPHYADDR = 40, as Unicorn's CPUID 0x80000008 reports) and the
accessed/dirty updates of SDM 4.8. ``_mappings`` enumerates a whole tree as merged ranges.

Guest RAM is a ``uint64`` view of the guest's physical memory (entry at physical address ``p``
is word ``p >> 3``; 32-bit entries are the low or high half). Physical memory beyond RAM reads
as zero, as QEMU's unassigned memory does, so a paging structure there is "not present".

Entry points for native code (compiled as C callbacks by ``emu/core/native.py``, which caches their
object code so a run does not pay numba's start-up; the ``*_SIGNATURE`` constants are their C
types):

- ``tlb_fill``: Unicorn's ``UC_HOOK_TLB_FILL`` callback (``UC_TLB_VIRTUAL``), on every TLB miss;
- ``translate``: one walk for Python (``emu.mmu.walk``, the IDT model's stack pushes);
- ``mappings_c``: the whole tree for Python (``emu.mmu.mappings``).

Every ``@jit`` kernel has an explicit signature and takes its options from ``OPTIONS`` (``INLINE``
adds numba's IR inlining for the small helpers and the fill). Nothing here allocates: callers
pass every array. ``emu/mmu/reference.py`` is the independent oracle.
"""

from __future__ import annotations

import numpy as np
from numba import carray, jit, types

from ..core.intrinsics import load64, voidptr
from .layout import (
    ACC_FETCH,
    ACC_READ,
    ACC_WRITE,
    ENV_CR0,
    ENV_CR3,
    ENV_CR4,
    ENV_EFER,
    ENV_EFLAGS,
    ENV_HFLAGS,
    FILL_ACCESS,
    FILL_CODE_ADDED,
    FILL_CODE_PAGES,
    FILL_COUNT,
    FILL_ENV,
    FILL_ERR,
    FILL_FAULTS,
    FILL_LEVEL,
    FILL_OUT,
    FILL_PROBE_PAGE,
    FILL_RAM,
    FILL_RAM_SIZE,
    FILL_ROM_COUNT,
    FILL_ROM_TABLE,
    FILL_SINK_PAGE,
    FILL_SIZE,
    FILL_TRACK,
    FILL_VADDR,
    MAXPHYADDR,
    OUT_ERR,
    OUT_LEVEL,
    OUT_LEVELS,
    OUT_PADDR,
    OUT_PAGE_SIZE,
    OUT_PERMS,
    OUT_RSVD_BIT,
    OUT_SIZE,
    OUT_STATUS,
    OUT_TRACE,
    PERM_EXEC,
    PERM_READ,
    PERM_USER,
    PERM_WRITE,
    ST_NON_CANONICAL,
    ST_NOT_PRESENT,
    ST_OK,
    ST_OUTSIDE_RAM,
    ST_PROTECTION,
    ST_RESERVED,
    TK_COUNT,
    TK_LIST,
    TK_MARKS,
    TK_PAGES,
    TK_RAM,
    TK_RAM_PAGES,
    TK_SAVE,
    TK_SEG_COUNT,
    TK_SEG_WORDS,
    TK_SEGS,
    TK_SIZE,
)

OPTIONS = {"nopython": True, "nogil": True, "cache": True}
# Small helpers and the fill are inlined into their callers (numba IR inlining): a call between
# compiled functions costs as much as the walk itself on the TLB-fill path.
INLINE = dict(OPTIONS, inline="always")

# ------------------------------------------------------------------ layouts

# The per-level trace a walk writes: table physical address, index, raw entry (as read).
TRACE_TABLE = 0
TRACE_INDEX = 1
TRACE_ENTRY = 2
TRACE_STRIDE = 3
MAX_LEVELS = 5
TRACE_SIZE = TRACE_STRIDE * MAX_LEVELS

# The TLB-fill hook's context array (uint64, ``user_data``). The indices are shared with
# emu/core/engine.py through mmu/layout.py's FILL_* names; 11 and 12 are ours alone.
CTX_ENV = FILL_ENV  # address of QEMU's CPUX86State env (CR0/CR3/CR4/EFER/EFLAGS/hflags)
CTX_RAM = FILL_RAM  # address of guest RAM (the numpy buffer given to mem_map_ptr)
CTX_RAM_SIZE = FILL_RAM_SIZE  # bytes, a multiple of 8
CTX_FILLS = FILL_COUNT  # fills answered (paging off included)
CTX_REFUSED = FILL_FAULTS  # fills refused (a #PF or #GP for Python to raise)
CTX_FAULT_PAGE = FILL_VADDR  # last refused fill: the page (the hook never sees bits 11:0)
CTX_FAULT_ACCESS = FILL_ACCESS  # ... ACC_READ / ACC_WRITE / ACC_FETCH
CTX_FAULT_ERR = FILL_ERR  # ... the #PF error code
CTX_FAULT_STATUS = FILL_LEVEL  # ... the walk status (ST_*); mmu/layout.py calls the slot FILL_LEVEL
CTX_SCRATCH = FILL_OUT  # address of a uint64 array of >= TRACE_SIZE words (the walk's trace)
CTX_PROBE_PAGE = FILL_PROBE_PAGE  # a page answered without a walk (the core's end probe)
CTX_FAULT_LEVEL = 11  # ... the level (0 = top) of the entry that decided the fault
CTX_FAULT_ENTRY = 12  # ... that entry, raw
CTX_ROM_TABLE = FILL_ROM_TABLE  # ROM ranges (physical (base, end) pairs): never written
CTX_ROM_COUNT = FILL_ROM_COUNT
CTX_SINK_PAGE = FILL_SINK_PAGE  # where a write to ROM goes (write only, never read)
CTX_TRACK = FILL_TRACK  # the dirty-page tracker (TK_* of mmu/layout.py), 0: nothing tracked
CTX_CODE_PAGES = FILL_CODE_PAGES  # pages code was fetched from (uint8 per RAM page), 0: none
CTX_CODE_ADDED = FILL_CODE_ADDED  # a page joined them: flush the TLB before the next block
CTX_SIZE = FILL_SIZE

# Rows of _mappings' output (uint64 columns).
MAP_VIRT = 0
MAP_PHYS = 1
MAP_SIZE = 2
MAP_PAGE_SIZE = 3
MAP_FLAGS = 4  # MAPF_* below
MAP_ACCESSED = 5  # pages of the run whose leaf entry has A set
MAP_DIRTY = 6  # ... D set
MAP_COLUMNS = 7
MAPF_WRITE = 1  # R/W=1 at every level
MAPF_USER = 2  # U/S=1 at every level
MAPF_EXEC = 4  # no level has XD=1 (with EFER.NXE=1)
MAPF_GLOBAL = 8  # leaf G=1

# Unicorn's uc_mem_type for TLB fills, and uc_prot bits.
UC_MEM_WRITE = 17
UC_MEM_FETCH = 18
UC_PROT_READ = 1
UC_PROT_WRITE = 2
UC_PROT_EXEC = 4
_EXEC_OK = 1 << 8  # _fill's own bit in the rights it returns: an instruction fetch would pass

# Arguments of the ``translate`` entry point (a uint64 array).
TR_RAM = 0
TR_RAM_SIZE = 1
TR_CR0 = 2
TR_CR3 = 3
TR_CR4 = 4
TR_EFER = 5
TR_VADDR = 6
TR_ACCESS = 7
TR_CPL = 8
TR_AC = 9
TR_IMPLICIT = 10
TR_SET_AD = 11
TR_TRACK = 12  # address of the dirty-page tracker's context, 0: none
TR_ARGS = 13

# ------------------------------------------------------------------ architectural bits

_U = np.uint64
_ZERO = _U(0)
_ONE = _U(1)
_LOW32 = _U(0xFFFFFFFF)
_PAGE_4K = _U(0x1000)
_CR0_WP = _U(1 << 16)
_CR0_PG = _U(1 << 31)
_CR4_PSE = _U(1 << 4)
_CR4_PAE = _U(1 << 5)
_CR4_LA57 = _U(1 << 12)
_CR4_SMEP = _U(1 << 20)
_CR4_SMAP = _U(1 << 21)
_EFER_LMA = _U(1 << 10)
_EFER_NXE = _U(1 << 11)
_RFLAGS_AC = _U(1 << 18)
_P = _U(1)
_RW = _U(1 << 1)
_US = _U(1 << 2)
_A = _U(1 << 5)
_D = _U(1 << 6)
_PS = _U(1 << 7)
_G = _U(1 << 8)
_XD = _U(1 << 63)
_PF_P = _U(1)
_PF_W = _U(1 << 1)
_PF_US = _U(1 << 2)
_PF_RSVD = _U(1 << 3)
_PF_ID = _U(1 << 4)
_ADDR_MASK = _U(((1 << MAXPHYADDR) - 1) & ~0xFFF)  # bits M-1:12
_LONG_HIGH_RSVD = _U(((1 << 52) - 1) & ~((1 << MAXPHYADDR) - 1))  # bits 51:M
_PAE_HIGH_RSVD = _U(((1 << 63) - 1) & ~((1 << MAXPHYADDR) - 1))  # bits 62:M
_PAE_PDPTE_RSVD = _U(0x1E6)  # bits 8:5 and 2:1 (and 63:M, above)
_PSE_4M_RSVD = _U(1 << 21)  # bits 21:(M-19) of a 4M PDE with MAXPHYADDR 40
_PSE36_BITS = _U(0x1FE000)  # bits 20:13 of a 4M PDE: physical address bits 39:32
_ALL_PERMS = _U(PERM_READ | PERM_WRITE | PERM_EXEC | PERM_USER)

# ------------------------------------------------------------------ signatures

_RAM = types.uint64[::1]
_VEC = types.uint64[::1]
_ROWS = types.uint64[:, ::1]
_u64 = types.uint64
_i64 = types.int64
_bool = types.boolean
TRANSLATE_RESULT = types.UniTuple(types.uint64, 7)

# ------------------------------------------------------------------ RAM access


@jit(_u64(_RAM, _u64, _bool), **INLINE)
def _read_entry(ram64, phys, wide):
    """The paging-structure entry at ``phys`` (8 or 4 bytes); zero beyond RAM."""
    word = phys >> _U(3)
    if word >= _U(ram64.shape[0]):
        return _ZERO
    value = ram64[word]
    if wide:
        return value
    return (value >> ((phys & _U(4)) << _U(3))) & _LOW32


# ------------------------------------------------------------------ dirty pages
# Checkpoints keep only the pages written since the one before (emu/dirty_pages.py): every write
# into tracked memory that does not go through a TLB entry granting write access calls _touch
# first, and the fill grants write access only to pages already touched.


@jit(types.Tuple((_i64, _u64))(_VEC, _u64), **INLINE)
def _tracked_page(tk, phys):
    """(index, host address) of the tracked page holding ``phys``, or (-1, 0)."""
    if tk.shape[0] == 0 or tk[TK_PAGES] == _ZERO:
        return (np.int64(-1), _ZERO)
    page = phys >> _U(12)
    if page < tk[TK_RAM_PAGES]:
        return (np.int64(page), tk[TK_RAM] + (page << _U(12)))
    for s in range(np.int64(tk[TK_SEG_COUNT])):
        k = TK_SEGS + TK_SEG_WORDS * s
        if tk[k] <= phys and phys < tk[k + 1]:
            offset = (phys - tk[k]) >> _U(12)
            return (np.int64(tk[k + 3] + offset), tk[k + 2] + (offset << _U(12)))
    return (np.int64(-1), _ZERO)


@jit(_u64(_VEC, _i64), **INLINE)
def _page_host(tk, index):
    """Host address of tracked page ``index`` (0 if there is none)."""
    if index < np.int64(tk[TK_RAM_PAGES]):
        return tk[TK_RAM] + (_U(index) << _U(12))
    for s in range(np.int64(tk[TK_SEG_COUNT])):
        k = TK_SEGS + TK_SEG_WORDS * s
        first = np.int64(tk[k + 3])
        if first <= index and index < first + np.int64((tk[k + 1] - tk[k]) >> _U(12)):
            return tk[k + 2] + (_U(index - first) << _U(12))
    return _ZERO


@jit(types.void(_VEC, _i64, _u64), **INLINE)
def _touch_index(tk, index, host):
    """_touch for tracked page ``index`` at host address ``host``."""
    pages = np.int64(tk[TK_PAGES])
    save = carray(voidptr(tk[TK_SAVE]), (pages,), np.uint64)
    to = save[index]
    if to != _ZERO:
        src = carray(voidptr(host), (512,), np.uint64)
        dst = carray(voidptr(to), (512,), np.uint64)
        for i in range(512):
            dst[i] = src[i]
        save[index] = _ZERO
    marks = carray(voidptr(tk[TK_MARKS]), (pages,), np.uint8)
    if marks[index] == np.uint8(0):
        marks[index] = np.uint8(1)
        written = carray(voidptr(tk[TK_LIST]), (pages,), np.uint64)
        written[np.int64(tk[TK_COUNT])] = _U(index)
        tk[TK_COUNT] += _ONE


@jit(types.void(_VEC, _u64), **INLINE)
def _touch(tk, phys):
    """Before a write into the page holding ``phys``: copy its contents where a checkpoint
    wants them (once), and mark it written since the last checkpoint."""
    index, host = _tracked_page(tk, phys)
    if index >= 0:
        _touch_index(tk, index, host)


@jit(_bool(_VEC, _u64), **INLINE)
def _untouched(tk, phys):
    """Whether the page holding ``phys`` is tracked and not written since the last checkpoint:
    a fill then withholds write access, so that the first write comes back to _touch."""
    index, _host = _tracked_page(tk, phys)
    if index < 0:
        return False
    marks = carray(voidptr(tk[TK_MARKS]), (np.int64(tk[TK_PAGES]),), np.uint8)
    return marks[index] == np.uint8(0)


@jit(types.void(_RAM, _u64, _bool, _u64, _VEC), **INLINE)
def _set_entry_bits(ram64, phys, wide, bits, tk):
    """OR ``bits`` (A, D: always in the low dword) into the entry at ``phys``."""
    _touch(tk, phys)
    word = phys >> _U(3)
    if wide:
        ram64[word] |= bits
    else:
        ram64[word] |= bits << ((phys & _U(4)) << _U(3))


@jit(_u64(_u64), **OPTIONS)
def _lowest_bit(mask):
    """Index of the lowest set bit of a non-zero mask."""
    n = _ZERO
    while not ((mask >> n) & _ONE):
        n += _ONE
    return n


# ------------------------------------------------------------------ one translation


@jit(
    TRANSLATE_RESULT(
        _RAM, _u64, _u64, _u64, _u64, _u64, _i64, _i64, _bool, _bool, _bool, _VEC, _VEC
    ),
    **OPTIONS,
)
def _translate(ram64, cr0, cr3, cr4, efer, vaddr, access, cpl, ac, implicit, set_ad, trace, tk):
    """Translate ``vaddr`` for one access, as the CPU would.

    Args: the control registers; ``access`` ACC_READ/ACC_WRITE/ACC_FETCH; ``cpl``; ``ac`` is
    RFLAGS.AC; ``implicit`` marks an implicit supervisor access (descriptor tables, the TSS,
    the interrupt frame), which is a supervisor access at any CPL and ignores AC for SMAP;
    ``set_ad`` sets A in every entry used and D in the leaf of a write, only on success.
    ``trace`` receives (table, index, raw entry) per level read; ``tk`` is the dirty-page
    tracker the A/D writes are reported to (an empty array: none).

    Returns (status ST_*, physical address, #PF error code, level of the deciding entry
    (0 = top), page size, effective rights PERM_* of this context, reserved bits found).
    The physical address is also given on a protection fault (where the page is).
    """
    ram_size = _U(ram64.shape[0]) << _U(3)
    write = access == ACC_WRITE
    fetch = access == ACC_FETCH
    if not (cr0 & _CR0_PG):
        # Paging off: linear is physical (32 bits wide outside long mode, as in QEMU).
        paddr = vaddr if (efer & _EFER_LMA) else vaddr & _LOW32
        status = ST_OK if paddr < ram_size else ST_OUTSIDE_RAM
        return (_U(status), paddr, _ZERO, _ZERO, _PAGE_4K, _ALL_PERMS, _ZERO)

    user = cpl == 3 and not implicit
    pae = (cr4 & _CR4_PAE) != _ZERO
    nxe = (efer & _EFER_NXE) != _ZERO
    err = _ZERO
    if write:
        err |= _PF_W
    if user:
        err |= _PF_US
    if fetch and ((cr4 & _CR4_SMEP) != _ZERO or (pae and nxe)):
        err |= _PF_ID  # SDM 4.7: I/D only when SMEP or (PAE and NXE) could cause the fault

    # Paging mode: levels, top table, entry width, the always-reserved high bits.
    if efer & _EFER_LMA:
        levels = 5 if (cr4 & _CR4_LA57) else 4
        sign_bit = _U(56) if levels == 5 else _U(47)
        top = vaddr >> sign_bit
        if top != _ZERO and top != (_U(0xFFFFFFFFFFFFFFFF) >> sign_bit):
            return (_U(ST_NON_CANONICAL), _ZERO, _ZERO, _ZERO, _ZERO, _ZERO, _ZERO)
        table = cr3 & _ADDR_MASK
        high_rsvd = _LONG_HIGH_RSVD
    elif pae:
        levels = 3
        vaddr = vaddr & _LOW32
        table = cr3 & _U(0xFFFFFFE0)
        high_rsvd = _PAE_HIGH_RSVD
    else:
        levels = 2
        vaddr = vaddr & _LOW32
        table = cr3 & _U(0xFFFFF000)
        high_rsvd = _ZERO
    wide = levels != 2
    if wide and not nxe:
        high_rsvd |= _XD  # XD is reserved while EFER.NXE=0

    writable = True
    usable_by_user = True
    no_exec = False
    page_shift = _U(12)
    leaf_level = 0
    for lvl in range(levels):
        below = _U(levels - 1 - lvl)
        if wide:
            shift = _U(12) + _U(9) * below
            index_mask = _U(3) if (levels == 3 and lvl == 0) else _U(0x1FF)
            index = (vaddr >> shift) & index_mask
            phys = table + (index << _U(3))
        else:
            shift = _U(12) + _U(10) * below
            index = (vaddr >> shift) & _U(0x3FF)
            phys = table + (index << _U(2))
        e = _read_entry(ram64, phys, wide)
        k = TRACE_STRIDE * lvl
        trace[k + TRACE_TABLE] = table
        trace[k + TRACE_INDEX] = index
        trace[k + TRACE_ENTRY] = e
        if not (e & _P):
            return (_U(ST_NOT_PRESENT), _ZERO, err, _U(lvl), _ZERO, _ZERO, _ZERO)
        pae_pdpte = levels == 3 and lvl == 0
        leaf = below == _ZERO
        rsvd = _ZERO
        if wide:
            rsvd = e & high_rsvd
            if pae_pdpte:
                rsvd |= e & (_PAE_PDPTE_RSVD | _XD)
            elif (e & _PS) and not leaf:
                if shift >= _U(39):
                    rsvd |= _PS  # PS is reserved in a PML5E and a PML4E
                else:
                    leaf = True  # a 1G PDPTE or a 2M PDE
                    page_shift = shift
                    rsvd |= e & (((_ONE << shift) - _ONE) & ~_U(0x1FFF))  # base alignment
        elif lvl == 0 and (e & _PS) and (cr4 & _CR4_PSE):
            leaf = True  # a 4M PDE
            page_shift = _U(22)
            rsvd = e & _PSE_4M_RSVD
        if rsvd:
            return (_U(ST_RESERVED), _ZERO, err | _PF_P | _PF_RSVD, _U(lvl), _ZERO, _ZERO, rsvd)
        if not pae_pdpte:  # PAE PDPTEs carry no rights
            writable = writable and (e & _RW) != _ZERO
            usable_by_user = usable_by_user and (e & _US) != _ZERO
            if nxe and (e & _XD):
                no_exec = True
        if leaf:
            leaf_level = lvl
            break
        table = e & (_ADDR_MASK if wide else _U(0xFFFFF000))

    page_size = _ONE << page_shift
    e = trace[TRACE_STRIDE * leaf_level + TRACE_ENTRY]
    if wide:
        base = e & _ADDR_MASK & ~(page_size - _ONE)
    elif page_shift == _U(22):
        base = (e & _U(0xFFC00000)) | ((e & _PSE36_BITS) << _U(19))  # PSE-36
    else:
        base = e & _U(0xFFFFF000)
    paddr = base | (vaddr & (page_size - _ONE))

    # Effective rights in this context (SDM 4.6.1).
    perms = _ZERO
    if usable_by_user:
        perms |= _U(PERM_USER)
    if user:
        if usable_by_user:
            perms |= _U(PERM_READ)
            if writable:
                perms |= _U(PERM_WRITE)
            if not no_exec:
                perms |= _U(PERM_EXEC)
    else:
        smap_blocks = usable_by_user and (cr4 & _CR4_SMAP) != _ZERO and (implicit or not ac)
        if not smap_blocks:
            perms |= _U(PERM_READ)
            if writable or not (cr0 & _CR0_WP):
                perms |= _U(PERM_WRITE)
        if not no_exec and not (usable_by_user and (cr4 & _CR4_SMEP) != _ZERO):
            perms |= _U(PERM_EXEC)
    need = _U(PERM_READ)
    if write:
        need = _U(PERM_WRITE)
    elif fetch:
        need = _U(PERM_EXEC)
    if not (perms & need):
        return (_U(ST_PROTECTION), paddr, err | _PF_P, _U(leaf_level), page_size, perms, _ZERO)

    if set_ad:
        for lvl in range(leaf_level + 1):
            if levels == 3 and lvl == 0:
                continue  # PAE PDPTEs have no accessed flag
            k = TRACE_STRIDE * lvl
            want = _A
            if lvl == leaf_level and write:
                want |= _D
            if (trace[k + TRACE_ENTRY] & want) != want:
                width = _U(8) if wide else _U(4)
                phys = trace[k + TRACE_TABLE] + trace[k + TRACE_INDEX] * width
                _set_entry_bits(ram64, phys, wide, want, tk)
    status = ST_OK if paddr < ram_size else ST_OUTSIDE_RAM
    return (_U(status), paddr, _ZERO, _U(leaf_level), page_size, perms, _ZERO)


# ------------------------------------------------------------------ the TLB fill


@jit(
    types.Tuple((_bool, _u64, _u64))(
        _RAM, _u64, _u64, _u64, _u64, _u64, _u64, _u64, _i64, _VEC, _VEC, _VEC
    ),
    **INLINE,
)
def _fill(ram64, cr0, cr3, cr4, efer, hflags, eflags, vaddr, mem_type, trace, ctx, tk):
    """Answer one TLB fill: (granted, physical page, uc_prot bits), recording a refusal in
    ``ctx``. Read rights come with any fill; write rights only for a write or a page already
    dirty (so the first write to a clean page comes back here and sets D); execute rights only
    for an instruction fetch (stores to pages QEMU holds executable are ~5x slower), with
    _EXEC_OK set where a fetch would pass (``tlb_fill`` strips it). The
    walk's A/D writes are reported to the dirty-page tracker ``tk``; ``tlb_fill`` withholds
    write rights from pages not written since the last checkpoint."""
    access = ACC_READ
    if mem_type == UC_MEM_WRITE:
        access = ACC_WRITE
    elif mem_type == UC_MEM_FETCH:
        access = ACC_FETCH
    ctx[CTX_FILLS] += _ONE
    if not (cr0 & _CR0_PG):
        page = vaddr if (efer & _EFER_LMA) else vaddr & _LOW32
        prot = _U(UC_PROT_READ | UC_PROT_WRITE | _EXEC_OK)
        if access == ACC_FETCH:
            prot |= _U(UC_PROT_EXEC)
        return (True, page & ~_U(0xFFF), prot)
    cpl = np.int64(hflags & _U(3))
    ac = (eflags & _RFLAGS_AC) != _ZERO
    status, paddr, err, level, _size, perms, _rsvd = _translate(
        ram64, cr0, cr3, cr4, efer, vaddr, access, cpl, ac, False, True, trace, tk
    )
    if status == _U(ST_OK) or status == _U(ST_OUTSIDE_RAM):
        # Beyond RAM the translation still stands: Unicorn's unmapped handling sees it.
        prot = _ZERO
        if perms & _U(PERM_READ):
            prot |= _U(UC_PROT_READ)
        if perms & _U(PERM_WRITE):
            leaf = trace[TRACE_STRIDE * np.int64(level) + TRACE_ENTRY]
            if access == ACC_WRITE or (leaf & _D):
                prot |= _U(UC_PROT_WRITE)
        if perms & _U(PERM_EXEC):
            prot |= _U(_EXEC_OK)
            if access == ACC_FETCH:
                prot |= _U(UC_PROT_EXEC)
        return (True, paddr & ~_U(0xFFF), prot)
    ctx[CTX_REFUSED] += _ONE
    ctx[CTX_FAULT_PAGE] = vaddr
    ctx[CTX_FAULT_ACCESS] = _U(access)
    ctx[CTX_FAULT_ERR] = err
    ctx[CTX_FAULT_STATUS] = status
    ctx[CTX_FAULT_LEVEL] = level
    entry = _ZERO
    if status != _U(ST_NON_CANONICAL):
        entry = trace[TRACE_STRIDE * np.int64(level) + TRACE_ENTRY]
    ctx[CTX_FAULT_ENTRY] = entry
    return (False, _ZERO, _ZERO)


@jit(types.boolean(_VEC, _u64), **INLINE)
def _in_rom(ctx, page):
    n = np.int64(ctx[CTX_ROM_COUNT])
    table = carray(voidptr(ctx[CTX_ROM_TABLE]), (2 * n,), np.uint64)
    for i in range(n):  # noqa: SIM110 - numba compiles a loop, not a generator
        if table[2 * i] <= page < table[2 * i + 1]:
            return True
    return False


@jit(_u64(_VEC, _u64, _i64, _u64), **INLINE)
def _code_rights(ctx, page, mem_type, prot):
    """The rights of an entry, given the pages code was fetched from. Unicorn 2.1.4 sends a
    store through its self-modifying-code check (which drops the translated blocks it
    overwrites) only while the entry it uses is executable: after the first store through an
    entry without execute rights, that entry goes without the check for good, and the CPU
    would run blocks translated from the bytes before later stores. So a write entry for a page
    code was fetched from is made executable where a fetch would pass (a mapping without
    execute rights cannot be: an NX alias of code is left to that rule). A fetch records the
    page."""
    exec_ok = prot & np.uint64(_EXEC_OK)
    prot &= ~np.uint64(_EXEC_OK)
    codes = ctx[CTX_CODE_PAGES]
    if codes == _ZERO or page >= ctx[CTX_RAM_SIZE] or page == ctx[CTX_SINK_PAGE]:
        return prot
    marks = carray(voidptr(codes), (np.int64(ctx[CTX_RAM_SIZE] >> _U(12)),), np.uint8)
    index = np.int64(page >> _U(12))
    if mem_type == UC_MEM_FETCH:
        if marks[index] == np.uint8(0):
            marks[index] = np.uint8(1)
            ctx[CTX_CODE_ADDED] = _ONE
    elif (prot & np.uint64(UC_PROT_WRITE)) and exec_ok and marks[index] != np.uint8(0):
        prot |= np.uint64(UC_PROT_EXEC)
    return prot


# ------------------------------------------------------------------ host writes, for Python

TOUCH_SIGNATURE = types.void(types.voidptr, types.voidptr, types.int64)
TOUCH_RANGE_SIGNATURE = types.void(types.voidptr, types.int64, types.int64)


def touch_pages(tk_ptr, pages_ptr, n):
    """Before the host writes the tracked pages ``pages[0:n]`` (int64 indices): keep what
    checkpoints want of them and mark them written (emu/dirty_pages.py)."""
    tk = carray(tk_ptr, (TK_SIZE,), np.uint64)
    pages = carray(pages_ptr, (n,), np.int64)
    for i in range(n):
        index = pages[i]
        _touch_index(tk, index, _page_host(tk, index))


def touch_range(tk_ptr, first, end):
    """``touch_pages`` for the indices first..end-1."""
    tk = carray(tk_ptr, (TK_SIZE,), np.uint64)
    for index in range(first, end):
        _touch_index(tk, index, _page_host(tk, index))


# ------------------------------------------------------------------ translate, for Python

TRANSLATE_SIGNATURE = types.uint64(types.voidptr, types.voidptr)


def translate(args_ptr, out_ptr):
    """One walk: ``args`` holds TR_* values, ``out`` receives the OUT_* layout of layout.py
    (status, physical address, error code, level, page size, rights, lowest reserved bit,
    levels of the mode, then the trace)."""
    a = carray(args_ptr, (TR_ARGS,), np.uint64)
    out = carray(out_ptr, (OUT_SIZE,), np.uint64)
    ram64 = carray(voidptr(a[TR_RAM]), (a[TR_RAM_SIZE] >> np.uint64(3),), np.uint64)
    tracker = a[TR_TRACK]
    tk = carray(voidptr(tracker), (TK_SIZE if tracker != np.uint64(0) else 0,), np.uint64)
    return _translate_into(
        ram64,
        a[TR_CR0],
        a[TR_CR3],
        a[TR_CR4],
        a[TR_EFER],
        a[TR_VADDR],
        np.int64(a[TR_ACCESS]),
        np.int64(a[TR_CPL]),
        a[TR_AC] != np.uint64(0),
        a[TR_IMPLICIT] != np.uint64(0),
        a[TR_SET_AD] != np.uint64(0),
        out,
        tk,
    )


@jit(_i64(_u64, _u64, _u64), **OPTIONS)
def _levels(cr0, cr4, efer):
    """Paging-structure levels of the current mode (0 with paging off)."""
    if not (cr0 & _CR0_PG):
        return 0
    if efer & _EFER_LMA:
        return 5 if (cr4 & _CR4_LA57) else 4
    return 3 if (cr4 & _CR4_PAE) else 2


@jit(
    _u64(_RAM, _u64, _u64, _u64, _u64, _u64, _i64, _i64, _bool, _bool, _bool, _VEC, _VEC),
    **OPTIONS,
)
def _translate_into(ram64, cr0, cr3, cr4, efer, vaddr, access, cpl, ac, implicit, set_ad, out, tk):
    """``_translate`` with its result spread over the OUT_* layout; returns the status."""
    for k in range(OUT_SIZE):
        out[k] = _ZERO
    trace = out[OUT_TRACE : OUT_TRACE + TRACE_SIZE]
    status, paddr, err, level, size, perms, rsvd = _translate(
        ram64, cr0, cr3, cr4, efer, vaddr, access, cpl, ac, implicit, set_ad, trace, tk
    )
    out[OUT_STATUS] = status
    out[OUT_PADDR] = paddr
    out[OUT_ERR] = err
    out[OUT_LEVEL] = level
    out[OUT_PAGE_SIZE] = size
    out[OUT_PERMS] = perms
    if rsvd:
        out[OUT_RSVD_BIT] = _lowest_bit(rsvd)
    out[OUT_LEVELS] = _U(_levels(cr0, cr4, efer))
    return status


# ------------------------------------------------------------------ the whole tree


@jit(_i64(_ROWS, _i64, _u64, _u64, _u64, _u64, _u64, _u64, _bool), **OPTIONS)
def _emit(out, n, virt, phys, page_size, flags, accessed, dirty, split_ad):
    """Append one leaf, merged into the previous row when contiguous in both address spaces
    with equal rights, global bit and page size (and, with ``split_ad``, equal A and D: rows
    are then all-accessed or none, all-dirty or none). Returns the row count, -1 when full."""
    if n > 0:
        p = n - 1
        if (
            out[p, MAP_VIRT] + out[p, MAP_SIZE] == virt
            and out[p, MAP_PHYS] + out[p, MAP_SIZE] == phys
            and out[p, MAP_PAGE_SIZE] == page_size
            and out[p, MAP_FLAGS] == flags
            and not (
                split_ad
                and (
                    (out[p, MAP_ACCESSED] != _ZERO) != (accessed != _ZERO)
                    or (out[p, MAP_DIRTY] != _ZERO) != (dirty != _ZERO)
                )
            )
        ):
            out[p, MAP_SIZE] += page_size
            out[p, MAP_ACCESSED] += accessed
            out[p, MAP_DIRTY] += dirty
            return n
    if n >= out.shape[0]:
        return -1
    out[n, MAP_VIRT] = virt
    out[n, MAP_PHYS] = phys
    out[n, MAP_SIZE] = page_size
    out[n, MAP_PAGE_SIZE] = page_size
    out[n, MAP_FLAGS] = flags
    out[n, MAP_ACCESSED] = accessed
    out[n, MAP_DIRTY] = dirty
    return n + 1


@jit(_u64(_u64, _u64, _bool), **OPTIONS)
def _leaf_flags(inherited, e, nxe):
    """Rights of a leaf: the table entries' rights (``inherited``) narrowed by this entry."""
    f = inherited
    if not (e & _RW):
        f &= ~_U(MAPF_WRITE)
    if not (e & _US):
        f &= ~_U(MAPF_USER)
    if nxe and (e & _XD):
        f &= ~_U(MAPF_EXEC)
    return f


_SCAN = _i64(_RAM, _u64, _u64, _u64, _u64, _bool, _bool, _ROWS, _i64)


@jit(_i64(_RAM, _u64, _u64, _u64, _u64, _bool, _bool, _ROWS, _i64, _u64), **OPTIONS)
def _large_leaf(ram64, e, virt, inherited, high_rsvd, nxe, split_ad, out, n, size):
    """A 1G PDPTE or 2M PDE leaf (``e`` present, without high reserved bits)."""
    if e & (size - _ONE) & ~_U(0x1FFF) & _ADDR_MASK:
        return n  # a misaligned large-page base is reserved: the walk would fault
    flags = _leaf_flags(inherited, e, nxe)
    if e & _G:
        flags |= _U(MAPF_GLOBAL)
    pa = e & _ADDR_MASK & ~(size - _ONE)
    a, d = (e >> _U(5)) & _ONE, (e >> _U(6)) & _ONE
    return _emit(out, n, virt, pa, size, flags, a, d, split_ad)


@jit(_SCAN, **OPTIONS)
def _scan_pt(ram64, table, virt, inherited, high_rsvd, nxe, split_ad, out, n):
    """The 4K leaves of one page table (the hot loop: 512 entries)."""
    base = table >> _U(3)
    if base + _U(512) > _U(ram64.shape[0]):
        return n  # beyond RAM: reads as zero, nothing present
    for i in range(512):
        e = ram64[base + _U(i)]
        if not (e & _P) or (e & high_rsvd):
            continue
        flags = _leaf_flags(inherited, e, nxe)
        if e & _G:
            flags |= _U(MAPF_GLOBAL)
        a, d = (e >> _U(5)) & _ONE, (e >> _U(6)) & _ONE
        n = _emit(out, n, virt | (_U(i) << _U(12)), e & _ADDR_MASK, _PAGE_4K, flags, a, d, split_ad)
        if n < 0:
            return n
    return n


@jit(_SCAN, **OPTIONS)
def _scan_pd(ram64, table, virt, inherited, high_rsvd, nxe, split_ad, out, n):
    """One page directory: 2M leaves and page tables."""
    base = table >> _U(3)
    if base + _U(512) > _U(ram64.shape[0]):
        return n
    for i in range(512):
        e = ram64[base + _U(i)]
        if not (e & _P) or (e & high_rsvd):
            continue
        va = virt | (_U(i) << _U(21))
        if e & _PS:
            n = _large_leaf(ram64, e, va, inherited, high_rsvd, nxe, split_ad, out, n, _U(1 << 21))
        else:
            f = _leaf_flags(inherited, e, nxe)
            n = _scan_pt(ram64, e & _ADDR_MASK, va, f, high_rsvd, nxe, split_ad, out, n)
        if n < 0:
            return n
    return n


@jit(_SCAN, **OPTIONS)
def _scan_pdpt(ram64, table, virt, inherited, high_rsvd, nxe, split_ad, out, n):
    """One 4-level/5-level page-directory-pointer table: 1G leaves and page directories."""
    base = table >> _U(3)
    if base + _U(512) > _U(ram64.shape[0]):
        return n
    for i in range(512):
        e = ram64[base + _U(i)]
        if not (e & _P) or (e & high_rsvd):
            continue
        va = virt | (_U(i) << _U(30))
        if e & _PS:
            n = _large_leaf(ram64, e, va, inherited, high_rsvd, nxe, split_ad, out, n, _U(1 << 30))
        else:
            f = _leaf_flags(inherited, e, nxe)
            n = _scan_pd(ram64, e & _ADDR_MASK, va, f, high_rsvd, nxe, split_ad, out, n)
        if n < 0:
            return n
    return n


@jit(_i64(_RAM, _u64, _u64, _u64, _u64, _bool, _bool, _ROWS, _i64, _bool), **OPTIONS)
def _scan_pml4(ram64, table, virt, inherited, high_rsvd, nxe, split_ad, out, n, top):
    """One PML4 (``top``: the root of 4-level paging, whose upper half is sign-extended)."""
    base = table >> _U(3)
    if base + _U(512) > _U(ram64.shape[0]):
        return n
    for i in range(512):
        e = ram64[base + _U(i)]
        if not (e & _P) or (e & (high_rsvd | _PS)):
            continue  # PS is reserved in a PML4E
        va = virt | (_U(i) << _U(39))
        if top and i >= 256:
            va |= _U(0xFFFF000000000000)
        f = _leaf_flags(inherited, e, nxe)
        n = _scan_pdpt(ram64, e & _ADDR_MASK, va, f, high_rsvd, nxe, split_ad, out, n)
        if n < 0:
            return n
    return n


@jit(_SCAN, **OPTIONS)
def _scan_pml5(ram64, table, virt, inherited, high_rsvd, nxe, split_ad, out, n):
    """The PML5 of 5-level paging (bits 63:57 sign-extend bit 56)."""
    base = table >> _U(3)
    if base + _U(512) > _U(ram64.shape[0]):
        return n
    for i in range(512):
        e = ram64[base + _U(i)]
        if not (e & _P) or (e & (high_rsvd | _PS)):
            continue  # PS is reserved in a PML5E
        va = virt | (_U(i) << _U(48))
        if i >= 256:
            va |= _U(0xFE00000000000000)
        f = _leaf_flags(inherited, e, nxe)
        n = _scan_pml4(ram64, e & _ADDR_MASK, va, f, high_rsvd, nxe, split_ad, out, n, False)
        if n < 0:
            return n
    return n


@jit(_SCAN, **OPTIONS)
def _scan_pae(ram64, cr3, virt, inherited, high_rsvd, nxe, split_ad, out, n):
    """The four PDPTEs of PAE paging (no rights in them; more reserved bits)."""
    top = cr3 & _U(0xFFFFFFE0)
    for i in range(4):
        e = _read_entry(ram64, top + _U(8 * i), True)
        if not (e & _P) or (e & (high_rsvd | _PAE_PDPTE_RSVD | _XD)):
            continue
        va = virt | (_U(i) << _U(30))
        n = _scan_pd(ram64, e & _ADDR_MASK, va, inherited, high_rsvd, nxe, split_ad, out, n)
        if n < 0:
            return n
    return n


@jit(_i64(_RAM, _u64, _bool, _bool, _ROWS), **OPTIONS)
def _scan_32bit(ram64, cr3, pse, split_ad, out):
    """Every leaf of a 32-bit paging tree (4K pages, and 4M pages with CR4.PSE)."""
    n = 0
    pd = cr3 & _U(0xFFFFF000)
    for i in range(1024):
        pde = _read_entry(ram64, pd + _U(4 * i), False)
        if not (pde & _P):
            continue
        va = _U(i) << _U(22)
        if pse and (pde & _PS):
            if pde & _PSE_4M_RSVD:
                continue
            pa = (pde & _U(0xFFC00000)) | ((pde & _PSE36_BITS) << _U(19))
            flags = _leaf_flags(_U(MAPF_WRITE | MAPF_USER | MAPF_EXEC), pde, False)
            if pde & _G:
                flags |= _U(MAPF_GLOBAL)
            a, d = (pde >> _U(5)) & _ONE, (pde >> _U(6)) & _ONE
            n = _emit(out, n, va, pa, _U(1 << 22), flags, a, d, split_ad)
        else:
            inherited = _leaf_flags(_U(MAPF_WRITE | MAPF_USER | MAPF_EXEC), pde, False)
            pt = pde & _U(0xFFFFF000)
            for j in range(1024):
                pte = _read_entry(ram64, pt + _U(4 * j), False)
                if not (pte & _P):
                    continue
                flags = _leaf_flags(inherited, pte, False)
                if pte & _G:
                    flags |= _U(MAPF_GLOBAL)
                a, d = (pte >> _U(5)) & _ONE, (pte >> _U(6)) & _ONE
                va_j = va | (_U(j) << _U(12))
                n = _emit(out, n, va_j, pte & _U(0xFFFFF000), _PAGE_4K, flags, a, d, split_ad)
                if n < 0:
                    return n
        if n < 0:
            return n
    return n


@jit(_i64(_RAM, _u64, _u64, _u64, _u64, _bool, _ROWS), **OPTIONS)
def _mappings(ram64, cr0, cr3, cr4, efer, split_ad, out):
    """Every present, valid leaf as merged rows (MAP_* columns), in virtual-address order.

    Runs merge on equal rights, global bit and page size; ``split_ad`` also ends a run where
    A or D changes. Entries a walk would reject (reserved bits set) are skipped with what they
    map. Returns the row count, or -1 when ``out`` filled up (its rows are a valid prefix)."""
    if not (cr0 & _CR0_PG):
        return 0
    nxe = (efer & _EFER_NXE) != _ZERO
    if efer & _EFER_LMA:
        levels = 5 if (cr4 & _CR4_LA57) else 4
        table = cr3 & _ADDR_MASK
        high_rsvd = _LONG_HIGH_RSVD
    elif cr4 & _CR4_PAE:
        levels = 3
        table = cr3 & _U(0xFFFFFFE0)
        high_rsvd = _PAE_HIGH_RSVD
    else:
        return _scan_32bit(ram64, cr3, (cr4 & _CR4_PSE) != _ZERO, split_ad, out)
    if not nxe:
        high_rsvd |= _XD
    everything = _U(MAPF_WRITE | MAPF_USER | MAPF_EXEC)
    if levels == 5:
        return _scan_pml5(ram64, table, _ZERO, everything, high_rsvd, nxe, split_ad, out, 0)
    if levels == 4:
        return _scan_pml4(ram64, table, _ZERO, everything, high_rsvd, nxe, split_ad, out, 0, True)
    return _scan_pae(ram64, cr3, _ZERO, everything, high_rsvd, nxe, split_ad, out, 0)


MAPPINGS_SIGNATURE = types.int64(types.voidptr, types.voidptr, types.int64)


def mappings_c(args_ptr, out_ptr, capacity):
    """``_mappings`` for Python: args are (RAM address, RAM size, CR0, CR3, CR4, EFER,
    split_ad); out is ``capacity`` rows of MAP_COLUMNS uint64."""
    a = carray(args_ptr, (7,), np.uint64)
    out = carray(out_ptr, (capacity, MAP_COLUMNS), np.uint64)
    ram64 = carray(voidptr(a[0]), (a[1] >> np.uint64(3),), np.uint64)
    return _mappings(ram64, a[2], a[3], a[4], a[5], a[6] != np.uint64(0), out)


# uc_cb_tlbevent_t: bool (uc_engine*, uint64 vaddr, uc_mem_type, uc_tlb_entry*, void*), where
# uc_tlb_entry is {uint64_t paddr; uc_prot perms;} (16 bytes: perms and padding are word 1).
TLB_FILL_SIGNATURE = types.boolean(
    types.voidptr, types.uint64, types.int32, types.CPointer(types.uint64), types.voidptr
)


def tlb_fill(uc, vaddr, mem_type, entry, user_data):
    """Unicorn's TLB-fill hook. ``user_data`` is the context array (CTX_*)."""
    ctx = carray(user_data, (CTX_SIZE,), np.uint64)
    if vaddr == ctx[CTX_PROBE_PAGE]:
        # The page emu_start probes at its end (core/engine.py): no guest uses it; no RAM.
        entry[0] = np.uint64(0xFFFFFFFFFF000)
        entry[1] = np.uint64(UC_PROT_EXEC)
        return True
    env = ctx[CTX_ENV]
    ram64 = carray(voidptr(ctx[CTX_RAM]), (ctx[CTX_RAM_SIZE] >> np.uint64(3),), np.uint64)
    trace = carray(voidptr(ctx[CTX_SCRATCH]), (TRACE_SIZE,), np.uint64)
    tracker = ctx[CTX_TRACK]
    tk = carray(voidptr(tracker), (TK_SIZE if tracker != np.uint64(0) else 0,), np.uint64)
    granted, page, prot = _fill(
        ram64,
        load64(env + np.uint64(ENV_CR0)),
        load64(env + np.uint64(ENV_CR3)),
        load64(env + np.uint64(ENV_CR4)),
        load64(env + np.uint64(ENV_EFER)),
        load64(env + np.uint64(ENV_HFLAGS)) & np.uint64(0xFFFFFFFF),
        load64(env + np.uint64(ENV_EFLAGS)),
        vaddr,
        np.int64(mem_type),
        trace,
        ctx,
        tk,
    )
    if granted:
        if ctx[CTX_ROM_COUNT] and _in_rom(ctx, page):
            # ROM: reads and fetches see it, a write lands in the sink page and is lost. The
            # entry for a read never carries write access, so every write comes back here.
            if mem_type == UC_MEM_WRITE:
                page = ctx[CTX_SINK_PAGE]
                prot = np.uint64(UC_PROT_WRITE)
            else:
                prot &= ~np.uint64(UC_PROT_WRITE)
        if mem_type == UC_MEM_WRITE:
            if page != ctx[CTX_SINK_PAGE]:
                _touch(tk, page)  # the first write since the last checkpoint
        elif (prot & np.uint64(UC_PROT_WRITE)) and _untouched(tk, page):
            prot &= ~np.uint64(UC_PROT_WRITE)  # so that the first write comes back here
        prot = _code_rights(ctx, page, mem_type, prot)
        entry[0] = page
        entry[1] = prot
    return granted
