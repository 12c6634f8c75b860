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


def _drive(kernel, *keys: str, size=(170, 50), typed: bool = False) -> DebuggerApp:
    """Press ``keys``; the characters of a command line after ":" go in at once (each press
    costs a frame) unless ``typed``."""
    app = DebuggerApp(Machine.from_elf(kernel))

    async def go() -> None:
        async with app.run_test(size=size) as pilot:
            line: list[str] | None = None
            for key in keys:
                if line is not None and key != "enter" and not typed:
                    line.append(key)
                    continue
                if line is not None:
                    app.query_one("#cmd").value = "".join(line)
                    line = None
                await pilot.press(key)
                if key == ":":
                    line = []
                await app.workers.wait_for_complete()
                await pilot.pause()
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
    """Stop on the first exception before delivery, then let each delivery fail into the next
    (one session, as a person would go: e, c, c, u)."""
    seen: dict[str, object] = {}

    async def press(app, pilot, key: str) -> None:
        await pilot.press(key)
        await app.workers.wait_for_complete()
        await pilot.pause()

    async def script(app, pilot) -> None:
        m, s = app.session.machine, app.session
        await press(app, pilot, "e")
        await press(app, pilot, "c")
        pending = m.pending_exception
        seen["pending"] = pending.vector if pending is not None else None
        seen["trace1"] = _plain(app.rendered["trace"])
        seen["status1"] = app.sub_title
        await press(app, pilot, "c")
        seen["ended"] = (s.ended, s.last.stop_reason)
        seen["trace2"] = _plain(app.rendered["trace"])
        await press(app, pilot, "u")

    app = _session(image("lost-in-32bit"), script, size=(170, 50))
    assert seen["pending"] == 6
    assert "pending, not delivered yet: #UD" in seen["trace1"] and "0x1003e8" in seen["trace1"]
    assert "exception pending" in seen["status1"]
    assert seen["ended"] == (True, "triple-fault")
    for text in ("#UD (invalid opcode)", "#GP (general protection) err=0x32", "#DF", "triple fault",
                 "diagnosis (mode-mismatch)"):  # fmt: skip
        assert text in seen["trace2"], text
    # and back: one reverse step is the instruction before the fault, alive again
    assert not app.session.ended and app.session.machine.instructions == 279_569


def test_breakpoint_from_the_command_line(image) -> None:
    app = _drive(image("hello"), ":", *"break kmain", "enter", "c", typed=True)
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
    dump = _plain(app.rendered["memory"])
    assert "32 bytes at linear 0x100000" in dump
    assert "0000000000100000  " in dump and "0000000000100010  " in dump


def test_watch_command(image) -> None:
    app = _drive(image("hello"), ":", *"watch 0xb8000 2", "enter", "c")
    s = app.session
    assert s.last.stop_reason == "watchpoint" and "0xb8000" in app.sub_title
    assert "vga_clear" in _plain(app.rendered["regs"])
    app = _drive(image("hello"), ":", *"watch free_list 4 rw", "enter")
    assert "no symbol 'free_list'" in app.sub_title  # hello has no free_list


# ---------------------------------------------------------------------- live runs
def _at(kernel, symbol: str) -> Machine:
    """A machine stopped before ``symbol``'s first instruction, the breakpoint removed."""
    m = Machine.from_elf(kernel)
    m.add_breakpoint(symbol)
    assert m.run(max_instructions=10_000_000).stop_reason == "breakpoint"
    m.remove_breakpoint(m.symbolizer.address_of(symbol))
    return m


def _live(app: DebuggerApp, start, stop_key: str, size=(120, 40)) -> list[str]:
    """Start a run with ``start(pilot)``, watch the status line until it shows progress, stop
    it with ``stop_key``; returns the status lines seen while it ran."""
    seen: list[str] = []

    async def go() -> None:
        async with app.run_test(size=size) as pilot:
            await start(pilot)
            for _ in range(400):
                await asyncio.sleep(0.02)
                seen.append(str(app.rendered.get("status", "")))
                if app.session.running and app.progress is not None:
                    break
            assert app.session.running, seen[-1]
            await pilot.press(stop_key)
            await app.workers.wait_for_complete()
            await pilot.pause()

    asyncio.run(go())
    return seen


