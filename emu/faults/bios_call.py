"""The core's side of a BIOS call: the caller's registers for the service, and the guest's
memory and ports as the BIOS reaches them (firmware/bios/ holds the services).

A stub's UD2 runs in real mode, where a linear address is the physical one (paging is off and
A20 is on). The FLAGS image the service changes is the one in the IRET frame at SS:SP+4, which
the stub's IRET pops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from firmware.bios import BiosRegs
from firmware.bios.regs import GENERAL, changed

from ..core import internals as I

if TYPE_CHECKING:
    from ..core.engine import UnicornCore

# where each register is in env->regs (RAX RCX RDX RBX RSP RBP RSI RDI ...): read and written
# there directly, a binding reg_read costs microseconds
_GPR = {
    "eax": I.ENV_REGS + 0 * 8,
    "ecx": I.ENV_REGS + 1 * 8,
    "edx": I.ENV_REGS + 2 * 8,
    "ebx": I.ENV_REGS + 3 * 8,
    "ebp": I.ENV_REGS + 5 * 8,
    "esi": I.ENV_REGS + 6 * 8,
    "edi": I.ENV_REGS + 7 * 8,
}
_LOW_RAM_END = 0xA0000  # conventional memory: RAM in the machine's buffer
_TEXT_RAM = (0xB8000, 0xC0000)  # the VGA text cells: RAM too
_HIGH_RAM = 0x100000
_SEGMENT = {"ds": I.SEG_DS, "es": I.SEG_ES}
_FLAGS_IN_FRAME = 4  # IP, CS, FLAGS: the frame INT n (or PUSHF + CALL FAR) leaves


class BiosBusView:
    """Physical memory and I/O ports for a service. Writes drop the engine's translations of
    the bytes they change (host writes do not invalidate translated code by themselves)."""

    def __init__(self, core: UnicornCore) -> None:
        self.core = core
        self.ram = core.ram

    def _in_ram(self, address: int, size: int) -> bool:
        """Whether [address, address + size) is plain RAM of the machine's buffer (the common
        case, read and written there directly; the rest goes through the address space)."""
        end = address + size
        if self.core.memory is None:
            return end <= self.ram.size
        return (
            end <= _LOW_RAM_END
            or (_TEXT_RAM[0] <= address and end <= _TEXT_RAM[1])
            or (address >= _HIGH_RAM and end <= self.ram.size)
        )

    def read(self, address: int, size: int) -> bytes:
        if self._in_ram(address, size):
            return self.ram[address : address + size].tobytes()
        memory = self.core.memory
        if memory is not None:
            return memory.read(address, size)
        return self.ram[address : address + size].tobytes().ljust(size, b"\0")

    def write(self, address: int, data: bytes) -> None:
        if not data:
            return
        if self._in_ram(address, len(data)):
            if self.core.pages is not None:
                self.core.pages.before_write(address, len(data))
            self.ram[address : address + len(data)] = np.frombuffer(data, np.uint8)
        elif self.core.memory is not None:
            self.core.memory.write(address, data)  # tracked there
        else:
            end = min(address + len(data), self.ram.size)
            if address < end:
                self.ram[address:end] = np.frombuffer(data[: end - address], np.uint8)
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
    env = core.internals
    regs = BiosRegs(**{name: env.u64(at) & 0xFFFFFFFF for name, at in _GPR.items()})
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
        if name in GENERAL:  # the low 32 bits (the upper half as it was)
            at = _GPR[name]
            env.write_u64(at, (env.u64(at) & ~0xFFFFFFFF) | (value & 0xFFFFFFFF))
        elif name in _SEGMENT:
            index = _SEGMENT[name]
            _sel, _base, limit, flags = env.segment(index)
            env.write_segment(index, value & 0xFFFF, (value & 0xFFFF) << 4, limit, flags)
        else:  # flags
            bus.write(_frame_flags_address(core), (value & 0xFFFF).to_bytes(2, "little"))
