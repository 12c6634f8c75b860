"""The platform probes (images/probe-*): kernels that print what they find of the PC around the
CPU. Their output under QEMU 7.2 + GRUB 2.06 is recorded in tests/golden/qemu/, and Triplefault
must print the same. The lines below are the documented exceptions (docs/platform.md): each
says why it differs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Probe:
    name: str
    memory: str = "128M"
    golden: str = ""  # file name in tests/golden/qemu/ (default: <name>.serial)
    # lines that may differ, with the reason: (regex matched against each line, why)
    differs: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    qemu_cpu: str = "qemu64"  # qemu-ref's --cpu for the live comparison

    @property
    def golden_file(self) -> str:
        return self.golden or f"{self.name}.serial"

    def comparable(self, text: str) -> list[str]:
        lines = text.replace("\r\n", "\n").split("\n")
        patterns = [re.compile(p) for p, _why in self.differs]
        return [line for line in lines if not any(p.search(line) for p in patterns)]


_TICKS = (
    r"^bda 00000460: ",
    "the BIOS tick counter at 0x46C counts the wall-clock time GRUB took under QEMU; ours is "
    "the time of day of the CMOS clock at virtual time 0",
)
_TABLES = (
    r'^table "(_MP_|RSD PTR |_SM_|\$PIR|\$PnP)" 000[ef]',
    "SeaBIOS's MP, ACPI, SMBIOS, $PIR and $PnP tables are not built yet",
)

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

PROBES: tuple[Probe, ...] = (
    Probe("probe-openbus"),
    Probe("probe-openbus", "32M", "probe-openbus.32M.serial"),
    Probe("probe-openbus", "1G", "probe-openbus.1G.serial"),
    Probe("probe-bios", differs=(_TICKS, _TABLES)),
    Probe("probe-bios", "32M", "probe-bios.32M.serial", (_TICKS, _TABLES)),
    Probe("probe-bios", "1G", "probe-bios.1G.serial", (_TICKS, _TABLES)),
    Probe("probe-devices", differs=_DEVICES),
    Probe("probe-devices", "32M", "probe-devices.32M.serial", _DEVICES),
    Probe("probe-devices", "1G", "probe-devices.1G.serial", _DEVICES),
    # our CPU is qemu64 without SVM and (until the APIC change) without the local APIC
    Probe("probe-cpuid", golden="probe-cpuid.no-svm-no-apic.serial", qemu_cpu="qemu64,-svm,-apic"),
)
