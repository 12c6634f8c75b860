"""External interrupts on virtual time: PIC + PIT + HLT, end to end (images/timer)."""

from __future__ import annotations

import pytest

from emu import Machine

pytestmark = pytest.mark.images


def test_timer_ticks_wake_hlt_and_are_deterministic(image, golden) -> None:
    runs = []
    for _ in range(2):
        m = Machine.from_elf(image("timer"))
        r = m.run(max_instructions=5_000_000)
        runs.append((r, m))
    (r, m), (r2, _) = runs
    assert r.stop_reason == "debug-exit" and r.exit_code == 0, r.describe()
    assert b"10 ticks in 9999" in r.serial  # about 100 ms of TSC at the nominal 1 GHz
    assert r.serial.count(b"RTC: 2024-01-01 00:00:00") == 2  # the CMOS clock, from --rtc-base
    # the CPU slept in HLT: virtual time passed without instructions
    assert r.instructions < 50_000 and r.virtual_time_ns > 100_000_000
    irqs = [e for e in r.trace.entries if e.kind == "external"]
    # 10 ticks counted, 200 more waiting for the keyboard, 100 more waiting for COM1
    assert len(irqs) == 310 and all(e.vector == 0x20 and e.delivered for e in irqs)
    assert (r.instructions, r.serial, r.virtual_time_ns) == (
        r2.instructions,
        r2.serial,
        r2.virtual_time_ns,
    )
    assert m.pics.master.vector_base == 0x20 and m.pics.master.imr == 0xEC  # IRQ 0, 1 and 4
    assert b'keyboard: "" (no line typed)' in r.serial
    golden("timer.serial", r.serial)


def test_deferred_and_streamed_trace_entries_are_the_same(image) -> None:
    """Compiled deliveries record their trace entries lazily; --trace builds them at once."""
    lazy = Machine.from_elf(image("timer"))
    lines: list[str] = []
    eager = Machine.from_elf(image("timer"), trace_sink=lines.append)
    r1, r2 = lazy.run(max_instructions=5_000_000), eager.run(max_instructions=5_000_000)
    assert lazy.core.fast_deliveries == eager.core.fast_deliveries == 310
    assert r1.trace.to_list() == r2.trace.to_list()
    assert len(r1.trace.entries) == 310
    first = r1.trace.entries[0]
    assert (first.index, first.kind, first.vector, first.delivered) == (0, "external", 0x20, True)
    assert (
        first.gate.startswith("IDT[32] @0x") and ": interrupt gate, selector 0x0008" in first.gate
    )
    assert lines[0] == first.line()


def test_the_trace_keeps_its_newest_entries_across_batches(image) -> None:
    """The clock hook's deliveries reach the trace in batches; its limit still keeps exactly
    the newest entries, numbered and counted as when they come one at a time (--trace)."""
    runs = []
    for sink in (None, [].append):
        m = Machine.from_elf(image("timer"), trace_sink=sink)
        m.trace.limit = 37
        r = m.run(max_instructions=5_000_000)
        runs.append((r.trace.to_list(), r.trace.dropped, len(r.trace), r.trace.next_index()))
    assert runs[0] == runs[1]
    entries, dropped, held, next_index = runs[0]
    assert held == len(entries) == 37 and dropped == 310 - 37 and next_index == 310
    assert [e["index"] for e in entries] == list(range(310 - 37, 310))


def test_deferred_entry_batches_trim_from_the_oldest() -> None:
    from emu.faults.trace import DeferredEntries, FaultTrace, TraceEntry

    def entry(i: int) -> TraceEntry:
        return TraceEntry(i, 10 * i, 0x20, "IRQ vector 0x20", "external", None, "", None,
                          0, "", 0, 0, "long64", "", "", True, "", "")  # fmt: skip

    trace = FaultTrace(limit=10)
    trace.add(entry(0))
    trace.add_batch(DeferredEntries(6, lambda i: entry(1 + i)))
    trace.add_deferred(lambda: entry(7))
    trace.add_batch(DeferredEntries(0, entry))  # nothing
    trace.add_batch(DeferredEntries(7, lambda i: entry(8 + i)))
    assert (len(trace), trace.dropped, trace.next_index()) == (10, 5, 15)
    assert [e.index for e in trace.entries] == list(range(5, 15))
    trace.add_batch(DeferredEntries(25, lambda i: entry(15 + i)))
    assert [e.index for e in trace.entries] == list(range(30, 40)) and trace.dropped == 30


