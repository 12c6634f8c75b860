"""The i8042 controller and keyboard as a driver talks to them."""

from __future__ import annotations

import pytest

from devices.i8042 import I8042, KeyboardInput, SystemControlA, scancodes
from devices.irq import IrqLine

# every test also runs with the promises of stable_read checked (tests/stable_reads.py)
pytestmark = pytest.mark.usefixtures("port_table")


class Ctl:
    def __init__(self) -> None:
        self.resets = 0
        self.irq1 = IrqLine("IRQ1")
        self.kbd = I8042(self.irq1, IrqLine("IRQ12"), self._reset)
        self.data, self.cmd = self.kbd.port(0), self.kbd.port(4)

    def _reset(self) -> None:
        self.resets += 1

    def command(self, value: int) -> None:
        self.cmd.write(0, 1, value)

    def send(self, value: int) -> None:
        self.data.write(0, 1, value)

    def status(self) -> int:
        return self.cmd.read(0, 1)

    def drain(self) -> list[int]:
        out = []
        while self.status() & 1:
            out.append(self.data.read(0, 1))
        return out


@pytest.fixture
def c() -> Ctl:
    return Ctl()


def test_self_test_and_command_byte(c: Ctl) -> None:
    c.command(0xAA)
    assert c.drain() == [0x55]
    c.command(0xAB)
    assert c.drain() == [0x00]
    c.command(0x20)
    cb = c.drain()[0]
    c.command(0x60)
    c.send(cb & ~0x01)  # IRQ 1 off
    c.command(0x20)
    assert c.drain() == [cb & ~0x01]
    assert c.status() & 0x08  # the last write went to the command port


def test_keyboard_reset_identify_leds_and_echo(c: Ctl) -> None:
    c.send(0xFF)
    assert c.drain() == [0xFA, 0xAA]
    c.send(0xF2)
    assert c.drain() == [0xFA, 0xAB, 0x83]
    c.send(0xED)
    c.send(0x07)
    assert c.drain() == [0xFA, 0xFA] and c.kbd.leds == 7
    c.send(0xEE)
    assert c.drain() == [0xEE]
    c.send(0xF0)
    c.send(0x00)
    assert c.drain() == [0xFA, 0xFA, 0x02]


def test_typed_keys_arrive_one_byte_at_a_time_with_irq1(c: Ctl) -> None:
    c.kbd.type_text("Hi")
    assert c.irq1.level
    codes = c.drain()
    assert codes == scancodes("Hi") == [0x2A, 0x23, 0xA3, 0xAA, 0x17, 0x97]
    assert not c.irq1.level


def test_disabled_keyboard_holds_keys(c: Ctl) -> None:
    c.command(0xAD)
    c.kbd.type_text("a")
    assert not c.status() & 1
    c.command(0xAE)
    assert c.drain() == [0x1E, 0x9E]


def test_reset_through_the_controller_and_port_92(c: Ctl) -> None:
    c.command(0xFE)
    assert c.resets == 1
    c.command(0xD1)
    c.send(0x00)  # output port bit 0 low: reset
    assert c.resets == 2
    p92 = SystemControlA(c._reset)
    p92.write(0, 1, 0x02)
    assert c.resets == 2 and p92.read(0, 1) == 0x02
    p92.write(0, 1, 0x01)
    assert c.resets == 3


def test_scheduled_input_in_virtual_time(c: Ctl) -> None:
    keys = KeyboardInput(c.kbd, "ab", at_ns=1000, interval_ns=500)
    assert keys.next_event(0) == 1000
    keys.tick(1000)
    assert c.drain() == [0x1E, 0x9E]
    assert keys.next_event(1000) == 1500
    keys.tick(1600)
    assert c.drain() == [0x30, 0xB0]
    assert keys.next_event(1600) is None


def test_unknown_character_is_refused() -> None:
    with pytest.raises(ValueError, match="no key"):
        scancodes("é")


def test_system_flag_is_set_by_the_self_test_only(c: Ctl) -> None:
    """0 at power-on, 1 after a passed self-test, and kept when the command byte's bit 2 is
    written as 0 (SeaBIOS writes 0x61; QEMU's status still shows the flag)."""
    assert not c.status() & 0x04
    c.command(0xAA)
    assert c.drain() == [0x55] and c.status() & 0x04
    c.command(0x60)
    c.send(0x61)
    assert c.status() & 0x04


def test_output_and_input_ports_read_as_on_qemu(c: Ctl) -> None:
    c.command(0xD0)
    assert c.drain() == [0xCF]  # reset released, A20 on, clock and data idle, no OBF
    c.command(0xC0)
    assert c.drain() == [0x80]  # keyboard not inhibited


# ------------------------------------------------------------------ the auxiliary port
def aux(c: Ctl, value: int) -> list[tuple[int, bool]]:
    """Send ``value`` to the mouse (0xD4) and read its reply with each byte's AUX bit."""
    c.command(0xD4)
    c.send(value)
    out = []
    while c.status() & 1:
        aux_bit = bool(c.status() & 0x20)
        out.append((c.data.read(0, 1), aux_bit))
    return out


def test_aux_loopback_is_mouse_data_and_raises_irq12(c: Ctl) -> None:
    irq12 = c.kbd.irq12
    c.command(0xD3)  # Linux's "internal loopback test"
    c.send(0x5A)
    assert c.status() & 0x21 == 0x21 and not irq12.level  # IRQ 12 off in the command byte
    assert c.drain() == [0x5A] and not c.status() & 0x20
    c.command(0x60)
    c.send(0x47 | 0x02)  # IRQ 12 on
    c.command(0xD3)
    c.send(0xA5)
    assert irq12.level and not c.irq1.level
    assert c.drain() == [0xA5] and not irq12.level
    c.command(0x20)  # a controller reply is not mouse data
    assert c.status() & 0x21 == 0x01


def test_aux_disable_and_enable_show_in_the_command_byte(c: Ctl) -> None:
    c.command(0xA7)
    c.command(0x20)
    assert c.drain()[0] & 0x20
    c.command(0xA8)
    c.command(0x20)
    assert not c.drain()[0] & 0x20
    c.command(0xA9)  # the auxiliary interface test passes
    assert c.drain() == [0x00]


def test_mouse_reset_identify_status_and_wheel_detection(c: Ctl) -> None:
    assert aux(c, 0xFF) == [(0xFA, True), (0xAA, True), (0x00, True)]
    assert aux(c, 0xF2) == [(0xFA, True), (0x00, True)]
    assert aux(c, 0xE9) == [(0xFA, True), (0x00, True), (2, True), (100, True)]
    for rate in (200, 100, 80):  # IntelliMouse: ID 3
        assert aux(c, 0xF3) == [(0xFA, True)]
        assert aux(c, rate) == [(0xFA, True)]
    assert aux(c, 0xF2) == [(0xFA, True), (0x03, True)]
    for rate in (200, 200, 80):  # IntelliMouse Explorer: ID 4
        aux(c, 0xF3)
        aux(c, rate)
    assert aux(c, 0xF2)[1] == (0x04, True)
    assert aux(c, 0xF4) == [(0xFA, True)]
    assert aux(c, 0xE9)[1] == (0x20, True)  # data reporting on
    assert aux(c, 0xEB) == [(0xFA, True), (0x08, True), (0x00, True), (0x00, True)]
    assert aux(c, 0xFF)[1:] == [(0xAA, True), (0x00, True)]
    assert aux(c, 0xF2)[1] == (0x00, True)  # a reset forgets the wheel
    assert aux(c, 0x12) == [(0xFE, True)]  # not a mouse command: resend
