"""INT 16h (keyboard services) and INT 09h (the keyboard's IRQ 1): keys from the i8042.

As in SeaBIOS, scancodes (set 1, the controller's translation) become key codes (scan code <<
8 | ASCII) in the BDA's keyboard buffer (words at 40:1E-40:3D, head 40:1A, tail 40:1C), with the
shift state in 40:17 (and 40:96 for the right-hand keys and the E0 prefix). INT 09h reads the
byte at port 60h. INT 16h first takes what the controller holds, as SeaBIOS's INT 16h lets a
pending keyboard IRQ run (its yield() briefly enables interrupts), unless IRQ 1 is masked at
the PIC; then it answers from the buffer. AH=00h/10h with an empty buffer waits, as SeaBIOS
does, until a key comes: the machine runs its devices on and the call is made again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import bda as B
from .bda import pic_eoi_master
from .regs import BiosRegs, BiosStop

if TYPE_CHECKING:
    from .services import Call

STATUS_OBF = 0x01
STATUS_AUX = 0x20
KF0_RSHIFT, KF0_LSHIFT, KF0_CTRL, KF0_ALT = 0x01, 0x02, 0x04, 0x08
KF0_SCROLLACTIVE, KF0_NUMACTIVE, KF0_CAPSACTIVE = 0x10, 0x20, 0x40
KF0_LCTRL, KF0_LALT, KF0_SCROLL, KF0_NUM, KF0_CAPS = 0x100, 0x200, 0x1000, 0x2000, 0x4000
KF1_LAST_E1, KF1_LAST_E0, KF1_RCTRL, KF1_RALT = 0x01, 0x02, 0x04, 0x08


def _build_table() -> dict[int, tuple[int, int, int, int]]:
    """SeaBIOS's scan_to_keycode for the main block: scancode -> (normal, shift, control,
    alt) key codes; 0 means the combination gives no key."""
    t: dict[int, tuple[int, int, int, int]] = {
        0x01: (0x011B, 0x011B, 0x011B, 0x0100),
        0x0E: (0x0E08, 0x0E08, 0x0E7F, 0x0000),
        0x0F: (0x0F09, 0x0F00, 0x0000, 0x0000),
        0x1C: (0x1C0D, 0x1C0D, 0x1C0A, 0x0000),
        0x37: (0x372A, 0x372A, 0x0000, 0x0000),
        0x39: (0x3920, 0x3920, 0x3920, 0x3920),
    }
    digits = "1234567890-="
    shifted = "!@#$%^&*()_+"
    controls = {"2": 0x0300, "6": 0x071E, "-": 0x0C1F}
    for i, (ch, sh) in enumerate(zip(digits, shifted, strict=True)):
        sc = 0x02 + i
        t[sc] = ((sc << 8) | ord(ch), (sc << 8) | ord(sh), controls.get(ch, 0), (0x78 + i) << 8)
    punctuation = {
        0x1A: ("[", "{", 0x1A1B),
        0x1B: ("]", "}", 0x1B1D),
        0x27: (";", ":", 0),
        0x28: ("'", '"', 0),
        0x29: ("`", "~", 0),
        0x2B: ("\\", "|", 0x2B1C),
        0x33: (",", "<", 0),
        0x34: (".", ">", 0),
        0x35: ("/", "?", 0),
    }
    for sc, (ch, sh, control) in punctuation.items():
        t[sc] = ((sc << 8) | ord(ch), (sc << 8) | ord(sh), control, 0)
    for first, row in ((0x10, "qwertyuiop"), (0x1E, "asdfghjkl"), (0x2C, "zxcvbnm")):
        for i, ch in enumerate(row):
            sc = first + i
            t[sc] = ((sc << 8) | ord(ch), (sc << 8) | ord(ch.upper()),
                     (sc << 8) | (ord(ch) - 0x60), sc << 8)  # fmt: skip
    for i in range(10):  # F1-F10
        sc = 0x3B + i
        t[sc] = (sc << 8, (0x54 + i) << 8, (0x5E + i) << 8, (0x68 + i) << 8)
    return t


KEYCODES = _build_table()


def enqueue(call: Call, keycode: int) -> bool:
    """Put a key code at the buffer's tail; False if the buffer is full."""
    b = call.bda
    start, end = b.u16(B.KBD_BUF_START), b.u16(B.KBD_BUF_END)
    head, tail = b.u16(B.KBD_HEAD), b.u16(B.KBD_TAIL)
    new_tail = tail + 2
    if new_tail >= end:
        new_tail = start
    if new_tail == head:
        return False
    call.bus.write(B.BDA + tail, keycode.to_bytes(2, "little"))
    b.set16(B.KBD_TAIL, new_tail)
    return True


