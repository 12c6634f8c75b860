"""Checkpoints: going back to an instant and running again gives the same run."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from mb2_kernel import build

from emu import Machine, mmu
from emu.checkpoint import save_device
from emu.mmu import layout as ML

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


# ---------------------------------------------------------------- dirty-page checkpoints
# A checkpoint keeps the pages written since the one before (emu/dirty_pages.py). Every path
# that writes memory must be seen, or restoring would leave its bytes behind: each test below
# makes one path write, and would fail if its writes were missed (not marked, or not copied
# before they overwrote a page an earlier checkpoint still needs).


def _memory(m: Machine) -> str:
    """A hash of every tracked byte: RAM and the other buffers (BIOS flash, framebuffer)."""
    h = hashlib.sha1(m.ram.tobytes())
    for _base, buffer, _first in m.pages.buffers:
        h.update(buffer.tobytes())
    return h.hexdigest()


def _assert_tracked(m: Machine, write, what: str) -> None:
    """``write()`` changes memory: checkpoints before and after it restore exactly. Every page
    first waits for a copy in the checkpoint before (it is marked), so a write that skipped the
    copy would corrupt that checkpoint, and one that skipped the mark would survive a restore."""
    m.pages.before_write(0, m.ram.size)
    for base, buffer, _first in m.pages.buffers:
        m.pages.before_write(base, buffer.size)
    before = m.checkpoint()
    expected_before = _memory(m)
    write()
    expected_after = _memory(m)
    assert expected_after != expected_before, f"{what}: nothing was written"
    after = m.checkpoint()
    m.restore(before)
    assert _memory(m) == expected_before, f"{what}: restoring the checkpoint before it"
    m.restore(after)
    assert _memory(m) == expected_after, f"{what}: restoring the checkpoint after it"
    m.restore(before)
    assert _memory(m) == expected_before, f"{what}: restoring the one before again"


def _kernel(tmp_path: Path, body: str, name: str = "kernel") -> Machine:
    return Machine.from_elf(build(body, tmp_path, name), memory="16M")


def test_guest_writes_with_paging_off_are_tracked(tmp_path) -> None:
    m = _kernel(tmp_path, "movl $0x11223344, 0x300000\n movl $5, 0x301ffc\n 2: jmp 2b\n")
    _assert_tracked(m, lambda: m.run(max_instructions=200), "stores with paging off")


def test_guest_writes_with_paging_on_and_the_walkers_ad_bits_are_tracked(image) -> None:
    m = Machine.from_elf(image("paging"), memory="16M")
    m.run(max_instructions=30_000)
    c = m.cpu_state()
    assert c.cr0 & 0x80000000
    # the walk for the code and the stack page: clear A and D, so that the fill sets them again
    for vaddr in (c.rip, c.gpr["rsp"]):
        w = mmu.walk(m.ram, c.cr3, vaddr, "r", cr0=c.cr0, cr4=c.cr4, efer=c.efer)
        for level in w.levels:
            raw = level.raw & ~0x60
            m.memory.write(level.entry_address, raw.to_bytes(8 if level.wide else 4, "little"))
    _assert_tracked(m, lambda: m.run(max_instructions=2_000), "a run with paging on")


def test_ad_bits_of_a_walk_from_python_are_tracked(image) -> None:
    """The IDT model's pushes walk with set_ad through the compiled translate entry."""
    m = Machine.from_elf(image("paging"), memory="16M")
    m.run(max_instructions=30_000)
    c = m.cpu_state()
    w = mmu.walk(m.ram, c.cr3, c.gpr["rsp"], "w", cr0=c.cr0, cr4=c.cr4, efer=c.efer)
    assert w.ok
    for level in w.levels:
        raw = level.raw & ~0x60
        m.memory.write(level.entry_address, raw.to_bytes(8 if level.wide else 4, "little"))

    def walk() -> None:
        out = mmu.translate_raw(m.ram, c.cr0, c.cr3, c.cr4, c.efer, c.gpr["rsp"], ML.ACC_WRITE,
                                False, False, True, track=m.pages.ctx)  # fmt: skip
        assert int(out[ML.OUT_STATUS]) == ML.ST_OK

    _assert_tracked(m, walk, "A/D bits of a walk")


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "python"])
def test_exception_delivery_frames_are_tracked(image, fast: bool) -> None:
    m = Machine.from_elf(image("faults"), memory="16M")
    m.core.fast_delivery = fast
    m.run(max_instructions=7_914)  # the #DE is at 7,915

    def deliver() -> None:
        while not m.trace.entries:
            assert m.step() is None
        assert m.trace.entries[0].name.startswith("#DE") and m.trace.entries[0].delivered

    _assert_tracked(m, deliver, "the #DE frame")


