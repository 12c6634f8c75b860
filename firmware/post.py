"""The chips as the firmware leaves them: the device programming of SeaBIOS 1.16's POST, of its
VGA BIOS's mode 3, and of GRUB 2.06's text console, before a Multiboot kernel runs.

A kernel booted by GRUB under QEMU 7.2 does not find the chips in their power-on state. SeaBIOS
has initialised the 8259 pair (vector bases 0x08 and 0x70, IRQ 0, 1, 2, 6, 8, 12, 13 and 14
unmasked), set the PIT's channel 0 running at 18.2 Hz and used channel 2 to calibrate the TSC,
set the RTC's status registers, tested and configured the i8042, probed COM1 (leaving IRQ 4
latched in the master's IRR), and set VGA mode 3; GRUB cleared the screen and homed the
cursor. ``program_devices`` does the same to this machine's devices, as port writes (and the
reads that go with them) through the machine's port bus, so the device models stay the one
place where state lives. Where a port cannot express the state (time that passes during POST,
a QEMU power-on state that no port write reaches) the device model is set directly, and the
function that does it says so.

The values were measured with images/probe-devices under qemu-ref (QEMU 7.2, SeaBIOS, GRUB 2.06)
at 32 MiB, 128 MiB and 1 GiB; docs/platform.md ("Devices at hand-over") lists them with how they
were measured, and tests/test_post.py checks every device against the saved QEMU output.

Everything here is our own code, written from the measured values and from what each chip's
documentation says the writes do: no SeaBIOS, SeaVGABIOS or GRUB code is used. Nothing depends on
the host: the PIT's channels start counting at the machine's virtual time when this runs
(instant 0 of a fresh machine), and the CMOS century comes from the RTC model's own date.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from devices.pit8254 import Pit8254

from .notes import log_once

log = logging.getLogger(__name__)

KIB = 1024
MIB = 1 << 20


class PortRange(Protocol):
    device: Any


class Bus(Protocol):
    """The machine's port bus (``emu.bus.PortBus``): what this module needs of it."""

    def read(self, port: int, size: int) -> int: ...

    def write(self, port: int, size: int, value: int) -> None: ...

    def find(self, port: int) -> PortRange | None: ...


# ---------------------------------------------------------------------------------------------
# 8259A pair
# ---------------------------------------------------------------------------------------------

PIC1_COMMAND, PIC1_DATA, PIC2_COMMAND, PIC2_DATA = 0x20, 0x21, 0xA0, 0xA1
ELCR1, ELCR2 = 0x4D0, 0x4D1
ICW1_INIT_ICW4 = 0x11  # edge-triggered, cascade, ICW4 follows
PIC1_VECTOR_BASE = 0x08  # IRQ 0-7 at vectors 08h-0Fh, as the real-mode IVT expects
PIC2_VECTOR_BASE = 0x70  # IRQ 8-15 at 70h-77h
ICW3_MASTER = 0x04  # the slave on input 2
ICW3_SLAVE = 0x02  # cascade identity 2
ICW4_8086 = 0x01  # 8086 mode, normal EOI, not buffered, not special fully nested
# The masks SeaBIOS leaves: its handlers cover IRQ 0 (timer), 1 (keyboard), 2 (cascade),
# 6 (floppy), 8 (RTC), 12 (PS/2 mouse), 13 (FPU) and 14 (the first IDE channel).
PIC1_IMR = 0xB8
PIC2_IMR = 0x8E
# ELCR: the PCI interrupt lines SeaBIOS routes the PIIX3's links to (IRQ 10 and 11) are
# level-triggered; everything else is edge-triggered.
ELCR_LEVEL = 0x0C00


def _pics(bus: Bus) -> None:
    for command, data, base, icw3 in (
        (PIC1_COMMAND, PIC1_DATA, PIC1_VECTOR_BASE, ICW3_MASTER),
        (PIC2_COMMAND, PIC2_DATA, PIC2_VECTOR_BASE, ICW3_SLAVE),
    ):
        bus.write(command, 1, ICW1_INIT_ICW4)
        bus.write(data, 1, base)
        bus.write(data, 1, icw3)
        bus.write(data, 1, ICW4_8086)
    bus.write(PIC1_DATA, 1, PIC1_IMR)
    bus.write(PIC2_DATA, 1, PIC2_IMR)
    bus.write(ELCR1, 1, ELCR_LEVEL & 0xFF)
    bus.write(ELCR2, 1, ELCR_LEVEL >> 8)