def _set_flag(call: Call, release: bool, bit0: int, bit1: int, toggle: int) -> None:
    b = call.bda
    flags0, flags1 = b.u16(B.KBD_FLAG0), b.u8(B.KBD_FLAG1)
    if release:
        flags0 &= ~bit0
        flags1 &= ~bit1
    else:
        flags0 = (flags0 ^ toggle) | bit0
        flags1 |= bit1
    b.set16(B.KBD_FLAG0, flags0)
    b.set8(B.KBD_FLAG1, flags1)


def process_scancode(call: Call, scancode: int) -> None:
    """One byte from the keyboard, as SeaBIOS's __process_key takes it."""
    b = call.bda
    flags1 = b.u8(B.KBD_FLAG1)
    if scancode in (0xE0, 0xE1):
        b.set8(B.KBD_FLAG1, flags1 | (KF1_LAST_E0 if scancode == 0xE0 else KF1_LAST_E1))
        return
    release = bool(scancode & 0x80)
    scancode &= 0x7F
    if flags1 & (KF1_LAST_E0 | KF1_LAST_E1):
        if flags1 & KF1_LAST_E1 and scancode == 0x1D:
            return
        b.set8(B.KBD_FLAG1, flags1 & ~(KF1_LAST_E0 | KF1_LAST_E1))
    e0 = bool(flags1 & KF1_LAST_E0)
    if scancode == 0x3A:
        _set_flag(call, release, KF0_CAPS, 0, KF0_CAPSACTIVE)
        return
    if scancode in (0x2A, 0x36):
        if not e0:
            _set_flag(call, release, KF0_LSHIFT if scancode == 0x2A else KF0_RSHIFT, 0, 0)
        return
    if scancode == 0x1D:
        if e0:
            _set_flag(call, release, KF0_CTRL, KF1_RCTRL, 0)
        else:
            _set_flag(call, release, KF0_CTRL | KF0_LCTRL, 0, 0)
        return
    if scancode == 0x38:
        if e0:
            _set_flag(call, release, KF0_ALT, KF1_RALT, 0)
        else:
            _set_flag(call, release, KF0_ALT | KF0_LALT, 0, 0)
        return
    if scancode == 0x45:
        if not flags1 & KF1_LAST_E1:
            _set_flag(call, release, KF0_NUM, 0, KF0_NUMACTIVE)
        return
    if scancode == 0x46 and not e0:
        _set_flag(call, release, KF0_SCROLL, 0, KF0_SCROLLACTIVE)
        return
    if release:
        return
    if e0 and scancode == 0x1C:
        codes = (0xE00D, 0xE00D, 0xE00A, 0xA600)
    elif e0 and scancode == 0x35:
        codes = (0xE02F, 0xE02F, 0x9500, 0xA400)
    else:
        known = KEYCODES.get(scancode)
        if known is None:
            call.note(f"scancode {scancode:02X}h (no key code for it in this BIOS)")
            return
        codes = known
    flags0 = b.u16(B.KBD_FLAG0)
    if flags0 & KF0_ALT:
        keycode = codes[3]
    elif flags0 & KF0_CTRL:
        keycode = codes[2]
    else:
        shift = bool(flags0 & (KF0_RSHIFT | KF0_LSHIFT))
        ascii = codes[0] & 0xFF
        if flags0 & KF0_CAPSACTIVE and ord("a") <= ascii <= ord("z"):
            shift = not shift
        keycode = codes[1] if shift else codes[0]
    if keycode:
        enqueue(call, keycode)


