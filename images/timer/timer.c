/* timer: the PIC remapped, the PIT at 100 Hz on IRQ 0, and an idle loop that sleeps with HLT
 * until 10 ticks have been counted; the time they took is read with RDTSC. */
#include "../common/cpu64.h"
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"

#define TICKS 10
static volatile unsigned ticks;
static volatile unsigned spurious;

static inline uint64_t rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

void isr_handler(struct frame *f) {
    if (f->vector == 32) {
        ticks++;
        outb(0x20, 0x20); /* EOI */
        return;
    }
    if (f->vector == 39) { /* IRQ 7: spurious unless the ISR says otherwise */
        outb(0x20, 0x0B);
        if (!(inb(0x20) & 0x80)) {
            spurious++;
            return;
        }
    }
    kprintf("unexpected vector %lu at 0x%lx\n", f->vector, f->rip);
    qemu_exit(1);
}

static uint8_t cmos(uint8_t reg) {
    outb(0x70, reg);
    return inb(0x71);
}

static unsigned bcd(uint8_t v) { return (v >> 4) * 10 + (v & 15); }

static void print_date(void) {
    while (cmos(0x0A) & 0x80) /* wait out an update in progress */
        ;
    kprintf("RTC: %02u%02u-%02u-%02u %02u:%02u:%02u\n", bcd(cmos(0x32)), bcd(cmos(0x09)),
            bcd(cmos(0x08)), bcd(cmos(0x07)), bcd(cmos(0x04)), bcd(cmos(0x02)), bcd(cmos(0x00)));
}

static void pic_remap(void) {
    outb(0x20, 0x11);
    outb(0xA0, 0x11);
    outb(0x21, 0x20); /* master: vectors 0x20-0x27 */
    outb(0xA1, 0x28); /* slave: 0x28-0x2F */
    outb(0x21, 0x04);
    outb(0xA1, 0x02);
    outb(0x21, 0x01);
    outb(0xA1, 0x01);
    outb(0x21, 0xFE); /* only IRQ 0 */
    outb(0xA1, 0xFF);
}

void kmain(uint32_t magic, uint32_t info) {
    (void)magic;
    (void)info;
    serial_init();
    idt_install();
    tss_install();
    pic_remap();
    uint16_t divisor = 11932; /* 1193182 Hz / 100 */
    outb(0x43, 0x34);         /* channel 0, lobyte/hibyte, mode 2 */
    outb(0x40, divisor & 0xFF);
    outb(0x40, divisor >> 8);
    kprintf("timer: PIC remapped to 0x20, PIT at 100 Hz\n");
    print_date();
    uint64_t t0 = rdtsc();
    __asm__ volatile("sti");
    while (ticks < TICKS)
        __asm__ volatile("hlt");
    __asm__ volatile("cli");
    uint64_t elapsed = rdtsc() - t0;
    kprintf("%u ticks in %lu TSC cycles\n", ticks, elapsed);
    print_date();
    int ok = ticks == TICKS && elapsed > 0 && spurious == 0;
    kprintf(ok ? "All tests passed\n" : "FAILED\n");
    qemu_exit(ok ? 0 : 1);
}