def test_a_loaded_trace_counts_what_it_holds() -> None:
    """A checkpoint's trace, loaded back: it kept the count of the trace it replaced, so going
    back again and again (the debugger's reverse steps, replays) trimmed entries recorded
    after it as if the trace were full; and a batch it held was cut in place by later trims."""
    from emu.faults.trace import DeferredEntries, FaultTrace, TraceEntry

    def entry(i: int) -> TraceEntry:
        return TraceEntry(i, 10 * i, 0x20, "IRQ vector 0x20", "external", None, "", None,
                          0, "", 0, 0, "long64", "", "", True, "", "")  # fmt: skip

    trace = FaultTrace(limit=10)
    trace.add(entry(0))
    trace.add_batch(DeferredEntries(4, lambda i: entry(1 + i)))
    saved = trace.save()
    for _round in range(3):
        trace.add_batch(DeferredEntries(9, lambda i: entry(5 + i)))  # 4 of the batch go
        assert [e.index for e in trace.entries] == list(range(4, 14))
        trace.load(saved)
        assert len(trace) == 5 and trace.next_index() == 5
        assert [e.index for e in trace.entries] == list(range(5))
        trace.load(saved)
    trace.add(entry(5))
    assert [e.index for e in trace.entries] == list(range(6))


@pytest.mark.parametrize("keys", ["", "Hello PS2\n"])
def test_arming_changes_nothing_on_the_timer_image(image, keys: str) -> None:
    """images/timer with the clock hook delivering timer interrupts itself, and without."""
    runs = []
    for arm in (True, False):
        m = Machine.from_elf(image("timer"), keys=keys, keys_at=0.5)
        m.arm_timer = arm
        r = m.run(max_instructions=5_000_000)
        runs.append((r.stop_reason, r.instructions, r.serial, r.trace.to_list(), bytes(m.ram)))
    assert runs[0] == runs[1]


def test_keyboard_echo_through_irq1(image, golden) -> None:
    m = Machine.from_elf(image("timer"), keys="Hello PS2\n", keys_at=0.5)
    r = m.run(max_instructions=5_000_000)
    assert r.stop_reason == "debug-exit" and r.exit_code == 0, r.describe()
    assert b'keyboard: "Hello PS2"' in r.serial  # as under QEMU (qemu-ref --keys)
    from devices.i8042 import scancodes

    # one IRQ 1 per scancode byte (shifted letters add a shift press and release)
    assert sum(1 for e in r.trace.entries if e.vector == 0x21) == len(scancodes("Hello PS2\n"))
    golden("timer-keys.serial", r.serial)


def test_uart_receive_interrupt(image) -> None:
    m = Machine.from_elf(image("timer"), serial_input=b"hello over COM1\n")
    r = m.run(max_instructions=5_000_000)
    assert r.stop_reason == "debug-exit" and r.exit_code == 0, r.describe()
    assert b'serial: "hello over COM1"' in r.serial
    assert any(e.vector == 0x24 and e.kind == "external" for e in r.trace.entries)


def test_guest_reset_request_stops_or_reboots(image) -> None:
    m = Machine.from_elf(image("hello"))
    m.run(max_instructions=1000)
    m.keyboard.write(4, 1, 0xFE)  # what `outb(0x64, 0xFE)` does
    r = m.run(max_instructions=1000)
    assert r.stop_reason == "reset" and r.exit_status == 0


def test_hlt_with_interrupts_on_and_no_timer_is_halted(tmp_path) -> None:
    """The BIOS left the PIT running; a kernel that stops it (mode 0, no count written) and
    waits with IF=1 waits for nothing: the run ends as halted, not at a limit."""
    from mb2_kernel import build

    body = "movb $0x30, %al\noutb %al, $0x43\nsti\nhlt\n"
    m = Machine.from_elf(build(body, tmp_path))
    r = m.run(max_instructions=100_000)
    assert m.pit.next_event(m.now_ns()) is None
    assert r.stop_reason == "halted" and "nothing can wake it" in r.detail


def test_realtime_paces_halts_to_the_wall_clock(image) -> None:
    import time

    m = Machine.from_elf(image("timer"), realtime=True)
    t = time.perf_counter()
    r = m.run(max_instructions=5_000_000)
    wall = time.perf_counter() - t
    assert r.stop_reason == "debug-exit"
    assert wall >= r.virtual_time_ns / 1e9 * 0.95  # about 3.1 s: the kernel waits in HLT
    fast = Machine.from_elf(image("timer")).run(max_instructions=5_000_000)
    assert (fast.instructions, fast.serial) == (r.instructions, r.serial)  # same run