@pytest.mark.parametrize("stop_key", ["escape", "ctrl+c"])
def test_a_long_run_shows_progress_and_stops_at_once(image, stop_key) -> None:
    m = Machine.from_elf(image("poll-spin"))
    m.fast_forward = False  # every instruction emulated: a continue runs for minutes

    async def press_c(pilot) -> None:
        await pilot.press("c")

    app = DebuggerApp(m)
    seen = _live(app, press_c, stop_key)
    s = app.session
    running = [line for line in seen if "running: Esc stops" in line]
    assert running and "MIPS" in running[-1] and "s virtual" in running[-1]
    assert s.last.stop_reason == "interrupted" and not s.ended and not s.running
    assert "interrupted" in app.rendered["status"]
    stopped_at = m.instructions
    assert stopped_at > 0
    # the state is intact: the same count reached headless is the same machine
    ref = Machine.from_elf(image("poll-spin"))
    ref.fast_forward = False
    ref.run(max_instructions=stopped_at)
    assert ref.cpu_state() == m.cpu_state()
    # and the run goes on from there, the stop leaving nothing behind
    s.run(1000)
    assert m.instructions == stopped_at + 1000


def test_run_n_live_and_keys_refused_while_running(image) -> None:
    m = Machine.from_elf(image("poll-spin"))
    m.fast_forward = False

    async def run_command(pilot) -> None:
        await pilot.press(":")
        pilot.app.query_one("#cmd").value = "run 100_000_000_000"  # a press a key: a frame each
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("s")  # refused while the run goes on

    app = DebuggerApp(m)
    seen = _live(app, run_command, "escape")
    assert any("a run is in progress: Esc stops it" in line for line in seen) or (
        app.session.last.stop_reason == "interrupted"
    )
    assert app.session.last.stop_reason == "interrupted"
    assert m.instructions < 100_000_000_000


def test_run_n_lands_exactly(image) -> None:
    app = _drive(image("hello"), ":", *"run 12345", "enter")
    assert app.session.machine.instructions == 12345
    assert "ran 12,345 instructions" in app.sub_title


# ---------------------------------------------------------------------- commands
BAD_COMMANDS = {
    "watch 0xb8000 0": "watch length must be 1 to 4,096",
    "watch 0xb8000 -4": "watch length must be 1 to 4,096",
    "watch 0xb8000 2 x": "watches r, w or rw, not 'x'",
    "watch 0xffffffffffffffff 2": "would wrap past 2^64",
    "run -5": "run count must be 1 to",
    "run 0": "run count must be 1 to",
    "run ten": "run count: 'ten' is not a number",
    "goto -1": "instruction count must be 0 to",
    "x 0x10000000000000000": "address must be 0 to",
    "x 0x100000 0": "byte count must be 1 to 4,096",
    "break 0x10000000000000000": "address must be 0 to",
    "break": "usage: break SYMBOL|ADDR",
    "delete 0x123456": "no breakpoint or watchpoint at 0x123456",
    "delete #3": "list number must be 1 to 1",
    "walk": "usage: walk VADDR",
    "step 0": "step count must be 1 to",
    "list nowhere_at_all": "no symbol 'nowhere_at_all'",
    "frobnicate 3": "unknown command 'frobnicate': break, code, continue, delete, goto, help, "
    "ioapic, lapic, list, pic, ptdiff, ptmark, ptx, run, screenshot, step, walk, watch, x",
}


def _session(kernel_or_machine, script, size=(120, 40)) -> DebuggerApp:
    """Run ``script(app, pilot)`` inside one app session."""
    m = kernel_or_machine
    app = DebuggerApp(m if isinstance(m, Machine) else Machine.from_elf(m))

    async def go() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await script(app, pilot)
            await app.workers.wait_for_complete()
            await pilot.pause()

    asyncio.run(go())
    return app


async def _type(app: DebuggerApp, pilot, line: str) -> str:
    """A command line: ``:``, the line (set at once: a press per character costs a frame),
    Enter."""
    await pilot.press(":")
    app.query_one("#cmd").value = line
    await pilot.press("enter")
    await app.workers.wait_for_complete()
    await pilot.pause()
    return app.sub_title


def test_every_bad_argument_gets_one_line(image) -> None:
    """Regression: `watch ADDR 0` and a negative length crashed the app."""
    said: dict[str, str] = {}

    async def script(app, pilot) -> None:
        await _type(app, pilot, "break kmain")
        for line in BAD_COMMANDS:
            said[line] = await _type(app, pilot, line)

    app = _session(image("hello"), script)
    for line, expected in BAD_COMMANDS.items():
        assert expected in said[line], (line, said[line])
    assert "\n" not in app.session.message
    assert app.session.machine.watchpoints == []
    assert app.session.machine.instructions == 0


