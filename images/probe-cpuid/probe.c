/* probe-cpuid: prints the CPU's identity on COM1, one item per line, in a stable format:
 *
 *   entry cr0|cr4|efer|eflags: 0x...      as the boot loader left them (probe-cpuid/entry.S)
 *   cpuid LEAF.SUB: EAX EBX ECX EDX       every basic leaf 0..max with its sub-leaves, the
 *                                         hypervisor range, every extended leaf 0x80000000..max,
 *                                         then a few leaves above each maximum
 *   msr 0xNUMBER: 0xVALUE | #GP           RDMSR of architectural MSRs and of a few that do not
 *                                         exist; a #GP is caught and the RDMSR skipped
 *   insn NAME: 0xRESULT | runs | #UD      instructions that a CPUID bit announces, run or not
 *   efer set bit 12 (svme): reads 0x...  whether EFER.SVME can be set (only with SVM)
 *   wrmsr 0xNUMBER <- 0xVALUE: ok | #GP, reads 0xVALUE
 *                                         what a WRMSR keeps: the MSRs a kernel writes, bits a
 *                                         CPU may drop, read-only MSRs, one that does not exist
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

/* ---- faults caught: RDMSR, and instructions whose CPUID bit may be clear ---- */

/* While a probe is armed, a #UD or #GP skips the probed instruction (probe_length bytes) and
 * is recorded in probe_vector; any other exception ends the run. */
static volatile int probe_armed;
static volatile unsigned probe_length;
static volatile uint64_t probe_vector;

void isr_handler(struct frame *f) {
    if (probe_armed && (f->vector == 6 || f->vector == 13)) {
        probe_vector = f->vector;
        f->rip += probe_length;
        return;
    }
    kprintf("unexpected exception %lu (error 0x%lx) at 0x%lx\n", f->vector, f->error, f->rip);
    qemu_exit(1);
}

static void arm(unsigned length) {
    probe_vector = 0;
    probe_length = length;
    probe_armed = 1;
    __asm__ volatile("" ::: "memory");
}

/* the fault the last armed instruction raised, 0 if none; disarms */
static uint64_t disarm(void) {
    __asm__ volatile("" ::: "memory");
    probe_armed = 0;
    return probe_vector;
}

static const char *fault_name(uint64_t vector) { return vector == 6 ? "#UD" : "#GP"; }

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
    0x802, 0x808, 0x830,                            /* x2APIC ID, TPR, ICR (x2APIC is off) */
    0x186, 0x38F,                                   /* IA32_PERFEVTSEL0, IA32_PERF_GLOBAL_CTRL */
    0xC0000080,                                     /* IA32_EFER (as common/boot64.S set it) */
    0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084, /* STAR, LSTAR, CSTAR, SFMASK */
    0xC0000100, 0xC0000101, 0xC0000102,             /* FS_BASE, GS_BASE, KERNEL_GS_BASE */
    0xC0000103,                                     /* TSC_AUX */
    0xC0010015,                                     /* AMD HWCR */
    0xC0010114,                                     /* AMD VM_CR */
    0xC0010117,                                     /* AMD VM_HSAVE_PA */
    0x34,                                           /* MSR_SMI_COUNT */
    0x35,                                           /* MSR_CORE_THREAD_COUNT */
    0x198,                                          /* IA32_PERF_STATUS */
    0xD90,                                          /* IA32_BNDCFGS */
    0x12345, 0xC0011000, 0x40000000, 0x4B564D00, 0xFFFFFFFF, /* nothing should be here */
};

static void probe_msrs(void) {
    for (unsigned i = 0; i < sizeof msrs / sizeof msrs[0]; i++) {
        uint32_t lo, hi;
        arm(2);
        __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msrs[i]), "0"(0), "1"(0) : "memory");
        uint64_t fault = disarm();
        if (fault)
            kprintf("msr 0x%08x: %s\n", msrs[i], fault_name(fault));
        else
            kprintf("msr 0x%08x: 0x%016lx\n", msrs[i], ((uint64_t)hi << 32) | lo);
    }
}

/* ---- instructions a CPUID bit announces: does this CPU run them, and how ---- */

static void report_result(const char *name, uint64_t fault, uint32_t value) {
    if (fault)
        kprintf("insn %s: %s\n", name, fault_name(fault));
    else
        kprintf("insn %s: 0x%08x\n", name, value);
}

static void report_runs(const char *name, uint64_t fault) {
    if (fault)
        kprintf("insn %s: %s\n", name, fault_name(fault));
    else
        kprintf("insn %s: runs\n", name);
}

/* An instruction given as bytes, with EAX and ECX in, EAX out: the bytes are the whole
 * instruction, so a fault skips exactly them. */
