"""Debian 12's stock kernel and busybox to userspace: the serial output, the exit code the
initramfs writes to isa-debug-exit, and two runs giving the same bytes and instruction counts.

Nothing is downloaded here: `.ci/run` fetches linux-image-amd64's kernel and busybox-static with
apt-get and unpacks them into the cache directory (TRIPLEFAULT_LINUX_DIR, by default
$XDG_CACHE_HOME/triplefault/linux or ~/.cache/triplefault/linux). Without them the test is
skipped and says so. One boot is about 6 G instructions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from linux_images import busybox_initramfs

from emu import Machine

CMDLINE = "console=ttyS0 earlyprintk=serial,ttyS0,115200 nokaslr"

# /init: report what the kernel found, then write the number of failed checks to
# isa-debug-exit through /dev/port (port 0xF4 = byte 244), as a userspace test suite would.
INIT = r"""#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B echo "HELLO FROM USERSPACE"
fails=0
check() { if "$@"; then $B echo "ok: $*"; else $B echo "FAILED: $*"; fails=$((fails + 1)); fi; }
check $B test -d /sys/bus/serio/devices/serio0
check $B test -d /sys/bus/serio/devices/serio1
check $B grep -q "AuthenticAMD" /proc/cpuinfo
check $B test -z "$($B grep -o -w rdrand /proc/cpuinfo)"
$B echo "checks failed: $fails"
$B printf "\\$($B printf %o $fails)" | $B dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
$B echo "isa-debug-exit did not stop the machine"
"""


def linux_dir() -> Path:
    default = (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "triplefault" / "linux"
    )
    return Path(os.environ.get("TRIPLEFAULT_LINUX_DIR", default))


def debian_files() -> tuple[Path, Path]:
    root = linux_dir() / "root"
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    busybox = root / "bin" / "busybox"
    if not kernels or not busybox.is_file():
        pytest.skip(
            f"Debian's kernel and busybox-static are not unpacked in {root} (.ci/run fetches "
            "them with apt-get; TRIPLEFAULT_LINUX_DIR names another directory)"
        )
    return kernels[-1], busybox


ROOT = Path(__file__).resolve().parent.parent
LIMIT = 12_000_000_000  # about twice what the boot takes


def boot(kernel: Path, initrd: Path):
    m = Machine.from_elf(kernel, memory="256M", cmdline=CMDLINE, initrd=initrd)
    return m.run(max_instructions=LIMIT)


def test_debian_kernel_boots_to_userspace_twice_the_same(tmp_path: Path) -> None:
    kernel, busybox = debian_files()
    initrd = tmp_path / "initrd.gz"
    initrd.write_bytes(busybox_initramfs(busybox.read_bytes(), INIT))
    # the second run, from the command line, alongside the first (a core each where there are two)
    second = subprocess.Popen(
        [sys.executable, "-m", "emu", "run", str(kernel), "--initrd", str(initrd), "-m", "256M",
         "--append", CMDLINE, "--max-instructions", str(LIMIT), "--timeout", "0", "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        first = boot(kernel, initrd)
        serial = first.serial.decode("latin-1")
        assert first.stop_reason == "debug-exit", (first.describe(), serial[-3000:])
        assert "Linux version" in serial and "HELLO FROM USERSPACE" in serial
        assert "checks failed: 0" in serial, serial[serial.find("HELLO") :]
        assert first.exit_code == 0 and first.exit_status == 1
        assert "isa-debug-exit did not stop" not in serial
        assert "Disabled fast string operations" not in serial
        assert "PCI: Using configuration type 1 for base access" in serial
        out, _ = second.communicate(timeout=3600)
        data = json.loads(out)
        assert second.returncode == 1 and data["stop_reason"] == "debug-exit"
        # the same count and serial bytes in this process, after the rest of the suite, as from
        # `triplefault run` in a fresh one (an earlier host saw them part; not since)
        assert (data["instructions"], data["serial"].encode("latin-1")) == (
            first.instructions,
            first.serial,
        ), f"two runs differ: {first.instructions:,} and {data['instructions']:,} instructions"
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
