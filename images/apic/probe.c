/* apic: what a kernel finds of the PC's interrupt controllers and timers, and what they do.
 *
 *   1. the tables, both ways: the MP floating pointer (the MP specification's scan of the EBDA,
 *      the top of base memory and the BIOS ROM) and its configuration table; the ACPI RSDP from
 *      the BIOS area and from the Multiboot2 tag 14, the RSDT, the MADT and the HPET table;
 *   2. the HPET through the 8259s: registers, bad accesses, the main counter, legacy
 *      replacement (timer 0 on IRQ 0 with the PIT cut off, timer 1 on IRQ 8), one-shot and
 *      periodic, 32-bit mode;
 *   3. the local APIC and the I/O APIC (when CPUID shows the APIC): the 8259s masked, the PIT
 *      routed through the MADT's interrupt source override, the keyboard (a scancode the i8042
 *      is told to send, command D2) on GSI 1, the HPET's timers through the I/O APIC (legacy
 *      routing, and a level-triggered timer on GSI 20), the LAPIC timer one-shot and periodic,
 *      a fixed self-IPI, a spurious interrupt (an IPI held back by the TPR while the 8259 asks
 *      through LINT0) and an APIC error (an IPI with an illegal vector).
 *
 * 32-bit protected mode, paging off. Nothing printed measures time: the probe counts
 * interrupts and compares orders; it waits with HLT for interrupts it has programmed.
 * Physical addresses of the ACPI tables in RAM are not printed (they depend on the DSDT). */
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"

extern char isr_stubs[];

/* ------------------------------------------------------------------ memory and MMIO */
/* one access of the size named, in asm: the compiler neither merges nor splits it */
static inline uint8_t peek8(uint32_t a) {
    uint8_t v;
    __asm__ volatile("movb (%1), %0" : "=q"(v) : "r"(a) : "memory");
    return v;
}
static inline uint16_t peek16(uint32_t a) {
    uint16_t v;
    __asm__ volatile("movw (%1), %0" : "=r"(v) : "r"(a) : "memory");
    return v;
}
static inline uint32_t peek32(uint32_t a) {
    uint32_t v;
    __asm__ volatile("movl (%1), %0" : "=r"(v) : "r"(a) : "memory");
    return v;
}
static inline void poke8(uint32_t a, uint8_t v) {
    __asm__ volatile("movb %0, (%1)" : : "q"(v), "r"(a) : "memory");
}
static inline void poke32(uint32_t a, uint32_t v) {
    __asm__ volatile("movl %0, (%1)" : : "r"(v), "r"(a) : "memory");
}

/* one 8-byte load and store (MMX movq: a 32-bit kernel's only 8-byte access) */
static void read64(uint32_t a, uint32_t out[2]) {
    __asm__ volatile("movq (%0), %%mm0\n\tmovq %%mm0, (%1)\n\temms" : : "r"(a), "r"(out) : "memory");
}
static void write64(uint32_t a, uint32_t lo, uint32_t hi) {
    uint32_t v[2] = {lo, hi};
    __asm__ volatile("movq (%0), %%mm0\n\tmovq %%mm0, (%1)\n\temms" : : "r"(v), "r"(a) : "memory");
}

static int matches(uint32_t a, const char *s) {
    for (uint32_t i = 0; s[i]; i++)
        if (peek8(a + i) != (uint8_t)s[i])
            return 0;
    return 1;
}

static uint8_t sum(uint32_t a, uint32_t n) {
    uint8_t s = 0;
    for (uint32_t i = 0; i < n; i++)
        s = (uint8_t)(s + peek8(a + i));
    return s;
}

static uint32_t scan(uint32_t start, uint32_t end, const char *signature) {
    for (uint32_t a = start; a < end; a += 16)
        if (matches(a, signature))
            return a;
    return 0;
}

static void delay(uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        __asm__ volatile("nop");
}

/* ------------------------------------------------------------------ interrupts */
struct gate {
    uint16_t offset_low, selector;
    uint8_t zero, type;
    uint16_t offset_high;
} __attribute__((packed));
static struct gate idt[256] __attribute__((aligned(8)));

static volatile uint32_t count[256];
static volatile uint8_t order[64];
static volatile uint32_t norder;

static uint32_t lapic = 0xFEE00000, ioapic = 0xFEC00000, hpet = 0xFED00000;
static volatile int spurious_lowers_tpr;
static volatile int low_vector_expected; /* an interrupt at a vector below 32 is recorded */

