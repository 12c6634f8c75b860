/* paging: builds its own 4-level tables with 4K, 2M and 1G pages, a higher-half alias, an NX
 * page, a read-only page and a user page, switches CR3, and checks what the MMU does:
 * accessed/dirty bits, #PF on a write to a read-only page (CR2 checked), #PF on a fetch from an
 * NX page, and a stale TLB entry after a PTE change without INVLPG.
 * docs/paging-lab.md is a lesson built on this kernel. */
#include "../common/cpu64.h"
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"

#define P 0x1ULL
#define RW 0x2ULL
#define US 0x4ULL
#define A 0x20ULL
#define D 0x40ULL
#define PS 0x80ULL
#define NX (1ULL << 63)

#define WINDOW 0x40000000ULL /* 4K-mapped window at 1 GiB */
#define WINDOW_PHYS 0x600000ULL
#define HIGH_HALF 0xFFFFFFFF80000000ULL

extern uint64_t boot_pd[];
static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt_low[512] __attribute__((aligned(4096)));
static uint64_t pdpt_high[512] __attribute__((aligned(4096)));
static uint64_t pd_window[512] __attribute__((aligned(4096)));
static uint64_t pt_window[512] __attribute__((aligned(4096)));

static volatile uint64_t pf_cr2, pf_error;
static volatile int pf_count;

void isr_handler(struct frame *f) {
    if (f->vector != 14) {
        kprintf("unexpected exception %lu at 0x%lx\n", f->vector, f->rip);
        qemu_exit(1);
    }
    pf_count++;
    pf_cr2 = read_cr2();
    pf_error = f->error;
    if (f->error & 0x10) { /* instruction fetch from an NX page: return to the caller */
        f->rip = *(uint64_t *)f->rsp;
        f->rsp += 8;
        return;
    }
    pt_window[(pf_cr2 - WINDOW) >> 12] |= RW; /* make the page writable, retry the write */
    __asm__ volatile("" ::: "memory");
    invlpg((void *)pf_cr2);
}

/* Markers for `triplefault pt --at ...`: the lesson stops the kernel here. */
__attribute__((noinline)) void paging_ready(void) { __asm__ volatile(""); }
__attribute__((noinline)) void pages_touched(void) { __asm__ volatile(""); }

static uint64_t *pte(uint64_t va) { return &pt_window[(va - WINDOW) >> 12]; }

void kmain(uint32_t magic, uint32_t info) {
    (void)magic;
    (void)info;
    serial_init();
    idt_install();
    tss_install();
    kprintf("paging: building 4-level tables\n");
    /* the first 1 GiB: one 1G page; 1-2 GiB: a page directory */
    pdpt_low[0] = 0x0ULL | P | RW | PS;
    pdpt_low[1] = (uint64_t)pd_window | P | RW | US;
    /* 1 GiB + 0: a page table of 4K pages over physical 6 MiB */
    pd_window[0] = (uint64_t)pt_window | P | RW | US;
    for (int i = 0; i < 8; i++)
        pt_window[i] = (WINDOW_PHYS + ((uint64_t)i << 12)) | P | RW | NX;
    pt_window[1] &= ~RW;             /* 0x40001000: read-only */
    pt_window[2] |= US;              /* 0x40002000: a user page */
    pt_window[3] &= ~NX;             /* 0x40003000: executable */
    /* 1 GiB + 2 MiB: a 2M page */
    pd_window[1] = 0x800000ULL | P | RW | PS | NX;
    /* the higher half: -2 GiB maps the first 1 GiB again, with the boot 2M pages */
    pdpt_high[510] = (uint64_t)boot_pd | P | RW;
    pml4[0] = (uint64_t)pdpt_low | P | RW | US;
    pml4[511] = (uint64_t)pdpt_high | P | RW;
    write_cr3((uint64_t)pml4);
    kprintf("CR3 = 0x%lx\n", read_cr3());
    paging_ready();

    /* accessed and dirty bits */
    volatile uint32_t *rd = (uint32_t *)(WINDOW + 0x0000);
    volatile uint32_t *wr = (uint32_t *)(WINDOW + 0x4000);
    (void)*rd;
    *wr = 0xD1D1;
    kprintf("read page:  PTE 0x%lx A=%lu D=%lu\n", *pte(WINDOW), (*pte(WINDOW) >> 5) & 1,
            (*pte(WINDOW) >> 6) & 1);
    kprintf("write page: PTE 0x%lx A=%lu D=%lu\n", *pte(WINDOW + 0x4000),
            (*pte(WINDOW + 0x4000) >> 5) & 1, (*pte(WINDOW + 0x4000) >> 6) & 1);
    pages_touched();

    /* the higher-half alias and the 1G identity page see the same byte */
    *(volatile uint32_t *)(HIGH_HALF + 0x500000) = 0xCAFE;
    kprintf("alias: 0x%lx reads 0x%x through the identity map\n", HIGH_HALF + 0x500000,
            *(volatile uint32_t *)0x500000);

    /* a write to the read-only page: #PF, the handler makes it writable, the write retries */
    *(volatile uint32_t *)(WINDOW + 0x1008) = 0xBEEF;
    kprintf("#PF on write: CR2=0x%lx error=0x%lx, value now 0x%x\n", pf_cr2, pf_error,
            *(volatile uint32_t *)(WINDOW + 0x1008));

    /* a fetch from an NX page: #PF with the I/D bit */
    *(volatile uint8_t *)(WINDOW + 0x5000) = 0xC3; /* ret */
    ((void (*)(void))(WINDOW + 0x5000))();
    kprintf("#PF on fetch: CR2=0x%lx error=0x%lx\n", pf_cr2, pf_error);
    *(volatile uint8_t *)(WINDOW + 0x3000) = 0xC3; /* the same on the executable page works */
    ((void (*)(void))(WINDOW + 0x3000))();
    kprintf("fetch from the executable page: ok\n");

    /* a stale TLB: change a PTE without INVLPG, then with it */
    *(volatile uint32_t *)(WINDOW_PHYS + 0x6000) = 0x1111;
    *(volatile uint32_t *)(WINDOW_PHYS + 0x7000) = 0x2222;
    volatile uint32_t *v = (uint32_t *)(WINDOW + 0x6000);
    uint32_t before = *v;
    __asm__ volatile("" ::: "memory"); /* the PTE store must not move above the read */
    *pte(WINDOW + 0x6000) = (WINDOW_PHYS + 0x7000) | P | RW | NX;
    __asm__ volatile("" ::: "memory");
    uint32_t stale = *v;
    invlpg((void *)v);
    uint32_t fresh = *v;
    kprintf("TLB: before 0x%x, after the PTE edit 0x%x (stale), after INVLPG 0x%x\n", before,
            stale, fresh);

    int ok = pf_count == 2 && before == 0x1111 && stale == 0x1111 && fresh == 0x2222;
    kprintf(ok ? "All tests passed\n" : "FAILED\n");
    qemu_exit(ok ? 0 : 1);
}
