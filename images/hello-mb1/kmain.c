/* hello-mb1: the Multiboot (version 1) boot information, read and checked in 32-bit protected
 * mode without paging, reported on COM1 and the VGA text screen. Exit codes as in hello:
 * 0 passed, 1 a check failed, 2 no working COM1, 3 bad boot information. */
#include "../common/bootinfo.h"
#include "../common/console.h"
#include "../common/cpumode.h"
#include "../common/io.h"
#include "../common/multiboot.h"
#include "../common/serial.h"

extern const char __kernel_start[], __kernel_end[];

static int failures;

static void check(int ok, const char *what) {
    if (!ok) {
        console_printf(ATTR_FAIL, "FAILED: %s", what);
        failures++;
    }
}

/* Without CPUID: CR0.PE=1 and CR0.PG=0 is protected mode without paging; CS.D=1 says this
 * code segment runs 32-bit code. */
static void report_cpu_mode(void) {
    uint32_t cr0 = read_cr0(), cr4 = read_cr4();
    uint64_t cs = code_segment_descriptor();
    unsigned pe = cr0 & CR0_PE, pg = cr0 >> 31, cs_d = (cs & DESC_DB) != 0;
    const char *mode = !pe ? "real mode" : !cs_d ? "16-bit protected mode"
                                     : pg    ? "32-bit protected mode, paging on"
                                             : "32-bit protected mode, paging off";
    console_printf(ATTR_INFO, "CPU mode: %s (CR0.PE=%u, CR0.PG=%u, CS.D=%u)", mode, pe, pg, cs_d);
    console_printf(ATTR_TEXT, "CR0: 0x%x, CR4: 0x%x", cr0, cr4);
    check(pe && !pg && cs_d, "the CPU is not in 32-bit protected mode without paging");
}

static void report_mmap(const struct boot_info *bi) {
    console_printf(ATTR_TEXT, "memory map: %u entries", bi->mmap_total);
    for (unsigned i = 0; i < bi->mmap_count; i++) {
        const struct mem_region *r = &bi->mmap[i];
        console_printf(ATTR_TEXT, "  base 0x%016lx length 0x%016lx type %u (%s)", r->base,
                       r->length, r->type, mmap_type_name(r->type));
    }
    if (bi->mmap_count < bi->mmap_total)
        console_printf(ATTR_TEXT, "  (%u more not shown)", bi->mmap_total - bi->mmap_count);
}

void kmain(uint32_t magic, uint32_t info) {
    static struct boot_info bi;
    int com1 = serial_init();

    console_init(ATTR_TEXT, com1);
    console_line(ATTR_BANNER, "Triplefault hello-mb1: protected mode OK");
    if (!com1) {
        console_line(ATTR_FAIL, "COM1 loopback self-test FAILED");
        console_finish();
        qemu_exit(2);
    }
    console_line(ATTR_TEXT, "COM1: loopback self-test passed");
    if (mb1_parse(magic, info, &bi) != 0) {
        if (magic != MB1_BOOTLOADER_MAGIC)
            console_printf(ATTR_FAIL, "bad boot magic 0x%x (expected 0x%x)", magic,
                           MB1_BOOTLOADER_MAGIC);
        else
            console_printf(ATTR_FAIL, "malformed boot information at 0x%x", info);
        console_finish();
        qemu_exit(3);
    }
    console_printf(ATTR_TEXT, "magic: 0x%x (Multiboot)", magic);
    report_cpu_mode();

    console_printf(ATTR_TEXT, "boot information at 0x%x, flags 0x%x", info, bi.flags);
    console_printf(ATTR_TEXT, "cmdline: %s", bi.cmdline ? bi.cmdline : "(none)");
    console_printf(ATTR_LOADER, "boot loader: %s", bi.loader_name ? bi.loader_name : "(none)");
    if (bi.has_meminfo)
        console_printf(ATTR_TEXT, "meminfo: lower %u KiB, upper %u KiB", bi.mem_lower_kib,
                       bi.mem_upper_kib);
    report_mmap(&bi);
    /* The header asked for memory information (flag 1), so the loader must provide it. */
    check(bi.has_meminfo, "no mem_lower/mem_upper although the header asked for them");
    check(bi.has_mmap && mmap_covers(&bi, (uintptr_t)__kernel_start,
                                     (uint64_t)(__kernel_end - __kernel_start)),
          "the memory map does not list the kernel's memory as available");

    if (failures) {
        console_finish();
        qemu_exit(1);
    }
    console_line(ATTR_PASS, "All tests passed");
    console_finish();
    qemu_exit(0);
}
