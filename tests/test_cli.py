"""`triplefault` as a user runs it: a real process, its streams and its exit status."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.images


def triplefault(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emu", *args],
        cwd=ROOT,
        capture_output=True,
        input=stdin,
        timeout=120,
        check=False,
    )


def test_run_without_arguments_boots_the_demo(image) -> None:
    image("hello")
    p = triplefault("run")
    assert p.returncode == 1, p.stderr.decode()  # debug-exit 0 -> (0 << 1) | 1, as QEMU
    assert b"All tests passed" in p.stdout
    assert b"run report" in p.stderr
    assert b"debug-exit" in p.stderr


def test_append_and_json(image) -> None:
    p = triplefault("run", str(image("hello")), "--append", "console=com1", "--json")
    data = json.loads(p.stdout)
    assert data["stop_reason"] == "debug-exit" and data["exit_code"] == 0
    assert "cmdline: console=com1" in data["serial"]
    assert data["cpu"]["mode"] == "long64"
    assert p.returncode == 1


def test_serial_to_file(image, tmp_path: Path) -> None:
    out = tmp_path / "serial.txt"
    p = triplefault("run", "hello", "--serial", f"file:{out}", "--quiet")
    assert p.returncode == 1
    assert p.stdout == b"" and p.stderr == b""
    assert b"All tests passed" in out.read_bytes()


def test_crash_report_names_the_place(image) -> None:
    p = triplefault("run", "lost-in-32bit")
    assert p.returncode == 3
    report = p.stderr.decode()
    assert "exception" in report and "prot32" in report and "malloc" in report


def _patched(src: Path, dst: Path, patches: list[tuple[int, bytes]]) -> Path:
    data = bytearray(src.read_bytes())
    for offset, raw in patches:
        data[offset : offset + len(raw)] = raw
    dst.write_bytes(bytes(data))
    return dst


def _bad_kernels(hello: Path, tmp: Path) -> dict[str, Path]:
    data = hello.read_bytes()
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    loads = [
        phoff + i * phentsize
        for i in range(phnum)
        if struct.unpack_from("<I", data, phoff + i * phentsize)[0] == 1
    ]
    ph = loads[0]
    magic = data.find(struct.pack("<I", 0xE85250D6))
    assert 0 <= magic < 32768
    (tmp / "empty.elf").write_bytes(b"")
    (tmp / "text.elf").write_bytes(b"this is not a kernel\n" * 100)
    (tmp / "truncated.elf").write_bytes(data[:100])
    (tmp / "adir").mkdir()
    return {
        "missing": tmp / "does-not-exist.elf",
        "directory": tmp / "adir",
        "empty": tmp / "empty.elf",
        "not-elf": tmp / "text.elf",
        "truncated": tmp / "truncated.elf",
        "other-machine": _patched(hello, tmp / "arm.elf", [(18, struct.pack("<H", 183))]),
        "no-header": _patched(hello, tmp / "nohdr.elf", [(magic, b"\0\0\0\0")]),
        "bad-checksum": _patched(hello, tmp / "csum.elf", [(magic + 12, b"\x01\x02\x03\x04")]),
        "huge-memsz": _patched(hello, tmp / "huge.elf", [(ph + 40, struct.pack("<Q", 1 << 60))]),
        "filesz-gt-memsz": _patched(
            hello,
            tmp / "fsz.elf",
            [(ph + 32, struct.pack("<Q", struct.unpack_from("<Q", data, ph + 40)[0] + 16))],
        ),
        "entry-outside": _patched(hello, tmp / "entry.elf", [(24, struct.pack("<Q", 0x7654321))]),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "directory",
        "empty",
        "not-elf",
        "truncated",
        "other-machine",
        "no-header",
        "bad-checksum",
        "huge-memsz",
        "filesz-gt-memsz",
        "entry-outside",
    ],
)
def test_bad_kernel_is_one_line_and_exit_2(image, tmp_path: Path, case: str) -> None:
    bad = _bad_kernels(image("hello"), tmp_path)[case]
    p = triplefault("run", str(bad))
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert err.startswith("triplefault: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert p.stdout == b""


@pytest.mark.parametrize(
    "args",
    [
        ["--memory", "12Q"],
        ["--memory", "1M"],
        ["--module", "no-such-module.bin"],
        ["--serial", "carrier-pigeon"],
        ["--max-instructions", "-5"],
        ["--debug-exit-port", "0x10000"],
    ],
)
def test_bad_options_are_one_line_and_exit_2(image, args: list[str]) -> None:
    p = triplefault("run", str(image("hello")), *args)
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert err.startswith("triplefault: error: ") and err.count("\n") == 1, err


def test_python_m_emu_and_version() -> None:
    p = triplefault("--version")
    assert p.returncode == 0 and p.stdout.startswith(b"triplefault ")


def test_trace_int_logs_every_delivery(image) -> None:
    p = triplefault("run", "faults", "--trace", "int", "--quiet")
    err = p.stderr.decode()
    assert p.returncode == 1
    assert err.count("delivered:") == 6
    assert (
        "#PF (page fault) err=0x3 (protection violation, write, supervisor mode) CR2=0x400010"
        in err
    )


def test_json_carries_the_fault_trace_and_diagnoses(image) -> None:
    p = triplefault("run", "lost-in-32bit", "--json")
    data = json.loads(p.stdout)
    assert data["stop_reason"] == "triple-fault" and data["triple_fault"]
    assert [e["vector"] for e in data["fault_trace"]] == [6, 13, 8]
    assert [d["kind"] for d in data["diagnoses"]][:2] == ["mode-mismatch", "no-idt"]


def test_reboot_resets_like_a_pc(image) -> None:
    p = triplefault("run", "faults-triple", "--reboot", "--max-instructions", "50000", "--json")
    data = json.loads(p.stdout)
    assert data["stop_reason"] == "instruction-limit"
    assert data["reboots"] >= 4
    assert data["serial"].count("dropping the IDT") in (data["reboots"], data["reboots"] + 1)


def test_pt_and_translate_commands(image) -> None:
    p = triplefault("pt", "paging", "--at", "paging_ready", "--plain", "--filter", "user")
    assert p.returncode == 0
    assert b"0000000040002000-0000000040002fff" in p.stdout
    p = triplefault(
        "translate", "paging", "0x40001008", "--access", "write", "--at", "paging_ready", "--plain"
    )
    assert p.returncode == 1 and b"PTE.RW=0 and CR0.WP=1 on a supervisor write" in p.stdout
    p = triplefault("pt", "hello", "--at", "no_such_symbol")
    assert p.returncode == 2 and p.stderr.startswith(b"triplefault: error: no symbol")


def test_pt_diff_between_two_points(image) -> None:
    image("paging")
    p = triplefault("pt", "paging", "--diff", "pages_touched", "--plain")
    assert p.returncode == 0, p.stderr.decode()
    out = p.stdout.decode()
    assert "paging, from: at pages_touched (0x100190), after 22,629 instructions" in out
    assert "paging, to:   where the run ended (debug-exit)" in out
    assert "5 change(s): 0 added, 0 removed, 5 changed" in out
    # the #PF handler made 0x40001000 writable; the TLB experiment moved 0x40006000's frame
    assert "-  0000000040001000-0000000040001fff  0000601000    4K    4K  RS- ---" in out
    assert "+  0000000040001000-0000000040001fff  0000601000    4K    4K  WS- -AD" in out
    assert "-  0000000040006000-0000000040006fff  0000606000" in out
    assert "+  0000000040006000-0000000040006fff  0000607000" in out
    # counts on both sides, and a filter applied to both
    p = triplefault("pt", "paging", "--diff", "7561", "--after", "22629", "--filter", "dirty",
                    "--plain")  # fmt: skip
    out = p.stdout.decode()
    assert "1 change(s): 1 added, 0 removed, 0 changed (dirty)" in out, out
    assert "+  0000000040004000-0000000040004fff  0000604000    4K    4K  WS- -AD" in out
    p = triplefault("pt", "paging", "--diff", "7561", "--after", "7562", "--plain")
    assert p.stdout.decode().rstrip().endswith("no change")
    for args, expected in ((("--diff", "0"), "an instruction count must be at least 1"),
                           (("--diff", "1", "--tree"), "it does not go with --tree"),
                           (("--diff", "no_such_symbol"), "no symbol 'no_such_symbol'")):  # fmt: skip
        p = triplefault("pt", "paging", *args)
        err = p.stderr.decode()
        assert p.returncode == 2 and err.count("\n") == 1 and expected in err, (args, err)


# ------------------------------------------------------------------------- hygiene
def test_a_closed_pipe_ends_quietly(image) -> None:
    image("hello")
    for args in (["--json", "-q"], ["--timeout", "3"]):
        p = subprocess.Popen([sys.executable, "-m", "emu", "run", "hello", *args], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        assert p.stdout.read(10)  # then the reader goes away, as `| head -c 10` does
        p.stdout.close()
        err = p.stderr.read().decode()
        p.stderr.close()
        p.wait(60)
        assert "Traceback" not in err and "BrokenPipeError" not in err, err
        assert p.returncode in (1, 141), (args, p.returncode)  # done, or ended as by SIGPIPE


def test_ctrl_c_prints_the_report_and_exits_130(image) -> None:
    import signal
    import time

    image("faults-triple")
    p = subprocess.Popen(
        [sys.executable, "-m", "emu", "run", "faults-triple", "--reboot", "--timeout", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert p.stdout.readline()  # the kernel runs (and reboots forever)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    report = err.decode()
    assert p.returncode == 130, report
    assert "run report" in report and "stop: interrupted: Ctrl-C (SIGINT)" in report
    assert "  at 0x" in report and "Traceback" not in report


def test_screen_with_quiet_and_json(image) -> None:
    p = triplefault("run", "hello", "--screen", "-q", "--serial", "none")
    assert p.returncode == 1 and p.stderr == b""
    assert p.stdout.startswith(b"Triplefault hello") and b"All tests passed" not in p.stdout[:20]
    data = json.loads(triplefault("run", "hello", "--json").stdout)
    assert data["screen"].startswith("Triplefault hello")
    assert p.stdout.decode().rstrip("\n") == data["screen"]


def test_run_at_stops_there(image) -> None:
    p = triplefault("run", "hello", "--at", "kmain", "--json")
    data = json.loads(p.stdout)
    assert p.returncode == 4 and data["stop_reason"] == "breakpoint"
    assert "kmain" in data["location"]
    p = triplefault("run", "hello", "--at", "no_such_symbol")
    assert p.returncode == 2 and p.stderr.startswith(b"triplefault: error: no symbol")


def test_images_lists_every_bundled_image() -> None:
    from emu.images import bundled_names

    p = triplefault("images")
    lines = p.stdout.decode().splitlines()
    assert p.returncode == 0 and [line.split()[0] for line in lines] == bundled_names()
    assert all("not described" not in line and len(line.split()) > 2 for line in lines)


def test_first_compile_is_announced(capsys) -> None:
    from emu import cli
    from emu.core import native

    saved = native.on_first_compile
    try:
        cli._announce_builds("hello")
        native._first_compile()
        native._first_compile()  # once only
    finally:
        native.on_first_compile = saved
    err = capsys.readouterr().err
    assert err.count(f"compiling native hooks (once, about {cli.COMPILE_SECONDS} s)") == 1


BOOTING = ("run", "debug", "gdbserver", "pt", "translate")


def _options_of(command: str) -> set[str]:
    from emu.cli import build_parser

    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices)
    return {s for a in sub.choices[command]._actions for s in a.option_strings}


def test_every_command_that_boots_takes_the_same_machine_options() -> None:
    shared = _options_of("run") & _options_of("gdbserver")
    for flag in ("--serial", "--serial-input", "--module", "--keys", "--protocol", "--rtc-base",
                 "--append", "--memory", "--cpu", "--no-debug-exit", "--trace"):  # fmt: skip
        assert flag in shared
    for command in BOOTING:
        assert shared <= _options_of(command) | {"--at", "--timeout"}, command


def test_every_option_the_readme_names_exists() -> None:
    import re

    readme = (ROOT / "README.md").read_text()
    sections = re.split(r"^## ", readme, flags=re.MULTILINE)
    where = {"Booting a kernel": ("run",), "Looking at page tables": ("pt", "translate"),
             "The debugger": ("debug",), "With gdb": ("gdbserver",),
             "Options of every command that boots a kernel": BOOTING}  # fmt: skip
    checked = 0
    for section in sections:
        title = section.splitlines()[0] if section else ""
        commands = where.get(title)
        if commands is None:
            continue
        known = set.union(*(_options_of(c) for c in commands)) if len(commands) < 5 else None
        for flag in set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", section)):
            if flag.startswith("--triplefault"):
                continue  # the pytest plugin's
            for command in commands if known is None else ("any",):
                options = _options_of(command) if known is None else known
                assert flag in options, f"README section {title!r}: {flag} not in {commands}"
                checked += 1
    assert checked > 30


def test_screenshot_format_from_the_extension(image, tmp_path: Path) -> None:
    jpg = tmp_path / "shot.jpg"
    p = triplefault("run", "hello", "-q", "--screenshot", str(jpg))
    assert p.returncode == 1, p.stderr
    assert jpg.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG
    bad = triplefault("run", "hello", "-q", "--screenshot", str(tmp_path / "shot.xyz"))
    err = bad.stderr.decode()
    assert bad.returncode == 2 and err.count("\n") == 1 and "unknown picture format" in err
    p = triplefault("run", "faults-triple", "--reboot", "--max-instructions", "30000", "-q",
                    "--screenshot", str(tmp_path / "boot.png"))  # fmt: skip
    shots = sorted(x.name for x in tmp_path.glob("boot-*.png"))
    assert len(shots) >= 3 and shots[0] == "boot-1.png"
    assert not (tmp_path / "boot.png").exists()