#define PROBE_EAX(name, bytes, length, eax_in, ecx_in)                                          \
    do {                                                                                        \
        uint32_t v;                                                                             \
        arm(length);                                                                            \
        __asm__ volatile(".byte " bytes : "=a"(v) : "0"(eax_in), "c"(ecx_in) : "memory", "cc"); \
        report_result(name, disarm(), v);                                                       \
    } while (0)

/* an instruction whose result is not printed (host entropy or time) */
#define PROBE_RUNS(name, bytes, length)                                                         \
    do {                                                                                        \
        arm(length);                                                                            \
        __asm__ volatile(".byte " bytes ::: "rax", "rcx", "rdx", "memory", "cc");               \
        report_runs(name, disarm());                                                            \
    } while (0)

static void probe_instructions(void) {
    static const uint32_t movbe_source = 0x11223344;
    /* integer instructions: ABM/LZCNT and BMI1/TZCNT fall back to BSR and BSF (REP ignored) */
    PROBE_EAX("lzcnt eax<-ecx=1", "0xf3, 0x0f, 0xbd, 0xc1", 4, 0x55, 1);
    PROBE_EAX("tzcnt eax=0x55<-ecx=0", "0xf3, 0x0f, 0xbc, 0xc1", 4, 0x55, 0);
    PROBE_EAX("popcnt eax<-ecx=0xff", "0xf3, 0x0f, 0xb8, 0xc1", 4, 0, 0xFF);
    PROBE_EAX("movbe eax<-[rcx]=0x11223344", "0x0f, 0x38, 0xf0, 0x01", 4, 0, &movbe_source);
    PROBE_EAX("crc32 eax=0<-ecx=0x55", "0xf2, 0x0f, 0x38, 0xf1, 0xc1", 5, 0, 0x55);
    PROBE_RUNS("lahf in 64-bit mode", "0x9f", 1);
    PROBE_RUNS("rdrand eax", "0x0f, 0xc7, 0xf0", 3);
    PROBE_RUNS("rdtscp", "0x0f, 0x01, 0xf9", 3);
    /* SYSENTER_CS is 0: #GP(0) where 64-bit SYSENTER exists (Intel), #UD where not (AMD) */
    PROBE_RUNS("sysenter in 64-bit mode", "0x0f, 0x34", 2);

    /* SSE-family instructions, with CR4.OSFXSR set for them */
    uint64_t cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | (1ULL << 9)) : "memory");
    PROBE_RUNS("sse2 pxor xmm0,xmm0", "0x66, 0x0f, 0xef, 0xc0", 4);
    PROBE_RUNS("sse3 haddpd xmm0,xmm0", "0x66, 0x0f, 0x7c, 0xc0", 4);
    PROBE_RUNS("ssse3 pshufb xmm0,xmm0", "0x66, 0x0f, 0x38, 0x00, 0xc0", 5);
    PROBE_RUNS("sse4.1 ptest xmm0,xmm0", "0x66, 0x0f, 0x38, 0x17, 0xc0", 5);
    PROBE_RUNS("sse4a extrq xmm0,xmm1", "0x66, 0x0f, 0x79, 0xc1", 4);
    PROBE_RUNS("sse4a extrq xmm0,4,0", "0x66, 0x0f, 0x78, 0xc0, 0x04, 0x00", 6);
    PROBE_RUNS("sse4a insertq xmm0,xmm1", "0xf2, 0x0f, 0x79, 0xc1", 4);
    PROBE_RUNS("sse4a insertq xmm0,xmm1,4,0", "0xf2, 0x0f, 0x78, 0xc1, 0x04, 0x00", 6);
    {
        static uint64_t target[2];
        arm(4);
        __asm__ volatile(".byte 0xf3, 0x0f, 0x2b, 0x00" : : "a"(target) : "memory");
        report_runs("sse4a movntss [rax],xmm0", disarm());
        arm(4);
        __asm__ volatile(".byte 0xf2, 0x0f, 0x2b, 0x00" : : "a"(target) : "memory");
        report_runs("sse4a movntsd [rax],xmm0", disarm());
        /* which comes first: the missing feature (#UD) or CR0.TS (#NM, which ends the run) */
        uint64_t cr0;
        __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
        __asm__ volatile("mov %0, %%cr0" : : "r"(cr0 | 8) : "memory");
        PROBE_RUNS("sse4a extrq xmm0,xmm1 with cr0.ts", "0x66, 0x0f, 0x79, 0xc1", 4);
        __asm__ volatile("clts" ::: "memory");
    }
    PROBE_RUNS("aes aesenc xmm0,xmm0", "0x66, 0x0f, 0x38, 0xdc, 0xc0", 5);
    PROBE_RUNS("pclmulqdq xmm0,xmm0,0", "0x66, 0x0f, 0x3a, 0x44, 0xc0, 0x00", 6);
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4) : "memory");

    /* EFER.SVME sticks only where SVM is announced. (CR4 bits of absent features are not probed:
     * QEMU 7.2 answers such a write with an SVM #VMEXIT outside any guest, and the CPU hangs.) */
    uint64_t efer = rdmsr(0xC0000080);
    wrmsr(0xC0000080, efer | (1ULL << 12));
    kprintf("efer set bit 12 (svme): reads 0x%lx\n", rdmsr(0xC0000080));
    wrmsr(0xC0000080, efer);
}

