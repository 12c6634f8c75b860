"""The debugger's main layouts as pictures (pytest-textual-snapshot): 80x24, one column with
the panes in tabs, and 200x50, three columns with source and stack beside the code. Each opens
on images/hello stopped at kmain by a headless run (a run in the app would show its MIPS, which
depend on the host). `pytest tests/test_tui_snapshots.py --snapshot-update` records them again;
look at the SVGs under tests/__snapshots__/ before committing."""

from __future__ import annotations

import pytest

pytest.importorskip("pytest_textual_snapshot", reason="pytest-textual-snapshot is not installed")

from emu import Machine  # noqa: E402
from tui.app import DebuggerApp  # noqa: E402

pytestmark = pytest.mark.images


def _app(image, symbol: str = "kmain") -> DebuggerApp:
    m = Machine.from_elf(image("hello"))
    m.add_breakpoint(symbol)
    assert m.run(max_instructions=10_000_000).stop_reason == "breakpoint"
    return DebuggerApp(m)


def test_layout_80x24(image, snap_compare) -> None:
    assert snap_compare(_app(image), terminal_size=(80, 24))


def test_layout_80x24_registers_tab(image, snap_compare) -> None:
    assert snap_compare(_app(image), press=["1"], terminal_size=(80, 24))


def test_layout_200x50(image, snap_compare) -> None:
    assert snap_compare(_app(image), press=["s", "s", "s"], terminal_size=(200, 50))


def test_help_200x50(image, snap_compare) -> None:
    assert snap_compare(_app(image), press=["question_mark"], terminal_size=(200, 50))


def test_memory_tab_120x40(image, snap_compare) -> None:
    async def memory(pilot) -> None:
        pilot.app.run_command("x 0xb8000 128")
        await pilot.pause()

    assert snap_compare(_app(image, "console_line"), run_before=memory, terminal_size=(120, 40))