#define LAPIC_TPR 0x080
#define LAPIC_EOI 0x0B0
#define LAPIC_SVR 0x0F0
#define LAPIC_ESR 0x280
#define LAPIC_ICR 0x300
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_ERROR 0x370
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIVIDE 0x3E0

#define HPET_ID 0x000
#define HPET_PERIOD 0x004
#define HPET_CONFIG 0x010
#define HPET_STATUS 0x020
#define HPET_COUNTER 0x0F0
#define TN(n, reg) (0x100 + 0x20 * (n) + (reg))
#define TN_CONFIG 0x00
#define TN_CAPS 0x04
#define TN_CMP 0x08
#define TN_CMP_HI 0x0C
#define TN_LEVEL (1u << 1)
#define TN_ENABLE (1u << 2)
#define TN_PERIODIC (1u << 3)
#define TN_SETVAL (1u << 6)
#define TN_32BIT (1u << 8)
#define TN_ROUTE(g) ((uint32_t)(g) << 9)

#define VEC_IOAPIC_PIT 0x30
#define VEC_KEYBOARD 0x31
#define VEC_HPET0 0x32
#define VEC_HPET2 0x34
#define VEC_HPET1 0x38
#define VEC_LAPIC_TIMER 0x40
#define VEC_IPI 0x41
#define VEC_ERROR 0x42
#define VEC_HELD 0x50
#define VEC_HELD_LINT0 0x5F
#define VEC_SPURIOUS 0xFF

static uint32_t hpet_rd(uint32_t reg) { return peek32(hpet + reg); }
static void hpet_wr(uint32_t reg, uint32_t v) { poke32(hpet + reg, v); }
static uint32_t lapic_rd(uint32_t reg) { return peek32(lapic + reg); }
static void lapic_wr(uint32_t reg, uint32_t v) { poke32(lapic + reg, v); }
static uint32_t ioapic_rd(uint32_t index) {
    poke32(ioapic, index);
    return peek32(ioapic + 0x10);
}
static void ioapic_wr(uint32_t index, uint32_t v) {
    poke32(ioapic, index);
    poke32(ioapic + 0x10, v);
}
static void redirect(uint32_t gsi, uint32_t low) {
    ioapic_wr(0x11 + 2 * gsi, 0); /* destination: APIC 0 */
    ioapic_wr(0x10 + 2 * gsi, low);
}

void interrupt(uint32_t vector) {
    if (vector < 32 && !low_vector_expected) {
        kprintf("exception %u\n", vector);
        qemu_exit(3);
    }
    count[vector]++;
    if (norder < sizeof order)
        order[norder++] = (uint8_t)vector;
    if (vector >= 0x20 && vector < 0x30) { /* the 8259s */
        if (vector >= 0x28)
            outb(0xA0, 0x20);
        outb(0x20, 0x20);
    } else if (vector == VEC_SPURIOUS) { /* no EOI for a spurious interrupt */
        if (spurious_lowers_tpr)
            lapic_wr(LAPIC_TPR, 0);
    } else {
        if (vector == VEC_HPET2)
            hpet_wr(HPET_STATUS, 1u << 2); /* the level-triggered timer: clear its status */
        lapic_wr(LAPIC_EOI, 0);
    }
}

