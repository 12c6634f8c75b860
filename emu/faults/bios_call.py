"""The core's side of a BIOS call: the caller's registers for the service, and the guest's
memory and ports as the BIOS reaches them (firmware/bios/ holds the services).

A stub's UD2 runs in real mode, where a linear address is the physical one (paging is off and
A20 is on). The FLAGS image the service changes is the one in the IRET frame at SS:SP+4, which
the stub's IRET pops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from unicorn import x86_const as X

from firmware.bios import BiosRegs
from firmware.bios.regs import GENERAL, changed

from ..core import internals as I

if TYPE_CHECKING:
    from ..core.engine import UnicornCore

_GPR = {
    "eax": X.UC_X86_REG_EAX,
    "ebx": X.UC_X86_REG_EBX,
    "ecx": X.UC_X86_REG_ECX,
    "edx": X.UC_X86_REG_EDX,
    "esi": X.UC_X86_REG_ESI,
    "edi": X.UC_X86_REG_EDI,
    "ebp": X.UC_X86_REG_EBP,
}
_SEGMENT = {"ds": I.SEG_DS, "es": I.SEG_ES}
_FLAGS_IN_FRAME = 4  # IP, CS, FLAGS: the frame INT n (or PUSHF + CALL FAR) leaves


class BiosBusView:
    """Physical memory and I/O ports for a service. Writes drop the engine's translations of
    the bytes they change (host writes do not invalidate translated code by themselves)."""

    def __init__(self, core: UnicornCore) -> None:
        self.core = core

    def read(self, address: int, size: int) -> bytes:
        memory = self.core.memory
        if memory is not None:
            return memory.read(address, size)
        ram = self.core.ram
        return ram[address : address + size].tobytes().ljust(size, b"\0")

    def write(self, address: int, data: bytes) -> None:
        if not data:
            return
        memory = self.core.memory
        if memory is not None:
            memory.write(address, data)
        else:
            end = min(address + len(data), self.core.ram.size)
            if address < end:
                self.core.ram[address:end] = np.frombuffer(data[: end - address], np.uint8)
        self.core.uc.ctl_remove_cache(address, address + len(data))

    def inb(self, port: int) -> int:
        value = self.core.port_read(port & 0xFFFF, 1) & 0xFF
        if self.core.after_io is not None:
            self.core.after_io()
        return value

    def outb(self, port: int, value: int) -> None:
        self.core.port_write(port & 0xFFFF, 1, value & 0xFF)
        if self.core.after_io is not None:
            self.core.after_io()


def _frame_flags_address(core: UnicornCore) -> int:
    _sel, ss_base, _limit, _flags = core.internals.segment(I.SEG_SS)
    sp = core.internals.u64(I.ENV_REGS + 4 * 8) & 0xFFFF
    return (ss_base + ((sp + _FLAGS_IN_FRAME) & 0xFFFF)) & 0xFFFFFFFF


def read_regs(core: UnicornCore, bus: BiosBusView) -> BiosRegs:
    """The caller's registers, and the FLAGS image of its IRET frame."""
    uc = core.uc
    env = core.internals
    regs = BiosRegs(**{name: uc.reg_read(reg) & 0xFFFFFFFF for name, reg in _GPR.items()})
    regs.ds = env.segment(I.SEG_DS)[0] & 0xFFFF
    regs.es = env.segment(I.SEG_ES)[0] & 0xFFFF
    regs.ss = env.segment(I.SEG_SS)[0] & 0xFFFF
    regs.sp = env.u64(I.ENV_REGS + 4 * 8) & 0xFFFF
    regs.flags = int.from_bytes(bus.read(_frame_flags_address(core), 2), "little")
    return regs


def write_regs(core: UnicornCore, bus: BiosBusView, before: BiosRegs, after: BiosRegs) -> None:
    """What the service changed, into the CPU (segments loaded as real mode loads them: the
    selector and base = selector * 16) and into the IRET frame."""
    env = core.internals
    for name, value in changed(before, after).items():
        if name in GENERAL:
            core.uc.reg_write(_GPR[name], value & 0xFFFFFFFF)
        elif name in _SEGMENT:
            index = _SEGMENT[name]
            _sel, _base, limit, flags = env.segment(index)
            env.write_segment(index, value & 0xFFFF, (value & 0xFFFF) << 4, limit, flags)
        else:  # flags
            bus.write(_frame_flags_address(core), (value & 0xFFFF).to_bytes(2, "little"))
