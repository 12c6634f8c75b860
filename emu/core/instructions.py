"""What this CPU does on the instructions Unicorn hands to us, and which CPU it is.

Unicorn 2.1.4 runs most instructions itself; a few it calls a hook for, and there the
architecture is ours (unicorn-2.1.4.md Q5, Q9):

- IN/OUT go to the machine's port bus, through compiled hooks first: the IN hook answers the
  reads the devices published in the port read table (emu/port_cache.py), the OUT hook takes
  the EOI of an armed timer interrupt and the writes published as changing nothing;
- RDTSC/RDTSCP read the virtual clock, not the host's: through the compiled hook
  (clock/kernels.py ``rdtsc_hook``), or through ``_hook_rdtsc`` here, its readable model
  (``tsc_hook="python"``), which the tests compare it with;
- CPUID answers as the machine's CPU model says;
- SYSCALL/SYSENTER, which Unicorn treats as no-ops, do their architectural transfer here.

The CPU model (``cpu_model``): "qemu64", the default, is QEMU 7.2's ``-cpu qemu64`` without SVM
and the local APIC (``cpu_identity.py``, docs/platform.md "CPU identity"): CPUID answers from
that table, and Unicorn's translator is given qemu64's feature words and vendor, so the
instructions qemu64 lacks raise #UD (or run as their older encodings: LZCNT is BSR). What the
translator and Unicorn's MSR helpers cannot be told is intercepted: a code hook bounded to
exactly one instruction, installed when the block holding it is first learned (``_intercept``)
and before that block runs, emulates RDMSR of the three MSRs Unicorn hard-wires to 0
(IA32_APIC_BASE, MSR_SMI_COUNT, MSR_CORE_THREAD_COUNT) and raises #UD for the SSE4A
instructions, which Unicorn's translator never checks.
"unicorn" is Unicorn's own CPU (an Intel Haswell), with only the APIC bit hidden in CPUID.

``UnicornCore`` inherits these hooks and installs them.
"""

from __future__ import annotations

import struct
from dataclasses import replace

from capstone import CsInsn
from capstone import x86_const as CS
from unicorn import UC_ARCH_X86, UC_HOOK_CODE, UC_MODE_64, Uc
from unicorn import x86_const as X

from ..clock import layout as K
from ..errors import EngineError
from ..faults.raising import GuestException
from . import cpu_identity as ci
from . import internals as I
from .cpu_state import cpu_mode
from .stops import KIND_DEADLINE, KIND_IRQ, KIND_REQUESTED, SliceEnd

