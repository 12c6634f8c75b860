"""Boot benchmark: wall time of `triplefault run images/hello`, and where it goes.

Prints, measured in this one run:
- the whole command (a fresh process, as a user runs it), best of N;
- a breakdown from a fresh process: Python imports, llvmlite, loading the compiled hooks from
  the native cache, machine construction, loading the kernel, emulation;
- the cold compile of the hooks with numba (an empty cache) against the warm load;
- if QEMU and GRUB are installed, the reference: the same kernel booted by QEMU under GRUB
  (the shared qemu-ref tool), and the ratio.

Our processes run with Python's default bytecode caching: if PYTHONDONTWRITEBYTECODE is set
here, it is removed for them (with it, every start recompiles our modules, about 40 ms), and the
line saying so is printed.

Usage: python bench/boot.py [--repeat N] [--no-qemu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_BREAKDOWN = r"""
import json, time, sys
t0 = time.perf_counter()
import numpy, unicorn, capstone, elftools.elf.elffile  # third-party imports
import devices.uart16550, firmware
t1 = time.perf_counter()
import llvmlite.binding
t2 = time.perf_counter()
from emu.core import native
hook = native.load("emu.clock.kernels", "block_hook", "BLOCK_HOOK_SIGNATURE")
t3 = time.perf_counter()
from emu.machine import Machine
from emu.images import resolve_kernel
kernel = resolve_kernel("hello")
t4 = time.perf_counter()
m = Machine(serial_sink=None)
t5 = time.perf_counter()
m.load(kernel)
t6 = time.perf_counter()
r = m.run(timeout=60)
t7 = time.perf_counter()
json.dump({"imports": t1 - t0, "llvmlite": t2 - t1, "hooks": t3 - t2, "hook_source": hook.source,
           "emu_imports": t4 - t3, "machine": t5 - t4, "load": t6 - t5, "run": t7 - t6,
           "stop": r.stop_reason, "instructions": r.instructions}, sys.stdout)
"""


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _fresh(code: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
        env=env or ENV, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def _time_cmd(cmd: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, capture_output=True, check=False, env=ENV)
        times.append(time.perf_counter() - t)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args()

    subprocess.run(["make", "-s", "-C", str(ROOT / "images"), "hello"], check=True)
    if "PYTHONDONTWRITEBYTECODE" in os.environ:
        print("(PYTHONDONTWRITEBYTECODE is set here: our processes run without it, as by default)")
    cmd = [sys.executable, "-m", "emu", "run", "images/hello", "--quiet", "--serial", "none"]
    _time_cmd(cmd, 1)  # warm the numba cache and the page cache
    ours = _time_cmd(cmd, args.repeat)
    best = min(ours)
    print(
        f"triplefault run images/hello: best {best:.3f} s, median {statistics.median(ours):.3f} s "
        f"over {args.repeat} runs"
    )

    b = _fresh(_BREAKDOWN)
    origin = "loaded from the native cache" if b["hook_source"] == "cache" else "compiled by numba"
    print(f"breakdown (fresh process, compiled hooks {origin}):")
    for key in ("imports", "llvmlite", "hooks", "emu_imports", "machine", "load", "run"):
        print(f"  {key:13s} {b[key] * 1000:8.1f} ms")
    print(f"  guest: {b['instructions']:,} instructions, stop reason {b['stop']}")

    with tempfile.TemporaryDirectory() as cache:
        env = dict(ENV, TRIPLEFAULT_NATIVE_CACHE=cache, NUMBA_CACHE_DIR=cache)
        cold = _fresh(_BREAKDOWN, env)
        warm = _fresh(_BREAKDOWN, env)
    print(
        f"compiled hooks: cold (numba import + compile) {cold['hooks'] * 1000:.0f} ms, "
        f"warm (object code loaded by llvmlite) {warm['hooks'] * 1000:.0f} ms"
    )

    qemu_ref = ROOT.parent / "shared" / "tools" / "qemu-ref"
    if not args.no_qemu and qemu_ref.exists() and shutil.which("qemu-system-x86_64"):
        elf = ROOT / "images" / "build" / "hello.elf"
        qcmd = [sys.executable, str(qemu_ref), str(elf), "--isa-exit", "--idle", "1"]
        _time_cmd(qcmd, 1)  # builds and caches the GRUB ISO
        q = min(_time_cmd(qcmd, max(2, args.repeat // 2)))
        print(f"QEMU under GRUB (qemu-ref, same kernel): best {q:.3f} s")
        print(f"ratio triplefault / QEMU: {best / q:.2f}")
    else:
        print("QEMU reference skipped (qemu-system-x86_64 or qemu-ref not available)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
