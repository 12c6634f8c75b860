"""Fixed-point fast-forward (emu/clock/fastforward.py) changes nothing but the speed: every image
and a set of polling guests give the same instruction counts, serial and console bytes, fault
traces, RAM and device state with it on and off; the loops it must not skip (a PIT counter, the
TSC, memory that changes) are not skipped, and those it may are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import test_delivery_oracle as T
from mb2_kernel import build
from test_io_fast_path import COUNTER, POLLS, timer_machine
from timer_guest import boot, install_handler, pic_and_pit

from emu import Machine
from emu.checkpoint import save_device
from emu.cli import main


def outcome(m: Machine, max_instructions: int) -> tuple:
    """Everything a run leaves: its result, RAM, every device's state. The devices are first
    brought up to the end's instant (``tick``): they catch up with time lazily, when read or
    ticked, and the plain run ticks them at other instants than a run with skips (every read
    catches up first, so the guest cannot tell)."""
    r = m.run(max_instructions=max_instructions)
    m.scheduler.tick(m.now_ns())
    m.ports.sync()  # the unmapped reads the port read table answered, counted
    devices = {}
    for name, device in m._stateful_devices().items():
        state = save_device(device)
        for bookkeeping in ("events_changed", *getattr(device, "CATCH_UP_FIELDS", ())):
            state.values.pop(bookkeeping, None)
        devices[name] = (state.values, state.lines)
    trace = r.trace.to_list() if r.trace is not None else None
    return (
        r.stop_reason, r.exit_code, r.instructions, r.virtual_time_ns, r.serial, r.console,
        trace, bytes(m.ram), devices, m.core.fast_deliveries, m.bus.unmapped_reads,
        m.bus.unmapped_writes, m.cpu_state(),
    )  # fmt: skip


def both(make, max_instructions: int) -> tuple[tuple, dict]:
    """The outcome with fast-forward on and off (they must be equal), and what it skipped."""
    results, stats = [], None
    for ff in (True, False):
        m = make()
        m.fast_forward = ff
        results.append(outcome(m, max_instructions))
        if ff:
            stats = m._fast_forward.stats.to_dict()
    on, off = results
    for i, (a, b) in enumerate(zip(on, off, strict=True)):
        assert a == b, f"outcome field {i} differs with fast-forward on and off"
    return on, stats


# images: (name, cpu MHz, keys, instructions). The poll kernels run at a low clock rate, so that
# the run without fast-forward takes seconds: 5 s of guest time are 5 million instructions.
IMAGES = [
    ("hello", 1000, "", 50_000_000),
    ("timer", 1000, "", 5_000_000),
    ("timer", 1000, "Hello PS2\n", 5_000_000),
    ("probe-devices", 1000, "", 20_000_000),
    ("apic", 1000, "", 50_000_000),
    ("paging", 1000, "", 50_000_000),
    ("faults", 1000, "", 50_000_000),
    ("poll-cmos", 1, "", 50_000_000),
    ("poll-spin", 1, "", 50_000_000),
    ("poll-serial", 1000, "", 50_000_000),
]


@pytest.mark.images
@pytest.mark.parametrize(("name", "mhz", "keys", "budget"), IMAGES)
def test_images_fast_forward_on_and_off(image, name: str, mhz: int, keys: str, budget: int) -> None:
    make = lambda: Machine.from_elf(  # noqa: E731
        image(name), cpu_mhz=mhz, keys=keys, keys_at=0.05, serial_input=b"ab\n"
    )
    r, stats = both(make, budget)
    if name.startswith("poll-"):
        assert r[0] == "debug-exit" and r[1] == 0, r[:2]
    if name in ("poll-cmos", "poll-spin"):
        # most of the run was skipped: the polling loops are fixed points
        assert stats["instructions"] > r[2] // 3, stats


@pytest.mark.images
@pytest.mark.parametrize("name", ["poll-cmos", "poll-spin"])
def test_poll_kernels_print_what_qemu_printed(image, golden, name: str) -> None:
    """At the nominal rate, with fast-forward: the recorded output of QEMU + GRUB
    (tests/golden/qemu/; test_qemu_differential.py compares with a live QEMU). poll-serial is
    compared with QEMU live only (its 256 KiB are not recorded) and here with what it prints."""
    r = Machine.from_elf(image(name)).run(timeout=120)
    assert r.stop_reason == "debug-exit" and r.exit_code == 0, r.describe()
    golden(f"qemu/{name}.serial", r.serial)


@pytest.mark.images
def test_poll_serial_prints_its_256_kib(image) -> None:
    r = Machine.from_elf(image("poll-serial")).run(timeout=120)
    assert r.stop_reason == "debug-exit" and r.exit_code == 0, r.describe()
    lines = r.serial.split(b"\n")
    body = b"\n".join(lines[1:4097]) + b"\n"
    assert len(body) == 256 * 1024
    for n in (0, 1, 4095):
        text = f"{n:05d} " + "".join(chr(ord("a") + (n + i) % 26) for i in range(6, 63))
        assert lines[n + 1] == text.encode()
    assert r.serial.endswith(b"All tests passed\r\n")


@pytest.mark.images
def test_poll_kernels_at_the_nominal_rate_skip_nearly_everything(image) -> None:
    """At 1000 MHz poll-cmos executes 6 billion instructions: only fast-forward makes that a
    second of wall time. Its output does not depend on it."""
    m = Machine.from_elf(image("poll-cmos"))
    r = m.run(timeout=120)
    assert r.stop_reason == "debug-exit" and r.exit_code == 0, r.describe()
    assert r.serial.count(b": +1\r\n") == 5 and r.instructions > 5_000_000_000
    assert r.fast_forward["instructions"] > 0.99 * r.instructions
    assert "fast-forward:" in r.describe() and r.to_dict()["fast_forward"] == r.fast_forward


# 32-bit guests (GRUB's state, IF=0) that poll for ever: with fast-forward the run reaches the
# instruction limit through skips, and must end exactly as the plain run does.
FOREVER = {
    # an absent disk controller: the status port of the primary IDE channel reads all-ones
    "absent-ide": ("1: movw $0x1f7, %dx; inb %dx, %al; testb $0x80, %al; jnz 1b", True),
    # UART LSR waiting for a received byte that never comes
    "lsr-no-input": ("1: movw $0x3fd, %dx; inb %dx, %al; testb $0x01, %al; jz 1b", True),
    # i8042 status waiting for output, nothing typed
    "i8042-idle": ("1: inb $0x64, %al; testb $0x01, %al; jz 1b", True),
    # an iteration longer than 64 instructions (observed in straight stretches: found and
    # skipped; one instruction per observed slice missed it)
    "long-iteration": ("1: inb $0x64, %al; .rept 100; nop; .endr; testb $0x01, %al; jz 1b", True),
    # a poll through a call: the stretches end at the call, the jump and the return
    "poll-in-a-call": ("1: call 2f; testb $0x01, %al; jz 1b; 2: inb $0x64, %al; ret", True),
    # the same value written again and again: memory does not change
    "store-same": ("1: movl $5, 0x2000; pause; jmp 1b", True),
    # must not be skipped: memory changes every iteration
    "increment": ("1: incl 0x2000; jmp 1b", False),
    # must not be skipped: the TSC (even when the loop drops what it read)
    "rdtsc": ("1: rdtsc; xorl %eax, %eax; xorl %edx, %edx; jmp 1b", False),
    # must not be skipped: the PIT's counter, latched and read
    "pit-counter": (
        "1: movb $0x00, %al; outb %al, $0x43; inb $0x40, %al; inb $0x40, %al; jmp 1b",
        False,
    ),
    # must not be skipped: a counter in a register
    "register-counter": ("1: incl %ecx; jmp 1b", False),
}


@pytest.mark.parametrize("name", sorted(FOREVER))
def test_endless_polls_skipped_or_not(tmp_path: Path, name: str) -> None:
    body, skippable = FOREVER[name]
    elf = build(body, tmp_path, name)
    # a loop is first looked for where a slice ends: after 2 million instructions, or after 256
    # port accesses through Python (the port read table answers the undecoded port, the UART and
    # the i8042 without it). The loops never skipped run a shorter while.
    budget = 3_000_000 if skippable else 300_000
    r, stats = both(lambda: Machine.from_elf(elf), budget)
    assert r[0] == "instruction-limit" and r[2] == budget
    if skippable:
        assert stats["instructions"] > 500_000, stats
    else:
        assert stats == {"loops": 0, "iterations": 0, "instructions": 0}


@pytest.mark.parametrize("name", ["lsr-no-input", "i8042-idle", "long-iteration"])
def test_port_accesses_through_python_end_a_slice(tmp_path: Path, name: str) -> None:
    """With the port read table off every poll reaches Python: the compiled IN hook counts
    them, and after 256 the slice ends, where fast-forward finds the loop long before the 2
    million instructions a slice runs otherwise."""
    elf = build(FOREVER[name][0], tmp_path, name)
    budget = 1_000_000
    r, stats = both(lambda: Machine.from_elf(elf, port_table=False), budget)
    assert r[0] == "instruction-limit" and r[2] == budget
    assert stats["loops"] >= 1 and stats["instructions"] > budget // 2, stats


@pytest.mark.parametrize("name", sorted(POLLS))
def test_polling_guests_fast_forward_on_and_off(tmp_path: Path, name: str) -> None:
    elf = build(POLLS[name], tmp_path, name)
    r, _ = both(lambda: Machine.from_elf(elf), 50_000_000)
    assert r[0] == "debug-exit", r[:2]


def test_keyboard_poll_skips_to_each_key(tmp_path: Path) -> None:
    """The i8042 status polled until each typed key comes (a key every 10 ms): the waits are
    skipped, the keys arrive at the same instructions."""
    body = """
        movl $4, %esi
    3:  inb $0x64, %al; testb $0x01, %al; jz 3b
        inb $0x60, %al; movw $0x3f8, %dx; outb %al, %dx
        decl %esi; jnz 3b
    """
    elf = build(body, tmp_path, "keys")
    # 10 million instructions between keys: the port read table answers the status polls, and
    # the loop is looked for at the end of the first slice of each wait
    make = lambda: Machine.from_elf(elf, keys="ab", keys_at=0.001)  # noqa: E731
    r, stats = both(make, 50_000_000)
    assert r[0] == "debug-exit" and len(r[4]) == 4  # make and break codes of two keys
    # the wait for the second key (the first comes within the first slice; each break code
    # follows its make code at once)
    assert stats["loops"] >= 1 and stats["instructions"] > 5_000_000, stats


@pytest.mark.parametrize(
    "body",
    [
        "jmp 1f\n1:",  # a jmp-self-like spin between ticks
        "pause",
        "inb $0x80, %al",
        "movb $0x0a, %al; outb %al, $0x70; inb $0x71, %al",
        "movb $0x00, %al; outb %al, $0x43; inb $0x40, %al; inb $0x40, %al",  # not skipped
    ],
)
def test_armed_timer_loops_fast_forward_on_and_off(body: str) -> None:
    """Long mode, IF=1, the PIT interrupting while the loop runs (the clock hook armed)."""
    r, _ = both(lambda: timer_machine(body), 20_000_000)
    ticks = int(np.frombuffer(r[7][COUNTER : COUNTER + 8], np.uint64)[0])
    assert r[0] == "halted" and ticks > 3


def test_spin_with_if1_skips_to_every_tick() -> None:
    """`1: jmp 1b` with IF=1 and a 1 kHz PIT: every wait between two ticks is skipped, and the
    ticks come at the same instructions."""
    T.TRIGGERS["ff_spin"] = (
        pic_and_pit(0x04A9)
        + """
        sti
    1:  jmp 1b
    """
    )

    def make() -> Machine:
        ram = T.image({"mode": "long", "trigger": "ff_spin"})
        install_handler(ram, f"incq {COUNTER}\n pushq %rax\n movb $0x20, %al\n"
                             " outb %al, $0x20\n popq %rax\n iretq\n")  # fmt: skip
        return boot(ram)

    r, stats = both(make, 30_000_000)
    ticks = int(np.frombuffer(r[7][COUNTER : COUNTER + 8], np.uint64)[0])
    assert r[0] == "instruction-limit" and ticks == 30  # 30 ms at 1 kHz
    assert stats["loops"] >= 25 and stats["instructions"] > 25_000_000


def test_no_skip_while_breakpoints_or_watchpoints_are_set(tmp_path: Path) -> None:
    """A skip could pass over a breakpoint or a watched access: with any set, no loop is
    skipped (and without them this one is)."""
    elf = build("1: inb $0x80, %al; jmp 1b", tmp_path, "bp")
    for watch in (False, True):
        m = Machine.from_elf(elf)
        if watch:
            m.add_watchpoint(0x7000, 4, "w")
        else:
            m.add_breakpoint(0x200000)
        r = m.run(max_instructions=3_000_000)  # past the first slice end, where loops are found
        assert r.stop_reason == "instruction-limit" and r.fast_forward["loops"] == 0
    r = Machine.from_elf(elf).run(max_instructions=3_000_000)
    assert r.fast_forward["loops"] > 0


def test_cli_no_fast_forward(capsys, tmp_path: Path) -> None:
    elf = build("1: inb $0x80, %al; jmp 1b", tmp_path, "cli")
    for flag, skipped in (([], True), (["--no-fast-forward"], False)):
        code = main(["run", str(elf), "--max-instructions", "3000000", "--json", *flag])
        out = json.loads(capsys.readouterr().out)
        assert code == out["exit_status"] and out["instructions"] == 3_000_000
        assert (out["fast_forward"]["instructions"] > 0) == skipped


@pytest.mark.parametrize("fast_forward", [True, False])
def test_slices_grow_where_a_loop_computes(tmp_path: Path, fast_forward: bool) -> None:
    """A loop that is no fixed point (it counts in a register) runs in slices of up to 16
    million instructions once fast-forward has given up on it (a slice end costs about 0.1
    ms), in such slices from the start with fast-forward off; the count is the same."""
    elf = build(FOREVER["register-counter"][0], tmp_path, "counter")
    m = Machine.from_elf(elf)
    m.fast_forward = fast_forward
    slices = 0
    run_slice = m.core.run_slice

    def counted(*args, **kwargs):
        nonlocal slices
        slices += 1
        return run_slice(*args, **kwargs)

    m.core.run_slice = counted
    r = m.run(max_instructions=100_000_000)
    assert r.stop_reason == "instruction-limit" and r.instructions == 100_000_000
    # 2 million instructions a slice would be at least 50 (and the looks' own slices)
    assert slices < (30 if fast_forward else 10), slices
