"""Booting a Linux bzImage as GRUB 2.06's ``linux`` and ``initrd`` commands do on a BIOS PC.

The kernel's setup header (Documentation/x86/boot.rst) says where the protected-mode part goes
and how much room it needs; GRUB copies that part to the kernel's preferred address (its
``pref_address`` for a relocatable kernel, 1 MiB otherwise), puts the initrd as high as its
relocator allows below ``initrd_addr_max``, and at boot builds ``struct boot_params`` (the
"zero page") with the setup header, the E820 memory map and the command line in low memory
below 0x90000. The CPU enters the kernel's 32-bit entry point (``code32_start``) in flat
protected mode with ESI = the zero page, as the 32-bit boot protocol says.

GRUB's own rules (grub-core/loader/i386/linux.c, 2.06) are followed where boot.rst leaves a
choice: which fields it writes, the initrd's highest address, the size and place of the real-mode
area. ``load_linux`` does the placing; ``firmware/boot.py`` calls it for a file that carries the
"HdrS" signature.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from emu.errors import LoaderError

from .memmap import AVAILABLE, GuestMemory, MemoryRegion
from .relocator import PREFERENCE_HIGH, PREFERENCE_LOW, Relocator, align_up

SECTOR = 512
SETUP_HEADER = 0x1F1  # the setup header's offset in the file and in boot_params
BOOT_FLAG = 0xAA55
HDRS = 0x53726448  # "HdrS"
MIN_VERSION = 0x0202  # cmd_line_ptr: the 32-bit boot protocol needs it
DEFAULT_SETUP_SECTS = 4  # setup_sects 0 means 4
MAX_SETUP_SECTS = 64  # GRUB refuses more ("too many setup sectors")
BZIMAGE_ADDR = 0x100000  # where a non-relocatable bzImage's protected-mode part goes
LOADED_HIGH = 0x01
QUIET_FLAG = 0x20
CAN_USE_HEAP = 0x80
ZERO_PAGE_SIZE = 0x1000

# What GRUB 2.06 writes (include/grub/i386/linux.h): its boot loader id (T=7 GRUB, V=2), the
# setup heap's end (0x9000 - 0x200, relative to the real-mode code), the old command-line
# protocol's magic and offset (ignored by kernels of protocol 2.02 and later), and the initrd
# ceiling it applies whatever the kernel says (Linux's initrd_addr_max "is bogus", says GRUB).
GRUB_LOADER_TYPE = 0x72
GRUB_HEAP_END_OFFSET = 0x9000 - 0x200
GRUB_CL_MAGIC = 0xA33F
GRUB_CL_OFFSET = 0x1000
GRUB_INITRD_MAX_ADDRESS = 0x37FFFFFF
GRUB_EXT_MEM_KIB = (32 << 20) >> 10  # ext_mem_k and alt_mem_k: GRUB writes 32 MiB, unchecked
E820_ENTRY = 20
E820_MAX = 128

# The real-mode area (the zero page and the command line) goes in the first available memory
# map entry between these, at its top (GRUB's grub_linux_boot_mmap_find).
REAL_MODE_LOW, REAL_MODE_HIGH = 0x10000, 0x90000

# boot_params offsets (Documentation/arch/x86/zero-page.rst) and setup header offsets.
BP_ORIG_X, BP_ORIG_Y, BP_EXT_MEM_K = 0x00, 0x01, 0x02
BP_VIDEO_MODE, BP_VIDEO_COLS, BP_VIDEO_LINES, BP_VIDEO_IS_VGA = 0x06, 0x07, 0x0E, 0x0F
BP_VIDEO_POINTS, BP_CL_MAGIC, BP_CL_OFFSET = 0x10, 0x20, 0x22
BP_ALT_MEM_K, BP_E820_ENTRIES, BP_E820_TABLE = 0x1E0, 0x1E8, 0x2D0
HDR_ROOT_DEV, HDR_JUMP, HDR_TYPE_OF_LOADER, HDR_LOADFLAGS = 0x1FC, 0x200, 0x210, 0x211
HDR_CODE32_START, HDR_RAMDISK_IMAGE, HDR_RAMDISK_SIZE = 0x214, 0x218, 0x21C
HDR_HEAP_END_PTR, HDR_CMD_LINE_PTR, HDR_KERNEL_ALIGNMENT = 0x224, 0x228, 0x230


def is_bzimage(data: bytes) -> bool:
    """A Linux kernel image with a setup header: the boot sector's 0xAA55 and "HdrS"."""
    return (
        len(data) >= 0x206
        and struct.unpack_from("<H", data, 0x1FE)[0] == BOOT_FLAG
        and struct.unpack_from("<I", data, 0x202)[0] == HDRS
    )