def test_delete_goto_and_walk(image) -> None:
    said: dict[str, str] = {}

    async def script(app, pilot) -> None:
        kmain = app.session.machine.symbolizer.address_of("kmain")
        said["break"] = await _type(app, pilot, "break kmain")
        said["delete"] = await _type(app, pilot, f"delete {kmain:#x}")
        said["again"] = await _type(app, pilot, f"delete {kmain:#x}")
        said["walk"] = await _type(app, pilot, "walk 0x100000")
        said["walk-text"] = _plain(app.rendered["info"])
        await _type(app, pilot, "break kmain")
        await _type(app, pilot, "watch 0xb8000 2")
        said["breaks"] = _plain(app.rendered["breaks"])
        said["goto"] = await _type(app, pilot, "goto 100000")
        said["at"] = str(app.session.machine.instructions)
        said["delete-all"] = await _type(app, pilot, "delete all")

    _session(image("hello"), script)
    assert "breakpoint at 0x" in said["break"] and "removed" in said["delete"]
    assert "no breakpoint or watchpoint at" in said["again"]
    # hello opens in 32-bit protected mode with paging off
    assert "paging is off (CR0.PG=0): no page walk" in said["walk-text"]
    assert "4K page" not in said["walk-text"]
    assert "#1   break  0x" in said["breaks"] and "<kmain>" in said["breaks"]
    assert "#2   watch  w  2 byte(s) at 0xb8000" in said["breaks"]
    # goto lands on its count whatever breakpoints and watchpoints lie between
    assert said["at"] == "100000" and "at instruction 100,000" in said["goto"]
    assert "removed 1 breakpoint(s), 1 watchpoint(s)" in said["delete-all"]


def test_help_history_and_completion(image) -> None:
    seen: dict[str, object] = {}

    async def script(app, pilot) -> None:
        from tui.app import HelpScreen

        await pilot.press("question_mark")
        seen["help"] = isinstance(app.screen, HelpScreen)
        seen["help-text"] = _plain(app.screen.query_one("#help-text").render())
        await pilot.press("escape")
        seen["closed"] = not isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        seen["f1"] = isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await _type(app, pilot, "x 0x100000 16")
        await _type(app, pilot, "walk 0x1000")
        await pilot.press(":", "up")
        cmd = app.query_one("#cmd")
        seen["up1"] = cmd.value
        await pilot.press("up")
        seen["up2"] = cmd.value
        await pilot.press("down", "down")
        seen["down"] = cmd.value
        await pilot.press(*"wal")
        await pilot.pause(0.05)
        await pilot.press("tab")
        seen["complete-verb"] = cmd.value
        cmd.value = ""
        await pilot.press(*"break kma")
        await pilot.pause(0.05)
        await pilot.press("tab")
        seen["complete-symbol"] = cmd.value
        await pilot.press("escape")
        seen["cmd-closed"] = not cmd.has_focus

    _session(image("hello"), script)
    assert seen["help"] and seen["closed"] and seen["f1"] and seen["cmd-closed"]
    from tui.app import COMMANDS, KEYS

    for keys, _what in KEYS:
        assert keys in seen["help-text"]
    for syntax, _what in COMMANDS:
        assert syntax in seen["help-text"]
    assert seen["up1"] == "walk 0x1000" and seen["up2"] == "x 0x100000 16"
    assert seen["down"] == ""
    assert seen["complete-verb"] == "walk"
    assert seen["complete-symbol"] == "break kmain"


