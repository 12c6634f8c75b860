"""The i8042 PS/2 keyboard controller (ports 0x60/0x64), its keyboard, and port 0x92.

Controller (the 8042 as PCs use it): the status register (output/input buffer full, system
flag, command/data, keyboard inhibit), the command byte (IRQ 1 enable, system flag, keyboard
disable, translation), and the commands kernels send: read/write the command byte (0x20/0x60),
self-test (0xAA -> 0x55), interface test (0xAB -> 0x00), disable/enable the keyboard (0xAD/0xAE)
and the auxiliary port (0xA7/0xA8, test 0xA9), read/write the output port (0xD0/0xD1, bit 0
resets the machine, bit 1 is A20), read the input port (0xC0), and pulse reset (0xFE).
The keyboard answers reset (0xFF -> FA AA), enable/disable scanning (0xF4/0xF5), identify
(0xF2 -> FA AB 83), LEDs (0xED), typematic (0xF3), scancode set (0xF0) and echo (0xEE).
Key presses come from the host as text and are sent as scancode set 1 (the controller's
translation of set 2, on by default); with translation off the keyboard would send set 2, which
is not modelled (logged once, and no key is sent).

The auxiliary port (IRQ 12, command byte bit 1) has a PS/2 mouse, as QEMU's pc machine has:
command 0xD4 sends a byte to it, 0xD3 puts a byte in the output buffer as if the mouse had sent
it (Linux's loopback test), and the status register's bit 5 says the byte waiting at 0x60 came
from the mouse. The mouse answers reset (0xFF -> FA AA 00), identify (0xF2 -> FA and its ID:
0, 3 after the IntelliMouse rate sequence 200-100-80, 4 after 200-200-80, as QEMU's), status
(0xE9), the mode, rate, resolution and scaling settings, and read data (0xEB) with an empty
packet; it never moves (the host has no pointer to give it).

Port 0x92 (system control port A): bit 1 is the fast A20 gate (stored; A20 is always enabled in
this machine, as on every machine that can run a 64-bit kernel), bit 0 resets the machine.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields

from .irq import IrqLine

log = logging.getLogger(__name__)

ST_OBF = 0x01  # output buffer full (data for the CPU at 0x60)
ST_IBF = 0x02  # input buffer full (never: the controller answers at once)
ST_SYS = 0x04  # system flag: set by a passed self-test (0xAA)
ST_CMD = 0x08  # the last write was a command (to 0x64)
ST_UNLOCKED = 0x10  # keyboard not inhibited
ST_AUX_OBF = 0x20  # the byte in the output buffer came from the auxiliary device
CB_IRQ1 = 0x01
CB_IRQ12 = 0x02
CB_SYS = 0x04
CB_DISABLE_KBD = 0x10
CB_DISABLE_AUX = 0x20
CB_TRANSLATE = 0x40
RESET_COMMAND_BYTE = CB_IRQ1 | CB_SYS | CB_TRANSLATE
# Output port (command 0xD0): bit 0 the reset line (high: released), bit 1 A20, bits 2-3 unused
# (read 1), bits 4-5 the keyboard and auxiliary output-buffer-full lines (IRQ 1/12), bits 6-7
# the keyboard clock and data lines (high: idle). QEMU's value at power-on is 0xCF.
OUTPUT_PORT_RESET = 0xCF
OP_OBF = 0x10
OP_AUX_OBF = 0x20
# Input port (command 0xC0): bit 7 keyboard not inhibited; the other straps read 0 (QEMU).
INPUT_PORT = 0x80

# US layout, scancode set 1 make codes; a break code is the make code | 0x80.
_SET1 = {
    **{c: code for c, code in zip("1234567890-=", range(0x02, 0x0E), strict=True)},
    **{c: code for c, code in zip("qwertyuiop[]", range(0x10, 0x1C), strict=True)},
    **{c: code for c, code in zip("asdfghjkl;'`", range(0x1E, 0x2A), strict=True)},
    **{c: code for c, code in zip("\\zxcvbnm,./", range(0x2B, 0x36), strict=True)},
    " ": 0x39, "\n": 0x1C, "\t": 0x0F, "\b": 0x0E, "\x1b": 0x01,
}  # fmt: skip
_SHIFTED = dict(zip('!@#$%^&*()_+{}:"~|<>?', "1234567890-=[];'`\\,./", strict=True))
LEFT_SHIFT = 0x2A


def scancodes(text: str) -> list[int]:
    """Set 1 make/break sequences typing ``text`` on a US keyboard (shift where needed)."""
    out: list[int] = []
    for ch in text:
        shift = ch.isupper() or ch in _SHIFTED
        base = _SHIFTED.get(ch, ch.lower())
        code = _SET1.get(base)
        if code is None:
            raise ValueError(f"no key for {ch!r} on a US keyboard")
        if shift:
            out.append(LEFT_SHIFT)
        out += [code, code | 0x80]
        if shift:
            out.append(LEFT_SHIFT | 0x80)
    return out


class I8042:
    """The controller and its keyboard. ``irq1`` is the keyboard interrupt; ``reset`` is
    called when the guest asks for a machine reset."""

    def __init__(self, irq1: IrqLine, irq12: IrqLine, request_reset: Callable[[], None]) -> None:
        self.irq1 = irq1
        self.irq12 = irq12
        self.request_reset = request_reset
        self._logged: set[str] = set()
        self.mouse = PS2Mouse()
        self.reset()

    def reset(self) -> None:
        self.command_byte = RESET_COMMAND_BYTE
        # bytes waiting for the CPU, each with whether the mouse sent it; the head is in 0x60
        self.output: deque[tuple[int, bool]] = deque()
        self.mouse.reset()
        self.last_was_command = False
        self.pending_command: int | None = None  # a controller command awaiting its data byte
        self.kbd_pending: int | None = None  # a keyboard command awaiting its argument
        self.scanning = True
        self.leds = 0
        self.scancode_set = 2  # the keyboard's own set; translation makes it set 1
        self.output_port = OUTPUT_PORT_RESET  # reset line released, A20 enabled
        # The system flag of the status register: 0 at power-on, 1 once the controller passed
        # its self-test. Writing the command byte's bit 2 does not change it (as under QEMU:
        # SeaBIOS writes 0x61 and the status still shows the flag).
        self.system_flag = False
        self.keys: deque[int] = deque()  # host key presses not yet sent
        self._update_irq()

    # ------------------------------------------------------------------ host side
    def type_text(self, text: str) -> None:
        if not self.command_byte & CB_TRANSLATE:
            self._note("untranslated scancode set 2 (keys are dropped)")
            return
        self.keys.extend(scancodes(text))
        self._feed()

    def _feed(self) -> None:
        """A key enters the output buffer only when it is empty and the keyboard is enabled."""
        if (
            self.keys
            and not self.output
            and self.scanning
            and not self.command_byte & CB_DISABLE_KBD
        ):
            self.output.append((self.keys.popleft(), False))
            self._update_irq()

    # ------------------------------------------------------------------ ports
    def read(self, offset: int, size: int) -> int:
        if offset & 4 == 0:  # 0x60: data
            value = self.output.popleft()[0] if self.output else 0
            # OBF drops with the read; the next byte, when it comes, raises IRQ 1 again (an
            # edge the PIC sees, as when the keyboard's next byte arrives on the wire).
            self._update_irq()
            self._feed()
            return value
        return self._status()

    def _status(self) -> int:
        status = ST_UNLOCKED
        if self.output:
            status |= ST_OBF | (ST_AUX_OBF if self.output[0][1] else 0)
        if self.system_flag:
            status |= ST_SYS
        if self.last_was_command:
            status |= ST_CMD
        return status

    def stable_read(self, offset: int) -> tuple[int, int | None] | None:
        """What a read of 0x60 (offset 0) or 0x64 (offset 4) returns, with no side effect, until
        the controller is next accessed or a key comes: (value, None). The status never
        changes by being read; the data port only while nothing waits to be read or typed."""
        if offset & 4:
            return self._status(), None
        if self.output or self.keys:
            return None
        return 0, None

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset & 4:
            self.last_was_command = True
            self._controller_command(value)
        else:
            self.last_was_command = False
            if self.pending_command is not None:
                cmd, self.pending_command = self.pending_command, None
                self._controller_data(cmd, value)
            else:
                self._keyboard_command(value)
        self._update_irq()

    def _reply(self, *data: int) -> None:
        self.output.extend((b, False) for b in data)

    def _aux_reply(self, *data: int) -> None:
        self.output.extend((b, True) for b in data)

    def _controller_command(self, cmd: int) -> None:
        if cmd == 0x20:
            self._reply(self.command_byte)
        elif cmd in (0x60, 0xD1, 0xD2, 0xD3, 0xD4):
            self.pending_command = cmd
        elif cmd == 0xAA:
            self.command_byte |= CB_DISABLE_KBD | CB_DISABLE_AUX
            self.system_flag = True
            self._reply(0x55)
        elif cmd in (0xAB, 0xA9):
            self._reply(0x00)
        elif cmd == 0xAD:
            self.command_byte |= CB_DISABLE_KBD
        elif cmd == 0xAE:
            self.command_byte &= ~CB_DISABLE_KBD
            self._feed()
        elif cmd == 0xA7:
            self.command_byte |= CB_DISABLE_AUX
        elif cmd == 0xA8:
            self.command_byte &= ~CB_DISABLE_AUX
        elif cmd == 0xC0:
            self._reply(INPUT_PORT)
        elif cmd == 0xD0:
            self._reply(self._output_port())
        elif 0xF0 <= cmd <= 0xFF:
            if not cmd & 1:  # pulse output port bit 0 (the CPU reset line) low
                self.request_reset()
        else:
            self._note(f"controller command 0x{cmd:02x}")

    def _controller_data(self, cmd: int, value: int) -> None:
        if cmd == 0x60:
            self.command_byte = value
            self._feed()
        elif cmd == 0xD1:
            self.output_port = value | 0x02  # A20 stays enabled
            if not value & 0x01:
                self.request_reset()
        elif cmd == 0xD2:
            self._reply(value)  # as if the keyboard had sent it
        elif cmd == 0xD3:
            self._aux_reply(value)  # as if the mouse had sent it
        elif cmd == 0xD4:
            reply = self.mouse.command(value)
            if reply == (MOUSE_RESEND,):
                self._note(f"mouse command 0x{value:02x}")
            self._aux_reply(*reply)

    def _keyboard_command(self, value: int) -> None:
        if self.kbd_pending is not None:
            cmd, self.kbd_pending = self.kbd_pending, None
            if cmd == 0xED:
                self.leds = value & 7
            elif cmd == 0xF0:
                if value == 0:
                    self._reply(0xFA, self.scancode_set)
                    return
                self.scancode_set = value
            self._reply(0xFA)
            return
        if value in (0xED, 0xF0, 0xF3):
            self.kbd_pending = value
            self._reply(0xFA)
        elif value == 0xFF:
            self.scanning = True
            self._reply(0xFA, 0xAA)
        elif value == 0xF4:
            self.scanning = True
            self._reply(0xFA)
            self._feed()
        elif value == 0xF5:
            self.scanning = False
            self._reply(0xFA)
        elif value == 0xF2:
            self._reply(0xFA, 0xAB, 0x83)
        elif value == 0xEE:
            self._reply(0xEE)
        elif value in (0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB):
            self._reply(0xFA)  # defaults and typematic/make-break modes: accepted
        else:
            self._reply(0xFE)  # resend: not a command the keyboard knows

    def port(self, offset: int) -> _Port:
        """The bus decodes 0x60 and 0x64 separately (0x61-0x63 belong to others)."""
        return _Port(self, offset)

    def _output_port(self) -> int:
        """Bits 4 and 5: the keyboard's and the mouse's output-buffer-full lines."""
        value = self.output_port & ~(OP_OBF | OP_AUX_OBF)
        if self.output:
            value |= OP_AUX_OBF if self.output[0][1] else OP_OBF
        return value

    def _update_irq(self) -> None:
        aux = bool(self.output) and self.output[0][1]
        self.irq1.set_level(bool(self.output) and not aux and bool(self.command_byte & CB_IRQ1))
        self.irq12.set_level(aux and bool(self.command_byte & CB_IRQ12))

    def _note(self, what: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.info("i8042: %s is not modelled", what)


# The IntelliMouse detection sequences (set sample rate three times), and the ID each gives.
_WHEEL_SEQUENCES = {(200, 100, 80): 3, (200, 200, 80): 4}
MOUSE_ACK, MOUSE_RESEND = 0xFA, 0xFE


@dataclass
class PS2Mouse:
    """A PS/2 mouse that is never moved: its command set and replies (ack 0xFA first; a
    command it does not know gets 0xFE, resend)."""

    pending: int | None = None  # a command awaiting its argument byte
    device_id: int = 0
    rates: tuple[int, ...] = ()  # the last three sample rates set
    sample_rate: int = 100
    resolution: int = 2  # 4 counts/mm
    scaling_2to1: bool = False
    enabled: bool = False  # data reporting
    remote: bool = False
    wrap: bool = False

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, f.default)

    def _defaults(self) -> None:
        self.sample_rate, self.resolution, self.scaling_2to1 = 100, 2, False
        self.enabled = False

    def command(self, value: int) -> tuple[int, ...]:
        """The bytes the mouse sends back for ``value`` sent to it."""
        if self.pending is not None:
            cmd, self.pending = self.pending, None
            if cmd == 0xF3:
                self.sample_rate = value
                self.rates = (*self.rates, value)[-3:]
                self.device_id = _WHEEL_SEQUENCES.get(self.rates, self.device_id)
            else:  # 0xE8
                self.resolution = value & 3
            return (MOUSE_ACK,)
        if self.wrap and value not in (0xEC, 0xFF):
            return (value,)  # wrap mode echoes everything but its exits
        if value in (0xF3, 0xE8):
            self.pending = value
            return (MOUSE_ACK,)
        if value == 0xFF:
            self.reset()
            return (MOUSE_ACK, 0xAA, 0x00)  # self-test passed, ID 0
        if value == 0xF2:
            return (MOUSE_ACK, self.device_id)
        if value == 0xE9:
            status = (self.remote << 6) | (self.enabled << 5) | (self.scaling_2to1 << 4)
            return (MOUSE_ACK, status, self.resolution, self.sample_rate)
        if value == 0xEB:
            return (MOUSE_ACK, 0x08, 0x00, 0x00)  # a packet: no buttons, no movement
        if value in (0xF6, 0xF5):
            if value == 0xF6:
                self._defaults()
            self.enabled = False
        elif value == 0xF4:
            self.enabled = True
        elif value in (0xE6, 0xE7):
            self.scaling_2to1 = value == 0xE7
        elif value in (0xEA, 0xF0):
            self.remote = value == 0xF0
        elif value in (0xEE, 0xEC):
            self.wrap = value == 0xEE
        else:
            return (MOUSE_RESEND,)
        return (MOUSE_ACK,)


class _Port:
    def __init__(self, device: I8042, offset: int) -> None:
        self.device = device
        self.offset = offset

    def read(self, offset: int, size: int) -> int:
        return self.device.read(self.offset, size)

    def stable_read(self, offset: int) -> tuple[int, int | None] | None:
        return self.device.stable_read(self.offset)

    def write(self, offset: int, size: int, value: int) -> None:
        self.device.write(self.offset, size, value)


class KeyboardInput:
    """Host key presses scheduled in virtual time (``--keys TEXT --keys-at SECONDS``): one
    character every ``interval_ns``, each one typed when its time comes."""

    def __init__(
        self, controller: I8042, text: str, at_ns: int, interval_ns: int = 10_000_000
    ) -> None:
        scancodes(text)  # reject characters there is no key for, before the run
        self.controller = controller
        self.text = text
        self.at_ns = at_ns
        self.interval_ns = interval_ns
        self.sent = 0
        self.events_changed = True  # set by tick (which moves the next event); see Scheduler

    def next_event(self, now: int) -> int | None:
        if self.sent >= len(self.text):
            return None
        return self.at_ns + self.sent * self.interval_ns

    def tick(self, now: int) -> None:
        self.events_changed = True
        while self.sent < len(self.text) and now >= self.at_ns + self.sent * self.interval_ns:
            self.controller.type_text(self.text[self.sent])
            self.sent += 1
        self.controller._feed()


class SystemControlA:
    """Port 0x92: bit 0 resets the machine, bit 1 is the fast A20 gate (stored)."""

    def __init__(self, request_reset: Callable[[], None]) -> None:
        self.request_reset = request_reset
        self.reset()

    def reset(self) -> None:
        self.value = 0x02

    def read(self, offset: int, size: int) -> int:
        return self.value

    def stable_read(self, offset: int) -> tuple[int, int | None]:
        return self.value, None  # until written

    def write(self, offset: int, size: int, value: int) -> None:
        self.value = value & 0x02  # A20 itself is always on in this machine
        if value & 0x01:
            self.request_reset()
