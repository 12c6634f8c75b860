/* probe-cpuid: prints the CPU's identity on COM1, one item per line, in a stable format:
 *
 *   entry cr0|cr4|efer|eflags: 0x...      as the boot loader left them (probe-cpuid/entry.S)
 *   cpuid LEAF.SUB: EAX EBX ECX EDX       every basic leaf 0..max with its sub-leaves, the
 *                                         hypervisor range, every extended leaf 0x80000000..max,
 *                                         then a few leaves above each maximum
 *   msr 0xNUMBER: 0xVALUE | #GP           RDMSR of architectural MSRs and of a few that do not
 *                                         exist; a #GP is caught and the RDMSR skipped
 *
 * plus a few decoded lines (vendor, signature, brand, the hypervisor bit). Nothing printed
 * depends on time: no TSC, no performance counters. */
#include "../common/cpu64.h"
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"

extern uint64_t entry_efer;
extern uint32_t entry_cr0, entry_cr4, entry_eflags;

struct cpuid_regs {
    uint32_t eax, ebx, ecx, edx;
};

static struct cpuid_regs cpuid(uint32_t leaf, uint32_t subleaf) {
    struct cpuid_regs r;
    __asm__ volatile("cpuid" : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx)
                     : "a"(leaf), "c"(subleaf));
    return r;
}

static struct cpuid_regs print_leaf(uint32_t leaf, uint32_t subleaf) {
    struct cpuid_regs r = cpuid(leaf, subleaf);
    kprintf("cpuid 0x%08x.%x: %08x %08x %08x %08x\n", leaf, subleaf, r.eax, r.ebx, r.ecx, r.edx);
    return r;
}

#define MAX_SUBLEAVES 64
#define CPUID_XSAVE_SUBLEAVES 64 /* leaf 0xD: XCR0 and IA32_XSS bit positions */

/* one basic leaf and the sub-leaves it has */
static void print_basic_leaf(uint32_t leaf) {
    struct cpuid_regs r;
    uint32_t sub;
    switch (leaf) {
    case 0x4: /* deterministic cache parameters: until cache type 0 (that one included) */
        for (sub = 0; sub < MAX_SUBLEAVES; sub++)
            if ((print_leaf(leaf, sub).eax & 0x1F) == 0)
                break;
        break;
    case 0x7: /* structured extended features: sub-leaves 0..EAX of sub-leaf 0 */
    case 0x14:
    case 0x17:
    case 0x18: {
        uint32_t last = print_leaf(leaf, 0).eax;
        for (sub = 1; sub <= last && sub < MAX_SUBLEAVES; sub++)
            print_leaf(leaf, sub);
        break;
    }
    case 0xB: /* extended topology: until level type 0 (that one included) */
    case 0x1F:
        for (sub = 0; sub < MAX_SUBLEAVES; sub++)
            if (((print_leaf(leaf, sub).ecx >> 8) & 0xFF) == 0)
                break;
        break;
    case 0xD: /* XSAVE state components: sub-leaf 0, then every non-zero one */
        print_leaf(leaf, 0);
        for (sub = 1; sub < CPUID_XSAVE_SUBLEAVES; sub++) {
            r = cpuid(leaf, sub);
            if (r.eax | r.ebx | r.ecx | r.edx)
                print_leaf(leaf, sub);
        }
        break;
    default:
        print_leaf(leaf, 0);
    }
}

static void print_signature(void) {
    struct cpuid_regs v = cpuid(0, 0), s = cpuid(1, 0);
    char vendor[13];
    const uint32_t words[3] = {v.ebx, v.edx, v.ecx};
    for (int i = 0; i < 12; i++)
        vendor[i] = (char)(words[i / 4] >> (8 * (i % 4)));
    vendor[12] = 0;
    uint32_t family = (s.eax >> 8) & 0xF, model = (s.eax >> 4) & 0xF;
    if (family == 0xF)
        family += (s.eax >> 20) & 0xFF;
    if (family >= 0x6)
        model |= ((s.eax >> 16) & 0xF) << 4;
    kprintf("vendor: %s\n", vendor);
    kprintf("signature: family 0x%x model 0x%x stepping 0x%x\n", family, model, s.eax & 0xF);
    kprintf("cpuid.1 ecx.hypervisor: %u\n", s.ecx >> 31);
    kprintf("cpuid.1 edx.apic: %u\n", (s.edx >> 9) & 1);
}

static void print_brand(void) {
    char brand[49];
    if (cpuid(0x80000000, 0).eax < 0x80000004)
        return;
    for (uint32_t i = 0; i < 3; i++) {
        struct cpuid_regs r = cpuid(0x80000002 + i, 0);
        const uint32_t words[4] = {r.eax, r.ebx, r.ecx, r.edx};
        for (int j = 0; j < 16; j++)
            brand[16 * i + j] = (char)(words[j / 4] >> (8 * (j % 4)));
    }
    brand[48] = 0;
    kprintf("brand: %s\n", brand);
}

