"""firmware/post.py against QEMU: the chips as SeaBIOS and GRUB leave them.

images/probe-devices printed, under QEMU 7.2 + SeaBIOS + GRUB 2.06, the state of every chip a
kernel finds (tests/golden/qemu/probe-devices*.serial). Here the same reads are made in Python
through a machine's port bus after ``program_devices``, device by device, and compared with the
parsed golden lines; then the probe itself runs on a machine the function has programmed. The
lines that still differ are listed in DIFFERS with the reason (docs/platform.md, "Devices at
hand-over")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mb2_kernel import build

from devices.pit8254 import Pit8254
from emu import Machine
from emu.bus import PortBus
from firmware.post import cmos_memory_bytes, program_devices

GOLDEN = Path(__file__).resolve().parent / "golden" / "qemu"
SIZES = {"128M": "probe-devices.serial", "32M": "probe-devices.32M.serial",
         "1G": "probe-devices.1G.serial"}  # fmt: skip
LPT1 = 0x378

# Lines that differ from QEMU's, with why. Each pattern must match in the golden file and give
# a different line under Triplefault (test_every_difference_is_still_a_difference).
DIFFERS: tuple[tuple[str, str], ...] = (
    (r"^i8042 status: ", "QEMU's i8042 never clears status bit 3 (last write was a command); "
     "ours follows the last write, SeaBIOS's command-byte data byte"),
    (r"^vga dac: mask ", "QEMU does not decode a read of the DAC mask (0x3C6 reads 0); the mask "
     "is 0xFF, as SeaVGABIOS writes it"),
    (r"^pit ch2 status: ", "QEMU's channel 2 keeps counting in mode 0 with its gate low; a real "
     "8254, and ours, holds the count where the TSC calibration left it"),
)  # fmt: skip
# Until the machine maps a parallel port, LPT1's registers read as an empty bus.
NO_LPT = (r"^lpt1 378: ", "no parallel port is mapped: its registers read 0xFF")


def _differs(machine: Machine) -> tuple[tuple[str, str], ...]:
    return DIFFERS + ((NO_LPT,) if machine.bus.find(LPT1) is None else ())


def _golden(size: str) -> list[str]:
    return (GOLDEN / SIZES[size]).read_bytes().decode("ascii").replace("\r\n", "\n").splitlines()


def _programmed(memory: str = "128M") -> Machine:
    m = Machine(memory=memory)
    program_devices(m.bus, m.ram.size)
    return m


# ------------------------------------------------------------------ the probe's reads, in Python
def read_devices(bus: PortBus) -> list[str]:
    """The lines images/probe-devices prints in steps 1-3 and 5-8, read in the same order
    through ``bus`` (no CPU runs, so the PIT's "counting" comes from the model's channels)."""
    rd = lambda port: bus.read(port, 1)  # noqa: E731
    wr = lambda port, value: bus.write(port, 1, value)  # noqa: E731
    out: list[str] = []
    # step 1
    out += [f"pic1 imr: {rd(0x21):02x}", f"pic2 imr: {rd(0xA1):02x}"]
    out += [f"pic1 command port (bit 0 masked): {rd(0x20) & ~1:02x}"]
    out += [f"pic2 command port: {rd(0xA0):02x}"]
    out += [f"elcr 4d0: {rd(0x4D0):02x}", f"elcr 4d1: {rd(0x4D1):02x}"]
    out += [f"port 61 (bit 4 masked): {rd(0x61) & ~0x10:02x}", f"port 92: {rd(0x92):02x}"]
    out += [f"port 70: {rd(0x70):02x}"]
    kbd_status = rd(0x64)
    out += [f"i8042 status: {kbd_status:02x}"]
    lcrs = []
    for i, b in enumerate((0x3F8, 0x2F8, 0x3E8, 0x2E8)):
        regs = [rd(b + r) for r in range(1, 8)]
        lcrs.append((regs[2], regs[4]))
        names = ("ier", "iir", "lcr", "mcr", "lsr", "msr", "scr")
        out += [
            f"com{i + 1} {b:03x}: "
            + " ".join(f"{n} {v:02x}" for n, v in zip(names, regs, strict=True))
        ]
    out += [f"lpt1 378: data {rd(0x378):02x} status {rd(0x379):02x} control {rd(0x37A):02x}"]
    misc = rd(0x3CC)
    crtc = 0x3D4 if misc & 1 else 0x3B4
    out += [f"vga misc output (3cc): {misc:02x}", f"vga feature control (3ca): {rd(0x3CA):02x}"]
    out += [f"vga input status 0 (3c2): {rd(0x3C2):02x}"]
    seq_i, crtc_i, gc_i = rd(0x3C4), rd(crtc), rd(0x3CE)
    attr_left = rd(0x3C0)
    rd(crtc + 6)
    attr_i = rd(0x3C0)
    out += [f"vga index registers: sequencer {seq_i:02x} crtc {crtc_i:02x} graphics {gc_i:02x}"]
    out += [f"vga attribute index: {attr_left:02x} as left, {attr_i:02x} after a read of input "
            "status 1"]  # fmt: skip
    dac_w = rd(0x3C8)
    out += [f"vga dac: mask {rd(0x3C6):02x} state {rd(0x3C7):02x} write index {dac_w:02x}"]
    # step 2
    irr_isr = []
    for port in (0x20, 0xA0):
        wr(port, 0x0A)
        irr = rd(port)
        wr(port, 0x0B)
        irr_isr.append((irr, rd(port)))
        wr(port, 0x0A)
    out += [f"pic1 irr (bit 0 masked): {irr_isr[0][0] & ~1:02x}", f"pic1 isr: {irr_isr[0][1]:02x}"]
    out += [f"pic2 irr: {irr_isr[1][0]:02x}", f"pic2 isr: {irr_isr[1][1]:02x}"]
    # step 3
    pit = bus.find(0x40).device
    assert isinstance(pit, Pit8254)
    for ch in range(3):
        wr(0x43, 0xE0 | (2 << ch))
        status = rd(0x40 + ch)
        mode, c = (status >> 1) & 7, pit.channels[ch]
        counting = c.start_ns is not None and (c.gate or c.mode in (1, 5))
        if counting and mode in (2, 3):
            out += [f"pit ch{ch} status (bit 7 masked): {status & 0x7F:02x}, counting, out toggles"]
        elif counting:
            out += [f"pit ch{ch} status: {status:02x}, counting"]
        else:
            wr(0x43, 0xD0 | (2 << ch))
            access = (status >> 4) & 3
            count = rd(0x40 + ch) | (rd(0x40 + ch) << 8 if access == 3 else 0)
            out += [f"pit ch{ch} status: {status:02x}, stopped at count {count:04x}"]

    # step 5
    def cmos(index: int) -> int:
        wr(0x70, 0x80 | index)
        return rd(0x71)

    out += [f"cmos a (bit 7 UIP masked): {cmos(0x0A) & 0x7F:02x}", f"cmos b: {cmos(0x0B):02x}"]
    out += [f"cmos c (bits 6-4 PF AF UF masked): {cmos(0x0C) & ~0x70:02x}"]
    out += [f"cmos d: {cmos(0x0D):02x}"]
    out += [f"cmos alarm: seconds {cmos(1):02x} minutes {cmos(3):02x} hours {cmos(5):02x}"]
    out += ["cmos 00 02 04 06-09: time and date, not printed (time-dependent)"]
    for row in (0x0E, *range(0x10, 0x80, 16)):
        end = (row + 16) & ~15
        out += [f"cmos {row:02x}:" + "".join(f" {cmos(i):02x}" for i in range(row, end))]
    # step 6
    if kbd_status & 1:
        out += [f"i8042 output buffer: {rd(0x60):02x} (read from 0x60; status bit 5 = "
                f"{(kbd_status >> 5) & 1})"]  # fmt: skip
    else:
        out += ["i8042 output buffer: empty"]
    for what, command in (("command byte", 0x20), ("output port", 0xD0), ("input port", 0xC0)):
        wr(0x64, command)
        reply = f"{rd(0x60):02x}" if rd(0x64) & 1 else "no reply"
        out += [f"i8042 {what} (command {command:02x}): {reply}"]
    out += [f"i8042 status after: {rd(0x64):02x}"]
    # step 7
    for i, (b, (lcr, lsr)) in enumerate(zip((0x3F8, 0x2F8, 0x3E8, 0x2E8), lcrs, strict=True)):
        if lcr == 0xFF and lsr == 0xFF:
            out += [f"com{i + 1} {b:03x}: no UART (LCR and LSR read ff), divisor not read"]
            continue
        wr(b + 3, lcr | 0x80)
        divisor = rd(b) | rd(b + 1) << 8
        wr(b + 3, lcr)
        out += [f"com{i + 1} {b:03x}: divisor {divisor:04x}"]

    # step 8
    def indexed(name: str, port: int, count: int, restore: int) -> str:
        values = []
        for i in range(count):
            wr(port, i)
            values.append(rd(port + 1))
        wr(port, restore)
        return f"vga {name}:" + "".join(f" {v:02x}" for v in values)

    out += [indexed("sequencer 00-04", 0x3C4, 5, seq_i), indexed("crtc 00-18", crtc, 0x19, crtc_i)]
    regs = {}
    for i in (0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F):
        wr(crtc, i)
        regs[i] = rd(crtc + 1)
    wr(crtc, crtc_i)
    cursor, start = regs[0x0E] << 8 | regs[0x0F], regs[0x0C] << 8 | regs[0x0D]
    out += [f"vga cursor: start line {regs[0x0A]:02x} end line {regs[0x0B]:02x} location "
            f"{cursor:04x} (row {cursor // 80} column {cursor % 80}), start address {start:04x}"]  # fmt: skip
    out += [indexed("graphics 00-08", 0x3CE, 9, gc_i)]
    rd(crtc + 6)
    attrs = []
    for i in range(0x15):
        wr(0x3C0, 0x20 | i)
        attrs.append(rd(0x3C1))
        rd(crtc + 6)
    wr(0x3C0, attr_i)
    rd(crtc + 6)
    out += ["vga attribute 00-14:" + "".join(f" {v:02x}" for v in attrs)]
    wr(0x3C7, 0)
    for i in range(0, 256, 16):
        out += [f"vga dac {i:02x}:" + "".join(
            " " + "".join(f"{rd(0x3C9):02x}" for _ in range(3)) for _ in range(16))]  # fmt: skip
    wr(0x3C8, dac_w)
    return out


def _comparable(lines: list[str], differs: tuple[tuple[str, str], ...]) -> list[str]:
    patterns = [re.compile(p) for p, _ in differs]
    return [x for x in lines if not any(p.search(x) for p in patterns)]


def _golden_device_lines(size: str) -> list[str]:
    """The golden lines of steps 1-3 and 5-8 (the step headers and the interrupt tests out)."""
    skip = ("probe-devices:", "step ", "first interrupt:", "rtc interrupt:", "end")
    return [x for x in _golden(size) if not x.startswith(skip)]


DEVICES = {
    "8259 pair and ELCR": r"^(pic[12] |elcr )",
    "8254 and port 0x61": r"^(pit |port 61)",
    "CMOS RTC": r"^(cmos |port 70)",
    "i8042 and port 0x92": r"^(i8042 |port 92)",
    "UARTs": r"^com[1-4] ",
    "LPT1": r"^lpt1 ",
    "VGA": r"^vga ",
}


@pytest.fixture(scope="module")
def state() -> dict[str, tuple[list[str], Machine]]:
    out = {}
    for size in SIZES:
        m = _programmed(size)
        out[size] = (read_devices(m.bus), m)
    return out


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("device", DEVICES)
def test_device_state_is_what_qemu_showed(state, size: str, device: str) -> None:
    ours, m = state[size]
    if device == "LPT1" and m.bus.find(LPT1) is None:
        pytest.skip(
            "no parallel port is mapped (test_with_a_parallel_port_lpt1_reads_as_under_qemu)"
        )
    pick = re.compile(DEVICES[device])
    expected = [x for x in _comparable(_golden_device_lines(size), _differs(m)) if pick.search(x)]
    actual = [x for x in _comparable(ours, _differs(m)) if pick.search(x)]
    assert expected, f"no golden lines for {device}"
    assert actual == expected


def test_the_reads_cover_every_golden_device_line(state) -> None:
    ours, _ = state["128M"]
    assert [x.split(":")[0] for x in ours] == [
        x.split(":")[0] for x in _golden_device_lines("128M")
    ]


def test_before_programming_the_devices_are_at_power_on() -> None:
    """Without program_devices the PICs have no vector base, the PIT does not count, CMOS RAM
    is blank: a kernel that relies on the firmware's setup sees the difference."""
    m = Machine()
    lines = read_devices(m.bus)
    assert "pic1 imr: 00" in lines and "pic2 imr: 00" in lines
    assert "pit ch0 status: 70, stopped at count 0000" in lines
    assert any(x.startswith("cmos 10: 00 00 00 00 00 00") for x in lines)


