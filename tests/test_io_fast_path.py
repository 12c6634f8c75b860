"""The port I/O fast paths change nothing: Scheduler.after_io rescheduling only when something
it reads may have changed, and the compiled hooks answering from the port read table what the
devices published (emu/port_cache.py). The same guests run with them on and off give the same
instruction counts, serial and console bytes, traces, RAM and device state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import test_delivery_oracle as T
from mb2_kernel import build
from timer_guest import boot, install_handler, pic_and_pit

from emu import Machine
from emu.bus import PortBus
from emu.checkpoint import save_device

COUNTER = 0x30000


def outcome(m: Machine, max_instructions: int) -> tuple:
    r = m.run(max_instructions=max_instructions)
    devices = {}
    now = m.scheduler.now_ns()
    for name, device in m._stateful_devices().items():
        if getattr(device, "CATCH_UP_FIELDS", ()):
            # flags a lazy device sets only when it catches up (the RTC's register C at a read
            # of C): bring it to now, so routes that caught it up at other instants compare equal
            device.tick(now)
        state = save_device(device)
        state.values.pop("events_changed", None)  # bookkeeping of the fast path itself
        for catch_up in getattr(device, "CATCH_UP_FIELDS", ()):
            state.values.pop(catch_up, None)  # when it last caught up: ticks differ, not behaviour
        devices[name] = (state.values, state.lines)
    trace = r.trace.to_list() if r.trace is not None else None
    return (
        r.stop_reason, r.exit_code, r.instructions, r.virtual_time_ns, r.serial, r.console,
        trace, bytes(m.ram), devices, m.core.fast_deliveries, m.bus.unmapped_reads,
    )  # fmt: skip


# (Scheduler.io_fast_path, the port read table): both on, the table off, both off
CONFIGURATIONS = ((True, True), (True, False), (False, False))


def both(
    make,
    max_instructions: int = 20_000_000,
    *,
    answered: bool = False,
    queued: bool = False,
    configurations=None,
) -> tuple:
    """Run ``make()`` in every configuration and compare; ``answered``: the port read table
    must have answered some reads (the guest polls what the devices publish); ``queued``: the
    compiled OUT hook must have queued some writes (the guest prints over COM1)."""
    results = []
    for fast, table in configurations or CONFIGURATIONS:
        m = make()
        m.scheduler.io_fast_path = fast
        m.ports.enabled = table
        results.append(outcome(m, max_instructions))
        if table and answered:
            assert m.ports.reads_answered > 0
        if table and queued:
            assert m.ports.writes_queued > 0
        if not table:
            assert m.ports.reads_answered == m.ports.writes_dropped == m.ports.writes_queued == 0
    assert all(r == results[0] for r in results[1:])
    return results[0]


@pytest.mark.images
@pytest.mark.parametrize(
    ("name", "keys"),
    [("timer", ""), ("timer", "Hello PS2\n"), ("hello", ""), ("probe-devices", "")],
)
def test_images_fast_path_on_and_off(image, name: str, keys: str) -> None:
    make = lambda: Machine.from_elf(image(name), keys=keys, keys_at=0.05, serial_input=b"ab\n")  # noqa: E731
    both(make, max_instructions=5_000_000)


# The images the golden and differential tests run (their serial output is compared with QEMU's
# there, with the table on): the table off gives the same run.
@pytest.mark.images
@pytest.mark.parametrize(
    "name",
    ["probe-openbus", "probe-bios", "probe-tables", "bios", "apic", "probe-cpuid", "probe-lapic",
     "hello-mb1", "faults", "paging", "real-mode", "lost-in-32bit"],
)  # fmt: skip
def test_images_port_table_on_and_off(image, name: str) -> None:
    both(
        lambda: Machine.from_elf(image(name)),
        max_instructions=5_000_000,
        configurations=((True, True), (True, False)),
    )


# 32-bit guests (GRUB's state, IF=0) that poll, reprogram the timer and print while they do.
POLLS = {
    # the CMOS seconds and the update-in-progress bit, polled and printed
    "cmos": """
        movl $20000, %esi
    3:  movb $0x00, %al; outb %al, $0x70; inb $0x71, %al; movb %al, %bl
        movb $0x0a, %al; outb %al, $0x70; inb $0x71, %al; testb $0x80, %al; jnz 3b
        movw $0x3f8, %dx; andb $0x0f, %bl; addb $0x30, %bl; movb %bl, %al; outb %al, %dx
        decl %esi; jnz 3b
    """,
    # PIT channel 0 reprogrammed in the middle of a polling loop, mode 0, polled until OUT
    # is high (read-back status), then the periodic mode again with another divisor
    "pit": """
        movl $20000, %ecx
    3:  inb $0x80, %al; decl %ecx; jnz 3b
        movb $0x30, %al; outb %al, $0x43
        movb $0x00, %al; outb %al, $0x40
        movb $0x01, %al; outb %al, $0x40
    4:  movb $0xe2, %al; outb %al, $0x43; inb $0x40, %al; testb $0x80, %al; jz 4b
        movb $0x00, %al; outb %al, $0x43; inb $0x40, %al; inb $0x40, %al
        movb $0x34, %al; outb %al, $0x43
        movb $0x9b, %al; outb %al, $0x40
        movb $0x2e, %al; outb %al, $0x40
        movl $5000, %ecx
    5:  movb $0x00, %al; outb %al, $0x43; inb $0x40, %al; movb %al, %ah; inb $0x40, %al
        decl %ecx; jnz 5b
    """,
    # the PIT's counters read as kernels read them (the compiled hooks compute the latches and
    # reads of a published channel): channel 0 in mode 2 (lohi), channel 1 in mode 0 wrapping
    # (lobyte), channel 2 in mode 3 (hibyte) with its gate toggled through port 0x61; latched
    # and live reads, a second latch while one waits (ignored), a latch read halfway when a
    # read-back comes; every value kept in RAM
    "pit-reads": """
        movb $0x34, %al; outb %al, $0x43; movb $0x34, %al; outb %al, $0x40
        movb $0x12, %al; outb %al, $0x40
        movb $0x50, %al; outb %al, $0x43; movb $0x40, %al; outb %al, $0x41
        movb $0x01, %al; outb %al, $0x61
        movb $0xa6, %al; outb %al, $0x43; movb $0x01, %al; outb %al, $0x42
        movl $3000, %ecx
    3:  movb $0x00, %al; outb %al, $0x43; inb $0x40, %al; movb %al, %ah; inb $0x40, %al
        movw %ax, 0x30000(,%ecx,8)
        inb $0x42, %al; movb %al, 0x30002(,%ecx,8)
        movb $0x40, %al; outb %al, $0x43; inb $0x41, %al; movb %al, 0x30003(,%ecx,8)
        inb $0x40, %al; movb %al, 0x30004(,%ecx,8)
        movb $0x80, %al; outb %al, $0x43; inb $0x42, %al; movb %al, 0x30005(,%ecx,8)
        testb $15, %cl; jnz 4f
        movb $0x00, %al; outb %al, $0x43; inb $0x40, %al
        movb $0x00, %al; outb %al, $0x43; inb $0x40, %al; movb %al, 0x30006(,%ecx,8)
        inb $0x61, %al; xorb $1, %al; outb %al, $0x61
        movb $0x00, %al; outb %al, $0x43; inb $0x40, %al
        movb $0xc2, %al; outb %al, $0x43; inb $0x40, %al; movb %al, 0x30007(,%ecx,8)
        inb $0x40, %al; inb $0x40, %al
    4:  decl %ecx; jnz 3b
    """,
    # print over COM1 polling LSR, with the i8042 status and an undecoded port in between
    "uart": """
        movl $300, %ecx
    3:  movw $0x3fd, %dx
    4:  inb %dx, %al; testb $0x20, %al; jz 4b
        inb $0x64, %al; inb $0x80, %al
        movw $0x3f8, %dx; movb %cl, %al; andb $0x3f, %al; addb $0x30, %al; outb %al, %dx
        decl %ecx; jnz 3b
    """,
    # the THR-empty interrupt enabled (IRQ 4 masked, IF=0) while printing: every eighth byte
    # IIR is read (it reports THRE and clears it, so the next THR write raises it again) and
    # printed, and in between LCR and SCR are written (the writes to THR wait on them)
    "uart-thre": """
        movw $0x3f9, %dx; movb $0x02, %al; outb %al, %dx
        movw $0x3fc, %dx; movb $0x0b, %al; outb %al, %dx
        movl $400, %ecx
    3:  movw $0x3fd, %dx
    4:  inb %dx, %al; testb $0x20, %al; jz 4b
        movw $0x3f8, %dx; movb %cl, %al; andb $0x3f, %al; addb $0x30, %al; outb %al, %dx
        testb $7, %cl; jnz 5f
        movw $0x3fa, %dx; inb %dx, %al; addb $0x30, %al; movw $0x3f8, %dx; outb %al, %dx
        movw $0x3ff, %dx; movb %cl, %al; outb %al, %dx
    5:  testb $31, %cl; jnz 6f
        movw $0x3fb, %dx; movb $0x03, %al; outb %al, %dx
    6:  decl %ecx; jnz 3b
        movw $0x3f9, %dx; movb $0x00, %al; outb %al, %dx
    """,
    # status A polled with the same index written each time (the index write changes nothing),
    # then the absent IDE controllers' status ports and the i8042's, a CMOS RAM byte
    "cmos-a": """
        movl $20000, %ecx
    3:  movb $0x0a, %al; outb %al, $0x70; inb $0x71, %al; decl %ecx; jnz 3b
        movl $20000, %ecx
    4:  movw $0x1f7, %dx; inb %dx, %al; movw $0x177, %dx; inb %dx, %al; inb $0x64, %al
        movb $0x35, %al; outb %al, $0x70; inb $0x71, %al
        decl %ecx; jnz 4b
    """,
    # the RTC's periodic and update interrupts enabled (IRQ 8 masked at the PIC), register C
    # polled: its reads lower IRQ 8 and its flags come from the RTC's ticks
    "rtc-irq": """
        movb $0xff, %al; outb %al, $0xa1
        movb $0x0b, %al; outb %al, $0x70; movb $0x52, %al; outb %al, $0x71
        movb $0x0a, %al; outb %al, $0x70; movb $0x23, %al; outb %al, $0x71
        movl $4, %esi
    3:  movb $0x0c, %al; outb %al, $0x70; inb $0x71, %al; testb $0x40, %al; jz 3b
        decl %esi; jnz 3b
        movb $0x0b, %al; outb %al, $0x70; movb $0x02, %al; outb %al, $0x71
    """,
}


@pytest.mark.parametrize("name", sorted(POLLS))
def test_polling_guests_fast_path_on_and_off(tmp_path: Path, name: str) -> None:
    elf = build(POLLS[name], tmp_path, name)
    r = both(
        lambda: Machine.from_elf(elf),
        max_instructions=50_000_000,
        answered=name in ("uart", "uart-thre", "cmos-a", "pit-reads"),
        queued=name in ("uart", "uart-thre"),
    )
    assert r[0] == "debug-exit", r


# Long mode with the PIT interrupting (the clock hook armed) while the loop does port I/O:
# after_io runs between compiled deliveries and EOIs.
def timer_machine(body: str, divisor: int = 4) -> Machine:
    T.TRIGGERS["iotimer"] = (
        pic_and_pit(divisor)
        + f"""
        sti
        movq $5000, %rcx
    2:  {body}
        decq %rcx
        jnz 2b
        cli
        """
    )
    ram = T.image({"mode": "long", "trigger": "iotimer"})
    install_handler(
        ram,
        f"pushq %rax\n incq {COUNTER}\n movb $0x20, %al\n outb %al, $0x20\n popq %rax\n iretq\n",
    )
    return boot(ram)


@pytest.mark.parametrize(
    "body",
    [
        "inb $0x80, %al",
        "movb $0x0a, %al; outb %al, $0x70; inb $0x71, %al",
        "movb $0x00, %al; outb %al, $0x43; inb $0x40, %al; inb $0x40, %al",
        # the PIT read after each wake-up (idle time skipped), the values kept
        "hlt; movb $0x00, %al; outb %al, $0x43; inb $0x40, %al; movb %al, %ah; inb $0x40, %al; "
        "movw %ax, 0x31000(,%rcx,2)",
        "movw $0x3fd, %dx; inb %dx, %al; inb $0x64, %al",
        "inb $0x21, %al",  # a PIC read: never skipped
    ],
)
def test_armed_timer_with_port_io_fast_path_on_and_off(body: str) -> None:
    r = both(lambda: timer_machine(body))
    ticks = int(np.frombuffer(r[7][COUNTER : COUNTER + 8], np.uint64)[0])
    assert r[0] == "halted" and ticks > 3


def test_timer_reprogrammed_in_the_loop_fires_on_time() -> None:
    """A count written mid-slice moves the next event: the access is not skipped."""
    body = (
        "movb $0x34, %al; outb %al, $0x43; movb $0x20, %al; outb %al, $0x40; "
        "movb $0x03, %al; outb %al, $0x40; inb $0x80, %al"
    )
    r = both(lambda: timer_machine(body, divisor=0xFFFF))
    ticks = int(np.frombuffer(r[7][COUNTER : COUNTER + 8], np.uint64)[0])
    assert r[0] == "halted" and ticks == 0  # each reload restarts the count before it expires


def test_bus_table_matches_the_ranges() -> None:
    bus = PortBus()

    class Dev:
        def read(self, offset: int, size: int) -> int:
            return offset

        def write(self, offset: int, size: int, value: int) -> None:
            pass

    for base, length in ((0x20, 2), (0x40, 4), (0x3F8, 8), (0xFFFE, 2)):
        bus.map(base, length, Dev(), f"dev{base:x}")
    for port in range(0x10000):
        found = [r for r in bus.ranges if r.base <= port < r.end]
        assert bus.find(port) is (found[0] if found else None)
    assert bus.find(0x10000) is None and bus.find(-1) is None
    assert bus.read(0xFFFF, 2) == 0xFF01  # past the last port: all-ones


def irr_machine() -> Machine:
    """Long mode, the PIT at divisor 100 (about 84 us) interrupting a busy loop with IF=1; six
    times the guest then clears IF and polls the master 8259's IRR (OCW3 read-IRR, then port
    0x20) until IRQ 0's bit is set, keeps the number of polls it took, and sets IF again."""
    T.TRIGGERS["irrpoll"] = (
        pic_and_pit(100)
        + """
        sti
        movq $6, %rsi
    1:  movq $20000, %rcx
    2:  decq %rcx
        jnz 2b
        cli
        xorq %rdx, %rdx
    3:  incq %rdx
        movb $0x0a, %al; outb %al, $0x20; inb $0x20, %al
        testb $1, %al
        jz 3b
        movq %rdx, 0x30100(,%rsi,8)
        sti
        decq %rsi
        jnz 1b
        cli
        """
    )
    ram = T.image({"mode": "long", "trigger": "irrpoll"})
    install_handler(
        ram,
        f"pushq %rax\n incq {COUNTER}\n movb $0x20, %al\n outb %al, $0x20\n popq %rax\n iretq\n",
    )
    return boot(ram)