# ---------------------------------------------------------------------------------------------
# 8254 PIT and port 0x61
# ---------------------------------------------------------------------------------------------

PIT_COUNTER0, PIT_COUNTER2, PIT_MODE = 0x40, 0x42, 0x43
PORT_61 = 0x61
PIT_CH0_RATE_GENERATOR = 0x34  # channel 0, lobyte/hibyte, mode 2, binary
PIT_CH2_ONE_SHOT = 0xB0  # channel 2, lobyte/hibyte, mode 0, binary
PIT_TICK_COUNT = 0  # 65536: IRQ 0 at 1193182 / 65536 = 18.2 Hz
CALIBRATE_COUNT = 0x800  # the 1.7 ms SeaBIOS times the TSC against
PORT_61_GATE2 = 0x01
PORT_61_SPEAKER = 0x02


def _pit(bus: Bus) -> None:
    # The TSC calibration: channel 2 in mode 0 with its gate opened through port 0x61; SeaBIOS
    # waits for OUT2 to rise, then puts port 0x61 back.
    orig = bus.read(PORT_61, 1)
    bus.write(PORT_61, 1, (orig & ~PORT_61_SPEAKER) | PORT_61_GATE2)
    bus.write(PIT_MODE, 1, PIT_CH2_ONE_SHOT)
    bus.write(PIT_COUNTER2, 1, CALIBRATE_COUNT & 0xFF)
    bus.write(PIT_COUNTER2, 1, CALIBRATE_COUNT >> 8)
    _calibration_elapsed(bus)
    bus.write(PORT_61, 1, orig)
    # The system timer.
    bus.write(PIT_MODE, 1, PIT_CH0_RATE_GENERATOR)
    bus.write(PIT_COUNTER0, 1, PIT_TICK_COUNT & 0xFF)
    bus.write(PIT_COUNTER0, 1, PIT_TICK_COUNT >> 8)
    _channel1_as_at_power_on(bus)


def _pit_device(bus: Bus) -> Pit8254 | None:
    found = bus.find(PIT_COUNTER0)
    device = found.device if found is not None else None
    return device if isinstance(device, Pit8254) else None


def _calibration_elapsed(bus: Bus) -> None:
    """Direct state: the 0x800 clocks that pass while SeaBIOS waits for OUT2. No time passes
    here (the CPU has not run), so channel 2 is moved on to its terminal count, where the wait
    leaves it: OUT2 high (port 0x61 bit 5), the count at 0. When port 0x61 then closes the
    gate, a real 8254 holds that count; QEMU's keeps counting (it ignores the gate in mode 0),
    the one difference a kernel can see."""
    pit = _pit_device(bus)
    if pit is not None:
        ch = pit.channels[2]
        ch.start_ns, ch.paused_ticks = pit.now_ns(), CALIBRATE_COUNT


def _channel1_as_at_power_on(bus: Bus) -> None:
    """Direct state: channel 1 (the refresh timer, which SeaBIOS never programs) as QEMU's
    board powers it on: mode 3 with the count 65536, counting from power-on, and an access
    field of 0, which no control word can set (0 in the RW bits is the latch command), so that
    the read-back status reads 0x06 (with OUT in bit 7) and a read gives the live low byte."""
    pit = _pit_device(bus)
    if pit is not None:
        ch = pit.channels[1]
        ch.mode, ch.access, ch.bcd, ch.reload = 3, 0, False, 0x10000
        ch.start_ns, ch.paused_ticks, ch.gate = pit.now_ns(), 0, True
        ch.null_count, ch.out_at_load = False, True
        ch.write_low, ch.read_high_next, ch.latched, ch.status_latched = None, False, None, None


# ---------------------------------------------------------------------------------------------
# CMOS RTC
# ---------------------------------------------------------------------------------------------

