"""The ``triplefault`` command line.

Every command that boots a kernel (run, debug, gdbserver, pt, translate) takes the same machine
options, defined once here (``_machine_options``) and turned into a Machine once
(``_machine_from``). Every user-facing problem (bad kernel file, bad flag) is one line on stderr
and exit status 2; a run's own exit status is documented in README.md (debug-exit follows QEMU).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from devices.cmos_rtc import parse_rtc_base
from devices.uart16550 import serial_input_from, serial_sink_for

from .clock import DEFAULT_CPU_MHZ, MAX_CPU_MHZ
from .errors import ConfigError, EmuError, InternalError
from .images import IMAGES_DIR, bundled_names, resolve_kernel
from .mmu import view as ptview
from .report import EXIT_INTERRUPTED
from .version import LOADER_NAME, __version__

EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE: an internal error (a bug in Triplefault)
COMPILE_SECONDS = 60  # measured: 15 to 70 s for numba to compile the hooks on 2 busy cores

# One line per bundled image for `triplefault images` and the KERNEL help.
IMAGE_SUMMARIES = {
    "hello": "64-bit Multiboot2 demo: long mode, serial, VGA, self-tests, debug-exit (default)",
    "hello-mb1": "the demo as a 32-bit Multiboot1 kernel (ELFCLASS32)",
    "lost-in-32bit": "a 64-bit kernel that never enters long mode: #UD -> #GP -> #DF -> triple fault",
    "lost-through-eax": "a kernel that loses the boot information pointer in EAX",
    "faults": "exceptions through its own IDT: #PF, #GP, #UD, #DE, #BP and their error codes",
    "faults-df": "a fault while delivering a fault: the double fault handler runs",
    "faults-triple": "drops its IDT, then faults: a triple fault",
    "paging": "its own 4-level tables: 4K/2M/1G pages, NX, read-only, user, a stale TLB entry",
    "poll-cmos": "polls the CMOS UIP bit and seconds for 5 s of guest time, prints each second",
    "poll-serial": "prints 256 KiB over COM1, polling LSR before each byte",
    "poll-spin": "spins in jmp-self (IF=1) while a 100 Hz PIT counts 1000 ticks (10 s)",
    "fb": "a Multiboot2 linear framebuffer kernel (draws, then exits)",
    "timer": "PIT and PIC interrupts, HLT waits on the timer",
    "probe-cpuid": "prints CPUID leaves and MSRs (platform probe)",
    "probe-mbi": "prints the Multiboot2 boot information (platform probe)",
    "probe-mbi1": "prints the Multiboot1 boot information (platform probe)",
    "probe-bios": "prints the BIOS data areas and ROM landmarks (platform probe)",
    "probe-openbus": "reads unassigned ports and memory (platform probe)",
    "probe-devices": "prints the chips' state at hand-over (platform probe)",
    "probe-tables": "prints the MP and ACPI tables (platform probe)",
    "real-mode": "drops to real mode through a trampoline and takes interrupts via the IVT",
    "bios": "calls the BIOS services from a real-mode trampoline (INT 10h, 12h, 15h, 16h, 1Ah)",
}


def _image_summary(name: str) -> str:
    """The one line `triplefault images` shows: ours, else the first sentence of the image's
    section in images/README.md."""
    import re

    if name in IMAGE_SUMMARIES:
        return IMAGE_SUMMARIES[name]
    if name.startswith("video"):  # one source, many builds: the request is in the name
        protocol = "Multiboot1" if "-mb1" in name else "Multiboot2"
        request = name.removeprefix("video").removeprefix("-mb1").strip("-") or "the default"
        return f"asks GRUB ({protocol}) for a video mode: {request}; prints what it got"
    readme = IMAGES_DIR / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        title, _, body = section.partition("\n")
        if name in (t.strip() for t in title.split(",")):
            paragraph = body.strip().split("\n\n")[0].replace("\n", " ")
            return re.split(r"(?<=[.:])\s", paragraph)[0].rstrip(":.")
    return "(not described in images/README.md)"


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


def _mhz(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of MHz") from None
    if not 1 <= value <= MAX_CPU_MHZ:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_CPU_MHZ}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other error
        self.exit(EXIT_USAGE, f"triplefault: error: {message} (see triplefault --help)\n")


def _machine_options(serial_default: str) -> argparse.ArgumentParser:
    """The options of every command that boots a kernel: the kernel, how it is loaded and the
    machine around it. ``serial_default`` is where COM1 goes unless --serial says otherwise."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "kernel",
        help="kernel ELF or Linux bzImage, or the name of a bundled image (`triplefault "
        "images` lists them)",
    )
    g = p.add_argument_group("the kernel and the machine (every command that boots one)")
    g.add_argument("--append", "--cmdline", dest="cmdline", default="", help="kernel command line")
    g.add_argument("--memory", "-m", default="128M", help="guest RAM size (default 128M)")
    g.add_argument("--module", action="append", default=[], metavar="FILE[,ARGS]",
                   help="load a boot module (repeatable)")  # fmt: skip
    g.add_argument("--initrd", default=None, metavar="FILE",
                   help="a Linux kernel's initial ramdisk (e.g. a gzip-compressed cpio)")  # fmt: skip
    g.add_argument("--protocol",
                   choices=("auto", "multiboot2", "multiboot1", "linux", "mb2", "mb1"),
                   default="auto", help="force the boot protocol (default: auto: a Linux "
                   "bzImage, else Multiboot2, else Multiboot)")  # fmt: skip
    g.add_argument("--serial", default=serial_default,
                   help=f"COM1 output: stdio, file:PATH or none (default {serial_default})")  # fmt: skip
    g.add_argument("--serial-input", default=None,
                   help="COM1 input: a literal string, file:PATH or stdio")  # fmt: skip
    g.add_argument("--no-debug-exit", dest="debug_exit", action="store_false",
                   help="do not map QEMU's isa-debug-exit device")  # fmt: skip
    g.add_argument("--debug-exit-port", type=_port, default=0xF4,
                   help="isa-debug-exit port (default 0xf4)")  # fmt: skip
    g.add_argument("--trace", choices=("int",), action="append", default=[],
                   help="int: log every exception and interrupt delivery on stderr "
                   "(like QEMU's -d int)")  # fmt: skip
    g.add_argument("--keys", default="", help="text typed on the PS/2 keyboard")
    g.add_argument("--keys-at", type=_seconds, default=1.0,
                   help="virtual time (seconds) of the first key of --keys (default 1)")  # fmt: skip
    g.add_argument("--rtc-base", default="2024-01-01T00:00:00",
                   help="the date the CMOS clock starts at (default 2024-01-01T00:00:00)")  # fmt: skip
    g.add_argument("--reboot", action="store_true",
                   help="on a triple fault, reset like a PC and boot again (default: stop)")  # fmt: skip
    g.add_argument("--realtime", action="store_true",
                   help="pace virtual time to the wall clock (HLT sleeps)")  # fmt: skip
    g.add_argument("--cpu", choices=("qemu64", "unicorn"), default="qemu64",
                   help="the CPU: QEMU 7.2's qemu64 (default) or Unicorn's own model")  # fmt: skip
    g.add_argument("--no-fast-forward", dest="fast_forward", action="store_false",
                   help="run every iteration of polling loops (default: skip those that cannot "
                   "change anything before the next device event; the results are the same)")  # fmt: skip
    g.add_argument("--cpu-mhz", type=_mhz, default=DEFAULT_CPU_MHZ, metavar="N",
                   help="instructions per microsecond of virtual time (default "
                   f"{DEFAULT_CPU_MHZ}: one per nanosecond); timers tick N/{DEFAULT_CPU_MHZ} "
                   "times slower in instructions")  # fmt: skip
    g.add_argument("--loader-name", default=LOADER_NAME, metavar="TEXT",
                   help=f"the boot loader name the kernel is given (default {LOADER_NAME!r})")  # fmt: skip
    g.add_argument("--strict-memory", action="store_true",
                   help="stop at an access to physical memory where nothing is (default: reads "
                   "0, writes dropped, as on a PC)")  # fmt: skip
    g.add_argument("--no-port-table", dest="port_table", action="store_false",
                   help="every port access through the Python device models, none answered "
                   "from the compiled port read table (same results, slower polling)")  # fmt: skip
    return p


