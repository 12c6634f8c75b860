"""Compiled hooks that keep virtual time: a numba block hook counting retired instructions.

Virtual time is the number of instructions the guest retired (architecture.md, decision 5).
Unicorn's own ``count=`` costs about 60 % of the speed and a Python block hook is 10x slower
(unicorn-2.1.4.md Q6/Q8), so the count is kept by compiled code: at every translation-block
entry the block is looked up in a small open-addressing table (pc -> instruction count, filled
from Python with capstone) and its count added. The common case (the block counted last, no
stop due) is handled by ``clock/fastpath.py`` (LLVM IR, the cheapest shape); ``block_hook`` here
decides everything else. A block seen for the first time is recorded and the slice is stopped,
so Python can decode it and put it in the table. A stop requested from the hook takes effect
before the block runs (measured on 2.1.4), so slices end exactly on block boundaries and a block
is counted only when it is let through: deterministic, and exact at every stop.

Also here: ``armed_delivery`` (an armed timer interrupt delivered without stopping),
``out_hook`` (every OUT; the steady-state 8259 EOI of an armed PIT interrupt, and writes the
devices published as changing nothing, are taken without Python), ``in_hook`` (every IN; reads
the devices published ahead of time are answered from the port read table, emu/port_cache.py) and ``lapic_write_hook`` (every write to the local APIC; likewise its EOI of an armed
local APIC timer interrupt).

Everything the hooks need lives in one numpy ``uint64`` context array (``clock/layout.py``); it
holds no per-process constants, so the compiled code can be cached across runs.
"""

from __future__ import annotations

import numpy as np
from numba import carray, jit, types

from ..core.intrinsics import (
    call_ctl,
    call_in,
    call_mmio_write,
    call_out,
    call_ptr,
    call_ptr2,
    load16,
    load32,
    load64,
    store32,
    store64,
    voidptr,
)
from ..faults import kernels as delivery_kernels
from ..faults.layout import DA_VECTOR, DELIVERED, DO_OLD_HFLAGS, DO_WHY
from .layout import (  # noqa: F401 - re-exported for the tests and the core
    _CPU_CFLAGS_NEXT_TB,
    _EFLAGS_IF,
    _ENV_CS_BASE,
    _ENV_EFLAGS,
    _ENV_EIP,
    _ENV_HFLAGS,
    _ENV_RAX,
    _ENV_RCX,
    _ENV_RDX,
    _HF_CS32,
    _HF_CS64,
    _HF_INHIBIT_IRQ,
    _HF_PE,
    CTL_TLB_FLUSH,
    CTX_ARM_TIME,
    CTX_ARM_VECTOR,
    CTX_ARMED,
    CTX_ARMED_FN,
    CTX_BLOCKS_ABANDONED,
    CTX_BLOCKS_DROPPED,
    CTX_CACHE_COUNT,
    CTX_CACHE_PC,
    CTX_CACHE_WANT,
    CTX_CPU,
    CTX_CYCLES_DONE,
    CTX_DEADLINE,
    CTX_DELIVERED,
    CTX_DELIVERY_ARGS,
    CTX_DELIVERY_OUT,
    CTX_EDGE_COUNT,
    CTX_EDGE_INDEX,
    CTX_EDGES,
    CTX_EIP_ADDR,
    CTX_EMU_STOP,
    CTX_ENABLED,
    CTX_ENV,
    CTX_EOI_KIND,
    CTX_EXIT_EIP,
    CTX_EXIT_NOW,
    CTX_FAST_EOI_OK,
    CTX_FILL_CTX,
    CTX_ICOUNT,
    CTX_IN_SERVICE,
    CTX_INSN_POOL,
    CTX_IO_COUNT,
    CTX_IO_DUE,
    CTX_IO_PE_WATCH,
    CTX_IRQ_PENDING,
    CTX_LAST_INFO,
    CTX_LAST_PC,
    CTX_LIMIT,
    CTX_LOG,
    CTX_LOG_CAP,
    CTX_LOG_COUNT,
    CTX_LOOP_EXIT,
    CTX_MISS_BITS,
    CTX_MISS_FLAG,
    CTX_MISS_PC,
    CTX_MISS_SIZE,
    CTX_OTHER_EVENT,
    CTX_PIT,
    CTX_PORT_COUNTS,
    CTX_PORT_ENTRIES,
    CTX_PORT_NOOPS,
    CTX_PORT_QUEUE,
    CTX_PY_IN,
    CTX_PY_IO,
    CTX_PY_IO_BUDGET,
    CTX_PY_IO_COUNT,
    CTX_PY_MMIO_WRITE,
    CTX_PY_OUT,
    CTX_SIZE,
    CTX_SLICE_END,
    CTX_STOP_FLAGS,
    CTX_TABLE_INSNS,
    CTX_TABLE_KEYS,
    CTX_TABLE_MASK,
    CTX_TABLE_VALS,
    CTX_TAKE_BACK_FN,
    CTX_TAKE_BACK_WANT,
    CTX_TIME_OFFSET,
    CTX_TSC_READS,
    CTX_TSC_SCALE,
    CTX_UC_CTL,
    DROPPED_KEY,
    EMPTY_KEY,
    EOI_LAPIC,
    EOI_PIC,
    FILL_CODE_ADDED,
    INFO_COUNT_SHIFT,
    INFO_WANT_MASK,
    LOG_ICOUNT,
    LOG_STRIDE,
    PIT_ACCESS,
    PIT_HIGH_NEXT,
    PIT_HZ,
    PIT_IDLE_NS,
    PIT_LATCH_BYTES,
    PIT_LIVE,
    PIT_MHZ,
    PIT_MODE,
    PIT_PAUSED,
    PIT_PERIOD,
    PIT_READS,
    PIT_SIZE,
    PIT_START_TICK,
    PIT_STRIDE,
    PORT_ENTRY_UNMAPPED,
    PORT_NOOP_QUEUE,
    PORT_NOOP_VALID,
    PORT_QUEUE_CAP,
    PY_IO_CLOSED,
    PY_IO_OPEN,
    STOP_ARMED,
    STOP_DEADLINE,
    STOP_IRQ,
    STOP_LIMIT,
    STOP_MISS,
    VALUE_CUT_MASK,
    VALUE_CUT_SHIFT,
    VALUE_LAST_REPEATS,
    VALUE_WANT_MASK,
    pack_value,
)

