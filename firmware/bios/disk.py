"""INT 13h (and INT 40h): disk services on a machine with no disk attached.

SeaBIOS answers a call for a drive it does not have with AH=01h (invalid parameter) and CF=1,
and keeps the status in the BDA (41h for diskettes, 74h for hard disks). The one drive this
machine has, as QEMU's pc machine does, is an empty diskette drive A: of the type CMOS register
10h gives (5: 2.88 MB), so AH=08h (parameters), 15h (type) and 16h (change line) answer for
it as SeaBIOS does, and so do its media accesses: SeaBIOS's recalibration and media sense fail
on the empty drive (AH=20h, measured with images/bios), its reset succeeds. No diskette
controller is modelled behind it (ports 3F0h-3F7h).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import bda as B
from .bda import cmos_read
from .regs import BiosRegs

if TYPE_CHECKING:
    from .services import Call

EPARAM = 0x01
ECHANGED = 0x06
ECONTROLLER = 0x20  # what a media access of the empty drive answers under QEMU
HARD_DISK = 0x80
# SeaBIOS's FloppyInfo: (heads, cylinders, sectors) per CMOS drive type
FLOPPY_GEOMETRY = {
    1: (2, 40, 9),
    2: (2, 80, 15),
    3: (2, 80, 9),
    4: (2, 80, 18),
    5: (2, 80, 36),
    6: (1, 40, 8),
    7: (1, 40, 9),
    8: (2, 40, 8),
}
DISKETTE_PARAMETERS = (0xF000, 0x601C)  # the 11-byte table (INT 1Eh points there)


def _status(call: Call, r: BiosRegs, code: int) -> None:
    """SeaBIOS's disk_ret: the status into the BDA, then AH and CF."""
    call.bda.set8(B.FLOPPY_LAST_STATUS if r.dl < HARD_DISK else B.DISK_LAST_STATUS, code)
    if code:
        r.fail(code)
    else:
        r.code_success()


def _floppy_types(call: Call) -> tuple[int, int]:
    types = cmos_read(call.bus, 0x10)
    return types >> 4, types & 0x0F


def _floppy(call: Call, r: BiosRegs, drive_type: int, count: int) -> None:
    call.bda.set8(B.DISK_INTERRUPT_FLAG, 0)
    ah = r.ah
    if ah == 0x08:
        heads, cylinders, sectors = FLOPPY_GEOMETRY.get(drive_type, (0, 0, 0))
        last_cylinder = (cylinders - 1) & 0xFFFF
        r.bx = drive_type
        r.es, r.di = DISKETTE_PARAMETERS
        r.al = 0
        r.ch = last_cylinder & 0xFF
        r.cl = ((last_cylinder >> 2) & 0xC0) | (sectors & 0x3F)
        r.dh = (heads - 1) & 0xFF
        _status(call, r, 0)
        r.dl = count
    elif ah == 0x15:
        _status(call, r, 0)
        r.ah = 1  # SeaBIOS: 1 for a diskette drive
    elif ah == 0x16:
        _status(call, r, ECHANGED)
    elif ah == 0x01:  # the last status, as kept
        r.ah = call.bda.u8(B.FLOPPY_LAST_STATUS)
        r.set_cf(bool(r.ah))
    elif ah == 0x00:  # reset: the controller answers
        _status(call, r, 0)
    elif ah in (0x02, 0x03, 0x04):  # read, write, verify
        heads, cylinders, sectors = FLOPPY_GEOMETRY.get(drive_type, (0, 0, 0))
        cylinder = r.ch | ((r.cl << 2) & 0x300)
        sector = r.cl & 0x3F
        bad_count = not 0 < r.al <= 128 or sector == 0
        if bad_count or cylinder >= cylinders or r.dh >= heads or sector > sectors:
            _status(call, r, EPARAM)
        else:
            r.al = 0  # no sector transferred
            _status(call, r, ECONTROLLER)
    elif ah == 0x05:  # format a track
        heads, cylinders, sectors = FLOPPY_GEOMETRY.get(drive_type, (0, 0, 0))
        if r.ch >= cylinders or r.dh >= heads or not 0 < r.al <= sectors:
            _status(call, r, EPARAM)
        else:
            _status(call, r, ECONTROLLER)
    else:
        _status(call, r, EPARAM)  # SeaBIOS: not a diskette function


def int13(call: Call, r: BiosRegs) -> None:
    if r.dl < HARD_DISK:
        types = _floppy_types(call)
        present = [t for t in types if t]
        if r.dl < 2 and types[r.dl]:
            _floppy(call, r, types[r.dl], len(present))
            return
    # no such drive: every function of every drive number fails the same way
    _status(call, r, EPARAM)
