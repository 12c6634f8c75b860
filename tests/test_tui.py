"""The debugger, driven as a person would (Textual's Pilot pressing keys), and its session
logic on its own."""

from __future__ import annotations

import asyncio

import pytest
from rich.console import Console

from emu import Machine
from emu.cli import main
from tui.app import DebuggerApp
from tui.session import DebugSession

pytestmark = pytest.mark.images


def _plain(renderable) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def _drive(kernel, *keys: str, size=(170, 50)) -> DebuggerApp:
    app = DebuggerApp(Machine.from_elf(kernel))

    async def go() -> None:
        async with app.run_test(size=size) as pilot:
            for key in keys:
                await pilot.press(key)
            await pilot.pause()

    asyncio.run(go())
    return app


def test_step_and_reverse_step(image) -> None:
    app = _drive(image("hello"), "s", "s", "s", "s", "s", "u")
    m = app.session.machine
    assert m.instructions == 4
    ref = Machine.from_elf(image("hello"))
    for _ in range(4):
        ref.step()
    assert m.cpu_state() == ref.cpu_state()
    regs = _plain(app.rendered["regs"])
    assert f"RIP {ref.cpu_state().rip:#x}" in regs and "instructions 4" in regs
    assert "▶" in _plain(app.rendered["code"])


def test_walk_through_a_triple_fault(image) -> None:
    """Stop on the first exception before delivery, then let each delivery fail into the next."""
    app = _drive(image("lost-in-32bit"), "e", "c")
    m, s = app.session.machine, app.session
    assert m.pending_exception is not None and m.pending_exception.vector == 6
    trace = _plain(app.rendered["trace"])
    assert "pending, not delivered yet: #UD" in trace and "0x1003e8" in trace
    assert "exception pending" in app.sub_title

    app = _drive(image("lost-in-32bit"), "e", "c", "c")
    s = app.session
    assert s.ended and s.last.stop_reason == "triple-fault"
    trace = _plain(app.rendered["trace"])
    for text in ("#UD (invalid opcode)", "#GP (general protection) err=0x32", "#DF", "triple fault",
                 "diagnosis (mode-mismatch)"):  # fmt: skip
        assert text in trace, text
    # and back: one reverse step is the instruction before the fault, alive again
    app = _drive(image("lost-in-32bit"), "e", "c", "c", "u")
    assert not app.session.ended and app.session.machine.instructions == 279_569


def test_breakpoint_from_the_command_line(image) -> None:
    app = _drive(image("hello"), ":", *"break kmain", "enter", "c")
    m = app.session.machine
    kmain = m.symbolizer.address_of("kmain")
    assert app.session.last.stop_reason == "breakpoint"
    assert m.cpu_state().rip == kmain
    code = _plain(app.rendered["code"])
    assert f"●▶ {kmain:#x}" in code and "<kmain>:" in code


def test_page_tables_and_screen(image) -> None:
    app = _drive(image("paging"), ":", *"break paging_ready", "enter", "c", "p", "v")
    pages = _plain(app.rendered["pages"])
    assert "4-level paging, CR3=0x107000" in pages and "1G" in pages
    assert "screen" in app.rendered


def test_goto_goes_both_ways(image) -> None:
    s = DebugSession(Machine.from_elf(image("hello")))
    s.goto(5_000)
    state = s.machine.cpu_state()
    s.goto(9_000)
    assert s.machine.instructions == 9_000
    s.goto(5_000)
    assert s.machine.instructions == 5_000 and s.machine.cpu_state() == state
    s.toggle_breakpoint("no_such_symbol")
    assert "no symbol 'no_such_symbol'" in s.message


def test_cli_debug_rejects_a_bad_breakpoint(image, capsys) -> None:
    assert main(["debug", str(image("hello")), "--break", "no_such_symbol"]) == 2
    assert "no symbol 'no_such_symbol'" in capsys.readouterr().err


def test_memory_dump_and_page_walk_commands(image) -> None:
    app = _drive(
        image("paging"), ":", *"break paging_ready", "enter", "c",
        ":", *"walk 0xffffffff80500000", "enter",
    )  # fmt: skip
    walk = _plain(app.rendered["info"])
    assert "4-level paging: read of 0xffffffff80500000" in walk and "[511]" in walk
    assert "-> physical 0x500000 (2M page" in walk
    app = _drive(image("hello"), ":", *"x 0x100000 32", "enter")
    dump = _plain(app.rendered["info"])
    assert "32 bytes at linear 0x100000" in dump
    assert "0000000000100000  " in dump and "0000000000100010  " in dump


def test_watch_command(image) -> None:
    app = _drive(image("hello"), ":", *"watch 0xb8000 2", "enter", "c")
    s = app.session
    assert s.last.stop_reason == "watchpoint" and "0xb8000" in app.sub_title
    assert "vga_clear" in _plain(app.rendered["regs"])
    app = _drive(image("hello"), ":", *"watch free_list 4 rw", "enter")
    assert "no symbol 'free_list'" in app.sub_title  # hello has no free_list
