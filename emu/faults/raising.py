"""From the engine to the IDT: how an exception, a software interrupt, an invalid opcode, a
refused TLB fill or an external interrupt that Unicorn reports reaches our delivery.

Unicorn never delivers through the guest's IDT (unicorn-2.1.4.md Q3): it reports the event and
stops or calls a hook. Here the event becomes a ``GuestException``, is counted exactly (what
retired before it), stops the run when the user asked to stop on it, and is delivered: by the
compiled path (``kernels.py``) for the common long-mode gates, else by the model
(``delivery.py``), which also handles everything the compiled path declines.
``UnicornCore`` inherits these methods.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from unicorn import Uc
from unicorn import x86_const as X

from .. import mmu
from ..clock import layout as K
from ..core import internals as I
from ..core import native
from ..core.cpu_state import cpu_mode
from ..core.stops import (
    KIND_BIOS_HALT,
    KIND_BIOS_WAIT,
    KIND_EXCEPTION,
    KIND_TRIPLE_FAULT,
    KIND_UNSUPPORTED,
    SliceEnd,
)
from ..mmu import layout as ML
from . import layout as DL
from .bios_call import BiosBusView, read_regs, write_regs
from .delivery import (
    PAGE_FAULT,
    DeliveryCpu,
    DeliveryResult,
    DeliveryStep,
    Event,
    Gate,
    IdtDelivery,
    MemoryFault,
    SegmentCache,
)

if TYPE_CHECKING:
    from ..core.engine import UnicornCore

log = logging.getLogger(__name__)

RESET_TRAP = 0xFF  # the reset stub's trap byte (firmware/pc_bios.py)
# Vectors that push an error code (Intel SDM Vol. 3, Table 6-1).
ERROR_CODE_VECTORS = frozenset({8, 10, 11, 12, 13, 14, 17, 21, 29, 30})
_WARNED: list[bool] = []


@dataclass(frozen=True)
class GuestException:
    """An exception or software interrupt the CPU raised, exactly as the core reported it."""

    vector: int
    rip: int  # faults: the faulting instruction; traps/INT n: the next one
    error_code: int | None
    cr2: int | None
    software: bool  # INT n / INT3 / INTO
    mode: str
    cpl: int
    rsp: int | None = None  # RSP when it happened (None: still in the CPU)
    cs: int | None = None  # the CS selector (shown as CS:IP in real and 16-bit mode)
    cs_base: int = 0  # CS.base: rip + cs_base is the linear address (0 in 64-bit mode)

    @property
    def linear(self) -> int:
        """The linear address of ``rip`` (what the engine's blocks and breakpoints use)."""
        return self.cs_base + self.rip


class FastDelivery(NamedTuple):
    """An external interrupt delivered by the compiled path (emu/faults/kernels.py), as raw
    values: cheap to keep, described on demand exactly as the Python model would describe it."""

    vector: int
    hflags: int  # before delivery
    gate_address: int
    gate_low: int
    gate_high: int
    old_rip: int
    old_rsp: int
    new_rsp: int

    def gate(self) -> Gate:
        low, high = self.gate_low, self.gate_high
        e1, e2 = low & 0xFFFFFFFF, low >> 32
        offset = (e2 & 0xFFFF0000) | (e1 & 0xFFFF)
        raw = low.to_bytes(8, "little")
        if self.hflags & I.HF_LMA:  # a 16-byte gate
            offset |= (high & 0xFFFFFFFF) << 32
            raw += high.to_bytes(8, "little")
        return Gate(
            vector=self.vector,
            address=self.gate_address,
            raw=raw,
            type=(e2 >> 8) & 0x1F,
            dpl=(e2 >> 13) & 3,
            present=True,
            selector=e1 >> 16,
            offset=offset,
            ist=e2 & 7 if self.hflags & I.HF_LMA else 0,
        )

    def result(self, event: Event) -> DeliveryResult:
        """``event`` delivered through this gate, as the Python model reports a delivery."""
        gate = self.gate()
        result = DeliveryResult()
        result.steps.append(
            DeliveryStep(event, gate, True, f"delivered to {gate.kind}", "", self.new_rsp)
        )
        return result

    def describe(self) -> tuple[DeliveryResult, GuestException]:
        result = self.result(Event(self.vector, "external"))
        exc = GuestException(self.vector, self.old_rip, None, None, False, cpu_mode(self.hflags),
                             self.hflags & I.HF_CPL_MASK, self.old_rsp, None, 0)  # fmt: skip
        return result, exc


class ExceptionRaising:
    """Exception and interrupt delivery for ``UnicornCore`` (a mixin: ``self`` is the core)."""

    def _init_fast_delivery(self) -> None:
        self.fast_delivery = True  # False: every delivery through the Python model
        self.fast_deliveries = 0  # compiled deliveries (between slices or by the clock hook)
        self.armed_deliveries = 0  # ... of them by the clock hook, without a stop
        fn = native.load("emu.faults.kernels", "deliver", "DELIVER_SIGNATURE")
        self._fast_deliver = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p)(
            fn.address
        )
        self._fast_args = np.zeros(DL.DA_SIZE, np.uint64)
        self._fast_args[DL.DA_ENV] = self.internals.env
        self._fast_args[DL.DA_RAM] = self.ram.ctypes.data
        self._fast_args[DL.DA_RAM_SIZE] = self.ram.size & ~7
        self._fast_args[DL.DA_UPDATE_HFLAGS] = I.function_address("x86_update_hflags_x86_64")
        self._fast_args[DL.DA_CC_COMPUTE_ALL] = I.function_address("cpu_cc_compute_all_x86_64")
        self._fast_out = np.zeros(DL.DO_SIZE, np.uint64)
        self._fast_args_ptr = self._fast_args.ctypes.data
        # exceptions use their own copy: the clock hook's armed deliveries use _fast_args
        self._exc_args = self._fast_args.copy()
        self._exc_args_ptr = self._exc_args.ctypes.data
        self._fast_out_ptr = self._fast_out.ctypes.data
        # what the clock hook needs to deliver an armed timer interrupt itself
        self.ctx[K.CTX_DELIVERY_ARGS] = self._fast_args_ptr
        self.ctx[K.CTX_DELIVERY_OUT] = self._fast_out_ptr
        self.ctx[K.CTX_CPU] = self.internals.env - I.CPU_TO_ENV
        self.ctx[K.CTX_LOOP_EXIT] = I.function_address("cpu_loop_exit_x86_64")
        self.ctx[K.CTX_EIP_ADDR] = self.internals.env + I.ENV_EIP
        armed = native.load("emu.clock.kernels", "armed_delivery", "ARMED_DELIVERY_SIGNATURE")
        self.ctx[K.CTX_ARMED_FN] = armed.address
        take_back = native.load("emu.clock.kernels", "take_back_hook", "TAKE_BACK_SIGNATURE")
        self.ctx[K.CTX_TAKE_BACK_FN] = take_back.address
        self._log = np.zeros((K.LOG_ENTRIES, K.LOG_STRIDE), np.uint64)
        self.ctx[K.CTX_LOG] = self._log.ctypes.data
        self.ctx[K.CTX_LOG_CAP] = K.LOG_ENTRIES
        self.edges = np.zeros(K.EDGE_ENTRIES, np.uint64)  # filled by the machine's scheduler
        self.ctx[K.CTX_EDGES] = self.edges.ctypes.data

    def deliver_external(self, vector: int) -> DeliveryResult | None:
        """Deliver a hardware interrupt through the IDT now (between slices).

        The common long-mode case runs compiled (emu/faults/kernels.py); everything else, and
        every case where that path sees a check that would fault, goes through the Python model.
        A compiled delivery is reported to ``on_fast_delivery`` with its raw values and returns
        None when that callback is set (describing it is left to whoever reads the trace);
        otherwise it is described as the model would describe it, through ``on_delivery``.
        """
        env = self.internals
        hflags = env.hflags
        if self.fast_delivery and self.translate is None and self.tlb == "virtual":
            self._fast_args[DL.DA_VECTOR] = vector
            if self._fast_deliver(self._fast_args_ptr, self._fast_out_ptr) == DL.DELIVERED:
                self.fast_deliveries += 1
                raw = FastDelivery(vector, hflags, *self._fast_out[: DL.DO_WHY].tolist()[1:])
                if self.on_fast_delivery is not None:
                    self.on_fast_delivery(raw)
                    return None
                result, exc = raw.describe()
                if self.on_delivery is not None:
                    self.on_delivery(result.steps[0].event, exc, result)
                return result
        event = Event(vector, "external")
        exc = GuestException(vector, env.u64(I.ENV_EIP), None, None, False, cpu_mode(hflags),
                             hflags & I.HF_CPL_MASK, None, *self._code_segment())  # fmt: skip
        result = IdtDelivery(DeliveryMemory(self)).deliver(self.delivery_cpu(), event)
        if self.on_delivery is not None:
            self.on_delivery(event, exc, result)
        env.clear_old_exception()
        if result.cpu is not None and not result.unsupported:
            self.apply_delivery(result.cpu)
        return result

    def _code_segment(self) -> tuple[int, int]:
        """(CS selector, the base that turns RIP into a linear address: 0 in 64-bit mode)."""
        selector, base, _limit, _flags = self.internals.segment(I.SEG_CS)
        return selector, 0 if self.internals.hflags & I.HF_CS64 else base

    def _exception(self, vector: int, rip: int, software: bool) -> GuestException:
        hflags = self.internals.hflags
        has_code = vector in ERROR_CODE_VECTORS and not software
        cs, cs_base = self._code_segment()
        return GuestException(
            vector=vector,
            rip=rip,
            error_code=self.internals.error_code if has_code else None,
            cr2=self.internals.u64(I.ENV_CR2) if vector == 14 else None,
            software=software,
            mode=cpu_mode(hflags),
            cpl=hflags & I.HF_CPL_MASK,
            cs=cs,
            cs_base=cs_base,
        )

    def _hook_intr(self, uc: Uc, intno: int, _ud: object) -> None:
        software = bool(self.internals.u32(I.ENV_EXCEPTION_IS_INT))
        rip = self.internals.u64(I.ENV_EIP)
        if software:
            # Unicorn reports INT n/INT3/INTO with RIP already after the instruction (where the
            # handler returns to); the trace and the report name the instruction itself, as
            # QEMU's -d int does.
            self._raise(self._exception(intno, self._software_insn(rip), True), next_rip=rip)
            return
        if intno == 1 and not uc.reg_read(X.UC_X86_REG_DR7) & 0xFF:
            # #DB with no hardware breakpoint enabled: the single-step trap (TF), raised after
            # its instruction retired, at the next one (SDM 17.3.1.4)
            self._raise(self._exception(intno, rip, software), next_rip=rip)
            return
        self._raise(self._exception(intno, rip, software))

    def _software_insn(self, next_rip: int) -> int:
        """The address (RIP, not linear) of the INT n/INT3/INTO instruction that ends at
        ``next_rip``: the last instruction of the current block (QEMU ends a block there), the
        stepped instruction while stepping, else by its opcode. Blocks are at linear
        addresses: CS.base + RIP."""
        base = self._code_segment()[1]
        (pc, size, bits), _count = self._last_block()
        block = self.blocks.get((pc, size, bits))
        if (
            self._ctxv[K.CTX_ENABLED]
            and block is not None
            and pc + size == base + next_rip
            and block.insns
        ):
            return block.insns[-1] - base
        if not self._ctxv[K.CTX_ENABLED]:
            return self._step_from  # a step: its instruction, prefixes and all
        if self._read_linear(base + next_rip - 2, 1) == b"\xcd":
            return next_rip - 2
        return next_rip - 1  # INT3 (0xCC) or INTO (0xCE)

    def _hook_invalid(self, uc: Uc, _ud: object) -> bool:
        rip = uc.reg_read(X.UC_X86_REG_RIP)
        if self.internals.u32(I.ENV_EXCEPTION_IS_INT):
            # INT 6 (a software interrupt): Unicorn routes vector 6 here by number. It returns
            # after the instruction, and its gate's DPL is checked, like any INT n.
            nxt = self.internals.u64(I.ENV_EXCEPTION_NEXT_EIP)
            self._raise(GuestException(6, rip, None, None, True, cpu_mode(self.internals.hflags),
                                       self.internals.hflags & I.HF_CPL_MASK, None,
                                       *self._code_segment()), next_rip=nxt)  # fmt: skip
            return self._stop is None
        served = self._bios_trap(rip)  # first: a stub is never ICEBP, and a call is common
        if served is not None:
            return served
        if self._read_linear(self._code_segment()[1] + rip, 1) == b"\xf1":
            # INT1 (ICEBP): the core calls it invalid; the architecture raises #DB as a trap
            # without the gate DPL check of INT n.
            self._raise(self._exception(1, rip, False), next_rip=rip + 1)
            return self._stop is None
        self._raise(self._exception(6, rip, False))
        # True: continue at the handler; False: emu_start returns with RIP on the instruction.
        return self._stop is None

    # ------------------------------------------------------------ the BIOS
    # Real-mode interrupts are delivered through the IVT like any other (delivery.py); a BIOS
    # entry point in the ROM (firmware/pc_bios.py) traps with its UD2 here, and the service
    # behind it (firmware/bios/) answers.
    def _cs_ip(self) -> tuple[int, int, int]:
        """(CS selector, IP, linear address of CS:IP)."""
        selector, base, _limit, _flags = self.internals.segment(I.SEG_CS)
        ip = self.internals.u64(I.ENV_EIP) & 0xFFFF_FFFF
        return selector, ip, base + ip

    def _bios_trap(self, rip: int) -> bool | None:
        """A BIOS stub's UD2 (in the ROM, with its vector byte) was reached: serve the call in
        real mode (True: the stub's IRET runs next), else stop the run saying what was asked
        (False). None: not a stub, an ordinary #UD."""
        if self.bios_stub_at is None:
            return None
        env = self.internals
        _sel, ip, lin = self._cs_ip() if not env.hflags & I.HF_LMA else (0, rip, rip)
        vector = self.bios_stub_at(lin)
        if vector is None:
            return None
        self._account_partial_block(lin)
        real = not env.hflags & I.HF_PE
        mode = "real mode" if real else "protected mode"
        ax = env.u64(I.ENV_REGS) & 0xFFFF
        if vector == RESET_TRAP:
            why = f"the BIOS reset entry point was reached from {mode} (no BIOS POST is modelled)"
        elif not real:
            why = (f"BIOS call INT 0x{vector:x} AX=0x{ax:x} from protected mode (the BIOS "
                   "services run in real mode)")  # fmt: skip
        elif self.bios_service is None:
            why = f"BIOS call INT 0x{vector:x} AX=0x{ax:x} from real mode (no BIOS services)"
        else:
            return self._serve_bios(vector, ip, lin)
        self._request(SliceEnd(KIND_UNSUPPORTED, why, None, lin))
        return False

    def _serve_bios(self, vector: int, ip: int, linear: int) -> bool:
        """Run the service (firmware/bios/) on the caller's registers and write back what it
        changed; the UD2 retires as the call. A service that waits or ends the run leaves
        CS:IP on the UD2: the call is made again when the run goes on."""
        bus = BiosBusView(self)
        try:
            before = read_regs(self, bus)
            regs = before.copy()
            outcome = self.bios_service(vector, regs, bus)
            if outcome is None:
                write_regs(self, bus, before, regs)
        except BaseException as e:  # noqa: BLE001 - raised again when emu_start returns
            if self._hook_error is None:
                self._hook_error = e
            self.uc.emu_stop()
            return False
        if outcome is None:
            self._ctxv[K.CTX_ICOUNT] += 1
            self.internals.write_u64(I.ENV_EIP, (ip + 3) & 0xFFFF)  # the stub's IRET
            return True
        kind = KIND_BIOS_WAIT if outcome.kind == "wait" else KIND_BIOS_HALT
        self._request(SliceEnd(kind, outcome.detail, None, linear))
        return False

    def _raise(
        self, exc: GuestException, next_rip: int | None = None, account: bool = True
    ) -> None:
        """An exception was raised at exc.rip: deliver it through the IDT, or stop."""
        if self._ctxv[K.CTX_DELIVERED]:
            self.settle()  # an interrupt delivered before it comes first in the trace
        # Unicorn never clears its double-fault tracker: delivery and escalation are ours.
        self.internals.clear_old_exception()
        if self._stop is not None:
            return
        # A fault does not retire its instruction; a trap (INT n, INT3, INT1) has retired it.
        # While stepping (no block is counted) the step's one instruction is counted here for a
        # trap, before the trace records it, and not at all for a fault (engine.step).
        self._raised_fault = next_rip is None
        if account and next_rip is not None and not self._ctxv[K.CTX_ENABLED]:
            self._ctxv[K.CTX_ICOUNT] += 1
            self._step_counted = True
        if account and next_rip is None:
            self._account_partial_block(exc.cs_base + exc.rip)  # up to the faulting instruction
        elif account and exc.rip == next_rip:
            # the single-step #DB names the next instruction; QEMU translates a block of one
            # under TF, so all of the block counted retired
            self._ctxv[K.CTX_LAST_INFO] &= K.INFO_WANT_MASK
        elif account:
            # a trap (INT n, INT3, INTO, INT1) has retired its instruction, which exc.rip names
            self._account_partial_block(exc.cs_base + exc.rip, through=True)
        if exc.vector in self.break_vectors and account:
            # Stop before delivery, with the state as it was at the fault; the next run
            # delivers it first (see run_slice).
            self._pending_exception = (exc, next_rip)
            self._request(SliceEnd(KIND_EXCEPTION, "stopped on an exception", exc, exc.rip))
            return
        if not self.deliver_exceptions:
            self._request(SliceEnd(KIND_EXCEPTION, "", exc, exc.rip))
            return
        event = Event(
            exc.vector,
            "software" if exc.software else "exception",
            exc.error_code,
            exc.cr2,
            next_rip,
        )
        if self._deliver_fast(event, exc):
            return
        cpu = self.delivery_cpu()
        if exc.software:
            # The engine has already moved RIP past INT n; a fault while delivering it is
            # reported at the INT instruction itself (the event returns to next_rip).
            cpu = replace(cpu, rip=exc.rip)
        result = IdtDelivery(DeliveryMemory(self)).deliver(cpu, event)
        if self.on_delivery is not None:
            self.on_delivery(event, exc, result)
        if result.unsupported:
            self._request(SliceEnd(KIND_UNSUPPORTED, result.unsupported, exc, exc.rip))
            return
        if result.triple_fault or result.cpu is None:
            self._request(SliceEnd(KIND_TRIPLE_FAULT, "triple fault", exc, exc.rip))
            return
        self.apply_delivery(result.cpu)

    def _deliver_fast(self, event: Event, exc: GuestException) -> bool:
        """An exception or software interrupt through the compiled path (long mode or 32-bit
        protected mode, the common gates): True if it was delivered; False sends it to the Python model, which then finds
        the same fault the compiled path declined on."""
        if not (self.fast_delivery and self.translate is None and self.tlb == "virtual"):
            return False
        if not self.internals.hflags & I.HF_PE:
            return False  # real mode: the model (the kernel would decline)
        a = self._exc_args
        a[DL.DA_VECTOR] = event.vector
        a[DL.DA_KIND] = DL.KIND_SOFTWARE if event.kind == "software" else DL.KIND_EXCEPTION
        flags = 0
        if event.has_error_code:
            flags |= DL.HAS_ERROR
            a[DL.DA_ERROR] = (event.error_code or 0) & 0xFFFF_FFFF_FFFF_FFFF
        if event.vector == PAGE_FAULT and event.kind == "exception" and event.cr2 is not None:
            flags |= DL.HAS_CR2
            a[DL.DA_CR2] = event.cr2 & 0xFFFF_FFFF_FFFF_FFFF
        if event.next_rip is not None:
            flags |= DL.HAS_RETURN_RIP
            a[DL.DA_RETURN_RIP] = event.next_rip & 0xFFFF_FFFF_FFFF_FFFF
        a[DL.DA_FLAGS] = flags
        if self._fast_deliver(self._exc_args_ptr, self._fast_out_ptr) != DL.DELIVERED:
            return False
        self.fast_deliveries += 1
        raw = FastDelivery(event.vector, int(self._fast_out[DL.DO_OLD_HFLAGS]),
                           *self._fast_out[: DL.DO_WHY].tolist()[1:])  # fmt: skip
        if self.on_delivery is not None:
            # the state it happened in (the CPU already holds the handler's)
            self.on_delivery(event, replace(exc, rsp=raw.old_rsp), raw.result(event))
        return True

    def delivery_cpu(self) -> DeliveryCpu:
        uc = self.uc
        env = self.internals
        hflags = env.hflags
        gdtr = uc.reg_read(X.UC_X86_REG_GDTR)
        idtr = uc.reg_read(X.UC_X86_REG_IDTR)
        ldtr = uc.reg_read(X.UC_X86_REG_LDTR)
        tr = uc.reg_read(X.UC_X86_REG_TR)
        # RIP, RSP and CR2 straight from env (a binding reg_read costs microseconds); RFLAGS
        # through the API, which computes the lazily kept arithmetic flags.
        return DeliveryCpu(
            long_mode=bool(hflags & I.HF_LMA),
            cpl=hflags & I.HF_CPL_MASK,
            rip=env.u64(I.ENV_EIP),
            rsp=env.u64(I.ENV_REGS + 4 * 8),
            rflags=uc.reg_read(X.UC_X86_REG_RFLAGS),
            cs=SegmentCache(*env.segment(I.SEG_CS)),
            ss=SegmentCache(*env.segment(I.SEG_SS)),
            gdtr=(gdtr[1], gdtr[2]),
            ldtr=SegmentCache(ldtr[0], ldtr[1], ldtr[2], ldtr[3]),
            idtr=(idtr[1], idtr[2]),
            tr=SegmentCache(tr[0], tr[1], tr[2], tr[3]),
            cr2=env.u64(I.ENV_CR2),
            real_mode=not hflags & I.HF_PE,
        )

    def apply_delivery(self, new: DeliveryCpu) -> None:
        """Load the post-delivery state. RIP is written into env: a reg_write of RIP from a
        hook would end the emulation loop (uc.c sets quit_request)."""
        uc = self.uc
        env = self.internals
        env.write_segment(I.SEG_CS, new.cs.selector, new.cs.base, new.cs.limit, new.cs.flags)
        env.write_segment(I.SEG_SS, new.ss.selector, new.ss.base, new.ss.limit, new.ss.flags)
        env.write_u64(I.ENV_REGS + 4 * 8, new.rsp)
        uc.reg_write(X.UC_X86_REG_RFLAGS, new.rflags)
        env.write_u64(I.ENV_CR2, new.cr2)
        env.write_u64(I.ENV_EIP, new.rip)
        env.update_hflags()

    def _refused_fill(self) -> SliceEnd | None:
        """Our walker refused a TLB fill: raise #PF (or #GP for a non-canonical address)
        through the IDT model, outside the engine. RIP is on the faulting instruction."""
        fc = self.fill_ctx
        page = int(fc[ML.FILL_VADDR])
        status = int(fc[ML.FILL_LEVEL])
        rip = self.uc.reg_read(X.UC_X86_REG_RIP)
        self._stop = None
        if status == ML.ST_NON_CANONICAL:
            exc = GuestException(13, rip, 0, None, False, cpu_mode(self.internals.hflags),
                                 self.internals.hflags & I.HF_CPL_MASK, None,
                                 *self._code_segment())  # fmt: skip
        else:
            exc = GuestException(14, rip, int(fc[ML.FILL_ERR]), self._fault_address(page), False,
                                 cpu_mode(self.internals.hflags),
                                 self.internals.hflags & I.HF_CPL_MASK, None,
                                 *self._code_segment())  # fmt: skip
            self.last_page_fault_access = int(fc[ML.FILL_ACCESS])
        self._raise(exc)
        return self._stop

    def _fault_address(self, page: int) -> int:
        """The full faulting linear address, which the TLB-fill hook does not see: Unicorn
        keeps it in uc->invalid_addr (unicorn-2.1.4.md Q1). Checked against the page."""
        value = ctypes.c_uint64.from_address(I.uc_handle(self.uc) + I.UC_INVALID_ADDR).value
        if value & ~0xFFF == page & ~0xFFF:
            return value
        if not _WARNED:
            _WARNED.append(True)
            log.warning("uc->invalid_addr does not match the faulting page: CR2 holds the page")
        return page


