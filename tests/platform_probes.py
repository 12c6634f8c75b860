"""The platform probes (images/probe-*): kernels that print what they find of the PC around the
CPU. Their output under QEMU 7.2 + GRUB 2.06 is recorded in tests/golden/qemu/, and Triplefault
must print the same. The lines below are the documented exceptions (docs/platform.md): each
says why it differs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest


@dataclass(frozen=True)
class Probe:
    name: str
    memory: str = "128M"
    golden: str = ""  # file name in tests/golden/qemu/ (default: <name>.serial)
    # lines that may differ, with the reason: (regex matched against each line, why)
    differs: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    qemu_cpu: str = "qemu64"  # qemu-ref's --cpu for the live comparison
    # parts of lines that may differ, rewritten before the comparison: (regex, replacement, why)
    masks: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)
    # why the probe cannot match yet (its tests are expected to fail, strictly), or ""
    pending: str = ""
    # lines QEMU itself prints differently from run to run, with the reason: left out of the
    # comparison with a live QEMU run only (the recording is one run of QEMU's, which ours
    # must still match)
    unstable: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def golden_file(self) -> str:
        return self.golden or f"{self.name}.serial"

    def masked(self, text: str) -> list[str]:
        # one recording (probe-tables.serial) was saved with a newline after the serial's own
        # last line: trailing empty lines say nothing about the guest
        lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
        for pattern, replacement, _why in self.masks:
            lines = [re.sub(pattern, replacement, line) for line in lines]
        return lines

    def comparable(self, text: str, *, live: bool = False) -> list[str]:
        """The lines to compare: masked, without the documented differences (and, against a
        ``live`` QEMU run, without the lines QEMU does not repeat)."""
        exceptions = self.differs + (self.unstable if live else ())
        patterns = [re.compile(p) for p, _why in exceptions]
        return [line for line in self.masked(text) if not any(p.search(line) for p in patterns)]


_TICKS = (
    r"^bda 00000460: ",
    "the BIOS tick counter at 0x46C counts the wall-clock time GRUB took under QEMU; ours is "
    "the time of day of the CMOS clock at virtual time 0",
)
_LOW_ZONE_SUM = (
    r"^optionrom 000e8000: ",
    "SeaBIOS's low-memory zone at 0xE8000 holds its live stack and a counter, so under QEMU "
    "its byte sum changes from run to run (it is 0, a valid checksum, about one run in 256)",
)
_TABLES = (
    r'^table "(_SM_|\$PIR|\$PnP)" 000[ef]',
    "SeaBIOS's SMBIOS, $PIR and $PnP tables are not built",
)
_RSDP = (
    r'^table "RSD PTR " 000f59d0: ',
    "our DSDT is smaller than QEMU's, so the RSDT it names is lower (and the checksum differs)",
)

# probe-tables: our DSDT (189 bytes) is not QEMU's (6476), so every table after it is lower
_ACPI_MOVED = (
    r"^(table (RSDT|FACP|APIC|HPET|WAET) at |(RSDT|FACP|APIC|HPET|WAET) )[0-9a-f]{8}",
    r"\1(address)",
    "the tables after our own, smaller DSDT sit lower than QEMU's; their bytes are compared",
)
_ACPI_RSDT_NAMED = (
    r"^(acpi RSDP at 000f59d0, revision 0, RSDT at )[0-9a-f]{8}$",
    r"\1(address)",
    "the RSDT moves with the tables after our DSDT",
)
_ACPI_POINTERS = (
    r"^(RSDP 000f59d0: 52|RSDP 000f59e0: |RSDT \(address\): (52|01 00 00 00|[0-9a-f]{2} [0-9a-f]{2} fe))",
    "the RSDP's and the RSDT's pointers (and checksums) name the lower tables",
)
_DSDT = (
    r"^(table DSDT at [0-9a-f]{8}, \d+ bytes|DSDT [0-9a-f]{8}: (44 53 44 54|checksum over))",
    "our own small DSDT: its length and checksum (its IDs are compared)",
)
_PROBE_TABLES_MASKS = (_ACPI_MOVED, _ACPI_RSDT_NAMED)
_PROBE_TABLES_DIFFERS = (_ACPI_POINTERS, _DSDT)

_I8042_STATUS = (
    r"^i8042 status: ",
    "QEMU never clears status bit 3 (the last write was a command); ours follows the last "
    "write, as an 8042 does",
)
_DAC_MASK = (
    r"^vga dac: mask ",
    "QEMU does not decode reads of the DAC mask (0x3C6); SeaVGABIOS wrote 0xFF, which ours reads",
)
_PIT_CH2 = (
    r"^pit ch2 status: ",
    "QEMU's channel 2 counts on in mode 0 with its gate closed; an 8254 holds the count",
)
_DEVICES = (_I8042_STATUS, _DAC_MASK, _PIT_CH2)
_APIC_ERRORS = (
    r"^lapic error: ",
    "QEMU delivers an IPI with vector 3, sets ESR bits at once, never raises the LVT error "
    "interrupt; ours follows the SDM: the IPI is not sent, ESR bit 5 (send illegal vector) is "
    "latched at the next write to the ESR, and each error raises the LVT error vector",
)
_ESR = (
    r"^esr (after reading reserved 040|latched again): ",
    "QEMU never clears the local APIC's ESR and sets it at once; ours latches the errors into "
    "it at each write to it, as the SDM says",
)


def params(probes: tuple[Probe, ...]) -> list:
    """The probes as pytest parameters: a pending one is expected to fail (strictly: it must
    start failing loudly once it passes)."""
    return [
        pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=p.pending)) if p.pending
        else p
        for p in probes
    ]  # fmt: skip


PROBES: tuple[Probe, ...] = (
    Probe("probe-openbus"),
    Probe("probe-openbus", "32M", "probe-openbus.32M.serial"),
    Probe("probe-openbus", "1G", "probe-openbus.1G.serial"),
    Probe("probe-bios", differs=(_TICKS, _TABLES, _RSDP), unstable=(_LOW_ZONE_SUM,)),
    Probe(
        "probe-bios",
        "32M",
        "probe-bios.32M.serial",
        (_TICKS, _TABLES, _RSDP),
        unstable=(_LOW_ZONE_SUM,),
    ),
    Probe(
        "probe-bios",
        "1G",
        "probe-bios.1G.serial",
        (_TICKS, _TABLES, _RSDP),
        unstable=(_LOW_ZONE_SUM,),
    ),
    Probe("probe-devices", differs=_DEVICES),
    Probe("probe-devices", "32M", "probe-devices.32M.serial", _DEVICES),
    Probe("probe-devices", "1G", "probe-devices.1G.serial", _DEVICES),
    Probe("probe-tables", differs=_PROBE_TABLES_DIFFERS, masks=_PROBE_TABLES_MASKS),
    Probe(
        "probe-tables",
        "32M",
        "probe-tables.32M.serial",
        _PROBE_TABLES_DIFFERS,
        masks=_PROBE_TABLES_MASKS,
    ),
    Probe(
        "probe-tables",
        "1G",
        "probe-tables.1G.serial",
        _PROBE_TABLES_DIFFERS,
        masks=_PROBE_TABLES_MASKS,
    ),
    Probe("bios"),
    Probe("bios", "32M", "bios.32M.serial"),
    Probe("bios", "1G", "bios.1G.serial"),
    Probe("apic", differs=(_APIC_ERRORS,)),
    # our CPU is qemu64 without SVM
    Probe("probe-cpuid", golden="probe-cpuid.no-svm.serial", qemu_cpu="qemu64,-svm"),
    Probe("probe-lapic", differs=(_ESR,)),
)
