"""Linux boot benchmark: Debian's stock kernel with a busybox initramfs to its /init, under
Triplefault and under QEMU 7.2 TCG in the same run, on the same command line.

Ours is run as a user runs it (`triplefault run vmlinuz --initrd ... --json`, a fresh process,
wall time of the whole command); QEMU as qemu-system-x86_64 -kernel/-initrd/-append with -cpu
qemu64 and isa-debug-exit (no GRUB: QEMU's own Linux loader). Both end when /init writes to
isa-debug-exit. Printed: instructions to the exit, wall times (best of N), the ratio ours / QEMU.

The kernel and busybox are the ones tests/test_linux_boot.py uses (.ci/run fetches them into
TRIPLEFAULT_LINUX_DIR, by default ~/.cache/triplefault/linux).

Goal (issue 18): ratio < 1.0.

Usage: python bench/linux.py [--repeat N] [--no-qemu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from linux_images import busybox_initramfs  # noqa: E402

CMDLINE = "console=ttyS0 earlyprintk=serial,ttyS0,115200 nokaslr"
INIT = """#!/bin/busybox sh
/bin/busybox echo "HELLO FROM USERSPACE"
/bin/busybox printf '\\000' | /bin/busybox dd of=/dev/port bs=1 seek=244 count=1
"""
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def linux_files() -> tuple[Path, Path] | None:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "triplefault"
    root = Path(os.environ.get("TRIPLEFAULT_LINUX_DIR", default / "linux")) / "root"
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    busybox = root / "bin" / "busybox"
    return (kernels[-1], busybox) if kernels and busybox.is_file() else None


def ours(kernel: Path, initrd: Path) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "emu", "run", str(kernel), "--initrd", str(initrd), "-m",
           "256M", "--append", CMDLINE, "--json", "--serial", "none", "--timeout", "0"]  # fmt: skip
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ENV, check=False)
    return time.perf_counter() - t, json.loads(out.stdout)


def qemu(kernel: Path, initrd: Path, serial: Path) -> tuple[float, int]:
    cmd = ["qemu-system-x86_64", "-machine", "pc", "-cpu", "qemu64", "-m", "256", "-kernel",
           str(kernel), "-initrd", str(initrd), "-append", CMDLINE, "-display", "none",
           "-serial", f"file:{serial}", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
           "-no-reboot", "-monitor", "none"]  # fmt: skip
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, timeout=600, check=False)
    return time.perf_counter() - t, p.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, best taken")
    parser.add_argument("--no-qemu", action="store_true", help="do not run QEMU")
    args = parser.parse_args()
    files = linux_files()
    if files is None:
        print("no Debian kernel and busybox-static unpacked (see .ci/run): nothing to measure")
        return 0
    kernel, busybox = files
    with tempfile.TemporaryDirectory() as tmp:
        initrd = Path(tmp) / "initrd.gz"
        initrd.write_bytes(busybox_initramfs(busybox.read_bytes(), INIT))
        load_before = os.getloadavg()[0]
        runs = [ours(kernel, initrd) for _ in range(args.repeat)]
        wall, data = min(runs, key=lambda r: r[0])
        ok = data["stop_reason"] == "debug-exit" and "HELLO FROM USERSPACE" in data["serial"]
        print(f"kernel: {kernel.name}, command line: {CMDLINE}")
        if len(runs) > 1:  # two boots should agree (docs/linux.md, "Determinism")
            counts = ", ".join(f"{r[1]['instructions']:,}" for r in runs)
            print(f"instructions of each run: {counts}")
        print(f"triplefault: {wall:7.2f} s wall, {data['instructions']:,} instructions, "
              f"{data['instructions'] / wall / 1e6:.0f} MIPS, {'ok' if ok else data['stop_reason']}")  # fmt: skip
        if args.no_qemu or shutil.which("qemu-system-x86_64") is None:
            return 0
        serial = Path(tmp) / "qemu.serial"
        q = [qemu(kernel, initrd, serial) for _ in range(args.repeat)]
        qwall, rc = min(q)
        qok = rc == 1 and b"HELLO FROM USERSPACE" in serial.read_bytes()
        print(f"qemu 7.2 TCG: {qwall:7.2f} s wall, {'ok' if qok else f'exit {rc}'}")
        print(f"ratio ours / QEMU: {wall / qwall:.2f} (load average {load_before:.2f} -> "
              f"{os.getloadavg()[0]:.2f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
