/* probe-lapic: prints the local APIC and the I/O APIC as a kernel finds them at its first
 * instruction, then what their registers keep of a write (reserved bits, read-only registers,
 * the error status). Nothing here waits for an interrupt or reads a running counter, so every
 * line is independent of time. 32-bit, paging off: the registers are at their physical
 * addresses. docs/devices.md explains the output.
 *   1. CPUID.1:EDX[9], IA32_APIC_BASE, every defined local APIC register;
 *   2. the I/O APIC's ID, version, arbitration ID and its 24 redirection entries;
 *   3. writes to the local APIC: all ones to each writable register, then read back (and the
 *      value put back), the read-only ones, an access to a reserved offset and the ESR;
 *   4. writes to the I/O APIC: all ones to a redirection entry, the ID, the version, an
 *      index past the last entry. */
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"

static char logbuf[16384];
static uint32_t loglen;

#define LOG(...)                                                                           \
    do {                                                                                   \
        loglen += (uint32_t)ksnprintf(logbuf + loglen, sizeof logbuf - loglen, __VA_ARGS__); \
        if (loglen > sizeof logbuf - 1)                                                    \
            loglen = sizeof logbuf - 1;                                                    \
    } while (0)

#define LAPIC 0xFEE00000u
#define IOAPIC 0xFEC00000u

static uint32_t lapic_read(uint32_t offset) {
    return *(volatile uint32_t *)(LAPIC + offset);
}
static void lapic_write(uint32_t offset, uint32_t value) {
    *(volatile uint32_t *)(LAPIC + offset) = value;
}
static uint32_t ioapic_read(uint32_t index) {
    *(volatile uint32_t *)IOAPIC = index;
    return *(volatile uint32_t *)(IOAPIC + 0x10);
}
static void ioapic_write(uint32_t index, uint32_t value) {
    *(volatile uint32_t *)IOAPIC = index;
    *(volatile uint32_t *)(IOAPIC + 0x10) = value;
}

/* the defined registers, by offset (0x390: the current count, printed as "runs" if not 0) */
static const uint16_t defined[] = {
    0x020, 0x030, 0x080, 0x090, 0x0A0, 0x0B0, 0x0D0, 0x0E0, 0x0F0,
    0x100, 0x110, 0x120, 0x130, 0x140, 0x150, 0x160, 0x170,
    0x180, 0x190, 0x1A0, 0x1B0, 0x1C0, 0x1D0, 0x1E0, 0x1F0,
    0x200, 0x210, 0x220, 0x230, 0x240, 0x250, 0x260, 0x270,
    0x280, 0x300, 0x310, 0x320, 0x330, 0x340, 0x350, 0x360, 0x370,
    0x380, 0x390, 0x3E0,
};
/* written with all ones and read back (EOI and the ICR are not: they act) */
static const uint16_t writable[] = {0x020, 0x080, 0x0D0, 0x0E0, 0x0F0, 0x320, 0x330,
                                    0x340, 0x350, 0x360, 0x370, 0x3E0, 0x310};
static const uint16_t read_only[] = {0x030, 0x090, 0x0A0, 0x100, 0x180, 0x200, 0x390};

static void cpuid1(uint32_t *edx) {
    uint32_t a = 1, b, c = 0;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(*edx));
}