def test_timer_interrupts_delivered_by_the_clock_hook_are_tracked(image) -> None:
    m = Machine.from_elf(image("timer"), memory="16M")
    m.run(max_instructions=12_000)

    def run() -> None:
        m.run(max_instructions=200_000)
        assert m.trace.entries

    _assert_tracked(m, run, "timer interrupts")


REAL_MODE_STORES = """
    movw $0x1234, (0x5000)
    movw $0x5678, (0x5ffe)
    movw $(0x8000 + handler - tramp), (0x80 * 4)
    movw $0, (0x80 * 4 + 2)
    int $0x80
"""


def test_real_mode_writes_and_ivt_frames_are_tracked(tmp_path) -> None:
    from test_real_mode import TO_REAL_MODE

    source = TO_REAL_MODE.replace("{call}", REAL_MODE_STORES).replace("{limit}", "0x3ff")
    m = Machine.from_elf(build(source, tmp_path), memory="16M")
    while m.cpu_state().mode != "real":
        assert m.step() is None

    def run() -> None:
        assert m.run(max_instructions=100).stop_reason == "halted"
        assert m.cpu_state().mode == "real" and m.trace.entries[-1].delivered

    _assert_tracked(m, run, "real-mode stores and INT")


def test_bios_services_writes_are_tracked(image) -> None:
    from emu.faults.bios_call import BiosBusView

    m = Machine.from_elf(image("bios"), memory="16M")
    bus = BiosBusView(m.core)
    _assert_tracked(m, lambda: bus.write(0x7000, b"\x5a" * 300), "a BIOS service's write")
    _assert_tracked(m, lambda: m.run(max_instructions=2_000_000), "images/bios")


def test_the_loader_and_the_firmware_writes_are_tracked(image) -> None:
    m = Machine.from_elf(image("hello"), memory="16M")
    m.run(max_instructions=50_000)  # the kernel changed its data and the screen
    _assert_tracked(m, m._reset_like_a_pc, "a reboot: firmware and loader again")


def test_debugger_and_gdb_writes_are_tracked(image) -> None:
    from emu.gdbstub import GdbStub

    m = Machine.from_elf(image("hello"), memory="16M")
    for address in (0x200000, 0xB8000, 0xF0000, 0xFFFF0000):  # RAM, VGA text, ROM, BIOS flash
        _assert_tracked(m, lambda a=address: m.write_linear(a, b"\xde\xad"), f"0x{address:x}")
    stub = GdbStub(m)
    _assert_tracked(m, lambda: stub.handle(b"M201000,4:cafef00d"), "gdb's M packet")


def test_framebuffer_writes_are_tracked(image) -> None:
    m = Machine.from_elf(image("fb"))
    assert m.framebuffer is not None
    _assert_tracked(m, lambda: m.run(max_instructions=3_000_000), "drawing")
    m.run(max_instructions=3_000_000)  # (the checks end where they began)
    _assert_tracked(m, m._reset_like_a_pc, "a mode set clearing it")


def test_rom_writes_go_to_the_sink_page_and_mark_nothing(tmp_path) -> None:
    m = _kernel(tmp_path, "movl $0x12345678, 0xf0000\n movl $1, 0x300000\n 2: jmp 2b\n")
    m.checkpoint()
    rom = m.read_physical(0xF0000, 4)
    m.run(max_instructions=200)
    assert m.read_physical(0xF0000, 4) == rom
    assert 0xF0 not in m.pages.marked() and 0x300 in m.pages.marked()


SELF_MODIFYING = """
    xorl %ecx, %ecx
again:
patch:
    movl $1, %ebx
    movl %ebx, 0x300000(,%ecx,4)
    movb $2, (patch + 1)
    incl %ecx
    cmpl $2, %ecx
    jb again
2:  jmp 2b
"""


