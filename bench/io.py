"""Port I/O benchmark: the cost of one port access, through the Python device models and
answered by the compiled IN/OUT hooks from the port read table (emu/port_cache.py).

Each case is a small 32-bit Multiboot2 kernel (GRUB's state, IF=0) that runs a loop of port
accesses in a Machine; the cost of one iteration is its wall time less that of the same loop
with the accesses replaced by NOPs, divided by the iterations. Each case runs twice: with the
port read table off (every access through Python: ``Machine(port_table=False)``) and on (the
default: what the devices published is answered without Python). The baselines, measured in
the same run, are a raw Unicorn engine running ``in $0x80`` in a loop with one empty Python IN
hook, through the binding's ``hook_add`` and as a bare ctypes callback (what our compiled hook
calls for a miss): the floor of any access that reaches Python. Every figure is the median of
several runs. Times are the CPU time of this process (every case runs in it, on one thread),
not wall time, so that other work on a shared host does not count against the access; the load
average is printed with them, since a busy host still slows a process through its caches.

Goals (issue 13): <= 1 us per access through Python, <= 0.2 us answered by the compiled hooks
(for the PIT: its counter latches and reads computed there, docs/devices.md).

The whole-kernel side of the same issue (polling kernels against QEMU, fast-forward on and
off) is bench/polling.py; ``--polling`` runs it after the table.

Usage: python bench/io.py [--repeat N] [--iterations N] [--polling]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import unicorn  # noqa: E402
from mb2_kernel import build  # noqa: E402

from emu.machine import Machine  # noqa: E402

GOAL_US = 1.0  # through Python
GOAL_COMPILED_US = 0.2  # answered from the port read table

# name: (the accesses of one iteration, port instructions in it, the same with NOPs)
CASES: dict[str, tuple[str, int, str]] = {
    "CMOS index + data (out 0x70; in 0x71)": (
        "movb $0x0a, %al; outb %al, $0x70; inb $0x71, %al",
        2,
        "movb $0x0a, %al; nop; nop",
    ),
    "i8042 status (in 0x64)": ("inb $0x64, %al", 1, "nop"),
    "UART LSR (in 0x3fd)": ("movw $0x3fd, %dx; inb %dx, %al", 1, "movw $0x3fd, %dx; nop"),
    "PIT latch + two reads": (
        "movb $0x00, %al; outb %al, $0x43; inb $0x40, %al; inb $0x40, %al",
        3,
        "movb $0x00, %al; nop; nop; nop",
    ),
    "undecoded port (in 0x80)": ("inb $0x80, %al", 1, "nop"),
}


def loop(body: str, iterations: int) -> str:
    return f"""
    movl ${iterations}, %ecx
2:  {body}
    decl %ecx
    jnz 2b
