"""Checkpoints: going back to an instant and running again gives the same run."""

from __future__ import annotations

import pytest

from emu import Machine

pytestmark = pytest.mark.images


@pytest.mark.parametrize("name,split", [("hello", 20_000), ("timer", 12_000), ("paging", 30_000)])
def test_restore_replays_the_same_run(image, name: str, split: int) -> None:
    m = Machine.from_elf(image(name))
    first = m.run(max_instructions=split)
    assert first.stop_reason == "instruction-limit"
    cp = m.checkpoint()
    state = m.cpu_state()
    a = m.run(max_instructions=10_000_000)
    m.restore(cp)
    assert m.instructions == split and m.cpu_state() == state
    b = m.run(max_instructions=10_000_000)
    assert (a.stop_reason, a.instructions, a.serial, a.virtual_time_ns) == (
        b.stop_reason,
        b.instructions,
        b.serial,
        b.virtual_time_ns,
    )
    assert len(a.trace.entries) == len(b.trace.entries)
    ref = Machine.from_elf(image(name)).run(max_instructions=10_000_000)
    assert ref.serial == a.serial and ref.instructions == a.instructions


def test_restore_undoes_memory_and_devices(image) -> None:
    m = Machine.from_elf(image("timer"))
    m.run(max_instructions=5_000)
    cp = m.checkpoint()
    before = m.read_physical(0x100000, 4096)
    m.run(max_instructions=10_000_000)
    assert m.pit.channels[0].start_ns is not None
    m.restore(cp)
    assert m.read_physical(0x100000, 4096) == before
    assert m.pics.master.vector_base == cp.devices["pic1"].values["vector_base"]
