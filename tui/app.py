"""The Textual debugger: registers, disassembly, source, memory, the stack, breakpoints, the
fault trace, serial output, page tables and the VGA screen of one machine, driven a step, a
breakpoint or a reverse step at a time, or run live (Esc stops).

    triplefault debug KERNEL [--append ...]

``?`` or F1 lists every key and command (KEYS and COMMANDS below are that list). Runs go on a
worker thread in chunks (tui/session.py): the status line shows the instruction count, virtual
time and MIPS while COM1 and the screen follow. The layout follows the terminal: below 100
columns one column with the registers in a tab, from 160 a third column with the source and
the stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Static, TabbedContent, TabPane

from emu import Machine, mmu
from emu.core.cpu_state import CpuState
from emu.mmu import view as ptview
from emu.report import vector_name

from . import explorer, panes
from .session import DebugSession, Progress

# (keys, what): the help screen, the README and docs/debugging.md list these
KEYS = (
    ("s", "step one instruction (a pending exception: deliver it)"),
    ("c", "continue until a breakpoint, watchpoint, exception stop or the end"),
    ("Esc, Ctrl-C", "stop a run at the next block boundary; close the command line or help"),
    ("u", "reverse step: back one instruction"),
    ("b", "breakpoint at RIP (again: remove it)"),
    ("e", "stop on exceptions before delivery (toggle)"),
    ("[  ]", "scroll the code up or down"),
    (".", "the code back to RIP"),
    ("1-9", "show tab 1-9 (registers in a narrow terminal, trace, COM1, memory, ...)"),
    ("p", "the page tables tab"),
    ("t", "the page-table explorer (after a #PF: on its walk)"),
    ("Up/Down Enter Bksp", "explorer: select an entry, into its table, back up a level"),
    ("m, d", "explorer: mark this point; what the tables changed since"),
    ("v", "the VGA screen tab"),
    ("i", "leave the command output tab"),
    (":", "command line (Up/Down: history, Tab: complete a command or a symbol)"),
    ("Ctrl-S", "the screen as SVG, even while running (in a browser: a download)"),
    ("?, F1", "this help"),
    ("q", "quit"),
)
COMMANDS = (
    ("break SYMBOL|ADDR", "breakpoint (again: remove it); also b"),
    ("delete ADDR|SYMBOL|#N|all", "remove a breakpoint or watchpoint (#N as listed); also d"),
    ("watch SYMBOL|ADDR [LEN] [r|w|rw]", "stop right after an access (LEN 1-4096, default 1 w)"),
    ("continue", "as c; also cont"),
    ("run N", "run N more instructions (N >= 1), or less if something stops it"),
    ("goto N", "go to exactly instruction N, back or forth; stops between are set aside"),
    ("step [N]", "N single steps (default 1)"),
    ("x ADDR|SYMBOL [N]", "memory pane: N bytes (1-4096, default 256) at a linear address"),
    ("list [SYMBOL|ADDR|[FILE:]LINE]", "source pane there; list alone: back to RIP"),
    ("code ADDR|SYMBOL", "code pane from there (. goes back to RIP)"),
    ("walk VADDR", "a page walk, level by level"),
    ("ptx [VADDR]", "the explorer on an address's walk (alone: the last #PF's CR2)"),
    ("ptmark [N]", "mark this point (or instruction N) for ptdiff; also m"),
    ("ptdiff", "ranges changed since the mark; also d in the explorer"),
    ("lapic, ioapic, pic", "an interrupt controller's state"),
    ("screenshot [FILE]", "the screen as SVG (default: a new file here; in a browser, a download)"),
    ("help", "this help"),
)
VERBS = {
    "break": "break", "b": "break", "delete": "delete", "d": "delete", "watch": "watch",
    "w": "watch", "continue": "continue", "cont": "continue", "c": "continue", "run": "run",
    "goto": "goto", "step": "step", "s": "step", "x": "x", "list": "list", "l": "list",
    "code": "code", "walk": "walk", "lapic": "lapic", "ioapic": "ioapic", "pic": "pic",
    "help": "help", "?": "help", "ptx": "ptx", "ptmark": "ptmark", "ptdiff": "ptdiff",
    "screenshot": "screenshot",
}  # fmt: skip
COMMAND_NAMES = sorted({v for v in VERBS.values()})
TABS = ("regs-tab", "trace", "serial", "memory", "stack-tab", "source-tab", "breaks", "pages",
        "ptx", "screen", "info")  # fmt: skip
# the key line at the bottom (Textual's Footer rebuilds itself at each focus change: slow)
HINTS = Text.assemble(
    *(
        part
        for key, what in (
            ("s", "step"),
            ("c", "continue"),
            ("Esc", "stop"),
            ("u", "back"),
            ("b", "break"),
            ("e", "exceptions"),
            (":", "command"),
            ("?", "help"),
            ("q", "quit"),
        )  # fmt: skip
        for part in ((f" {key} ", "reverse bold"), (f" {what} ", ""))
    ),
)
NARROW_BELOW = 100  # columns: one column, registers in a tab
WIDE_FROM = 160  # columns: a third column with the source and the stack
MAX_ADDRESS = (1 << 64) - 1
MAX_BYTES = 4096


class CommandError(ValueError):
    """A command the debugger cannot take, with the one line that says why."""


def parse_number(text: str, what: str, low: int = 0, high: int = MAX_ADDRESS) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""), 0)
    except ValueError:
        raise CommandError(f"{what}: {text!r} is not a number") from None
    if not low <= value <= high:
        raise CommandError(f"{what} must be {low:,} to {high:,} ({text} is not)")
    return value


def is_number(text: str) -> bool:
    return text[:1].isdigit() or text[:1] in "+-"


def help_text() -> Text:
    t = Text("Keys\n", style="bold")
    for keys, what in KEYS:
        t.append(f"  {keys:<14}", style="bold yellow")
        t.append(f"{what}\n")
    t.append("\nCommands (after :)\n", style="bold")
    for syntax, what in COMMANDS:
        t.append(f"  {syntax:<34}", style="bold yellow")
        t.append(f"{what}\n")
    t.append("\nNumbers: 0x1f, 1_000_000 or 1,000,000. Esc closes this help.", style="dim")
    return t


class HelpScreen(ModalScreen[None]):
    BINDINGS = [("escape,q,question_mark,f1", "dismiss", "Close")]
    CSS = """
    HelpScreen { align: center middle; }
    #help { width: 100; max-width: 100%; height: 90%; border: round $accent; padding: 0 1;
            background: $surface; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_text(), id="help-text")

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.app.pop_screen()