# ---------------------------------------------------------------------- panes
def test_panes_at_kmain(image) -> None:
    m = _at(image("hello"), "kmain")
    seen: dict[str, str] = {}

    async def script(app, pilot) -> None:
        await _type(app, pilot, "step 40")  # into kmain's calls: a return address on the stack
        await _type(app, pilot, "x 0xb8000 64")
        seen["memory0"] = _plain(app.rendered["memory"])
        await _type(app, pilot, "run 20000")
        seen["memory1"] = _plain(app.rendered["memory"])
        seen["memory-spans"] = repr(app.rendered["memory"].spans)
        seen["stack"] = _plain(app.rendered["stack"])
        seen["source"] = _plain(app.rendered["source"])
        await _type(app, pilot, "code kmain")
        seen["code"] = _plain(app.rendered["code"])
        await pilot.press("right_square_bracket")
        seen["code-down"] = _plain(app.rendered["code"])
        await pilot.press("left_square_bracket")
        seen["code-up"] = _plain(app.rendered["code"])
        await pilot.press("full_stop")
        seen["code-rip"] = _plain(app.rendered["code"])
        await _type(app, pilot, "list kmain")
        seen["list"] = _plain(app.rendered["source"])

    _session(m, script, size=(200, 50))
    assert "64 bytes at linear 0xb8000" in seen["memory0"]
    assert seen["memory0"] != seen["memory1"] and "bold reverse red" in seen["memory-spans"]
    assert "stack at 0x" in seen["stack"] and "frames (RBP chain)" in seen["stack"]
    assert "return to <ksnprintf+0x" in seen["stack"]
    assert "▶" in seen["source"] and ".c:" in seen["source"]
    assert "<kmain>:" in seen["code"] and "call 0x" in seen["code"]
    assert "<console_line>" in seen["code"] or "<ksnprintf>" in seen["code"]
    assert "64-bit code" in seen["code"]
    assert seen["code-down"] != seen["code"] and "▶" in seen["code-rip"]
    assert "(list: back to RIP)" in seen["list"] and "kmain" in seen["list"]


def test_code_decodes_in_the_cpu_mode(image) -> None:
    app = _drive(image("hello"), "s")
    assert "32-bit code" in _plain(app.rendered["code"])


def test_narrow_terminal_keeps_rip_visible(image) -> None:
    seen: dict[str, object] = {}

    async def script(app, pilot) -> None:
        seen["mode"] = app.layout_mode
        disasm = app.query_one("#disasm")
        seen["rows"] = disasm.content_size.height
        code = _plain(app.rendered["code"]).splitlines()
        seen["rip-row"] = next(i for i, line in enumerate(code) if "▶" in line)
        await pilot.press("1")
        seen["tab"] = app.query_one("#tabs").active
        seen["regs"] = _plain(app.rendered.get("regs-tab", ""))
        await pilot.press("p")
        seen["pages"] = _plain(app.rendered["pages"])
        await _type(app, pilot, "x 0x102000 32")
        seen["memory"] = app.rendered["memory"].plain
        await pilot.press("6")  # the source tab: its RIP line in view too
        seen["source-tab"] = app.query_one("#tabs").active
        seen["source-rows"] = app.query_one("#source-tab-body").parent.content_size.height
        seen["source-line"] = next(
            i for i, line in enumerate(app.rendered["source"].plain.splitlines()) if "▶" in line
        )

    m = _at(image("hello"), "kmain")
    _session(m, script, size=(80, 24))
    assert seen["mode"] == "narrow"
    assert seen["rip-row"] < seen["rows"]
    assert seen["tab"] == "regs-tab" and "RIP 0x" in seen["regs"]
    assert "4-level paging" in seen["pages"]
    assert seen["source-tab"] == "source-tab"
    assert 0 < seen["source-line"] < seen["source-rows"], seen
    # memory rows as wide as the tab: 8 bytes and their ASCII in 51 columns
    rows = seen["memory"].splitlines()[1:]
    data = m.read_linear(0x102000, 32)
    assert [r[:16] for r in rows] == [f"{0x102000 + i:016x}" for i in range(0, 32, 8)]
    ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in data[8:16])
    assert rows[1] == f"{0x102008:016x}  {data[8:16].hex(' ')}  {ascii_}"


# ---------------------------------------------------------------------- page-table explorer
def test_explorer_keys_and_walks(image) -> None:
    m = Machine.from_elf(image("paging"))
    m.add_breakpoint("paging_ready")
    assert m.run(max_instructions=10_000_000).stop_reason == "breakpoint"
    seen: dict[str, str] = {}

    async def script(app, pilot) -> None:
        await pilot.press("t")
        seen["root"] = _plain(app.rendered["ptx"])
        await pilot.press("down", "up", "enter")
        seen["down"] = _plain(app.rendered["ptx"])
        await pilot.press("backspace")
        seen["up"] = _plain(app.rendered["ptx"])
        await _type(app, pilot, "ptx 0xffffffff80500000")
        seen["walk"] = _plain(app.rendered["ptx"])

    _session(m, script, size=(160, 50))
    assert "CR3 0x107000 > PML4E table 0x107000" in seen["root"]
    assert "2 of 512 entries present" in seen["root"] and "-> table 0x106000" in seen["root"]
    assert "CR3 0x107000 > PML4E[0] > PDPTE table 0x106000" in seen["down"]
    assert "0x0000000000000000-0x000000003fffffff  frame 0x0" in seen["down"]
    assert seen["up"].startswith("CR3 0x107000 > PML4E table")
    walk = seen["walk"]
    assert "read of 0xffffffff80500000 by the supervisor" in walk
    assert "111111111 111111110 000000010 100000000 000000000000" in walk  # the index fields
    assert "PML4E[47:39] = 0x1ff (511)" in walk and "-> physical 0x500000 (2M page)" in walk
    assert "> PML4E[511] > PDPTE[510] > PDE table 0x10a000" in walk