void kmain(uint32_t magic, uint32_t info) {
    (void)magic;
    (void)info;
    uint32_t edx;
    cpuid1(&edx);
    LOG("step 1: the local APIC at entry\n");
    LOG("cpuid.1 edx.apic: %u\n", (edx >> 9) & 1);
    uint64_t base = rdmsr(0x1B);
    LOG("ia32_apic_base: %08x%08x\n", (uint32_t)(base >> 32), (uint32_t)base);
    for (unsigned i = 0; i < sizeof defined / sizeof defined[0]; i++) {
        uint32_t v = lapic_read(defined[i]);
        if (defined[i] == 0x390 && v != 0)
            LOG("lapic %03x: counting\n", defined[i]);
        else
            LOG("lapic %03x: %08x\n", defined[i], v);
    }

    LOG("step 2: the I/O APIC at entry\n");
    LOG("ioapic ioregsel: %08x\n", *(volatile uint32_t *)IOAPIC);
    for (uint32_t r = 0; r < 3; r++)
        LOG("ioapic reg %02x: %08x\n", r, ioapic_read(r));
    for (uint32_t pin = 0; pin < 24; pin++)
        LOG("ioapic redir %2u: %08x %08x\n", pin, ioapic_read(0x11 + 2 * pin),
            ioapic_read(0x10 + 2 * pin));

    LOG("step 3: writes to the local APIC\n");
    lapic_write(0x280, 0);
    LOG("esr after a write: %08x\n", lapic_read(0x280));
    for (unsigned i = 0; i < sizeof writable / sizeof writable[0]; i++) {
        uint32_t off = writable[i];
        uint32_t old = lapic_read(off);
        lapic_write(off, 0xFFFFFFFFu);
        uint32_t v = lapic_read(off);
        lapic_write(off, 0);
        uint32_t z = lapic_read(off);
        lapic_write(off, old);
        LOG("lapic %03x: ones -> %08x, zero -> %08x, back %08x\n", off, v, z, lapic_read(off));
    }
    for (unsigned i = 0; i < sizeof read_only / sizeof read_only[0]; i++) {
        uint32_t off = read_only[i];
        uint32_t old = lapic_read(off);
        lapic_write(off, 0x5A5A5A5Au);
        uint32_t v = lapic_read(off);
        LOG("lapic %03x (read-only): %s\n", off,
            off == 0x390 ? (v == 0 ? "stays 0" : "counts") : (v == old ? "kept" : "changed"));
    }
    LOG("esr after the writes: %08x\n", lapic_read(0x280));
    lapic_write(0x280, 0);
    LOG("esr latched: %08x\n", lapic_read(0x280));
    (void)lapic_read(0x040);
    LOG("esr after reading reserved 040: %08x\n", lapic_read(0x280));
    lapic_write(0x280, 0);
    LOG("esr latched: %08x\n", lapic_read(0x280));
    lapic_write(0x280, 0);
    LOG("esr latched again: %08x\n", lapic_read(0x280));
    lapic_write(0x3F0, 1);
    lapic_write(0x280, 0);
    LOG("esr after writing reserved 3f0: %08x\n", lapic_read(0x280));
    LOG("lapic 040 reads: %08x\n", lapic_read(0x040));
    LOG("byte read of 020: %02x\n", *(volatile uint8_t *)(LAPIC + 0x20));
    LOG("byte read of 0f0: %02x\n", *(volatile uint8_t *)(LAPIC + 0xF0));
    LOG("word read of 030: %04x\n", *(volatile uint16_t *)(LAPIC + 0x30));
    LOG("read of 034: %08x\n", *(volatile uint32_t *)(LAPIC + 0x34));
    LOG("read of 038: %08x\n", *(volatile uint32_t *)(LAPIC + 0x38));

    LOG("step 4: writes to the I/O APIC\n");
    uint32_t lo = ioapic_read(0x10), hi = ioapic_read(0x11);
    ioapic_write(0x10, 0xFFFFFFFFu);
    ioapic_write(0x11, 0xFFFFFFFFu);
    LOG("ioapic redir 0: ones -> %08x %08x\n", ioapic_read(0x11), ioapic_read(0x10));
    ioapic_write(0x10, 0x00010000u);
    ioapic_write(0x11, 0);
    LOG("ioapic redir 0: masked, zero -> %08x %08x\n", ioapic_read(0x11), ioapic_read(0x10));
    ioapic_write(0x10, lo);
    ioapic_write(0x11, hi);
    uint32_t id = ioapic_read(0);
    ioapic_write(0, 0xFFFFFFFFu);
    LOG("ioapic id: ones -> %08x\n", ioapic_read(0));
    ioapic_write(0, id);
    ioapic_write(1, 0xFFFFFFFFu);
    LOG("ioapic version: ones -> %08x\n", ioapic_read(1));
    ioapic_write(2, 0xFFFFFFFFu);
    LOG("ioapic arb: ones -> %08x\n", ioapic_read(2));
    LOG("ioapic reg 03: %08x\n", ioapic_read(3));
    LOG("ioapic reg 40: %08x\n", ioapic_read(0x40));
    LOG("ioapic reg ff: %08x\n", ioapic_read(0xFF));
    *(volatile uint32_t *)IOAPIC = 0xFFFFFFFFu;
    LOG("ioapic ioregsel: ones -> %08x\n", *(volatile uint32_t *)IOAPIC);
    *(volatile uint32_t *)IOAPIC = 0x12;
    LOG("ioapic byte read of iowin: %02x\n", *(volatile uint8_t *)(IOAPIC + 0x10));
    LOG("ioapic read of 20: %08x\n", *(volatile uint32_t *)(IOAPIC + 0x20));
    LOG("ioapic read of 40 (eoi): %08x\n", *(volatile uint32_t *)(IOAPIC + 0x40));
    LOG("ioapic read of 04: %08x\n", *(volatile uint32_t *)(IOAPIC + 0x04));

    /* last: IA32_APIC_BASE writes (the APIC cannot be enabled again once disabled) */
    LOG("step 5: IA32_APIC_BASE\n");
    __asm__ volatile("wrmsr" : : "c"(0x1B), "a"(0xFEE00800u), "d"(0));
    LOG("ia32_apic_base after writing fee00800: %08x\n", (uint32_t)rdmsr(0x1B));
    LOG("lapic 0f0 now: %08x\n", lapic_read(0xF0));
    __asm__ volatile("wrmsr" : : "c"(0x1B), "a"(0xFEE00000u), "d"(0));
    LOG("ia32_apic_base after writing fee00000: %08x\n", (uint32_t)rdmsr(0x1B));
    LOG("lapic 0f0 disabled: %08x\n", lapic_read(0xF0));
    LOG("lapic 030 disabled: %08x\n", lapic_read(0x30));
    cpuid1(&edx);
    LOG("cpuid.1 edx.apic disabled: %u\n", (edx >> 9) & 1);
    __asm__ volatile("wrmsr" : : "c"(0x1B), "a"(0xFEE00800u), "d"(0));
    LOG("ia32_apic_base after enabling again: %08x\n", (uint32_t)rdmsr(0x1B));
    cpuid1(&edx);
    LOG("cpuid.1 edx.apic after: %u\n", (edx >> 9) & 1);

    serial_init();
    serial_puts("probe-lapic\n");
    serial_puts(logbuf);
    serial_puts("done\n");
    qemu_exit(0);
}