class CommandSuggester(Suggester):
    """The rest of a command name (first word) or of a symbol (later words)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.names = names

    async def get_suggestion(self, value: str) -> str | None:
        head, _, last = value.rpartition(" ")
        if not last:
            return None
        pool = COMMAND_NAMES if not head else self.names
        for name in pool:
            if name.startswith(last) and name != last:
                return f"{head} {name}" if head else name
        return None


class CommandLine(Input):
    """The command line, with a history (Up/Down) and Tab completion."""

    BINDINGS = [
        Binding("up", "history(-1)", show=False),
        Binding("down", "history(1)", show=False),
        Binding("tab", "complete", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history: list[str] = []
        self.at = 0

    def remember(self, line: str) -> None:
        if line and (not self.history or self.history[-1] != line):
            self.history.append(line)
        self.at = len(self.history)

    def action_history(self, delta: int) -> None:
        if not self.history:
            return
        self.at = max(0, min(len(self.history), self.at + delta))
        self.value = self.history[self.at] if self.at < len(self.history) else ""
        self.cursor_position = len(self.value)

    def action_complete(self) -> None:
        if self._suggestion:
            self.value = self._suggestion
            self.cursor_position = len(self.value)


class RunProgress(Message):
    """Where a run on the worker thread is (posted between its chunks)."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress


@dataclass
class MemoryView:
    address: int | None = None  # None: at RSP
    size: int = 256
    before: bytes | None = None  # what the range held at the last stop
    before_at: int | None = None