_deliver = jit(nopython=True)(delivery_kernels.deliver)

BLOCK_HOOK_SIGNATURE = types.void(types.voidptr, types.uint64, types.uint32, types.voidptr)


def code_bits(hflags):
    """The code size QEMU translates for: 64, 32 or 16 (part of a block's key)."""
    if hflags & _HF_CS64:
        return np.uint64(64)
    if hflags & _HF_CS32:
        return np.uint64(32)
    return np.uint64(16)


_code_bits = jit(nopython=True)(code_bits)


def table_slot(ctx, address, want):
    """The block table's slot of the block at ``address`` with ``want`` (size and code size, as
    in its value), or EMPTY_KEY when the table does not hold it. Linear probing; the table is
    never more than half full, and probing goes on past a dropped entry."""
    mask = ctx[CTX_TABLE_MASK]
    keys = ctx[CTX_TABLE_KEYS]
    vals = ctx[CTX_TABLE_VALS]
    slot = ((address ^ (address >> np.uint64(17))) * np.uint64(0x9E3779B97F4A7C15)) & mask
    while True:
        key = load64(keys + slot * np.uint64(8))
        if key == EMPTY_KEY:
            return EMPTY_KEY
        value = load64(vals + slot * np.uint64(8))
        if key == address and (value >> np.uint64(16)) & np.uint64(VALUE_WANT_MASK) == want:
            return slot
        slot = (slot + np.uint64(1)) & mask


_table_slot = jit(nopython=True)(table_slot)


def take_back_abandoned(ctx, address, size):
    """A block of exactly one instruction of the block counted last is a store into that
    block's own code: QEMU abandoned the block at the store (what ran before it retired; the
    store did not) and runs the store alone next (``cflags_next_tb`` = 1), then the rest from
    the new bytes. The block was counted whole when it was entered, so the instructions from
    the store on are taken back here; the store's own block counts it.

    No block QEMU translates on its own is one instruction there: the counted block went on
    past that instruction, or ended at it for a reason that does not come back to it (a cut,
    the end of a page). The one exception is a last instruction that runs again at once (a jump
    to itself, a REP string instruction's next iteration: VALUE_LAST_REPEATS), which is taken
    as that, so a store by such an instruction into its own block stays counted whole. The
    block is known by its size, so this holds whether it is new or learned before (the case of
    an abandoned block that was that one instruction already is ``take_back_check``'s)."""
    info = ctx[CTX_LAST_INFO]
    counted = info >> np.uint64(INFO_COUNT_SHIFT)
    block = ctx[CTX_LAST_PC]
    slot = _table_slot(ctx, block, info & np.uint64(0xFFFFFF))
    if slot == EMPTY_KEY:
        return
    first = ctx[CTX_INSN_POOL] + load64(ctx[CTX_TABLE_INSNS] + slot * np.uint64(8)) * np.uint64(2)
    offset = address - block
    last = counted - np.uint64(1)
    for k in range(counted):
        at = np.uint64(load16(first + np.uint64(k) * np.uint64(2)))
        if at == offset:
            if k == last:
                value = load64(ctx[CTX_TABLE_VALS] + slot * np.uint64(8))
                if value & np.uint64(VALUE_LAST_REPEATS):
                    return
                end = info & np.uint64(0xFFFF)
            else:
                end = np.uint64(load16(first + np.uint64(k + 1) * np.uint64(2)))
            if end - at == np.uint64(size):
                ctx[CTX_ICOUNT] -= counted - np.uint64(k)
                ctx[CTX_LAST_INFO] = info & np.uint64(INFO_WANT_MASK)
                ctx[CTX_BLOCKS_ABANDONED] += np.uint64(1)
            return
        if at > offset:
            return


_take_back_abandoned = jit(nopython=True)(take_back_abandoned)