CPU_MODELS = ("qemu64", "unicorn")
TSC_HOOKS = ("compiled", "python")  # RDTSC: the compiled hook, or its readable model
# OUT imm8 (E6/E7) and OUT DX (EE/EF): their length after the prefixes
_OUT_OPCODES = {0xE6: 2, 0xE7: 2, 0xEE: 1, 0xEF: 1}
_LEGACY_PREFIXES = frozenset({0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65})
_CR0_PG = 1 << 31
_DELIVERED = K.CTX_DELIVERED
_IRQ_PENDING = K.CTX_IRQ_PENDING
_EVENT_DUE = K.CTX_EVENT_DUE
_ENDS_AFTER_OUT = (KIND_REQUESTED, KIND_IRQ, KIND_DEADLINE)
_ICOUNT = K.CTX_ICOUNT
_LAST_INFO = K.CTX_LAST_INFO
_COUNT_SHIFT = K.INFO_COUNT_SHIFT
CPUID1_EDX_APIC = 1 << 9
MSR_BIOS_SIGN_ID = 0x8B
# RDMSR answers Unicorn 2.1.4's helper gets wrong, all read-only under QEMU 7.2 (writes are
# ignored, as Unicorn ignores them): IA32_APIC_BASE reads 0 there (QEMU without an APIC gives the
# BSP bit); MSR_SMI_COUNT and MSR_CORE_THREAD_COUNT read 0 (QEMU: SeaBIOS's three SMIs; one
# core, one thread). Every other MSR a kernel reads or writes is Unicorn's own helper, which
# follows the feature words as QEMU's does (probe-cpuid's "msr" and "wrmsr" lines).
_RDMSR_ANSWERS = {
    msr: ci.msr_at_entry(msr)
    for msr in (ci.IA32_APIC_BASE, ci.MSR_SMI_COUNT, ci.MSR_CORE_THREAD_COUNT)
}
# The instructions the qemu64 model intercepts: RDMSR, and SSE4A (qemu64 has no SSE4A, and
# Unicorn's translator runs EXTRQ, INSERTQ, MOVNTSS and MOVNTSD whatever the feature words say).
_SSE4A = frozenset({CS.X86_INS_EXTRQ, CS.X86_INS_INSERTQ, CS.X86_INS_MOVNTSS, CS.X86_INS_MOVNTSD})
_QEMU64_INTERCEPTS = frozenset({CS.X86_INS_RDMSR, CS.X86_INS_WRMSR}) | _SSE4A
_DESC_A = 1 << 8
_DESC_R = _DESC_W = 1 << 9
_DESC_CS = 1 << 11
_DESC_S = 1 << 12
_DESC_P = 1 << 15
_DESC_L = 1 << 21
_DESC_B = 1 << 22
_DESC_G = 1 << 23
_RFLAGS_IF = 1 << 9
_RFLAGS_TF = 1 << 8
_RFLAGS_RF = 1 << 16
_RFLAGS_VM = 1 << 17


