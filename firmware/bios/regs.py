"""What a BIOS service sees of the CPU: the caller's registers, the FLAGS it returns with, the
guest's memory and its ports.

A service is given a ``BiosRegs`` (a copy of the general registers, DS, ES and the FLAGS image
of the IRET frame) and a ``BiosBus`` (memory and ports). It changes the copy; the core writes
back what changed and resumes at the stub's IRET, which pops the FLAGS image: CF and ZF reach
the caller as from SeaBIOS, which returns them the same way (its handlers write ``regs->flags``,
the frame's FLAGS).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

CF = 0x0001
ZF = 0x0040
IF = 0x0200

# the registers a service may read and change, 32 bits each (the segments 16)
GENERAL = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp")
SEGMENTS = ("ds", "es")


@dataclass
class BiosRegs:
    """The caller's registers at the call (as SeaBIOS's ``struct bregs``)."""

    eax: int = 0
    ebx: int = 0
    ecx: int = 0
    edx: int = 0
    esi: int = 0
    edi: int = 0
    ebp: int = 0
    ds: int = 0
    es: int = 0
    flags: int = 0x0002  # the FLAGS image the IRET pops
    ss: int = 0  # where the caller's stack is (read only)
    sp: int = 0

    def copy(self) -> BiosRegs:
        return BiosRegs(**{f.name: getattr(self, f.name) for f in fields(self)})

    # 16-bit halves
    @property
    def ax(self) -> int:
        return self.eax & 0xFFFF

    @ax.setter
    def ax(self, v: int) -> None:
        self.eax = (self.eax & ~0xFFFF) | (v & 0xFFFF)

    @property
    def bx(self) -> int:
        return self.ebx & 0xFFFF

    @bx.setter
    def bx(self, v: int) -> None:
        self.ebx = (self.ebx & ~0xFFFF) | (v & 0xFFFF)

    @property
    def cx(self) -> int:
        return self.ecx & 0xFFFF

    @cx.setter
    def cx(self, v: int) -> None:
        self.ecx = (self.ecx & ~0xFFFF) | (v & 0xFFFF)

    @property
    def dx(self) -> int:
        return self.edx & 0xFFFF

    @dx.setter
    def dx(self, v: int) -> None:
        self.edx = (self.edx & ~0xFFFF) | (v & 0xFFFF)

    @property
    def si(self) -> int:
        return self.esi & 0xFFFF

    @si.setter
    def si(self, v: int) -> None:
        self.esi = (self.esi & ~0xFFFF) | (v & 0xFFFF)

    @property
    def di(self) -> int:
        return self.edi & 0xFFFF

    @di.setter
    def di(self, v: int) -> None:
        self.edi = (self.edi & ~0xFFFF) | (v & 0xFFFF)

    @property
    def bp(self) -> int:
        return self.ebp & 0xFFFF

    @bp.setter
    def bp(self, v: int) -> None:
        self.ebp = (self.ebp & ~0xFFFF) | (v & 0xFFFF)

    # 8-bit halves
    @property
    def al(self) -> int:
        return self.eax & 0xFF

    @al.setter
    def al(self, v: int) -> None:
        self.eax = (self.eax & ~0xFF) | (v & 0xFF)

    @property
    def ah(self) -> int:
        return (self.eax >> 8) & 0xFF

    @ah.setter
    def ah(self, v: int) -> None:
        self.eax = (self.eax & ~0xFF00) | ((v & 0xFF) << 8)

    @property
    def bl(self) -> int:
        return self.ebx & 0xFF

    @bl.setter
    def bl(self, v: int) -> None:
        self.ebx = (self.ebx & ~0xFF) | (v & 0xFF)

    @property
    def bh(self) -> int:
        return (self.ebx >> 8) & 0xFF

    @bh.setter
    def bh(self, v: int) -> None:
        self.ebx = (self.ebx & ~0xFF00) | ((v & 0xFF) << 8)

    @property
    def cl(self) -> int:
        return self.ecx & 0xFF

    @cl.setter
    def cl(self, v: int) -> None:
        self.ecx = (self.ecx & ~0xFF) | (v & 0xFF)

    @property
    def ch(self) -> int:
        return (self.ecx >> 8) & 0xFF

    @ch.setter
    def ch(self, v: int) -> None:
        self.ecx = (self.ecx & ~0xFF00) | ((v & 0xFF) << 8)

    @property
    def dl(self) -> int:
        return self.edx & 0xFF

    @dl.setter
    def dl(self, v: int) -> None:
        self.edx = (self.edx & ~0xFF) | (v & 0xFF)

    @property
    def dh(self) -> int:
        return (self.edx >> 8) & 0xFF

    @dh.setter
    def dh(self, v: int) -> None:
        self.edx = (self.edx & ~0xFF00) | ((v & 0xFF) << 8)

    # the results SeaBIOS's bregs.h helpers give
    def set_cf(self, on: bool) -> None:
        self.flags = self.flags | CF if on else self.flags & ~CF

    def set_zf(self, on: bool) -> None:
        self.flags = self.flags | ZF if on else self.flags & ~ZF

    def success(self) -> None:
        """CF clear (``set_success``)."""
        self.set_cf(False)

    def code_success(self) -> None:
        """AH 0 and CF clear (``set_code_success``)."""
        self.ah = 0
        self.set_cf(False)

    def fail(self, code: int | None = None) -> None:
        """CF set, and AH the error code if there is one (``set_code_invalid``)."""
        if code is not None:
            self.ah = code
        self.set_cf(True)


@dataclass(frozen=True)
class BiosStop:
    """A call that does not return now. ``kind``: "wait" (retry the call after the next device
    event: the caller stays in the BIOS, as in SeaBIOS's wait loops) or "halt" (the run ends;
    ``detail`` says why)."""

    kind: str
    detail: str


class BiosBus(Protocol):
    """The guest's physical memory and I/O ports, as the BIOS code reaches them."""

    def read(self, address: int, size: int) -> bytes: ...

    def write(self, address: int, data: bytes) -> None: ...

    def inb(self, port: int) -> int: ...

    def outb(self, port: int, value: int) -> None: ...


def linear(segment: int, offset: int) -> int:
    """The physical address of a real-mode segment:offset (A20 on)."""
    return ((segment & 0xFFFF) << 4) + (offset & 0xFFFF)


def changed(before: BiosRegs, after: BiosRegs) -> dict[str, int]:
    """The registers a service changed: name -> new value."""
    return {
        name: getattr(after, name)
        for name in (*GENERAL, *SEGMENTS, "flags")
        if getattr(before, name) != getattr(after, name)
    }
