"""The CPU core: one Unicorn x86-64 engine behind a narrow class.

The machine talks to ``UnicornCore`` only: load RAM, drop to GRUB's 32-bit protected mode,
run a slice up to a virtual-time deadline, single-step, read state without side effects.
Everything specific to Unicorn 2.1.4 (hook signatures, the boot recipe, where its sticky
fault state lives) stays in ``core/`` (unicorn-2.1.4.md, Q3-Q6, Q9). This file holds the
engine, its slices and its exact instruction count; the instruction hooks are in
``instructions.py`` and exception delivery in ``faults/raising.py``, both inherited.
"""

from __future__ import annotations

import bisect
import ctypes
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import capstone
import numpy as np
from unicorn import (
    UC_ARCH_X86,
    UC_CTL_TLB_FLUSH,
    UC_ERR_EXCEPTION,
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_OK,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_BLOCK,
    UC_HOOK_CODE,
    UC_HOOK_EDGE_GENERATED,
    UC_HOOK_INSN,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_WRITE,
    UC_HOOK_TLB_FILL,
    UC_MEM_WRITE,
    UC_MODE_64,
    UC_PROT_ALL,
    UC_TLB_CPU,
    UC_TLB_VIRTUAL,
    Uc,
    UcError,
)
from unicorn import x86_const as X

from firmware.bios import BiosBus, BiosRegs, BiosStop

from .. import engine as engine_library
from .. import mmu
from ..clock import fastpath as clock_fastpath
from ..clock import layout as K
from ..errors import EmuError, EngineError, InternalError
from ..faults import layout as DL
from ..faults.delivery import DeliveryResult, Event
from ..faults.raising import (  # noqa: F401 - re-exported: the machine's and the tests' names
    ERROR_CODE_VECTORS,
    ExceptionRaising,
    FastDelivery,
    GuestException,
)
from ..memory import SINK_PAGE, PhysicalMemory
from ..mmu import layout as ML
from . import internals as I
from . import native
from .cpu_state import GPR_NAMES, SEGMENT_NAMES, CpuState, Segment, cpu_mode
from .instructions import CpuInstructions, _native_cpuid_leaf1
from .stops import (  # noqa: F401 - re-exported with the core
    KIND_BIOS_HALT,
    KIND_BIOS_WAIT,
    KIND_BREAKPOINT,
    KIND_DEADLINE,
    KIND_EXCEPTION,
    KIND_HALT,
    KIND_IRQ,
    KIND_LIMIT,
    KIND_REQUESTED,
    KIND_TRIPLE_FAULT,
    KIND_UNMAPPED,
    KIND_UNSUPPORTED,
    KIND_WATCHPOINT,
    SliceEnd,
)

log = logging.getLogger(__name__)

# Never reached: a non-canonical address, so no guest code can sit there.
# emu_start's `until`: never executed (non-canonical). Every emu_start ends by translating
# until-1 to invalidate its TB; the TLB-fill hook answers that one probe (FILL_PROBE_PAGE)
# instead of refusing it. (Unicorn's exit lists avoid the probe but halve the speed.)
_UNTIL = 0x8000_0000_0000_0001

_GPR_IDS = {name: getattr(X, f"UC_X86_REG_{name.upper()}") for name in GPR_NAMES}

MSR_EFER = 0xC0000080
# int (*)(uc_engine*, void*): the RDTSC/RDTSCP/CPUID hook type; returning 1 skips the instruction.
_INSN_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_OUT_CB = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint32)
# uint32_t (*)(uint32_t port, int32_t size): the IN the compiled hook hands to Python
_IN_CB = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_uint32, ctypes.c_int32)
# uint64_t (*)(uc_engine*, uint64_t offset, unsigned size, void *user_data): an MMIO read
_MMIO_READ_CB = ctypes.CFUNCTYPE(
    ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_void_p
)
# void (*)(uint64_t offset, uint32_t size, uint64_t value): a device's MMIO write, from the
# compiled hook (clock/kernels.py device_write_hook)
_MMIO_WRITE_CB = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint64)
_TABLE_SLOTS = 1 << 14
# legacy prefixes (lock/rep, segment, operand and address size)
_PREFIXES = frozenset((0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67))


# Stock Unicorn 2.1.4 calls the CMPXCHG8B/16B helpers without syncing the translator's cc_op,
# so they compute RFLAGS from the previous instruction's stale state when one of the same block
# set flags (the counting engine's patch fixes it): on the stock library the block hook cuts a
# block before such an instruction, which then starts a block of its own (docs/engine.md)
_CMPXCHG_WIDE = frozenset(("cmpxchg8b", "cmpxchg16b"))


def _may_repeat(mnemonic: str) -> bool:
    """Whether an instruction (capstone's mnemonic) can run again right after itself, in a block
    of its own: a control transfer (to itself), a REP string instruction (its next iteration).
    An unknown instruction is taken as one that can."""
    return mnemonic.startswith("rep") or mnemonic.rpartition(" ")[2].startswith(_TRANSFERS)


_TRANSFERS = ("j", "loop", "call", "ret", "iret", "int", "sys", "lcall", "ljmp", "lret", "ud")


def _is_prefix(byte: int, bits: int) -> bool:
    """A legacy prefix, or a REX prefix in 64-bit code."""
    return byte in _PREFIXES or (bits == 64 and 0x40 <= byte <= 0x4F)


# env words precise_icount reads (as indexes into 64- or 32-bit views of env)
_EIP_SLOT = I.ENV_EIP // 8
_HFLAGS_SLOT = I.ENV_HFLAGS // 4
_CS_BASE_SLOT = (I.ENV_SEGS + I.SEG_CS * I.SEG_SIZE + 8) // 8
# the clock context slots precise_icount reads (module constants: cheaper than K.* lookups)
_LAST_INFO, _LAST_PC, _ENABLED, _ICOUNT = (
    K.CTX_LAST_INFO,
    K.CTX_LAST_PC,
    K.CTX_ENABLED,
    K.CTX_ICOUNT,
)
_COUNT_SHIFT = K.INFO_COUNT_SHIFT
_IO_COUNT = K.CTX_IO_COUNT


@dataclass
class _BlockInfo:
    insns: tuple[int, ...]  # start address of every instruction in the block