class CpuInstructions:
    """The instruction hooks of ``UnicornCore`` (a mixin: ``self`` is the core)."""

    def _hook_in(self, uc: Uc, port: int, size: int, _ud: object) -> int:
        if self._ctxv[K.CTX_DELIVERED]:
            self.settle()
        value = self.port_read(port, size)
        if self.after_io is not None:
            self.after_io()
        return value

    def _hook_out(self, uc: Uc, port: int, size: int, value: int, _ud: object) -> None:
        if self._ctxv[K.CTX_DELIVERED]:
            self.settle()
        requested = self._stop is not None
        pending = self._ctxv[K.CTX_IRQ_PENDING]
        self.port_write(port, size, value)
        if self.after_io is not None:
            self.after_io()
        self._after_out(requested, pending)

    def _after_out(self, requested: bool, pending: int) -> None:
        """An OUT that asked the run to end ends it right after itself; so does one that raised
        INTR where the CPU takes it next (IF=1: unmasking or ending an interrupt at the 8259),
        so that the interrupt comes after this instruction, as a step takes it, and not at the
        end of the block."""
        if requested or self._stepping:
            return
        raised = self._stop is None and not pending and self._ctxv[K.CTX_IRQ_PENDING]
        # (with TF the single-step #DB of this OUT comes first, as a trap on the instruction
        # before outranks an external interrupt: its block ends there, and the interrupt is
        # taken at the next block boundary, as a step takes it)
        if raised and self.internals.u64(I.ENV_EFLAGS) & (_RFLAGS_IF | _RFLAGS_TF) == _RFLAGS_IF:
            self._stop = SliceEnd(KIND_IRQ)
            self.uc.emu_stop()
        elif self._stop is None and self._event_in_block():
            self._stop = SliceEnd(KIND_DEADLINE)  # the next slice is cut at the event
            self.uc.emu_stop()
        if self._stop is not None and self._stop.kind in _ENDS_AFTER_OUT:
            self._stop_after_out()

    def _event_in_block(self) -> bool:
        """Did this I/O write bring the earliest device event (a PIT count, a local APIC or
        HPET timer) before the end of the block it runs in? The block's deadline check was made
        at its start, so the run would take the event only after the block, where steps take it
        at its count: the write then ends the run right after itself instead."""
        ctx = self._ctxv
        return (
            not self._stepping
            and ctx[_LAST_INFO] >> _COUNT_SHIFT != 0  # inside a counted block
            and ctx[_EVENT_DUE] < ctx[_ICOUNT]  # the count at the block's end
        )

    def _after_mmio_store(self, raised: bool, event: bool) -> None:
        """A store to a device's registers raised INTR (``raised``: an EOI or TPR write that let
        a pending interrupt through, a self-IPI, an unmasked I/O APIC pin) or brought a timer's
        expiry before the end of the block (``event``, ``_event_in_block``): where the CPU takes the interrupt next (IF=1, no TF:
        as for an OUT, the single-step #DB would come first) or the event falls in the block,
        end the run right after the instruction, as a step takes it, not at the end of the
        block. Only a MOV: its store is the last thing it does (the compiled MMIO hook leaves
        the CPU loop when the store returns); any other instruction still ends its block
        first."""
        if self._stepping or self._stop is not None:
            return
        env = self.internals
        takes = raised and env.u64(I.ENV_EFLAGS) & (_RFLAGS_IF | _RFLAGS_TF) == _RFLAGS_IF
        if not takes and not event:
            return
        if not env.restore_io_rip():  # env->eip: the storing instruction (the clock's too)
            return
        eip = env.u64(I.ENV_EIP)
        linear = self._code_segment()[1] + eip
        bits = _code_bits(env.hflags)
        insn = next(self._disasm[bits].disasm_lite(self._code_at(linear), linear, 1), None)
        if insn is None or insn[2] != "mov":
            return
        length = insn[1]
        self._exit_after(eip + length, (1 << bits) - 1)
        self._stop = SliceEnd(KIND_IRQ if takes else KIND_DEADLINE, address=linear + length)
        self.uc.emu_stop()

    def _exit_after(self, next_eip: int, mask: int) -> None:
        """The compiled hook of the I/O instruction executing now leaves the CPU loop when the
        access returns, at ``next_eip``: the instruction retired there. It also ends an STI or
        MOV SS shadow it was in (the translator ends the shadow at the end of the block, which
        the exit skips), so that an interrupt is taken right after it, as a step takes it."""
        ctx = self._ctxv
        ctx[K.CTX_EXIT_EIP] = next_eip & mask
        ctx[K.CTX_EXIT_NOW] = 1
        env = self.internals
        hflags = env.hflags
        if hflags & I.HF_INHIBIT_IRQ:
            env.write_u32(I.ENV_HFLAGS, hflags & ~I.HF_INHIBIT_IRQ)

    def _stop_after_out(self) -> None:
        """This OUT asked the run to end (isa-debug-exit, a reset request): end it right after
        the instruction, as QEMU does, rather than at the end of the block. OUTS is left to end
        the block (its REP count is the instruction's own state)."""
        env = self.internals
        eip = env.u64(I.ENV_EIP)  # synced to the OUT by Unicorn before the hooks
        linear = self._code_segment()[1] + eip
        code = self._read_linear(linear, 15)
        n = 0
        while n < len(code) and (code[n] in _LEGACY_PREFIXES or (
            env.hflags & I.HF_CS64 and 0x40 <= code[n] <= 0x4F
        )):  # fmt: skip
            n += 1
        if n >= len(code) or code[n] not in _OUT_OPCODES:
            return
        length = n + _OUT_OPCODES[code[n]]
        mask = 0xFFFF_FFFF_FFFF_FFFF if env.hflags & I.HF_CS64 else (
            0xFFFF_FFFF if env.hflags & I.HF_CS32 else 0xFFFF
        )  # fmt: skip
        self._exit_after(eip + length, mask)
        self._stop = replace(self._stop, address=linear + length)

    def _hook_in_c(self, port: int, size: int) -> int:
        """The IN the compiled hook passes on (see ``_hook_out_c`` for errors): ``_hook_in``,
        inlined (this runs at every IN the port read table does not answer)."""
        try:
            if self._ctxv[_DELIVERED]:
                self.settle()
            value = self.port_read(port, size)
            if self.after_io is not None:
                self.after_io()
            return value
        except BaseException as e:  # noqa: BLE001 - re-raised after emu_start
            if self._hook_error is None:
                self._hook_error = e
            self.uc.emu_stop()
            return 0

    def _hook_out_c(self, port: int, size: int, value: int) -> None:
        """The OUT the compiled hook passes on. A C callback cannot raise: an error is kept,
        emulation stopped, and the error raised again when emu_start returns."""
        try:  # _hook_out, inlined (this runs at every OUT the compiled hook does not take)
            ctx = self._ctxv
            if ctx[_DELIVERED]:
                self.settle()
            requested = self._stop is not None
            pending = ctx[_IRQ_PENDING]
            self.port_write(port, size, value)
            if self.after_io is not None:
                self.after_io()
            # _after_out where it has something to do: a stop asked for, INTR raised, or a
            # device event brought before the end of the block
            if not requested and (
                self._stop is not None
                or (not pending and ctx[_IRQ_PENDING])
                or ctx[_EVENT_DUE] < ctx[_ICOUNT]
            ):
                self._after_out(requested, pending)
        except BaseException as e:  # noqa: BLE001 - re-raised after emu_start
            if self._hook_error is None:
                self._hook_error = e
            self.uc.emu_stop()

    def _virtual_tsc(self) -> int:
        """The TSC at the RDTSC being executed: instructions retired, plus the idle time in ticks
        of the clock rate (``time_offset``)."""
        return (self.precise_icount() + self.time_offset) * self.tsc_per_instruction

    def _hook_rdtsc(self, _uc: int, _ud: int) -> int:
        uc = self.uc
        self.tsc_reads += 1
        tsc = self._virtual_tsc()
        uc.reg_write(X.UC_X86_REG_RAX, tsc & 0xFFFFFFFF)
        uc.reg_write(X.UC_X86_REG_RDX, (tsc >> 32) & 0xFFFFFFFF)
        return 1  # skip Unicorn's host-time RDTSC

    def _hook_rdtscp(self, _uc: int, _ud: int) -> int:
        self._hook_rdtsc(_uc, _ud)
        self.uc.reg_write(X.UC_X86_REG_RCX, 0)  # IA32_TSC_AUX is 0 on our single CPU
        return 1

    def _hook_cpuid(self, uc: Uc, _ud: object) -> int:
        """qemu64: every leaf from the model's table. unicorn: leaf 1 without the APIC bit
        (Unicorn's CPU advertises a local APIC it does not have, and kernels that see it program
        registers that are not there; hidden, they take their 8259 path), other leaves
        unchanged."""
        if self.cpu_model == "qemu64":
            env = self.internals
            leaf, subleaf = env.u64(I.ENV_REGS) & 0xFFFFFFFF, env.u64(I.ENV_REGS + 8) & 0xFFFFFFFF
            answer = ci.cpuid(leaf, subleaf, apic=self.apic is not None)
            if leaf == 1 and self.apic is not None and not self.apic.enabled:
                # QEMU clears the leaf 1 bit (only) once IA32_APIC_BASE disables the APIC
                answer = (*answer[:3], answer[3] & ~CPUID1_EDX_APIC)
            for reg, value in zip(_CPUID_OUT, answer, strict=True):
                uc.reg_write(reg, value)
            return 1  # skip Unicorn's own CPUID: Unicorn still advances RIP
        if uc.reg_read(X.UC_X86_REG_EAX) & 0xFFFFFFFF != 1:
            return 0
        eax, ebx, ecx, edx = self._cpuid_leaf1
        uc.reg_write(X.UC_X86_REG_RAX, eax)
        uc.reg_write(X.UC_X86_REG_RBX, ebx)
        uc.reg_write(X.UC_X86_REG_RCX, ecx)
        uc.reg_write(X.UC_X86_REG_RDX, edx & ~CPUID1_EDX_APIC)
        return 1  # skip the instruction itself: Unicorn still advances RIP

    # SYSCALL/SYSENTER: Unicorn calls the hook and then only adds the instruction length to
    # RIP (unicorn-2.1.4.md Q9), so the architectural transfer is done here, with RIP written
    # as target - 2 to absorb that addition.
    def _hook_syscall(self, uc: Uc, _ud: object) -> None:
        rip = uc.reg_read(X.UC_X86_REG_RIP)
        env = self.internals
        efer = env.u64(I.ENV_EFER)
        if not efer & 1:  # EFER.SCE
            self._raise_from_insn_hook(GuestException(6, rip, None, None, False,
                                       cpu_mode(env.hflags), env.hflags & I.HF_CPL_MASK,
                                       None, *self._code_segment()))  # fmt: skip
            return
        star = uc.msr_read(0xC0000081)
        rflags = uc.reg_read(X.UC_X86_REG_RFLAGS)
        sel = (star >> 32) & 0xFFFC
        flat = _DESC_G | _DESC_P | _DESC_S | _DESC_A
        if env.hflags & I.HF_LMA:
            uc.reg_write(X.UC_X86_REG_RCX, rip + 2)
            uc.reg_write(X.UC_X86_REG_R11, rflags & ~_RFLAGS_RF)
            fmask = uc.msr_read(0xC0000084)
            uc.reg_write(X.UC_X86_REG_RFLAGS, rflags & ~fmask & ~_RFLAGS_RF)
            code_flags = (
                flat | _DESC_CS | _DESC_R | (_DESC_L if env.hflags & I.HF_CS64 else _DESC_B)
            )
            target = uc.msr_read(0xC0000082 if env.hflags & I.HF_CS64 else 0xC0000083)
        else:
            uc.reg_write(X.UC_X86_REG_RCX, (rip + 2) & 0xFFFFFFFF)
            uc.reg_write(X.UC_X86_REG_RFLAGS, rflags & ~(_RFLAGS_IF | _RFLAGS_RF | _RFLAGS_VM))
            code_flags = flat | _DESC_CS | _DESC_R | _DESC_B
            target = star & 0xFFFFFFFF
        env.write_segment(I.SEG_CS, sel, 0, 0xFFFFFFFF, code_flags)
        env.write_segment(I.SEG_SS, (sel + 8) & 0xFFFC, 0, 0xFFFFFFFF, flat | _DESC_B | _DESC_W)
        env.update_hflags()
        env.write_u64(I.ENV_EIP, target - 2)

    def _hook_sysenter(self, uc: Uc, _ud: object) -> None:
        rip = uc.reg_read(X.UC_X86_REG_RIP)
        env = self.internals
        cs = uc.msr_read(0x174) & 0xFFFC
        if cs == 0 or not env.hflags & I.HF_PE:
            self._raise_from_insn_hook(GuestException(13, rip, 0, None, False,
                                       cpu_mode(env.hflags), env.hflags & I.HF_CPL_MASK,
                                       None, *self._code_segment()))  # fmt: skip
            return
        rflags = uc.reg_read(X.UC_X86_REG_RFLAGS)
        uc.reg_write(X.UC_X86_REG_RFLAGS, rflags & ~(_RFLAGS_IF | _RFLAGS_RF | _RFLAGS_VM))
        flat = _DESC_G | _DESC_P | _DESC_S | _DESC_A
        long_mode = bool(env.hflags & I.HF_LMA)
        code_flags = flat | _DESC_CS | _DESC_R | (_DESC_L if long_mode else _DESC_B)
        env.write_segment(I.SEG_CS, cs, 0, 0xFFFFFFFF, code_flags)
        env.write_segment(I.SEG_SS, cs + 8, 0, 0xFFFFFFFF, flat | _DESC_B | _DESC_W)
        env.update_hflags()
        mask = 0xFFFF_FFFF_FFFF_FFFF if long_mode else 0xFFFFFFFF
        uc.reg_write(X.UC_X86_REG_RSP, uc.msr_read(0x175) & mask)
        env.write_u64(I.ENV_EIP, (uc.msr_read(0x176) & mask) - 2)

    def _raise_from_insn_hook(self, exc: GuestException) -> None:
        """An exception raised by SYSCALL/SYSENTER: deliver it, then undo Unicorn's RIP += 2."""
        self._raise(exc)
        if self._stop is None:
            self.internals.write_u64(I.ENV_EIP, self.internals.u64(I.ENV_EIP) - 2)

    # ------------------------------------------------------------ the CPU model
    def _init_cpu_identity(self) -> None:
        """Make the engine the CPU ``cpu_model`` names, before any code is translated: the
        translator's feature words and vendor, and the microcode revision RDMSR reports. These
        live outside the context blob, so checkpoints neither save nor change them."""
        if self.cpu_model not in CPU_MODELS:
            raise EngineError(f"unknown CPU model {self.cpu_model!r} ({' or '.join(CPU_MODELS)})")
        I.verify_cpu_model(self.uc, self.internals)  # a fresh engine: Unicorn's own model
        self._intercepts: dict[int, int] = {}  # address -> handle of its code hook
        self._sse4a_sites: set[int] = set()  # ... of them, where an SSE4A instruction was seen
        self._intercept_ids = _QEMU64_INTERCEPTS if self.cpu_model == "qemu64" else frozenset()
        # ... and their mnemonics, which the block learner's light decoding gives
        self._intercept_names = frozenset(
            self._disasm[64].insn_name(i) for i in self._intercept_ids
        )
        if self.cpu_model != "qemu64":
            return
        env = self.internals
        words = ci.translator_feature_words()
        for i, name in enumerate(I.FEATURE_WORDS):
            env.write_u64(I.ENV_FEATURES + 8 * i, words[name])
        # cpuid_vendor1..3 are leaf 0's EBX, EDX, ECX: "Auth", "enti", "cAMD"
        for i, word in enumerate(struct.unpack("<3I", ci.VENDOR.encode("ascii"))):
            env.write_u32(I.ENV_CPUID_VENDOR + 4 * i, word)
        env.write_u64(I.ENV_TO_UCODE_REV, ci.QEMU64_MSRS_AT_ENTRY[MSR_BIOS_SIGN_ID])

    def _set_firmware_state(self) -> None:
        """The MSRs SeaBIOS and GRUB leave, for the qemu64 model (MISC_ENABLE's fast strings,
        SeaBIOS's MTRRs; the rest already match). The firmware stub (firmware/boot.py) touches
        no MSR, so the kernel's first instruction finds them as under GRUB; it leaves EFLAGS as
        GRUB does itself. (unicorn: the MSRs as Unicorn resets them.)"""
        if self.cpu_model != "qemu64":
            return
        uc = self.uc
        for msr, value in ci.QEMU64_MSRS_AT_ENTRY.items():
            if msr in _RDMSR_ANSWERS or msr == MSR_BIOS_SIGN_ID or uc.msr_read(msr) == value:
                continue
            uc.msr_write(msr, value)
            if uc.msr_read(msr) != value:
                raise EngineError(f"the CPU core does not keep MSR 0x{msr:x} = 0x{value:x}")

    def _rdmsr_answer(self, msr: int) -> int | None:
        if msr == ci.IA32_APIC_BASE and self.apic is not None:
            return self.apic.read_base_msr()
        return _RDMSR_ANSWERS.get(msr)

    def read_msr(self, msr: int) -> int:
        """What RDMSR ``msr`` would return now at CPL 0 (no side effects)."""
        if self.cpu_model == "qemu64" and msr in _RDMSR_ANSWERS:
            return self._rdmsr_answer(msr)
        return self.uc.msr_read(msr)

    # ------------------------------------------------------- intercepted instructions
    def _intercept(self, insn: CsInsn) -> bool:
        """Give an instruction the model intercepts its code hook (once per address). True if
        one was added: code translated before has none, and must be translated again."""
        address = insn.address
        if insn.id not in self._intercept_ids:
            return False
        if insn.id in _SSE4A:
            self._sse4a_sites.add(address)
        if address in self._intercepts:
            return False
        self._intercepts[address] = self.uc.hook_add(
            UC_HOOK_CODE, self._hook_intercepted, None, address, address
        )
        if address in self._breakpoints:
            # Hooks run in the order they were added: a breakpoint's goes after this one, so
            # this one knows it will stop the run (see _hook_intercepted).
            self.remove_breakpoint(address)
            self.add_breakpoint(address)
        return True

    def _intercept_code_at(self, rip: int, bits: int) -> bool:
        """``_intercept`` for the instruction at ``rip``, decoded from memory: a block can end
        inside its last instruction (the translator stops at a fault it finds while decoding,
        such as #NM for an SSE instruction with CR0.TS set), so its bytes are not all there."""
        insn = next(self._disasm[bits].disasm(self._read_linear(rip, 15), rip, 1), None)
        return insn is not None and insn.id in self._intercept_ids and self._intercept(insn)

    def _intercept_at(self, rip: int) -> None:
        """Before a single step: the instruction at ``rip`` may never have been learned in a
        block. Any cached translation of it lacks a new hook, and is dropped."""
        if self._intercept_code_at(rip, _code_bits(self.internals.hflags)):
            self.uc.ctl_flush_tb()

    def _hook_intercepted(self, uc: Uc, address: int, size: int, _ud: object) -> None:
        """Before an intercepted instruction. Where only RDMSR was ever seen, an RDMSR of an MSR
        Unicorn answers right returns at once (what is at the address then runs as it is, RDMSR
        or not). Otherwise the code at ``address`` is decoded again (it may have changed, or
        belong to another address space): only what is there now counts."""
        env = self.internals
        hflags = env.hflags
        if address not in self._sse4a_sites and (
            hflags & I.HF_CPL_MASK or env.u64(I.ENV_REGS + 8) & 0xFFFFFFFF not in _RDMSR_ANSWERS
        ):
            return
        if (
            address in self._breakpoints
            and self._resume_from != address
            and self._stop is None
            and self._ctxv[K.CTX_ENABLED]
        ):
            return  # the breakpoint's hook, after this one, stops the run before it
        # (15 bytes: ``size`` is what the translator decoded, which can stop inside it)
        insn = next(self._disasm[_code_bits(hflags)].disasm(self._code_at(address),
                                                           address, 1), None)  # fmt: skip
        if insn is None or insn.id not in self._intercept_ids:
            return  # not one of ours (any more)
        if insn.id == CS.X86_INS_RDMSR:
            value = self._rdmsr_answer(env.u64(I.ENV_REGS + 8) & 0xFFFFFFFF)
            if value is not None and not hflags & I.HF_CPL_MASK:  # CPL > 0: Unicorn's #GP
                self._emulate_rdmsr(insn.size, value)
            return
        if insn.id == CS.X86_INS_WRMSR:
            # IA32_APIC_BASE goes to the local APIC; every other MSR is Unicorn's helper's
            msr = env.u64(I.ENV_REGS + 8) & 0xFFFFFFFF
            if msr == ci.IA32_APIC_BASE and self.apic is not None and not hflags & I.HF_CPL_MASK:
                value = (env.u64(I.ENV_REGS) & 0xFFFFFFFF) | (env.u64(I.ENV_REGS + 16) << 32)
                self.apic.write_base_msr(value & 0xFFFF_FFFF_FFFF_FFFF)
                self._retire_intercepted(insn.size)
            return
        # no SSE4A: #UD, before any #NM for CR0.TS (QEMU 7.2's order, measured)
        self._raise(self._exception(6, env.u64(I.ENV_EIP), False))
        if self._stop is None:
            self._leave_block(env.u64(I.ENV_EIP))

    def straight_run(self, leaves: tuple[str, ...], most: int, before: int) -> int:
        """How many instructions from the executing one on, as the code is now, up to and
        including the first whose mnemonic starts with one of ``leaves`` (the instructions
        that may go elsewhere), and short of the next one at RIP ``before``: at most ``most``,
        at least 1."""
        env = self.internals
        base = self._code_segment()[1]
        rip = env.u64(I.ENV_EIP)
        bits = _code_bits(env.hflags)
        n = 0
        code = self._read_linear(base + rip, 15 * most)
        for address, size, mnemonic, _ops in self._disasm[bits].disasm_lite(code, rip):
            n += 1
            if n == most or mnemonic.startswith(leaves) or address + size == before:
                break
        return max(n, 1)

    def _code_at(self, address: int) -> bytes:
        """The 15 bytes at a linear address, as ``_read_linear`` gives them; with paging off
        straight from RAM (a walk costs tens of microseconds)."""
        env = self.internals
        phys = address & 0xFFFFFFFF
        if not env.u64(I.ENV_CR0) & _CR0_PG and phys + 15 <= self.ram.size:
            return self.ram[phys : phys + 15].tobytes()
        return self._read_linear(address, 15)

    def _emulate_rdmsr(self, size: int, value: int) -> None:
        """RDMSR with EDX:EAX = ``value``: the instruction retires here and Unicorn skips it.
        The clock hook counted the whole block at its entry; what retired is what comes before
        this instruction, and the instruction itself. (Single-stepping counts in step().)"""
        env = self.internals
        env.write_u64(I.ENV_REGS, value & 0xFFFFFFFF)
        env.write_u64(I.ENV_REGS + 2 * 8, value >> 32)
        self._retire_intercepted(size)

    def _retire_intercepted(self, size: int) -> None:
        """The intercepted instruction at EIP retires here and Unicorn skips it (see
        ``_emulate_rdmsr``)."""
        env = self.internals
        eip = env.u64(I.ENV_EIP)  # synced to this instruction before a code hook
        if self._ctxv[K.CTX_ENABLED]:
            self._account_partial_block(eip)
            self._ctxv[K.CTX_ICOUNT] += 1
        hflags = env.hflags
        if hflags & I.HF_INHIBIT_IRQ:  # a retired instruction ends the STI / MOV SS shadow
            env.write_u32(I.ENV_HFLAGS, hflags & ~I.HF_INHIBIT_IRQ)
        self._leave_block((eip + size) & ((1 << _code_bits(hflags)) - 1))

    def _leave_block(self, rip: int) -> None:
        """Go on at ``rip`` instead of the rest of the translated block. A RIP write through the
        API ends the block after this hook and restarts the CPU loop there (uc.c sets
        quit_request, which cpus.c resumes from); the emulation goes on."""
        self.uc.reg_write(X.UC_X86_REG_RIP, rip)


