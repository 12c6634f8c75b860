"""The debugger's screenshots in the README and docs/debugging.md, drawn by the app itself
(Textual's SVG export) from bundled kernels, so that they can be made again when the panes
change: `python docs/debugger/screenshots.py` rewrites the SVGs beside this file, `--check`
says which differ from what it would draw (exit 1), `--out DIR` writes them elsewhere.

Every picture opens on a machine stopped by a headless run (a run in the app would show its
MIPS, which depend on the host), so the same tree gives the same files.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from emu import Machine  # noqa: E402
from emu.images import resolve_kernel  # noqa: E402
from tui.app import DebuggerApp  # noqa: E402


def _stopped(kernel: str, *, at: str | None = None, exception: int | None = None) -> Machine:
    """A machine stopped at the breakpoint ``at`` or before the exception ``exception``."""
    m = Machine.from_elf(resolve_kernel(kernel))
    if at is not None:
        m.add_breakpoint(at)
    if exception is not None:
        m.break_on_exceptions(exception)
    result = m.run(max_instructions=10_000_000)
    wanted = "breakpoint" if at is not None else "exception"
    if result.stop_reason != wanted:
        raise SystemExit(f"screenshots: {kernel} stopped with {result.stop_reason}, not {wanted}")
    if at is not None:
        m.remove_breakpoint(m.symbolizer.address_of(at))
        m.add_breakpoint(at)  # still listed, and marked in the code pane
    return m


@dataclass
class Shot:
    name: str  # the file is NAME.svg
    title: str
    size: tuple[int, int]
    machine: Callable[[], Machine]
    script: Callable[..., Awaitable[None]]  # (app, pilot)


async def _commands(app: DebuggerApp, pilot, *lines: str, keys: tuple[str, ...] = ()) -> None:
    for line in lines:
        app.run_command(line)
        await app.workers.wait_for_complete()
        await pilot.pause()
    for key in keys:
        await pilot.press(key)
        await app.workers.wait_for_complete()
        await pilot.pause()


SHOTS = (
    Shot(
        "wide",
        "triplefault debug hello --break console_line: c, s, s; x 0x1023c0 96 (200x50)",
        (200, 50),
        lambda: _stopped("hello", at="console_line"),
        lambda app, pilot: _commands(app, pilot, "step 2", "x 0x1023c0 96"),
    ),
    Shot(
        "stack-and-breaks",
        "triplefault debug hello: in kmain's calls, the stack and the breaks tab (200x50)",
        (200, 50),
        lambda: _stopped("hello", at="kmain"),
        lambda app, pilot: _commands(
            app, pilot, "step 40", "watch 0xb8000 2", "break vga_write", keys=("4",)
        ),
    ),
    Shot(
        "explorer-walk",
        "triplefault debug paging --break paging_ready: c; ptx 0xffffffff80500000 (200x50)",
        (200, 50),
        lambda: _stopped("paging", at="paging_ready"),
        lambda app, pilot: _commands(app, pilot, "ptx 0xffffffff80500000"),
    ),
    Shot(
        "explorer-fault",
        "triplefault debug faults: e, c stops before the #PF; t opens on the failing walk (200x50)",
        (200, 50),
        lambda: _stopped("faults", exception=14),
        lambda app, pilot: _commands(app, pilot, keys=("t",)),
    ),
    Shot(
        "narrow",
        "triplefault debug hello --break kmain: c, s, s; 6 (80x24: one column, the panes in tabs)",
        (80, 24),
        lambda: _stopped("hello", at="kmain"),
        lambda app, pilot: _commands(app, pilot, "step 2", keys=("6",)),
    ),
)


def draw(shot: Shot) -> str:
    """The SVG of one shot."""
    app = DebuggerApp(shot.machine())
    svg = ""

    async def go() -> None:
        nonlocal svg
        async with app.run_test(size=shot.size) as pilot:
            await pilot.pause()
            await shot.script(app, pilot)
            await pilot.pause()
            app.refresh_views()
            await pilot.pause()
            svg = app.export_screenshot(title=shot.title)
            if app.session.message.startswith(("no ", "usage", "unknown")):
                raise SystemExit(f"screenshots: {shot.name}: {app.session.message}")

    asyncio.run(go())
    if str(ROOT) in svg:  # a picture for the docs names no path of this checkout
        raise SystemExit(f"screenshots: {shot.name} shows {ROOT}")
    return svg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=HERE, help="where to write (default: beside this)")
    p.add_argument("--check", action="store_true", help="compare with the files, write nothing")
    p.add_argument("names", nargs="*", help="only these shots (default all)")
    args = p.parse_args(argv)
    known = {s.name for s in SHOTS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        p.error(f"no shot {', '.join(unknown)} (there are {', '.join(sorted(known))})")
    stale = []
    for shot in SHOTS:
        if args.names and shot.name not in args.names:
            continue
        svg = draw(shot)
        path = args.out / f"{shot.name}.svg"
        if args.check:
            if not path.is_file() or path.read_text() != svg:
                stale.append(path.name)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(svg)
        print(f"wrote {path}")
    if stale:
        print(f"differ from what the app draws now: {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