@dataclass(frozen=True)
class SetupHeader:
    """The setup header fields a boot loader reads (boot.rst, "The Real-Mode Kernel Header")."""

    version: int
    setup_sects: int  # 0 already replaced by 4
    loadflags: int
    code32_start: int
    initrd_addr_max: int
    kernel_alignment: int
    relocatable: bool
    min_alignment: int
    xloadflags: int
    cmdline_size: int  # the longest command line, without its NUL
    pref_address: int
    init_size: int
    header_end: int  # 0x202 + the jump's offset byte: the end of the header in the file
    kernel_version: str

    @property
    def version_text(self) -> str:
        return f"{self.version >> 8}.{self.version & 0xFF:02d}"

    @property
    def setup_size(self) -> int:
        """Bytes before the protected-mode part: the boot sector and the setup sectors."""
        return (self.setup_sects + 1) * SECTOR


def parse_setup_header(data: bytes, name: str) -> SetupHeader:
    """The setup header of a bzImage, every field the loader relies on checked."""
    if not is_bzimage(data):
        raise LoaderError(f'{name}: not a Linux kernel image (no 0xAA55 and "HdrS" at 0x1FE)')
    version = struct.unpack_from("<H", data, 0x206)[0]
    if version < MIN_VERSION:
        raise LoaderError(
            f"{name}: Linux boot protocol {version >> 8}.{version & 0xFF:02d} is too old: the "
            "32-bit boot protocol needs 2.02 or later (cmd_line_ptr)"
        )
    header_end = 0x202 + data[0x201]
    if data[HDR_JUMP] != 0xEB or header_end > 0x290:
        raise LoaderError(f"{name}: the setup header's jump (0x{data[0x200]:02x} "
                          f"0x{data[0x201]:02x}) does not end the header below 0x290")  # fmt: skip
    if len(data) < header_end:
        raise LoaderError(f"{name}: truncated bzImage: the setup header ends at byte "
                          f"0x{header_end:x}, the file has {len(data)} bytes")  # fmt: skip
    setup_sects = data[SETUP_HEADER] or DEFAULT_SETUP_SECTS
    if setup_sects > MAX_SETUP_SECTS:
        raise LoaderError(f"{name}: {setup_sects} setup sectors: GRUB 2.06 takes at most "
                          f"{MAX_SETUP_SECTS} ('too many setup sectors')")  # fmt: skip
    loadflags = data[HDR_LOADFLAGS]
    if not loadflags & LOADED_HIGH:
        raise LoaderError(f"{name}: a zImage (loadflags bit 0 clear, loaded at 0x10000): only "
                          "a bzImage can be booted through the 32-bit boot protocol")  # fmt: skip

    def field(offset: int, fmt: str, since: int, default: int = 0) -> int:
        if version < since or offset + struct.calcsize(fmt) > header_end:
            return default
        return struct.unpack_from("<" + fmt, data, offset)[0]

    alignment = field(0x230, "I", 0x0205)
    relocatable = bool(field(0x234, "B", 0x0205)) and alignment and not alignment & (alignment - 1)
    kv = field(0x20E, "H", 0x0200)
    text = b""
    if kv and kv + 0x200 < len(data):
        text = data[kv + 0x200 : kv + 0x200 + 256].split(b"\0")[0]
    header = SetupHeader(
        version=version,
        setup_sects=setup_sects,
        loadflags=loadflags,
        code32_start=field(HDR_CODE32_START, "I", 0x0200, BZIMAGE_ADDR),
        initrd_addr_max=field(0x22C, "I", 0x0203, GRUB_INITRD_MAX_ADDRESS),
        kernel_alignment=alignment,
        relocatable=bool(relocatable),
        min_alignment=field(0x235, "B", 0x020A),
        xloadflags=field(0x236, "H", 0x020C),
        cmdline_size=field(0x238, "I", 0x0206, 255),
        pref_address=field(0x258, "Q", 0x020A, BZIMAGE_ADDR) or BZIMAGE_ADDR,
        init_size=field(0x260, "I", 0x020A),
        header_end=header_end,
        kernel_version=text.decode("ascii", "replace"),
    )
    if len(data) <= header.setup_size:
        raise LoaderError(f"{name}: truncated bzImage: {len(data)} bytes, but the boot sector "
                          f"and {setup_sects} setup sectors alone take {header.setup_size}")  # fmt: skip
    if version >= 0x0204:
        syssize = struct.unpack_from("<I", data, 0x1F4)[0] * 16
        if header.setup_size + syssize > len(data):
            raise LoaderError(
                f"{name}: truncated bzImage: the setup header's syssize says the protected-mode "
                f"part is {syssize} bytes from byte {header.setup_size}, the file has "
                f"{len(data)} bytes"
            )
    return header


