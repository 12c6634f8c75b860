"""Differential tests against QEMU under GRUB: the bundled kernels and the platform probes, run by
../shared/tools/qemu-ref and by Triplefault, must print the same serial output and raise the same
exceptions (vector, error code, RIP, CPL, software or not), in the same order, and end the same
way.

They run whenever qemu-system-x86_64, grub-mkrescue and xorriso are installed (CI installs them;
``TRIPLEFAULT_QEMU=0`` skips them) and take a second or two each. Nothing is left out of the
bundled kernels' comparison; the probes' documented exceptions are in platform_probes.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from platform_probes import PROBES, Probe, params

from emu import Machine

QEMU_REF = Path(__file__).resolve().parents[2] / "shared" / "tools" / "qemu-ref"
MISSING = [
    name
    for name, present in (
        ("qemu-ref", QEMU_REF.exists()),
        ("qemu-system-x86_64", shutil.which("qemu-system-x86_64")),
        ("grub-mkrescue", shutil.which("grub-mkrescue")),
        ("xorriso", shutil.which("xorriso")),
    )
    if not present
]

pytestmark = [
    pytest.mark.images,
    pytest.mark.qemu,
    pytest.mark.skipif(os.environ.get("TRIPLEFAULT_QEMU") == "0", reason="TRIPLEFAULT_QEMU=0"),
    pytest.mark.skipif(
        bool(MISSING), reason=f"the QEMU reference needs {', '.join(MISSING)} (not installed)"
    ),
]


def _serial(text: str) -> list[str]:
    return text.replace("\r\n", "\n").split("\n")


def _qemu(elf: Path, memory: str = "128M", cpu: str = "qemu64") -> dict:
    out = subprocess.run(
        [sys.executable, str(QEMU_REF), str(elf), "--isa-exit", "--json", "--idle", "1",
         "--timeout", "60", "--mem", memory, "--cpu", cpu],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    return json.loads(out.stdout)


@pytest.mark.parametrize("probe", params(PROBES), ids=lambda p: f"{p.name}-{p.memory}")
def test_probe_same_as_qemu_now(image, probe: Probe) -> None:
    """The platform probes against a QEMU run now (the recorded output is compared in
    test_platform_probes.py), with the same documented exceptions, and without the lines QEMU
    itself does not repeat from run to run."""
    elf = image(probe.name)
    ref = _qemu(elf, probe.memory, probe.qemu_cpu)
    r = Machine.from_elf(elf, memory=probe.memory).run(max_instructions=200_000_000)
    ours = probe.comparable(r.serial.decode("latin-1"), live=True)
    assert ours == probe.comparable(ref["serial"], live=True)


@pytest.mark.parametrize(
    "name",
    [
        "hello",
        "hello-mb1",
        "lost-in-32bit",
        "lost-through-eax",
        "faults",
        "faults-df",
        "faults-triple",
        "paging",
    ],
)
def test_same_as_qemu_under_grub(image, name: str) -> None:
    elf = image(name)
    ref = _qemu(elf)
    r = Machine.from_elf(elf).run(max_instructions=50_000_000)
    assert _serial(r.serial.decode("latin-1")) == _serial(ref["serial"])
    theirs = [
        (e["vector"], e["error"], e["ip"], e["cpl"], e["soft"])
        for e in ref["exceptions"]
        if "vector" in e
    ]
    ours = [
        (e.vector, e.error_code or 0, e.rip, e.cpl, e.kind == "software") for e in r.trace.entries
    ]
    assert ours == theirs
    ended = {"isa-debug-exit": "debug-exit", "shutdown:guest-reset": "triple-fault"}
    assert ended.get(ref["end"], ref["end"]) == r.stop_reason
    if r.stop_reason == "debug-exit":
        assert r.exit_code == ref["isa_debug_exit_code"]


@pytest.mark.parametrize("name", ["poll-cmos", "poll-serial", "poll-spin"])
def test_polling_kernels_same_as_qemu_under_grub(image, name: str) -> None:
    """The polling kernels wait seconds of guest time (QEMU in real time, Triplefault in virtual
    time with fast-forward): the same serial output and the same exit."""
    elf = image(name)
    out = subprocess.run(
        [sys.executable, str(QEMU_REF), str(elf), "--isa-exit", "--json", "--idle", "0",
         "--timeout", "60", "--mem", "128M", "--cpu", "qemu64"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    ref = json.loads(out.stdout)
    r = Machine.from_elf(elf).run(timeout=120)
    assert r.serial.decode("latin-1") == ref["serial"]
    assert ref["end"] == "isa-debug-exit" and r.stop_reason == "debug-exit"
    assert r.exit_code == ref["isa_debug_exit_code"] == 0


def test_real_mode_same_as_qemu_under_grub(image) -> None:
    """images/real-mode: its real-mode interrupts and exceptions are not in QEMU's interrupt log
    (QEMU logs deliveries in protected mode only), so the serial output, which prints every
    frame the handlers were given, and the triple fault that ends the run are compared."""
    elf = image("real-mode")
    ref = _qemu(elf)
    r = Machine.from_elf(elf).run(max_instructions=10_000_000)
    assert r.serial.decode("latin-1") == ref["serial"]
    assert ref["end"] == "shutdown:guest-reset" and r.stop_reason == "triple-fault"
    assert [e for e in ref["exceptions"] if "vector" in e] == []  # nothing logged in real mode


@pytest.mark.parametrize("name", ["video", "video-mb1", "video-mb1-640x480x8", "video-640x480x15"])
def test_video_same_as_qemu_now(image, tmp_path: Path, name: str) -> None:
    """The video images against QEMU now: the same serial output (but for GRUB's stack word in
    a Multiboot kernel's vbe_interface_seg, see test_video_modes.py) and the framebuffer equal
    to QEMU's screendump pixel for pixel. With "hold" on the command line the kernel halts
    instead of exiting, so that QEMU's screen can be dumped."""
    import numpy as np
    from PIL import Image
    from test_video_modes import _comparable

    elf = image(name)
    dump = tmp_path / "screen.ppm"
    out = subprocess.run(
        [sys.executable, str(QEMU_REF), str(elf), "--cmdline", "hold", "--isa-exit", "--json",
         "--idle", "1", "--timeout", "60", "--mem", "128M", "--cpu", "qemu64",
         "--hmp", f"screendump {dump}"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    ref = json.loads(out.stdout)
    assert ref["end"] == "halted-interrupts-off", ref["end"]
    m = Machine.from_elf(elf, cmdline="hold")
    r = m.run(max_instructions=300_000_000)
    assert r.stop_reason == "halted", r.describe()
    assert _comparable(r.serial.decode("latin-1"), name) == _comparable(ref["serial"], name)
    screen = np.asarray(Image.open(dump).convert("RGB"))
    assert (m.framebuffer.rgb(m.vga.dac) == screen).all()