static void probe_cpuid(void) {
    uint32_t max_basic = cpuid(0, 0).eax;
    for (uint32_t leaf = 0; leaf <= max_basic; leaf++)
        print_basic_leaf(leaf);

    /* the hypervisor range: 0x40000000 says how far it goes, if anything is there */
    uint32_t max_hypervisor = print_leaf(0x40000000, 0).eax;
    if (max_hypervisor < 0x40000001 || max_hypervisor > 0x400000FF)
        max_hypervisor = 0x40000001;
    for (uint32_t leaf = 0x40000001; leaf <= max_hypervisor; leaf++)
        print_leaf(leaf, 0);

    uint32_t max_extended = cpuid(0x80000000, 0).eax;
    if (max_extended < 0x80000000 || max_extended > 0x800000FF)
        max_extended = 0x80000000;
    for (uint32_t leaf = 0x80000000; leaf <= max_extended; leaf++)
        print_leaf(leaf, 0);

    /* above each maximum: which leaf answers, and whether the sub-leaf still selects */
    kprintf("out of range:\n");
    print_leaf(max_basic + 1, 0);
    print_leaf(max_basic + 1, 1);
    print_leaf(0x3FFFFFFF, 0);
    print_leaf(max_hypervisor + 1, 0);
    print_leaf(0x4FFFFFFF, 0);
    print_leaf(max_extended + 1, 0);
    print_leaf(max_extended + 1, 1);
    print_leaf(0x8FFFFFFF, 0);
    print_leaf(0xC0000000, 0);
    print_leaf(0xFFFFFFFF, 1);
}

/* ---- RDMSR with #GP caught ---- */

static volatile int msr_probing, msr_faulted;

void isr_handler(struct frame *f) {
    const uint8_t *insn = (const uint8_t *)f->rip;
    if (f->vector == 13 && msr_probing && insn[0] == 0x0F && insn[1] == 0x32) {
        msr_faulted = 1;
        f->rip += 2; /* skip the RDMSR */
        return;
    }
    kprintf("unexpected exception %lu (error 0x%lx) at 0x%lx\n", f->vector, f->error, f->rip);
    qemu_exit(1);
}

/* architectural MSRs, then a few that no CPU of this kind has */
static const uint32_t msrs[] = {
    0x1B,                                           /* IA32_APIC_BASE */
    0x3A,                                           /* IA32_FEATURE_CONTROL */
    0x3B,                                           /* IA32_TSC_ADJUST */
    0x1A0,                                          /* IA32_MISC_ENABLE */
    0xFE,                                           /* IA32_MTRRCAP */
    0x2FF,                                          /* IA32_MTRR_DEF_TYPE */
    0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, /* IA32_MTRR_PHYSBASE/MASK0-3 */
    0x208, 0x209, 0x20A, 0x20B, 0x20C, 0x20D, 0x20E, 0x20F, /* IA32_MTRR_PHYSBASE/MASK4-7 */
    0x250,                                          /* IA32_MTRR_FIX64K_00000 */
    0x258, 0x259,                                   /* IA32_MTRR_FIX16K_80000/A0000 */
    0x268, 0x269, 0x26A, 0x26B, 0x26C, 0x26D, 0x26E, 0x26F, /* IA32_MTRR_FIX4K_C0000-F8000 */
    0x277,                                          /* IA32_PAT */
    0x174, 0x175, 0x176,                            /* IA32_SYSENTER_CS/ESP/EIP */
    0x179,                                          /* IA32_MCG_CAP */
    0x17A,                                          /* IA32_MCG_STATUS */
    0x17B,                                          /* IA32_MCG_CTL */
    0x400, 0x401, 0x402, 0x403,                     /* IA32_MC0_CTL/STATUS/ADDR/MISC */
    0x17,                                           /* IA32_PLATFORM_ID */
    0x8B,                                           /* IA32_BIOS_SIGN_ID */
    0x1D9,                                          /* IA32_DEBUGCTL */
    0x6E0,                                          /* IA32_TSC_DEADLINE */
    0xC0000080,                                     /* IA32_EFER (as common/boot64.S set it) */
    0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084, /* STAR, LSTAR, CSTAR, SFMASK */
    0xC0000100, 0xC0000101, 0xC0000102,             /* FS_BASE, GS_BASE, KERNEL_GS_BASE */
    0xC0000103,                                     /* TSC_AUX */
    0xC0010114,                                     /* AMD VM_CR */
    0xC0010117,                                     /* AMD VM_HSAVE_PA */
    0x12345, 0xC0011000, 0x40000000, 0x4B564D00, 0xFFFFFFFF, /* nothing should be here */
};

static void probe_msrs(void) {
    for (unsigned i = 0; i < sizeof msrs / sizeof msrs[0]; i++) {
        uint32_t lo = 0, hi = 0;
        msr_faulted = 0;
        msr_probing = 1;
        __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msrs[i]), "0"(0), "1"(0) : "memory");
        msr_probing = 0;
        if (msr_faulted)
            kprintf("msr 0x%08x: #GP\n", msrs[i]);
        else
            kprintf("msr 0x%08x: 0x%016lx\n", msrs[i], ((uint64_t)hi << 32) | lo);
    }
}

void kmain(uint32_t magic, uint32_t info) {
    (void)magic;
    (void)info;
    serial_init();
    idt_install();
    kprintf("probe-cpuid: CPU identity\n");
    kprintf("entry cr0: 0x%08x\n", entry_cr0);
    kprintf("entry cr4: 0x%08x\n", entry_cr4);
    kprintf("entry efer: 0x%016lx\n", entry_efer);
    kprintf("entry eflags: 0x%08x\n", entry_eflags);
    print_signature();
    print_brand();
    probe_cpuid();
    probe_msrs();
    kprintf("probe-cpuid: done\n");
    qemu_exit(0);
}
