/* probe-openbus: what physical addresses outside RAM read back, one stable line per item on
 * COM1. In long mode (common/boot64.S), each address is reached through a 4 KiB page of a
 * window of its own; for each: 1-, 2-, 4- and 8-byte loads, then an 8-byte store of a pattern
 * and the loads again (does it stick?). Then the VGA window in text mode, and page walks whose
 * tables lie where nothing is (do they fault or read what unassigned memory reads?).
 * Never touched: the I/O APIC (0xFEC00000), the HPET (0xFED00000) and the local APIC
 * (0xFEE00000). docs/platform.md explains the output. */
#include "../common/cpu64.h"
#include "../common/io.h"
#include "../common/multiboot.h"
#include "../common/printf.h"
#include "../common/serial.h"

#define P 0x1ULL
#define RW 0x2ULL
#define PWT 0x8ULL
#define PCD 0x10ULL
#define PS 0x80ULL

#define WINDOW 0x40000000ULL /* a page directory of 4 KiB pages at 1 GiB, one slot per probe */
#define WALK_PT 0x40200000ULL /* 2 MiB whose page table is unassigned memory */
#define WALK_PDPT 0x8000000000ULL /* 512 GiB whose page-directory-pointer table is */

extern uint64_t boot_pd[];
static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt_low[512] __attribute__((aligned(4096)));
static uint64_t pd_window[512] __attribute__((aligned(4096)));
static uint64_t pt_window[512] __attribute__((aligned(4096)));
static int next_slot;

/* #PF recovery: a guarded load arms pf_resume; the handler records CR2 and the error code and
 * continues there */
static volatile uint64_t pf_resume, pf_cr2, pf_error;
static volatile int pf_count;

void isr_handler(struct frame *f) {
    if (f->vector != 14 || !pf_resume) {
        kprintf("unexpected exception %lu error 0x%lx at 0x%lx\n", f->vector, f->error, f->rip);
        qemu_exit(1);
    }
    pf_count++;
    pf_cr2 = read_cr2();
    pf_error = f->error;
    f->rip = pf_resume;
    pf_resume = 0;
}

/* an 8-byte load that survives a #PF (the result is then `fallback`) */
static uint64_t guarded_load64(uint64_t va, uint64_t fallback) {
    uint64_t v = fallback;
    __asm__ volatile("movq $1f, %%rdx\n\t"
                     "movq %%rdx, pf_resume(%%rip)\n\t"
                     "movq (%1), %0\n"
                     "1:\n\t"
                     "movq $0, pf_resume(%%rip)"
                     : "+a"(v)
                     : "r"(va)
                     : "rdx", "memory");
    return v;
}

static uint8_t load8(uint64_t va) {
    uint8_t v;
    __asm__ volatile("movb (%1), %0" : "=q"(v) : "r"(va) : "memory");
    return v;
}
static uint16_t load16(uint64_t va) {
    uint16_t v;
    __asm__ volatile("movw (%1), %0" : "=r"(v) : "r"(va) : "memory");
    return v;
}
static uint32_t load32(uint64_t va) {
    uint32_t v;
    __asm__ volatile("movl (%1), %0" : "=r"(v) : "r"(va) : "memory");
    return v;
}
static uint64_t load64(uint64_t va) {
    uint64_t v;
    __asm__ volatile("movq (%1), %0" : "=r"(v) : "r"(va) : "memory");
    return v;
}
static void store64(uint64_t va, uint64_t v) {
    __asm__ volatile("movq %0, (%1)" : : "r"(v), "r"(va) : "memory");
}

/* maps the 4 KiB page of `phys` (and the next one, for loads that cross it) into the window,
 * uncached, and returns the linear address of `phys` */
static uint64_t map(uint64_t phys) {
    int slot = next_slot;
    next_slot += 2;
    uint64_t page = phys & ~0xFFFULL;
    for (int i = 0; i < 2; i++) {
        pt_window[slot + i] = (page + ((uint64_t)i << 12)) | P | RW | PWT | PCD;
        invlpg((void *)(WINDOW + ((uint64_t)(slot + i) << 12)));
    }
    return WINDOW + ((uint64_t)slot << 12) + (phys & 0xFFF);
}

static void print_loads(const char *label, uint64_t phys, uint64_t va) {
    kprintf("%s %010lx: read8 %02x read16 %04x read32 %08x read64 %016lx\n", label, phys,
            load8(va), load16(va), load32(va), load64(va));
}

