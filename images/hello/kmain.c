/* hello: prints what GRUB (or Triplefault) told it, in long mode, then exits via debug-exit. */
#include "../common/io.h"
#include "../common/multiboot.h"
#include "../common/printf.h"
#include "../common/serial.h"
#include "../common/vga.h"

static const char *mmap_type(uint32_t type) {
    switch (type) {
    case 1: return "available";
    case 2: return "reserved";
    case 3: return "ACPI reclaimable";
    case 4: return "ACPI NVS";
    case 5: return "bad memory";
    default: return "unknown";
    }
}

void kmain(uint32_t magic, uint32_t info) {
    char line[81];
    int row = 0;

    vga_clear(0x07);
    vga_write(row++, 0, "Triplefault hello: long mode OK", 0x1F);
    if (!serial_init()) {
        vga_write(row++, 0, "COM1 loopback self-test FAILED", 0x4F);
        qemu_exit(2);
    }
    kprintf("Triplefault hello: long mode OK\n");
    kprintf("COM1: loopback self-test passed\n");
    if (magic != MB2_BOOTLOADER_MAGIC) {
        kprintf("bad boot magic 0x%x (expected 0x%x)\n", magic, MB2_BOOTLOADER_MAGIC);
        qemu_exit(3);
    }
    kprintf("magic: 0x%x (Multiboot2)\n", magic);
    uint64_t efer = rdmsr(0xC0000080);
    kprintf("EFER: 0x%lx (LME=%u LMA=%u)\n", efer, (unsigned)(efer >> 8) & 1,
            (unsigned)(efer >> 10) & 1);

    uint32_t total = *(volatile uint32_t *)(uintptr_t)info;
    kprintf("boot information at 0x%x, %u bytes\n", info, total);
    for (struct mb2_tag *tag = (struct mb2_tag *)(uintptr_t)(info + 8); tag->type != 0;
         tag = (struct mb2_tag *)((uint8_t *)tag + ((tag->size + 7) & ~7u))) {
        switch (tag->type) {
        case 1:
            kprintf("cmdline: %s\n", (const char *)(tag + 1));
            ksnprintf(line, sizeof line, "cmdline: %s", (const char *)(tag + 1));
            vga_write(row++, 0, line, 0x07);
            break;
        case 2:
            kprintf("boot loader: %s\n", (const char *)(tag + 1));
            ksnprintf(line, sizeof line, "boot loader: %s", (const char *)(tag + 1));
            vga_write(row++, 0, line, 0x0A);
            break;
        case 4: {
            uint32_t *m = (uint32_t *)(tag + 1);
            kprintf("meminfo: lower %u KiB, upper %u KiB\n", m[0], m[1]);
            break;
        }
        case 6: {
            uint32_t entry_size = ((uint32_t *)(tag + 1))[0];
            uint8_t *p = (uint8_t *)(tag + 1) + 8;
            uint8_t *end = (uint8_t *)tag + tag->size;
            kprintf("memory map:\n");
            for (; p < end; p += entry_size) {
                struct mb2_mmap_entry *e = (struct mb2_mmap_entry *)p;
                kprintf("  0x%016lx-0x%016lx %s\n", e->base, e->base + e->length - 1,
                        mmap_type(e->type));
                ksnprintf(line, sizeof line, "  %016lx %016lx %s", e->base, e->length,
                          mmap_type(e->type));
                vga_write(row++, 0, line, 0x07);
            }
            break;
        }
        default:
            break;
        }
    }
    vga_write(row++, 0, "All tests passed", 0x2F);
    vga_set_cursor(row, 0);
    kprintf("All tests passed\n");
    qemu_exit(0);
}
