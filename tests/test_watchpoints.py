"""Watchpoints: a run stops right after the instruction that touched a watched address."""

from __future__ import annotations

import pytest

from emu import Machine
from emu.errors import ConfigError

pytestmark = pytest.mark.images


def _same_state(a: Machine, b: Machine) -> None:
    assert a.instructions == b.instructions
    assert a.cpu_state() == b.cpu_state()
    assert bytes(a.ram) == bytes(b.ram)


def test_stops_right_after_the_writing_instruction(image) -> None:
    m = Machine.from_elf(image("hello"))
    m.add_watchpoint(0xB8000, 2, "w")  # the first character cell of the VGA screen
    r = m.run(max_instructions=10_000_000)
    assert r.stop_reason == "watchpoint" and "write of 2 byte(s) at 0xb8000" in r.detail
    address, size, value, what = m.watch_hit
    assert (address, size, what) == (0xB8000, 2, "w")
    assert int.from_bytes(m.read_physical(0xB8000, 2), "little") == value  # the write is done
    # exactly there: the same machine without a watchpoint, run to the same count
    ref = Machine.from_elf(image("hello"))
    ref.run(max_instructions=r.instructions)
    _same_state(m, ref)
    # and one instruction earlier the access had not happened yet
    before = Machine.from_elf(image("hello"))
    before.run(max_instructions=r.instructions - 1)
    before.add_watchpoint(0xB8000, 2, "w")
    assert before.step() is None and before.core.watch_hits


def test_continue_after_a_hit_and_from_a_breakpoint(image) -> None:
    m = Machine.from_elf(image("hello"))
    m.add_breakpoint("kmain")
    assert m.run(max_instructions=10_000_000).stop_reason == "breakpoint"
    m.add_watchpoint(0xB8000, 2, "w")
    first = m.run(max_instructions=10_000_000)
    assert first.stop_reason == "watchpoint"
    second = m.run(max_instructions=10_000_000)
    assert second.stop_reason == "watchpoint" and second.instructions > first.instructions
    m.remove_watchpoint(0xB8000, 2, "w")
    assert m.run(max_instructions=10_000_000).stop_reason == "debug-exit"


def test_the_suspected_global_write_never_happens(image) -> None:
    """BareFlow's question: does `free_list = initial_block` in malloc fault? Watch it from
    kernel_main on: nothing writes it before the triple fault (bss zeroing aside, before)."""
    m = Machine.from_elf(image("lost-in-32bit"))
    m.add_breakpoint("kernel_main")
    assert m.run(max_instructions=1_000_000).stop_reason == "breakpoint"
    m.add_watchpoint("free_list", 4, "rw")
    r = m.run(max_instructions=1_000_000)
    assert r.stop_reason == "triple-fault"


def test_bad_watchpoints_are_refused(image) -> None:
    m = Machine.from_elf(image("hello"))
    with pytest.raises(ConfigError, match="no symbol"):
        m.add_watchpoint("no_such_symbol")
    with pytest.raises(ConfigError, match="r, w or rw"):
        m.add_watchpoint(0x1000, 4, "x")
