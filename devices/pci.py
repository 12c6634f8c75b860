"""PCI configuration mechanism #1 (ports 0xCF8/0xCFC) with the two functions of QEMU's pc
machine that a kernel needs to find a PCI bus: the i440FX host bridge (00:00.0) and the PIIX3
PCI-to-ISA bridge (00:01.0), and the PIIX3's reset control register at port 0xCF9.

The configuration bytes are what QEMU 7.2 shows after SeaBIOS (read with a probe under
qemu-ref, every register of both functions): IDs, command and status, class, revision, header
type (the PIIX3's multi-function bit), QEMU's subsystem IDs 1AF4:1100, the i440FX's PAM and
SMRAM registers, and the PIIX3's PIRQ routing (IRQ 10, 10, 11, 11), top of memory, DMA and SMI
registers as SeaBIOS programs them. Writable, as QEMU makes them: the command register's
implemented bits, cache line size, interrupt line, and the device-specific registers 0x40-0xFF.
Nothing behind those registers is modelled (PAM and SMRAM do not remap memory, the PIRQ routes
route no device): a write there is stored and logged once. No other function exists: QEMU's IDE
(01.1), PIIX4 power management (01.3) and VGA (02.0) functions read as absent (all-ones).

Config address (0xCF8): a 32-bit register, read back as written; byte and word accesses to it
are not config cycles (a byte write to 0xCFB, Linux's type-1 check, changes nothing, as QEMU).
Config data (0xCFC-0xCFF): bytes, words or dwords of the register the address selects, at the
port's offset; with the enable bit (31) clear, or for a function that is not there, reads are
all-ones and writes are dropped.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC
RESET_CONTROL = 0xCF9
ENABLE = 1 << 31
COMMAND_WRITABLE = 0x0547  # I/O, memory, bus master, parity, SERR, INTx disable (QEMU's mask)
SUBSYSTEM = (0x1AF4, 0x1100)  # QEMU's (Red Hat, Qumranet) subsystem IDs on every function


def _header(vendor: int, device: int, command: int, status: int, class_code: int,
            revision: int, header_type: int) -> bytearray:  # fmt: skip
    config = bytearray(256)
    struct.pack_into("<HHHH", config, 0, vendor, device, command, status)
    struct.pack_into("<I", config, 8, class_code << 8 | revision)
    config[0x0E] = header_type
    struct.pack_into("<HH", config, 0x2C, *SUBSYSTEM)
    return config


def i440fx_config() -> bytearray:
    """00:00.0, Intel 82441FX (PMC) host bridge, as QEMU 7.2 shows it after SeaBIOS."""
    config = _header(0x8086, 0x1237, 0x0103, 0x0000, 0x060000, 0x02, 0x00)
    config[0x57] = 0x20  # DRAM control, as QEMU initialises it
    config[0x59:0x60] = bytes([0x10, 0x11, 0x11, 0x11, 0x11, 0x11, 0x33])  # PAM0-PAM6
    config[0x72] = 0x0A  # SMRAM: SMM space closed, compatible SMRAM at 0xA0000
    return config


def piix3_config() -> bytearray:
    """00:01.0, Intel 82371SB (PIIX3) PCI-to-ISA bridge, as QEMU 7.2 shows it after SeaBIOS."""
    config = _header(0x8086, 0x7000, 0x0103, 0x0200, 0x060100, 0x00, 0x80)
    config[0x4C] = 0x4D  # ISA I/O recovery timer
    config[0x4E] = 0x03  # X-bus chip select: BIOS and keyboard controller
    config[0x60:0x64] = bytes([0x0A, 0x0A, 0x0B, 0x0B])  # PIRQA-D routed to IRQ 10, 10, 11, 11
    config[0x69] = 0x02  # top of memory
    config[0x70] = 0x80  # motherboard IRQ 0 routing disabled
    config[0x76:0x78] = bytes([0x0C, 0x0C])  # motherboard DMA channels disabled
    config[0x78] = 0x02  # programmable chip select
    config[0xA0] = 0x08  # SMI control
    config[0xA8] = 0x0F  # SMI request
    return config


@dataclass
class PciFunction:
    """One function's 256-byte configuration space and the bits a write may change."""

    name: str
    config: bytearray
    wmask: bytearray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.wmask = bytearray(256)
        struct.pack_into("<H", self.wmask, 0x04, COMMAND_WRITABLE)
        self.wmask[0x0C] = 0xFF  # cache line size
        self.wmask[0x3C] = 0xFF  # interrupt line
        self.wmask[0x40:] = b"\xff" * 0xC0  # device-specific registers

    def read(self, reg: int, size: int) -> int:
        return int.from_bytes(self.config[reg : reg + size], "little")

    def write(self, reg: int, size: int, value: int) -> bool:
        """Store the writable bits; True if a device-specific register changed."""
        changed = False
        for i in range(size):
            mask = self.wmask[reg + i]
            new = (self.config[reg + i] & ~mask | (value >> 8 * i) & mask) & 0xFF
            changed |= reg + i >= 0x40 and new != self.config[reg + i]
            self.config[reg + i] = new
        return changed


class PciHost:
    """The configuration mechanism on bus 0 with the i440FX and the PIIX3. ``request_reset``
    is called when the guest resets the machine through the PIIX3's port 0xCF9."""

    def __init__(self, request_reset: Callable[[], None]) -> None:
        self.request_reset = request_reset
        self._logged: set[str] = set()
        self.reset()

    def reset(self) -> None:
        self.address = 0
        self.reset_control = 0
        self.functions: dict[int, PciFunction] = {  # devfn -> function
            0x00: PciFunction("i440FX host bridge", i440fx_config()),
            0x08: PciFunction("PIIX3 ISA bridge", piix3_config()),
        }

    def _selected(self) -> tuple[PciFunction | None, int]:
        """The function and register the address selects (bus 0 only), when enabled."""
        if not self.address & ENABLE or (self.address >> 16) & 0xFF:
            return None, 0
        return self.functions.get((self.address >> 8) & 0xFF), self.address & 0xFC

    # ------------------------------------------------------------------ 0xCF8-0xCFF
    def read(self, offset: int, size: int) -> int:
        if offset < 4:
            if offset == 0 and size == 4:
                return self.address
            if offset == 1 and size == 1:
                return self.reset_control
            return (1 << 8 * size) - 1  # not a config cycle: nothing answers
        function, reg = self._selected()
        if function is None:
            return (1 << 8 * size) - 1
        return function.read(reg + offset - 4, size)

    def write(self, offset: int, size: int, value: int) -> None:
        if offset < 4:
            if offset == 0 and size == 4:
                self.address = value
            elif offset == 1 and size == 1:
                self._reset_control(value)
            return
        function, reg = self._selected()
        if function is None:
            return
        if function.write(reg + offset - 4, size, value):
            self._note(f"{function.name} register 0x{reg + offset - 4:02x}")

    def _reset_control(self, value: int) -> None:
        """PIIX3 reset control: bit 2 starts a reset (bit 1 picks hard or soft: both reset
        the machine here, as under QEMU); bit 1 is kept."""
        if value & 0x04:
            self.request_reset()
            return
        self.reset_control = value & 0x02

    def _note(self, what: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.info("PCI: %s written; what it controls is not modelled", what)
