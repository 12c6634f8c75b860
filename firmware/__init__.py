"""Boot firmware: Multiboot2 and Multiboot1 loaders that hand over like GRUB 2.06."""

from .loader import (
    MB1_BOOT_MAGIC,
    MB2_BOOT_MAGIC,
    BootPlan,
    Framebuffer,
    LoadedModule,
    LoadedSegment,
    ModuleSpec,
    boot_kernel,
    firmware_stub,
)
from .memmap import MemoryRegion, basic_meminfo, memory_map

__all__ = [
    "MB1_BOOT_MAGIC",
    "MB2_BOOT_MAGIC",
    "BootPlan",
    "Framebuffer",
    "LoadedModule",
    "LoadedSegment",
    "MemoryRegion",
    "ModuleSpec",
    "basic_meminfo",
    "boot_kernel",
    "firmware_stub",
    "memory_map",
]
