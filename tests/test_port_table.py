"""The port read table (emu/port_cache.py): what the devices promise through ``stable_read``,
how the table keeps it and drops it, and the compiled hooks answering from it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import test_delivery_oracle as T
from mb2_kernel import build
from stable_reads import PromiseChecker
from test_io_fast_path import both
from timer_guest import boot, install_handler, pic_and_pit

from devices.cmos_rtc import NS, UIP_NS, CmosRtc
from devices.irq import IrqLine
from devices.uart16550 import LSR, THR, Uart16550
from emu import Machine
from emu.bus import PortBus
from emu.port_cache import NO_END, PortCache


class Rtc:
    def __init__(self) -> None:
        self.t = 0
        self.rtc = CmosRtc(IrqLine("IRQ8"), lambda: self.t, dt.datetime(2024, 1, 1))


def test_rtc_status_a_holds_until_the_update_in_progress_bit_changes() -> None:
    c = Rtc()
    c.rtc.write(0, 1, 0x0A)
    c.t = 5 * NS + 1000
    value, until = c.rtc.stable_read(1)
    assert value == 0x26 and until == 6 * NS - UIP_NS
    c.t = until - 1
    assert c.rtc.read(1, 1) == 0x26
    c.t = until
    assert c.rtc.read(1, 1) == 0xA6
    assert c.rtc.stable_read(1) == (0xA6, 6 * NS)
    c.rtc.write(0, 1, 0x00)  # seconds: until the next second
    assert c.rtc.stable_read(1) == (0x05, 6 * NS)
    c.rtc.write(0, 1, 0x0C)
    assert c.rtc.stable_read(1) is None  # register C: read-clears, set by time
    assert c.rtc.stable_write(0) == 0x0C and c.rtc.stable_write(1) is None


def test_uart_promises_nothing_while_host_bytes_wait() -> None:
    uart = Uart16550(IrqLine("IRQ4"))
    assert uart.stable_read(LSR) == (0x60, None)
    uart.enqueue_input(b"x")  # the receive interrupt is off: the byte waits on the line
    assert uart.stable_read(LSR) is None
    assert uart.read(LSR, 1) & 1  # the read let it in
    assert uart.stable_read(LSR) == (0x61, None)


def test_the_checker_catches_a_broken_promise(monkeypatch) -> None:
    """The oracle of the device tests fails when a device promises what its read does not do."""
    checker = PromiseChecker()
    checker.install(monkeypatch, Uart16550)
    uart = Uart16550(IrqLine("IRQ4"))
    uart.read(LSR, 1)
    uart.read(LSR, 1)
    assert checker.kept == 1
    monkeypatch.setattr(Uart16550, "stable_read", lambda self, offset: (0x00, None))
    uart.read(LSR, 1)
    with pytest.raises(AssertionError, match="promised"):
        uart.read(LSR, 1)


def test_table_publishes_drops_by_owner_and_counts_unmapped_reads() -> None:
    bus = PortBus()
    cache = PortCache(bus, lambda ns: ns)
    uart = Uart16550(IrqLine("IRQ4"))
    bus.map(0x3F8, 8, uart, "COM1")
    assert cache.read(0x3FD, 1) == 0x60 and cache.read(0x80, 1) == 0xFF
    assert cache.published() == {0x3FD: (0x60, NO_END), 0x80: (0xFF, NO_END)}
    cache.write(0x3F8 + THR, 1, 0x41)  # an access to the UART drops what it published
    assert cache.published() == {0x80: (0xFF, NO_END)}
    cache.counts[:3] = (5, 3, 0)  # as the compiled hook counts what it answered
    cache.sync()
    assert cache.published() == {} and bus.unmapped_reads == 1 + 3 and cache.reads_answered == 5
    bus.map(0x3F0, 8, uart, "another")  # a new range drops everything
    cache.read(0x80, 1)
    bus.map(0x80, 1, uart, "port 0x80")
    assert cache.published() == {}
    cache.enabled = False
    cache.read(0x81, 1)
    assert cache.published() == {}


POLL = """
    movl $50000, %ecx
3:  movw $0x3fd, %dx; inb %dx, %al; inb $0x80, %al; inb $0x64, %al
    movb $0x0a, %al; outb %al, $0x70; inb $0x71, %al
    decl %ecx; jnz 3b
"""


def test_compiled_hooks_answer_a_poll(tmp_path: Path) -> None:
    elf = build(POLL, tmp_path, "poll")
    runs = {}
    for table in (True, False):
        m = Machine.from_elf(elf, port_table=table)
        r = m.run(max_instructions=10_000_000)
        runs[table] = (r.stop_reason, r.instructions, r.virtual_time_ns, m.bus.unmapped_reads)
        answered = (m.ports.reads_answered, m.ports.writes_dropped)
        if table:
            # all but the first of each read, and all but the first index write
            assert answered[0] >= 4 * 50000 - 10 and answered[1] >= 50000 - 5
        else:
            assert answered == (0, 0)
    assert runs[True] == runs[False] and runs[True][0] == "debug-exit"


UIP_COUNT = 0x30010


def uip_machine(spin: int, polls: int) -> Machine:
    """Long mode: 18 PIT periods of 54.9 ms slept in HLT (idle time skipped), a spin of
    ``spin`` iterations, then ``polls`` reads of CMOS status A counting those with the
    update-in-progress bit set (at UIP_COUNT)."""
    T.TRIGGERS["uip"] = (
        pic_and_pit(0)
        + f"""
        sti
        movl $18, %ecx
    1:  hlt
        decl %ecx
        jnz 1b
        cli
        movl ${spin}, %ecx
    2:  decl %ecx
        jnz 2b
        movl ${polls}, %ecx
    3:  movb $0x0a, %al; outb %al, $0x70; inb $0x71, %al
        testb $0x80, %al; jz 4f
        incq {UIP_COUNT}
    4:  decl %ecx
        jnz 3b
        """
    )
    ram = T.image({"mode": "long", "trigger": "uip"})
    install_handler(ram, "pushq %rax\n movb $0x20, %al\n outb %al, $0x20\n popq %rax\n iretq\n")
    return boot(ram)


def test_cmos_polled_across_the_update_cycle() -> None:
    """Status A polled from 999.70 ms to 1000.15 ms of virtual time (after HLTs skipped idle
    time): its update-in-progress bit rises at 999.756 ms and falls at the second, and the
    table's entries end exactly there: the same 244 us of reads see it in every configuration."""
    r = both(lambda: uip_machine(5_520_000, 60_000), answered=True)
    uip = int(np.frombuffer(r[7][UIP_COUNT : UIP_COUNT + 8], np.uint64)[0])
    assert r[0] == "halted" and 999_700_000 < r[3] - 60_000 * 7 < 999_756_000 < r[3]
    assert 30_000 < uip < 31_000  # the whole window, and only the window