def test_a_restore_drops_code_translated_from_bytes_it_changes(tmp_path) -> None:
    """The guest patches its own code; after going back, the original bytes run again."""
    m = _kernel(tmp_path, SELF_MODIFYING)
    start = m.checkpoint()
    m.run(max_instructions=300)
    assert m.read_physical(0x300000, 8) == (1).to_bytes(4, "little") + (2).to_bytes(4, "little")
    m.restore(start)
    assert m.read_physical(0x300000, 8) == bytes(8)
    m.run(max_instructions=300)
    assert m.read_physical(0x300000, 8) == (1).to_bytes(4, "little") + (2).to_bytes(4, "little")


PAGE_WRITER = """
    movl $0x400000, %edi
    movl ${pages}, %ecx
1:  movl %ecx, (%edi)
    addl $0x1000, %edi
    decl %ecx
    jnz 1b
2:  jmp 2b
"""


@pytest.mark.parametrize("pages", [1, 10, 100, 1000])
def test_a_checkpoint_holds_the_pages_written_since_the_one_before(tmp_path, pages: int) -> None:
    m = _kernel(tmp_path, PAGE_WRITER.replace("{pages}", str(pages)), f"writer{pages}")
    boot = m.checkpoint()  # what the firmware and the loader wrote
    boot_pages = boot.memory.pages
    assert boot_pages > 0
    nothing = m.checkpoint()
    assert nothing.memory.pages == 0 and nothing.memory.nbytes == 0
    m.run(max_instructions=20 + 4 * pages + 100)
    cp = m.checkpoint()
    assert cp.memory.pages == pages and cp.memory.nbytes == pages * 4096
    assert cp.memory.copied_bytes == 0  # copied when written again, not before
    m.pages.before_write(0x400000, 4096)  # one of them written again
    assert cp.memory.copied_bytes == 4096
    del boot, nothing  # released: what they held goes to the next checkpoint, cp
    assert m.checkpoint().memory.pages == 1
    assert cp.memory.pages == pages + boot_pages


def _state(m: Machine) -> tuple:
    s = m.cpu_state()
    trace = tuple((e.instructions, e.vector, e.kind, e.rip, e.delivered) for e in m.trace.entries)
    devices = {name: save_device(d) for name, d in m._stateful_devices().items()}
    return (m.instructions, s.rip, tuple(sorted(s.gpr.items())), s.rflags & ~0x10000, s.cr3,
            _memory(m), m.serial, trace, m.idle_ns, repr(devices))  # fmt: skip


@pytest.mark.parametrize("name", ["timer", "paging", "faults"])
def test_many_checkpoints_restore_exactly_in_any_order(image, name: str) -> None:
    """Checkpoints along a run and along branches started by restores, some dropped (their
    pages folded into the next), restored in a random order: each gives exactly its state."""
    rng = random.Random(name)
    m = Machine.from_elf(image(name), memory="16M")
    kept: list[tuple[object, tuple]] = []
    for _round in range(3):
        for _ in range(6):
            r = m.run(max_instructions=rng.randrange(1, 4_000))
            cp = m.checkpoint()
            if rng.random() < 0.6:
                kept.append((cp, _state(m)))
            del cp  # the others are folded into the next checkpoint
            if r.stop_reason != "instruction-limit":
                break
        cp, _ = rng.choice(kept)  # a branch from an older checkpoint
        m.restore(cp)
    for cp, state in rng.sample(kept, len(kept)):
        m.restore(cp)
        assert _state(m) == state
    # what the kept checkpoints hold is bounded by what they need
    nodes, seen = 0, set()
    for cp, _ in kept:
        node = cp.memory._node
        while node is not None and id(node) not in seen:
            seen.add(id(node))
            nodes += 1
            node = node.parent
    assert nodes <= len(kept) + 1


def test_a_restore_leaves_no_8259_input_wire_high(image) -> None:
    """The wire from an ISA line to the 8259 belongs to no device: a restore to before the line
    rose left it high, and the line's next rising edge never reached the IRR."""
    m = Machine.from_elf(image("hello"))
    m.run(max_instructions=1000)
    line = m.isa_irq(3)
    cp = m.checkpoint()
    line.raise_()
    assert m.pics.master.irr & 0x08
    m.restore(cp)
    assert not line.level and not m.pics.master.irr & 0x08
    line.raise_()
    assert m.pics.master.irr & 0x08
    assert m.ioapic.pin(3).level