def test_explorer_opens_on_a_page_fault(image) -> None:
    m = Machine.from_elf(image("faults"))
    m.break_on_exceptions(14)
    assert m.run(max_instructions=10_000_000).stop_reason == "exception"
    seen: dict[str, str] = {}

    async def script(app, pilot) -> None:
        await pilot.press("t")
        seen["ptx"] = _plain(app.rendered["ptx"])

    _session(m, script, size=(160, 50))
    assert f"write of {m.pending_exception.cr2:#x} by the supervisor" in seen["ptx"]
    assert "<- fails here" in seen["ptx"]
    assert "page-fault: PDE.RW=0 and CR0.WP=1 on a supervisor write" in seen["ptx"]


def test_explorer_with_paging_off(image) -> None:
    app = _drive(image("hello"), "t")
    assert "paging is off (CR0.PG=0): there is no page-table tree" in app.sub_title


# ---------------------------------------------------------------------- v, e, i, controllers
def test_screen_tab_follows_the_machine(image) -> None:
    seen: dict[str, object] = {}

    async def script(app, pilot) -> None:
        seen["before"] = "screen" in app.rendered  # drawn only while its tab is in front
        await pilot.press("v")
        seen["tab"] = app.query_one("#tabs").active
        seen["at-entry"] = _plain(app.rendered["screen"])
        await _type(app, pilot, "run 100000")
        seen["after-run"] = _plain(app.rendered["screen"])

    app = _session(image("hello"), script)
    assert seen["before"] is False and seen["tab"] == "screen"
    assert "long mode OK" not in seen["at-entry"]
    assert "Triplefault hello: long mode OK" in seen["after-run"]
    assert "COM1: loopback self-test passed" in seen["after-run"]
    assert app.session.machine.screen_text() in seen["after-run"]


def test_e_toggles_stopping_on_exceptions(image) -> None:
    seen: dict[str, object] = {}

    async def script(app, pilot) -> None:
        await pilot.press("e")
        seen["on"] = (app.session.stop_on_exceptions, app.sub_title)
        await pilot.press("e")
        seen["off"] = (app.session.stop_on_exceptions, app.sub_title)
        await pilot.press("c")  # off: the #UD is delivered, and so on to the triple fault
        await app.workers.wait_for_complete()
        await pilot.pause()

    app = _session(image("lost-in-32bit"), script)
    on, off = seen["on"], seen["off"]
    assert on[0] is True and "stop on exceptions: on (before delivery)" in on[1]
    assert off[0] is False and "stop on exceptions: off" in off[1]
    # the status line's standing mark goes with it
    assert "| stop on exceptions |" in on[1] and "| stop on exceptions |" not in off[1] + " |"
    s = app.session
    assert s.last.stop_reason == "triple-fault" and s.machine.pending_exception is None
    assert s.machine.instructions == 279_570


