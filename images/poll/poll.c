/* poll: three kernels that wait the way real kernels do, for bench/polling.py and the
 * fast-forward tests. One source, three images (the Makefile sets one of the POLL_* macros):
 *
 *   poll-cmos    polls the CMOS update-in-progress bit and seconds register (IF=0) for 5 s of
 *                guest time and prints each second as it comes, as the difference from the one
 *                before (always +1), so the output does not depend on the clock's start;
 *   poll-serial  prints 256 KiB over COM1, polling LSR.THRE before each byte;
 *   poll-spin    spins in `jmp .` with IF=1 while a 100 Hz PIT counts ticks, for 10 s of guest
 *                time (1000 ticks), then prints the count.
 *
 * Each exits through isa-debug-exit with 0 when what it saw is right. */
#include "../common/cpu64.h"
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"

#if defined(POLL_CMOS)
static uint8_t cmos(uint8_t reg) {
    outb(0x70, reg);
    return inb(0x71);
}

static unsigned bcd(uint8_t v) { return (v >> 4) * 10 + (v & 15); }

/* the seconds register once no update is in progress (the datasheet's rule for a read) */
static unsigned rtc_seconds(void) {
    while (cmos(0x0A) & 0x80)
        ;
    return bcd(cmos(0x00));
}

/* spin until the seconds register changes; returns the new value */
static unsigned next_second(unsigned from) {
    unsigned s;
    do
        s = rtc_seconds();
    while (s == from);
    return s;
}
#endif

#if defined(POLL_SPIN)
#define TICKS 1000 /* 10 s at 100 Hz */
static volatile unsigned ticks;

static void pic_remap(void) {
    outb(0x20, 0x11);
    outb(0xA0, 0x11);
    outb(0x21, 0x20);
    outb(0xA1, 0x28);
    outb(0x21, 0x04);
    outb(0xA1, 0x02);
    outb(0x21, 0x01);
    outb(0xA1, 0x01);
    outb(0x21, 0xFE); /* only IRQ 0 */
    outb(0xA1, 0xFF);
}

void isr_handler(struct frame *f) {
    if (f->vector == 32) {
        outb(0x20, 0x20);
        if (++ticks < TICKS)
            return;
        /* the count only: a loaded host makes QEMU's PIT lag its RTC, so the two are not
         * compared */
        kprintf("%u ticks of a 100 Hz PIT in a jmp-self loop\n", ticks);
        qemu_exit(0);
    }
    kprintf("unexpected vector %lu at 0x%lx\n", f->vector, f->rip);
    qemu_exit(1);
}
#else
void isr_handler(struct frame *f) {
    kprintf("unexpected vector %lu at 0x%lx\n", f->vector, f->rip);
    qemu_exit(1);
}
#endif

#if defined(POLL_SERIAL)
#define SERIAL_BYTES (256 * 1024)
#define LINE 64
/* one line of exactly LINE bytes: its number, then letters, then '\n' (no '\r': the byte count
 * is exact) */
static void serial_line(unsigned n) {
    char line[LINE];
    int len = ksnprintf(line, sizeof line, "%05u ", n);
    for (int i = len; i < LINE - 1; i++)
        line[i] = (char)('a' + (n + i) % 26);
    line[LINE - 1] = '\n';
    for (int i = 0; i < LINE; i++) {
        while (!(inb(0x3F8 + 5) & 0x20)) /* LSR.THRE */
            ;
        outb(0x3F8, (uint8_t)line[i]);
    }
}
#endif

void kmain(uint32_t magic, uint32_t info) {
    (void)magic;
    (void)info;
    serial_init();
    idt_install();
    tss_install();
#if defined(POLL_CMOS)
    kprintf("poll-cmos: polling the CMOS seconds for 5 s\n");
    unsigned s = next_second(rtc_seconds()); /* start on a second boundary */
    int ok = 1;
    for (unsigned i = 1; i <= 5; i++) {
        unsigned t = next_second(s);
        unsigned diff = (t + 60 - s) % 60;
        kprintf("second %u: +%u\n", i, diff);
        ok &= diff == 1;
        s = t;
    }
    kprintf(ok ? "All tests passed\n" : "FAILED\n");
    qemu_exit(ok ? 0 : 1);
#elif defined(POLL_SERIAL)
    kprintf("poll-serial: %u bytes in %u lines, polling LSR\n", SERIAL_BYTES, SERIAL_BYTES / LINE);
    for (unsigned n = 0; n < SERIAL_BYTES / LINE; n++)
        serial_line(n);
    kprintf("All tests passed\n");
    qemu_exit(0);
#elif defined(POLL_SPIN)
    pic_remap();
    uint16_t divisor = 11932; /* 1193182 Hz / 100 */
    outb(0x43, 0x34);         /* channel 0, lobyte/hibyte, mode 2 */
    outb(0x40, divisor & 0xFF);
    outb(0x40, divisor >> 8);
    kprintf("poll-spin: jmp-self with IF=1, 100 Hz PIT, %u ticks\n", TICKS);
    __asm__ volatile("sti\n1: jmp 1b");
    __builtin_unreachable();
#else
#error "one of POLL_CMOS, POLL_SERIAL, POLL_SPIN"
#endif
}