/* ---- WRMSR: what each write leaves, then the value put back where later lines depend on it ---- */

static void probe_wrmsr(uint32_t msr, uint64_t value) {
    uint32_t lo, hi;
    arm(2);
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32))
                     : "memory");
    uint64_t fault = disarm();
    arm(2);
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr), "0"(0), "1"(0) : "memory");
    uint64_t read_fault = disarm();
    kprintf("wrmsr 0x%08x <- 0x%016lx: %s, reads ", msr, value, fault ? fault_name(fault) : "ok");
    if (read_fault)
        kprintf("%s\n", fault_name(read_fault));
    else
        kprintf("0x%016lx\n", ((uint64_t)hi << 32) | lo);
}

static void probe_msr_writes(void) {
    uint64_t efer = rdmsr(0xC0000080);
    probe_wrmsr(0xC0000080, efer | (1ULL << 13) | (1ULL << 14) | (1ULL << 15)); /* LMSLE FFXSR TCE */
    probe_wrmsr(0xC0000080, efer & ~(1ULL << 11));  /* NXE off */
    probe_wrmsr(0xC0000080, efer & ~(1ULL << 10));  /* LMA is the CPU's */
    probe_wrmsr(0xC0000080, efer);
    probe_wrmsr(0x1B, 0xFEE00800);                  /* IA32_APIC_BASE: move it, keep it enabled */
    probe_wrmsr(0x1B, 0);
    probe_wrmsr(0x174, 0x12345);                    /* IA32_SYSENTER_CS: 16 bits */
    probe_wrmsr(0x174, 0);
    probe_wrmsr(0x17B, 5);                          /* IA32_MCG_CTL: all or nothing */
    probe_wrmsr(0x17B, 0);
    probe_wrmsr(0x17B, ~0ULL);
    probe_wrmsr(0x400, 5);                          /* IA32_MC0_CTL: all or nothing */
    probe_wrmsr(0x401, 5);                          /* IA32_MC0_STATUS */
    probe_wrmsr(0x401, 0);
    probe_wrmsr(0x17A, 3);                          /* IA32_MCG_STATUS */
    probe_wrmsr(0x17A, 0);
    probe_wrmsr(0x1A0, 0x12345);                    /* IA32_MISC_ENABLE */
    probe_wrmsr(0x1A0, 1);
    probe_wrmsr(0x277, 0x0007040600070407ULL);      /* IA32_PAT */
    probe_wrmsr(0x277, 0x0007040600070406ULL);
    probe_wrmsr(0x2FF, 0xC00);                      /* IA32_MTRR_DEF_TYPE */
    probe_wrmsr(0x2FF, 0xC06);
    probe_wrmsr(0xC0000081, 0x0023001000000000ULL); /* IA32_STAR */
    probe_wrmsr(0xC0000102, 0xFFFF800000001000ULL); /* IA32_KERNEL_GS_BASE */
    probe_wrmsr(0xC0000103, 0x1234567890ULL);       /* IA32_TSC_AUX */
    probe_wrmsr(0xC0010117, 0x1000);                /* AMD VM_HSAVE_PA */
    probe_wrmsr(0xD90, 1);                          /* IA32_BNDCFGS */
    probe_wrmsr(0xD90, 0);
    probe_wrmsr(0x8B, 0);                           /* IA32_BIOS_SIGN_ID: read-only */
    probe_wrmsr(0x34, 1);                           /* MSR_SMI_COUNT: read-only */
    probe_wrmsr(0x35, 0);                           /* MSR_CORE_THREAD_COUNT: read-only */
    probe_wrmsr(0x198, 1);                          /* IA32_PERF_STATUS: read-only */
    probe_wrmsr(0x3A, 5);                           /* IA32_FEATURE_CONTROL: not there */
    probe_wrmsr(0x3B, 5);                           /* IA32_TSC_ADJUST: not there */
    probe_wrmsr(0x1D9, 1);                          /* IA32_DEBUGCTL: not there */
    probe_wrmsr(0xC0010015, 8);                     /* AMD HWCR: not there */
    probe_wrmsr(0xC0010114, 8);                     /* AMD VM_CR: not there */
    probe_wrmsr(0x12345, 0x55);                     /* nothing is here */
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
    probe_instructions();
    probe_msr_writes();
    kprintf("probe-cpuid: done\n");
    qemu_exit(0);
}