@dataclass(frozen=True)
class LinuxBoot:
    """Where the kernel, its initrd and its boot parameters went, and how to enter it."""

    header: SetupHeader
    kernel_addr: int  # the protected-mode part (prot_mode_target)
    kernel_size: int  # bytes copied from the file
    kernel_room: int  # the chunk GRUB reserves for it (init_size, page aligned)
    entry: int  # code32_start as written into boot_params
    zero_page: int  # boot_params: ESI (and ESP) at entry
    cmdline_addr: int
    cmdline: str
    initrd_addr: int  # 0 without an initrd
    initrd_size: int
    real_mode_size: int  # the low-memory area: zero page, GRUB's map buffer, command line


def page_align(size: int) -> int:
    return align_up(size, 0x1000)


def mem_limit(cmdline: str) -> int:
    """The last ``mem=SIZE`` of the command line in bytes, 0 if none: GRUB lowers the initrd's
    ceiling to it (a K, M or G suffix; a value that does not parse is ignored, as GRUB does)."""
    limit = 0
    for word in cmdline.split():
        m = re.fullmatch(r"mem=(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([kKmMgG]?).*", word)
        if m:
            limit = int(m.group(1), 0) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]
    return limit


def load_linux(
    data: bytes,
    name: str,
    memory: GuestMemory,
    relocator: Relocator,
    *,
    cmdline: str,
    initrd: bytes | None,
    initrd_name: str = "",
) -> LinuxBoot:
    """Load a bzImage and its initrd as GRUB's ``linux`` and ``initrd`` commands do, then write
    boot_params as GRUB's ``boot`` does. Raises ``LoaderError`` for what cannot boot."""
    header = parse_setup_header(data, name)
    prot_file = data[header.setup_size :]
    encoded = cmdline.encode("utf-8", "replace")
    if len(encoded) > header.cmdline_size:
        raise LoaderError(f"{name}: the command line has {len(encoded)} bytes, the kernel takes "
                          f"at most {header.cmdline_size} (cmdline_size)")  # fmt: skip
    kernel_addr, room, init_space = _place_kernel(header, len(prot_file), memory, relocator, name)
    memory.write(kernel_addr, prot_file)
    memory.zero(kernel_addr + len(prot_file), room - len(prot_file))

    params = bytearray(ZERO_PAGE_SIZE)
    params[SETUP_HEADER : header.header_end] = data[SETUP_HEADER : header.header_end]
    entry = kernel_addr + header.code32_start - BZIMAGE_ADDR
    struct.pack_into("<I", params, HDR_CODE32_START, entry & 0xFFFFFFFF)
    if header.version >= 0x0205:
        struct.pack_into("<I", params, HDR_KERNEL_ALIGNMENT, header.kernel_alignment)
    params[HDR_TYPE_OF_LOADER] = GRUB_LOADER_TYPE
    struct.pack_into("<HH", params, BP_CL_MAGIC, GRUB_CL_MAGIC, GRUB_CL_OFFSET)
    struct.pack_into("<H", params, HDR_HEAP_END_PTR, GRUB_HEAP_END_OFFSET)
    params[HDR_LOADFLAGS] |= CAN_USE_HEAP
    if any(word.startswith("quiet") for word in cmdline.split()):
        params[HDR_LOADFLAGS] |= QUIET_FLAG  # GRUB's test: an argument starting with "quiet"
    struct.pack_into("<H", params, BP_EXT_MEM_K, GRUB_EXT_MEM_KIB)
    struct.pack_into("<I", params, BP_ALT_MEM_K, GRUB_EXT_MEM_KIB)
    _video(params, memory)

    initrd_addr = 0
    if initrd is not None:
        initrd_addr = _place_initrd(header, len(initrd), kernel_addr + init_space, cmdline,
                                    relocator, initrd_name)  # fmt: skip
        memory.write(initrd_addr, initrd)
        struct.pack_into("<II", params, HDR_RAMDISK_IMAGE, initrd_addr, len(initrd))
        struct.pack_into("<H", params, HDR_ROOT_DEV, 0x0100)  # GRUB's "XXX": /dev/ram0

    # At boot: the real-mode area in low memory, the memory map, the command line.
    regions = memory.regions
    e820 = _e820(regions)
    mmap_size = page_align(len(regions) * E820_ENTRY + 0x1000)  # GRUB's find_mmap_size
    cl_offset = align_up(mmap_size + ZERO_PAGE_SIZE, 0x1000)
    if cl_offset < header.setup_sects * SECTOR:
        cl_offset = align_up(header.setup_sects * SECTOR, 0x1000)
    cmdline_room = max(header.cmdline_size + 1, 128)  # GRUB's maximal_cmdline_size
    real_size = align_up(cl_offset + cmdline_room, 0x1000)
    target = _real_mode_target(regions, real_size)
    if target is None:
        raise LoaderError(f"{name}: no room for the 0x{real_size:x}-byte real-mode area below "
                          f"0x{REAL_MODE_HIGH:x} (GRUB 2.06: 'cannot allocate real mode pages')")  # fmt: skip
    relocator.at(target, real_size, f"{name}: the real-mode area (boot_params, command line)")
    struct.pack_into("<I", params, HDR_CMD_LINE_PTR, target + cl_offset)
    params[BP_E820_ENTRIES] = len(e820)
    for i, (base, length, kind) in enumerate(e820):
        struct.pack_into("<QQI", params, BP_E820_TABLE + i * E820_ENTRY, base, length, kind)
    memory.zero(target, real_size)
    memory.write(target, bytes(params))
    memory.write(target + cl_offset, encoded.ljust(cmdline_room, b"\0"))
    return LinuxBoot(
        header=header, kernel_addr=kernel_addr, kernel_size=len(prot_file), kernel_room=room,
        entry=entry, zero_page=target, cmdline_addr=target + cl_offset, cmdline=cmdline,
        initrd_addr=initrd_addr, initrd_size=len(initrd) if initrd is not None else 0,
        real_mode_size=real_size,
    )  # fmt: skip


