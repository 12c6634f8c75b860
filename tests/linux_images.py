"""Small Linux boot-protocol images for the loader's tests: a bzImage's setup header around a
few bytes of 32-bit code, and a gzip-compressed cpio (newc) initramfs built from files."""

from __future__ import annotations

import gzip
import struct

SECTOR = 512

# 32-bit code at code32_start: copy the command line (boot_params.hdr.cmd_line_ptr) to COM1,
# then write boot_params.hdr.type_of_loader to isa-debug-exit and halt.
ECHO_CMDLINE = bytes.fromhex(
    "8b9e28020000"  # mov ebx,[esi+0x228]
    "8a03"  # next: mov al,[ebx]
    "84c0"  # test al,al
    "7408"  # jz done
    "66baf803"  # mov dx,0x3f8
    "ee"  # out dx,al
    "43"  # inc ebx
    "ebf2"  # jmp next
    "8a8610020000"  # done: mov al,[esi+0x210]
    "e6f4"  # out 0xf4,al
    "f4ebfd"  # hlt; jmp $-1
)


def bzimage(
    *,
    version: int = 0x020F,
    setup_sects: int = 4,
    loadflags: int = 0x01,
    init_size: int = 0x400000,
    pref_address: int = 0x1000000,
    relocatable: bool = True,
    cmdline_size: int = 2047,
    initrd_addr_max: int = 0x7FFFFFFF,
    code: bytes = ECHO_CMDLINE,
    payload: int = 0x1000,
    syssize: int | None = None,
) -> bytes:
    """A bzImage: boot sector and setup sectors with a setup header, then the protected-mode
    part (``code`` padded to ``payload`` bytes)."""
    setup = bytearray((setup_sects + 1) * SECTOR)
    prot = code.ljust(payload, b"\xf4")
    setup[0x1F1] = setup_sects
    struct.pack_into("<I", setup, 0x1F4, syssize if syssize is not None else len(prot) // 16)
    struct.pack_into("<HH", setup, 0x1FA, 0xFFFF, 0)  # vid_mode normal, root_dev
    struct.pack_into("<H", setup, 0x1FE, 0xAA55)
    setup[0x200:0x202] = bytes([0xEB, 0x6A])  # jump: the header ends at 0x26C
    struct.pack_into("<IH", setup, 0x202, 0x53726448, version)
    setup[0x211] = loadflags
    struct.pack_into("<I", setup, 0x214, 0x100000)  # code32_start
    struct.pack_into("<H", setup, 0x224, 0x5BE0)  # heap_end_ptr as the kernel ships it
    struct.pack_into("<II", setup, 0x22C, initrd_addr_max, 0x200000)
    setup[0x234], setup[0x235] = int(relocatable), 21
    struct.pack_into("<HI", setup, 0x236, 0x7F, cmdline_size)
    struct.pack_into("<QI", setup, 0x258, pref_address, init_size)
    return bytes(setup) + prot


def cpio_newc(files: list[tuple[str, int, bytes, tuple[int, int]]]) -> bytes:
    """A cpio archive in the "newc" format the kernel unpacks: (name, mode, data, (major,
    minor) of a device node) each, then the trailer."""
    out = bytearray()
    for ino, (name, mode, data, rdev) in enumerate([*files, ("TRAILER!!!", 0, b"", (0, 0))], 1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        out += b"070701" + "".join(f"{v:08X}" for v in fields).encode() + encoded
        out += b"\0" * (-len(out) % 4)
        out += data + b"\0" * (-len(data) % 4)
    return bytes(out)


def busybox_initramfs(busybox: bytes, init: str) -> bytes:
    """A gzip-compressed initramfs: /bin/busybox, /init (a busybox shell script), and the
    device nodes /init needs before anything is mounted (the console, /dev/port)."""
    files = [
        ("bin", 0o40755, b"", (0, 0)),
        ("dev", 0o40755, b"", (0, 0)),
        ("proc", 0o40755, b"", (0, 0)),
        ("sys", 0o40755, b"", (0, 0)),
        ("bin/busybox", 0o100755, busybox, (0, 0)),
        ("init", 0o100755, init.encode(), (0, 0)),
        ("dev/console", 0o20600, b"", (5, 1)),
        ("dev/port", 0o20600, b"", (1, 4)),
    ]
    return gzip.compress(cpio_newc(files), mtime=0)