def take_back_check(ctx, address, want):
    """At a block entered at ``address`` inside the block counted last (rare: a jump back into
    its middle, a loop, or QEMU's block for a store that abandoned it): take back what did not
    retire when the block is that store's (``take_back_abandoned``). Such a block is one
    instruction, so a block the table knows as longer is not one. When the abandoned block was
    that one instruction already, the store's block is the same block again, of one instruction
    that cannot follow itself (VALUE_LAST_REPEATS clear); the block hook keeps such blocks out
    of the fast path's one-entry cache, so that they come here."""
    info = ctx[CTX_LAST_INFO]
    counted = info >> np.uint64(INFO_COUNT_SHIFT)
    last_size = info & np.uint64(0xFFFF)
    size = want & np.uint64(0xFFFF)
    if counted == np.uint64(0) or address - ctx[CTX_LAST_PC] >= last_size or size > np.uint64(15):
        return
    slot = _table_slot(ctx, address, want)
    value = np.uint64(0)
    if slot != EMPTY_KEY:
        value = load64(ctx[CTX_TABLE_VALS] + slot * np.uint64(8))
    if size < last_size:
        if slot == EMPTY_KEY or value & np.uint64(0xFFFF) == np.uint64(1):
            _take_back_abandoned(ctx, address, size)
    elif (
        address == ctx[CTX_LAST_PC] and counted == np.uint64(1) and slot != EMPTY_KEY
        and not value & np.uint64(VALUE_LAST_REPEATS)
    ):  # fmt: skip
        ctx[CTX_ICOUNT] -= np.uint64(1)
        ctx[CTX_LAST_INFO] = info & np.uint64(INFO_WANT_MASK)
        ctx[CTX_BLOCKS_ABANDONED] += np.uint64(1)


_take_back_check = jit(nopython=True)(take_back_check)

# uint64_t f(uint64_t address, void *ctx), called as f(void *, void *): the same registers
TAKE_BACK_SIGNATURE = types.uint64(types.uint64, types.voidptr)


def take_back_hook(address, user_data):
    """``take_back_check`` as a C function of its own: the block hook calls it through a
    pointer (CTX_TAKE_BACK_FN, the block's size and code size in CTX_TAKE_BACK_WANT), which
    keeps it out of the hook that runs at every block."""
    ctx = carray(user_data, (CTX_SIZE,), np.uint64)
    _take_back_check(ctx, address, ctx[CTX_TAKE_BACK_WANT])
    return np.uint64(0)


def cut_block(ctx, address, hflags, count):
    """The block entered at ``address`` does not run: the CPU loop starts again at its first
    instruction with a block of its first ``count`` instructions (cflags_next_tb), which the
    table learns like any other."""
    ctx[CTX_LAST_INFO] &= np.uint64(INFO_WANT_MASK)  # the block does not run
    env = ctx[CTX_ENV]
    cpu = ctx[CTX_CPU]
    store32(cpu + np.uint64(_CPU_CFLAGS_NEXT_TB), np.uint32(count))
    # the loop starts again at EIP: the block's first instruction (its linear address, less
    # the CS base outside 64-bit code)
    eip = address
    if not hflags & _HF_CS64:
        eip = (address - load64(env + np.uint64(_ENV_CS_BASE))) & np.uint64(0xFFFFFFFF)
    store64(env + np.uint64(_ENV_EIP), eip)
    call_ptr(ctx[CTX_LOOP_EXIT], voidptr(cpu))  # does not return


_cut_block = jit(nopython=True)(cut_block)


