"""The boot information, byte for byte against GRUB 2.06 on QEMU 7.2.

images/probe-mbi (Multiboot2) and images/probe-mbi1 (Multiboot) print their entry state and
everything the loader handed them; tests/golden/qemu/probe-mbi*.serial is what they printed under
qemu-ref (GRUB 2.06-13+deb12u2 from a CD-ROM, QEMU 7.2) at several memory sizes, with a command
line, and with two modules. Here the same kernels boot on Triplefault and must print the same,
but for what GRUB leaves to chance and for what this machine does not have yet:

* padding bytes (Multiboot2 tags, Multiboot strings), the reserved word of Multiboot module
  entries and the OEM area of the VBE controller information hold whatever GRUB's memory held
  there; ours are zero;
* the ACPI 1.0 RSDP tag (14) that GRUB copies from SeaBIOS's tables holds our RSDP: the same
  but for the RSDT address and the checksum (our DSDT is smaller, so the RSDT is lower; see
  docs/platform.md); it is checked against our tables instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emu import Machine
from emu.machine import parse_memory_size
from firmware import ModuleSpec, pc_bios

pytestmark = pytest.mark.images

GOLDEN = Path(__file__).parent / "golden" / "qemu"
BUDGET = 50_000_000

# golden suffix: memory size, command line, modules
VARIANTS = {
    "": ("128M", "", False),
    ".32M": ("32M", "", False),
    ".1G": ("1G", "", False),
    ".3G": ("3G", "", False),
    ".cmdline": ("128M", "console=com1 loglevel=7 probe", False),
    ".modules": ("128M", "hello world", True),
}
TAG_LINE = re.compile(r"^tag \d+: offset 0x[0-9a-f]+ type (\d+) size (\d+)$")
MBI_LINE = re.compile(r"^mbi: addr (0x[0-9a-f]+) total_size (\d+) \(0x[0-9a-f]+\)(.*)$")
AREA_LINE = re.compile(r"^  ([0-9a-f]{8}):((?: [0-9a-f]{2})+)$")


def _modules(tmp_path: Path) -> list[ModuleSpec]:
    """The two modules the golden runs were given (qemu-ref --module)."""
    first = tmp_path / "mod0"
    first.write_bytes(b"module one data\n")
    second = tmp_path / "mod1"
    second.write_bytes(bytes(range(256)) * 20)
    return [ModuleSpec(str(first), "first args"), ModuleSpec(str(second))]


def _ours(image, tmp_path: Path, name: str, suffix: str) -> str:
    memory, cmdline, with_modules = VARIANTS[suffix]
    modules = _modules(tmp_path) if with_modules else []
    m = Machine.from_elf(image(name), memory=memory, cmdline=cmdline, modules=modules)
    r = m.run(max_instructions=BUDGET)
    assert r.stop_reason == "debug-exit" and r.exit_code == 0, r.describe()
    return r.serial.decode("ascii")


def _golden(name: str) -> str:
    return (GOLDEN / f"{name}.serial").read_text(encoding="ascii")


def mb2_view(text: str) -> tuple[list[str], list[bytes]]:
    """The lines without padding, with the ACPI tag's RSDT address and checksum masked; and
    the RSDPs the ACPI tags (14, 15) hold."""
    lines = text.replace("\r\n", "\n").splitlines()
    out: list[str] = []
    rsdps: list[bytes] = []
    in_acpi = False
    for line in lines:
        tag = TAG_LINE.match(line)
        if tag:
            kind, size = int(tag.group(1)), int(tag.group(2))
            in_acpi = kind in (14, 15)
            if in_acpi:
                rsdps.append(b"")
            out.append(f"tag type {kind} size {size}")
            continue
        if line.startswith("  padding:") or re.match(r"^mbi: \d+ tags", line):
            continue
        if in_acpi and (m := re.match(r"^  ([0-9a-f]{4}):((?: [0-9a-f]{2})+)$", line)):
            rsdps[-1] += bytes.fromhex(m.group(2))
            continue  # compared as bytes below
        if in_acpi and line.startswith("  decoded: rsdp signature"):
            line = re.sub(r"checksum 0x[0-9a-f]+", "checksum (ours)", line)
            line = re.sub(r"rsdt 0x[0-9a-f]+", "rsdt (ours)", line)
        if not line.startswith("  "):
            in_acpi = False
        out.append(line)
    return out, rsdps


@pytest.mark.parametrize("suffix", list(VARIANTS))
def test_multiboot2_information_is_grubs(image, tmp_path: Path, suffix: str) -> None:
    theirs, their_rsdps = mb2_view(_golden(f"probe-mbi{suffix}"))
    ours, our_rsdps = mb2_view(_ours(image, tmp_path, "probe-mbi", suffix))
    assert ours == theirs
    # GRUB's tag 14 copies the BIOS's 20-byte ACPI 1.0 RSDP: QEMU's but for the RSDT address
    # (and so the checksum), which is our RSDT's
    assert len(their_rsdps) == len(our_rsdps) == 1
    (their_rsdp,), (our_rsdp,) = their_rsdps, our_rsdps
    assert len(our_rsdp) == len(their_rsdp) == 20
    assert our_rsdp[:8] + our_rsdp[9:16] == their_rsdp[:8] + their_rsdp[9:16]
    tables = pc_bios.bios_tables(parse_memory_size(VARIANTS[suffix][0]))
    assert our_rsdp == tables.rsdp and sum(our_rsdp) & 0xFF == 0
    assert int.from_bytes(our_rsdp[16:20], "little") == tables.layout.rsdt


def _mask_mb1(text: str) -> list[str]:
    """The Multiboot probe's lines with the bytes GRUB leaves to chance zeroed: string padding,
    the module entries' reserved words, the VBE controller information's OEM area."""
    lines = text.replace("\r\n", "\n").splitlines()
    area: dict[int, int] = {}
    for line in lines:
        m = AREA_LINE.match(line)
        if m and int(m.group(1), 16) >= 0x10000:
            base = int(m.group(1), 16)
            for i, b in enumerate(m.group(2).split()):
                area[base + i] = int(b, 16)
    chance: set[int] = set()

    def string_padding(addr: int) -> None:
        end = addr
        while area.get(end, 0):
            end += 1
        chance.update(range(end + 1, (end + 4) & ~3))

    for line in lines:
        if m := re.match(r"^flag [29]: \w+ (0x[0-9a-f]+) ", line):
            string_padding(int(m.group(1), 16))
        if m := re.match(r"^  module \d+: .* string (0x[0-9a-f]+) ", line):
            string_padding(int(m.group(1), 16))
        if m := re.match(r"^flag 3: mods_count (\d+) mods_addr (0x[0-9a-f]+)", line):
            first = int(m.group(2), 16)
            for i in range(int(m.group(1))):
                chance.update(range(first + 16 * i + 12, first + 16 * i + 16))
        if m := re.match(r"^flag 11: vbe_control_info (0x[0-9a-f]+)", line):
            control = int(m.group(1), 16)
            chance.update(range(control + 0x100, control + 0x200))
    out = []
    for line in lines:
        m = AREA_LINE.match(line)
        if m and int(m.group(1), 16) >= 0x10000:
            base = int(m.group(1), 16)
            values = [0 if base + i in chance else int(b, 16) for i, b in
                      enumerate(m.group(2).split())]  # fmt: skip
            line = f"  {base:08x}:" + "".join(f" {v:02x}" for v in values)
        line = re.sub(r" reserved 0x[0-9a-f]+$", " reserved (any)", line)
        out.append(line)
    return out


@pytest.mark.parametrize("suffix", list(VARIANTS))
def test_multiboot_information_is_grubs(image, tmp_path: Path, suffix: str) -> None:
    theirs = _mask_mb1(_golden(f"probe-mbi1{suffix}"))
    ours = _mask_mb1(_ours(image, tmp_path, "probe-mbi1", suffix))
    assert ours == theirs


def test_the_masks_hide_only_what_grub_leaves_to_chance() -> None:
    """The golden outputs differ from ours only in the masked bytes: the masks are not
    hiding real differences (GRUB's bytes there are nonzero garbage, ours zero)."""
    raw = _golden("probe-mbi").replace("\r\n", "\n").splitlines()
    masked, _ = mb2_view(_golden("probe-mbi"))  # padding and the ACPI tag's bytes
    dropped = [line for line in raw if line.startswith("  padding:")]
    assert any(set(line.split()[1:]) != {"00"} for line in dropped)
    assert len(masked) < len(raw)
    mb1_raw = _golden("probe-mbi1").replace("\r\n", "\n").splitlines()
    mb1_masked = _mask_mb1(_golden("probe-mbi1"))
    changed = [a for a, b in zip(mb1_raw, mb1_masked, strict=True) if a != b]
    # the command line's and the loader name's padding, and 16 lines of VBE OEM area
    assert 16 <= len(changed) <= 20
