"""The Textual debugger: registers, disassembly, the fault trace, serial output, page tables
and the VGA screen of one machine, driven a step, a breakpoint or a reverse step at a time.

    triplefault debug KERNEL [--append ...]

Keys: s step, c continue, u reverse step, b breakpoint at RIP, e stop on exceptions (before
delivery: then s or c delivers, so a triple fault can be walked through one delivery at a
time), p page tables, v screen, : command (break SYMBOL|ADDR, delete ADDR, watch SYMBOL|ADDR
[LEN] [r|w|rw] to stop right after an access, run N, goto N, x ADDR [N] for memory, walk VADDR
for a page walk explained, lapic, ioapic and pic for the interrupt controllers' state), i hide
command output, q quit.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Input, Static

from emu import Machine, mmu
from emu.core.cpu_state import CpuState
from emu.mmu import view as ptview
from emu.report import vector_name

from .session import DebugSession

FLAG_NAMES = ((0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"),
              (10, "DF"), (11, "OF"), (14, "NT"), (16, "RF"), (17, "VM"), (18, "AC"))  # fmt: skip


def registers_text(c: CpuState, instructions: int, where: str) -> Text:
    t = Text()
    t.append(f"{c.mode} CPL{c.cpl}  ", style="bold")
    t.append(f"RIP {c.rip:#x}", style="bold yellow")
    t.append(f"  {where}\n")
    flags = " ".join(name for bit, name in FLAG_NAMES if c.rflags >> bit & 1)
    t.append(f"RFLAGS {c.rflags:#x} [{flags}]   instructions {instructions:,}\n")
    names = list(c.gpr)
    for i in range(0, len(names), 4):
        t.append("  ".join(f"{n.upper():>3} {c.gpr[n]:016x}" for n in names[i : i + 4]) + "\n")
    segs = "  ".join(f"{k.upper()} {v.selector:04x}" for k, v in c.segments.items())
    t.append(segs + "\n")
    t.append(f"CR0 {c.cr0:#x}  CR2 {c.cr2:#x}  CR3 {c.cr3:#x}  CR4 {c.cr4:#x}  EFER {c.efer:#x}\n")
    t.append(f"GDTR {c.gdtr[0]:#x}/{c.gdtr[1]:#x}  IDTR {c.idtr[0]:#x}/{c.idtr[1]:#x}")
    return t


def disassembly_text(machine: Machine, c: CpuState, count: int = 40, before: int = 8) -> Text:
    """The code around RIP: up to ``before`` instructions of the function that leads to it
    (decoded from the function's start, so they are the real instruction boundaries), then RIP
    and what follows."""
    t = Text()
    breakpoints = set(machine.core.breakpoints)
    sym = machine.symbolizer
    start = c.rip
    named = sym.symbol(c.rip) if sym is not None else None
    if named is not None and 0 < named[1] <= 0x2000:
        start = c.rip - named[1]
    try:
        rows = machine.core.disassemble(start, c.code_bits, 2048 if start != c.rip else count)
        if start != c.rip:
            at = next((i for i, r in enumerate(rows) if r[0] == c.rip), None)
            if at is None:  # RIP is not on an instruction boundary from the symbol: from RIP
                rows = machine.core.disassemble(c.rip, c.code_bits, count)
            else:
                rows = rows[max(0, at - before) : at + count - min(at, before)]
    except Exception as e:  # noqa: BLE001 - unreadable memory is shown, not raised
        return Text(f"cannot read code at {c.rip:#x}: {e}", style="red")
    if not rows:
        return Text(f"no instruction decodes at {c.rip:#x}", style="red")
    for address, raw, text in rows:
        if sym is not None:
            label = sym.symbol(address)
            if label is not None and label[1] == 0:
                t.append(f"<{label[0]}>:\n", style="bold cyan")
        mark = "●" if address in breakpoints else " "
        arrow = "▶" if address == c.rip else " "
        style = "bold yellow" if address == c.rip else ("dim" if address < c.rip else "")
        t.append(f"{mark}{arrow} {address:#x}  {raw.hex(' '):<33} {text}\n", style=style)
    return t


class DebuggerApp(App):
    """One machine, shown and driven."""

    TITLE = "Triplefault"
    AUTO_FOCUS = None  # keys go to the bindings, not to the (hidden) command line
    CSS = """
    #left { width: 3fr; }
    #right { width: 2fr; }
    #regs { height: auto; border: round $accent; padding: 0 1; }
    #disasm { height: 1fr; border: round $accent; padding: 0 1; }
    #trace { height: 1fr; border: round $warning; padding: 0 1; }
    #serial { height: 1fr; border: round $success; padding: 0 1; }
    #pages, #screen, #info { height: 2fr; border: round $primary; padding: 0 1; display: none; }
    #cmd { dock: bottom; display: none; }
    """
    BINDINGS = [
        ("s", "step", "Step"),
        ("c", "cont", "Continue"),
        ("u", "reverse", "Reverse step"),
        ("b", "breakpoint", "Breakpoint"),
        ("e", "exceptions", "Stop on exceptions"),
        ("p", "pages", "Page tables"),
        ("v", "screen", "Screen"),
        ("i", "hide_info", "Hide output"),
        (":", "command", "Command"),
        ("q", "quit", "Quit"),
    ]

    def __init__(self, machine: Machine, kernel: str = "") -> None:
        super().__init__()
        self.session = DebugSession(machine)
        self.kernel = kernel
        self.rendered: dict[str, object] = {}  # what each panel shows now (for tests and tools)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="left"):
                yield Static(id="regs")
                yield Static(id="disasm")
            with Vertical(id="right"):
                yield Static(id="info")
                yield Static(id="pages")
                yield Static(id="screen")
                yield Static(id="trace")
                yield Static(id="serial")
        yield Input(
            id="cmd",
            placeholder="break SYMBOL|ADDR  delete ADDR  run N  goto N  x ADDR [N]  walk VADDR",
        )
        yield Footer()

    def on_mount(self) -> None:
        for name, title in (("regs", "registers"), ("disasm", "code"), ("trace", "fault trace"),
                            ("serial", "COM1"), ("pages", "page tables"), ("screen", "VGA"),
                            ("info", "command output (i hides)")):  # fmt: skip
            self.query_one(f"#{name}", Static).border_title = title
        self.refresh_views()

    # ------------------------------------------------------------------ drawing
    def refresh_views(self) -> None:
        s = self.session
        m = s.machine
        c = m.cpu_state()
        where = m.symbolizer.describe(c.rip) if m.symbolizer else ""
        regs, code = registers_text(c, m.instructions, where), disassembly_text(m, c)
        self.rendered.update(regs=regs, code=code)
        self.query_one("#regs", Static).update(regs)
        self.query_one("#disasm", Static).update(code)
        trace = Text()
        entries = m.trace.entries[-12:]
        for e in entries:
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
        if not trace.plain:
            trace = Text("(no events yet)")
        serial = Text("\n".join(m.serial.decode("latin-1").replace("\r", "").split("\n")[-20:]))
        self.rendered.update(trace=trace, serial=serial)
        self.query_one("#trace", Static).update(trace)
        self.query_one("#serial", Static).update(serial)
        if self.query_one("#pages", Static).display:
            self.rendered["pages"] = self._pages(c)
            self.query_one("#pages", Static).update(self.rendered["pages"])
        if self.query_one("#screen", Static).display:
            self.rendered["screen"] = Text(m.screen_text())
            self.query_one("#screen", Static).update(self.rendered["screen"])
        status = [f"{m.instructions:,} instructions"]
        if s.stop_on_exceptions:
            status.append("stop on exceptions")
        if m.pending_exception is not None:
            status.append("exception pending: s or c delivers it")
        if s.message:
            status.append(s.message)
        self.sub_title = " | ".join(status)

    def _pages(self, c: CpuState):
        mode = mmu.paging_mode(c.cr0, c.cr4, c.efer)
        if mode is mmu.PagingMode.OFF:
            return Text("paging is off (CR0.PG=0): linear addresses are physical")
        maps = mmu.mappings(self.session.machine.ram, c.cr3, cr0=c.cr0, cr4=c.cr4, efer=c.efer)
        table: Table = ptview.ranges_table(maps, f"{mode.value}, CR3={c.cr3:#x}")
        return table

    # ------------------------------------------------------------------ command output
    def show_info(self, text: Text) -> None:
        self.rendered["info"] = text
        w = self.query_one("#info", Static)
        w.update(text)
        w.display = True

    def action_hide_info(self) -> None:
        self.query_one("#info", Static).display = False

    def _dump(self, address: int, size: int) -> Text:
        """Memory at a linear address, through the MMU without side effects (no A/D bits)."""
        size = max(1, min(size, 4096))
        data = self.session.machine.core.read_linear(address, size)
        t = Text(f"{size} bytes at linear {address:#x}\n", style="bold")
        if not data:
            t.append("not mapped (the walk fails: try walk ADDR)", style="red")
            return t
        for off in range(0, len(data), 16):
            chunk = data[off : off + 16]
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            t.append(f"{address + off:016x}  {chunk.hex(' '):<47}  {text}\n")
        if len(data) < size:
            t.append(f"(stops at {address + len(data):#x}: not mapped)", style="red")
        return t

    def _walk(self, vaddr: int) -> Text:
        """Every paging level of one translation, explained (no side effects)."""
        m = self.session.machine
        c = m.cpu_state()
        w = mmu.walk(m.ram, c.cr3, vaddr, "r", cr0=c.cr0, cr4=c.cr4, efer=c.efer, cpl=c.cpl)
        return Text(w.explain(), style="" if w.ok else "red")

    # ------------------------------------------------------------------ actions
    def _after(self) -> None:
        self.refresh_views()

    def action_step(self) -> None:
        self.session.step()
        self._after()

    def action_cont(self) -> None:
        self.session.cont()
        self._after()

    def action_reverse(self) -> None:
        self.session.reverse_step()
        self._after()

    def action_breakpoint(self) -> None:
        self.session.toggle_breakpoint(self.session.machine.cpu_state().rip)
        self._after()

    def action_exceptions(self) -> None:
        self.session.set_stop_on_exceptions(not self.session.stop_on_exceptions)
        self._after()

    def action_pages(self) -> None:
        w = self.query_one("#pages", Static)
        w.display = not w.display
        self._after()

    def action_screen(self) -> None:
        w = self.query_one("#screen", Static)
        w.display = not w.display
        self._after()

    def action_command(self) -> None:
        cmd = self.query_one("#cmd", Input)
        cmd.display = True
        cmd.value = ""
        cmd.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.display = False
        self.set_focus(None)
        self.run_command(event.value)

    def run_command(self, line: str) -> None:
        s = self.session
        words = line.split()
        if not words:
            return
        verb, args = words[0], words[1:]

        def number(text: str) -> int:
            return int(text.replace("_", "").replace(",", ""), 0)

        try:
            if verb in ("break", "b") and args:
                target = args[0]
                s.toggle_breakpoint(number(target) if target[0].isdigit() else target)
            elif verb in ("delete", "d") and args:
                s.machine.remove_breakpoint(number(args[0]))
                s.message = f"breakpoint at {args[0]} removed"
            elif verb == "run" and args:
                s.run(number(args[0]))
            elif verb == "goto" and args:
                s.goto(number(args[0]))
            elif verb in ("watch", "w") and args:
                target = args[0]
                where = number(target) if target[0].isdigit() else target
                size = number(args[1]) if len(args) > 1 else 1
                kind = args[2] if len(args) > 2 else "w"
                s.toggle_watchpoint(where, size, kind)
            elif verb == "x" and args:
                self.show_info(
                    self._dump(number(args[0]), number(args[1]) if len(args) > 1 else 128)
                )
            elif verb == "walk" and args:
                self.show_info(self._walk(number(args[0])))
            elif verb in ("lapic", "ioapic", "pic"):
                self.show_info(Text(s.controller_state(verb)))
            else:
                s.message = (
                    f"unknown command {line!r}: break, delete, run N, goto N, x ADDR [N], "
                    "walk VADDR, lapic, ioapic, pic"
                )
        except ValueError:
            s.message = f"not a number in {line!r}"
        self._after()