@dataclass
class UnicornCore(CpuInstructions, ExceptionRaising):
    """Owns the engine, guest RAM mapping and the compiled clock hook."""

    ram: np.ndarray
    port_read: Callable[[int, int], int]
    port_write: Callable[[int, int, int], None]
    # RDTSC and RDTSCP: "compiled" (clock/kernels.py rdtsc_hook, about 0.1 us) or "python"
    # (CpuInstructions._hook_rdtsc, the readable model the tests compare it with)
    tsc_hook: str = "compiled"
    # Deliver exceptions through the guest IDT (True) or stop at the first one (False).
    deliver_exceptions: bool = True
    # Called after every delivery attempt: (event, exception as raised, delivery result).
    on_delivery: Callable[[Event, GuestException, DeliveryResult], None] | None = None
    on_fast_delivery: Callable[[FastDelivery], None] | None = None
    # the armed interrupts the clock hook delivered (rows of its log, clock/layout.py LOG_*:
    # instruction count, then the FastDelivery values) and whether the last one's EOI came: the
    # machine catches its devices up (INTA) and records them, before any other Python sees the guest
    on_armed_delivery: Callable[[np.ndarray, bool], None] | None = None
    after_io: Callable[[], None] | None = None  # after every IN/OUT: the machine reschedules
    # Translates a linear address for supervisor delivery accesses when paging is on:
    # (linear, write) -> physical, raising MemoryFault. Set by the machine (our MMU).
    translate: Callable[[int, bool], int] | None = None
    # "virtual": our page walker answers every TLB miss (the design); "cpu": Unicorn's own
    # walker (the differential oracle of the MMU tests).
    tlb: str = "virtual"
    # The physical address space (RAM, ROM, device memory, MMIO, unassigned space); None: RAM
    # alone at 0, and an access anywhere else stops the run.
    memory: PhysicalMemory | None = None
    # Which BIOS vector the ROM stub at a linear address traps to (firmware/pc_bios.py), if any.
    bios_stub_at: Callable[[int], int | None] | None = None
    # Serves a BIOS call at a stub (firmware/bios/: BiosServices.call): (vector, the caller's
    # registers, the bus) -> None to return to the caller, or a BiosStop. None: no services,
    # a call stops the run.
    bios_service: Callable[[int, BiosRegs, BiosBus], BiosStop | None] | None = None
    # The CPU: "qemu64" (QEMU 7.2's -cpu qemu64 without SVM and APIC, docs/platform.md) or
    # "unicorn" (Unicorn's own Haswell model, its MSRs and reset flags; CPUID hides the APIC).
    cpu_model: str = "qemu64"
    # The local APIC (devices/lapic.py), set by the machine: RDMSR and WRMSR of IA32_APIC_BASE
    # reach it, and CPUID shows the APIC bit while it is enabled. None: no APIC.
    apic: Any = None
    # The Unicorn library: "counting" (the counting engine, docs/engine.md), "stock" (the
    # unicorn wheel's), None or "auto": $TRIPLEFAULT_ENGINE, else the counting engine when it is
    # built. One per process: the first core fixes it; afterwards, the one it runs on.
    engine: str | None = None
    # The checkpoints' dirty-page tracker (emu/dirty_pages.py, ``track_pages``); None: none.
    pages: Any = field(init=False, default=None)
    uc: Uc = field(init=False)
    internals: I.EngineInternals = field(init=False)
    ctx: np.ndarray = field(init=False)
    blocks: dict[tuple[int, int, int], _BlockInfo] = field(init=False, default_factory=dict)
    # precise_icount's last lookup in ``blocks``: (CTX_LAST_PC, CTX_LAST_INFO) -> its block (a
    # polling loop asks for the same block at every access); reset whenever ``blocks`` changes
    _recent_block: tuple[int, int, _BlockInfo | None] = field(init=False, default=(-1, -1, None))

    def __post_init__(self) -> None:
        if self.ram.dtype != np.uint8 or not self.ram.flags.c_contiguous:
            raise EngineError("guest RAM must be one contiguous uint8 buffer")
        self.engine = engine_library.use(self.engine)  # before the first Uc of the process
        self._cut_cmpxchg = self.engine == "stock"  # _CMPXCHG_WIDE
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        # Unicorn does not own this buffer: self.ram keeps it alive (unicorn-2.1.4.md Q9).
        if self.memory is None:
            self.uc.mem_map_ptr(0, self.ram.size, UC_PROT_ALL, self.ram.ctypes.data)
        self.internals = I.locate(self.uc)
        if self.tlb not in ("virtual", "cpu"):
            raise EngineError(f"unknown TLB mode {self.tlb!r} (virtual or cpu)")
        self.uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL if self.tlb == "virtual" else UC_TLB_CPU)
        if self.memory is not None:
            self.memory.install(self.uc, self._access_point)
        self._stop: SliceEnd | None = None
        self._hook_error: BaseException | None = None
        self._device_mmio_keep: list[tuple] = []  # device_mmio's callbacks, kept alive
        self._stepping = False
        self._breakpoints: dict[int, int] = {}  # address -> hook handle
        self._watchpoints: dict[tuple[int, int, str], int] = {}  # (address, size, kind) -> hook
        self.watch_armed = True  # False while the machine replays up to a watchpoint hit
        self.watch_hits: list[tuple[int, int, int, str]] = []  # (address, size, value, kind)
        self.break_vectors: set[int] = set()  # exceptions that stop the run before delivery
        self._pending_exception: tuple[GuestException, int | None] | None = None
        self._raised_fault = False  # the last step delivered a fault (no instruction retired)
        self._step_counted = False  # ... or a trap, which counted the step's instruction
        self._device_buffers: list[np.ndarray] = []
        self._resume_from: int | None = None  # a breakpoint to step over when resuming
        self._step_from = 0  # RIP at the start of the step in progress (step)
        self._disasm = {
            bits: capstone.Cs(capstone.CS_ARCH_X86, mode)
            for bits, mode in (
                (16, capstone.CS_MODE_16),
                (32, capstone.CS_MODE_32),
                (64, capstone.CS_MODE_64),
            )
        }
        self._cflags_next_tb = ctypes.c_uint32.from_address(
            self.internals.env - I.CPU_TO_ENV + I.CPU_CFLAGS_NEXT_TB
        )
        self._init_clock()
        self._install_hooks()
        self._init_fast_delivery()
        self._init_cpu_identity()  # before any code is translated

    # ----------------------------------------------------------------- setup
    def _init_clock(self) -> None:
        # the start of env as 64- and 32-bit words: ``precise_icount`` reads EIP, hflags and
        # the CS base at every port access that reads the clock (ctypes costs 4x as much)
        head = (ctypes.c_uint64 * (_CS_BASE_SLOT + 1)).from_address(self.internals.env)
        self._env64 = memoryview(head).cast("B").cast("Q")
        self._env32 = memoryview(head).cast("B").cast("I")
        self.ctx = np.zeros(K.CTX_SIZE, np.uint64)
        self.ctx[K.CTX_EVENT_DUE] = K.NO_EVENT  # until the machine first schedules
        self.ctx[K.CTX_PY_IO_BUDGET] = K.NO_EVENT  # no port access ends a slice, unless asked
        self._ctxv = memoryview(self.ctx)  # Python ints, faster than numpy scalars
        self._alloc_table(_TABLE_SLOTS)
        self.ctx[K.CTX_ENV] = self.internals.env
        self.ctx[K.CTX_EMU_STOP] = I.function_address("uc_emu_stop")
        self.ctx[K.CTX_ENABLED] = 1
        self.ctx[K.CTX_DEADLINE] = np.uint64(2**63)
        self.ctx[K.CTX_LIMIT] = np.uint64(2**63)
        self.ctx[K.CTX_TSC_SCALE] = 1

    # The TSC's state lives in the clock context, where the compiled RDTSC hook reads it.
    time_offset = K.ContextSlot(
        K.CTX_TIME_OFFSET,
        """TSC ticks of the virtual time spent halted (HLT skips time, not instructions); the
        TSC ticks once per instruction, at the machine's clock rate.""",
    )
    tsc_per_instruction = K.ContextSlot(K.CTX_TSC_SCALE)
    tsc_reads = K.ContextSlot(
        K.CTX_TSC_READS, "RDTSC and RDTSCP executed (fast-forward skips no loop that reads it)."
    )

    def _alloc_table(self, slots: int, pool: np.ndarray | None = None) -> None:
        self._keys = np.full(slots, K.EMPTY_KEY, np.uint64)
        self._vals = np.zeros(slots, np.uint64)
        self._insns_at = np.zeros(slots, np.uint64)  # the block's offsets in the pool
        self._table_used = 0
        if pool is None:
            pool, self._pool_used = np.zeros(_TABLE_SLOTS * 8, np.uint16), 0
        self._set_pool(pool)
        self.ctx[K.CTX_TABLE_KEYS] = self._keys.ctypes.data
        self.ctx[K.CTX_TABLE_VALS] = self._vals.ctypes.data
        self.ctx[K.CTX_TABLE_INSNS] = self._insns_at.ctypes.data
        self.ctx[K.CTX_TABLE_MASK] = slots - 1
        self.ctx[K.CTX_CACHE_PC] = K.EMPTY_KEY

    def _set_pool(self, pool: np.ndarray) -> None:
        self._pool = pool
        self.ctx[K.CTX_INSN_POOL] = pool.ctypes.data

    def _table_insert(
        self,
        pc: int,
        size: int,
        bits: int,
        insns: tuple[int, ...],
        cut: int = 0,
        last_repeats: bool = True,
    ) -> None:
        """Put a learned block in the table the compiled hooks read: its count, the count to
        cut it at before it runs (0: none), whether its last instruction may run again right
        after it (``_may_repeat``), and the byte offsets of its instructions (for the count at
        an instruction inside it)."""
        if (self._table_used + 1) * 2 > self._keys.size:
            old = [
                (int(k), int(v), int(a))
                for k, v, a in zip(self._keys, self._vals, self._insns_at, strict=True)
            ]
            self._alloc_table(self._keys.size * 2, self._pool)
            for k, v, a in old:
                if k not in (int(K.EMPTY_KEY), int(K.DROPPED_KEY)):
                    self._table_put(k, v, a)
        at = self._pool_used
        if at + len(insns) > self._pool.size:
            grown = np.zeros(max(self._pool.size * 2, at + len(insns)), np.uint16)
            grown[:at] = self._pool[:at]
            self._set_pool(grown)
        self._pool[at : at + len(insns)] = [a - pc for a in insns]
        self._pool_used = at + len(insns)
        self._table_put(pc, K.pack_value(len(insns), size, bits, cut, last_repeats), at)
        self.ctx[K.CTX_CACHE_PC] = K.EMPTY_KEY  # the hook's one-entry cache may hold this block

    def _table_put(self, key: int, value: int, insns_at: int) -> None:
        mask = self._keys.size - 1
        slot = (((key ^ (key >> 17)) * 0x9E3779B97F4A7C15) & 0xFFFF_FFFF_FFFF_FFFF) & mask
        while int(self._keys[slot]) != int(K.EMPTY_KEY):
            if (
                int(self._keys[slot]) == key
                and (int(self._vals[slot]) >> 16) & K.VALUE_WANT_MASK
                == (value >> 16) & K.VALUE_WANT_MASK
            ):
                self._vals[slot] = value
                self._insns_at[slot] = insns_at
                return
            slot = (slot + 1) & mask
        self._keys[slot] = key
        self._vals[slot] = value
        self._insns_at[slot] = insns_at
        self._table_used += 1

    def _install_hooks(self) -> None:
        uc = self.uc
        # the IR fast path counts the common case and tail-calls the numba hook for the rest
        full = native.load("emu.clock.kernels", "block_hook", "BLOCK_HOOK_SIGNATURE")
        self.ctx[K.CTX_BLOCK_FN] = full.address
        self._add_raw_hook(UC_HOOK_BLOCK, clock_fastpath.load().address, self.ctx.ctypes.data)
        # every new translation: drops a table entry the guest's own stores made stale
        tb = native.load("emu.clock.kernels", "tb_hook", "TB_HOOK_SIGNATURE")
        self._add_raw_hook(UC_HOOK_EDGE_GENERATED, tb.address, self.ctx.ctypes.data)
        # The Python binding cannot hook RDTSC: the compiled hooks, or the model's ctypes
        # callbacks, are registered directly.
        if self.tsc_hook == "compiled":
            for func, insn in (("rdtsc_hook", X.UC_X86_INS_RDTSC),
                               ("rdtscp_hook", X.UC_X86_INS_RDTSCP)):  # fmt: skip
                hook = native.load("emu.clock.kernels", func, "TSC_HOOK_SIGNATURE")
                self._add_raw_hook(UC_HOOK_INSN, hook.address, self.ctx.ctypes.data,
                                   ctypes.c_int(insn))  # fmt: skip
        elif self.tsc_hook == "python":
            self._rdtsc_cb = _INSN_CB(self._hook_rdtsc)
            self._rdtscp_cb = _INSN_CB(self._hook_rdtscp)
            for cb, insn in (
                (self._rdtsc_cb, X.UC_X86_INS_RDTSC),
                (self._rdtscp_cb, X.UC_X86_INS_RDTSCP),
            ):
                addr = ctypes.cast(cb, ctypes.c_void_p).value
                self._add_raw_hook(UC_HOOK_INSN, addr, 0, ctypes.c_int(insn))
        else:
            raise EngineError(f"unknown TSC hook {self.tsc_hook!r} (compiled or python)")
        if self.tlb == "virtual":
            self.fill_ctx = np.zeros(ML.FILL_SIZE, np.uint64)
            self.fill_ctx[ML.FILL_ENV] = self.internals.env
            self.fill_ctx[ML.FILL_RAM] = self.ram.ctypes.data
            self.fill_ctx[ML.FILL_RAM_SIZE] = self.ram.size
            self._fill_out = np.zeros(ML.OUT_SIZE, np.uint64)  # the hook's scratch space
            self.fill_ctx[ML.FILL_OUT] = self._fill_out.ctypes.data
            self.fill_ctx[ML.FILL_PROBE_PAGE] = (_UNTIL - 1) & ~0xFFF
            self._set_rom_ranges()
            # the pages code was fetched from (mmu/kernels.py _code_rights), and what tb_hook
            # needs to flush the TLB when one joins
            self._code_pages = np.zeros(self.ram.size >> 12, np.uint8)
            self.fill_ctx[ML.FILL_CODE_PAGES] = self._code_pages.ctypes.data
            self.ctx[K.CTX_FILL_CTX] = self.fill_ctx.ctypes.data
            self.ctx[K.CTX_UC_CTL] = I.function_address("uc_ctl")
            fill = native.load("emu.mmu.kernels", "tlb_fill", "TLB_FILL_SIGNATURE")
            self._add_raw_hook(UC_HOOK_TLB_FILL, fill.address, self.fill_ctx.ctypes.data)
        # IN goes through a compiled hook that answers the reads the devices published in the
        # port read table (emu/port_cache.py) and hands every other IN to Python through this
        # C callback (which also costs less than the binding's own hook: 0.6 us against 1.4)
        self._in_cb = _IN_CB(self._hook_in_c)
        self.ctx[K.CTX_PY_IN] = ctypes.cast(self._in_cb, ctypes.c_void_p).value
        in_hook = native.load("emu.clock.kernels", "in_hook", "IN_HOOK_SIGNATURE")
        self._add_raw_hook(
            UC_HOOK_INSN, in_hook.address, self.ctx.ctypes.data, ctypes.c_int(X.UC_X86_INS_IN)
        )
        # OUT goes through a compiled hook that takes the EOI of an armed timer interrupt
        # itself and hands every other OUT to Python through this C callback.
        self._out_cb = _OUT_CB(self._hook_out_c)
        self.ctx[K.CTX_PY_OUT] = ctypes.cast(self._out_cb, ctypes.c_void_p).value
        out_hook = native.load("emu.clock.kernels", "out_hook", "OUT_HOOK_SIGNATURE")
        self._add_raw_hook(
            UC_HOOK_INSN, out_hook.address, self.ctx.ctypes.data, ctypes.c_int(X.UC_X86_INS_OUT)
        )
        self._cpuid_leaf1 = _native_cpuid_leaf1()
        uc.hook_add(UC_HOOK_INSN, self._hook_cpuid, None, 1, 0, X.UC_X86_INS_CPUID)
        uc.hook_add(UC_HOOK_INSN, self._hook_syscall, None, 1, 0, X.UC_X86_INS_SYSCALL)
        uc.hook_add(UC_HOOK_INSN, self._hook_sysenter, None, 1, 0, X.UC_X86_INS_SYSENTER)
        uc.hook_add(UC_HOOK_INTR, self._hook_intr)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._hook_invalid)
        # No UC_HOOK_MEM_UNMAPPED: its mere presence slows every memory access about 3x
        # (measured); an access outside RAM ends emu_start with an error instead.

    def _add_raw_hook(self, htype: int, callback: int, user_data: int, *extra: object) -> None:
        handle = ctypes.c_size_t()
        err = I._lib().uc_hook_add(
            self.uc._uch,
            ctypes.byref(handle),
            htype,
            ctypes.c_void_p(callback),
            ctypes.c_void_p(user_data),
            ctypes.c_uint64(1),
            ctypes.c_uint64(0),
            *extra,
        )
        if err != UC_ERR_OK:
            raise EngineError(f"cannot install a CPU hook (type {htype}, unicorn error {err})")

    # ----------------------------------------------------------------- hooks
    # ------------------------------------------------------------ interrupts
    def set_irq_pending(self, pending: bool) -> None:
        """The interrupt controller's INTR output. While it is high, the clock hook stops
        emulation at the first block boundary where IF=1 and there is no interrupt shadow."""
        self.ctx[K.CTX_IRQ_PENDING] = int(pending)

    def _mmio_read_c(self, read: Callable[[int, int], int]) -> Callable[..., int]:
        """A device's MMIO read as a C callback runs it: an error is kept, emulation stopped,
        and the error raised again when emu_start returns, as for a port access."""

        def read_c(_uc: int, offset: int, size: int, _ud: int) -> int:
            try:
                return read(offset, size) & 0xFFFF_FFFF_FFFF_FFFF
            except BaseException as e:  # noqa: BLE001 - re-raised after emu_start
                if self._hook_error is None:
                    self._hook_error = e
                self.uc.emu_stop()
                return 0

        return read_c

    def _mmio_write_c(self, write: Callable[[int, int, int], None]) -> Callable[..., None]:
        """A device's MMIO write as the compiled hook calls it (errors as ``_mmio_read_c``);
        a write that raised INTR may end the run right after its instruction."""

        def write_c(offset: int, size: int, value: int) -> None:
            try:
                ctx = self._ctxv
                requested = self._stop is not None
                pending = ctx[K.CTX_IRQ_PENDING]
                write(offset, size, value)
                raised = bool(not pending and ctx[K.CTX_IRQ_PENDING])
                event = self._event_in_block()
                if not requested and (raised or event):
                    # an EOI, TPR, self-IPI or unmasked pin raised INTR, or a timer was set to
                    # expire before the block's end
                    self._after_mmio_store(raised, event)
            except BaseException as e:  # noqa: BLE001 - re-raised after emu_start
                if self._hook_error is None:
                    self._hook_error = e
                self.uc.emu_stop()

        return write_c

    def lapic_mmio(
        self, read: Callable[[int, int], int], write: Callable[[int, int, int], None]
    ) -> tuple[int, int, int, int]:
        """The C entry points of the local APIC's registers for ``uc_mmio_map``: (read
        callback, its user data, write callback, its user data). Writes reach the compiled
        hook first, which takes the steady-state EOI of an armed local APIC timer interrupt
        (clock/kernels.py ``lapic_write_hook``); every other write, and every read, calls
        ``write(offset, size, value)`` / ``read(offset, size)``. An error in them is kept and
        raised when emu_start returns, as for a port access."""

        self._lapic_read_cb = _MMIO_READ_CB(self._mmio_read_c(read))
        self._lapic_write_cb = _OUT_CB(self._mmio_write_c(write))
        self.ctx[K.CTX_PY_MMIO_WRITE] = ctypes.cast(self._lapic_write_cb, ctypes.c_void_p).value
        hook = native.load("emu.clock.kernels", "lapic_write_hook", "MMIO_WRITE_HOOK_SIGNATURE")
        read_address = ctypes.cast(self._lapic_read_cb, ctypes.c_void_p).value
        return read_address, 0, hook.address, self.ctx.ctypes.data

    def device_mmio(
        self, read: Callable[[int, int], int], write: Callable[[int, int, int], None]
    ) -> tuple[int, int, int, int]:
        """The C entry points of another device's registers (the I/O APIC's, the HPET's) for
        ``uc_mmio_map``, as ``lapic_mmio`` gives the local APIC's: reads call ``read`` through a
        ctypes callback; writes reach the compiled ``device_write_hook``, which calls ``write``
        and then leaves the CPU loop where a MOV's store raised an interrupt the CPU takes next,
        so that it comes right after the MOV on a run as on a step."""
        read_cb = _MMIO_READ_CB(self._mmio_read_c(read))
        write_cb = _MMIO_WRITE_CB(self._mmio_write_c(write))
        user_data = np.array(
            [self.ctx.ctypes.data, ctypes.cast(write_cb, ctypes.c_void_p).value], np.uint64
        )
        self._device_mmio_keep.append((read_cb, write_cb, user_data))
        hook = native.load("emu.clock.kernels", "device_write_hook", "MMIO_WRITE_HOOK_SIGNATURE")
        read_address = ctypes.cast(read_cb, ctypes.c_void_p).value
        return read_address, 0, hook.address, user_data.ctypes.data

    def stop_soon(self) -> None:
        """End the running slice at the next block boundary, whatever IF says (an NMI is
        pending): the run loop then looks at the interrupt controllers."""
        self.ctx[K.CTX_DEADLINE] = 0

    def armed_pending(self) -> bool:
        """Whether the clock hook delivered interrupts Python has not heard of (``settle``)."""
        return bool(self._ctxv[K.CTX_DELIVERED])

    def flush_tlb(self) -> None:
        """Drop Unicorn's TLB (a physical mapping moved under it)."""
        self.uc._Uc__ctl_w(UC_CTL_TLB_FLUSH)

    def can_take_interrupt(self) -> bool:
        env = self.internals
        return bool(env.u64(I.ENV_EFLAGS) & 0x200) and not env.hflags & I.HF_INHIBIT_IRQ

    def _last_block(self) -> tuple[tuple[int, int, int], int]:
        """The block the clock hook saw last: its (pc, size, code size) key, and its instruction
        count if it was counted (0: it did not run)."""
        ctx = self._ctxv
        info = ctx[K.CTX_LAST_INFO]
        return (ctx[K.CTX_LAST_PC], info & 0xFFFF, (info >> 16) & 0xFF), info >> K.INFO_COUNT_SHIFT

    def precise_icount(self) -> int:
        """Instructions retired up to the one executing now (inside a hook), or the count."""
        ctx = self._ctxv  # _last_block, inlined: every port access that reads the clock runs this
        io = ctx[_IO_COUNT]
        if io:  # inside an IN or OUT the compiled hook passed on: it found the count already
            return io - 1
        info = ctx[_LAST_INFO]
        count = info >> _COUNT_SHIFT
        if not count or ctx[_ENABLED] == 0:
            return ctx[_ICOUNT]
        before = ctx[_ICOUNT] - count
        last_pc = ctx[_LAST_PC]
        recent_pc, recent_info, block = self._recent_block
        if recent_pc != last_pc or recent_info != info:
            block = self.blocks.get((last_pc, info & 0xFFFF, (info >> 16) & 0xFF))
            self._recent_block = (last_pc, info, block)
        if block is None:
            return before
        env = self._env64
        pc = env[_EIP_SLOT]
        if not self._env32[_HFLAGS_SLOT] & I.HF_CS64:
            # blocks are at linear addresses: CS.base + EIP (real mode, 16-bit segments)
            pc += env[_CS_BASE_SLOT]
        return before + bisect.bisect_left(block.insns, pc)

    def after_restore(self) -> None:
        """A context restore keeps Unicorn's TLB and translated code: drop both (Q7). The
        restored clock context points at the block table of its time, which may have been
        reallocated since, and memory may hold other code now: start a fresh table."""
        self.uc._Uc__ctl_w(UC_CTL_TLB_FLUSH)  # the binding has no public wrapper for it
        self.uc.ctl_flush_tb()
        self.blocks.clear()
        self._recent_block = (-1, -1, None)
        self._alloc_table(_TABLE_SLOTS)
        for slot in (K.CTX_ARMED, K.CTX_IN_SERVICE, K.CTX_EDGE_COUNT, K.CTX_LOG_COUNT,
                     K.CTX_CYCLES_DONE, K.CTX_DELIVERED, K.CTX_IO_DUE, K.CTX_IO_COUNT):  # fmt: skip
            self.ctx[slot] = 0  # the machine schedules again before running
        self._stop = None
        self._resume_from = None
        self._stepping = False
        self._pending_exception = None

    def resume_count_at(self, icount: int) -> None:
        """After a restore: ``icount`` instructions have retired, exactly. The restored clock
        context names the last block the hook counted, which the fresh block table no longer
        holds, so ``precise_icount`` could not place EIP in it: the count is taken as complete
        up to EIP, as after a partial block."""
        ctx = self._ctxv
        ctx[K.CTX_ICOUNT] = icount
        ctx[K.CTX_LAST_INFO] &= K.INFO_WANT_MASK

    def map_device_memory(
        self, address: int, buffer: np.ndarray, name: str = "device memory"
    ) -> None:
        """Map a host buffer (e.g. a framebuffer) at a physical address outside RAM."""
        size = (buffer.size + 0xFFF) & ~0xFFF
        if buffer.size != size:
            raise EngineError("device memory must be a whole number of pages")
        if self.memory is not None:
            self.memory.add_device_memory(address, buffer, name)
            return
        if address < self.ram.size:
            raise EngineError(f"device memory at 0x{address:x} overlaps guest RAM")
        self._device_buffers.append(buffer)  # Unicorn does not own it: keep it alive
        self.uc.mem_map_ptr(address, size, UC_PROT_ALL, buffer.ctypes.data)

    def track_pages(self, pages: Any) -> None:
        """Report every write into memory to a dirty-page tracker (``DirtyPages``): the
        TLB-fill hook withholds write access from pages it has not seen written since the last
        checkpoint, and the compiled delivery, the page walker's A/D bits and the BIOS services
        tell it what they write."""
        if self.tlb != "virtual":
            raise EngineError("dirty pages are tracked by our TLB-fill hook (tlb='virtual')")
        self.pages = pages
        self.fill_ctx[ML.FILL_TRACK] = pages.ctx.ctypes.data
        self._fast_args[DL.DA_TRACK] = pages.ctx.ctypes.data  # interrupts (and armed ones)
        self._exc_args[DL.DA_TRACK] = pages.ctx.ctypes.data  # exceptions
        self.flush_tlb()  # entries granted write access before are not tracked

    def _set_rom_ranges(self) -> None:
        """Tell the TLB-fill hook which physical pages are ROM (never written, emu/memory.py)."""
        ranges = self.memory.rom_ranges() if self.memory is not None else []
        if len(ranges) > ML.ROM_RANGES_MAX:
            raise EngineError(f"the TLB-fill hook knows {ML.ROM_RANGES_MAX} ROM ranges at most")
        self._rom_table = np.array([x for r in ranges for x in r] or [0, 0], np.uint64)
        self.fill_ctx[ML.FILL_ROM_TABLE] = self._rom_table.ctypes.data
        self.fill_ctx[ML.FILL_ROM_COUNT] = len(ranges)
        self.fill_ctx[ML.FILL_SINK_PAGE] = SINK_PAGE

    def _access_point(self) -> tuple[int, int]:
        """(RIP, instruction count) of the memory access being made, from an MMIO handler."""
        if self.internals.restore_io_rip():
            return self.internals.u64(I.ENV_EIP), self.precise_icount()
        return self.internals.u64(I.ENV_EIP), self._ctxv[K.CTX_ICOUNT]

    # ------------------------------------------------------------ breakpoints
    def add_breakpoint(self, address: int) -> None:
        """Stop before executing the instruction at ``address`` (a linear address).

        A code hook bounded to that one address costs nothing elsewhere (unicorn-2.1.4.md Q8)."""
        if address not in self._breakpoints:
            self._breakpoints[address] = self.uc.hook_add(
                UC_HOOK_CODE, self._hook_breakpoint, None, address, address
            )

    def remove_breakpoint(self, address: int) -> None:
        handle = self._breakpoints.pop(address, None)
        if handle is not None:
            self.uc.hook_del(handle)

    @property
    def breakpoints(self) -> list[int]:
        return sorted(self._breakpoints)

    def add_watchpoint(self, address: int, size: int, kind: str) -> None:
        """Watch ``size`` bytes at a linear address for reads (r), writes (w) or both (rw).
        Memory hooks slow every access (unicorn-2.1.4.md Q8): they exist only while watched."""
        key = (address, size, kind)
        if key in self._watchpoints:
            return
        types = (UC_HOOK_MEM_READ if "r" in kind else 0) | (UC_HOOK_MEM_WRITE if "w" in kind else 0)
        if not types or size < 1:
            raise EngineError(f"a watchpoint needs a size and r, w or rw, not {size} and {kind!r}")
        if not 0 <= address <= address + size - 1 <= 0xFFFF_FFFF_FFFF_FFFF:
            # Unicorn takes a range whose end is below its start as "every address"
            raise EngineError(
                f"a watchpoint of {size} byte(s) at 0x{address:x} runs past the end of the "
                "linear address space"
            )
        self._watchpoints[key] = self.uc.hook_add(
            types, self._hook_watch, kind, address, address + size - 1
        )
        self.uc.ctl_flush_tb()  # memory accesses are translated with or without the hook

    def remove_watchpoint(self, address: int, size: int, kind: str) -> None:
        handle = self._watchpoints.pop((address, size, kind), None)
        if handle is not None:
            self.uc.hook_del(handle)
            self.uc.ctl_flush_tb()

    @property
    def watchpoints(self) -> list[tuple[int, int, str]]:
        return sorted(self._watchpoints)

    def _hook_watch(self, uc: Uc, access: int, address: int, size: int, value: int, kind) -> None:
        if not self.watch_armed:
            return
        what = "w" if access == UC_MEM_WRITE else "r"
        self.watch_hits.append((address, size, value & ((1 << (8 * size)) - 1), what))
        if self._stop is None and self.ctx[K.CTX_ENABLED]:
            # Where in the block the access happened is not known here (RIP is not kept exact
            # during a block): stop, and the machine replays the block one instruction at a time.
            _key, count = self._last_block()
            before = self._ctxv[K.CTX_ICOUNT] - count
            self._request(SliceEnd(KIND_WATCHPOINT, "", None, before))

    def _hook_breakpoint(self, uc: Uc, address: int, size: int, _ud: object) -> None:
        if self._resume_from == address:
            self._resume_from = None  # we are stepping over the breakpoint we stopped at
            return
        if self._stop is None and self.ctx[K.CTX_ENABLED]:
            self._request(SliceEnd(KIND_BREAKPOINT, f"breakpoint at 0x{address:x}", None, address))

    def _raise_hook_error(self) -> None:
        """An exception raised inside a hook: the Unicorn binding keeps it aside but raises
        the engine's error code instead when the hook made the engine fail (an INSN_INVALID
        hook that returned nothing), so it is collected here and raised as an InternalError."""
        error, self._hook_error = self._hook_error, None
        binding = getattr(self.uc, "_hook_exception", None)
        if binding is not None:
            self.uc._hook_exception = None
            error = error or binding
        if error is None:
            return
        if isinstance(error, (EmuError, InternalError, KeyboardInterrupt)):
            raise error
        frames = [f.name for f in traceback.extract_tb(error.__traceback__)]
        hooks = [name for name in frames if name.startswith("_hook")]
        where = f"the CPU hook {hooks[0]}" if hooks else "a CPU hook"
        raise InternalError(where, error) from error

    def settle(self) -> None:
        """Report the interrupts the clock hook delivered (and the EOIs the OUT hook took)
        since Python last looked, before Python looks at anything else."""
        ctx = self._ctxv
        if not ctx[K.CTX_DELIVERED]:
            return
        n, done = ctx[K.CTX_LOG_COUNT], ctx[K.CTX_CYCLES_DONE]
        ctx[K.CTX_DELIVERED] = ctx[K.CTX_LOG_COUNT] = ctx[K.CTX_CYCLES_DONE] = 0
        ctx[K.CTX_IN_SERVICE] = 0
        if done not in (n, n - 1):
            raise EngineError(f"internal error: {n} armed deliveries but {done} EOIs")
        self.fast_deliveries += n
        self.armed_deliveries += n
        if self.on_armed_delivery is not None:
            self.on_armed_delivery(self._log[:n].copy(), done == n)

    def _request(self, end: SliceEnd) -> None:
        if self._stop is None:
            self._stop = end
        self.uc.emu_stop()

    def request_stop(self, detail: str) -> None:
        """Ask the core to stop at the end of the current block (used by devices)."""
        self._request(SliceEnd(KIND_REQUESTED, detail))

    # ------------------------------------------------------------- boot state
    def enter_grub_protected_mode(
        self, *, gdt_base: int, gdt_limit: int, entry: int, registers: dict[str, int]
    ) -> None:
        """Drop Unicorn's reset state to flat 32-bit protected mode, paging off, IF=0.

        The recipe of unicorn-2.1.4.md Q4: a CR0.PG 1->0 toggle is the only way to clear
        EFER.LMA. Segment registers are then loaded by guest code (the firmware stub).
        """
        uc = self.uc
        leave_reset_state(uc, gdt_base, gdt_limit)
        uc.reg_write(X.UC_X86_REG_IDTR, (0, 0, 0, 0))
        uc.reg_write(X.UC_X86_REG_CR3, 0)
        uc.reg_write(X.UC_X86_REG_CR2, 0)
        uc.reg_write(X.UC_X86_REG_EFLAGS, 0x2)
        for name, reg in _GPR_IDS.items():
            uc.reg_write(reg, registers.get(name, 0))
        uc.reg_write(X.UC_X86_REG_RIP, entry)
        self._set_firmware_state()
        self.internals.clear_old_exception()
        if cpu_mode(self.internals.hflags) != "prot32":
            raise EngineError("the engine did not reach 32-bit protected mode at boot")

    # ------------------------------------------------------------------- run
    @property
    def icount(self) -> int:
        return self._ctxv[K.CTX_ICOUNT]

    def run_slice(self, deadline: int, limit: int) -> SliceEnd:
        """Run until virtual time reaches ``deadline`` (block granular) or something stops us.

        ``limit`` is hard: a block that would take the count past it is not entered.
        """
        ctx = self.ctx
        ctx[K.CTX_DEADLINE] = deadline
        ctx[K.CTX_LIMIT] = limit
        self._stepping = False  # emu_start without count drops the count hook and flushes
        if self._resume_from is not None and self._resume_from != self.uc.reg_read(
            X.UC_X86_REG_RIP
        ):
            self._resume_from = None
        if self._pending_exception is not None:
            # stopped on an exception before delivery: deliver it now, then go on
            exc, next_rip = self._pending_exception
            self._pending_exception = None
            self._stop = None
            self._raise(exc, next_rip, account=False)
            if self._stop is not None:
                return self._stop
        while True:
            ctx[K.CTX_STOP_FLAGS] = 0
            ctx[K.CTX_MISS_FLAG] = 0
            self._stop = None
            err = UC_ERR_OK
            try:
                # env->eip is RIP between slices (UC_MODE_64: no CS base involved)
                self.uc.emu_start(self.internals.u64(I.ENV_EIP), _UNTIL)
            except UcError as e:
                err = e.errno
            self._raise_hook_error()
            if self._ctxv[K.CTX_DELIVERED]:
                self.settle()
            flags = int(ctx[K.CTX_STOP_FLAGS])
            stop = self._stop
            if stop is not None:
                if stop.kind == KIND_BREAKPOINT:
                    self._account_partial_block(stop.address or 0)
                    self._resume_from = stop.address
                elif (
                    stop.kind in (KIND_REQUESTED, KIND_IRQ, KIND_DEADLINE)
                    and stop.address is not None
                ):
                    self._account_partial_block(stop.address)  # an OUT ended it (see _after_out)
                return stop
            if err == UC_ERR_INSN_INVALID:  # no hook saw it (should not happen): still #UD
                rip = self.uc.reg_read(X.UC_X86_REG_RIP)
                self._account_partial_block(rip)
                return SliceEnd(KIND_EXCEPTION, "", self._exception(6, rip, False), rip)
            if err == UC_ERR_EXCEPTION and self.tlb == "virtual":
                end = self._refused_fill()
                if end is not None:
                    return end
                continue
            engine_end = self._engine_error(err)
            if engine_end is not None:
                return engine_end
            if flags & K.STOP_MISS:
                self._learn_block(
                    int(ctx[K.CTX_MISS_PC]), int(ctx[K.CTX_MISS_SIZE]), int(ctx[K.CTX_MISS_BITS])
                )
                continue
            if flags & K.STOP_IRQ:
                return SliceEnd(KIND_IRQ)
            if flags & K.STOP_LIMIT:
                return SliceEnd(KIND_LIMIT)
            if flags & (K.STOP_DEADLINE | K.STOP_ARMED):
                return SliceEnd(KIND_DEADLINE)
            rip = self.uc.reg_read(X.UC_X86_REG_RIP)
            if self._read_linear(self._code_segment()[1] + rip - 1, 1) == b"\xf4":
                return SliceEnd(KIND_HALT, "", None, rip - 1)
            # Not a guest event we know: a guest outcome all the same (exit 3), never the
            # bad-input status, with what was seen.
            return SliceEnd(KIND_UNSUPPORTED, f"the CPU core stopped at 0x{rip:x} without a "
                            "reason Triplefault knows (not HLT, no hook asked)", None, rip)  # fmt: skip

    def _engine_error(self, err: int) -> SliceEnd | None:
        """An error emu_start returned, as a guest outcome (run and step alike): memory where
        nothing is, else one no guest event explains. None for UC_ERR_OK."""
        if err == UC_ERR_FETCH_PROT and self.memory is not None:
            rip = self.uc.reg_read(X.UC_X86_REG_RIP)
            self._account_partial_block(rip)
            return SliceEnd(
                KIND_UNSUPPORTED,
                f"instruction fetch at 0x{rip:x}: no RAM or ROM is at its physical address "
                "(QEMU would execute the zeros unassigned memory reads as; not modelled)",
                None,
                rip,
            )
        if err in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_FETCH_UNMAPPED):
            what = {UC_ERR_READ_UNMAPPED: "read", UC_ERR_WRITE_UNMAPPED: "write",
                    UC_ERR_FETCH_UNMAPPED: "instruction fetch"}[err]  # fmt: skip
            address = ctypes.c_uint64.from_address(I.uc_handle(self.uc) + I.UC_INVALID_ADDR).value
            return SliceEnd(
                KIND_UNMAPPED,
                f"{what} at physical 0x{address:x}, outside guest RAM (0x0-0x{self.ram.size - 1:x})",
                None,
                address,
            )
        if err != UC_ERR_OK:
            rip = self.uc.reg_read(X.UC_X86_REG_RIP)
            return SliceEnd(KIND_UNSUPPORTED, f"the CPU core stopped at 0x{rip:x} with "
                            f"{UcError(err)}, which no guest event explains", None, rip)  # fmt: skip
        return None

    def step(self) -> SliceEnd | None:
        """Execute exactly one instruction; returns why it did not retire, or None."""
        self.ctx[K.CTX_ENABLED] = 0
        # No block is being counted while stepping: an exception inside the step must not
        # "account the partial block" of whatever block a run entered last.
        self.ctx[K.CTX_LAST_INFO] = 0
        self._stop = None
        self._raised_fault = self._step_counted = False
        err = UC_ERR_OK
        rip = self.uc.reg_read(X.UC_X86_REG_RIP)
        self._step_from = rip  # the one instruction this step runs (raising.py _software_insn)
        if not self._stepping:
            # Blocks translated without Unicorn's per-instruction count hook would run whole.
            self.uc.ctl_flush_tb()
            self._stepping = True
        if self._intercept_ids:
            self._intercept_at(rip)  # an instruction no block has shown yet
        # The step's block is one instruction (cflags_next_tb): a store into the block being
        # executed then completes. In a longer block QEMU abandons the block at such a store and
        # runs the store again in a block of its own, which the count of 1 stops before it
        # retires: the step never got past it.
        self._cflags_next_tb.value = 1
        try:
            self.uc.emu_start(rip, _UNTIL, 0, 1)
        except UcError as e:
            err = e.errno
        finally:
            self.ctx[K.CTX_ENABLED] = 1
        self._raise_hook_error()
        stop = self._stop
        if stop is not None and stop.kind in (KIND_EXCEPTION, KIND_UNMAPPED, KIND_UNSUPPORTED):
            return stop  # a trap that stopped the run was counted when it was raised
        if err == UC_ERR_INSN_INVALID:
            if stop is not None:  # the #UD was raised: its delivery ended the step (a triple fault)
                return stop
            return SliceEnd(KIND_EXCEPTION, "", self._exception(6, rip, False), rip)
        if err == UC_ERR_FETCH_PROT and self.uc.reg_read(X.UC_X86_REG_RIP) != rip:
            # the step's instruction retired (a jump) and the fetch at its target found nothing
            self.ctx[K.CTX_ICOUNT] += 1
        if err == UC_ERR_EXCEPTION and self.tlb == "virtual":
            # a fill our walker refused: #PF (or #GP) through the IDT, as in a run; the
            # instruction did not retire, and the step ends at the handler. RIP elsewhere: the
            # instruction did retire (a jump) and the fetch at its target faulted.
            if self.uc.reg_read(X.UC_X86_REG_RIP) != rip:
                self.ctx[K.CTX_ICOUNT] += 1
            return self._refused_fill()
        engine_end = self._engine_error(err)
        if engine_end is not None:
            return engine_end
        if self._raised_fault or self._step_counted:
            return stop  # a fault did not retire its instruction; a trap was counted
        self.ctx[K.CTX_ICOUNT] += 1
        if stop is not None:
            return stop
        if self._is_hlt(self._code_segment()[1] + rip):
            return SliceEnd(KIND_HALT, "", None, rip)
        return None

    def _is_hlt(self, address: int) -> bool:
        """Whether the instruction at linear ``address`` is HLT, prefixes and all (QEMU runs
        LOCK HLT, or HLT under any other prefix, as HLT)."""
        bits = 64 if cpu_mode(self.internals.hflags) == "long64" else 32
        for byte in self._read_linear(address, 15):
            if byte == 0xF4:
                return True
            if not _is_prefix(byte, bits):
                return False
        return False

    def _learn_block(self, pc: int, size: int, bits: int) -> None:
        code = self._read_linear(pc, size)
        insns: list[int] = []
        end = pc
        intercepted = False
        names = self._intercept_names
        cut = 0
        last: str | None = None  # the last instruction's mnemonic (None: capstone could not)
        while end < pc + size:
            # capstone's light decoding (tuples, not instruction objects: a Linux boot learns
            # about 64,000 blocks); an instruction the model intercepts is decoded in full
            for address, length, mnemonic, _operands in self._disasm[bits].disasm_lite(
                code[end - pc :], end
            ):
                if mnemonic[:1] == "v" and self._pop_ev_length(code, address - pc, bits):
                    break  # XOP to capstone, POP to the CPU: below
                if (
                    self._cut_cmpxchg and not cut and insns
                    and mnemonic.rpartition(" ")[2] in _CMPXCHG_WIDE
                ):  # fmt: skip
                    cut = len(insns)
                insns.append(address)
                end = address + length
                last = mnemonic
                if names and mnemonic.rpartition(" ")[2] in names:
                    intercepted |= self._intercept_code_at(address, bits)
            if end >= pc + size:
                break
            insns.append(end)
            pop = self._pop_ev_length(code, end - pc, bits)
            if pop:
                end += pop
                last = "pop"
                continue
            mov = self._mov_imm_length(code, end - pc, bits)
            if mov:
                end += mov
                last = "mov"
                continue
            vex = self._vex_length(code, end - pc, bits)
            if vex:
                end += vex
                last = None  # an instruction capstone does not know: it may repeat
                continue
            # Capstone stopped early at bytes it cannot decode, which the CPU ran as one
            # instruction (it ended the block otherwise): a prefix capstone refuses on that
            # instruction (LOCK on a MOV, which QEMU runs), so the instruction's length is that
            # of the rest after its prefixes; with none that decodes, the block's end.
            last = None
            if self._intercept_ids:
                intercepted |= self._intercept_code_at(end, bits)
            after = self._undecoded_end(code, pc, end, bits)
            end = after if after > end else pc + size
        if intercepted:
            # translated before its instruction hooks existed: translate it again before it runs
            self.uc.ctl_remove_cache(pc, pc + size)
        self.blocks[(pc, size, bits)] = _BlockInfo(tuple(insns))
        self._recent_block = (-1, -1, None)
        self._table_insert(pc, size, bits, tuple(insns), cut, last is None or _may_repeat(last))

    def _pop_ev_length(self, code: bytes, at: int, bits: int) -> int:
        """The length of the instruction at offset ``at`` of ``code`` if it is opcode 8F with a
        ModRM reg field other than 0, else 0. The CPU core runs every such instruction as
        POP r/m (its translator ignores the field: measured), where capstone reads AMD's XOP
        prefix into it (`8f e8 78 a2 c0 10`: a 6-byte VPCMOV, where the CPU runs 2 bytes) or
        nothing at all (`8f 10`). Its length is that of the POP with the field cleared."""
        i, _rex = self._skip_prefixes(code, at, bits)
        if i + 1 >= len(code) or code[i] != 0x8F or not code[i + 1] & 0x38:
            return 0
        return self._length_with_reg_cleared(code, at, i, bits)

    def _mov_imm_length(self, code: bytes, at: int, bits: int) -> int:
        """The length of the instruction at offset ``at`` of ``code`` if it is opcode C6 or C7
        on a register with ModRM reg field 7 and r/m other than 0, else 0. The CPU core's
        translator takes reg 7 there (the XABORT and XBEGIN encodings, `c6 f8` and `c7 f8`,
        which it runs as MOV to AL or EAX) and runs every r/m as MOV r/m, imm (`c6 f9 00`:
        MOV CL, 0, measured), where capstone refuses all but r/m 0. REX.R makes the field 15,
        which the translator refuses too. Its length is that of the MOV with the field 0."""
        i, rex = self._skip_prefixes(code, at, bits)
        if i + 1 >= len(code) or code[i] not in (0xC6, 0xC7) or rex & 0x4:
            return 0
        modrm = code[i + 1]
        if modrm & 0xF8 != 0xF8 or modrm == 0xF8:
            return 0
        return self._length_with_reg_cleared(code, at, i, bits)

    @staticmethod
    def _skip_prefixes(code: bytes, at: int, bits: int) -> tuple[int, int]:
        """The offset of the opcode after the prefixes at ``at``, and the last REX byte among
        them (0 for none: the translator takes the last one's bits wherever it stands)."""
        i, rex = at, 0
        while i < len(code) and i - at < 14 and _is_prefix(code[i], bits):
            if code[i] & 0xF0 == 0x40:
                rex = code[i]
            i += 1
        return i, rex

    def _length_with_reg_cleared(self, code: bytes, at: int, opcode: int, bits: int) -> int:
        """The length capstone gives the instruction at ``at`` with the reg field of the ModRM
        byte after its one-byte ``opcode`` (an offset) set to 0; 0 if it decodes none."""
        cleared = (
            code[at : opcode + 1] + bytes([code[opcode + 1] & 0xC7]) + code[opcode + 2 : at + 15]
        )
        insn = next(iter(self._disasm[bits].disasm_lite(cleared, 0, 1)), None)
        return insn[1] if insn is not None else 0

    def _vex_length(self, code: bytes, at: int, bits: int) -> int:
        """The length of a VEX-encoded instruction capstone refuses at offset ``at``, else 0.
        The CPU core's translator (QEMU 5.0's) reads the VEX bytes as a prefix and then decodes
        the opcode from the legacy map they name (0F, 0F 38, 0F 3A): `c5 e6 42 ff` runs as the
        4 bytes of CMOVB, `c5 e6 21 50` as the 4 of a MOV from a debug register (measured). Its
        length is the VEX bytes and that legacy instruction's, without its escape bytes."""
        i = at
        if i + 2 >= len(code) or code[i] not in (0xC4, 0xC5):
            return 0
        if bits != 64 and code[i + 1] < 0xC0:
            return 0  # LES / LDS outside 64-bit mode
        if code[i] == 0xC5:
            vex_map, opcode_at = 1, i + 2
        else:
            vex_map, opcode_at = code[i + 1] & 0x1F, i + 3
        escape = {1: b"\x0f", 2: b"\x0f\x38", 3: b"\x0f\x3a"}.get(vex_map)
        if escape is None or opcode_at >= len(code):
            return 0
        legacy = escape + code[opcode_at : at + 15]
        insn = next(iter(self._disasm[bits].disasm_lite(legacy, 0, 1)), None)
        if insn is None:
            return 0
        return opcode_at - at + insn[1] - len(escape)

    def _undecoded_end(self, code: bytes, pc: int, at: int, bits: int) -> int:
        """Where the instruction at ``at`` that capstone cannot decode ends: after its leading
        prefixes, the first instruction capstone does decode; else the block's end."""
        i = at - pc
        for k in range(1, 15):
            byte = code[i + k - 1] if i + k - 1 < len(code) else None
            if byte is None or not _is_prefix(byte, bits):
                break
            insn = next(iter(self._disasm[bits].disasm(code[i + k :], at + k, 1)), None)
            if insn is not None:
                return insn.address + insn.size
        return pc + len(code)

    def _account_partial_block(self, rip: int, through: bool = False) -> None:
        """An exception stopped the current block at ``rip``: count only what retired, the
        instruction at ``rip`` included with ``through`` (a trap's, which retired; where the
        trap returns to may be anywhere in the block: a jump to itself under TF)."""
        ctx = self._ctxv
        (pc, size, bits), count = self._last_block()
        if not (pc <= rip < pc + size):
            return  # the fault hit the fetch of the next block: the last one completed
        block = self.blocks.get((pc, size, bits))
        if block is None:  # the block was a miss, not counted: learn it now
            self._learn_block(pc, size, bits)
            block = self.blocks[(pc, size, bits)]
            count = 0
        retired = bisect.bisect_left(block.insns, rip) + through
        ctx[K.CTX_ICOUNT] = ctx[K.CTX_ICOUNT] - count + retired
        ctx[K.CTX_LAST_INFO] &= K.INFO_WANT_MASK  # now counted up to rip, not as a whole

    # ------------------------------------------------------------ inspection
    def _read_linear(self, address: int, size: int) -> bytes:
        """Guest memory at a linear address, through our page walker with no side effects
        (no accessed bits, no TLB fill). Stops at the first unmapped byte."""
        env = self.internals  # env's words: cheaper than the binding's reg_read
        cr0, cr3, cr4 = env.u64(I.ENV_CR0), env.u64(I.ENV_CR3), env.u64(I.ENV_CR4)
        efer = env.u64(I.ENV_EFER)
        out = bytearray()
        while len(out) < size:
            lin = (address + len(out)) & 0xFFFF_FFFF_FFFF_FFFF
            w = mmu.translate_raw(self.ram, cr0, cr3, cr4, efer, lin, ML.ACC_READ, False)
            status = int(w[ML.OUT_STATUS])
            outside = status == ML.ST_OUTSIDE_RAM and self.memory is not None
            if status not in (ML.ST_OK, ML.ST_PROTECTION) and not outside:
                break
            phys = int(w[ML.OUT_PADDR])
            if self.memory is not None:
                # what the guest would read there (ROM, device memory, unassigned zeros)
                out += self.memory.read(phys, min(size - len(out), 0x1000 - (lin & 0xFFF)))
                continue
            chunk = min(size - len(out), 0x1000 - (lin & 0xFFF), self.ram.size - phys)
            if chunk <= 0:
                break
            out += self.ram[phys : phys + chunk].tobytes()
        return bytes(out)

    def read_linear(self, address: int, size: int) -> bytes:
        """Guest memory at a linear address, or b'' where it is not mapped."""
        return self._read_linear(address, size)

    def state(self) -> CpuState:
        uc = self.uc
        hflags = self.internals.hflags
        segs = {name: Segment(*self.internals.segment(i)) for i, name in enumerate(SEGMENT_NAMES)}
        gdtr = uc.reg_read(X.UC_X86_REG_GDTR)
        idtr = uc.reg_read(X.UC_X86_REG_IDTR)
        return CpuState(
            rip=uc.reg_read(X.UC_X86_REG_RIP),
            rflags=uc.reg_read(X.UC_X86_REG_RFLAGS),
            gpr={name: uc.reg_read(_GPR_IDS[name]) for name in GPR_NAMES},
            cr0=uc.reg_read(X.UC_X86_REG_CR0),
            cr2=uc.reg_read(X.UC_X86_REG_CR2),
            cr3=uc.reg_read(X.UC_X86_REG_CR3),
            cr4=uc.reg_read(X.UC_X86_REG_CR4),
            efer=uc.msr_read(MSR_EFER),
            gdtr=(gdtr[1], gdtr[2]),
            idtr=(idtr[1], idtr[2]),
            segments=segs,
            hflags=hflags,
            mode=cpu_mode(hflags),
            cpl=hflags & I.HF_CPL_MASK,
        )

    def disassemble(self, address: int, bits: int, count: int = 1) -> list[tuple[int, bytes, str]]:
        """(address, bytes, "mnemonic operands") for up to ``count`` instructions."""
        code = self._read_linear(address, 15 * count)
        out = []
        for insn in self._disasm[bits].disasm(code, address):
            out.append((insn.address, bytes(insn.bytes), f"{insn.mnemonic} {insn.op_str}".strip()))
            if len(out) == count:
                break
        return out


def leave_reset_state(uc: Uc, gdt_base: int, gdt_limit: int) -> None:
    """Drop a fresh UC_MODE_64 engine to flat 32-bit protected mode with paging off.

    Unicorn resets into long mode without paging; a CR0.PG 1->0 toggle is the only way to clear
    EFER.LMA (unicorn-2.1.4.md Q4). The segment registers are then loaded by guest code."""
    uc.reg_write(X.UC_X86_REG_GDTR, (0, gdt_base, gdt_limit, 0))
    uc.reg_write(X.UC_X86_REG_CR4, 0x20)
    uc.reg_write(X.UC_X86_REG_CR0, 0x80000011)
    uc.reg_write(X.UC_X86_REG_CR0, 0x00000011)
    uc.msr_write(MSR_EFER, 0)
    uc.reg_write(X.UC_X86_REG_CR4, 0)