def test_cmos_memory_sizes_follow_the_ram_size() -> None:
    b = cmos_memory_bytes(32 << 20)
    assert (b[0x15], b[0x16], b[0x17], b[0x18], b[0x34], b[0x35]) == (0x80, 2, 0, 0x7C, 0, 1)
    b = cmos_memory_bytes(3 << 30)
    assert (b[0x17], b[0x18], b[0x30], b[0x31]) == (0xFF, 0xFF, 0xFF, 0xFF)
    assert (b[0x34], b[0x35]) == (0x00, 0xBF)  # (3 GiB - 16 MiB) / 64 KiB = 0xBF00
    b = cmos_memory_bytes(2 << 20)
    assert (b[0x17], b[0x18], b[0x34], b[0x35]) == (0x00, 0x04, 0, 0)


def test_programming_twice_gives_the_same_state() -> None:
    """A reset that reboots runs the firmware again, on top of whatever the kernel left."""
    m = _programmed()
    once = read_devices(m.bus)
    program_devices(m.bus, m.ram.size)
    assert read_devices(m.bus) == once


# ------------------------------------------------------------------ kernels on the programmed PC
IRQ0_KERNEL = """
    movl $stubs, %eax
    movl $idt, %edi
    movl $256, %ecx
1:  movl %eax, %edx
    movw %dx, (%edi)
    movw %cs, %dx
    movw %dx, 2(%edi)
    movw $0x8E00, 4(%edi)
    movl %eax, %edx
    shrl $16, %edx
    movw %dx, 6(%edi)
    addl $16, %eax
    addl $8, %edi
    loop 1b
    lidt idtr
    sti
2:  hlt
    jmp 2b
    .align 16
stubs:
    .set v, 0
    .rept 256
    .align 16
    movb $v, %al
    outb %al, $0xf4
    cli
    hlt
    .set v, v + 1
    .endr
    .data
    .align 8
idtr:
    .word 256 * 8 - 1
    .long idt
    .align 8
idt:
    .skip 256 * 8
    .text
"""


