"""Layout of the arrays shared by the compiled interrupt delivery (``faults/kernels.py``) and
Python. Kept apart so the machine can use it without importing numba."""

from __future__ import annotations

# Arguments (uint64 slots).
DA_ENV = 0  # address of CPUX86State env
DA_RAM = 1  # address of guest RAM
DA_RAM_SIZE = 2
DA_VECTOR = 3
DA_UPDATE_HFLAGS = 4  # address of x86_update_hflags (recomputes CPL, CS64... from the caches)
DA_CC_COMPUTE_ALL = 5  # address of cpu_cc_compute_all (the lazily kept arithmetic flags)
DA_KIND = 6  # KIND_EXTERNAL, KIND_SOFTWARE (INT n/INT3/INTO: the gate's DPL is checked) or
#              KIND_EXCEPTION
DA_FLAGS = 7  # HAS_ERROR | HAS_CR2 | HAS_RETURN_RIP
DA_ERROR = 8  # the error code to push
DA_CR2 = 9  # the faulting address of a #PF, written to CR2 once delivered
DA_RETURN_RIP = 10  # where the handler returns (traps); else RIP, the interrupted instruction
DA_TRACK = 11  # address of the dirty-page tracker's context (mmu/layout.py TK_*), 0: none
DA_SIZE = 16

KIND_EXTERNAL = 0
KIND_SOFTWARE = 1
KIND_EXCEPTION = 2
HAS_ERROR = 1
HAS_CR2 = 2
HAS_RETURN_RIP = 4

# Results (uint64 slots).
DO_STATUS = 0  # DELIVERED, or FALLBACK: nothing was changed but A/D bits; use the Python model
DO_GATE_ADDRESS = 1  # linear address of the IDT entry
DO_GATE_LOW = 2  # its 16 raw bytes, as two little-endian qwords
DO_GATE_HIGH = 3
DO_OLD_RIP = 4
DO_OLD_RSP = 5
DO_NEW_RSP = 6  # where the frame ends (the handler's RSP)
DO_WHY = 7  # which check sent it to the Python model (FB_*), for the tests
DO_SCRATCH = 8  # room for a walk's per-level trace (mmu/kernels.py TRACE_SIZE slots)
DO_OLD_HFLAGS = 23  # hflags before delivery (mode and CPL for the trace)
DO_SIZE = 24

DELIVERED = 0
FALLBACK = 1

# Why the fast path declined (the Python model then delivers, or raises the fault it finds).
FB_REAL_MODE = 1  # CR0.PE=0: the interrupt vector table
FB_IDT_LIMIT = 2
FB_MEMORY = 3  # a walk failed, or an access crosses a page or leaves RAM
FB_GATE = 4  # not a present interrupt/trap gate (64-bit, or 32-bit in protected mode)
FB_SELECTOR = 5  # null, LDT or beyond the GDT limit
FB_CODE_SEGMENT = 6  # not a present (64-bit in long mode) code segment reachable from this CPL
FB_TSS = 7  # no TSS, the stack field is beyond its limit, or (32-bit) its SS is not valid
FB_VM86 = 8
FB_GATE_DPL = 9  # a software interrupt through a gate whose DPL is below the CPL: #GP
# protected mode, the interrupted code not flat 32-bit (a 16-bit code segment or a CS base):
# the trace names such a place by CS:IP or its linear address, which the log does not carry
FB_NOT_FLAT = 10