"""


def machine_seconds(elf: Path, port_table: bool) -> tuple[float, int]:
    m = Machine(serial_sink=None, port_table=port_table)
    m.load(elf)
    t0 = time.process_time()
    r = m.run(timeout=600)
    t = time.process_time() - t0
    if r.stop_reason != "debug-exit":
        raise SystemExit(f"{elf.name}: stopped with {r.stop_reason}")
    return t, r.instructions


def _raw_engine(iterations: int) -> tuple[unicorn.Uc, int]:
    code = bytes.fromhex("b9") + iterations.to_bytes(4, "little")  # mov ecx, N
    code += bytes.fromhex("e480") + bytes.fromhex("49") + bytes.fromhex("75fb")  # in; dec; jnz
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
    uc.mem_map(0x1000, 0x1000)
    uc.mem_write(0x1000, code)
    return uc, 0x1000 + len(code)


def baseline_us(iterations: int) -> float:
    """Raw Unicorn, one empty Python IN hook through the binding: us per ``in $0x80``."""
    uc, end = _raw_engine(iterations)

    def hook_in(_uc: unicorn.Uc, _port: int, _size: int, _ud: object) -> int:
        return 0xFF

    uc.hook_add(unicorn.UC_HOOK_INSN, hook_in, None, 1, 0, unicorn.x86_const.UC_X86_INS_IN)
    t0 = time.process_time()
    uc.emu_start(0x1000, end)
    return (time.process_time() - t0) / iterations * 1e6


_IN_CB = ctypes.CFUNCTYPE(
    ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_void_p
)


def ctypes_floor_us(iterations: int) -> float:
    """Raw Unicorn, one empty Python IN hook as a bare ctypes callback: us per ``in $0x80``."""
    uc, end = _raw_engine(iterations)
    callback = _IN_CB(lambda _uc, _port, _size, _ud: 0xFF)
    handle = ctypes.c_size_t()
    lib = unicorn.unicorn_py3.unicorn.uclib
    err = lib.uc_hook_add(
        uc._uch, ctypes.byref(handle), unicorn.UC_HOOK_INSN,
        ctypes.cast(callback, ctypes.c_void_p), ctypes.c_void_p(0), ctypes.c_uint64(1),
        ctypes.c_uint64(0), ctypes.c_int(unicorn.x86_const.UC_X86_INS_IN),
    )  # fmt: skip
    if err:
        raise SystemExit(f"cannot install the ctypes IN hook (unicorn error {err})")
    t0 = time.process_time()
    uc.emu_start(0x1000, end)
    return (time.process_time() - t0) / iterations * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per case (the median is shown)")
    ap.add_argument("--iterations", type=int, default=200_000, help="loop iterations per run")
    ap.add_argument("--polling", action="store_true", help="then run bench/polling.py")
    args = ap.parse_args()
    n = args.iterations
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        elfs = {}
        for i, (name, (body, _ports, nops)) in enumerate(CASES.items()):
            elfs[name] = (build(loop(body, n), d, f"io{i}"), build(loop(nops, n), d, f"nop{i}"))
        base: list[float] = []
        floor: list[float] = []
        results: dict[tuple[str, bool], list[float]] = {
            (name, table): [] for name in CASES for table in (False, True)
        }
        machine_seconds(elfs[next(iter(CASES))][1], True)  # compile (or load) the hooks first
        for _ in range(args.repeat):  # interleaved: every case once per round
            base.append(baseline_us(n))
            floor.append(ctypes_floor_us(n))
            for name, (elf, nop_elf) in elfs.items():
                for table in (False, True):
                    t, _ = machine_seconds(elf, table)
                    t0, _ = machine_seconds(nop_elf, table)
                    results[(name, table)].append((t - t0) / n * 1e6)
    load_after = os.getloadavg()[0]
    b, f = statistics.median(base), statistics.median(floor)
    print(f"port I/O, {n:,} iterations per run, median of {args.repeat} runs, "
          f"load average {load_before:.2f} -> {load_after:.2f}")  # fmt: skip
    print(f"baseline: raw Unicorn, empty Python IN hook (binding): {b:.3f} us per access")
    print(f"floor:    raw Unicorn, empty Python IN hook (ctypes):  {f:.3f} us per access")
    print(f"{'case':40} {'python us':>9} {'x base':>6} {'x floor':>7}  {'compiled us':>11}  goals")
    for name, (_body, ports, _nops) in CASES.items():
        python = statistics.median(results[(name, False)]) / ports
        compiled = statistics.median(results[(name, True)]) / ports
        ok = "ok" if python <= GOAL_US else "MISSED"
        ok_c = "ok" if compiled <= GOAL_COMPILED_US else "MISSED"
        print(
            f"{name:40} {python:9.3f} {python / b:6.2f} {python / f:7.2f}  {compiled:11.3f}  "
            f"python <= {GOAL_US:.1f}: {ok}, compiled <= {GOAL_COMPILED_US:.1f}: {ok_c}"
        )


if __name__ == "__main__":
    main()
    if "--polling" in sys.argv:
        import subprocess

        subprocess.run([sys.executable, str(ROOT / "bench" / "polling.py")], check=False)
