"""Layout of the context array shared by the compiled clock hook and Python.

Kept apart from ``clock/kernels.py`` so that the machine can use it without importing numba
(the compiled hook itself is usually loaded from the native cache, see ``native.py``).
"""

from __future__ import annotations

import numpy as np
from unicorn.unicorn_const import UC_CTL_TLB_FLUSH

from devices.pit8254 import PIT_HZ  # noqa: F401 - the hooks' input clock

from ..core import x86_layout as X86
from ..mmu import layout as ML

# Context array layout (uint64 slots).
CTX_ENV = 0  # address of CPUX86State env (reads hflags for the code size)
CTX_ICOUNT = 1  # instructions retired, counted at block entry
CTX_DEADLINE = 2  # stop the slice once ICOUNT reaches this
CTX_EMU_STOP = 3  # address of uc_emu_stop
CTX_TABLE_KEYS = 4  # address of the uint64 key array (block pc)
CTX_TABLE_VALS = 5  # address of the uint64 value array (see pack_value)
CTX_TABLE_MASK = 6  # number of table slots - 1 (a power of two minus one)
CTX_LAST_PC = 7  # pc of the block entered last
# ... its size (bits 0-15), code size (16-23) and, once it is counted, its instruction count
# (INFO_COUNT_SHIFT and up; 0: not counted, it did not run). Three stores per block at most: a
# fourth costs 17 % on long blocks (measured), so ICOUNT before the block is ICOUNT - count.
CTX_LAST_INFO = 8
# where each block's instructions start (RDTSC reads the count at its own instruction): per table
# slot, the index in the offset pool of the block's first instruction offset (uint64 array) ...
CTX_TABLE_INSNS = 9
CTX_INSN_POOL = 10  # ... and the pool: uint16 byte offsets from the block's start, ascending
CTX_MISS_PC = 11  # a block not in the table: its pc ...
CTX_MISS_SIZE = 12  # ... size in bytes ...
CTX_MISS_BITS = 13  # ... and code size; MISS_FLAG says whether these are valid
CTX_MISS_FLAG = 14
CTX_STOP_FLAGS = 15  # why the hook asked to stop (STOP_* bits)
CTX_ENABLED = 16  # 0 while single-stepping: Python counts instead
CTX_CACHE_PC = 17  # the block counted last (a loop's next lookup hits it): pc ...
CTX_LIMIT = 19  # hard limit: a block that would cross it is not entered
CTX_IRQ_PENDING = 20  # the interrupt controller signals INTR: stop where IF=1 and no shadow
CTX_CACHE_WANT = 21  # ... size and code size (as in the table's value) ...
CTX_CACHE_COUNT = 22  # ... and instruction count
# An armed timer interrupt (see Scheduler.schedule): delivered by the hook itself, compiled, at
# the first block boundary at or after ARM_TIME (and before DEADLINE) where IF=1 and no shadow.
CTX_ARMED = 23  # 1: deliver ARM_VECTOR from ARM_TIME on
CTX_ARM_TIME = 24
CTX_ARM_VECTOR = 25
CTX_DELIVERED = 26  # 1: the hook delivered some, Python has not caught up yet (core.settle)
CTX_LOG_COUNT = 27  # deliveries in the log since Python last looked
CTX_DELIVERY_ARGS = 28  # address of the delivery kernel's argument array (faults/layout.py DA_*)
CTX_DELIVERY_OUT = 29  # ... and of its result array (DO_*)
CTX_CPU = 30  # address of QEMU's CPUState, for cpu_loop_exit
CTX_LOOP_EXIT = 31  # address of cpu_loop_exit: restart the CPU loop at the handler
# The steady state of a periodic timer: when the PICs had nothing else requested or in service
# (FAST_EOI_OK), the handler's plain non-specific EOI (OUT 0x20 <- 0x20) is taken by the compiled
# OUT hook, which re-arms for the next PIT edge from a table Python filled, without Python.
CTX_FAST_EOI_OK = 32
CTX_IN_SERVICE = 33  # 1: the hook delivered the armed vector and its EOI has not come yet
CTX_CYCLES_DONE = 34  # EOIs the OUT hook took since Python last looked
CTX_LOG = 35  # address of the delivery log (LOG_* layout, LOG_CAP entries)
CTX_LOG_CAP = 36
CTX_EDGES = 37  # address of the next PIT edges (instruction counts)
CTX_EDGE_COUNT = 38
CTX_EDGE_INDEX = 39  # the edge armed now
CTX_OTHER_EVENT = 40  # the earliest event of every other device (instruction count)
CTX_SLICE_END = 41  # the slice's own end
CTX_PY_OUT = 42  # address of the Python OUT handler (a C callback), for every other OUT
CTX_ARMED_FN = 43  # address of clock/kernels.py armed_delivery (kept out of the hot hook)
CTX_BLOCK_FN = 44  # address of clock/kernels.py block_hook: everything but the common case
# An OUT that ends the run (isa-debug-exit, a reset request) ends it right after itself: Python
# sets EXIT_EIP to the next instruction's EIP and EXIT_NOW, the OUT hook writes env->eip and
# leaves the CPU loop instead of running the rest of the block.
CTX_EXIT_NOW = 45
CTX_EXIT_EIP = 46
CTX_EIP_ADDR = 47  # address of env->eip
# Which EOI ends the armed interrupt in its steady state: the 8259's (OUT 0x20 <- 0x20, taken by
# out_hook) or the local APIC's (a write to its EOI register, taken by lapic_write_hook).
CTX_EOI_KIND = 48
CTX_PY_MMIO_WRITE = 49  # address of the Python local APIC write handler (a C callback)
# The TSC (RDTSC, RDTSCP; clock/kernels.py tsc_hook): (count + TIME_OFFSET) * TSC_SCALE, where
# TIME_OFFSET is the idle time in ticks of the clock rate; TSC_READS counts the reads.
CTX_TIME_OFFSET = 50
CTX_TSC_SCALE = 51
CTX_TSC_READS = 52
CTX_BLOCKS_DROPPED = 55  # table entries clock/kernels.py tb_hook found stale and dropped
# The TLB-fill hook's context (0: QEMU's own page walker fills the TLB) and uc_ctl: tb_hook
# flushes the TLB when a page joined those code was fetched from (mmu/layout.py FILL_CODE_*)
CTX_FILL_CTX = 18
CTX_UC_CTL = 54
# blocks QEMU abandoned at a store into their own code, whose count the block hook took back
CTX_BLOCKS_ABANDONED = 53
FILL_CODE_ADDED = ML.FILL_CODE_ADDED
# uc_ctl's control word for UC_CTL_TLB_FLUSH, written, no arguments (UC_CTL_WRITE in unicorn.h)
CTL_TLB_FLUSH = UC_CTL_TLB_FLUSH | (1 << 30)
EOI_PIC = 0
EOI_LAPIC = 1
# The port read table (emu/port_cache.py): reads and writes the devices published ahead of time,
# answered by the compiled IN and OUT hooks without Python.
CTX_PORT_ENTRIES = 56  # address of the entries: (until, value) per port, uint64 each
CTX_PORT_NOOPS = 57  # address of the writes that change nothing: NOOP_VALID | value per port
CTX_PORT_COUNTS = 58  # address of the counts: reads answered, of them unmapped, writes dropped
CTX_PY_IN = 59  # address of the Python IN handler (a C callback), for every other IN
# The hooks answer only while Python would not reschedule after the access either
# (Scheduler.after_io): ICOUNT below IO_DUE, and, when IO_PE_WATCH is set, the CPU not yet
# in protected mode (entering it may let the timer be armed).
CTX_IO_DUE = 60
CTX_IO_PE_WATCH = 61
PORT_ENTRY_UNMAPPED = 1 << 8  # an entry of a port nobody decodes: counted as an unmapped read
PORT_NOOP_VALID = 1 << 8
# a port whose writes only hand the byte on (a UART's THR while it transmits): the OUT hook puts
# port << 8 | byte in the write queue, which Python hands to the device later, in order
PORT_NOOP_QUEUE = 1 << 9
# the write queue's address (PORT_QUEUE_CAP uint64 entries); its length: the counts' 4th word
CTX_PORT_QUEUE = 62
PORT_QUEUE_CAP = 4096
# the PIT's counters as counter latches and reads see them (PIT_* layout below, emu/port_cache.py):
# the compiled hooks take the latch commands and reads of a published channel, computing the
# count from the instruction count
CTX_PIT = 63
# clock/kernels.py take_back_hook (kept out of the hot hook), and the size and code size of the
# block it looks at (as the table's want)
CTX_TAKE_BACK_FN = 64
CTX_TAKE_BACK_WANT = 65
# While Python serves an IN or OUT the compiled hook passed on: 1 + the count at that instruction
# (``executing_count``), so that devices reading the clock there need not find it again in the
# block table (``UnicornCore.precise_icount``); 0 at every other time
CTX_IO_COUNT = 66
# The earliest device event at the last schedule, as an instruction count (NO_EVENT: none): an
# I/O write inside a block that brings it before the block's end ends the run right after itself
# (UnicornCore._event_in_block), so that the next block is cut at the event, as steps take it
CTX_EVENT_DUE = 67
NO_EVENT = 1 << 62  # CTX_EVENT_DUE when no device has an event to come
# The port accesses that reached Python in the running slice, and how many end it (the machine
# sets both per slice; fast-forward looks for a polling loop where the slice ends). The compiled
# IN and OUT hooks count what they pass on, Python (Scheduler.note_io) what reaches the port bus
# from elsewhere (BIOS services, MMIO).
CTX_PY_IO_COUNT = 68
CTX_PY_IO_BUDGET = 69
# While Python serves an IN or OUT the compiled hook passed on: PY_IO_OPEN when the port read
# table was open at it (``port_table_open``: Python would not reschedule after a quiet access
# either, so it skips asking), PY_IO_CLOSED when not; 0 at every other time (the access came
# from elsewhere: Python counts it and asks)
CTX_PY_IO = 70
PY_IO_CLOSED = 1
PY_IO_OPEN = 2
CTX_SIZE = 71


