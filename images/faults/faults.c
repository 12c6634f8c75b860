/* faults: exception delivery scenarios in long mode, one family per image.
 *   faults        #DE handled and resumed, #BP, #GP with a selector error code, #PF on a
 *                 read-only page with CR2 checked, ring 3 + SYSCALL/SYSRET + INT 0x80 + IRETQ
 *   faults-df     a stack overflow into an unmapped guard page: #PF, then #DF on IST1
 *   faults-triple a deliberate triple fault: the IDT is dropped and INT3 raised */
#include "../common/cpu64.h"
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"

extern uint64_t boot_pml4[], boot_pdpt[], boot_pd[];

static volatile int de_count, bp_count, gp_count, pf_count, user_calls;
static volatile uint64_t last_cr2, last_error;
static uint64_t kernel_resume_rsp;

#define PTE_RW 2ULL
#define PTE_US 4ULL

void user_entry(void);
void syscall_entry(void);
static uint64_t resume_target; /* set by recover(): where ring 3 exits to */

static void finish(int ok) {
    kprintf(ok ? "All tests passed\n" : "FAILED\n");
    qemu_exit(ok ? 0 : 1);
}

void isr_handler(struct frame *f) {
    switch (f->vector) {
    case 0:
        de_count++;
        f->rip += 2; /* skip the 2-byte div */
        return;
    case 3:
        bp_count++;
        return;
    case 13:
        gp_count++;
        last_error = f->error;
        f->rip += 3; /* skip the 3-byte mov to %ds */
        return;
    case 14: {
        uint64_t cr2 = read_cr2();
        pf_count++;
        last_cr2 = cr2;
        last_error = f->error;
        /* make the 2 MiB page writable again and retry the write */
        boot_pd[cr2 >> 21] |= PTE_RW;
        invlpg((void *)cr2);
        return;
    }
    case 8:
        kprintf("#DF caught on IST1: rsp=%lx error=%lu\n", f->rsp, f->error);
        kprintf("All tests passed\n");
        qemu_exit(0);
    case 0x80:
        if (f->rax == 0xE) { /* exit: back to the kernel, in ring 0 */
            kprintf("int 0x80 from CPL %lu, exit request\n", f->cs & 3);
            f->cs = 0x08;
            f->ss = 0x10;
            f->rip = resume_target;
            f->rsp = kernel_resume_rsp;
            return;
        }
        user_calls++;
        f->rax = f->rdi * 2;
        return;
    default:
        kprintf("unexpected exception %lu error 0x%lx at rip 0x%lx\n", f->vector, f->error, f->rip);
        finish(0);
    }
}

uint64_t syscall_handler(uint64_t nr, uint64_t arg) {
    user_calls++;
    kprintf("syscall %lu(%lu) from ring 3\n", nr, arg);
    return arg + 1000;
}

__attribute__((unused)) static void recover(void) {
    /* #DE, resumed after the div */
    volatile unsigned zero = 0, r = 7;
    __asm__ volatile("xor %%edx, %%edx; divl %1" : "+a"(r) : "r"(zero) : "rdx");
    kprintf("#DE handled: count=%d\n", de_count);
    __asm__ volatile("int3");
    kprintf("#BP handled: count=%d\n", bp_count);
    /* #GP: selector 0x40 is beyond the GDT limit */
    __asm__ volatile("mov $0x40, %%eax; mov %%eax, %%ds" : : : "rax");
    kprintf("#GP handled: error code 0x%lx (GDT selector 0x40)\n", last_error);
    /* #PF: the 2 MiB page at 4 MiB made read-only, then written */
    boot_pd[2] &= ~PTE_RW;
    invlpg((void *)0x400000);
    *(volatile uint32_t *)0x400010 = 0x1234;
    kprintf("#PF handled: CR2=0x%lx error=0x%lx value=0x%x\n", last_cr2, last_error,
            *(volatile uint32_t *)0x400010);
    /* ring 3: user pages, SYSCALL via STAR/LSTAR/FMASK, INT 0x80, then back to ring 0 */
    boot_pml4[0] |= PTE_US;
    boot_pdpt[0] |= PTE_US;
    boot_pd[0] |= PTE_US;
    write_cr3(read_cr3());
    wrmsr(0xC0000081, (0x13ULL << 48) | (0x08ULL << 32)); /* STAR: SYSRET base 0x13, SYSCALL CS 0x08 */
    wrmsr(0xC0000082, (uint64_t)syscall_entry);          /* LSTAR */
    wrmsr(0xC0000084, 0x200);                             /* FMASK: clear IF */
    __asm__ volatile(
        "mov %%rsp, %0\n"
        "lea resume_kernel(%%rip), %%rax\n"
        "mov %%rax, %1\n"
        "pushq $0x1B\n"            /* SS */
        "pushq $0x1F0000\n"        /* RSP in ring 3 */
        "pushq $0x202\n"           /* RFLAGS */
        "pushq $0x23\n"            /* CS */
        "lea user_entry(%%rip), %%rax\n"
        "pushq %%rax\n"
        "iretq\n"
        "resume_kernel:\n"
        : "=m"(kernel_resume_rsp), "=m"(resume_target)
        :
        : "rax", "memory");
    kprintf("back in ring 0: user calls=%d\n", user_calls);
    finish(de_count == 1 && bp_count == 1 && gp_count == 1 && pf_count == 1 &&
           last_cr2 == 0x400010 && user_calls == 2);
}

/* Recursion without a base case, on purpose: the stack runs into the guard page. */
#pragma GCC diagnostic ignored "-Winfinite-recursion"
__attribute__((unused, noinline)) static int depth(int n) {
    volatile char pad[512];
    pad[0] = (char)n;
    return depth(n + 1) + pad[0];
}

__attribute__((unused)) static void double_fault(void) {
    /* a 4 KiB-mapped stack at 8 MiB whose lowest page is a guard page */
    static uint64_t pt[512] __attribute__((aligned(4096)));
    for (int i = 0; i < 512; i++)
        pt[i] = (0x800000ULL + ((uint64_t)i << 12)) | 3;
    pt[0] = 0; /* guard page */
    boot_pd[4] = (uint64_t)pt | 3;
    write_cr3(read_cr3());
    idt_set_ist(8, 1);
    kprintf("recursing on a stack above an unmapped guard page\n");
    __asm__ volatile("mov $0x808000, %%rsp; call *%0" : : "r"(depth), "D"(0) : "memory");
}

__attribute__((unused)) static void triple_fault(void) {
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) none = {0, 0};
    kprintf("dropping the IDT and raising #BP\n");
    __asm__ volatile("lidt %0; int3" : : "m"(none));
}

void kmain(uint32_t magic, uint32_t info) {
    (void)info;
    /* The BIOS leaves the 8259s at vectors 0x08/0x70 with the timer running: mask them before
     * anything runs with IF=1 (ring 3 below), or a timer tick arrives as vector 8, the #DF gate. */
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
    serial_init();
    kprintf("faults: " FAMILY " (magic 0x%x)\n", magic);
    idt_install();
    tss_install();
#if defined(FAULTS_DF)
    double_fault();
#elif defined(FAULTS_TRIPLE)
    triple_fault();
#else
    recover();
#endif
    finish(0);
}