def block_hook(uc, address, size, user_data):
    """The whole decision at a block: stops, the block table, the armed interrupt, the count.
    Unicorn calls ``clock/fastpath.py``'s hook, which counts the common case itself and tail-calls
    this for everything else; this also works alone (the tests register it directly)."""
    ctx = carray(user_data, (CTX_SIZE,), np.uint64)
    if ctx[CTX_ENABLED] == 0:
        return
    hflags = load32(ctx[CTX_ENV] + np.uint64(_ENV_HFLAGS))
    if ctx[CTX_IRQ_PENDING]:
        # An external interrupt is taken at an instruction boundary with IF=1 outside the
        # STI/MOV SS shadow: stop before this block so the machine can deliver it.
        eflags = load64(ctx[CTX_ENV] + np.uint64(_ENV_EFLAGS))
        if (eflags & np.uint64(_EFLAGS_IF)) and not (hflags & np.uint32(_HF_INHIBIT_IRQ)):
            if address - ctx[CTX_LAST_PC] < ctx[CTX_LAST_INFO] & np.uint64(0xFFFF):
                # (the block counted last may have been abandoned: settle that first)
                bits = _code_bits(hflags)
                ctx[CTX_TAKE_BACK_WANT] = (np.uint64(size) & np.uint64(0xFFFF)) | (
                    bits << np.uint64(16)
                )
                call_ptr2(ctx[CTX_TAKE_BACK_FN], voidptr(address), user_data)
            ctx[CTX_LAST_INFO] &= np.uint64(INFO_WANT_MASK)  # the block did not run
            ctx[CTX_STOP_FLAGS] |= np.uint64(STOP_IRQ)
            call_ptr(ctx[CTX_EMU_STOP], uc)
            return
    bits = _code_bits(hflags)
    want = (np.uint64(size) & np.uint64(0xFFFF)) | (bits << np.uint64(16))
    count = np.uint64(0)
    found = False
    if address == ctx[CTX_CACHE_PC] and want == ctx[CTX_CACHE_WANT]:
        count = ctx[CTX_CACHE_COUNT]  # the same block again (a loop): no hashing
        found = True
    else:
        slot = _table_slot(ctx, address, want)
        if slot != EMPTY_KEY:
            value = load64(ctx[CTX_TABLE_VALS] + slot * np.uint64(8))
            count = value & np.uint64(0xFFFF)
            found = True
            if count == np.uint64(1):
                # Maybe QEMU's block for a store that abandoned the block counted last, if
                # inside it (take_back_check: out of line, as this hook runs at every block).
                # Unless its instruction can follow itself, such a block stays out of the
                # one-entry cache: the same block again is then the store's block, which must
                # come back here, not be counted by the fast path as a loop.
                if address - ctx[CTX_LAST_PC] < ctx[CTX_LAST_INFO] & np.uint64(0xFFFF):
                    ctx[CTX_TAKE_BACK_WANT] = want
                    call_ptr2(ctx[CTX_TAKE_BACK_FN], voidptr(address), user_data)
                if value & np.uint64(VALUE_LAST_REPEATS):
                    ctx[CTX_CACHE_PC] = address
                    ctx[CTX_CACHE_WANT] = want
                    ctx[CTX_CACHE_COUNT] = count
            else:
                split = (value >> np.uint64(VALUE_CUT_SHIFT)) & np.uint64(VALUE_CUT_MASK)
                if split != np.uint64(0) and split < count:
                    # cut before the instruction the table names (never in the one-entry
                    # cache, so that every run of the block comes here)
                    _cut_block(ctx, address, hflags, split)
                    return
                ctx[CTX_CACHE_PC] = address
                ctx[CTX_CACHE_WANT] = want
                ctx[CTX_CACHE_COUNT] = count
        elif address - ctx[CTX_LAST_PC] < ctx[CTX_LAST_INFO] & np.uint64(0xFFFF):
            # a new block inside the block counted last (as above)
            ctx[CTX_TAKE_BACK_WANT] = want
            call_ptr2(ctx[CTX_TAKE_BACK_FN], voidptr(address), user_data)
    ctx[CTX_LAST_PC] = address
    ctx[CTX_LAST_INFO] = want  # not counted (yet)
    if not found:
        # Python decodes the block once and counts this execution after the slice ends.
        ctx[CTX_MISS_PC] = address
        ctx[CTX_MISS_SIZE] = np.uint64(size)
        ctx[CTX_MISS_BITS] = bits
        ctx[CTX_MISS_FLAG] = np.uint64(1)
        ctx[CTX_STOP_FLAGS] |= np.uint64(STOP_MISS)
        call_ptr(ctx[CTX_EMU_STOP], uc)
        return
    # A block that would run past the deadline, the armed interrupt's time or the limit is
    # cut there: it does not run; the CPU loop starts again at its first instruction with a
    # block of just the instructions left (cflags_next_tb), which the table learns like any
    # other. Stops and deliveries then fall on their exact count, whatever blocks the code
    # was translated in, as a step would take them. (The table's count is QEMU's: tb_hook
    # drops an entry the guest's stores made stale. A stale one would loop here for ever: the
    # cut block QEMU translates would be the same block again.)
    icount = ctx[CTX_ICOUNT]
    cut = ctx[CTX_DEADLINE]
    if ctx[CTX_ARMED] and ctx[CTX_ARM_TIME] < cut:
        cut = ctx[CTX_ARM_TIME]
    if ctx[CTX_LIMIT] < cut:
        cut = ctx[CTX_LIMIT]
    if icount < cut and icount + count > cut:
        _cut_block(ctx, address, hflags, cut - icount)
        return
    # A stop requested here takes effect before the block runs (measured), so a block is
    # counted only when it is let through.
    if ctx[CTX_ICOUNT] >= ctx[CTX_DEADLINE]:
        ctx[CTX_STOP_FLAGS] |= np.uint64(STOP_DEADLINE)
        call_ptr(ctx[CTX_EMU_STOP], uc)
        return
    if ctx[CTX_ARMED] and ctx[CTX_ICOUNT] >= ctx[CTX_ARM_TIME]:
        eflags = load64(ctx[CTX_ENV] + np.uint64(_ENV_EFLAGS))
        if (eflags & np.uint64(_EFLAGS_IF)) and not (hflags & np.uint32(_HF_INHIBIT_IRQ)):
            # The armed timer interrupt, here and now (a separate function: this hook runs at
            # every block and must stay small).
            call_ptr2(ctx[CTX_ARMED_FN], uc, user_data)
            return
        # IF=0 (or the shadow): the edge raises IRQ 0 now all the same; stop so that the
        # devices take it at its own count, as the stop path does, and the guest sees it in
        # the IRR from the next instruction on
        ctx[CTX_STOP_FLAGS] |= np.uint64(STOP_DEADLINE)
        call_ptr(ctx[CTX_EMU_STOP], uc)
        return
    if ctx[CTX_ICOUNT] + count > ctx[CTX_LIMIT]:
        ctx[CTX_STOP_FLAGS] |= np.uint64(STOP_LIMIT)
        call_ptr(ctx[CTX_EMU_STOP], uc)
        return
    ctx[CTX_LAST_INFO] = want | (count << np.uint64(INFO_COUNT_SHIFT))
    ctx[CTX_ICOUNT] += count


# the uc_tb pointers as integers (the same register on x86-64): the hook loads through them
TB_HOOK_SIGNATURE = types.void(types.voidptr, types.uint64, types.uint64, types.voidptr)