def take_pending_key(call: Call) -> None:
    """What the keyboard's IRQ 1 would do now: the byte the controller holds for the CPU, if
    it is the keyboard's and IRQ 1 is not masked at the master PIC."""
    if call.bus.inb(0x21) & 0x02:
        return
    for _ in range(16):  # the controller holds one byte at a time; a few may follow
        status = call.bus.inb(0x64)
        if not status & STATUS_OBF or status & STATUS_AUX:
            return
        process_scancode(call, call.bus.inb(0x60))


def int09(call: Call, r: BiosRegs) -> None:
    """IRQ 1: take the keyboard's byte (if there is one), EOI."""
    status = call.bus.inb(0x64)
    if status & STATUS_OBF and not status & STATUS_AUX:
        process_scancode(call, call.bus.inb(0x60))
    pic_eoi_master(call.bus)


def _dequeue(call: Call, r: BiosRegs, remove: bool, extended: bool) -> bool:
    """The key at the buffer's head into AX (False: the buffer is empty)."""
    b = call.bda
    head, tail = b.u16(B.KBD_HEAD), b.u16(B.KBD_TAIL)
    if head == tail:
        return False
    keycode = int.from_bytes(call.bus.read(B.BDA + head, 2), "little")
    ascii = keycode & 0xFF
    if not extended:
        if ascii == 0xE0 and keycode & 0xFF00:
            keycode &= 0xFF00
        elif keycode in (0xE00D, 0xE00A):
            keycode = 0x1C00 | ascii
        elif keycode == 0xE02F:
            keycode = 0x352F
    if ascii == 0xF0 and keycode & 0xFF00:
        keycode &= 0xFF00
    r.ax = keycode
    if remove:
        head += 2
        if head >= b.u16(B.KBD_BUF_END):
            head = b.u16(B.KBD_BUF_START)
        b.set16(B.KBD_HEAD, head)
    return True


def int16(call: Call, r: BiosRegs) -> BiosStop | None:
    take_pending_key(call)
    ah = r.ah
    b = call.bda
    if ah in (0x00, 0x10):
        if not _dequeue(call, r, True, ah == 0x10):
            return BiosStop("wait", f"INT 16h AH={ah:02X}h waits for a key")
    elif ah in (0x01, 0x11):
        r.set_zf(not _dequeue(call, r, False, ah == 0x11))
    elif ah == 0x02:
        r.al = b.u8(B.KBD_FLAG0)
    elif ah == 0x05:
        r.al = 0 if enqueue(call, r.cx) else 1
    elif ah == 0x09:
        r.al = 0x30  # AH=0Ah and 10h-12h are supported
    elif ah == 0x12:
        flags0, flags1 = b.u16(B.KBD_FLAG0), b.u8(B.KBD_FLAG1)
        rights = KF1_RCTRL | KF1_RALT
        r.ax = (flags0 & ~(rights << 8)) | ((flags1 & rights) << 8)
    elif ah == 0x92:
        r.ah = 0x80
    elif ah == 0xA2:
        pass
    elif ah == 0x6F:
        if r.al == 0x08:
            r.ah = 2
    elif ah == 0x0A:
        call.unsupported("AH=0Ah (reading the keyboard's ID is not modelled)")
    else:
        # SeaBIOS leaves the registers as they were for a function it does not have
        call.note(f"AH={ah:02X}h (no such keyboard function: the registers are left as they were)")
    return None