def _stop_options(p: argparse.ArgumentParser, *, after: bool = True) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--at", metavar="SYMBOL|ADDR",
                       help="stop before the first instruction at SYMBOL or ADDR")  # fmt: skip
    if after:
        where.add_argument("--after", type=_count, metavar="N", help="stop after N instructions")
    p.add_argument("--timeout", type=_seconds, default=30.0,
                   help="stop after this many wall-clock seconds (default 30; 0 = never)")  # fmt: skip


def _picture_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--svg", type=Path, metavar="FILE", help=f"draw {what} as SVG into FILE")
    p.add_argument("--png", type=Path, metavar="FILE", help=f"draw {what} as PNG into FILE")


def _entry_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stub", action="store_true",
                   help="start on the firmware stub (GRUB's hand-over code) instead of the "
                   "kernel's entry point")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="triplefault", description="A full-system x86-64 emulator for kernel developers."
    )
    p.add_argument("--version", action="version", version=f"triplefault {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log device and engine notes")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        parents=[_machine_options("stdio")],
        help="boot a Multiboot2/Multiboot1 kernel or a Linux bzImage headless",
        description="Boot a kernel ELF or a Linux bzImage the way GRUB 2.06 does and run it "
        "headless. "
        "Without KERNEL, boots the bundled demo kernel (images/hello).",
    )
    run.set_defaults(kernel="hello")
    for action in run._actions:
        if action.dest == "kernel":
            action.nargs = "?"
    _stop_options(run, after=False)
    run.add_argument("--max-instructions", type=_count, default=None,
                     help="stop after exactly N instructions")  # fmt: skip
    run.add_argument("--screen", action="store_true", help="print the final VGA text screen")
    run.add_argument("--screen-color", action="store_true",
                     help="print the final screen with ANSI colours")  # fmt: skip
    run.add_argument("--screenshot", metavar="FILE",
                     help="write the final screen as a picture (the framebuffer of the VBE mode "
                     "GRUB set for the kernel's video request, else the VGA text screen) in the "
                     "format the extension names (.png, .jpg, .bmp, .gif, .ppm...); with "
                     "--reboot also at each triple fault, numbered FILE-1.png, FILE-2.png...")  # fmt: skip
    run.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    run.add_argument("--quiet", "-q", action="store_true", help="print no run report")

    pt = sub.add_parser(
        "pt",
        parents=[_machine_options("none")],
        help="show the page tables of a kernel at a point of its run",
        description="Boot KERNEL, stop at --at SYMBOL, after --after N instructions, or where "
        "the run ends, and show the page tables CR3 points to.",
    )
    _stop_options(pt)
    pt.add_argument("--plain", action="store_true", help="no colours")
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
        help="keep only ranges that are: wx, user, kernel, nx, x, w, ro, accessed, dirty, global",
    )
    pt.add_argument("--diff", metavar="N|SYMBOL|ADDR",
                    help="what changed since an earlier point of the same run: after N "
                    "instructions (a decimal count), or at the first arrival at SYMBOL or 0xADDR; "
                    "the later point is --at, --after or the end, as without --diff")  # fmt: skip
    _picture_options(pt, "the tree's top levels and the ranges they map")
    tr = sub.add_parser(
        "translate",
        parents=[_machine_options("none")],
        help="translate one virtual address, every paging level explained",
        description="Boot KERNEL, stop as for `pt`, and walk VADDR through the page tables.",
    )
    tr.add_argument("vaddr", help="the virtual address (hex or decimal)")
    _stop_options(tr)
    tr.add_argument("--plain", action="store_true", help="no colours")
    tr.add_argument("--access", choices=("read", "write", "fetch"), default="read")
    tr.add_argument("--cpl", type=int, choices=(0, 3), default=0)
    _picture_options(tr, "the walk")

    gs = sub.add_parser(
        "gdbserver",
        parents=[_machine_options("stdio")],
        help="wait for gdb on 127.0.0.1:PORT, stopped at the kernel's entry (like qemu -s -S)",
        description="Boot KERNEL and serve the gdb remote protocol on 127.0.0.1:PORT, stopped "
        "at the kernel's entry point: gdb KERNEL -ex 'target remote :PORT'. COM1 goes to "
        "stdout (or --serial) while gdb drives. The server keeps listening after gdb detaches "
        "or kills (kill boots the machine again) unless --once; `monitor help` lists the "
        "monitor commands.",
    )
    gs.add_argument("--port", type=_port, default=1234, help="TCP port (default 1234; 0 = any)")
    gs.add_argument("--once", action="store_true",
                    help="exit when the first gdb session ends")  # fmt: skip
    gs.add_argument("--stop-on-exceptions", action="store_true",
                    help="stop at every exception before it is delivered")  # fmt: skip
    gs.add_argument("--arch", choices=("auto", "i386", "amd64"), default="auto",
                    help="the register layout gdb is given (default: i386 for an ELFCLASS32 "
                    "kernel, amd64 otherwise)")  # fmt: skip
    _entry_options(gs)

    dbg = sub.add_parser(
        "debug",
        parents=[_machine_options("none")],
        help="open the debugger (registers, code, fault trace, page tables; step and reverse)",
        description="Boot KERNEL and open the Textual debugger at its entry point. Keys: "
        "s step, c continue (Esc stops it), u reverse step, b breakpoint, e stop on exceptions, "
        ": command (break SYMBOL, delete ADDR, run N, goto N, x ADDR, ...), ? every key and "
        "command, q quit. COM1 is shown in its tab (--serial also copies it to a file).",
    )
    dbg.add_argument("--break", dest="breaks", action="append", default=[], metavar="SYMBOL",
                     help="a breakpoint at SYMBOL or ADDR before the first instruction")  # fmt: skip
    _entry_options(dbg)
    web = dbg.add_argument_group("in a browser (needs the web extra: textual-serve)")
    web.add_argument("--web", action="store_true",
                     help="serve the debugger to browsers instead of opening it here: each "
                     "browser tab gets its own machine (exit 2 if the port is taken)")  # fmt: skip
    web.add_argument("--host", default="127.0.0.1",
                     help="with --web: the address to listen on (default 127.0.0.1)")  # fmt: skip
    web.add_argument("--port", type=_port, default=8000,
                     help="with --web: the TCP port (default 8000; 0 = any free one)")  # fmt: skip
    dbg.set_defaults(long_options=[o for a in dbg._actions for o in a.option_strings
                                   if o.startswith("--")])  # fmt: skip

    sub.add_parser(
        "images",
        help="list the bundled kernel images, one line each",
        description="List the bundled images: any command takes one of these names as KERNEL.",
    )
    eng = sub.add_parser(
        "engine",
        help="build the counting engine (Unicorn with exact instruction counting) or show it",
        description="The counting engine: Unicorn 2.1.4 patched to count instructions inside its "
        "blocks (docs/engine.md). build: download the sdist with pip, patch, build x86 only, "
        "install into the user cache (exit 1 when a step fails). status: which engine runs.",
    )
    eng.add_argument("action", choices=["build", "status"])
    eng.add_argument("--sdist", type=Path, metavar="FILE",
                     help="build from this unicorn-2.1.4.tar.gz instead of downloading it")  # fmt: skip
    return p