def tb_hook(uc, cur_tb, prev_tb, user_data):
    """A block QEMU has just translated (``UC_HOOK_EDGE_GENERATED``, which 2.1.4 calls for
    every new translation, before it runs, with its pc, size and instruction count). A table
    entry under the same pc, size and code size that counts otherwise was learned from bytes
    the guest has since rewritten (QEMU translates again after a store into translated code):
    it is dropped, so the block hook misses and Python learns the block from its new bytes."""
    ctx = carray(user_data, (CTX_SIZE,), np.uint64)
    fill = ctx[CTX_FILL_CTX]
    if fill != np.uint64(0):
        added = fill + np.uint64(8 * FILL_CODE_ADDED)
        if load64(added):
            # the block was fetched from a page no code came from before: a write entry made
            # for it earlier has no execute rights, so its stores would skip Unicorn's check
            # for self-modifying code (mmu/kernels.py _code_rights). Translation is done, and
            # the block has not run: the TLB can go.
            store64(added, np.uint64(0))
            call_ctl(ctx[CTX_UC_CTL], uc, np.int32(CTL_TLB_FLUSH))
    address = load64(cur_tb)
    size = np.uint64(load16(cur_tb + np.uint64(10)))
    icount = np.uint64(load16(cur_tb + np.uint64(8)))
    hflags = load32(ctx[CTX_ENV] + np.uint64(_ENV_HFLAGS))  # the flags it was translated for
    slot = _table_slot(ctx, address, size | (_code_bits(hflags) << np.uint64(16)))
    if slot == EMPTY_KEY:
        return
    if load64(ctx[CTX_TABLE_VALS] + slot * np.uint64(8)) & np.uint64(0xFFFF) != icount:
        store64(ctx[CTX_TABLE_KEYS] + slot * np.uint64(8), DROPPED_KEY)
        ctx[CTX_CACHE_PC] = EMPTY_KEY
        ctx[CTX_BLOCKS_DROPPED] += np.uint64(1)


OUT_HOOK_SIGNATURE = types.void(
    types.voidptr, types.uint32, types.int32, types.uint32, types.voidptr
)


def eoi_rearm(ctx):
    """The EOI of the armed timer interrupt, in its steady state: the interrupt is done, and
    the next edge is armed from the table Python filled (or Python reschedules)."""
    ctx[CTX_IN_SERVICE] = np.uint64(0)
    ctx[CTX_CYCLES_DONE] += np.uint64(1)
    other = ctx[CTX_OTHER_EVENT]
    end = ctx[CTX_SLICE_END] if ctx[CTX_SLICE_END] < other else other
    idx = ctx[CTX_EDGE_INDEX] + np.uint64(1)
    if idx + np.uint64(1) < ctx[CTX_EDGE_COUNT] and ctx[CTX_LOG_COUNT] < ctx[CTX_LOG_CAP]:
        edge = load64(ctx[CTX_EDGES] + idx * np.uint64(8))
        after = load64(ctx[CTX_EDGES] + (idx + np.uint64(1)) * np.uint64(8))
        ctx[CTX_EDGE_INDEX] = idx
        if edge < end:
            ctx[CTX_ARM_TIME] = edge
            ctx[CTX_ARMED] = np.uint64(1)
            ctx[CTX_DEADLINE] = after if after < end else end
        else:
            ctx[CTX_DEADLINE] = end
    else:
        ctx[CTX_DEADLINE] = ctx[CTX_ICOUNT]  # the table is used up: Python reschedules


_eoi_rearm = jit(nopython=True)(eoi_rearm)


def port_table_open(ctx):
    """May the port read table answer now? Only where Python would not reschedule after the
    access either (``Scheduler.after_io``: before the earliest event, and not where entering
    protected mode could let the timer be armed) and no delivery awaits ``core.settle``."""
    icount = ctx[CTX_ICOUNT]
    if ctx[CTX_DELIVERED] or icount >= ctx[CTX_IO_DUE]:
        return False
    return not (
        ctx[CTX_IO_PE_WATCH] and load32(ctx[CTX_ENV] + np.uint64(_ENV_HFLAGS)) & np.uint32(_HF_PE)
    )


_port_table_open = jit(nopython=True)(port_table_open)