def test_interrupt_controllers_and_i(image) -> None:
    """lapic, ioapic and pic show the controllers as they are now; i leaves their output."""
    seen: dict[str, str] = {}

    async def script(app, pilot) -> None:
        await pilot.press("3")
        seen["tab"] = app.query_one("#tabs").active
        await _type(app, pilot, "pic")
        seen["pic-boot"] = _plain(app.rendered["info"])
        seen["shown"] = app.query_one("#tabs").active
        await pilot.press("i")
        seen["back"] = app.query_one("#tabs").active
        await pilot.press("i")  # off the output tab: nothing to leave
        seen["still"] = app.query_one("#tabs").active
        await _type(app, pilot, "run 360000")  # the kernel has programmed all three
        for name in ("lapic", "ioapic", "pic"):
            await _type(app, pilot, name)
            seen[name] = _plain(app.rendered["info"])

    app = _session(image("apic"), script)
    assert seen["tab"] == "memory" and seen["shown"] == "info"
    assert seen["back"] == "memory" and seen["still"] == "memory"
    # at hand-over the PICs have the BIOS's bases; by 360,000 the kernel moved them
    assert "PIC1: irr=10 isr=00 imr=b8 base=08" in seen["pic-boot"]
    assert "PIC2:" in seen["pic-boot"] and "base=70" in seen["pic-boot"]
    assert "PIC1: irr=03 isr=00 imr=ff base=20" in seen["pic"]
    assert "LAPIC id 0 base 0xfee00000 enabled, SVR 0x1ff" in seen["lapic"]
    assert "TMR 0x34" in seen["lapic"] and "LVT timer=0x00010000" in seen["lapic"]
    assert "I/O APIC id 0 at 0xfec00000" in seen["ioapic"]
    assert "pin  2: vector 0x32 fixed" in seen["ioapic"]
    assert "pin 20: vector 0x34 fixed, dest 0x00 physical, level" in seen["ioapic"]
    m = app.session.machine
    assert seen["lapic"].strip() == m.lapic.describe().strip()