@pytest.fixture(scope="module")
def irq0_kernel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(IRQ0_KERNEL, tmp_path_factory.mktemp("irq0"), "irq0")


def test_sti_without_reprogramming_the_pics_gets_irq0_at_vector_8(irq0_kernel: Path) -> None:
    """A kernel that sets IF=1 before remapping the 8259s takes the timer at vector 8, about
    55 ms after the hand-over (SeaBIOS's 18.2 Hz), as under QEMU."""
    m = Machine.from_elf(irq0_kernel)
    program_devices(m.bus, m.ram.size)
    r = m.run(max_instructions=1_000_000)
    assert r.stop_reason == "debug-exit" and r.exit_code == 0x08, r.describe()
    assert 54_900_000 <= m.now_ns() <= 55_000_000  # 65536 / 1193182 Hz = 54.925 ms


def test_at_power_on_nothing_would_arrive(irq0_kernel: Path) -> None:
    """The same kernel on the 8259s and the 8254 as they power on (what the firmware's work
    would be missing): no vector base, a timer that does not count, a HLT nothing can end."""
    m = Machine.from_elf(irq0_kernel)
    m.pics.reset()
    m.pit.reset()
    r = m.run(max_instructions=1_000_000)
    assert r.stop_reason == "halted", r.describe()