def test_irr_polled_with_if_clear_while_the_timer_is_armed() -> None:
    """The PIT's edge that comes while IF=0 is in the IRR at the same instruction whether the
    clock hook had it armed or the devices alone (the stop path) raised it, with the port read
    table and the I/O fast path on and off."""
    results = []
    for arm, fast, table in ((True, True, True), (False, True, True), (True, False, False),
                             (False, False, False)):  # fmt: skip
        m = irr_machine()
        m.arm_timer = arm
        m.scheduler.io_fast_path = fast
        m.ports.enabled = table
        r = outcome(m, 50_000_000)
        if arm:
            assert r[9] > 0  # the hook delivered the timer's interrupts itself
        results.append(r[:9] + r[10:])  # all but the count of the hook's own deliveries
    assert all(r == results[0] for r in results[1:])
    r = results[0]
    assert r[0] == "halted"
    ram = r[7]
    polls = np.frombuffer(ram[0x30108 : 0x30108 + 6 * 8], np.uint64)
    ticks = int(np.frombuffer(ram[COUNTER : COUNTER + 8], np.uint64)[0])
    assert (polls > 1).all() and ticks >= 6, (polls, ticks)


@pytest.mark.parametrize("mhz", [1000, 333])
def test_pit_reads_computed_by_the_hooks_are_the_models(tmp_path: Path, mhz: int) -> None:
    """The latches and reads the compiled hooks take give the bytes the Python PIT gives, at
    the clock rate the machine runs (the count is computed from the instruction count), and
    leave the PIT as Python leaves it."""
    elf = build(POLLS["pit-reads"], tmp_path, "pit-reads")
    r = both(lambda: Machine.from_elf(elf, cpu_mhz=mhz), answered=True)
    assert r[0] == "debug-exit", r
    values = np.frombuffer(r[7][0x30008 : 0x30000 + 8 * 3001], np.uint8).reshape(-1, 8)
    assert len({bytes(row[:2]) for row in values}) > 50  # the count moves between reads


def test_a_pit_channel_is_published_only_while_it_counts_freely(tmp_path: Path) -> None:
    """What the PIT hands the compiled hooks: a counting channel, not one whose gate holds
    it, a read-back status waiting, or one never programmed."""
    m = Machine.from_elf(build("", tmp_path, "empty"))
    pit = m.pit
    pit.write(3, 1, 0x34)
    pit.write(0, 1, 0x00)
    pit.write(0, 1, 0x10)
    reads = pit.counter_reads(0)
    assert reads is not None and (reads.period, reads.mode, reads.access) == (0x1000, 2, 3)
    pit.write(3, 1, 0x00)  # latched: published with the latch
    assert pit.counter_reads(0).latched == (pit.channels[0].latched[0], pit.channels[0].latched[1])
    pit.write(3, 1, 0xE2)  # a read-back status waits
    assert pit.counter_reads(0) is None
    pit.write(3, 1, 0xB4)  # channel 2, mode 2, gate low (port 0x61 bit 0 clear)
    pit.write(2, 1, 0x00)
    pit.write(2, 1, 0x01)
    pit.set_gate(2, False)
    assert pit.counter_reads(2) is None
    pit.set_gate(2, True)
    assert pit.counter_reads(2) is not None
