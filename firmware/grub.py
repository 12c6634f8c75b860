"""What GRUB 2.06 (Debian 2.06-13+deb12u2, i386-pc) puts in the boot information on QEMU 7.2
with SeaBIOS, measured with images/probe-mbi and images/probe-mbi1 under qemu-ref.

These are values GRUB reads from the BIOS or from itself; the loader copies them into the boot
information so that a kernel reads the same bytes as under GRUB. docs/loader.md lists them.
"""

from __future__ import annotations

import struct

from . import vbe

LOADER_NAME = "GRUB 2.06-13+deb12u2"  # GRUB's PACKAGE_STRING, the default boot loader name

# The boot device GRUB reports when it was booted from the El Torito CD-ROM (as qemu-ref boots
# it): BIOS drive 0xE0, no partition. Multiboot2 tag 5 carries (biosdev, slice, part);
# Multiboot's boot_device packs them as drive << 24 | part1 << 16 | part2 << 8 | 0xFF.
BOOT_DEVICE = (0xE0, 0xFFFFFFFF, 0xFFFFFFFF)
MB1_BOOT_DEVICE = 0xE0FFFFFF

# SeaBIOS's APM 1.2 interface (INT 15h AX=5303h), as GRUB copies it: version, 32-bit code
# segment and entry offset, 16-bit code segment, data segment, flags (16- and 32-bit protected
# mode supported), and the three segment lengths. The entry point is F000:D198.
APM_VERSION = 0x0102
APM_CSEG = 0xF000
APM_OFFSET = 0xD198
APM_CSEG_16 = 0xF000
APM_DSEG = 0xF000
APM_FLAGS = 0x0003
APM_CSEG_LEN = 0xFFF0
APM_CSEG_16_LEN = 0xFFF0
APM_DSEG_LEN = 0xFFF0


def apm_table() -> bytes:
    """The 20-byte APM table (Multiboot2 tag 10's body; Multiboot's layout is the same)."""
    return struct.pack(
        "<HHIHHHHHH", APM_VERSION, APM_CSEG, APM_OFFSET, APM_CSEG_16, APM_DSEG, APM_FLAGS,
        APM_CSEG_LEN, APM_CSEG_16_LEN, APM_DSEG_LEN,
    )  # fmt: skip


# GRUB's real-mode scratch buffer (GRUB_MEMORY_MACHINE_SCRATCH_ADDR, 6000:8000 = 0x68000): the
# BIOS writes the VBE controller and mode information there, GRUB copies them into the boot
# information, so the controller information's mode list pointer is 6000:8022. The BIOS fills
# 256 bytes of the 512 GRUB copies; bytes 0x100-0x1FF hold what the buffer held before: zeros
# when GRUB has set a graphics mode, disk data otherwise (measured; zeros here).
SCRATCH_SEGMENT, SCRATCH_OFFSET = 0x6000, 0x8000


def vbe_control_info() -> bytes:
    """The 512-byte VBE controller information block, as GRUB copies it."""
    return vbe.controller_info(SCRATCH_SEGMENT, SCRATCH_OFFSET).ljust(512, b"\0")


# In text mode GRUB reports VBE mode 3 and makes up the 256-byte mode information itself: all
# zeros but the memory model (0, text) and the resolution, 80x25.
VBE_TEXT_MODE = 3


def vbe_text_mode_info() -> bytes:
    info = bytearray(256)
    struct.pack_into("<HH", info, 0x12, 80, 25)
    return bytes(info)


# GRUB asks the BIOS for the VBE protected-mode interface (INT 10h AX=4F0Ah); SeaVGABIOS does
# not offer one, and GRUB 2.06 stores the registers the call left anyway: ES 0xFFFF, DI 0x6000,
# CX 0x4F (measured; the same on every boot).
VBE_INTERFACE = (0xFFFF, 0x6000, 0x004F)

# GRUB's relocator trampoline (grub_relocator32): 0xD0 bytes, 16-byte aligned, the lowest free
# place from 0x1000 up (below 0x9A000); its GDT is the last 0x20 bytes, at +0xB0.
TRAMPOLINE_SIZE = 0xD0
TRAMPOLINE_GDT_OFFSET = 0xB0
TRAMPOLINE_LOW = 0x1000
TRAMPOLINE_HIGH = 0x9A000

# The Multiboot (version 1) information goes in low memory: GRUB asks its relocator for
# [0x10000, 0xA0000), 4-byte aligned.
MB1_INFO_LOW = 0x10000
MB1_INFO_HIGH = 0xA0000

# GRUB's own heap objects (its modules, file buffers, the disk cache) sit at the top of the RAM
# below QEMU's reserved 128 KiB: measured under 128 MiB, a kernel segment may end at 0x7F80100
# but not reach 0x7FA0000, and a relocatable image with preference "high" ends near 0x7F9A123.
HEAP_TOP_IN_USE = 0x46000
