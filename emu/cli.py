"""The ``triplefault`` command line.

Every user-facing problem (bad kernel file, bad flag) is one line on stderr and exit status 2;
a run's own exit status is documented in README.md (debug-exit follows QEMU).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Sequence

from devices.cmos_rtc import parse_rtc_base
from devices.uart16550 import serial_input_from, serial_sink_for

from .errors import ConfigError, EmuError, InternalError
from .images import resolve_kernel
from .mmu import view as ptview
from .version import LOADER_NAME, __version__

EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE: an internal error (a bug in Triplefault)


def _port(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"port {text} is outside 0-0xFFFF")
    return value


def _count(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than zero")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other error
        self.exit(EXIT_USAGE, f"triplefault: error: {message} (see triplefault --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="triplefault", description="A full-system x86-64 emulator for kernel developers."
    )
    p.add_argument("--version", action="version", version=f"triplefault {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log device and engine notes")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="boot a Multiboot2/Multiboot1 kernel headless",
        description="Boot a kernel ELF the way GRUB 2.06 does and run it headless. "
        "Without KERNEL, boots the bundled demo kernel (images/hello).",
    )
    run.add_argument(
        "kernel",
        nargs="?",
        default="hello",
        help="kernel ELF, or the name of a bundled image (hello, hello-mb1, lost-in-32bit)",
    )
    run.add_argument(
        "--append", "--cmdline", dest="cmdline", default="", help="kernel command line"
    )
    run.add_argument("--memory", "-m", default="128M", help="guest RAM size (default 128M)")
    run.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="FILE[,ARGS]",
        help="load a boot module (repeatable)",
    )
    run.add_argument(
        "--protocol", choices=("auto", "multiboot2", "multiboot1", "mb2", "mb1"), default="auto"
    )
    run.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        help="stop after this many wall-clock seconds (default 30; 0 = never)",
    )
    run.add_argument(
        "--max-instructions", type=_count, default=None, help="stop after exactly N instructions"
    )
    run.add_argument(
        "--serial", default="stdio", help="COM1 output: stdio (default), file:PATH or none"
    )
    run.add_argument(
        "--serial-input", default=None, help="COM1 input: a literal string, file:PATH or stdio"
    )
    run.add_argument(
        "--no-debug-exit",
        dest="debug_exit",
        action="store_false",
        help="do not map QEMU's isa-debug-exit device",
    )
    run.add_argument(
        "--debug-exit-port", type=_port, default=0xF4, help="isa-debug-exit port (default 0xf4)"
    )
    run.add_argument(
        "--trace",
        choices=("int",),
        action="append",
        default=[],
        help="int: log every exception and interrupt delivery as it happens (like QEMU's -d int)",
    )
    run.add_argument("--screen", action="store_true", help="print the final VGA text screen")
    run.add_argument(
        "--screen-color", action="store_true", help="print the final screen with ANSI colours"
    )
    run.add_argument(
        "--screenshot",
        metavar="PNG",
        help="write the final screen as a PNG: the framebuffer of the VBE mode GRUB set for the "
        "kernel's video request, else the VGA text screen (and, with --reboot, at each triple fault)",
    )
    run.add_argument(
        "--realtime",
        action="store_true",
        help="pace virtual time to the wall clock (HLT sleeps); runs stay deterministic",
    )
    run.add_argument("--keys", default="", help="text typed on the PS/2 keyboard")
    run.add_argument(
        "--keys-at",
        type=_seconds,
        default=1.0,
        help="virtual time (seconds) of the first key of --keys (default 1)",
    )
    run.add_argument(
        "--rtc-base",
        default="2024-01-01T00:00:00",
        help="the date the CMOS clock starts at (then virtual time; default 2024-01-01T00:00:00)",
    )
    run.add_argument(
        "--reboot",
        action="store_true",
        help="on a triple fault, reset like a PC and boot again (default: stop and explain)",
    )
    run.add_argument("--cpu", choices=("qemu64", "unicorn"), default="qemu64",
                     help="the CPU: QEMU 7.2's qemu64 (default) or Unicorn's own model")  # fmt: skip
    run.add_argument(
        "--loader-name",
        default=LOADER_NAME,
        metavar="TEXT",
        help=f"the boot loader name the kernel is given (default {LOADER_NAME!r}, GRUB's own)",
    )
    run.add_argument(
        "--strict-memory",
        action="store_true",
        help="stop at an access to physical memory where nothing is (default: it reads 0 and "
        "writes are dropped, as on a PC; the report lists the accesses)",
    )
    run.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    run.add_argument("--quiet", "-q", action="store_true", help="print no run report")

    def inspect_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("kernel", help="kernel ELF, or the name of a bundled image")
        where = sp.add_mutually_exclusive_group()
        where.add_argument("--at", metavar="SYMBOL", help="stop when execution reaches SYMBOL")
        where.add_argument("--after", type=_count, metavar="N", help="stop after N instructions")
        sp.add_argument("--append", "--cmdline", dest="cmdline", default="")
        sp.add_argument("--memory", "-m", default="128M")
        sp.add_argument("--timeout", type=_seconds, default=30.0)
        sp.add_argument("--plain", action="store_true", help="no colours")
        sp.add_argument("--cpu", choices=("qemu64", "unicorn"), default="qemu64",
                        help="the CPU: QEMU 7.2's qemu64 (default) or Unicorn's own model")  # fmt: skip

    pt = sub.add_parser(
        "pt",
        help="show the page tables of a kernel at a point of its run",
        description="Boot KERNEL, stop at --at SYMBOL, after --after N instructions, or where "
        "the run ends, and show the page tables CR3 points to.",
    )
    inspect_args(pt)
    view = pt.add_mutually_exclusive_group()
    view.add_argument(
        "--ranges", action="store_true", help="merged ranges, like QEMU's info mem (default)"
    )
    view.add_argument("--tree", action="store_true", help="every table and entry, level by level")
    pt.add_argument(
        "--filter",
        action="append",
        default=[],
        choices=sorted(ptview.FILTERS),
        help="keep only ranges that are: wx, user, kernel, nx, x, w, ro, dirty, global",
    )
    tr = sub.add_parser(
        "translate",
        help="translate one virtual address, every paging level explained",
        description="Boot KERNEL, stop as for `pt`, and walk VADDR through the page tables.",
    )
    inspect_args(tr)
    tr.add_argument("vaddr", help="the virtual address (hex or decimal)")
    gs = sub.add_parser(
        "gdbserver",
        help="wait for gdb on 127.0.0.1:PORT, before the first instruction (like qemu -s -S)",
        description="Boot KERNEL and serve the gdb remote protocol on 127.0.0.1:PORT, stopped "
        "before the first instruction: gdb KERNEL -ex 'target remote :PORT'. Memory is read at "
        "linear addresses through the MMU; `monitor trace`, `monitor walk VADDR` and `monitor pt` "
        "show the fault trace and the page tables.",
    )
    gs.add_argument("kernel", help="kernel ELF, or the name of a bundled image")
    gs.add_argument("--port", type=int, default=1234)
    gs.add_argument("--append", "--cmdline", dest="cmdline", default="")
    gs.add_argument("--memory", "-m", default="128M")
    gs.add_argument("--cpu", choices=("qemu64", "unicorn"), default="qemu64",
                    help="the CPU: QEMU 7.2's qemu64 (default) or Unicorn's own model")  # fmt: skip
    gs.add_argument("--stop-on-exceptions", action="store_true",
                    help="stop at every exception before it is delivered")  # fmt: skip
    dbg = sub.add_parser(
        "debug",
        help="open the debugger (registers, code, fault trace, page tables; step and reverse)",
        description="Boot KERNEL and open the Textual debugger on its first instruction. Keys: "
        "s step, c continue, u reverse step, b breakpoint, e stop on exceptions, p page tables, "
        "v screen, : command (break SYMBOL, delete ADDR, run N, goto N), q quit.",
    )
    dbg.add_argument("kernel", help="kernel ELF, or the name of a bundled image")
    dbg.add_argument("--append", "--cmdline", dest="cmdline", default="")
    dbg.add_argument("--memory", "-m", default="128M")
    dbg.add_argument("--cpu", choices=("qemu64", "unicorn"), default="qemu64",
                    help="the CPU: QEMU 7.2's qemu64 (default) or Unicorn's own model")  # fmt: skip
    dbg.add_argument("--break", dest="breaks", action="append", default=[], metavar="SYMBOL",
                     help="a breakpoint at SYMBOL or ADDR before the first instruction")  # fmt: skip
    tr.add_argument("--access", choices=("read", "write", "fetch"), default="read")
    tr.add_argument("--cpl", type=int, choices=(0, 3), default=0)
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    from .machine import Machine  # imported here so `triplefault --help` stays fast

    protocol = {"mb2": "multiboot2", "mb1": "multiboot1"}.get(args.protocol, args.protocol)
    try:
        sink = serial_sink_for("none" if args.json and args.serial == "stdio" else args.serial)
        serial_input = serial_input_from(args.serial_input) if args.serial_input else b""
        rtc_base = parse_rtc_base(args.rtc_base)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    kernel = resolve_kernel(args.kernel)
    machine = Machine.from_elf(
        kernel,
        memory=args.memory,
        cmdline=args.cmdline,
        modules=args.module,
        protocol=protocol,
        serial_sink=sink,
        serial_input=serial_input,
        debug_exit=args.debug_exit,
        debug_exit_port=args.debug_exit_port,
        trace_sink=(lambda line: sys.stderr.write(line + "\n")) if "int" in args.trace else None,
        reboot=args.reboot,
        rtc_base=rtc_base,
        keys=args.keys.encode().decode("unicode_escape") if args.keys else "",
        keys_at=args.keys_at,
        realtime=args.realtime,
        strict_memory=args.strict_memory,
        loader_name=args.loader_name,
        cpu=args.cpu,
    )
    if args.screenshot:
        machine.on_triple_fault.append(lambda m: m.screenshot(args.screenshot))
    try:
        result = machine.run(max_instructions=args.max_instructions, timeout=args.timeout or None)
    finally:
        if hasattr(sink, "close"):
            sink.close()
    if args.screenshot:
        try:
            machine.screenshot(args.screenshot)
        except OSError as e:
            raise ConfigError(f"cannot write {args.screenshot}: {e.strerror}") from None
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        sys.stdout.flush()
        if args.screen or args.screen_color:
            screen = machine.vga.ansi() if args.screen_color else machine.screen_text()
            sys.stderr.write("── screen " + "─" * 56 + "\n" + screen + "\n")
        if result.serial and not result.serial.endswith(b"\n") and args.serial == "stdio":
            sys.stderr.write("\n")
        sys.stderr.write("── triplefault run report " + "─" * 40 + "\n")
        sys.stderr.write(f"kernel: {kernel}\n")
        sys.stderr.write(result.describe() + "\n")
    return result.exit_status


def _stop_point(args: argparse.Namespace):
    """Boot the kernel and run it to the requested point: (machine, result, description)."""
    from .machine import Machine

    kernel = resolve_kernel(args.kernel)
    machine = Machine.from_elf(kernel, memory=args.memory, cmdline=args.cmdline, cpu=args.cpu)
    if args.at:
        address = machine.add_breakpoint(args.at)
        result = machine.run(timeout=args.timeout or None)
        if result.stop_reason != "breakpoint":
            raise ConfigError(
                f"the run ended ({result.headline()}) before reaching {args.at} at 0x{address:x}"
            )
        where = f"at {args.at} (0x{address:x}), after {result.instructions:,} instructions"
    elif args.after:
        result = machine.run(max_instructions=args.after, timeout=args.timeout or None)
        where = f"after {result.instructions:,} instructions ({result.stop_reason})"
    else:
        result = machine.run(timeout=args.timeout or None)
        where = f"where the run ended ({result.stop_reason}), after {result.instructions:,} instructions"
    return machine, result, where


def _cmd_pt(args: argparse.Namespace) -> int:
    from . import mmu

    machine, result, where = _stop_point(args)
    c = result.cpu
    out = ptview.console(args.plain or not sys.stdout.isatty())
    mode = mmu.paging_mode(c.cr0, c.cr4, c.efer)
    out.print(f"{args.kernel}: {mode.value}, CR3=0x{c.cr3:x}, {where}")
    if args.tree:
        out.print(ptview.tree_text(machine.ram, c.cr3, cr0=c.cr0, cr4=c.cr4, efer=c.efer), end="")
        return 0
    maps = mmu.mappings(machine.ram, c.cr3, cr0=c.cr0, cr4=c.cr4, efer=c.efer)
    for name in args.filter:
        maps = [m for m in maps if ptview.FILTERS[name](m)]
    if mode is mmu.PagingMode.OFF:
        out.print("paging is off (CR0.PG=0): linear addresses are physical")
        return 0
    title = f"{len(maps)} range(s)" + (f" ({', '.join(args.filter)})" if args.filter else "")
    out.print(ptview.ranges_table(maps, title))
    return 0


def _cmd_translate(args: argparse.Namespace) -> int:
    from . import mmu

    try:
        vaddr = int(args.vaddr, 0)
    except ValueError:
        raise ConfigError(f"{args.vaddr!r} is not an address") from None
    machine, result, where = _stop_point(args)
    c = result.cpu
    w = mmu.walk(machine.ram, c.cr3, vaddr, args.access, cr0=c.cr0, cr4=c.cr4, efer=c.efer,
                 cpl=args.cpl)  # fmt: skip
    out = ptview.console(args.plain or not sys.stdout.isatty())
    out.print(f"{args.kernel}: CR3=0x{c.cr3:x}, {where}")
    out.print(ptview.walk_text(w), end="")
    return 0 if w.ok else 1


def _cmd_gdbserver(args: argparse.Namespace) -> int:
    from .gdbstub import GdbStub
    from .machine import Machine

    kernel = resolve_kernel(args.kernel)
    machine = Machine.from_elf(kernel, memory=args.memory, cmdline=args.cmdline, cpu=args.cpu)
    if args.stop_on_exceptions:
        machine.break_on_exceptions(*range(32))
    stub = GdbStub(machine)
    port = stub.listen(args.port)
    sys.stderr.write(f"triplefault: waiting for gdb on 127.0.0.1:{port} "
                     f"(gdb {kernel} -ex 'target remote :{port}')\n")  # fmt: skip
    sys.stderr.flush()
    stub.serve()
    return 0


def _cmd_debug(args: argparse.Namespace) -> int:
    from tui.app import DebuggerApp

    from .machine import Machine

    kernel = resolve_kernel(args.kernel)
    machine = Machine.from_elf(
        kernel, memory=args.memory, cmdline=args.cmdline, serial_sink=None, cpu=args.cpu
    )
    for where in args.breaks:
        machine.add_breakpoint(int(where, 0) if where[:1].isdigit() else where)
    DebuggerApp(machine, str(kernel)).run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="triplefault: %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "pt":
            return _cmd_pt(args)
        if args.command == "translate":
            return _cmd_translate(args)
        if args.command == "debug":
            return _cmd_debug(args)
        if args.command == "gdbserver":
            return _cmd_gdbserver(args)
    except EmuError as e:
        sys.stderr.write(f"triplefault: error: {e}\n")
        return EXIT_USAGE
    except InternalError as e:
        # a bug of ours, not the guest's or the input's: one line, the traceback with -v
        if args.verbose:
            traceback.print_exception(e.error)
        sys.stderr.write(f"triplefault: {e} (please report it; -v shows the traceback)\n")
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        sys.stderr.write("triplefault: interrupted\n")
        return 130
    parser.print_help()
    return EXIT_USAGE