def test_screenshot_command_and_ctrl_s(image, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    said: dict[str, str] = {}

    async def script(app, pilot) -> None:
        said["file"] = await _type(app, pilot, f"screenshot {tmp_path / 'shot.svg'}")
        said["bad"] = await _type(app, pilot, f"screenshot {tmp_path / 'no' / 'shot.svg'}")
        await pilot.press("ctrl+s")
        await pilot.pause()
        said["key"] = app.sub_title

    _session(image("hello"), script)
    assert f"screenshot saved to {tmp_path / 'shot.svg'}" in said["file"]
    svg = (tmp_path / "shot.svg").read_text()
    assert svg.startswith("<svg") and "registers" in svg and "RIP&#160;0x" in svg
    assert "screenshot: cannot write" in said["bad"] and "No such file or directory" in said["bad"]
    made = sorted(p.name for p in tmp_path.glob("Triplefault_*.svg"))
    assert len(made) == 1 and f"screenshot saved to ./{made[0]}" in said["key"]


async def _continue(app: DebuggerApp, pilot) -> None:
    await pilot.press("c")
    await app.workers.wait_for_complete()
    await pilot.pause()


def test_explorer_diff_between_a_mark_and_now(image) -> None:
    """m marks a point, d shows what the tables changed since (the CPU's A/D bits here, then a
    #PF handler's RW fix and a PTE pointed at another frame); d or Backspace goes back."""
    m = Machine.from_elf(image("paging"))
    seen: dict[str, str] = {}

    async def script(app, pilot) -> None:
        async def diff_at(symbol: str) -> str:
            await _type(app, pilot, f"break {symbol}")
            await _continue(app, pilot)
            await pilot.press("t", "d")
            return _plain(app.rendered["ptx"])

        await pilot.press("t", "d")  # paging is off at the entry: no mark yet
        seen["no mark"] = app.sub_title
        await pilot.press("m")
        seen["marked off"] = app.sub_title
        seen["since entry"] = await diff_at("paging_ready")
        await pilot.press("m")
        seen["marked"] = app.sub_title
        seen["touched"] = await diff_at("pages_touched")
        await pilot.press("d")
        seen["back"] = _plain(app.rendered["ptx"])
        await _type(app, pilot, "delete all")
        await _continue(app, pilot)
        await _type(app, pilot, "ptdiff")
        seen["end"] = _plain(app.rendered["ptx"])
        await pilot.press("backspace")
        seen["backspace"] = _plain(app.rendered["ptx"])

    _session(m, script, size=(160, 50))
    assert "no mark yet" in seen["no mark"]
    assert "marked at 0 instructions: 0 range(s)" in seen["marked off"]
    since = seen["since entry"]
    assert "from the mark at 0 instructions (paging off" in since
    assert "to now at 7,561 (4-level paging, CR3 0x107000)" in since
    assert "9 change(s): 9 added, 0 removed, 0 changed" in since
    assert "+ 0000000040002000-0000000040002fff  0000602000     4K   4K  WU- ---" in since
    assert "marked at 7,561 instructions: 9 range(s)" in seen["marked"]
    touched = seen["touched"]
    assert "2 change(s): 0 added, 0 removed, 2 changed" in touched
    assert "- 0000000040004000-0000000040004fff  0000604000     4K   4K  WS- ---" in touched
    assert "+ 0000000040004000-0000000040004fff  0000604000     4K   4K  WS- -AD" in touched
    assert "+ 0000000040000000-0000000040000fff  0000600000     4K   4K  WS- -A-" in touched
    assert seen["back"].startswith("CR3 0x107000 > ")
    end = seen["end"]
    assert "from the mark at 7,561 instructions" in end
    assert "+ 0000000040001000-0000000040001fff  0000601000     4K   4K  WS- -AD" in end
    assert "+ 0000000040006000-0000000040006fff  0000607000" in end
    assert seen["backspace"].startswith("CR3 0x107000 > ")


def test_ptmark_at_an_earlier_instruction_comes_back(image) -> None:
    """`ptmark N` replays to instruction N, marks the tables there and restores the machine:
    the diff is then that of `pt --diff`, and the run goes on to the same end. An N before the
    session began (its first checkpoint) says so, as `goto` does."""
    m = Machine.from_elf(image("paging"))
    m.step()  # the session starts here: its first checkpoint
    ref = Machine.from_elf(image("paging"))
    ref.add_breakpoint("pages_touched")
    assert ref.run(max_instructions=10_000_000).stop_reason == "breakpoint"
    before = ref.cpu_state()
    seen: dict[str, object] = {}

    async def script(app, pilot) -> None:
        await _type(app, pilot, "break pages_touched")
        await _continue(app, pilot)
        seen["too early"] = await _type(app, pilot, "ptmark 0")
        seen["marked"] = await _type(app, pilot, "ptmark 7561")
        seen["state"] = (app.session.machine.instructions, app.session.machine.cpu_state())
        seen["diff"] = await _type(app, pilot, "ptdiff") and _plain(app.rendered["ptx"])
        seen["far"] = await _type(app, pilot, "ptmark 99999999")
        seen["mark kept"] = app.explorer.mark.instructions
        seen["goto 0"] = (await _type(app, pilot, "goto 0"), app.session.machine.instructions)
        await _type(app, pilot, "delete all")
        await _continue(app, pilot)
        seen["bad"] = await _type(app, pilot, "ptmark -1")

    app = _session(m, script, size=(160, 50))
    assert "instruction 0 is before the debugger's first checkpoint (at 1" in seen["too early"]
    assert "marked at 7,561 instructions: 9 range(s); back at 22,629" in seen["marked"]
    assert seen["state"] == (22_629, before)
    assert "2 change(s): 0 added, 0 removed, 2 changed" in seen["diff"]
    assert "+ 0000000040004000-0000000040004fff  0000604000     4K   4K  WS- -AD" in seen["diff"]
    assert "instruction 99,999,999 not reached" in seen["far"] and seen["mark kept"] == 7_561
    # regression: a goto before the session's first checkpoint raised inside the worker
    said, count = seen["goto 0"]
    assert "before the debugger's first checkpoint" in said and count == 22_629
    s = app.session
    assert s.ended and s.last.stop_reason == "debug-exit" and s.machine.instructions == 50_764
    assert "instruction count must be 0 to" in seen["bad"]


def test_the_docs_screenshots_script(image, tmp_path, monkeypatch) -> None:
    """docs/debugger/screenshots.py draws the docs' pictures (one, elsewhere) and --check tells
    a stale one. The committed pictures are not compared here (any change to a pane would fail
    the suite until they were drawn again): `--check` is for whoever changes the panes."""
    import html
    import importlib.util
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "docs" / "debugger" / "screenshots.py"
    spec = importlib.util.spec_from_file_location("screenshots", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "screenshots", module)  # for its dataclass
    spec.loader.exec_module(module)
    image("faults")
    assert module.main(["--out", str(tmp_path), "explorer-fault"]) == 0
    fault = html.unescape((tmp_path / "explorer-fault.svg").read_text()).replace("\xa0", " ")
    assert "<- fails here" in fault and "PDE.RW=0 and CR0.WP=1 on a supervisor write" in fault
    assert "exception pending" in fault and "registers" in fault
    (tmp_path / "explorer-fault.svg").write_text("<svg/>")
    assert module.main(["--out", str(tmp_path), "--check", "explorer-fault"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["explorer-fault.svg"]  # --check wrote none