class DeliveryMemory:
    """Supervisor linear accesses for delivery: identity with paging off, else ``translate``."""

    def __init__(self, core: UnicornCore) -> None:
        self.core = core
        self.ram = core.ram
        env = core.internals
        # One delivery never changes the control registers: read them once, straight from env.
        self.cr0, self.cr3, self.cr4 = env.u64(I.ENV_CR0), env.u64(I.ENV_CR3), env.u64(I.ENV_CR4)
        self.efer = env.u64(I.ENV_EFER)
        self.paging = bool(self.cr0 & 0x80000000)
        self._pages: dict[tuple[int, bool], int] = {}  # (linear page, write) -> physical page

    def _phys(self, address: int, write: bool) -> int:
        if not self.paging:
            return address & 0xFFFFFFFF
        if self.core.translate is not None:
            return self.core.translate(address, write)
        page = self._pages.get((address >> 12, write))
        if page is not None:
            return page | (address & 0xFFF)
        cr0, cr3, cr4, efer = self.cr0, self.cr3, self.cr4, self.efer
        # Delivery's IDT/GDT/TSS reads and stack pushes are implicit supervisor accesses.
        acc = ML.ACC_WRITE if write else ML.ACC_READ
        pages = self.core.pages
        track = pages.ctx if pages is not None else None
        w = mmu.translate_raw(self.ram, cr0, cr3, cr4, efer, address, acc, False, False, True,
                              track=track)  # fmt: skip
        status = int(w[ML.OUT_STATUS])
        if status == ML.ST_OK or (status == ML.ST_OUTSIDE_RAM and self.core.memory is not None):
            # (a page outside RAM is still a translation: the physical address space answers)
            phys = int(w[ML.OUT_PADDR])
            self._pages[(address >> 12, write)] = phys & ~0xFFF
            return phys
        if status == ML.ST_NON_CANONICAL:
            raise MemoryFault(13, 0, None, f"0x{address:x} is not canonical")
        if status == ML.ST_OUTSIDE_RAM:
            raise MemoryFault(13, 0, None, f"0x{address:x} translates outside guest RAM")
        walk = mmu.walk(self.ram, cr3, address, "w" if write else "r", cr0=cr0, cr4=cr4, efer=efer)
        raise MemoryFault(14, int(w[ML.OUT_ERR]), address, f"0x{address:x}: {walk.reason}")

    def _access(self, address: int, size: int, write: bool, data: bytes = b"") -> bytes:
        out = bytearray()
        done = 0
        memory = self.core.memory
        while done < size:
            lin = address + done
            chunk = min(size - done, 0x1000 - (lin & 0xFFF))
            phys = self._phys(lin, write)
            region = memory.find(phys) if memory is not None else None
            if memory is not None and (region is None or region.kind != "ram"):
                # outside RAM as the PC has it: ROM drops writes, unassigned space reads 0
                if write:
                    memory.write(phys, data[done : done + chunk])
                else:
                    out += memory.read(phys, chunk)
            elif phys + chunk > self.ram.size:
                raise MemoryFault(
                    13, 0, None, f"physical 0x{phys:x} (linear 0x{lin:x}) is outside guest RAM"
                )
            elif write:
                if self.core.pages is not None:
                    self.core.pages.before_write(phys, chunk)
                self.ram[phys : phys + chunk] = np.frombuffer(data[done : done + chunk], np.uint8)
            else:
                out += self.ram[phys : phys + chunk].tobytes()
            done += chunk
        return bytes(out)

    def read(self, address: int, size: int) -> bytes:
        return self._access(address, size, False)

    def write(self, address: int, data: bytes) -> None:
        self._access(address, len(data), True, data)