def _place_kernel(
    header: SetupHeader, file_size: int, memory: GuestMemory, relocator: Relocator, name: str
) -> tuple[int, int, int]:
    """GRUB's allocate_pages: (target, chunk size, the room the initrd must stay above)."""
    if header.version >= 0x020A:
        prot_size = header.init_size
        init_space = page_align(prot_size)
    else:  # GRUB's guess for older kernels: "the compression ratio is about 50%"
        prot_size = file_size
        init_space = page_align(prot_size) * 3
    if file_size > max(prot_size, 1):
        raise LoaderError(f"{name}: the protected-mode part ({file_size} bytes) is larger "
                          f"than init_size (0x{prot_size:x})")  # fmt: skip
    room = page_align(max(prot_size, 1))
    base = header.pref_address if header.relocatable else BZIMAGE_ADDR
    if base + room > relocator.heap_top:  # GRUB's own memory and QEMU's top 128 KiB follow
        margin = memory.size - relocator.heap_top
        need = (base + room + margin + (1 << 20) - 1) >> 20
        raise LoaderError(
            f"{name}: the kernel needs 0x{room:x} bytes (init_size) from 0x{base:x}, up to "
            f"0x{base + room:x}; {memory.size >> 20} MiB of RAM is too little (--memory "
            f"{need}M or more)"
        )
    what = f"{name}: the kernel's protected-mode part (init_size 0x{prot_size:x})"
    if header.relocatable:
        chunk = relocator.aligned(base, base, room, 1, what, PREFERENCE_LOW)
    else:
        chunk = relocator.at(base, room, what)
    return chunk.target, room, init_space


