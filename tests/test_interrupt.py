"""Machine.interrupt(): the host ends a run (Ctrl-C, another thread) at the CPU's next stop,
with the state intact and the run able to go on, wherever the request lands: inside a CPU hook
(COM1 output is written from the OUT hook), outside any run, or from another thread."""

from __future__ import annotations

import threading

from emu import Machine


def _hello(image, **options) -> Machine:
    return Machine.from_elf(image("hello"), **options)


def test_interrupt_from_inside_a_hook_stops_the_run_and_it_goes_on(image) -> None:
    whole = _hello(image).run()
    m: Machine

    def sink(data: bytes) -> None:
        if b"\n" in data and m.core.icount > 0 and not stopped:
            stopped.append(m.core.icount)
            m.interrupt("the test asked")

    stopped: list[int] = []
    m = _hello(image, serial_sink=sink)
    first = m.run()
    assert first.stop_reason == "interrupted" and first.detail == "the test asked"
    assert first.exit_status == 130
    assert 0 < first.instructions < whole.instructions
    rest = m.run()  # the request is spent: the run goes on to the end the guest chose
    assert rest.stop_reason == whole.stop_reason
    assert m.core.icount == whole.instructions
    assert rest.serial == whole.serial


def test_interrupt_before_a_run_ends_it_before_its_first_instruction(image) -> None:
    m = _hello(image)
    m.interrupt()
    r = m.run()
    assert r.stop_reason == "interrupted" and r.instructions == 0
    assert m.run().stop_reason == "debug-exit"


def test_interrupt_from_another_thread_ends_a_long_run(image) -> None:
    m = Machine.from_elf(image("faults-triple"), reboot=True)  # reboots forever
    timer = threading.Timer(0.5, m.interrupt, args=("from a thread",))
    timer.start()
    try:
        r = m.run(timeout=60)
    finally:
        timer.cancel()
    assert r.stop_reason == "interrupted" and r.detail == "from a thread"
    assert m.reboots > 0
