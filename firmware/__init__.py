"""Boot firmware: Multiboot2 and Multiboot loaders that hand over like GRUB 2.06 on a BIOS PC.

``boot_kernel`` (firmware/boot.py) is the entry point; docs/loader.md describes what it does.
"""

from .boot import (
    DEFAULT_LOADER_NAME,
    MB1_BOOT_MAGIC,
    MB2_BOOT_MAGIC,
    BootPlan,
    LoadedModule,
    LoadedSection,
    LoadedSegment,
    ModuleSpec,
    boot_kernel,
    firmware_stub,
    gdt_bytes,
)
from .grub_video import Framebuffer
from .memmap import (
    GDT_BASE,
    GDT_LIMIT,
    STACK_POINTER,
    STUB_ADDR,
    MemoryRegion,
    basic_meminfo,
    memory_map,
)

__all__ = [
    "DEFAULT_LOADER_NAME",
    "GDT_BASE",
    "GDT_LIMIT",
    "MB1_BOOT_MAGIC",
    "MB2_BOOT_MAGIC",
    "STACK_POINTER",
    "STUB_ADDR",
    "BootPlan",
    "Framebuffer",
    "LoadedModule",
    "LoadedSection",
    "LoadedSegment",
    "MemoryRegion",
    "ModuleSpec",
    "basic_meminfo",
    "boot_kernel",
    "firmware_stub",
    "gdt_bytes",
    "memory_map",
]
