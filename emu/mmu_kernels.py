"""The page walker: every numba kernel of the MMU (Intel SDM Vol. 3, chapter 4).

One walk implements every paging mode (paging off, 32-bit, PAE, 4-level) with the permission
rules (U/S and CPL, R/W with CR0.WP, NX with EFER.NXE, SMEP, SMAP with RFLAGS.AC, reserved bits)
and the accessed/dirty updates a real walker makes. It serves three callers:

- ``tlb_fill``: Unicorn's TLB-fill hook (``UC_TLB_VIRTUAL``), called on every TLB miss;
- ``translate``: one walk with its trace, for the IDT model's stack pushes, the debugger and the
  ``walk()`` explanation of ``emu/mmu.py`` (no side effects unless asked);
- ``enumerate_tree``: the whole tree as merged ranges, for ``mappings()``.

Guest RAM is reached as a ``uint32`` view (physical address / 4): 32-bit paging has 4-byte
entries, the other modes 8-byte entries read as two words. The pure-Python twin in
``tests/naive.py`` is the oracle the tests compare these kernels with. The cfuncs are loaded
through ``emu/native.py`` (compiled once, then cached as object code).
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, types

from .hook_intrinsics import voidptr
from .mmu_layout import (
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
    FILL_COUNT,
    FILL_ENV,
    FILL_ERR,
    FILL_FAULTS,
    FILL_LEVEL,
    FILL_OUT,
    FILL_PROBE_PAGE,
    FILL_RAM,
    FILL_RAM_SIZE,
    FILL_SIZE,
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
)

OPTIONS = {"nogil": True, "cache": True}

_CR0_WP = np.uint64(1 << 16)
_CR0_PG = np.uint64(1 << 31)
_CR4_PSE = np.uint64(1 << 4)
_CR4_PAE = np.uint64(1 << 5)
_CR4_SMEP = np.uint64(1 << 20)
_CR4_SMAP = np.uint64(1 << 21)
_EFER_NXE = np.uint64(1 << 11)
_EFER_LMA = np.uint64(1 << 10)
_RFLAGS_AC = np.uint64(1 << 18)
_P = np.uint64(1)
_RW = np.uint64(2)
_US = np.uint64(4)
_A = np.uint64(0x20)
_D = np.uint64(0x40)
_PS = np.uint64(0x80)
_XD = np.uint64(1 << 63)
_ADDR_MASK = np.uint64(((1 << MAXPHYADDR) - 1) & ~0xFFF)
_HIGH_RSVD = np.uint64(((1 << 52) - 1) & ~((1 << MAXPHYADDR) - 1))  # bits 51:MAXPHYADDR


@njit(**OPTIONS)
def _entry(ram32, phys, wide):
    i = phys >> np.uint64(2)
    if wide:
        return np.uint64(ram32[i]) | (np.uint64(ram32[i + np.uint64(1)]) << np.uint64(32))
    return np.uint64(ram32[i])


@njit(**OPTIONS)
def _set_bits(ram32, phys, bits):
    # A and D live in the low word of every entry format.
    i = phys >> np.uint64(2)
    ram32[i] = np.uint32(np.uint64(ram32[i]) | bits)


@njit(**OPTIONS)
def _lowest_set(x):
    n = np.uint64(0)
    while n < np.uint64(64):
        if (x >> n) & np.uint64(1):
            return n
        n += np.uint64(1)
    return np.uint64(64)


@njit(**OPTIONS)
def walk(ram32, ram_size, cr0, cr3, cr4, efer, vaddr, access, user, ac, set_ad, out):
    """One translation. Writes the result into ``out`` (see mmu_layout OUT_*) and returns the
    status. ``user``: a CPL 3 access (not an implicit supervisor one). ``ac``: RFLAGS.AC."""
    for k in range(OUT_SIZE):
        out[k] = np.uint64(0)
    is_write = access == ACC_WRITE
    is_fetch = access == ACC_FETCH
    if not (cr0 & _CR0_PG):
        paddr = vaddr & np.uint64(0xFFFFFFFF)
        out[OUT_PADDR] = paddr
        out[OUT_PAGE_SIZE] = np.uint64(0x1000)
        out[OUT_PERMS] = np.uint64(PERM_READ | PERM_WRITE | PERM_EXEC | PERM_USER)
        out[OUT_STATUS] = np.uint64(ST_OK)
        if paddr >= ram_size:
            out[OUT_STATUS] = np.uint64(ST_OUTSIDE_RAM)
        return out[OUT_STATUS]
    long_mode = (efer & _EFER_LMA) != np.uint64(0)
    pae = (cr4 & _CR4_PAE) != np.uint64(0)
    nxe = (efer & _EFER_NXE) != np.uint64(0)
    err = np.uint64(0)
    if is_write:
        err |= np.uint64(2)
    if user:
        err |= np.uint64(4)
    if is_fetch and ((cr4 & _CR4_SMEP) or (pae and nxe)):
        err |= np.uint64(16)
    if long_mode:
        top = vaddr >> np.uint64(47)
        if top != np.uint64(0) and top != np.uint64(0x1FFFF):
            out[OUT_STATUS] = np.uint64(ST_NON_CANONICAL)
            return out[OUT_STATUS]
        levels = 4
        table = cr3 & _ADDR_MASK
    elif pae:
        levels = 3
        table = cr3 & np.uint64(0xFFFFFFE0)
        vaddr = vaddr & np.uint64(0xFFFFFFFF)
    else:
        levels = 2
        table = cr3 & np.uint64(0xFFFFF000)
        vaddr = vaddr & np.uint64(0xFFFFFFFF)
    wide = levels != 2
    rw = True
    us = True
    xd = False
    out[OUT_LEVELS] = np.uint64(levels)
    page_size = np.uint64(0x1000)
    paddr = np.uint64(0)
    final_phys = np.uint64(0)
    final_entry = np.uint64(0)
    for lvl in range(levels):
        # shift of the index at this level, and its width
        if levels == 2:
            shift = np.uint64(22) if lvl == 0 else np.uint64(12)
            index = (vaddr >> shift) & np.uint64(0x3FF)
            esize = np.uint64(4)
        elif levels == 3:
            if lvl == 0:
                shift = np.uint64(30)
                index = (vaddr >> shift) & np.uint64(3)
            else:
                shift = np.uint64(21) if lvl == 1 else np.uint64(12)
                index = (vaddr >> shift) & np.uint64(0x1FF)
            esize = np.uint64(8)
        else:
            shift = np.uint64(39 - 9 * lvl)
            index = (vaddr >> shift) & np.uint64(0x1FF)
            esize = np.uint64(8)
        phys = table + index * esize
        t = OUT_TRACE + 3 * lvl
        out[t] = table
        out[t + 1] = index
        if phys + esize > ram_size:
            out[OUT_LEVEL] = np.uint64(lvl)
            out[OUT_STATUS] = np.uint64(ST_OUTSIDE_RAM)
            return out[OUT_STATUS]
        e = _entry(ram32, phys, wide)
        out[t + 2] = e
        out[OUT_LEVEL] = np.uint64(lvl)
        if not (e & _P):
            out[OUT_ERR] = err
            out[OUT_STATUS] = np.uint64(ST_NOT_PRESENT)
            return out[OUT_STATUS]
        last = lvl == levels - 1
        large = False
        rsvd = np.uint64(0)
        if wide:
            rsvd = e & _HIGH_RSVD
            if not nxe:
                rsvd |= e & _XD
            if levels == 3 and lvl == 0:
                rsvd |= e & np.uint64(0x1E6)  # PDPTE bits 2:1 and 8:5
                rsvd |= e & _XD  # no XD in PAE PDPTEs
            elif not last and (e & _PS):
                if levels == 4 and lvl == 0:
                    rsvd |= _PS  # PS in a PML4E
                else:
                    large = True
                    # 1G: bits 29:13 reserved; 2M: bits 20:13 reserved
                    one_g = levels == 4 and lvl == 1
                    rsvd |= e & (np.uint64(0x3FFFE000) if one_g else np.uint64(0x1FE000))
        else:
            if lvl == 0 and (e & _PS) and (cr4 & _CR4_PSE):
                large = True
                rsvd |= e & np.uint64(1 << 21)  # PSE-36 with MAXPHYADDR 40
        if rsvd:
            out[OUT_ERR] = err | np.uint64(1) | np.uint64(8)
            out[OUT_RSVD_BIT] = _lowest_set(rsvd)
            out[OUT_STATUS] = np.uint64(ST_RESERVED)
            return out[OUT_STATUS]
        if not (levels == 3 and lvl == 0):  # PAE PDPTEs carry no access rights
            rw = rw and (e & _RW) != np.uint64(0)
            us = us and (e & _US) != np.uint64(0)
        if wide and nxe and (e & _XD):
            xd = True
        if last or large:
            final_phys = phys
            final_entry = e
            if large:
                if wide:
                    page_size = np.uint64(1) << shift
                    base = e & _ADDR_MASK & ~(page_size - np.uint64(1))
                else:
                    page_size = np.uint64(0x400000)
                    base = (e & np.uint64(0xFFC00000)) | (
                        (e & np.uint64(0x1FE000)) << np.uint64(19)
                    )
            else:
                base = e & (_ADDR_MASK if wide else np.uint64(0xFFFFF000))
            paddr = base + (vaddr & (page_size - np.uint64(1)))
            out[OUT_LEVEL] = np.uint64(lvl)
            break
        if set_ad and not (e & _A) and not (levels == 3 and lvl == 0):  # PAE PDPTEs have no A
            _set_bits(ram32, phys, _A)
            out[t + 2] = e | _A
        table = e & (_ADDR_MASK if wide else np.uint64(0xFFFFF000))
    perms = np.uint64(0)
    # Effective rights at this privilege (SDM 4.6).
    if user:
        if us:
            perms |= np.uint64(PERM_READ)
            if rw:
                perms |= np.uint64(PERM_WRITE)
            if not xd:
                perms |= np.uint64(PERM_EXEC)
    else:
        smap_blocks = us and (cr4 & _CR4_SMAP) != np.uint64(0) and not ac
        if not smap_blocks:
            perms |= np.uint64(PERM_READ)
            if rw or not (cr0 & _CR0_WP):
                perms |= np.uint64(PERM_WRITE)
        if not xd and not (us and (cr4 & _CR4_SMEP)):
            perms |= np.uint64(PERM_EXEC)
    if us:
        perms |= np.uint64(PERM_USER)
    out[OUT_PERMS] = perms
    out[OUT_PAGE_SIZE] = page_size
    out[OUT_PADDR] = paddr
    need = np.uint64(PERM_READ)
    if is_write:
        need = np.uint64(PERM_WRITE)
    elif is_fetch:
        need = np.uint64(PERM_EXEC)
    if not (perms & need):
        out[OUT_ERR] = err | np.uint64(1)
        out[OUT_STATUS] = np.uint64(ST_PROTECTION)
        return out[OUT_STATUS]
    if set_ad:
        bits = _A
        if is_write:
            bits |= _D
        if (final_entry & bits) != bits:
            _set_bits(ram32, final_phys, bits)
            out[OUT_TRACE + 3 * int(out[OUT_LEVEL]) + 2] = final_entry | bits
    if paddr >= ram_size:
        out[OUT_STATUS] = np.uint64(ST_OUTSIDE_RAM)
        return out[OUT_STATUS]
    out[OUT_STATUS] = np.uint64(ST_OK)
    return out[OUT_STATUS]


# ------------------------------------------------------------------ Unicorn's TLB-fill hook

TLB_FILL_SIGNATURE = types.boolean(
    types.voidptr, types.uint64, types.int32, types.CPointer(types.uint64), types.voidptr
)


def tlb_fill(uc, vaddr, access_type, entry, user_data):
    """uc_tlb_entry is {uint64 paddr; uint32 perms}: entry[0] and the low word of entry[1]."""
    ctx = carray(user_data, (FILL_SIZE,), np.uint64)
    if vaddr == ctx[FILL_PROBE_PAGE]:
        # Unicorn's own end-of-run probe of a page no guest can use: map it to no RAM.
        entry[0] = np.uint64(0xFFFFFFFFFF000)
        entry[1] = np.uint64(4)
        return True
    env = carray(voidptr(ctx[FILL_ENV]), (1024,), np.uint64)
    hflags = env[ENV_HFLAGS // 8] & np.uint64(0xFFFFFFFF)
    cr0 = env[ENV_CR0 // 8]
    cr3 = env[ENV_CR3 // 8]
    cr4 = env[ENV_CR4 // 8]
    efer = env[ENV_EFER // 8]
    eflags = env[ENV_EFLAGS // 8]
    ram32 = carray(voidptr(ctx[FILL_RAM]), (ctx[FILL_RAM_SIZE] // np.uint64(4),), np.uint32)
    access = ACC_READ
    if access_type == 17:
        access = ACC_WRITE
    elif access_type == 18:
        access = ACC_FETCH
    user = (hflags & np.uint64(3)) == np.uint64(3)
    out = carray(voidptr(ctx[FILL_OUT]), (OUT_SIZE,), np.uint64)
    st = walk(ram32, ctx[FILL_RAM_SIZE], cr0, cr3, cr4, efer, vaddr, access, user,
              (eflags & _RFLAGS_AC) != np.uint64(0), True, out)  # fmt: skip
    ctx[FILL_COUNT] += np.uint64(1)
    if st == np.uint64(ST_OK) or st == np.uint64(ST_OUTSIDE_RAM):
        perms = out[OUT_PERMS]
        prot = np.uint64(0)
        if perms & np.uint64(PERM_READ):
            prot |= np.uint64(1)
        # Write permission only once the page is dirty (or this is the write): the first write
        # to a clean page always comes back here to set D.
        if perms & np.uint64(PERM_WRITE):
            dirty = True
            if cr0 & _CR0_PG:
                lvl = int(out[OUT_LEVEL])
                dirty = (out[OUT_TRACE + 3 * lvl + 2] & _D) != np.uint64(0)
            if access == ACC_WRITE or dirty:
                prot |= np.uint64(2)
        # Execute only on instruction fetches, so data pages stay fast (unicorn-2.1.4.md Q8).
        if access == ACC_FETCH and (perms & np.uint64(PERM_EXEC)):
            prot |= np.uint64(4)
        entry[0] = out[OUT_PADDR] & ~np.uint64(0xFFF)
        entry[1] = prot
        return True
    ctx[FILL_FAULTS] += np.uint64(1)
    ctx[FILL_VADDR] = vaddr
    ctx[FILL_ACCESS] = np.uint64(access)
    ctx[FILL_ERR] = out[OUT_ERR]
    ctx[FILL_LEVEL] = np.uint64(st)
    return False


# ------------------------------------------------------------------ translate, for Python

TRANSLATE_SIGNATURE = types.uint64(types.voidptr, types.voidptr)


def translate(args_ptr, out_ptr):
    """args: ram ptr, ram size, cr0, cr3, cr4, efer, vaddr, access, user, ac, set_ad."""
    a = carray(args_ptr, (11,), np.uint64)
    out = carray(out_ptr, (OUT_SIZE,), np.uint64)
    ram32 = carray(voidptr(a[0]), (a[1] // np.uint64(4),), np.uint32)
    return walk(ram32, a[1], a[2], a[3], a[4], a[5], a[6], int(a[7]), a[8] != np.uint64(0),
                a[9] != np.uint64(0), a[10] != np.uint64(0), out)  # fmt: skip


# ------------------------------------------------------------------ the whole tree


@njit(**OPTIONS)
def enumerate_tree(ram32, ram_size, cr0, cr3, cr4, efer, out):
    """Every mapped page as merged runs: rows of (vstart, pstart, size, page_size, flags).

    flags: bit0 writable, bit1 user, bit2 executable (NX clear), bit3 global, bit4 accessed,
    bit5 dirty. Runs merge when contiguous in both spaces with equal flags and page size.
    Returns the number of rows, or -1 when ``out`` is too small."""
    n = 0
    if not (cr0 & _CR0_PG):
        return 0
    long_mode = (efer & _EFER_LMA) != np.uint64(0)
    pae = (cr4 & _CR4_PAE) != np.uint64(0)
    nxe = (efer & _EFER_NXE) != np.uint64(0)
    cap = out.shape[0]
    if long_mode:
        l4 = cr3 & _ADDR_MASK
        for i4 in range(512):
            p4 = l4 + np.uint64(8 * i4)
            if p4 + np.uint64(8) > ram_size:
                break
            e4 = _entry(ram32, p4, True)
            if not (e4 & _P) or (e4 & _PS) or (e4 & _HIGH_RSVD) or (not nxe and (e4 & _XD)):
                continue
            l3 = e4 & _ADDR_MASK
            for i3 in range(512):
                p3 = l3 + np.uint64(8 * i3)
                if p3 + np.uint64(8) > ram_size:
                    break
                e3 = _entry(ram32, p3, True)
                if not (e3 & _P) or (e3 & _HIGH_RSVD) or (not nxe and (e3 & _XD)):
                    continue
                va3 = (np.uint64(i4) << np.uint64(39)) | (np.uint64(i3) << np.uint64(30))
                if i4 >= 256:
                    va3 |= np.uint64(0xFFFF000000000000)
                f3 = _flags(e4, nxe) & _flags(e3, nxe)
                if e3 & _PS:
                    if e3 & np.uint64(0x3FFFE000):
                        continue
                    n = _emit(out, n, cap, va3, e3 & _ADDR_MASK & ~np.uint64(0x3FFFFFFF),
                              np.uint64(1 << 30), f3 | _leaf_extra(e3))  # fmt: skip
                    if n < 0:
                        return -1
                    continue
                l2 = e3 & _ADDR_MASK
                for i2 in range(512):
                    p2 = l2 + np.uint64(8 * i2)
                    if p2 + np.uint64(8) > ram_size:
                        break
                    e2 = _entry(ram32, p2, True)
                    if not (e2 & _P) or (e2 & _HIGH_RSVD) or (not nxe and (e2 & _XD)):
                        continue
                    va2 = va3 | (np.uint64(i2) << np.uint64(21))
                    f2 = f3 & _flags(e2, nxe)
                    if e2 & _PS:
                        if e2 & np.uint64(0x1FE000):
                            continue
                        n = _emit(out, n, cap, va2, e2 & _ADDR_MASK & ~np.uint64(0x1FFFFF),
                                  np.uint64(1 << 21), f2 | _leaf_extra(e2))  # fmt: skip
                        if n < 0:
                            return -1
                        continue
                    l1 = e2 & _ADDR_MASK
                    if l1 + np.uint64(4096) > ram_size:
                        continue
                    base = l1 >> np.uint64(2)
                    for i1 in range(512):
                        lo = np.uint64(ram32[base + np.uint64(2 * i1)])
                        if not (lo & _P):
                            continue
                        e1 = lo | (np.uint64(ram32[base + np.uint64(2 * i1 + 1)]) << np.uint64(32))
                        if (e1 & _HIGH_RSVD) or (not nxe and (e1 & _XD)):
                            continue
                        va1 = va2 | (np.uint64(i1) << np.uint64(12))
                        n = _emit(out, n, cap, va1, e1 & _ADDR_MASK, np.uint64(4096),
                                  f2 & _flags(e1, nxe) | _leaf_extra(e1))  # fmt: skip
                        if n < 0:
                            return -1
    elif pae:
        for i3 in range(4):
            p3 = (cr3 & np.uint64(0xFFFFFFE0)) + np.uint64(8 * i3)
            e3 = _entry(ram32, p3, True)
            if not (e3 & _P):
                continue
            l2 = e3 & _ADDR_MASK
            for i2 in range(512):
                e2 = _entry(ram32, l2 + np.uint64(8 * i2), True)
                if not (e2 & _P) or (e2 & _HIGH_RSVD) or (not nxe and (e2 & _XD)):
                    continue
                va2 = (np.uint64(i3) << np.uint64(30)) | (np.uint64(i2) << np.uint64(21))
                f2 = _flags(e2, nxe)
                if e2 & _PS:
                    n = _emit(out, n, cap, va2, e2 & _ADDR_MASK & ~np.uint64(0x1FFFFF),
                              np.uint64(1 << 21), f2 | _leaf_extra(e2))  # fmt: skip
                    if n < 0:
                        return -1
                    continue
                l1 = e2 & _ADDR_MASK
                for i1 in range(512):
                    e1 = _entry(ram32, l1 + np.uint64(8 * i1), True)
                    if not (e1 & _P) or (e1 & _HIGH_RSVD) or (not nxe and (e1 & _XD)):
                        continue
                    n = _emit(out, n, cap, va2 | (np.uint64(i1) << np.uint64(12)), e1 & _ADDR_MASK,
                              np.uint64(4096), f2 & _flags(e1, nxe) | _leaf_extra(e1))  # fmt: skip
                    if n < 0:
                        return -1
    else:
        pse = (cr4 & _CR4_PSE) != np.uint64(0)
        l2 = cr3 & np.uint64(0xFFFFF000)
        for i2 in range(1024):
            e2 = np.uint64(ram32[(l2 >> np.uint64(2)) + np.uint64(i2)])
            if not (e2 & _P):
                continue
            va2 = np.uint64(i2) << np.uint64(22)
            f2 = _flags(e2, False)
            if pse and (e2 & _PS):
                pa = (e2 & np.uint64(0xFFC00000)) | ((e2 & np.uint64(0x1FE000)) << np.uint64(19))
                n = _emit(out, n, cap, va2, pa, np.uint64(1 << 22), f2 | _leaf_extra(e2))
                if n < 0:
                    return -1
                continue
            l1 = e2 & np.uint64(0xFFFFF000)
            for i1 in range(1024):
                e1 = np.uint64(ram32[(l1 >> np.uint64(2)) + np.uint64(i1)])
                if not (e1 & _P):
                    continue
                n = _emit(out, n, cap, va2 | (np.uint64(i1) << np.uint64(12)), e1 & np.uint64(0xFFFFF000),
                          np.uint64(4096), f2 & _flags(e1, False) | _leaf_extra(e1))  # fmt: skip
                if n < 0:
                    return -1
    return n


@njit(**OPTIONS)
def _flags(e, nxe):
    f = np.uint64(4)  # executable unless some level has XD
    if e & _RW:
        f |= np.uint64(1)
    if e & _US:
        f |= np.uint64(2)
    if nxe and (e & _XD):
        f &= ~np.uint64(4)
    return f


@njit(**OPTIONS)
def _leaf_extra(e):
    # global, accessed and dirty come from the leaf entry alone
    f = np.uint64(0)
    if e & np.uint64(0x100):
        f |= np.uint64(8)
    if e & _A:
        f |= np.uint64(16)
    if e & _D:
        f |= np.uint64(32)
    return f


@njit(**OPTIONS)
def _emit(out, n, cap, va, pa, size, flags):
    if n > 0:
        prev = n - 1
        if (
            out[prev, 0] + out[prev, 2] == va
            and out[prev, 1] + out[prev, 2] == pa
            and out[prev, 3] == size
            and out[prev, 4] == flags
        ):
            out[prev, 2] += size
            return n
    if n >= cap:
        return -1
    out[n, 0] = va
    out[n, 1] = pa
    out[n, 2] = size
    out[n, 3] = size
    out[n, 4] = flags
    return n + 1


ENUMERATE_SIGNATURE = types.int64(types.voidptr, types.voidptr, types.int64)


def enumerate_c(args_ptr, out_ptr, capacity):
    """args: ram ptr, ram size, cr0, cr3, cr4, efer; out: capacity x 5 uint64 rows."""
    a = carray(args_ptr, (6,), np.uint64)
    out = carray(out_ptr, (capacity, 5), np.uint64)
    ram32 = carray(voidptr(a[0]), (a[1] // np.uint64(4),), np.uint32)
    return enumerate_tree(ram32, a[1], a[2], a[3], a[4], a[5], out)