static void idt_init(void) {
    for (int v = 0; v < 256; v++) {
        uint32_t handler = (uint32_t)isr_stubs + 16 * v;
        idt[v].offset_low = handler & 0xFFFF;
        idt[v].offset_high = handler >> 16;
        idt[v].selector = 0x10; /* GRUB's code segment */
        idt[v].zero = 0;
        idt[v].type = 0x8E; /* 32-bit interrupt gate */
    }
    struct {
        uint16_t limit;
        uint32_t base;
    } __attribute__((packed)) idtr = {sizeof idt - 1, (uint32_t)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

static void clear_counts(void) {
    for (int v = 0; v < 256; v++)
        count[v] = 0;
    norder = 0;
}

/* HLT with interrupts on, until `*what` reaches `n` (each wake is an interrupt) */
static void wait_count(volatile uint32_t *what, uint32_t n) {
    while (*what < n)
        __asm__ volatile("sti; hlt; cli");
}

static void print_order(const char *label) {
    kprintf("%s:", label);
    for (uint32_t i = 0; i < norder; i++)
        kprintf(" %02x", order[i]);
    kprintf("\n");
}

/* ------------------------------------------------------------------ the 8259s and the PIT */
static void pic_init(uint8_t master_mask, uint8_t slave_mask) {
    outb(0x20, 0x11);
    outb(0xA0, 0x11);
    outb(0x21, 0x20);
    outb(0xA1, 0x28);
    outb(0x21, 0x04);
    outb(0xA1, 0x02);
    outb(0x21, 0x01);
    outb(0xA1, 0x01);
    outb(0x21, master_mask);
    outb(0xA1, slave_mask);
}

static void pit_rate(uint16_t divisor) {
    outb(0x43, 0x34); /* channel 0, lobyte/hibyte, mode 2 */
    outb(0x40, divisor & 0xFF);
    outb(0x40, divisor >> 8);
}

/* ------------------------------------------------------------------ 1. the tables */
static uint32_t pit_gsi = 0; /* from the MADT's override for IRQ 0 */
static uint32_t keyboard_gsi = 1;

static void mp_tables(void) {
    uint32_t ebda = (uint32_t)peek16(0x40E) << 4;
    uint32_t base_kib = peek16(0x413);
    uint32_t fp = scan(ebda, ebda + 1024, "_MP_");
    if (!fp)
        fp = scan(base_kib * 1024 - 1024, base_kib * 1024, "_MP_");
    if (!fp)
        fp = scan(0xF0000, 0x100000, "_MP_");
    if (!fp || sum(fp, 16)) {
        kprintf("mp: no valid floating pointer\n");
        return;
    }
    uint32_t table = peek32(fp + 4);
    kprintf("mp: floating pointer at %08x, spec 1.%u, features %02x %02x\n", fp, peek8(fp + 9),
            peek8(fp + 11), peek8(fp + 12));
    if (!matches(table, "PCMP") || sum(table, peek16(table + 4))) {
        kprintf("mp: no valid configuration table at %08x\n", table);
        return;
    }
    uint32_t entries = peek16(table + 0x22);
    kprintf("mp: configuration table at %08x, %u entries, local APIC at %08x\n", table, entries,
            peek32(table + 0x24));
    uint32_t at = table + 44;
    for (uint32_t i = 0; i < entries; i++) {
        uint8_t type = peek8(at);
        if (type == 0) {
            kprintf("mp: processor apic %u version %02x flags %02x\n", peek8(at + 1),
                    peek8(at + 2), peek8(at + 3));
            at += 20;
            continue;
        }
        if (type == 2)
            kprintf("mp: ioapic %u version %02x flags %02x at %08x\n", peek8(at + 1),
                    peek8(at + 2), peek8(at + 3), peek32(at + 4));
        if (type == 3 && peek8(at + 4) == 1 && peek8(at + 5) <= 1) /* ISA IRQ 0 and 1 */
            kprintf("mp: isa irq %u -> ioapic %u pin %u, flags %04x\n", peek8(at + 5),
                    peek8(at + 6), peek8(at + 7), peek16(at + 2));
        if (type == 4)
            kprintf("mp: local interrupt type %u -> apic %02x lint%u\n", peek8(at + 1),
                    peek8(at + 6), peek8(at + 7));
        at += 8;
    }
}

static uint32_t mb2_rsdp(uint32_t info) {
    uint32_t total = peek32(info);
    for (uint32_t at = info + 8; at < info + total;) {
        uint32_t type = peek32(at), size = peek32(at + 4);
        if (type == 0)
            break;
        if (type == 14)
            return at + 8;
        at += (size + 7) & ~7u;
    }
    return 0;
}

static void madt(uint32_t table) {
    uint32_t length = peek32(table + 4);
    lapic = peek32(table + 36);
    kprintf("madt: revision %u, local APIC at %08x, flags %08x, checksum %s\n", peek8(table + 8),
            lapic, peek32(table + 40), sum(table, length) ? "bad" : "ok");
    for (uint32_t at = table + 44; at < table + length; at += peek8(at + 1)) {
        uint8_t type = peek8(at);
        if (type == 0)
            kprintf("madt: local apic processor %u apic %u flags %x\n", peek8(at + 2),
                    peek8(at + 3), peek32(at + 4));
        else if (type == 1) {
            ioapic = peek32(at + 4);
            kprintf("madt: ioapic %u at %08x gsi base %u\n", peek8(at + 2), ioapic,
                    peek32(at + 8));
        } else if (type == 2) {
            uint8_t irq = peek8(at + 3);
            uint32_t gsi = peek32(at + 4);
            kprintf("madt: override bus %u irq %u -> gsi %u flags %04x\n", peek8(at + 2), irq,
                    gsi, peek16(at + 8));
            if (irq == 0)
                pit_gsi = gsi;
            if (irq == 1)
                keyboard_gsi = gsi;
        } else if (type == 4)
            kprintf("madt: local apic nmi processor %02x flags %04x lint%u\n", peek8(at + 2),
                    peek16(at + 3), peek8(at + 5));
        else
            kprintf("madt: entry type %u length %u\n", type, peek8(at + 1));
        if (peek8(at + 1) < 2)
            break;
    }
}

static void acpi_tables(uint32_t info) {
    uint32_t ebda = (uint32_t)peek16(0x40E) << 4;
    uint32_t rsdp = scan(ebda, ebda + 1024, "RSD PTR ");
    if (!rsdp)
        rsdp = scan(0xE0000, 0x100000, "RSD PTR ");
    uint32_t tag = mb2_rsdp(info);
    if (!rsdp || sum(rsdp, 20)) {
        kprintf("acpi: no valid RSDP in the BIOS area\n");
        return;
    }
    kprintf("acpi: rsdp (BIOS area) at %08x, revision %u, oem %c%c%c%c%c%c\n", rsdp,
            peek8(rsdp + 15), peek8(rsdp + 9), peek8(rsdp + 10), peek8(rsdp + 11),
            peek8(rsdp + 12), peek8(rsdp + 13), peek8(rsdp + 14));
    int same = tag != 0;
    for (uint32_t i = 0; tag && i < 20; i++)
        same &= peek8(tag + i) == peek8(rsdp + i);
    kprintf("acpi: rsdp (Multiboot2 tag 14): %s\n",
            !tag ? "none" : same ? "the same 20 bytes" : "different bytes");
    uint32_t rsdt = peek32(rsdp + 16);
    if (!matches(rsdt, "RSDT") || sum(rsdt, peek32(rsdt + 4))) {
        kprintf("acpi: no valid RSDT\n");
        return;
    }
    uint32_t n = (peek32(rsdt + 4) - 36) / 4;
    kprintf("acpi: rsdt lists");
    for (uint32_t i = 0; i < n; i++) {
        uint32_t t = peek32(rsdt + 36 + 4 * i);
        kprintf(" %c%c%c%c", peek8(t), peek8(t + 1), peek8(t + 2), peek8(t + 3));
    }
    kprintf("\n");
    for (uint32_t i = 0; i < n; i++) {
        uint32_t t = peek32(rsdt + 36 + 4 * i);
        if (matches(t, "APIC"))
            madt(t);
        if (matches(t, "HPET")) {
            hpet = peek32(t + 44);
            kprintf("hpet table: block id %08x, address space %u, base %08x, number %u, "
                    "minimum tick %u, checksum %s\n",
                    peek32(t + 36), peek8(t + 40), hpet, peek8(t + 52), peek16(t + 53),
                    sum(t, peek32(t + 4)) ? "bad" : "ok");
        }
    }
}

/* ------------------------------------------------------------------ 2. the HPET */
static uint32_t hpet_now(void) { return hpet_rd(HPET_COUNTER); }

static void hpet_registers(void) {
    uint32_t v[2];
    kprintf("hpet: capabilities %08x, period %08x fs\n", hpet_rd(HPET_ID), hpet_rd(HPET_PERIOD));
    read64(hpet + HPET_ID, v);
    kprintf("hpet: 8-byte read of the capabilities: %08x %08x\n", v[1], v[0]);
    kprintf("hpet: byte read of +0: %02x, word read of +0: %04x, 4-byte read at +2: %08x\n",
            peek8(hpet), peek16(hpet), peek32(hpet + 2));
    for (int n = 0; n < 4; n++)
        kprintf("hpet: timer %d config %08x caps %08x comparator %08x %08x fsb %08x %08x\n", n,
                hpet_rd(TN(n, TN_CONFIG)), hpet_rd(TN(n, TN_CAPS)), hpet_rd(TN(n, TN_CMP_HI)),
                hpet_rd(TN(n, TN_CMP)), hpet_rd(TN(n, 0x14)), hpet_rd(TN(n, 0x10)));
    kprintf("hpet: config %08x %08x, status %08x %08x\n", hpet_rd(HPET_CONFIG + 4),
            hpet_rd(HPET_CONFIG), hpet_rd(HPET_STATUS + 4), hpet_rd(HPET_STATUS));
    hpet_wr(HPET_ID, 0xFFFFFFFF);
    hpet_wr(HPET_PERIOD, 0);
    kprintf("hpet: capabilities after writes: %08x %08x\n", hpet_rd(HPET_PERIOD), hpet_rd(HPET_ID));
    hpet_wr(HPET_CONFIG, 0xFFFFFFFC);
    hpet_wr(HPET_CONFIG + 4, 0xFFFFFFFF);
    kprintf("hpet: config after writing ones but enable and legacy: %08x %08x\n",
            hpet_rd(HPET_CONFIG + 4), hpet_rd(HPET_CONFIG));
    hpet_wr(HPET_CONFIG, 0);
    hpet_wr(TN(0, TN_CONFIG), 0xFFFFFFFF & ~TN_ENABLE);
    hpet_wr(TN(0, TN_CAPS), 0);
    kprintf("hpet: timer 0 after writing ones but enable: config %08x caps %08x\n",
            hpet_rd(TN(0, TN_CONFIG)), hpet_rd(TN(0, TN_CAPS)));
    hpet_wr(TN(0, TN_CONFIG), 0);
    kprintf("hpet: timer 0 config back to 0: %08x\n", hpet_rd(TN(0, TN_CONFIG)));
    poke8(hpet + HPET_CONFIG, 1); /* a byte write */
    kprintf("hpet: config after a byte write of 1: %08x\n", hpet_rd(HPET_CONFIG));
    /* the comparator: one-shot 64-bit, one 8-byte write; then 32-bit mode */
    write64(hpet + TN(1, TN_CMP), 0x00001234, 0x00000056);
    kprintf("hpet: timer 1 comparator after an 8-byte write of 56 00001234: %08x %08x\n",
            hpet_rd(TN(1, TN_CMP_HI)), hpet_rd(TN(1, TN_CMP)));
    hpet_wr(TN(1, TN_CMP), 0xFFFFFFFF);
    hpet_wr(TN(1, TN_CMP_HI), 0xFFFFFFFF);
    hpet_wr(TN(1, TN_CONFIG), TN_32BIT);
    kprintf("hpet: timer 1 comparator in 32-bit mode: %08x %08x\n", hpet_rd(TN(1, TN_CMP_HI)),
            hpet_rd(TN(1, TN_CMP)));
    hpet_wr(TN(1, TN_CONFIG), 0);
    /* the periodic comparator: without "value set" a write is the period only */
    hpet_wr(TN(2, TN_CONFIG), TN_PERIODIC);
    hpet_wr(TN(2, TN_CMP), 0x100);
    kprintf("hpet: timer 2 periodic, comparator after a write of 100: %08x %08x\n",
            hpet_rd(TN(2, TN_CMP_HI)), hpet_rd(TN(2, TN_CMP)));
    hpet_wr(TN(2, TN_CONFIG), TN_PERIODIC | TN_SETVAL);
    hpet_wr(TN(2, TN_CMP), 0x200);
    kprintf("hpet: with value set, after a write of 200: %08x %08x, config %08x\n",
            hpet_rd(TN(2, TN_CMP_HI)), hpet_rd(TN(2, TN_CMP)), hpet_rd(TN(2, TN_CONFIG)));
    hpet_wr(TN(2, TN_CONFIG), 0);
}

static void hpet_counter(void) {
    uint32_t a = hpet_now();
    delay(1000);
    kprintf("hpet: counter halted: %08x %08x, after a wait %s\n", hpet_rd(HPET_COUNTER + 4), a,
            hpet_now() == a ? "the same" : "different");
    hpet_wr(HPET_COUNTER, 0x12345678);
    hpet_wr(HPET_COUNTER + 4, 0x00000001);
    kprintf("hpet: counter written while halted: %08x %08x\n", hpet_rd(HPET_COUNTER + 4),
            hpet_rd(HPET_COUNTER));
    hpet_wr(HPET_COUNTER, 0);
    hpet_wr(HPET_COUNTER + 4, 0);
    hpet_wr(HPET_CONFIG, 1);
    a = hpet_now();
    delay(1000);
    uint32_t b = hpet_now();
    kprintf("hpet: enabled, the counter runs: %s\n", b != a ? "yes" : "no");
    hpet_wr(HPET_COUNTER, 0);
    kprintf("hpet: counter written while running: %s\n",
            hpet_now() >= b ? "ignored" : "taken");
}

#define MS 100000u /* HPET ticks per millisecond (10 ns each) */

/* the comparator first, then the interrupt enable: enabling a timer starts it towards the
 * comparator it has */
static void hpet_one_shot(int n, uint32_t config, uint32_t ticks_from_now) {
    hpet_wr(TN(n, TN_CONFIG), config & ~TN_ENABLE);
    hpet_wr(TN(n, TN_CMP_HI), 0);
    hpet_wr(TN(n, TN_CMP), hpet_now() + ticks_from_now);
    hpet_wr(TN(n, TN_CONFIG), config);
}

static void hpet_through_8259(void) {
    hpet_wr(HPET_CONFIG, 3); /* enabled, legacy replacement */
    pit_rate(1193); /* the PIT at 1 kHz: cut off now */
    pic_init(0xFE, 0xFF); /* IRQ 0 only (the initialisation forgets edges seen before) */
    clear_counts();
    hpet_one_shot(0, TN_ENABLE, 10 * MS);
    uint32_t deadline = hpet_rd(TN(0, TN_CMP));
    while ((int32_t)(hpet_now() - deadline) < 0)
        __asm__ volatile("sti; hlt; cli");
    kprintf("hpet legacy: timer 0 one-shot in 10 ms: %u interrupt(s) at vector 20 (the PIT at "
            "1 kHz is cut off)\n", count[0x20]);
    /* timer 1 on IRQ 8 (the slave's IRQ 0), later: timer 0 must not fire again meanwhile */
    outb(0x21, 0xFA);
    outb(0xA1, 0xFE);
    hpet_one_shot(1, TN_ENABLE, 2 * MS);
    wait_count(&count[0x28], 1);
    kprintf("hpet legacy: timer 1 one-shot: %u interrupt(s) at vector 28, timer 0 still %u\n",
            count[0x28], count[0x20]);
    /* periodic, 64-bit, the first comparator set with "value set" */
    clear_counts();
    uint32_t first = hpet_now() + MS;
    hpet_wr(TN(0, TN_CONFIG), TN_ENABLE | TN_PERIODIC | TN_SETVAL);
    hpet_wr(TN(0, TN_CMP), first);
    hpet_wr(TN(0, TN_CMP), MS / 2);
    wait_count(&count[0x20], 5);
    hpet_wr(TN(0, TN_CONFIG), 0);
    uint32_t advanced = hpet_rd(TN(0, TN_CMP)) - first;
    kprintf("hpet legacy: timer 0 periodic: %u interrupts at vector 20, comparator moved by "
            "whole periods: %s, at least 4: %s\n", count[0x20],
            advanced % (MS / 2) == 0 ? "yes" : "no", advanced >= 4 * (MS / 2) ? "yes" : "no");
    /* periodic, 32-bit mode */
    clear_counts();
    hpet_wr(TN(0, TN_CONFIG), TN_ENABLE | TN_PERIODIC | TN_SETVAL | TN_32BIT);
    hpet_wr(TN(0, TN_CMP), hpet_now() + MS);
    hpet_wr(TN(0, TN_CMP), MS);
    wait_count(&count[0x20], 3);
    hpet_wr(TN(0, TN_CONFIG), 0);
    kprintf("hpet legacy: timer 0 periodic 32-bit: %u interrupts, comparator high half %08x\n",
            count[0x20], hpet_rd(TN(0, TN_CMP_HI)));
    /* legacy replacement off: the PIT reaches IRQ 0 again */
    clear_counts();
    hpet_wr(HPET_CONFIG, 1);
    wait_count(&count[0x20], 2);
    kprintf("hpet: legacy replacement off, the PIT interrupts again: %u at vector 20\n",
            count[0x20]);
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
    pit_rate(0); /* 18.2 Hz again */
    for (int n = 0; n < 3; n++)
        hpet_wr(TN(n, TN_CONFIG), 0);
    hpet_wr(HPET_CONFIG, 0);
}

/* ------------------------------------------------------------------ 3. the APICs */
static void send_ipi(uint32_t low) {
    lapic_wr(LAPIC_ICR + 0x10, 0);
    lapic_wr(LAPIC_ICR, low);
}

static void apics(void) {
    uint32_t eax, ebx, ecx, edx;
    __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(1), "c"(0));
    if (!(edx & (1u << 9))) {
        kprintf("lapic: CPUID.1:EDX.APIC is clear: no local APIC\n");
        return;
    }
    uint64_t base = rdmsr(0x1B);
    kprintf("lapic: ia32_apic_base %08x %08x, id %08x, version %08x\n", (uint32_t)(base >> 32),
            (uint32_t)base, lapic_rd(0x20), lapic_rd(0x30));
    kprintf("lapic: svr %08x, lint0 %08x, lint1 %08x, tpr %08x\n", lapic_rd(LAPIC_SVR),
            lapic_rd(LAPIC_LVT_LINT0), lapic_rd(0x360), lapic_rd(LAPIC_TPR));
    lapic_wr(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
    lapic_wr(LAPIC_LVT_ERROR, VEC_ERROR);
    lapic_wr(LAPIC_ESR, 0);
    pic_init(0xFF, 0xFF); /* the 8259s masked */
    kprintf("ioapic: id %08x, version %08x, pin 0 %08x %08x, pin 2 %08x %08x\n", ioapic_rd(0),
            ioapic_rd(1), ioapic_rd(0x11), ioapic_rd(0x10), ioapic_rd(0x15), ioapic_rd(0x14));

    /* the PIT through the override (IRQ 0 -> GSI 2), edge, active high */
    clear_counts();
    pit_rate(1193);
    redirect(pit_gsi, VEC_IOAPIC_PIT);
    wait_count(&count[VEC_IOAPIC_PIT], 3);
    redirect(pit_gsi, 1u << 16);
    kprintf("ioapic: the PIT on gsi %u: %u interrupts at vector %02x\n", pit_gsi,
            count[VEC_IOAPIC_PIT], VEC_IOAPIC_PIT);
    pit_rate(0);

    /* the keyboard on GSI 1: the i8042 sends a scancode it is given (command D2) */
    clear_counts();
    while (inb(0x64) & 1)
        inb(0x60);
    outb(0x64, 0x20);
    while (!(inb(0x64) & 1))
        ;
    uint8_t command_byte = inb(0x60);
    outb(0x64, 0x60);
    outb(0x60, command_byte | 1); /* IRQ 1 enabled */
    redirect(keyboard_gsi, VEC_KEYBOARD);
    outb(0x64, 0xD2);
    outb(0x60, 0x1E);
    wait_count(&count[VEC_KEYBOARD], 1);
    uint8_t data = inb(0x60);
    redirect(keyboard_gsi, 1u << 16);
    kprintf("ioapic: the keyboard on gsi %u: %u interrupt(s) at vector %02x, data %02x, "
            "command byte %02x\n", keyboard_gsi, count[VEC_KEYBOARD], VEC_KEYBOARD, data,
            command_byte);

    /* the HPET through the I/O APIC: legacy replacement puts timer 0 on GSI 2 (through
     * IRQ 0) and timer 1 on GSI 8 (IRQ 8) and cuts the PIT off; timer 2 is level-triggered on
     * GSI 20 */
    clear_counts();
    hpet_wr(HPET_CONFIG, 3);
    redirect(2, VEC_HPET0);
    redirect(8, VEC_HPET1);
    redirect(20, VEC_HPET2 | (1u << 15)); /* level, active high */
    hpet_one_shot(0, TN_ENABLE, 3 * MS);
    hpet_one_shot(1, TN_ENABLE, 1 * MS);
    hpet_one_shot(2, TN_ENABLE | TN_LEVEL | TN_ROUTE(20), 2 * MS);
    wait_count(&count[VEC_HPET0], 1);
    kprintf("hpet via ioapic: status %08x, remote irr of gsi 20: %u\n", hpet_rd(HPET_STATUS),
            (ioapic_rd(0x10 + 40) >> 14) & 1);
    print_order("hpet via ioapic: vectors in order");
    hpet_wr(HPET_CONFIG, 0);
    for (int n = 0; n < 3; n++)
        hpet_wr(TN(n, TN_CONFIG), 0);
    redirect(2, 1u << 16);
    redirect(8, 1u << 16);
    redirect(20, 1u << 16);

    /* the LAPIC timer, divide by 1: one-shot, then periodic */
    clear_counts();
    lapic_wr(LAPIC_TIMER_DIVIDE, 0xB);
    lapic_wr(LAPIC_LVT_TIMER, VEC_LAPIC_TIMER);
    lapic_wr(LAPIC_TIMER_INITIAL, 1000000);
    wait_count(&count[VEC_LAPIC_TIMER], 1);
    kprintf("lapic timer one-shot: %u interrupt(s) at vector %02x, current count then %08x\n",
            count[VEC_LAPIC_TIMER], VEC_LAPIC_TIMER, lapic_rd(LAPIC_TIMER_CURRENT));
    clear_counts();
    lapic_wr(LAPIC_LVT_TIMER, VEC_LAPIC_TIMER | (1u << 17));
    lapic_wr(LAPIC_TIMER_INITIAL, 500000);
    wait_count(&count[VEC_LAPIC_TIMER], 3);
    uint32_t current = lapic_rd(LAPIC_TIMER_CURRENT);
    lapic_wr(LAPIC_LVT_TIMER, (1u << 16) | VEC_LAPIC_TIMER);
    lapic_wr(LAPIC_TIMER_INITIAL, 0);
    kprintf("lapic timer periodic: %u interrupts, current count below the initial: %s\n",
            count[VEC_LAPIC_TIMER], current > 0 && current <= 500000 ? "yes" : "no");

    /* a fixed IPI to itself */
    clear_counts();
    __asm__ volatile("sti");
    send_ipi(VEC_IPI | (1u << 18)); /* shorthand: self */
    delay(100);
    __asm__ volatile("cli");
    kprintf("lapic self-ipi: %u interrupt(s) at vector %02x\n", count[VEC_IPI], VEC_IPI);

    /* a spurious interrupt: the 8259 asks through LINT0 (ExtINT), LINT0 is switched to a fixed
     * vector the TPR holds back, and the 8259 is masked before the CPU acknowledges: INTA finds
     * only interrupts the TPR holds back (an IPI and LINT0's vector), and the local APIC answers
     * with its spurious vector; the handler lowers the TPR, and the held ones follow */
    clear_counts();
    uint32_t lint0 = lapic_rd(LAPIC_LVT_LINT0);
    lapic_wr(LAPIC_TPR, 0x60);
    send_ipi(VEC_HELD | (1u << 18));
    outb(0x21, 0xFD); /* the keyboard on the 8259 */
    outb(0x64, 0xD2);
    outb(0x60, 0x2A);
    lapic_wr(LAPIC_LVT_LINT0, VEC_HELD_LINT0); /* fixed, edge */
    outb(0x21, 0xFF);
    spurious_lowers_tpr = 1;
    __asm__ volatile("sti");
    delay(1000);
    __asm__ volatile("cli");
    spurious_lowers_tpr = 0;
    lapic_wr(LAPIC_LVT_LINT0, lint0);
    data = inb(0x60);
    print_order("lapic spurious: vectors in order");
    kprintf("lapic spurious: tpr %08x, keyboard data %02x, lint0 %08x\n", lapic_rd(LAPIC_TPR),
            data, lapic_rd(LAPIC_LVT_LINT0));

    /* APIC errors: an IPI with an illegal vector, a read of a reserved register */
    clear_counts();
    lapic_wr(LAPIC_ESR, 0);
    uint32_t before = lapic_rd(LAPIC_ESR);
    low_vector_expected = 1;
    __asm__ volatile("sti");
    send_ipi(0x03 | (1u << 18));
    delay(100);
    __asm__ volatile("cli");
    low_vector_expected = 0;
    lapic_wr(LAPIC_ESR, 0);
    uint32_t after_ipi = lapic_rd(LAPIC_ESR);
    kprintf("lapic error: esr %08x, after an IPI with vector 03: %08x; %u error interrupt(s), "
            "vector 03 taken %u time(s)\n", before, after_ipi, count[VEC_ERROR], count[0x03]);
    __asm__ volatile("sti");
    uint32_t reserved = lapic_rd(0x040);
    delay(100);
    __asm__ volatile("cli");
    lapic_wr(LAPIC_ESR, 0);
    kprintf("lapic error: a read of reserved 040 gives %08x; esr %08x; %u error interrupt(s)\n",
            reserved, lapic_rd(LAPIC_ESR), count[VEC_ERROR]);
}

void kmain(uint32_t magic, uint32_t info) {
    if (!serial_init())
        qemu_exit(2);
    kprintf("apic: tables, interrupt controllers and timers\n");
    if (magic != 0x36D76289) {
        kprintf("not booted by a Multiboot2 loader\n");
        qemu_exit(3);
    }
    __asm__ volatile("fninit");
    idt_init();
    mp_tables();
    acpi_tables(info);
    hpet_registers();
    hpet_counter();
    hpet_through_8259();
    apics();
    kprintf("apic: done\n");
    qemu_exit(0);
}
