/* hello-mb1: the Multiboot (version 1) boot information, read in 32-bit protected mode. */
#include "../common/io.h"
#include "../common/multiboot.h"
#include "../common/printf.h"
#include "../common/serial.h"
#include "../common/vga.h"

void kmain(uint32_t magic, struct mb1_info *info) {
    char line[81];
    int row = 0;

    vga_clear(0x07);
    vga_write(row++, 0, "Triplefault hello-mb1: protected mode OK", 0x1F);
    if (!serial_init()) {
        vga_write(row++, 0, "COM1 loopback self-test FAILED", 0x4F);
        qemu_exit(2);
    }
    kprintf("Triplefault hello-mb1: protected mode OK\n");
    kprintf("COM1: loopback self-test passed\n");
    if (magic != MB1_BOOTLOADER_MAGIC) {
        kprintf("bad boot magic 0x%x (expected 0x%x)\n", magic, MB1_BOOTLOADER_MAGIC);
        qemu_exit(3);
    }
    kprintf("magic: 0x%x (Multiboot)\n", magic);
    kprintf("boot information at %p, flags 0x%x\n", (void *)info, info->flags);
    if (info->flags & (1u << 9)) {
        kprintf("boot loader: %s\n", (const char *)info->boot_loader_name);
        ksnprintf(line, sizeof line, "boot loader: %s", (const char *)info->boot_loader_name);
        vga_write(row++, 0, line, 0x0A);
    }
    if (info->flags & (1u << 2)) {
        kprintf("cmdline: %s\n", (const char *)info->cmdline);
        ksnprintf(line, sizeof line, "cmdline: %s", (const char *)info->cmdline);
        vga_write(row++, 0, line, 0x07);
    }
    if (info->flags & 1u)
        kprintf("meminfo: lower %u KiB, upper %u KiB\n", info->mem_lower, info->mem_upper);
    if (info->flags & (1u << 6)) {
        kprintf("memory map:\n");
        uint32_t p = info->mmap_addr;
        while (p < info->mmap_addr + info->mmap_length) {
            struct mb1_mmap_entry *e = (struct mb1_mmap_entry *)p;
            kprintf("  0x%016lx-0x%016lx type %u\n", e->base, e->base + e->length - 1, e->type);
            ksnprintf(line, sizeof line, "  %016lx %016lx type %u", e->base, e->length, e->type);
            vga_write(row++, 0, line, 0x07);
            p += e->size + 4;
        }
    }
    vga_write(row++, 0, "All tests passed", 0x2F);
    vga_set_cursor(row, 0);
    kprintf("All tests passed\n");
    qemu_exit(0);
}