class DebuggerApp(App):
    """One machine, shown and driven."""

    TITLE = "Triplefault"
    AUTO_FOCUS = None  # keys go to the bindings, not to the (hidden) command line
    CSS = """
    #status { dock: top; height: 1; background: $primary-background; }
    #main { layout: horizontal; height: 1fr; }
    #left { width: 3fr; }
    #mid { width: 3fr; display: none; }
    #tabs { width: 2fr; }
    #regs { height: auto; border: round $accent; padding: 0 1; }
    #disasm { height: 1fr; border: round $accent; padding: 0 1; }
    #source-wide { height: 1fr; border: round $accent; padding: 0 1; }
    #stack-wide { height: 1fr; border: round $accent; padding: 0 1; }
    TabPane { padding: 0 1; }
    #disasm, #source-wide, #stack-wide, #source-tab-body, #stack-tab-body, #memory-body {
        text-wrap: nowrap; text-overflow: clip;
    }
    #main.wide #mid { display: block; }
    #main.wide #tabs { width: 3fr; }
    #main.narrow { layout: vertical; }
    #main.narrow #left { width: 100%; height: 11; }
    #main.narrow #regs { display: none; }
    #main.narrow #disasm { border: none; padding: 0; }
    #main.narrow #tabs { width: 100%; height: 1fr; }
    #bottom { dock: bottom; height: 2; }
    #hints { height: 1; }
    #cmd { height: 1; border: none; padding: 0 1; }
    """
    BINDINGS = [
        ("s", "step", "Step"),
        ("c", "cont", "Continue"),
        ("u", "reverse", "Back"),
        ("b", "breakpoint", "Break"),
        ("e", "exceptions", "Exceptions"),
        ("p", "tab('pages')", "Pages"),
        ("v", "tab('screen')", "Screen"),
        Binding("t", "explore", "Explorer", show=False),
        Binding("up", "explorer_move(-1)", show=False),
        Binding("down", "explorer_move(1)", show=False),
        Binding("enter", "explorer_enter", show=False),
        Binding("backspace", "explorer_leave", show=False),
        Binding("m", "explorer_mark", show=False),
        Binding("d", "explorer_diff", show=False),
        Binding("i", "leave_info", "Leave output", show=False),
        Binding("left_square_bracket", "scroll_code(-1)", "Code up", show=False),
        Binding("right_square_bracket", "scroll_code(1)", "Code down", show=False),
        Binding("full_stop", "code_at_rip", "Code at RIP", show=False),
        *(Binding(str(n), f"tab_number({n})", show=False) for n in range(1, 10)),
        (":", "command", "Command"),
        Binding("question_mark,f1", "help", "Help"),
        Binding("escape", "stop", "Stop", show=False),
        Binding("ctrl+c", "stop", "Stop", show=False, priority=True),
        Binding("ctrl+s", "save_screen", "Screenshot", show=False, priority=True),
        ("q", "quit", "Quit"),
    ]

    def __init__(self, machine: Machine, kernel: str = "") -> None:
        super().__init__()
        self.session = DebugSession(machine)
        self.kernel = kernel or getattr(machine, "kernel_path", "") or ""
        self.rendered: dict[str, object] = {}  # what each panel shows now (for tests and tools)
        self.code_top: int | None = None  # None: the code pane follows RIP
        self.memory = MemoryView()
        self.explorer = explorer.Explorer()
        self.listing: tuple[str, int] | None = None  # (file, line) chosen by list; None: RIP
        self.layout_mode = "normal"
        self.previous_tab = "trace"
        self.progress: Progress | None = None
        self._shown: dict[str, object] = {}  # selector -> what that widget shows

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Container(id="main"):
            with Vertical(id="left"):
                yield Static(id="regs")
                yield Static(id="disasm")
            with Vertical(id="mid"):
                yield Static(id="source-wide")
                yield Static(id="stack-wide")
            with TabbedContent(id="tabs", initial="trace"):
                for pane_id, title in (
                    ("regs-tab", "regs"), ("trace", "trace"), ("serial", "COM1"),
                    ("memory", "memory"), ("stack-tab", "stack"), ("source-tab", "source"),
                    ("breaks", "breaks"), ("pages", "pages"), ("ptx", "explorer"),
                    ("screen", "VGA"),
                    ("info", "output"),
                ):  # fmt: skip
                    with TabPane(title, id=pane_id), VerticalScroll():
                        yield Static(id=f"{pane_id}-body")
        with Vertical(id="bottom"):
            yield CommandLine(
                id="cmd",
                placeholder=": a command (help lists them; Up/Down history, Tab completes)",
                suggester=CommandSuggester(self._symbol_names()),
            )
            yield Static(HINTS, id="hints")

    def _symbol_names(self) -> list[str]:
        sym = self.session.machine.symbolizer
        if sym is None:
            return []
        try:
            sym.symbol(0)  # loads the table
            return sorted({name for _s, _z, name in sym._symbols or ()})
        except Exception:  # noqa: BLE001 - completion is a convenience
            return []

    def on_mount(self) -> None:
        for name, title in (("regs", "registers"), ("disasm", "code"), ("source-wide", "source"),
                            ("stack-wide", "stack")):  # fmt: skip
            self.query_one(f"#{name}", Static).border_title = title
        self._apply_layout(self.size.width)
        self.refresh_views()

    def on_resize(self, event: events.Resize) -> None:
        self._apply_layout(event.size.width)
        self.call_after_refresh(self.refresh_views)

    def _apply_layout(self, width: int) -> None:
        mode = "narrow" if width < NARROW_BELOW else "wide" if width >= WIDE_FROM else "normal"
        self.layout_mode = mode
        main = self.query_one("#main")
        main.set_class(mode == "narrow", "narrow")
        main.set_class(mode == "wide", "wide")
        tabs = self.query_one("#tabs", TabbedContent)
        for pane_id, shown in (("regs-tab", mode == "narrow"), ("stack-tab", mode != "wide"),
                               ("source-tab", mode != "wide")):  # fmt: skip
            if shown:
                tabs.show_tab(pane_id)
            else:
                tabs.hide_tab(pane_id)
        if not self._tab_shown(tabs.active):
            tabs.active = "trace"

    def _tab_shown(self, pane_id: str) -> bool:
        if pane_id == "regs-tab":
            return self.layout_mode == "narrow"
        if pane_id in ("stack-tab", "source-tab"):
            return self.layout_mode != "wide"
        return True

    def _visible_tabs(self) -> list[str]:
        return [t for t in TABS if self._tab_shown(t)]

    # ------------------------------------------------------------------ drawing
    def _rows(self, widget_id: str, default: int) -> int:
        h = self.query_one(widget_id).content_size.height
        return h if h > 2 else default

    def _show(self, pane_id: str, key: str, content) -> None:
        self.rendered[key] = content
        self._put(f"#{pane_id}-body", content)

    def _put(self, selector: str, content) -> None:
        """Update a widget only if what it shows changed, and lay the screen out again only if
        its height may have (a full layout of a wide screen costs more than the rest)."""
        old = self._shown.get(selector)
        if old is not None and isinstance(content, Text) and old == content:
            return
        same_height = (
            isinstance(content, Text)
            and isinstance(old, Text)
            and old.plain.count("\n") == content.plain.count("\n")
        )
        self._shown[selector] = content
        self.query_one(selector, Static).update(content, layout=not same_height)

    def refresh_views(self) -> None:
        s = self.session
        m = s.machine
        c = m.cpu_state()
        where = m.symbolizer.describe(c.rip) if m.symbolizer else ""
        columns = self.query_one("#regs").content_size.width
        if self.layout_mode == "narrow":
            columns = self.size.width - 4
        regs = panes.registers_text(c, m.instructions, where, columns if columns > 10 else 88)
        code = panes.disassembly_text(m, c, self._rows("#disasm", 20) - 1, self.code_top)
        self.rendered.update(regs=regs, code=code)
        self._put("#regs", regs)
        self._put("#disasm", code)
        active = self.query_one("#tabs", TabbedContent).active
        if self.layout_mode == "narrow" and active == "regs-tab":
            self._show("regs-tab", "regs-tab", regs)
        self._show("trace", "trace", self._trace())
        self._show("serial", "serial", self._serial(m.serial))
        self._show("breaks", "breaks", panes.breakpoints_text(m))
        if active == "memory":
            self._show("memory", "memory", self._memory(c))
        stack = panes.stack_text(m, c)
        # as many rows as the source gets: its own pane, or a tab (less the tab strip)
        wide = self.layout_mode == "wide"
        rows = self._rows("#source-wide", 30) if wide else self._rows("#tabs", 32) - 2
        source = panes.source_text(self._source_view(c), rows)
        self.rendered.update(stack=stack, source=source)
        if self.layout_mode == "wide":
            self._put("#stack-wide", stack)
            self._put("#source-wide", source)
        else:
            self._show("stack-tab", "stack", stack)
            self._show("source-tab", "source", source)
        if active == "pages":
            self._show("pages", "pages", self._pages(c))
        if active == "screen":
            self._show("screen", "screen", Text(m.screen_text()))
        if active == "ptx":
            self._show("ptx", "ptx", explorer.render(m, self.explorer, self._rows("#tabs", 40)))
        self._status()

    def _status(self) -> None:
        s, m = self.session, self.session.machine
        p = self.progress if s.running else None
        count = p.instructions if p else m.instructions
        ns = p.virtual_ns if p else m.now_ns()
        parts = [f"{count:,} instructions", f"{ns / 1e9:.6f} s virtual"]
        mips = p.mips if p else s.mips if s.run_seconds >= 0.5 else 0.0
        if mips:
            parts.append(f"{mips:.1f} MIPS")
        if s.running:
            parts.append("running: Esc stops")
        else:
            if s.stop_on_exceptions:
                parts.append("stop on exceptions")
            if m.pending_exception is not None:
                parts.append("exception pending: s or c delivers it")
            if s.message:
                parts.append(s.message)
        line = " | ".join(parts)
        self.sub_title = line
        self.rendered["status"] = line
        self._put("#status", Text(line, style="bold" if s.running else ""))

    def _trace(self) -> Text:
        m, s = self.session.machine, self.session
        trace = Text()
        for e in m.trace.entries[-12:]:
            trace.append(e.line() + "\n", style="" if e.delivered else "bold red")
            if not e.delivered:
                trace.append(f"    {e.reason}\n", style="red")
                if e.escalation:
                    trace.append(f"    -> {e.escalation}\n", style="red")
        if m.trace.triple_fault:
            trace.append("triple fault\n", style="bold red reverse")
        pending = m.pending_exception
        if pending is not None:
            trace.append(f"pending, not delivered yet: {vector_name(pending.vector)}", style="bold")
            if pending.error_code is not None:
                trace.append(f" err={pending.error_code:#x}", style="bold")
            if pending.cr2 is not None:
                trace.append(f" CR2={pending.cr2:#x}", style="bold")
            trace.append(f" at {pending.rip:#x} (s or c delivers it)\n")
        if s.last is not None and s.ended:
            for d in s.last.diagnoses:
                trace.append(f"diagnosis ({d.kind}): {d.message}\n", style="yellow")
        return trace if trace.plain else Text("(no events yet)")

    @staticmethod
    def _serial(data: bytes) -> Text:
        return Text("\n".join(data.decode("latin-1").replace("\r", "").split("\n")[-200:]))

    def _memory(self, c: CpuState) -> Text:
        mv = self.memory
        address = mv.address if mv.address is not None else c.gpr["rsp"] & ~0xF
        # rows as wide as the tab: the ASCII column stays in view (padding and a scroll bar)
        columns = self.query_one("#tabs").content_size.width - 4
        return panes.memory_text(
            self.session.machine,
            address,
            mv.size,
            mv.before if mv.before_at == address else None,
            panes.memory_row_bytes(columns) if columns > 10 else 16,
        )

    def _remember_memory(self) -> None:
        """What the memory pane shows now, to highlight what the next run changes."""
        c = self.session.machine.cpu_state()
        mv = self.memory
        address = mv.address if mv.address is not None else c.gpr["rsp"] & ~0xF
        mv.before, mv.before_at = self.session.machine.read_linear(address, mv.size), address

    def _source_view(self, c: CpuState) -> panes.SourceView | None:
        sym = self.session.machine.symbolizer
        if self.listing is not None:
            name, line = self.listing
            return panes.SourceView(panes.find_source(self.kernel, name), name, line, False)
        found = sym.source_line(c.rip) if sym is not None else None
        if found is None:
            return None
        return panes.SourceView(panes.find_source(self.kernel, found.file), found.file,
                                found.line, True)  # fmt: skip

    def _pages(self, c: CpuState):
        mode = mmu.paging_mode(c.cr0, c.cr4, c.efer)
        if mode is mmu.PagingMode.OFF:
            return Text("paging is off (CR0.PG=0): linear addresses are physical")
        maps = mmu.mappings(self.session.machine.ram, c.cr3, cr0=c.cr0, cr4=c.cr4, efer=c.efer)
        table: Table = ptview.ranges_table(maps, f"{mode.value}, CR3={c.cr3:#x}")
        return table

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if not self.session.running:
            self.refresh_views()

    # ------------------------------------------------------------------ command output
    def show_info(self, text: Text) -> None:
        self._show("info", "info", text)
        tabs = self.query_one("#tabs", TabbedContent)
        if tabs.active != "info":
            self.previous_tab = tabs.active
        tabs.active = "info"

    def action_leave_info(self) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        if tabs.active == "info":
            tabs.active = self.previous_tab if self._tab_shown(self.previous_tab) else "trace"

    def action_tab(self, pane_id: str) -> None:
        self.query_one("#tabs", TabbedContent).active = pane_id

    def action_tab_number(self, n: int) -> None:
        shown = self._visible_tabs()
        if n <= len(shown):
            self.action_tab(shown[n - 1])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action.startswith("explorer_"):  # the explorer's keys, only where it is in front
            return self.query_one("#tabs", TabbedContent).active == "ptx"
        return True

    def action_explore(self, address: int | None = None) -> None:
        if self._busy():
            return
        m = self.session.machine
        self.explorer.diff = False
        if explorer.geometry(m) is None:
            self.session.message = "paging is off (CR0.PG=0): there is no page-table tree"
        else:
            if address is not None:
                explorer.open_at(m, self.explorer, address)
            else:
                explorer.open_at_fault(m, self.explorer)
        self.action_tab("ptx")
        self.refresh_views()

    def action_explorer_move(self, delta: int) -> None:
        explorer.move(self.session.machine, self.explorer, delta)
        self.refresh_views()

    def action_explorer_enter(self) -> None:
        explorer.enter(self.session.machine, self.explorer)
        self.refresh_views()

    def action_explorer_leave(self) -> None:
        if self.explorer.diff:
            self.explorer.diff = False
        else:
            explorer.leave(self.explorer)
        self.refresh_views()

    def action_explorer_mark(self) -> None:
        if self._busy():
            return
        mark = explorer.mark(self.session.machine, self.explorer)
        self.session.message = (f"marked at {mark.instructions:,} instructions: "
                                f"{len(mark.maps)} range(s); d shows what changes")  # fmt: skip
        self.refresh_views()

    def _mark_at(self, target: int, report) -> None:
        """The mark at instruction ``target`` of this run: replayed to, marked, and the machine
        brought back to where it is (a checkpoint of now)."""
        s = self.session
        now = s.machine.instructions
        mark = s.visit(target, lambda m: explorer.mark(m, self.explorer), report)
        if isinstance(mark, explorer.Mark):
            s.message = (f"marked at {target:,} instructions: {len(mark.maps)} range(s); back at "
                         f"{now:,}, d shows what changed")  # fmt: skip

    def action_explorer_diff(self) -> None:
        if self._busy():
            return
        self.explorer.diff = not self.explorer.diff
        if self.explorer.diff and self.explorer.mark is None:
            self.explorer.diff = False
            self.session.message = "no mark yet: m (or :ptmark) marks a point to diff against"
        self.action_tab("ptx")
        self.refresh_views()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # ------------------------------------------------------------------ running
    def _busy(self) -> bool:
        if self.session.running:
            self.session.message = "a run is in progress: Esc stops it"
            self._status()
            return True
        return False

    def _live(self, work, *args) -> None:
        """Run ``work(*args, report)`` on a worker thread; the UI shows its progress and
        refreshes when it stops."""
        if self._busy():
            return
        self._remember_memory()
        self.session.running = True  # until the worker's run starts: no second run
        self.progress = None
        self._status()

        def report(p: Progress) -> None:
            # posted, not waited for: the run goes on while the UI draws
            self.post_message(RunProgress(p))

        def go() -> None:
            try:
                work(*args, report)
            finally:
                self.session.running = False
                self.call_from_thread(self.refresh_views)

        self.run_worker(go, thread=True, exclusive=True, group="run", name="run")

    def on_run_progress(self, message: RunProgress) -> None:
        if self.session.running:
            self._show_progress(message.progress)

    def _show_progress(self, p: Progress) -> None:
        self.progress = p
        self._show("serial", "serial", self._serial(p.serial))
        if self.query_one("#tabs", TabbedContent).active == "screen":
            self._show("screen", "screen", Text(p.screen))
        self._status()

    def action_stop(self) -> None:
        if self.session.stop():
            return
        cmd = self.query_one("#cmd", CommandLine)
        if cmd.has_focus:
            cmd.value = ""
            self.set_focus(None)

    def action_step(self) -> None:
        if self._busy():
            return
        self._remember_memory()
        self.session.step()
        self.code_top = None
        self.refresh_views()

    def action_cont(self) -> None:
        self.code_top = None
        self._live(self.session.cont)

    def action_reverse(self) -> None:
        self.code_top = None
        self._live(self.session.reverse_step)

    def action_breakpoint(self) -> None:
        if self._busy():
            return
        self.session.toggle_breakpoint(self.session.machine.cpu_state().rip)
        self.refresh_views()

    def action_exceptions(self) -> None:
        if self._busy():
            return
        self.session.set_stop_on_exceptions(not self.session.stop_on_exceptions)
        self.refresh_views()

    def action_scroll_code(self, direction: int) -> None:
        if self._busy():
            return
        m = self.session.machine
        c = m.cpu_state()
        rows = max(4, self._rows("#disasm", 20) - 1)
        try:
            shown = panes.disassembly_rows(m, c, self.code_top, rows)
        except Exception:  # noqa: BLE001 - unreadable code: stay
            return
        if not shown:
            return
        if direction > 0:
            last = shown[-1]
            self.code_top = last[0] + len(last[1])
        else:
            # back by about a page of bytes, to an instruction that decodes up to the top
            top = shown[0][0]
            self.code_top = max(0, top - 4 * rows)
            found = m.core.disassemble(self.code_top, c.code_bits, 4 * rows)
            starts = [a for a, _r, _t in found if a < top]
            self.code_top = starts[-(rows - 1)] if len(starts) >= rows - 1 else self.code_top
        self.refresh_views()

    def action_code_at_rip(self) -> None:
        self.code_top = None
        self.refresh_views()

    def action_command(self) -> None:
        if self._busy():
            return
        cmd = self.query_one("#cmd", CommandLine)
        cmd.value = ""
        # at once, not later as Widget.focus() does: keys typed right after ":" are the line's
        self.set_focus(cmd)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.value = ""
        self.set_focus(None)
        assert isinstance(event.input, CommandLine)
        event.input.remember(event.value.strip())
        self.run_command(event.value)

    # ------------------------------------------------------------------ commands
    def _where(self, text: str, what: str = "address") -> int | str:
        return parse_number(text, what) if is_number(text) else text

    def _address(self, text: str, what: str = "address") -> int:
        where = self._where(text, what)
        if isinstance(where, int):
            return where
        sym = self.session.machine.symbolizer
        address = sym.address_of(where) if sym is not None else None
        if address is None:
            raise CommandError(f"no symbol {where!r} in the kernel")
        return address

    def run_command(self, line: str) -> None:
        words = line.split()
        if not words:
            return
        if self._busy():
            return
        try:
            self._command(words)
        except CommandError as e:
            self.session.message = str(e)
        self.refresh_views()

    def _command(self, words: list[str]) -> None:
        s = self.session
        verb, args = VERBS.get(words[0]), words[1:]
        if verb is None:
            raise CommandError(f"unknown command {words[0]!r}: {', '.join(COMMAND_NAMES)}")
        usage = {syntax.split()[0].rstrip(","): syntax for syntax, _w in COMMANDS}
        needs = {"break": 1, "delete": 1, "watch": 1, "run": 1, "goto": 1, "x": 1, "code": 1,
                 "walk": 1}  # fmt: skip
        most = {"break": 1, "delete": 1, "watch": 3, "run": 1, "goto": 1, "x": 2, "code": 1,
                "walk": 1, "step": 1, "list": 1, "ptx": 1, "screenshot": 1, "ptmark": 1}  # fmt: skip
        if len(args) < needs.get(verb, 0) or len(args) > most.get(verb, 0):
            raise CommandError(f"usage: {usage.get(verb, verb)}")
        if verb == "break":
            s.toggle_breakpoint(self._where(args[0]))
        elif verb == "delete":
            self._delete(args[0])
        elif verb == "watch":
            where = self._where(args[0])
            size = parse_number(args[1], "watch length", 1, MAX_BYTES) if len(args) > 1 else 1
            kind = args[2] if len(args) > 2 else "w"
            if kind not in ("r", "w", "rw"):
                raise CommandError(f"a watchpoint watches r, w or rw, not {kind!r}")
            if isinstance(where, int) and where + size - 1 > MAX_ADDRESS:
                raise CommandError(f"{size} byte(s) at {where:#x} would wrap past 2^64")
            s.toggle_watchpoint(where, size, kind)
        elif verb == "continue":
            self.action_cont()
        elif verb == "run":
            count = parse_number(args[0], "run count", 1, 1 << 62)
            self._live(s.run, count)
        elif verb == "goto":
            target = parse_number(args[0], "instruction count", 0, 1 << 62)
            self.code_top = None
            self._live(s.goto, target)
        elif verb == "step":
            count = parse_number(args[0], "step count", 1, 100_000) if args else 1
            self._remember_memory()
            before = s.last
            for _ in range(count):
                s.step()
                if s.last is not before or s.ended:
                    break  # the run ended, or the step stopped on something
        elif verb == "x":
            address = self._address(args[0])
            size = parse_number(args[1], "byte count", 1, MAX_BYTES) if len(args) > 1 else 256
            self.memory = MemoryView(address, size)
            self.action_tab("memory")
        elif verb == "list":
            self._list(args[0] if args else None)
        elif verb == "code":
            self.code_top = self._address(args[0])
        elif verb == "walk":
            self.show_info(panes.walk_text(s.machine, parse_number(args[0], "address")))
        elif verb == "ptx":
            self.action_explore(self._address(args[0]) if args else None)
        elif verb == "ptmark":
            if args:
                self._live(self._mark_at, parse_number(args[0], "instruction count", 0, 1 << 62))
            else:
                self.action_explorer_mark()
        elif verb == "ptdiff":
            self.explorer.diff = False
            self.action_explorer_diff()
        elif verb in ("lapic", "ioapic", "pic"):
            self.show_info(Text(s.controller_state(verb)))
        elif verb == "help":
            self.action_help()
        elif verb == "screenshot":
            self._save_screen(args[0] if args else None)

    def action_save_screen(self) -> None:
        try:
            self._save_screen(None)
        except CommandError as e:
            self.session.message = str(e)
        self._status()

    def _save_screen(self, name: str | None) -> None:
        """An SVG of the screen as it is: saved here, or, in a browser, offered as a download
        (Textual's delivery through textual-serve)."""
        if self.is_web:
            self.deliver_screenshot(name)
            self.session.message = "screenshot sent to the browser"
            return
        try:
            path = self.save_screenshot(name)
        except OSError as e:
            raise CommandError(f"screenshot: cannot write {name or 'it'}: {e.strerror}") from None
        self.session.message = f"screenshot saved to {path}"

    def _delete(self, arg: str) -> None:
        m = self.session.machine
        bps, wps = m.core.breakpoints, m.watchpoints
        if arg == "all":
            for a in bps:
                m.remove_breakpoint(a)
            for w in wps:
                m.remove_watchpoint(*w)
            self.session.message = f"removed {len(bps)} breakpoint(s), {len(wps)} watchpoint(s)"
            return
        if arg.startswith("#"):
            n = parse_number(arg[1:], "list number", 1, max(1, len(bps) + len(wps)))
            if n > len(bps) + len(wps):
                raise CommandError(f"no #{n}: the breaks tab lists {len(bps) + len(wps)}")
            if n <= len(bps):
                address = bps[n - 1]
            else:
                m.remove_watchpoint(*wps[n - len(bps) - 1])
                self.session.message = f"watchpoint at {wps[n - len(bps) - 1][0]:#x} removed"
                return
        else:
            address = self._address(arg)
        if address in bps:
            m.remove_breakpoint(address)
            self.session.message = f"breakpoint at {address:#x} removed"
            return
        watched = [w for w in wps if w[0] == address]
        if watched:
            for w in watched:
                m.remove_watchpoint(*w)
            self.session.message = f"watchpoint at {address:#x} removed"
            return
        raise CommandError(f"no breakpoint or watchpoint at {address:#x}")

    def _list(self, arg: str | None) -> None:
        sym = self.session.machine.symbolizer
        if arg is None:
            self.listing = None
        elif ":" in arg or arg.isdigit():
            name, _, number = arg.rpartition(":")
            if not name:
                view = self._source_view(self.session.machine.cpu_state())
                if view is None:
                    raise CommandError("no source line at RIP: list FILE:LINE or SYMBOL")
                name = view.name
            self.listing = (name, parse_number(number, "line", 1, 1 << 31))
        else:
            address = self._address(arg)
            found = sym.source_line(address) if sym is not None else None
            if found is None:
                raise CommandError(f"no source line for {address:#x}")
            self.listing = (found.file, found.line)
        if self.layout_mode != "wide":
            self.action_tab("source-tab")