CMOS_INDEX, CMOS_DATA = 0x70, 0x71
NMI_DISABLE = 0x80  # SeaBIOS addresses CMOS with bit 7 set, and leaves NMI disabled
RTC_A_VALUE = 0x26  # 32.768 kHz time base, periodic rate 1024 Hz
RTC_B_24H = 0x02
RTC_B_DSE = 0x01
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
SHUTDOWN_STATUS = 0x0F
CENTURY = 0x32
PS2_CENTURY = 0x37  # the IBM PS/2 copy of the century, which QEMU also keeps
# The bytes QEMU's board writes into CMOS RAM before SeaBIOS runs, as a kernel reads them
# (measured): floppy drive A a 2.88 MB drive (QEMU's default drive, no disk), no hard disks,
# the equipment byte (a floppy, an FPU, a PS/2 mouse), the boot order (CD-ROM first: qemu-ref
# boots GRUB from a CD) and no CPU but the boot CPU.
CMOS_BOARD_BYTES = {
    0x10: 0x50,  # floppy types: drive A type 5, drive B none
    0x12: 0x00,  # hard disk types
    0x14: 0x07,  # equipment: floppy, FPU, PS/2 mouse; primary display EGA/VGA (bits 5-4 = 0)
    0x38: 0x00,  # third boot device none, floppy signature check on
    0x3D: 0x03,  # first boot device CD-ROM, second none
    0x5F: 0x00,  # CPUs - 1
}