_CPUID_OUT = (X.UC_X86_REG_RAX, X.UC_X86_REG_RBX, X.UC_X86_REG_RCX, X.UC_X86_REG_RDX)


def _code_bits(hflags: int) -> int:
    return 64 if hflags & I.HF_CS64 else 32 if hflags & I.HF_CS32 else 16


_CPUID_LEAF1: list[tuple[int, int, int, int]] = []


def _native_cpuid_leaf1() -> tuple[int, int, int, int]:
    """What Unicorn's CPU answers to CPUID leaf 1, from a scratch engine (once per process)."""
    if not _CPUID_LEAF1:
        scratch = Uc(UC_ARCH_X86, UC_MODE_64)
        scratch.mem_map(0x1000, 0x1000)
        scratch.mem_write(0x1000, b"\x0f\xa2")  # cpuid
        scratch.reg_write(X.UC_X86_REG_RAX, 1)
        scratch.reg_write(X.UC_X86_REG_RCX, 0)
        scratch.emu_start(0x1000, 0x1002)
        regs = (X.UC_X86_REG_RAX, X.UC_X86_REG_RBX, X.UC_X86_REG_RCX, X.UC_X86_REG_RDX)
        _CPUID_LEAF1.append(tuple(scratch.reg_read(r) & 0xFFFFFFFF for r in regs))
    return _CPUID_LEAF1[0]
