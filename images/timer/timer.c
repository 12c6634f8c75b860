/* timer: the PIC remapped, the PIT at 100 Hz on IRQ 0, and an idle loop that sleeps with HLT
 * until 10 ticks have been counted; the time they took is read with RDTSC. */
#include "../common/cpu64.h"
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"

#define TICKS 10
static volatile unsigned ticks;
static volatile unsigned spurious;
static char typed[64];
static volatile unsigned typed_len, shift, line_done;

/* scancode set 1 -> ASCII for the keys the test types (US layout) */
static const char keymap[0x3A] = {
    0, 27, '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '-', '=', 8, 9,
    'q', 'w', 'e', 'r', 't', 'y', 'u', 'i', 'o', 'p', '[', ']', '\n', 0, 'a', 's',
    'd', 'f', 'g', 'h', 'j', 'k', 'l', ';', '\'', '`', 0, '\\', 'z', 'x', 'c', 'v',
    'b', 'n', 'm', ',', '.', '/', 0, '*', 0, ' ',
};

static char received[64];
static volatile unsigned received_len, serial_line_done;

static void serial_irq(void) {
    while (inb(0x3F8 + 5) & 1) { /* LSR.DR: drain the receive FIFO */
        char ch = (char)inb(0x3F8);
        if (ch == '\n' || ch == '\r')
            serial_line_done = 1;
        else if (received_len < sizeof received - 1)
            received[received_len++] = ch;
    }
}

static void keyboard_irq(void) {
    uint8_t code = inb(0x60);
    if (code == 0x2A || code == 0x36)
        shift = 1;
    else if (code == 0xAA || code == 0xB6)
        shift = 0;
    else if (code < sizeof keymap && keymap[code]) {
        char ch = keymap[code];
        if (shift && ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        if (ch == '\n')
            line_done = 1;
        else if (typed_len < sizeof typed - 1)
            typed[typed_len++] = ch;
    }
}

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
    if (f->vector == 33) {
        keyboard_irq();
        outb(0x20, 0x20);
        return;
    }
    if (f->vector == 36) { /* IRQ 4: COM1 */
        serial_irq();
        outb(0x20, 0x20);
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
    /* the keyboard: IRQ 1 unmasked, wait up to 2 s (200 ticks) for a line of text */
    while (inb(0x64) & 1)
        inb(0x60);
    outb(0x21, 0xFC);
    __asm__ volatile("sti");
    unsigned deadline = ticks + 200;
    while (!line_done && ticks < deadline)
        __asm__ volatile("hlt");
    __asm__ volatile("cli");
    typed[typed_len] = 0;
    kprintf("keyboard: \"%s\"%s\n", typed, line_done ? "" : " (no line typed)");
    /* COM1 receive interrupts: IER bit 0, IRQ 4 unmasked; wait up to 1 s for a line */
    outb(0x3F8 + 1, 0x01);
    outb(0x21, 0xEC);
    __asm__ volatile("sti");
    deadline = ticks + 100;
    while (!serial_line_done && ticks < deadline)
        __asm__ volatile("hlt");
    __asm__ volatile("cli");
    outb(0x3F8 + 1, 0x00);
    received[received_len] = 0;
    kprintf("serial: \"%s\"%s\n", received, serial_line_done ? "" : " (no line received)");
    kprintf(ok ? "All tests passed\n" : "FAILED\n");
    qemu_exit(ok ? 0 : 1);
}
