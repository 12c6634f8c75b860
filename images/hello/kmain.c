/* hello: reports, from long mode, what the boot loader (GRUB or Triplefault) handed over and
 * what mode the CPU is in, on COM1 and the VGA text screen; checks it, and exits through the
 * debug-exit port: 0 when every check passed, 1 when one failed, 2 without a working COM1,
 * 3 with bad boot information. */
#include "../common/bootinfo.h"
#include "../common/console.h"
#include "../common/cpu64.h"
#include "../common/cpumode.h"
#include "../common/io.h"
#include "../common/multiboot.h"
#include "../common/serial.h"

#define PTE_P 0x1ULL
#define PTE_RW 0x2ULL
#define PTE_PS 0x80ULL
#define PTE_NX (1ULL << 63)
#define PTE_ADDR 0x000FFFFFFFFFF000ULL

extern const char __text_start[], __bss_end[];

static const char banner[] = "Triplefault hello: long mode OK";
static int failures;

static void check(int ok, const char *what) {
    if (!ok) {
        console_printf(ATTR_FAIL, "FAILED: %s", what);
        failures++;
    }
}

/* Effective access to the page holding addr, from a walk of the current 4-level tables (they
 * are identity mapped, so table addresses can be read directly): "rwx" with '-' for what is
 * denied, or "---" when unmapped. */
static void page_access(const void *addr, char out[4]) {
    const uint64_t *table = (const uint64_t *)(uintptr_t)(read_cr3() & PTE_ADDR);
    uint64_t va = (uintptr_t)addr;
    int writable = 1, nx = 0;
    out[0] = out[1] = out[2] = '-';
    out[3] = 0;
    for (int level = 3; level >= 0; level--) { /* PML4, PDPT, PD, PT */
        uint64_t e = table[(va >> (12 + 9 * level)) & 511];
        if (!(e & PTE_P))
            return;
        writable &= (e & PTE_RW) != 0;
        nx |= (e & PTE_NX) != 0;
        if (level == 0 || ((level == 1 || level == 2) && (e & PTE_PS)))
            break; /* a 4 KiB page, or a 2 MiB / 1 GiB page */
        table = (const uint64_t *)(uintptr_t)(e & PTE_ADDR);
    }
    int nx_on = (rdmsr(MSR_EFER) & EFER_NXE) != 0; /* without NXE bit 63 is not NX */
    out[0] = 'r';
    out[1] = writable ? 'w' : '-';
    out[2] = nx && nx_on ? '-' : 'x';
}

/* The mode the CPU is in, as this code can see it without CPUID: EFER.LMA says long mode is
 * active, CS.L says this code segment is 64-bit (LMA with CS.L=0 is compatibility mode). */
static void report_cpu_mode(void) {
    uint64_t efer = rdmsr(MSR_EFER);
    uint64_t cs = code_segment_descriptor();
    uint64_t cr0 = read_cr0(), cr4 = read_cr4();
    unsigned lma = (efer & EFER_LMA) != 0, cs_l = (cs & DESC_L) != 0;
    const char *mode = !lma ? "legacy protected mode" : cs_l ? "64-bit long mode" : "compatibility mode";
    console_printf(ATTR_INFO, "CPU mode: %s (EFER.LMA=%u, CS.L=%u)", mode, lma, cs_l);
    console_printf(ATTR_TEXT, "EFER: 0x%lx (LME=%u LMA=%u NXE=%u)", efer,
                   (unsigned)(efer >> 8) & 1, lma, (unsigned)(efer >> 11) & 1);
    console_printf(ATTR_TEXT, "CR0: 0x%lx (PE=%u WP=%u PG=%u), CR4: 0x%lx (PAE=%u)", cr0,
                   (unsigned)(cr0 & CR0_PE), (unsigned)(cr0 >> 16) & 1, (unsigned)(cr0 >> 31) & 1,
                   cr4, (unsigned)(cr4 >> 5) & 1);
    check(lma && cs_l, "the CPU is not in 64-bit mode");

    char text[4], rodata[4], stack[4];
    page_access((const void *)&report_cpu_mode, text);
    page_access(banner, rodata);
    page_access(&mode, stack);
    console_printf(ATTR_TEXT, "pages: text %s, rodata %s, stack %s", text, rodata, stack);
    int nx_on = (efer & EFER_NXE) != 0;
    check(text[0] == 'r' && text[1] == '-' && text[2] == 'x', "kernel text is not r-x");
    check(rodata[1] == '-' && (!nx_on || rodata[2] == '-'), "rodata is writable or executable");
    check(stack[1] == 'w' && (!nx_on || stack[2] == '-'), "the stack is not rw- (NX)");
}

/* The Multiboot2 memory map, one entry per line: base, length, type. */
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
    console_line(ATTR_BANNER, banner);
    if (!com1) {
        console_line(ATTR_FAIL, "COM1 loopback self-test FAILED");
        console_finish();
        qemu_exit(2);
    }
    console_line(ATTR_TEXT, "COM1: loopback self-test passed");
    if (mb2_parse(magic, info, &bi) != 0) {
        if (magic != MB2_BOOTLOADER_MAGIC)
            console_printf(ATTR_FAIL, "bad boot magic 0x%x (expected 0x%x)", magic,
                           MB2_BOOTLOADER_MAGIC);
        else
            console_printf(ATTR_FAIL, "malformed boot information at 0x%x", info);
        console_finish();
        qemu_exit(3);
    }
    console_printf(ATTR_TEXT, "magic: 0x%x (Multiboot2)", magic);
    report_cpu_mode();

    console_printf(ATTR_TEXT, "boot information at 0x%x, %u bytes", info, bi.size);
    console_printf(ATTR_TEXT, "cmdline: %s", bi.cmdline ? bi.cmdline : "(none)");
    console_printf(ATTR_LOADER, "boot loader: %s", bi.loader_name ? bi.loader_name : "(none)");
    if (bi.has_meminfo)
        console_printf(ATTR_TEXT, "meminfo: lower %u KiB, upper %u KiB", bi.mem_lower_kib,
                       bi.mem_upper_kib);
    report_mmap(&bi);
    check(bi.has_meminfo, "no basic memory information tag");
    check(bi.has_mmap && mmap_covers(&bi, (uintptr_t)__text_start,
                                     (uint64_t)(__bss_end - __text_start)),
          "the memory map does not list the kernel's memory as available");

    if (failures) {
        console_finish();
        qemu_exit(1);
    }
    console_line(ATTR_PASS, "All tests passed");
    console_finish();
    qemu_exit(0);
}
