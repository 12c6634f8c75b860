"""What this CPU does on the instructions Unicorn hands to us.

Unicorn 2.1.4 runs most instructions itself; a few it calls a hook for, and there the
architecture is ours (unicorn-2.1.4.md Q5, Q9):

- IN/OUT go to the machine's port bus (OUT through a compiled hook first, which takes the EOI
  of an armed timer interrupt itself);
- RDTSC/RDTSCP read the virtual clock, not the host's;
- CPUID answers as the machine's CPU model says;
- SYSCALL/SYSENTER, which Unicorn treats as no-ops, do their architectural transfer here.

``UnicornCore`` inherits these hooks and installs them.
"""

from __future__ import annotations

from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn import x86_const as X

from ..clock import layout as K
from ..faults.raising import GuestException
from . import internals as I
from .cpu_state import cpu_mode

CPUID1_EDX_APIC = 1 << 9
_DESC_A = 1 << 8
_DESC_R = _DESC_W = 1 << 9
_DESC_CS = 1 << 11
_DESC_S = 1 << 12
_DESC_P = 1 << 15
_DESC_L = 1 << 21
_DESC_B = 1 << 22
_DESC_G = 1 << 23
_RFLAGS_IF = 1 << 9
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
        self.port_write(port, size, value)
        if self.after_io is not None:
            self.after_io()

    def _hook_out_c(self, port: int, size: int, value: int) -> None:
        """The OUT the compiled hook passes on. A C callback cannot raise: an error is kept,
        emulation stopped, and the error raised again when emu_start returns."""
        try:
            self._hook_out(self.uc, port, size, value, None)
        except BaseException as e:  # noqa: BLE001 - re-raised after emu_start
            if self._hook_error is None:
                self._hook_error = e
            self.uc.emu_stop()

    def _virtual_tsc(self) -> int:
        """Virtual time at the RDTSC being executed (instructions retired + idle time)."""
        return (self.precise_icount() + self.time_offset) * self.tsc_per_instruction

    def _hook_rdtsc(self, _uc: int, _ud: int) -> int:
        uc = self.uc
        tsc = self._virtual_tsc()
        uc.reg_write(X.UC_X86_REG_RAX, tsc & 0xFFFFFFFF)
        uc.reg_write(X.UC_X86_REG_RDX, (tsc >> 32) & 0xFFFFFFFF)
        return 1  # skip Unicorn's host-time RDTSC

    def _hook_rdtscp(self, _uc: int, _ud: int) -> int:
        self._hook_rdtsc(_uc, _ud)
        self.uc.reg_write(X.UC_X86_REG_RCX, 0)  # IA32_TSC_AUX is 0 on our single CPU
        return 1

    def _hook_cpuid(self, uc: Uc, _ud: object) -> int:
        """CPUID leaf 1 without the APIC bit: Unicorn's CPU advertises a local APIC it does not
        have, and kernels that see it program registers that are not there. Hiding it sends
        them down their 8259 path, as on a pre-APIC PC. Other leaves run unchanged."""
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
                                       cpu_mode(env.hflags), env.hflags & I.HF_CPL_MASK))  # fmt: skip
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
                                       cpu_mode(env.hflags), env.hflags & I.HF_CPL_MASK))  # fmt: skip
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