class ContextSlot:
    """An attribute that is one word of the clock context (its owner's ``_ctxv``), where the
    compiled hooks read and write it."""

    def __init__(self, slot: int, doc: str = "") -> None:
        self.slot = slot
        self.__doc__ = doc

    def __get__(self, owner, _type=None):
        return self if owner is None else owner._ctxv[self.slot]

    def __set__(self, owner, value: int) -> None:
        owner._ctxv[self.slot] = value


# The PIT shadow (uint64 words): per channel (PIT_STRIDE words from channel * PIT_STRIDE) ...
PIT_LIVE = 0  # 1: published (devices/pit8254.py CounterReads); the hooks own the two below
PIT_START_TICK = 1  # CounterReads.start_tick
PIT_PAUSED = 2
PIT_PERIOD = 3
PIT_MODE = 4
PIT_ACCESS = 5
PIT_READS = 6  # latched bytes still to be read (bits 0-1) | PIT_HIGH_NEXT
PIT_LATCH_BYTES = 7  # those bytes, the next in bits 0-7
PIT_STRIDE = 8
PIT_HIGH_NEXT = 4  # a live lohi read gives the high byte next
# ... then the clock: virtual ns = count * 1000 // MHZ + IDLE_NS
PIT_IDLE_NS = 3 * PIT_STRIDE
PIT_MHZ = PIT_IDLE_NS + 1
PIT_SIZE = PIT_MHZ + 1