def cmos_memory_bytes(ram_size: int) -> dict[int, int]:
    """The memory sizes in CMOS as QEMU's board sets them for ``ram_size`` bytes of RAM (all of
    it below 4 GiB: at most 3 GiB here): base memory in KiB (0x15-0x16), memory above 1 MiB in
    KiB up to 65535 (0x17-0x18, again at 0x30-0x31), memory above 16 MiB in 64 KiB units up to
    65535 (0x34-0x35) and above 4 GiB in 64 KiB units (0x5B-0x5D)."""
    base = min(ram_size // KIB, 640)
    extended = min(max(ram_size - MIB, 0) // KIB, 0xFFFF)
    above_16m = min(max(ram_size - 16 * MIB, 0) // (64 * KIB), 0xFFFF)
    above_4g = 0
    out: dict[int, int] = {}
    for low, value in ((0x15, base), (0x17, extended), (0x30, extended), (0x34, above_16m)):
        out[low], out[low + 1] = value & 0xFF, value >> 8
    for i, reg in enumerate((0x5B, 0x5C, 0x5D)):
        out[reg] = (above_4g >> (8 * i)) & 0xFF
    return out


def _cmos_write(bus: Bus, index: int, value: int) -> None:
    bus.write(CMOS_INDEX, 1, NMI_DISABLE | index)
    bus.write(CMOS_DATA, 1, value)


def _cmos_read(bus: Bus, index: int) -> int:
    bus.write(CMOS_INDEX, 1, NMI_DISABLE | index)
    return bus.read(CMOS_DATA, 1)


def _rtc(bus: Bus, ram_size: int) -> None:
    # What the board put in CMOS RAM (a real BIOS finds it in battery-backed RAM).
    for index, value in sorted({**CMOS_BOARD_BYTES, **cmos_memory_bytes(ram_size)}.items()):
        _cmos_write(bus, index, value)
    _cmos_write(bus, PS2_CENTURY, _cmos_read(bus, CENTURY))  # the clock's own century, in BCD
    # SeaBIOS: a clean shutdown status, then the RTC set up as every BIOS does.
    _cmos_write(bus, SHUTDOWN_STATUS, 0x00)
    _cmos_write(bus, REG_A, RTC_A_VALUE)
    _cmos_write(bus, REG_B, (_cmos_read(bus, REG_B) & ~RTC_B_DSE) | RTC_B_24H)
    _cmos_read(bus, REG_C)  # acknowledges anything pending
    _cmos_read(bus, REG_D)


# ---------------------------------------------------------------------------------------------
# i8042 and port 0x92
# ---------------------------------------------------------------------------------------------

KBD_DATA, KBD_STATUS, PORT_92 = 0x60, 0x64, 0x92
ST_OBF = 0x01
CMD_WRITE_CTR = 0x60
CMD_SELF_TEST = 0xAA
CMD_KBD_TEST = 0xAB
CTR_KBDINT = 0x01
CTR_AUXINT = 0x02
CTR_KBDDIS = 0x10
CTR_AUXDIS = 0x20
CTR_XLATE = 0x40
KBD_RESET = 0xFF
KBD_DISABLE = 0xF5
KBD_SET_SCANCODES = 0xF0
KBD_ENABLE = 0xF4
# The command byte SeaBIOS leaves: keyboard interrupt on, translation on, mouse disabled.
CTR_FINAL = CTR_AUXDIS | CTR_XLATE | CTR_KBDINT
PORT_92_A20 = 0x02


def _kbd_read(bus: Bus, limit: int = 1) -> list[int]:
    """Up to ``limit`` bytes from the output buffer (what is there: the controller answers at
    once, so there is no waiting)."""
    out = []
    while len(out) < limit and bus.read(KBD_STATUS, 1) & ST_OBF:
        out.append(bus.read(KBD_DATA, 1))
    return out


def _kbd_command(bus: Bus, ctr: int, *data: int, replies: int) -> None:
    """A keyboard command the way SeaBIOS sends one: keyboard and mouse off with their
    interrupts, the keyboard port on, the command and its argument each answered, the command
    byte put back."""
    quiet = (ctr | CTR_AUXDIS | CTR_KBDDIS) & ~(CTR_KBDINT | CTR_AUXINT)
    for value in (quiet, quiet & ~CTR_KBDDIS):
        bus.write(KBD_STATUS, 1, CMD_WRITE_CTR)
        bus.write(KBD_DATA, 1, value)
    for byte in data:
        bus.write(KBD_DATA, 1, byte)
        _kbd_read(bus)  # the acknowledgement
    _kbd_read(bus, replies)
    bus.write(KBD_STATUS, 1, CMD_WRITE_CTR)
    bus.write(KBD_DATA, 1, ctr)


def _i8042(bus: Bus) -> None:
    _kbd_read(bus, 16)  # flush
    for command in (CMD_SELF_TEST, CMD_KBD_TEST):
        bus.write(KBD_STATUS, 1, command)
        _kbd_read(bus)
    ctr = CTR_KBDDIS | CTR_AUXDIS
    _kbd_command(bus, ctr, KBD_RESET, replies=2)  # FA, then AA (self-test passed)
    _kbd_command(bus, ctr, KBD_DISABLE, replies=0)
    _kbd_command(bus, ctr, KBD_SET_SCANCODES, 0x02, replies=0)
    _kbd_command(bus, CTR_FINAL, KBD_ENABLE, replies=0)
    # A20 through port 0x92, if it is not on already.
    value = bus.read(PORT_92, 1)
    if not value & PORT_92_A20:
        bus.write(PORT_92, 1, (value | PORT_92_A20) & ~0x01)


# ---------------------------------------------------------------------------------------------
# 16550A UARTs
# ---------------------------------------------------------------------------------------------

COM1 = 0x3F8
UART_IER, UART_MCR = 1, 4
IER_ETBEI = 0x02
MCR_OUT2 = 0x08


def _uarts(bus: Bus) -> None:
    """COM1 as QEMU's UART comes out of reset and as SeaBIOS's probe leaves it.

    QEMU's reset sets MCR.OUT2 (the datasheet's master reset clears MCR): the write of 0x08
    reproduces the value a kernel reads. SeaBIOS's probe sets IER to 0x02, reads IIR and
    clears IER; the THR-empty interrupt it provokes reaches the PIC through OUT2 and stays
    latched in the master's IRR (bit 4, masked). The IIR read is left out: it changes nothing
    a kernel can see (clearing IER drops the interrupt as well), and in this model it would
    open the line to host input before the kernel runs. COM2-COM4, which SeaBIOS probes too,
    are absent (the machine decodes none of their ports), so their probes are left out."""
    if bus.find(COM1) is None:
        return
    bus.write(COM1 + UART_MCR, 1, MCR_OUT2)
    bus.write(COM1 + UART_IER, 1, IER_ETBEI)
    bus.write(COM1 + UART_IER, 1, 0x00)


# ---------------------------------------------------------------------------------------------
# Parallel port
# ---------------------------------------------------------------------------------------------

LPT1 = 0x378
LPT_DATA, LPT_CONTROL = 0, 2
LPT_CONTROL_INPUT = 0x20
LPT_PROBE = 0xAA


def _parallel(bus: Bus) -> None:
    """SeaBIOS's LPT1 probe: the port out of input mode, 0xAA written to the data latch and
    read back (it stays there). Skipped where the machine has no parallel port."""
    if bus.find(LPT1) is None:
        return
    control = bus.read(LPT1 + LPT_CONTROL, 1)
    bus.write(LPT1 + LPT_CONTROL, 1, control & ~LPT_CONTROL_INPUT)
    bus.write(LPT1 + LPT_DATA, 1, LPT_PROBE)
    bus.read(LPT1 + LPT_DATA, 1)


# ---------------------------------------------------------------------------------------------
# VGA: SeaVGABIOS's mode 3, GRUB's text console
# ---------------------------------------------------------------------------------------------

VGA_ATTR, VGA_MISC_WRITE, VGA_SEQ, VGA_DAC_MASK = 0x3C0, 0x3C2, 0x3C4, 0x3C6
VGA_DAC_WRITE, VGA_DAC_DATA, VGA_GC, VGA_CRTC, VGA_STATUS1 = 0x3C8, 0x3C9, 0x3CE, 0x3D4, 0x3DA
ATTR_PAS = 0x20
# Mode 3 as the registers read afterwards (QEMU stores some with bits masked: sequencer 4 reads
# 0x02 for SeaVGABIOS's 0x03).
MODE3_ATTR = bytes.fromhex("000102030405140738393a3b3c3d3e3f0c000f0800")
MODE3_SEQ = bytes.fromhex("0300030002")
MODE3_GC = bytes.fromhex("0000000000100e0fff")
MODE3_CRTC = bytes.fromhex("5f4f50825581bf1f004f0d0e000000009c8e8f281f96b9a3ff")
MODE3_MISC = 0x67
CRTC_VRETRACE_END = 0x11
CRTC_CURSOR_HIGH, CRTC_CURSOR_LOW = 0x0E, 0x0F
SEQ_RESET, SEQ_MAP_MASK, SEQ_MEMORY_MODE = 0x00, 0x02, 0x04
GC_READ_MAP, GC_MODE, GC_MISC = 0x04, 0x05, 0x06


def ega_palette() -> list[tuple[int, int, int]]:
    """The 64-colour EGA set SeaVGABIOS loads into DAC entries 0-63 for mode 3 (6-bit values):
    index bits 2/1/0 give 2/3 of red/green/blue, bits 5/4/3 another 1/3."""
    return [
        (
            42 * ((i >> 2) & 1) + 21 * ((i >> 5) & 1),
            42 * ((i >> 1) & 1) + 21 * ((i >> 4) & 1),
            42 * (i & 1) + 21 * ((i >> 3) & 1),
        )
        for i in range(64)
    ]


def _vga_index_write(bus: Bus, port: int, index: int, value: int) -> None:
    bus.write(port, 1, index)
    bus.write(port + 1, 1, value)


def _vga(bus: Bus) -> None:
    if bus.find(VGA_SEQ) is None:
        return
    # The mode set: DAC mask and palette (the rest of the 256 entries black), the attribute
    # controller with the palette address source clear (screen off while loading), the
    # sequencer, the graphics controller, the CRTC (unlocked first), the misc output, then the
    # screen on (index 0x20: the flip-flop is left expecting data).
    bus.write(VGA_DAC_MASK, 1, 0xFF)
    bus.write(VGA_DAC_WRITE, 1, 0)
    colours = ega_palette() + [(0, 0, 0)] * (256 - 64)
    for rgb in colours:
        for component in rgb:
            bus.write(VGA_DAC_DATA, 1, component)
    for index, value in enumerate(MODE3_ATTR):
        bus.read(VGA_STATUS1, 1)
        bus.write(VGA_ATTR, 1, index)
        bus.write(VGA_ATTR, 1, value)
    for index, value in enumerate(MODE3_SEQ):
        _vga_index_write(bus, VGA_SEQ, index, value)
    for index, value in enumerate(MODE3_GC):
        _vga_index_write(bus, VGA_GC, index, value)
    _vga_index_write(bus, VGA_CRTC, CRTC_VRETRACE_END, 0x00)
    for index, value in enumerate(MODE3_CRTC):
        _vga_index_write(bus, VGA_CRTC, index, value)
    bus.write(VGA_MISC_WRITE, 1, MODE3_MISC)
    bus.read(VGA_STATUS1, 1)
    bus.write(VGA_ATTR, 1, ATTR_PAS)
    # The font is loaded into plane 2 through the sequencer and graphics controller (the font
    # itself is not modelled: the screen is drawn from devices/cp437_font.py), and access to
    # the text planes given back: this leaves the sequencer index at 0 and the graphics index
    # at 5, as measured.
    for index, value in (
        (SEQ_RESET, 0x01),
        (SEQ_MAP_MASK, 0x04),
        (SEQ_MEMORY_MODE, 0x06),
        (SEQ_RESET, 0x03),
    ):
        _vga_index_write(bus, VGA_SEQ, index, value)
    for index, value in ((GC_READ_MAP, 0x02), (GC_MODE, 0x00), (GC_MISC, 0x04)):
        _vga_index_write(bus, VGA_GC, index, value)
    for index, value in (
        (SEQ_RESET, 0x01),
        (SEQ_MAP_MASK, MODE3_SEQ[SEQ_MAP_MASK]),
        (SEQ_MEMORY_MODE, MODE3_SEQ[SEQ_MEMORY_MODE]),
        (SEQ_RESET, 0x03),
    ):
        _vga_index_write(bus, VGA_SEQ, index, value)
    for index in (GC_MISC, GC_READ_MAP, GC_MODE):
        _vga_index_write(bus, VGA_GC, index, MODE3_GC[index])
    # GRUB's clear screen homes the cursor (INT 10h AH=02h: the cursor location registers).
    _vga_index_write(bus, VGA_CRTC, CRTC_CURSOR_HIGH, 0x00)
    _vga_index_write(bus, VGA_CRTC, CRTC_CURSOR_LOW, 0x00)


# ---------------------------------------------------------------------------------------------


def program_devices(bus: Bus, ram_size: int) -> None:
    """Program the devices on ``bus`` as SeaBIOS and GRUB leave them for a kernel, on a machine
    with ``ram_size`` bytes of RAM. Runs on power-on state (after every device's reset()),
    before the CPU's first instruction; it runs again after a reset that reboots.

    The order keeps the interrupt requests a kernel finds the same as under QEMU: the i8042's
    answers come before the 8259s are initialised (which forgets edges latched until then,
    as SeaBIOS's own handlers consume them), and COM1's probe after (its IRQ 4 stays in IRR).
    """
    _i8042(bus)
    _pics(bus)
    _pit(bus)
    _rtc(bus, ram_size)
    _uarts(bus)
    _parallel(bus)
    _vga(bus)


def program_video_mode(bus: Bus, framebuffer) -> None:
    """The VGA after the VBE mode set GRUB made (``framebuffer``: a firmware.Framebuffer): for
    a packed-pixel mode the DAC holds the BIOS's 256-colour palette with GRUB's 16 standard
    colours in entries 0-15 (written here through the DAC ports). The VGA compatibility
    registers the BIOS programs for the mode and the Bochs DISPI registers are not modelled."""
    log_once(
        log,
        logging.INFO,
        "not modelled: the VGA compatibility registers and the Bochs DISPI registers (ports "
        "0x1CE/0x1CF) of a VBE mode set; the display shows the linear framebuffer",
    )
    if not framebuffer.indexed:
        return
    bus.write(VGA_DAC_WRITE, 1, 0)
    for rgb in framebuffer.dac():
        for component in rgb:
            bus.write(VGA_DAC_DATA, 1, component)
