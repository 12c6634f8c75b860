"""The ``triplefault`` command line.

Every user-facing problem (bad kernel file, bad flag) is one line on stderr and exit status 2;
a run's own exit status is documented in README.md (debug-exit follows QEMU).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from devices.uart16550 import serial_input_from, serial_sink_for

from .errors import ConfigError, EmuError
from .images import resolve_kernel
from .version import __version__

EXIT_USAGE = 2


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
    run.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    run.add_argument("--quiet", "-q", action="store_true", help="print no run report")
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    from .machine import Machine  # imported here so `triplefault --help` stays fast

    protocol = {"mb2": "multiboot2", "mb1": "multiboot1"}.get(args.protocol, args.protocol)
    try:
        sink = serial_sink_for("none" if args.json and args.serial == "stdio" else args.serial)
        serial_input = serial_input_from(args.serial_input) if args.serial_input else b""
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
    )
    result = machine.run(max_instructions=args.max_instructions, timeout=args.timeout or None)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        sys.stdout.flush()
        if result.serial and not result.serial.endswith(b"\n") and args.serial == "stdio":
            sys.stderr.write("\n")
        sys.stderr.write("── triplefault run report " + "─" * 40 + "\n")
        sys.stderr.write(f"kernel: {kernel}\n")
        sys.stderr.write(result.describe() + "\n")
    return result.exit_status


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
    except EmuError as e:
        sys.stderr.write(f"triplefault: error: {e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("triplefault: interrupted\n")
        return 130
    parser.print_help()
    return EXIT_USAGE