def pit_count(ctx, base):
    """The count of the published PIT channel at ``base`` in the PIT shadow, at the executing
    instruction (the readable model: devices/pit8254.py ``ticks_at`` and ``count_after``)."""
    pit = carray(voidptr(ctx[CTX_PIT]), (PIT_SIZE,), np.uint64)
    icount = _executing_count(ctx)
    mhz = pit[PIT_MHZ]
    if mhz == np.uint64(1000):
        now = icount + pit[PIT_IDLE_NS]
    else:
        now = icount * np.uint64(1000) // mhz + pit[PIT_IDLE_NS]
    ns = np.uint64(1_000_000_000)
    hz = np.uint64(PIT_HZ)
    tick = (now // ns) * hz + (now % ns) * hz // ns  # ticks_at, without overflowing 64 bits
    elapsed = pit[base + PIT_PAUSED] + (tick - pit[base + PIT_START_TICK])
    n = pit[base + PIT_PERIOD]
    mode = pit[base + PIT_MODE]
    if mode == np.uint64(3):
        return (n - (np.uint64(2) * elapsed) % n) & np.uint64(0xFFFF)
    if mode == np.uint64(2):
        return (n - elapsed % n) & np.uint64(0xFFFF)
    return (n - elapsed) & np.uint64(0xFFFF)


_pit_count = jit(nopython=True)(pit_count)


def pit_read(ctx, channel):
    """A byte read of a published PIT channel (the readable model: ``Pit8254.read``): the next
    latched byte, else the live count's byte its access mode gives."""
    pit = carray(voidptr(ctx[CTX_PIT]), (PIT_SIZE,), np.uint64)
    base = channel * np.uint64(PIT_STRIDE)
    reads = pit[base + PIT_READS]
    latched = reads & np.uint64(3)
    if latched:
        data = pit[base + PIT_LATCH_BYTES]
        pit[base + PIT_LATCH_BYTES] = data >> np.uint64(8)
        pit[base + PIT_READS] = (reads & ~np.uint64(3)) | (latched - np.uint64(1))
        return np.uint32(data & np.uint64(0xFF))
    count = _pit_count(ctx, base)
    access = pit[base + PIT_ACCESS]
    if access == np.uint64(1):
        return np.uint32(count & np.uint64(0xFF))
    if access == np.uint64(2):
        return np.uint32(count >> np.uint64(8))
    pit[base + PIT_READS] = reads ^ np.uint64(PIT_HIGH_NEXT)
    if reads & np.uint64(PIT_HIGH_NEXT):
        return np.uint32(count >> np.uint64(8))
    return np.uint32(count & np.uint64(0xFF))


_pit_read = jit(nopython=True)(pit_read)


def pit_latch(ctx, channel):
    """The counter latch command for a published PIT channel (the readable model:
    ``Pit8254._control``): the count latched in its access mode's bytes, unless a latch still
    waits to be read."""
    pit = carray(voidptr(ctx[CTX_PIT]), (PIT_SIZE,), np.uint64)
    base = channel * np.uint64(PIT_STRIDE)
    reads = pit[base + PIT_READS]
    if reads & np.uint64(3):
        return
    count = _pit_count(ctx, base)
    access = pit[base + PIT_ACCESS]
    if access == np.uint64(3):
        pit[base + PIT_LATCH_BYTES] = count
        pit[base + PIT_READS] = reads | np.uint64(2)
    elif access == np.uint64(1):
        pit[base + PIT_LATCH_BYTES] = count & np.uint64(0xFF)
        pit[base + PIT_READS] = reads | np.uint64(1)
    else:
        pit[base + PIT_LATCH_BYTES] = count >> np.uint64(8)
        pit[base + PIT_READS] = reads | np.uint64(1)


_pit_latch = jit(nopython=True)(pit_latch)


def pit_published(ctx, channel):
    """May the hooks take this access to PIT ``channel`` (0-2)? While Python published it and
    where the port read table may answer."""
    pit = ctx[CTX_PIT]
    if pit == np.uint64(0) or channel > np.uint64(2):
        return False
    live = load64(pit + (channel * np.uint64(PIT_STRIDE) + np.uint64(PIT_LIVE)) * np.uint64(8))
    return live != np.uint64(0) and _port_table_open(ctx)


_pit_published = jit(nopython=True)(pit_published)

IN_HOOK_SIGNATURE = types.uint32(types.voidptr, types.uint32, types.int32, types.voidptr)


def in_hook(uc, port, size, user_data):
    """Every IN. A byte read the port read table holds, before its entry's end (counted at the
    end of the block: never later than the exact instruction), is answered here, and so is a
    byte read of a PIT channel Python published (computed at the exact instruction); any other
    read goes to Python (the port bus), which publishes what it can for the next one."""
    ctx = carray(user_data, (CTX_SIZE,), np.uint64)
    if size == 1 and (port & np.uint32(0xFFFC)) == np.uint32(0x40):
        channel = np.uint64(port & np.uint32(3))
        if _pit_published(ctx, channel):
            counts = ctx[CTX_PORT_COUNTS]
            store64(counts, load64(counts) + np.uint64(1))
            return _pit_read(ctx, channel)
    table = ctx[CTX_PORT_ENTRIES]
    if size == 1 and table != 0 and _port_table_open(ctx):
        entry = table + (np.uint64(port) & np.uint64(0xFFFF)) * np.uint64(16)
        if ctx[CTX_ICOUNT] < load64(entry):
            value = load64(entry + np.uint64(8))
            counts = ctx[CTX_PORT_COUNTS]
            store64(counts, load64(counts) + np.uint64(1))
            if value & np.uint64(PORT_ENTRY_UNMAPPED):
                store64(counts + np.uint64(8), load64(counts + np.uint64(8)) + np.uint64(1))
            return np.uint32(value & np.uint64(0xFF))
    _pass_to_python(ctx)
    value = call_in(ctx[CTX_PY_IN], np.uint64(port), np.uint64(size))
    _python_io_done(ctx)
    return value


@jit(nopython=True, inline="always")
def _pass_to_python(ctx):
    """Before Python serves an IN or OUT: the clock at this instruction, and whether the port
    read table is open here (then Python, after an access that changed no timed device and no
    interrupt controller, need not ask the scheduler: ``Scheduler.after_quiet_io``)."""
    ctx[CTX_IO_COUNT] = _executing_count(ctx) + np.uint64(1)
    ctx[CTX_PY_IO] = np.uint64(PY_IO_OPEN) if _port_table_open(ctx) else np.uint64(PY_IO_CLOSED)


@jit(nopython=True, inline="always")
def _python_io_done(ctx):
    """After Python served an IN or OUT: count it, and end the slice at the next block when the
    slice has had its budget of them (fast-forward looks for a polling loop there). This
    comes after Python's own rescheduling, which rewrites the deadline."""
    ctx[CTX_IO_COUNT] = np.uint64(0)
    ctx[CTX_PY_IO] = np.uint64(0)
    n = ctx[CTX_PY_IO_COUNT] + np.uint64(1)
    ctx[CTX_PY_IO_COUNT] = n
    if n >= ctx[CTX_PY_IO_BUDGET]:
        ctx[CTX_DEADLINE] = np.uint64(0)


@jit(nopython=True, inline="always")
def _leave_if_asked(ctx):
    """After Python served an I/O instruction: if it asked the run to end right after it
    (EXIT_NOW: an OUT that ended the run or raised an interrupt the CPU takes next, a MOV to a
    device likewise, either of them bringing a device event into the block), the CPU state is
    exact here, so leave the CPU loop at the next instruction, not at the end of the block."""
    if ctx[CTX_EXIT_NOW]:
        ctx[CTX_EXIT_NOW] = np.uint64(0)
        store64(ctx[CTX_EIP_ADDR], ctx[CTX_EXIT_EIP])
        call_ptr(ctx[CTX_LOOP_EXIT], voidptr(ctx[CTX_CPU]))  # does not return


def out_hook(uc, port, size, value, user_data):
    """Every OUT. The EOI of an armed 8259 timer interrupt in its steady state is taken here
    (``eoi_rearm``), and so is a byte write the device published as changing nothing (the
    port read table's no-op writes), or as only handing the byte on (queued, while the queue
    has room: Python gives the device the queue before anything else reaches it), and a
    counter latch command for a PIT channel Python published. Any other OUT goes to Python
    (the port bus), which first catches up with what the hooks did."""
    ctx = carray(user_data, (CTX_SIZE,), np.uint64)
    if (
        ctx[CTX_IN_SERVICE] and ctx[CTX_EOI_KIND] == np.uint64(EOI_PIC)
        and port == np.uint32(0x20) and size == 1 and (value & 0xFF) == 0x20
    ):  # fmt: skip
        _eoi_rearm(ctx)
        return
    if (
        size == 1 and port == np.uint32(0x43) and (value & np.uint32(0x30)) == np.uint32(0)
        and _pit_published(ctx, np.uint64((value >> np.uint32(6)) & np.uint32(3)))
    ):  # fmt: skip
        # a counter latch command (a read-back is channel "3": never published)
        _pit_latch(ctx, np.uint64((value >> np.uint32(6)) & np.uint32(3)))
        counts = ctx[CTX_PORT_COUNTS] + np.uint64(16)
        store64(counts, load64(counts) + np.uint64(1))
        return
    noops = ctx[CTX_PORT_NOOPS]
    if size == 1 and noops != 0 and _port_table_open(ctx):
        want = np.uint64(PORT_NOOP_VALID) | np.uint64(value & 0xFF)
        noop = load64(noops + (np.uint64(port) & np.uint64(0xFFFF)) * np.uint64(8))
        if noop == want:
            counts = ctx[CTX_PORT_COUNTS] + np.uint64(16)
            store64(counts, load64(counts) + np.uint64(1))
            return
        if noop & np.uint64(PORT_NOOP_QUEUE):
            queued = ctx[CTX_PORT_COUNTS] + np.uint64(24)
            n = load64(queued)
            if n < np.uint64(PORT_QUEUE_CAP):
                item = (np.uint64(port) & np.uint64(0xFFFF)) << np.uint64(8)
                store64(ctx[CTX_PORT_QUEUE] + n * np.uint64(8), item | np.uint64(value & 0xFF))
                store64(queued, n + np.uint64(1))
                return
    _pass_to_python(ctx)
    call_out(ctx[CTX_PY_OUT], np.uint64(port), np.uint64(size), np.uint64(value))
    _python_io_done(ctx)
    _leave_if_asked(ctx)  # the OUT ended the run (Unicorn restored EIP and the flags state)


MMIO_WRITE_HOOK_SIGNATURE = types.void(
    types.voidptr, types.uint64, types.uint32, types.uint64, types.voidptr
)


def lapic_write_hook(uc, offset, size, value, user_data):
    """Every write to the local APIC's registers. The EOI (offset 0xB0) of an armed local APIC
    timer interrupt in its steady state is taken here (``eoi_rearm``); any other write goes to
    Python (the device), which first catches up with what the hooks did."""
    ctx = carray(user_data, (CTX_SIZE,), np.uint64)
    if (
        ctx[CTX_IN_SERVICE] and ctx[CTX_EOI_KIND] == np.uint64(EOI_LAPIC)
        and offset == np.uint64(0xB0) and size == np.uint32(4)
    ):  # fmt: skip
        _eoi_rearm(ctx)
        return
    call_out(ctx[CTX_PY_MMIO_WRITE], offset, np.uint64(size), value)
    _leave_if_asked(ctx)  # UnicornCore._after_mmio_store (Python restored EIP to the MOV)


def device_write_hook(uc, offset, size, value, user_data):
    """Every write to the registers of a device other than the local APIC (the I/O APIC, the
    HPET): Python (the device) first, then the exit a MOV asked for when its store raised an
    interrupt the CPU takes next (``UnicornCore._after_mmio_store``), as ``lapic_write_hook``
    does. ``user_data`` holds the clock context's address and the Python handler's."""
    device = carray(user_data, (2,), np.uint64)
    call_mmio_write(device[1], offset, np.uint64(size), value)
    _leave_if_asked(carray(voidptr(device[0]), (CTX_SIZE,), np.uint64))


ARMED_DELIVERY_SIGNATURE = types.uint64(types.voidptr, types.voidptr)


def armed_delivery(uc, user_data):
    """Deliver the armed timer interrupt at this block boundary: the compiled IDT delivery, the
    log entry for Python, then a restart of QEMU's CPU loop at the handler (the block the hook
    was called for does not run). If the delivery kernel declines, stop: Python delivers."""
    ctx = carray(user_data, (CTX_SIZE,), np.uint64)
    ctx[CTX_ARMED] = np.uint64(0)
    ctx[CTX_LAST_INFO] &= np.uint64(INFO_WANT_MASK)  # the block does not run
    n = ctx[CTX_LOG_COUNT]
    status = np.uint64(1 - DELIVERED)
    if n < ctx[CTX_LOG_CAP]:
        store64(ctx[CTX_DELIVERY_ARGS] + np.uint64(8 * DA_VECTOR), ctx[CTX_ARM_VECTOR])
        status = _deliver(voidptr(ctx[CTX_DELIVERY_ARGS]), voidptr(ctx[CTX_DELIVERY_OUT]))
    if status == np.uint64(DELIVERED):
        # log it for Python (core.settle): count, vector, hflags, then DO_* 1-6
        entry = ctx[CTX_LOG] + n * np.uint64(8 * LOG_STRIDE)
        out = ctx[CTX_DELIVERY_OUT]
        store64(entry + np.uint64(8 * LOG_ICOUNT), ctx[CTX_ICOUNT])
        store64(entry + np.uint64(8), ctx[CTX_ARM_VECTOR])
        store64(entry + np.uint64(16), load64(out + np.uint64(8 * DO_OLD_HFLAGS)))
        for k in range(1, DO_WHY):
            store64(entry + np.uint64(8 * (k + 2)), load64(out + np.uint64(8 * k)))
        ctx[CTX_LOG_COUNT] = n + np.uint64(1)
        ctx[CTX_DELIVERED] = np.uint64(1)
        ctx[CTX_IN_SERVICE] = ctx[CTX_FAST_EOI_OK]
        call_ptr(ctx[CTX_LOOP_EXIT], voidptr(ctx[CTX_CPU]))  # does not return
        return status
    ctx[CTX_STOP_FLAGS] |= np.uint64(STOP_ARMED)
    call_ptr(ctx[CTX_EMU_STOP], uc)
    return status


def executing_count(ctx):
    """The clock's count at the instruction executing now, from inside a hook: what retired
    before it. This is where a compiled hook asks the clock for the count (the readable model
    is ``UnicornCore.precise_icount``, which gives the same number): the block hook counted the
    block entered last as a whole, so its instructions from the executing one on are taken back,
    found by the instruction offsets the block was learned with. Outside a counted block (while
    stepping, after a partial block) the count is exact as it is."""
    info = ctx[CTX_LAST_INFO]
    count = info >> np.uint64(INFO_COUNT_SHIFT)
    icount = ctx[CTX_ICOUNT]
    if count == np.uint64(0) or ctx[CTX_ENABLED] == np.uint64(0):
        return icount
    before = icount - count
    block = ctx[CTX_LAST_PC]
    slot = _table_slot(ctx, block, info & np.uint64(0xFFFFFF))
    if slot == EMPTY_KEY:
        return before  # not learned (cannot happen for a counted block): as the model
    env = ctx[CTX_ENV]
    pc = load64(env + np.uint64(_ENV_EIP))
    if not load32(env + np.uint64(_ENV_HFLAGS)) & np.uint32(_HF_CS64):
        pc += load64(env + np.uint64(_ENV_CS_BASE))  # blocks are at linear addresses
    offset = pc - block
    first = ctx[CTX_INSN_POOL] + load64(ctx[CTX_TABLE_INSNS] + slot * np.uint64(8)) * np.uint64(2)
    lo = np.uint64(0)  # bisect_left over the block's instruction offsets
    hi = count
    while lo < hi:
        mid = (lo + hi) >> np.uint64(1)
        if load16(first + mid * np.uint64(2)) < offset:
            lo = mid + np.uint64(1)
        else:
            hi = mid
    return before + lo


_executing_count = jit(nopython=True)(executing_count)

TSC_HOOK_SIGNATURE = types.int32(types.voidptr, types.voidptr)


def read_tsc(ctx):
    """RDTSC's EDX:EAX: the TSC at the executing instruction, (count + idle ticks) * scale."""
    tsc = (_executing_count(ctx) + ctx[CTX_TIME_OFFSET]) * ctx[CTX_TSC_SCALE]
    ctx[CTX_TSC_READS] += np.uint64(1)
    env = ctx[CTX_ENV]
    store64(env + np.uint64(_ENV_RAX), tsc & np.uint64(0xFFFFFFFF))
    store64(env + np.uint64(_ENV_RDX), tsc >> np.uint64(32))


_read_tsc = jit(nopython=True)(read_tsc)


def rdtsc_hook(uc, user_data):
    """Every RDTSC: the virtual TSC in EDX:EAX, and Unicorn's host-time RDTSC skipped (the
    readable model is ``CpuInstructions._hook_rdtsc``)."""
    ctx = carray(user_data, (CTX_SIZE,), np.uint64)
    _read_tsc(ctx)
    return np.int32(1)


def rdtscp_hook(uc, user_data):
    """Every RDTSCP: as RDTSC, and ECX = IA32_TSC_AUX, which is 0 on our single CPU."""
    ctx = carray(user_data, (CTX_SIZE,), np.uint64)
    _read_tsc(ctx)
    store64(ctx[CTX_ENV] + np.uint64(_ENV_RCX), np.uint64(0))
    return np.int32(1)