# One delivery in the log.
LOG_ICOUNT = 0
LOG_VECTOR = 1
LOG_HFLAGS = 2
LOG_GATE_ADDRESS = 3  # then gate low, gate high, old RIP, old RSP, new RSP: DO_* 1-6
LOG_STRIDE = 9
LOG_ENTRIES = 1024
EDGE_ENTRIES = 256

INFO_COUNT_SHIFT = 40
INFO_WANT_MASK = (1 << INFO_COUNT_SHIFT) - 1

STOP_DEADLINE = 1
STOP_MISS = 2
STOP_LIMIT = 4
STOP_IRQ = 8
STOP_ARMED = 16  # the armed interrupt could not take the compiled path: Python delivers

EMPTY_KEY = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
# a dropped entry: never a block's pc, and not EMPTY_KEY, so probing goes on past it
DROPPED_KEY = np.uint64(0xFFFF_FFFF_FFFF_FFFE)

# what the hooks read of the CPU state
_HF_CS32 = X86.HF_CS32
_HF_CS64 = X86.HF_CS64
_ENV_HFLAGS = X86.ENV_HFLAGS
_ENV_EFLAGS = X86.ENV_EFLAGS
_EFLAGS_IF = X86.RFLAGS_IF
_HF_INHIBIT_IRQ = X86.HF_INHIBIT_IRQ
_HF_PE = X86.HF_PE
_ENV_EIP = X86.ENV_EIP
_ENV_CS_BASE = X86.ENV_SEGS + X86.SEG_CS * X86.SEG_SIZE + 8
_ENV_RAX = X86.ENV_REGS
_ENV_RCX = X86.ENV_REGS + 8
_ENV_RDX = X86.ENV_REGS + 16
_CPU_CFLAGS_NEXT_TB = X86.CPU_CFLAGS_NEXT_TB


VALUE_WANT_MASK = 0xFFFFFF  # of value >> 16: size and code size, what a lookup matches
# Where the block hook cuts the block before it runs (its instructions before that one; 0: no
# cut): on the stock library, before a CMPXCHG8B/16B that is not a block's first instruction,
# whose helper computes the flags from a stale cc_op there (docs/engine.md)
VALUE_CUT_SHIFT = 40
VALUE_CUT_MASK = 0xFFFF
# the block's last instruction may run again right after it, in a block of its own (a jump to
# itself, a REP string instruction's next iteration; clock/kernels.py take_back_abandoned)
VALUE_LAST_REPEATS = 1 << 56


def pack_value(icount: int, size: int, bits: int, cut: int = 0, last_repeats: bool = False) -> int:
    """Table value: instruction count (16 bits), block size (16 bits), code size (8 bits), the
    count to cut the block at (16 bits, VALUE_CUT_SHIFT; 0: none) and VALUE_LAST_REPEATS."""
    value = (icount & 0xFFFF) | ((size & 0xFFFF) << 16) | ((bits & 0xFF) << 32)
    value |= (cut & VALUE_CUT_MASK) << VALUE_CUT_SHIFT
    return value | (VALUE_LAST_REPEATS if last_repeats else 0)