# ------------------------------------------------------------------------------ machines
def _announce_builds(kernel: str) -> None:
    """Say so on stderr before something slow that happens once: building a bundled image,
    compiling the native hooks."""
    from .core import native

    def compiling() -> None:
        sys.stderr.write(f"triplefault: compiling native hooks (once, about {COMPILE_SECONDS} s)\n")
        sys.stderr.flush()

    native.on_first_compile = compiling
    name = Path(kernel).name if Path(kernel).parent == Path("images") else kernel
    built = IMAGES_DIR / "build" / f"{name}.elf"
    if name in bundled_names() and not Path(kernel).is_file() and not built.is_file():
        sys.stderr.write(f"triplefault: building the bundled image {name} (once)\n")
        sys.stderr.flush()


def _machine_from(args: argparse.Namespace, *, stdout_sink=None, **overrides):
    """The Machine the shared options describe, with the kernel loaded: (machine, kernel path,
    serial sink to close)."""
    from .machine import Machine

    protocol = {"mb2": "multiboot2", "mb1": "multiboot1"}.get(args.protocol, args.protocol)
    serial = args.serial
    try:
        if serial == "stdio" and stdout_sink is not None:
            sink = stdout_sink
        else:
            sink = serial_sink_for(serial)
        serial_input = serial_input_from(args.serial_input) if args.serial_input else b""
        rtc_base = parse_rtc_base(args.rtc_base)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _announce_builds(args.kernel)
    kernel = resolve_kernel(args.kernel)
    options = dict(
        memory=args.memory,
        cmdline=args.cmdline,
        modules=args.module,
        protocol=protocol,
        initrd=args.initrd,
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
        port_table=args.port_table,
        cpu_mhz=args.cpu_mhz,
        fast_forward=args.fast_forward,
    )
    options.update(overrides)
    machine = Machine.from_elf(kernel, **options)
    return machine, kernel, sink