def _place_initrd(
    header: SetupHeader, size: int, addr_min: int, cmdline: str, relocator: Relocator, name: str
) -> int:
    """GRUB's grub_cmd_initrd: as high as possible, 4 KiB aligned, below min(initrd_addr_max,
    0x37FFFFFF, mem=) less 64 KiB, and above the kernel's init_size."""
    aligned = page_align(size)
    addr_max = min(header.initrd_addr_max, GRUB_INITRD_MAX_ADDRESS)
    limit = mem_limit(cmdline)
    if limit and limit < addr_max:
        addr_max = limit
    addr_max -= 0x10000  # GRUB: "avoid the last 64kb" for old kernels' range checks
    label = f"initrd {name}"
    if addr_max < aligned:
        raise LoaderError(f"{label}: {size} bytes, more than the highest initrd address "
                          f"0x{addr_max:x} allows (GRUB 2.06: 'the size of initrd is bigger "
                          "than addr_max')")  # fmt: skip
    addr = (addr_max - aligned) & ~0xFFF
    room = min(addr + aligned, relocator.heap_top) - addr_min
    if addr < addr_min or room < aligned:
        raise LoaderError(
            f"{label}: {size} bytes do not fit between the kernel's init_size (up to "
            f"0x{addr_min:x}) and 0x{min(addr_max, relocator.heap_top):x} (GRUB 2.06: 'the "
            "initrd is too big'); give more --memory"
        )
    chunk = relocator.aligned(addr_min, addr, aligned, 0x1000, label, PREFERENCE_HIGH)
    return chunk.target


def _real_mode_target(
    regions: tuple[MemoryRegion, ...] | list[MemoryRegion], size: int
) -> int | None:
    """The top of the first available map entry that holds ``size`` bytes in [0x10000, 0x90000)."""
    for r in regions:
        if r.type != AVAILABLE or r.base > REAL_MODE_HIGH or r.end < REAL_MODE_LOW:
            continue
        lo, hi = max(r.base, REAL_MODE_LOW), min(r.end, REAL_MODE_HIGH)
        if hi - lo >= size:
            return hi - size
    return None


def _e820(regions) -> list[tuple[int, int, int]]:
    """The memory map as GRUB passes it: adjacent entries of one type merged, at most 128."""
    out: list[list[int]] = []
    for r in regions:
        if out and out[-1][0] + out[-1][1] == r.base and out[-1][2] == r.type:
            out[-1][1] += r.length
        else:
            out.append([r.base, r.length, r.type])
    return [tuple(e) for e in out[:E820_MAX]]  # type: ignore[misc]


def _video(params: bytearray, memory: GuestMemory) -> None:
    """GRUB in text mode: VGA text, mode 3, 80x25, 16-line font, the cursor where the BIOS
    has it (the BIOS data area's page 0 position, what INT 10h AH=03h reports)."""
    col, row = int(memory.ram[0x450]), int(memory.ram[0x451])
    params[BP_ORIG_X], params[BP_ORIG_Y] = col, row
    params[BP_VIDEO_MODE], params[BP_VIDEO_COLS] = 3, 80
    params[BP_VIDEO_LINES], params[BP_VIDEO_IS_VGA] = 25, 1  # have_vga: GRUB's "text" type
    struct.pack_into("<H", params, BP_VIDEO_POINTS, 16)
