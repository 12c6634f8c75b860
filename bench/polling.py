"""Polling benchmark: three kernels that wait as real kernels do, under Triplefault with
fast-forward on and off, and under QEMU + GRUB in the same run when QEMU is installed.

- images/poll-cmos: polls the CMOS UIP bit and seconds for 5 s of guest time;
- images/poll-serial: prints 256 KiB over COM1, polling LSR before each byte;
- images/poll-spin: spins in `jmp .` with IF=1 while a 100 Hz PIT counts 1000 ticks (10 s).

Each is run as a user runs it (a fresh `triplefault run` process, wall time of the whole
command, best of N) and QEMU as `qemu-ref` boots it (GRUB included, as bench/boot.py does).
Printed: the wall times, the ratio ours / QEMU with fast-forward on and off, and whether the
serial output is the same as QEMU's. A run without fast-forward that passes --off-timeout is cut
there and its ratio shown as a lower bound.

Goals (issue 13): ratio < 1.0 with fast-forward on; within 3x of QEMU with it off.

Usage: python bench/polling.py [--repeat N] [--off-timeout S] [--no-qemu] [--only NAME]
(bench/io.py runs it after its per-access table.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ("poll-cmos", "poll-serial", "poll-spin")
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
QEMU_REF = ROOT.parent / "shared" / "tools" / "qemu-ref"


def ours(name: str, fast_forward: bool, timeout: float) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "emu", "run", name, "--json", "--serial", "none",
           "--timeout", str(timeout)]  # fmt: skip
    if not fast_forward:
        cmd.append("--no-fast-forward")
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ENV, check=False)
    wall = time.perf_counter() - t
    return wall, json.loads(out.stdout)


def qemu(name: str) -> tuple[float, dict]:
    elf = ROOT / "images" / "build" / f"{name}.elf"
    cmd = [sys.executable, str(QEMU_REF), str(elf), "--isa-exit", "--json", "--idle", "0",
           "--timeout", "120", "--mem", "128M", "--cpu", "qemu64"]  # fmt: skip
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    return wall, json.loads(out.stdout)


def qemu_available() -> bool:
    tools = ("qemu-system-x86_64", "grub-mkrescue", "xorriso")
    return QEMU_REF.exists() and all(shutil.which(t) for t in tools)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs of each (the best is shown)")
    ap.add_argument("--off-timeout", type=float, default=120.0,
                    help="wall seconds a run without fast-forward may take (default 120)")  # fmt: skip
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--only", choices=KERNELS, action="append", help="one kernel (repeatable)")
    args = ap.parse_args()
    names = args.only or list(KERNELS)
    subprocess.run(["make", "-s", "-C", str(ROOT / "images"), *names], check=True)
    with_qemu = not args.no_qemu and qemu_available()
    if with_qemu:
        qemu(names[0])  # builds and caches the GRUB ISO
    else:
        print("QEMU reference skipped (qemu-ref, qemu-system-x86_64, grub-mkrescue or xorriso "
              "not available)")  # fmt: skip
    with open("/proc/loadavg") as f:
        print(f"load average at the start: {f.read().split()[0]}")
    print(f"{'kernel':12} {'ff on s':>8} {'ff off s':>9} {'QEMU s':>7} {'on/QEMU':>8} "
          f"{'off/QEMU':>9}  serial")  # fmt: skip
    for name in names:
        on = min(ours(name, True, 600)[0] for _ in range(args.repeat))
        on_result = ours(name, True, 600)[1]
        off_wall, off_result = ours(name, False, args.off_timeout)
        cut = off_result["stop_reason"] == "timeout"
        off = f"{'>' if cut else ''}{off_wall:.2f}"
        if with_qemu:
            runs = [qemu(name) for _ in range(max(1, args.repeat - 1))]
            q = min(w for w, _ in runs)
            ref = runs[0][1]
            same = "same as QEMU" if ref["serial"] == on_result["serial"] else "DIFFERENT"
            print(f"{name:12} {on:8.2f} {off:>9} {q:7.2f} {on / q:8.2f} "
                  f"{('>' if cut else '') + format(off_wall / q, '.2f'):>9}  {same}")  # fmt: skip
        else:
            print(f"{name:12} {on:8.2f} {off:>9} {'-':>7} {'-':>8} {'-':>9}  "
                  f"{on_result['stop_reason']}")  # fmt: skip
        ff = on_result.get("fast_forward") or {}
        print(f"  {on_result['instructions']:,} instructions, {ff.get('instructions', 0):,} of "
              f"them skipped in {ff.get('loops', 0):,} skips")  # fmt: skip
    print("goals: on/QEMU < 1.0, off/QEMU <= 3.0")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
