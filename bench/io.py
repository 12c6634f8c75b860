"""Port I/O benchmark: the cost of one port access through the Python device models.

Each case is a small 32-bit Multiboot2 kernel (GRUB's state, IF=0) that runs a loop of port
accesses in a Machine; the cost of one iteration is its wall time less that of the same loop
with the accesses replaced by NOPs, divided by the iterations. The baseline, measured in the
same run, is a raw Unicorn engine with one empty Python IN hook running ``in $0x80`` in a loop:
the floor of any access that reaches Python. Every figure is the median of several runs.

Goal (issue 13, part 1): <= 1 us per access through Python.

Usage: python bench/io.py [--repeat N] [--iterations N]
"""

from __future__ import annotations

import argparse
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

GOAL_US = 1.0

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


def machine_seconds(elf: Path) -> tuple[float, int]:
    m = Machine(serial_sink=None)
    m.load(elf)
    t0 = time.perf_counter()
    r = m.run(timeout=600)
    t = time.perf_counter() - t0
    if r.stop_reason != "debug-exit":
        raise SystemExit(f"{elf.name}: stopped with {r.stop_reason}")
    return t, r.instructions


def baseline_us(iterations: int) -> float:
    """Raw Unicorn, one empty Python IN hook: us per ``in $0x80``."""
    code = bytes.fromhex("b9") + iterations.to_bytes(4, "little")  # mov ecx, N
    code += bytes.fromhex("e480") + bytes.fromhex("49") + bytes.fromhex("75fb")  # in; dec; jnz
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
    uc.mem_map(0x1000, 0x1000)
    uc.mem_write(0x1000, code)

    def hook_in(_uc: unicorn.Uc, _port: int, _size: int, _ud: object) -> int:
        return 0xFF

    uc.hook_add(unicorn.UC_HOOK_INSN, hook_in, None, 1, 0, unicorn.x86_const.UC_X86_INS_IN)
    t0 = time.perf_counter()
    uc.emu_start(0x1000, 0x1000 + len(code))
    return (time.perf_counter() - t0) / iterations * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per case (the median is shown)")
    ap.add_argument("--iterations", type=int, default=200_000, help="loop iterations per run")
    args = ap.parse_args()
    n = args.iterations
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        elfs = {}
        for i, (name, (body, _ports, nops)) in enumerate(CASES.items()):
            elfs[name] = (build(loop(body, n), d, f"io{i}"), build(loop(nops, n), d, f"nop{i}"))
        base = []
        results: dict[str, list[float]] = {name: [] for name in CASES}
        for _ in range(args.repeat):  # interleaved: every case once per round
            base.append(baseline_us(n))
            for name, (elf, nop_elf) in elfs.items():
                t, _ = machine_seconds(elf)
                t0, _ = machine_seconds(nop_elf)
                results[name].append((t - t0) / n * 1e6)
    b = statistics.median(base)
    print(f"port I/O, {n:,} iterations per run, median of {args.repeat} runs")
    print(f"baseline: raw Unicorn, empty Python IN hook: {b:.3f} us per access")
    print(f"{'case':40} {'us/iteration':>12} {'us/access':>10} {'x baseline':>10}  goal")
    for name, (_body, ports, _nops) in CASES.items():
        per_iter = statistics.median(results[name])
        per_access = per_iter / ports
        ok = "ok" if per_access <= GOAL_US else "MISSED"
        print(
            f"{name:40} {per_iter:12.3f} {per_access:10.3f} {per_access / b:10.2f}  "
            f"<= {GOAL_US:.1f} us/access: {ok}"
        )


if __name__ == "__main__":
    main()