def _run_probe(elf: Path, memory: str = "128M", lpt: bool = False) -> tuple[Machine, str]:
    m = Machine.from_elf(elf, memory=memory)
    if lpt and m.bus.find(LPT1) is None:
        from devices.parallel import ParallelPort

        m.bus.map(LPT1, 3, ParallelPort(), "LPT1 (parallel port)")
    program_devices(m.bus, m.ram.size)
    r = m.run(max_instructions=200_000_000)
    assert r.stop_reason == "debug-exit" and r.exit_code == 0, r.describe()
    return m, r.serial.decode("ascii").replace("\r\n", "\n")


@pytest.mark.images
@pytest.mark.parametrize("size", SIZES)
def test_the_probe_prints_what_it_printed_under_qemu(image, size: str) -> None:
    m, text = _run_probe(image("probe-devices"), size)
    differs = _differs(m)
    assert _comparable(text.splitlines(), differs) == _comparable(_golden(size), differs)


@pytest.mark.images
def test_with_a_parallel_port_lpt1_reads_as_under_qemu(image) -> None:
    _, text = _run_probe(image("probe-devices"), lpt=True)
    ours = [x for x in text.splitlines() if x.startswith("lpt1 ")]
    assert ours == [x for x in _golden("128M") if x.startswith("lpt1 ")]


@pytest.mark.images
def test_every_difference_is_still_a_difference(image) -> None:
    m, text = _run_probe(image("probe-devices"))
    for pattern, why in _differs(m):
        theirs = [x for x in _golden("128M") if re.search(pattern, x)]
        ours = [x for x in text.splitlines() if re.search(pattern, x)]
        assert theirs, f"no golden line matches {pattern!r}"
        assert ours != theirs, f"no longer differs: {why}"


@pytest.mark.images
def test_runs_are_deterministic(image) -> None:
    elf = image("probe-devices")
    a = Machine.from_elf(elf)
    program_devices(a.bus, a.ram.size)
    ra = a.run(max_instructions=200_000_000)
    b = Machine.from_elf(elf)
    program_devices(b.bus, b.ram.size)
    rb = b.run(max_instructions=200_000_000)
    assert ra.serial == rb.serial and a.instructions == b.instructions and a.now_ns() == b.now_ns()