def _close(sink) -> None:
    if hasattr(sink, "close"):
        sink.close()


def _break_at(machine, where: str) -> int:
    """A breakpoint at SYMBOL or ADDR (hex or decimal); returns its address."""
    try:
        address: int | str = int(where, 0)
    except ValueError:
        address = where
    return machine.add_breakpoint(address)


def _to_entry(machine) -> str:
    """Run the firmware stub (GRUB's hand-over code) to the kernel's entry point. Returns a
    line saying where the machine now is."""
    stub, entry = machine.boot.stub_addr, machine.boot.entry
    had = entry in machine.core.breakpoints
    machine.add_breakpoint(entry)
    try:
        result = machine.run(max_instructions=100_000)
    finally:
        if not had:
            machine.remove_breakpoint(entry)
    if result.stop_reason != "breakpoint":
        raise ConfigError(f"the firmware stub did not reach the entry point 0x{entry:x} "
                          f"({result.headline()})")  # fmt: skip
    return (f"at the kernel's entry point 0x{entry:x} (the firmware stub at 0x{stub:x} has run, "
            f"{machine.instructions} instructions)")  # fmt: skip


# -------------------------------------------------------------------------------- run
class _StdoutSink:
    """COM1 to stdout, flushed at each write (so a pipe sees it as the guest writes)."""

    def __call__(self, data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def _screenshot_paths(path: str) -> tuple[str, str]:
    """(stem, extension) of a --screenshot file, or a one-line error for an unknown format."""
    from PIL import Image

    stem, ext = os.path.splitext(path)
    Image.init()
    if ext.lower() not in Image.EXTENSION or ext.lower() not in {
        e for e, f in Image.EXTENSION.items() if f in Image.SAVE
    }:
        raise ConfigError(f"--screenshot {path}: unknown picture format {ext or '(none)'!r}; "
                          "use .png, .jpg, .bmp, .gif, .ppm, .tiff or .webp")  # fmt: skip
    return stem, ext


def _save_screenshot(machine, path: str) -> None:
    """The screen as a PNG from the machine, converted to the format ``path``'s extension
    names."""
    import tempfile

    from PIL import Image

    if path.lower().endswith(".png"):
        target = path
        machine.screenshot(target)
        return
    with tempfile.NamedTemporaryFile(suffix=".png") as tmp:
        machine.screenshot(tmp.name)
        with Image.open(tmp.name) as im:
            picture = im.convert("RGB")
        picture.save(path)


def _cmd_run(args: argparse.Namespace) -> int:
    if args.screenshot:
        stem, ext = _screenshot_paths(args.screenshot)
    machine, kernel, sink = _machine_from(
        args,
        stdout_sink=_StdoutSink(),
        **({"serial_sink": None} if args.json and args.serial == "stdio" else {}),
    )
    shots: list[str] = []
    if args.screenshot:

        def shot_at_reset(m) -> None:
            shots.append(f"{stem}-{len(shots) + 1}{ext}")
            _save_screenshot(m, shots[-1])

        if args.reboot:
            machine.on_triple_fault.append(shot_at_reset)
    if args.at:
        _break_at(machine, args.at)
    t0 = time.perf_counter()

    def stop_at_ctrl_c(_signum, _frame) -> None:
        # the first Ctrl-C asks the machine to stop (a KeyboardInterrupt raised inside a CPU
        # hook could be lost); a second one, if the first is not taken, raises
        signal.signal(signal.SIGINT, signal.default_int_handler)
        machine.interrupt(f"Ctrl-C (SIGINT) after {time.perf_counter() - t0:.1f} s of wall time")

    previous = signal.signal(signal.SIGINT, stop_at_ctrl_c)
    try:
        result = machine.run(max_instructions=args.max_instructions, timeout=args.timeout or None)
    except KeyboardInterrupt:
        result = machine.result_now("interrupted", "Ctrl-C (SIGINT) after "
                                    f"{time.perf_counter() - t0:.1f} s of wall time")  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
        _close(sink)
    if args.screenshot:
        final = f"{stem}-{len(shots) + 1}{ext}" if shots else args.screenshot
        try:
            _save_screenshot(machine, final)
        except OSError as e:
            raise ConfigError(f"cannot write {final}: {e.strerror or e}") from None
    screen = None
    if args.screen or args.screen_color:
        screen = machine.vga.ansi() if args.screen_color else machine.screen_text()
    if args.json:
        data = result.to_dict()
        data["screen"] = machine.screen_text()
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.quiet:
        if screen is not None:
            sys.stdout.write(screen + "\n")
    else:
        sys.stdout.flush()
        if screen is not None:
            sys.stderr.write("── screen " + "─" * 56 + "\n" + screen + "\n")
        if result.serial and not result.serial.endswith(b"\n") and args.serial == "stdio":
            sys.stderr.write("\n")
        sys.stderr.write("── triplefault run report " + "─" * 40 + "\n")
        sys.stderr.write(f"kernel: {kernel}\n")
        sys.stderr.write(result.describe() + "\n")
    sys.stdout.flush()
    return result.exit_status


# -------------------------------------------------------------------- pt, translate
def _stop_point(args: argparse.Namespace, at: str | None = None, after: int | None = None):
    """Boot the kernel and run it to a point (``at`` SYMBOL|ADDR, ``after`` N instructions, or
    where the run ends): (machine, result, description)."""
    machine, _kernel, sink = _machine_from(args)
    try:
        if at:
            address = _break_at(machine, at)
            result = machine.run(timeout=args.timeout or None)
            if result.stop_reason != "breakpoint":
                raise ConfigError(
                    f"the run ended ({result.headline()}) before reaching {at} at 0x{address:x}"
                )
            where = f"at {at} (0x{address:x}), after {result.instructions:,} instructions"
        elif after:
            result = machine.run(max_instructions=after, timeout=args.timeout or None)
            where = f"after {result.instructions:,} instructions ({result.stop_reason})"
        else:
            result = machine.run(timeout=args.timeout or None)
            where = f"where the run ended ({result.stop_reason}), after {result.instructions:,} instructions"
    finally:
        _close(sink)
    return machine, result, where


def _check_pictures(args: argparse.Namespace) -> None:
    """Before the boot: a picture's file must be writable where it is named."""
    for option, path in (("--svg", args.svg), ("--png", args.png)):
        if path is not None and not path.parent.resolve().is_dir():
            raise ConfigError(f"{option} {path}: no directory {path.parent}")


def _write_pictures(args: argparse.Namespace, drawing) -> None:
    from .mmu import picture

    for option, path in (("--svg", args.svg), ("--png", args.png)):
        if path is None:
            continue
        try:
            picture.save(drawing, **{option[2:]: path})
        except OSError as e:
            raise ConfigError(f"{option} {path}: {e.strerror or e}") from None
        sys.stderr.write(f"triplefault: wrote {path}\n")


def _filtered(args: argparse.Namespace, machine, c) -> list:
    from . import mmu

    maps = mmu.mappings(machine.ram, c.cr3, cr0=c.cr0, cr4=c.cr4, efer=c.efer)
    for name in args.filter:
        maps = [m for m in maps if ptview.FILTERS[name](m)]
    return maps


def _cmd_pt(args: argparse.Namespace) -> int:
    from . import mmu

    if args.diff is not None:
        return _pt_diff(args)
    _check_pictures(args)
    machine, result, where = _stop_point(args, args.at, args.after)
    c = result.cpu
    out = ptview.console(args.plain or not sys.stdout.isatty())
    mode = mmu.paging_mode(c.cr0, c.cr4, c.efer)
    out.print(f"{args.kernel}: {mode.value}, CR3=0x{c.cr3:x}, {where}")
    if mode is mmu.PagingMode.OFF:
        if args.svg or args.png:
            raise ConfigError("paging is off (CR0.PG=0) there: no tree to draw")
        out.print("paging is off (CR0.PG=0): linear addresses are physical")
        return 0
    maps = _filtered(args, machine, c)
    if args.svg or args.png:
        from .mmu import picture

        title = f"{args.kernel}, {where}" + (f" (ranges: {', '.join(args.filter)})"
                                             if args.filter else "")  # fmt: skip
        _write_pictures(args, picture.tree_drawing(machine.ram, c.cr3, mode, maps, title))
    if args.tree:
        out.print(ptview.tree_text(machine.ram, c.cr3, cr0=c.cr0, cr4=c.cr4, efer=c.efer), end="")
        return 0
    title = f"{len(maps)} range(s)" + (f" ({', '.join(args.filter)})" if args.filter else "")
    out.print(ptview.ranges_table(maps, title))
    return 0


def _pt_diff(args: argparse.Namespace) -> int:
    """Two boots of the same kernel with the same flags (runs are deterministic): one to the
    earlier point, one to the later, and the ranges compared."""
    from . import mmu

    if args.tree:
        raise ConfigError("--diff compares ranges: it does not go with --tree")
    if args.svg or args.png:
        raise ConfigError("--svg and --png draw one point of the run: not with --diff")
    since = args.diff.replace("_", "").replace(",", "")
    if since.isdigit():
        if int(since) <= 0:
            raise ConfigError(f"--diff {args.diff}: an instruction count must be at least 1")
        first = _stop_point(args, after=int(since))
    else:
        first = _stop_point(args, at=args.diff)
    second = _stop_point(args, args.at, args.after)
    out = ptview.console(args.plain or not sys.stdout.isatty())
    sides = []
    for label, (machine, result, where) in (("from", first), ("to", second)):
        c = result.cpu
        mode = mmu.paging_mode(c.cr0, c.cr4, c.efer)
        maps = [] if mode is mmu.PagingMode.OFF else _filtered(args, machine, c)
        sides.append(maps)
        out.print(f"{args.kernel}, {label + ':':5} {where} ({mode.value}, CR3=0x{c.cr3:x})")
    diff = mmu.diff_mappings(*sides, accessed_dirty=True)
    title = ptview.diff_title(diff) + (f" ({', '.join(args.filter)})" if args.filter else "")
    out.print(ptview.diff_table(diff, title) if diff else title)
    return 0


def _cmd_translate(args: argparse.Namespace) -> int:
    from . import mmu

    try:
        vaddr = int(args.vaddr, 0)
    except ValueError:
        raise ConfigError(f"{args.vaddr!r} is not an address") from None
    if not 0 <= vaddr < 1 << 64:
        raise ConfigError(f"{args.vaddr} is not an address: 0 to 2^64-1")
    _check_pictures(args)
    machine, result, where = _stop_point(args, args.at, args.after)
    c = result.cpu
    w = mmu.walk(machine.ram, c.cr3, vaddr, args.access, cr0=c.cr0, cr4=c.cr4, efer=c.efer,
                 cpl=args.cpl)  # fmt: skip
    out = ptview.console(args.plain or not sys.stdout.isatty())
    out.print(f"{args.kernel}: CR3=0x{c.cr3:x}, {where}")
    out.print(ptview.walk_text(w), end="")
    if args.svg or args.png:
        from .mmu import picture

        _write_pictures(args, picture.walk_drawing(w, c.cr3, f"{args.kernel}, {where}"))
    return 0 if w.ok else 1


# ------------------------------------------------------------------- gdbserver, debug
def _source_hint(kernel: Path) -> str:
    """The bundled images record source paths relative to images/: tell gdb where that is."""
    try:
        inside = kernel.resolve().is_relative_to(IMAGES_DIR / "build")
    except OSError:
        inside = False
    return f" -ex 'directory {IMAGES_DIR}'" if inside else ""


def _cmd_gdbserver(args: argparse.Namespace) -> int:
    from .gdbstub import AMD64, I386, GdbStub, layout_for

    machine, kernel, sink = _machine_from(args, stdout_sink=_StdoutSink())
    try:
        where = "on the firmware stub" if args.stub else _to_entry(machine)
        if args.stop_on_exceptions:
            machine.break_on_exceptions(*range(32))
        layout = {"i386": I386, "amd64": AMD64}.get(args.arch) or layout_for(machine)

        def say(text: str) -> None:
            sys.stderr.write(f"triplefault: {text}\n")
            sys.stderr.flush()

        stub = GdbStub(machine, say, once=args.once, layout=layout)
        port = stub.listen(args.port)
        say(f"{where}; {layout.architecture} registers")
        say(f"waiting for gdb on 127.0.0.1:{port} "
            f"(gdb {kernel}{_source_hint(kernel)} -ex 'target remote :{port}')")  # fmt: skip
        return stub.serve()
    finally:
        _close(sink)


def _debugger_machine(args: argparse.Namespace):
    """The machine the debugger opens on: at the entry point (or the stub), with the
    breakpoints of --break."""
    machine, kernel, sink = _machine_from(args)
    try:
        if not args.stub:
            _to_entry(machine)
        for where in args.breaks:
            _break_at(machine, where)
    except BaseException:
        _close(sink)
        raise
    return machine, kernel, sink


def _cmd_debug(args: argparse.Namespace) -> int:
    from tui import web
    from tui.app import DebuggerApp

    if args.web:
        return _serve_debugger(args)
    if web.session_argv(args.argv, args.long_options) != args.argv:
        raise ConfigError("debug: --host and --port go with --web")
    machine, kernel, sink = _debugger_machine(args)
    try:
        DebuggerApp(machine, str(kernel)).run()
    finally:
        _close(sink)
    return 0


def _serve_debugger(args: argparse.Namespace) -> int:
    """debug --web: the kernel and the breakpoints are checked once here, so that a mistake is
    one line now rather than one in every browser tab; then each tab gets a session."""
    from tui import web

    for option, value in (("--serial", args.serial), ("--serial-input", args.serial_input)):
        if value == "stdio":
            raise ConfigError(f"debug --web: {option} stdio would go into the browser's "
                              "terminal stream: use file:PATH")  # fmt: skip
    _machine, kernel, sink = _debugger_machine(args)
    _close(sink)

    def say(text: str) -> None:
        sys.stderr.write(f"triplefault: {text}\n")
        sys.stderr.flush()

    command = web.session_command(args.argv, args.long_options)
    try:
        return web.serve(command, args.host, args.port, f"triplefault debug {kernel.name}", say)
    except web.WebError as e:
        raise ConfigError(str(e)) from None


def _cmd_images(_args: argparse.Namespace) -> int:
    names = bundled_names()
    width = max(map(len, names), default=0)
    for name in names:
        summary = _image_summary(name)
        sys.stdout.write(f"{name:<{width}}  {summary}\n")
    return 0


def _cmd_engine(args: argparse.Namespace) -> int:
    from . import engine

    if args.action == "status":
        s = engine.status()
        name = "counting engine" if s.engine == "counting" else "stock Unicorn"
        answers = "answers" if s.answers else "refuses"
        print(f"engine: {name}\nlibrary: {s.path or '(not found)'}")
        print(f"UC_CTL_ICOUNT_BUDGET: {answers}" + (f" ({s.detail})" if s.detail else ""))
        if s.engine != "counting":
            print(f"build it with: triplefault engine build (into {engine.library_path()})")
        try:
            want = engine.requested()
        except engine.SelectionError as e:
            sys.stderr.write(f"triplefault: error: {e}\n")
            return EXIT_USAGE
        runs = "stock" if want == "stock" else s.engine
        if want == "counting" and s.engine != "counting":
            runs = "none: the counting engine is asked for and not built"
        setting = os.environ.get(engine.ENGINE_VARIABLE, "").strip() or "unset"
        print(f"{engine.ENGINE_VARIABLE}: {setting} (the machine runs: {runs})")
        return 0
    if args.sdist is not None and not args.sdist.is_file():
        sys.stderr.write(f"triplefault: error: engine build: {args.sdist}: no such file\n")
        return EXIT_USAGE
    try:
        engine.build(progress=lambda line: print(f"triplefault: engine: {line}", flush=True),
                     sdist=args.sdist)  # fmt: skip
    except engine.EngineError as e:
        sys.stderr.write(f"triplefault: error: engine {e}\n")
        return 1
    return 0


COMMANDS = {"run": _cmd_run, "pt": _cmd_pt, "translate": _cmd_translate, "debug": _cmd_debug,
            "gdbserver": _cmd_gdbserver, "images": _cmd_images, "engine": _cmd_engine}  # fmt: skip


def _quiet_broken_pipe() -> int:
    """stdout's reader went away (``| head``): end as a filter does, without a traceback.
    Further writes go to /dev/null so that flushing at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="triplefault: %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except EmuError as e:
        sys.stderr.write(f"triplefault: error: {e}\n")
        return EXIT_USAGE
    except InternalError as e:
        if isinstance(e.error, BrokenPipeError):  # COM1 to a closed stdout, from a hook
            return _quiet_broken_pipe()
        # a bug of ours, not the guest's or the input's: one line, the traceback with -v
        if args.verbose:
            traceback.print_exception(e.error)
        sys.stderr.write(f"triplefault: {e} (please report it; -v shows the traceback)\n")
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        sys.stderr.write("triplefault: interrupted\n")
        return EXIT_INTERRUPTED
