"""The BIOS services behind the ROM's stubs (docs/bios.md): pure Python over the caller's
registers, the guest's memory and its I/O ports."""

from .regs import BiosBus, BiosRegs, BiosStop
from .services import BiosServices

__all__ = ["BiosBus", "BiosRegs", "BiosServices", "BiosStop"]