/* the loads, an 8-byte store of a pattern, the loads again, and whether the store stuck */
static void probe(const char *name, uint64_t phys) {
    uint64_t va = map(phys);
    kprintf("openbus %s\n", name);
    print_loads("  before", phys, va);
    uint64_t before = load64(va), pattern = 0x8877665544332211ULL;
    store64(va, pattern);
    uint64_t after = load64(va);
    print_loads("  after ", phys, va);
    kprintf("  write %016lx at %010lx: %s\n", pattern, phys,
            after == pattern ? "sticks"
            : after == before ? "ignored"
                              : "reads back neither value");
    if (after != before)
        store64(va, before);
}

/* the end of RAM below 4 GiB: the highest end of a memory-map entry below 0xF0000000 */
static uint64_t ram_end(uint32_t info) {
    uint64_t end = 0;
    for (struct mb2_tag *t = (struct mb2_tag *)(uint64_t)(info + 8); t->type;
         t = (struct mb2_tag *)((uint8_t *)t + ((t->size + 7) & ~7u))) {
        if (t->type != 6)
            continue;
        uint32_t entry_size = ((uint32_t *)t)[2];
        for (uint8_t *e = (uint8_t *)t + 16; e < (uint8_t *)t + t->size; e += entry_size) {
            struct mb2_mmap_entry *m = (struct mb2_mmap_entry *)e;
            if (m->base < 0xF0000000ULL && m->base + m->length > end)
                end = m->base + m->length;
        }
    }
    return end;
}

static void probe_vga(uint64_t phys) {
    volatile uint8_t *p = (volatile uint8_t *)phys; /* identity-mapped, below 1 GiB */
    uint8_t old[4], back[4];
    for (int i = 0; i < 4; i++)
        old[i] = p[i];
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(0xA5 + i);
    for (int i = 0; i < 4; i++)
        back[i] = p[i];
    for (int i = 0; i < 4; i++)
        p[i] = old[i];
    int sticks = 1;
    for (int i = 0; i < 4; i++)
        sticks &= back[i] == (uint8_t)(0xA5 + i);
    kprintf("vga %06lx: %02x %02x %02x %02x, write a5 a6 a7 a8 reads %02x %02x %02x %02x (%s)\n",
            phys, old[0], old[1], old[2], old[3], back[0], back[1], back[2], back[3],
            sticks ? "sticks" : "ignored");
}

static void walk(const char *name, uint64_t va) {
    pf_count = 0;
    uint64_t v = guarded_load64(va, 0xDEADDEADDEADDEADULL);
    if (pf_count)
        kprintf("walk %s: #PF at %016lx, error code 0x%lx\n", name, pf_cr2, pf_error);
    else
        kprintf("walk %s: no fault, read %016lx\n", name, v);
}

void kmain(uint32_t magic, uint32_t info) {
    serial_init();
    if (magic != MB2_BOOTLOADER_MAGIC)
        qemu_exit(3);
    idt_install();
    tss_install();
    pdpt_low[0] = (uint64_t)boot_pd | P | RW;
    pdpt_low[1] = (uint64_t)pd_window | P | RW;
    pd_window[0] = (uint64_t)pt_window | P | RW;
    pml4[0] = (uint64_t)pdpt_low | P | RW;
    write_cr3((uint64_t)pml4);

    uint64_t end = ram_end(info);
    kprintf("probe-openbus: physical memory outside RAM\n");
    kprintf("ram end %010lx (the memory map)\n", end);
    probe("the last 4 bytes of RAM and the first 4 after it", end - 4);
    probe("just above the end of RAM", end);
    probe("an unaligned address in the PCI hole", 0x36d76287ULL);
    probe("1 GiB", 0x40000000ULL);
    probe("3.5 GiB", 0xE0000000ULL);
    probe("past the VGA MMIO BAR", 0xFEBFF000ULL);
    probe("just below the BIOS flash", 0xFFFBFFF0ULL);
    probe("the last 4 bytes before the BIOS flash and its first 4", 0xFFFBFFFCULL);
    probe("4 GiB", 0x100000000ULL);
    probe("64 GiB", 0x1000000000ULL);
    kprintf("not probed: the I/O APIC at 0xfec00000, the HPET at 0xfed00000, the local APIC at "
            "0xfee00000\n");

    probe_vga(0xA0000);
    probe_vga(0xA8000);
    probe_vga(0xB0000);
    probe_vga(0xB8000);

    /* a page table at 3.5 GiB (unassigned) for 1 GiB + 2 MiB */
    pd_window[1] = 0xE0000000ULL | P | RW;
    invlpg((void *)WALK_PT);
    walk("through a page table at 0xe0000000", WALK_PT + 0x123);
    /* a page-directory-pointer table at 64 GiB (unassigned) for 512 GiB */
    pml4[1] = 0x1000000000ULL | P | RW;
    invlpg((void *)WALK_PDPT);
    walk("through a page-directory-pointer table at 0x1000000000", WALK_PDPT + 0x456);
    kprintf("probe-openbus: done\n");
    qemu_exit(0);
}
