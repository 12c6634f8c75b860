/* probe-devices: prints the state the firmware and the boot loader leave the PC's chips in, as
 * a kernel finds them at its first instruction: the 8259 pair, the 8254, port 0x61, the CMOS
 * RTC, the i8042 and port 0x92, the UARTs at COM1-COM4, LPT1 and the VGA.
 *
 * Order matters, because reading some registers needs a write first and a few reads have side
 * effects. The probe measures in this order and buffers every line in memory; COM1 is
 * initialised only at the very end, to print the buffer:
 *   1. plain reads, no write to any port (each read's side effect, if it has one, is noted);
 *   2. the 8259s' IRR and ISR (OCW3 read-register commands: a write to 0x20/0xA0);
 *   3. the 8254 read-back command for each channel (status, then the count, twice);
 *   4. which vector IRQ 0 arrives at: an IDT catching all 256 vectors, STI, a bounded wait;
 *   5. the CMOS registers (an index write to 0x70 each, with the NMI-disable bit kept set);
 *   6. the i8042's command byte, output port and input port (controller commands);
 *   7. the UARTs' divisor latches (LCR.DLAB set, then LCR restored);
 *   8. the VGA's indexed registers and the DAC (index writes, each index restored);
 *   9. which vector IRQ 8 arrives at (masks, RTC periodic interrupt: deliberate changes).
 * Nothing printed depends on time: where a value does (a running counter, the RTC's update
 * flags), the line says so instead of printing it. docs/platform.md explains the output. */
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"

extern char isr_stubs[];
int wait_irq(uint32_t max_unchanged, uint32_t reloads);

/* ------------------------------------------------------------------ the output buffer */
static char logbuf[32768];
static uint32_t loglen;

#define LOG(...)                                                                           \
    do {                                                                                   \
        loglen += (uint32_t)ksnprintf(logbuf + loglen, sizeof logbuf - loglen, __VA_ARGS__); \
        if (loglen > sizeof logbuf - 1)                                                    \
            loglen = sizeof logbuf - 1;                                                    \
    } while (0)

static void delay(uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        __asm__ volatile("nop");
}

/* ------------------------------------------------------------------ 1. plain reads */
static const uint16_t com_base[4] = {0x3F8, 0x2F8, 0x3E8, 0x2E8};
static uint8_t com_lcr[4], com_lsr[4];
static uint8_t vga_misc, vga_attr_index, vga_seq_index, vga_crtc_index, vga_gc_index;
static uint8_t vga_dac_write_index;
static uint8_t kbd_status;

static void plain_reads(void) {
    LOG("step 1: plain reads\n");
    LOG("pic1 imr: %02x\n", inb(0x21));
    LOG("pic2 imr: %02x\n", inb(0xA1));
    /* the command port reads IRR or ISR, whichever the last OCW3 selected (IRR bit 0: a
     * timer tick that came while interrupts were off, time-dependent) */
    LOG("pic1 command port (bit 0 masked): %02x\n", inb(0x20) & ~1);
    LOG("pic2 command port: %02x\n", inb(0xA0));
    LOG("elcr 4d0: %02x\n", inb(0x4D0));
    LOG("elcr 4d1: %02x\n", inb(0x4D1));
    /* bit 4 is the refresh toggle (QEMU flips it on every read): not printed */
    LOG("port 61 (bit 4 masked): %02x\n", inb(0x61) & ~0x10);
    LOG("port 92: %02x\n", inb(0x92));
    LOG("port 70: %02x\n", inb(0x70));
    kbd_status = inb(0x64);
    LOG("i8042 status: %02x\n", kbd_status);
    for (int i = 0; i < 4; i++) {
        uint16_t b = com_base[i];
        /* IIR: a read acknowledges a THR-empty interrupt it reports; LSR: clears the error
         * bits; MSR: clears the delta bits. RBR (offset 0) is not read. */
        uint8_t ier = inb(b + 1), iir = inb(b + 2), lcr = inb(b + 3), mcr = inb(b + 4);
        uint8_t lsr = inb(b + 5), msr = inb(b + 6), scr = inb(b + 7);
        com_lcr[i] = lcr;
        com_lsr[i] = lsr;
        LOG("com%d %03x: ier %02x iir %02x lcr %02x mcr %02x lsr %02x msr %02x scr %02x\n", i + 1,
            b, ier, iir, lcr, mcr, lsr, msr, scr);
    }
    LOG("lpt1 378: data %02x status %02x control %02x\n", inb(0x378), inb(0x379), inb(0x37A));
    vga_misc = inb(0x3CC);
    LOG("vga misc output (3cc): %02x\n", vga_misc);
    LOG("vga feature control (3ca): %02x\n", inb(0x3CA));
    LOG("vga input status 0 (3c2): %02x\n", inb(0x3C2));
    vga_seq_index = inb(0x3C4);
    vga_crtc_index = inb((vga_misc & 1) ? 0x3D4 : 0x3B4);
    vga_gc_index = inb(0x3CE);
    /* 0x3C0 reads the attribute index only while the flip-flop expects an index (else 0);
     * input status 1 (0x3DA, whose value follows the retrace and is not printed) resets the
     * flip-flop, so the second read is the index either way */
    uint8_t attr_as_left = inb(0x3C0);
    (void)inb((vga_misc & 1) ? 0x3DA : 0x3BA);
    vga_attr_index = inb(0x3C0);
    LOG("vga index registers: sequencer %02x crtc %02x graphics %02x\n", vga_seq_index,
        vga_crtc_index, vga_gc_index);
    LOG("vga attribute index: %02x as left, %02x after a read of input status 1\n",
        attr_as_left, vga_attr_index);
    vga_dac_write_index = inb(0x3C8);
    LOG("vga dac: mask %02x state %02x write index %02x\n", inb(0x3C6), inb(0x3C7),
        vga_dac_write_index);
}

/* ------------------------------------------------------------------ 2. IRR and ISR */
static void pic_registers(void) {
    LOG("step 2: 8259 IRR and ISR (OCW3 0x0a/0x0b to 0x20 and 0xa0; left selecting IRR)\n");
    outb(0x20, 0x0A);
    uint8_t irr1 = inb(0x20);
    outb(0x20, 0x0B);
    uint8_t isr1 = inb(0x20);
    outb(0x20, 0x0A);
    outb(0xA0, 0x0A);
    uint8_t irr2 = inb(0xA0);
    outb(0xA0, 0x0B);
    uint8_t isr2 = inb(0xA0);
    outb(0xA0, 0x0A);
    /* IRR bit 0 holds a timer tick that came while interrupts were off: time-dependent */
    LOG("pic1 irr (bit 0 masked): %02x\n", irr1 & ~1);
    LOG("pic1 isr: %02x\n", isr1);
    LOG("pic2 irr: %02x\n", irr2);
    LOG("pic2 isr: %02x\n", isr2);
}

/* ------------------------------------------------------------------ 3. the 8254 */
/* the latched count of a channel, read as its access mode says (0: QEMU's never-programmed
 * channel, whose latch command latches nothing: one live low byte) */
static uint32_t pit_count(int ch, uint8_t access) {
    outb(0x43, 0xD0 | (2 << ch)); /* read-back: latch count, not status */
    uint16_t port = 0x40 + ch;
    if (access == 3) {
        uint32_t lo = inb(port);
        return lo | ((uint32_t)inb(port) << 8);
    }
    if (access == 2)
        return (uint32_t)inb(port) << 8;
    return inb(port);
}

static void pit_registers(void) {
    LOG("step 3: 8254 read-back (0xe2/0xe4/0xe8 status, 0xd2/0xd4/0xd8 count)\n");
    for (int ch = 0; ch < 3; ch++) {
        outb(0x43, 0xE0 | (2 << ch)); /* read-back: latch status, not count */
        uint8_t status = inb(0x40 + ch);
        uint8_t access = (status >> 4) & 3, mode = (status >> 1) & 7;
        /* counting: the count changes within 200 reads a few microseconds apart (a PIT
         * clock is 838 ns) */
        uint32_t a = pit_count(ch, access);
        int counting = 0;
        for (int i = 0; i < 200 && !counting; i++) {
            delay(2000);
            counting = pit_count(ch, access) != a;
        }
        /* OUT (status bit 7) of a counting channel in mode 2 or 3 is time-dependent */
        if (counting && (mode == 2 || mode == 3 || mode == 6 || mode == 7))
            LOG("pit ch%d status (bit 7 masked): %02x, counting, out toggles\n", ch,
                status & 0x7F);
        else if (counting)
            LOG("pit ch%d status: %02x, counting\n", ch, status);
        else
            LOG("pit ch%d status: %02x, stopped at count %04x\n", ch, status, a);
    }
}

/* ------------------------------------------------------------------ 4. the IRQ 0 vector */
struct idt_gate {
    uint16_t offset_low, selector;
    uint8_t zero, type;
    uint16_t offset_high;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));

static void load_idt(void) {
    uint16_t cs;
    __asm__ volatile("movw %%cs, %0" : "=r"(cs));
    for (int v = 0; v < 256; v++) {
        uint32_t handler = (uint32_t)(uintptr_t)isr_stubs + 16 * (uint32_t)v;
        idt[v] = (struct idt_gate){(uint16_t)handler, cs, 0, 0x8E, (uint16_t)(handler >> 16)};
    }
    struct {
        uint16_t limit;
        uint32_t base;
    } __attribute__((packed)) idtr = {sizeof idt - 1, (uint32_t)(uintptr_t)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

static uint8_t isr_of(uint16_t command_port) {
    outb(command_port, 0x0B);
    uint8_t isr = inb(command_port);
    outb(command_port, 0x0A);
    return isr;
}

static void log_vector(const char *what, int vector) {
    if (vector < 0) {
        LOG("%s: none\n", what);
        return;
    }
    /* which IRQ it was: the in-service bits (both clear in auto-EOI mode) */
    uint8_t isr1 = isr_of(0x20), isr2 = isr_of(0xA0);
    LOG("%s: vector %02x, then pic1 isr %02x pic2 isr %02x\n", what, vector, isr1, isr2);
}

static void irq0_vector(void) {
    LOG("step 4: IDT for all 256 vectors, STI, wait (at most 4 reloads of channel 0)\n");
    load_idt();
    log_vector("first interrupt", wait_irq(1000, 4));
}

/* ------------------------------------------------------------------ 5. CMOS */
static uint8_t cmos(uint8_t index) {
    outb(0x70, 0x80 | index); /* bit 7: NMI stays disabled, as SeaBIOS leaves it */
    return inb(0x71);
}

static void cmos_registers(void) {
    LOG("step 5: CMOS (index | 0x80 to port 0x70)\n");
    LOG("cmos a (bit 7 UIP masked): %02x\n", cmos(0x0A) & 0x7F);
    LOG("cmos b: %02x\n", cmos(0x0B));
    /* a read of C clears it; its flags PF, AF and UF are set by the clock (on a real
     * MC146818 whether or not their interrupts are enabled; QEMU sets PF only with PIE) */
    LOG("cmos c (bits 6-4 PF AF UF masked): %02x\n", cmos(0x0C) & ~0x70);
    LOG("cmos d: %02x\n", cmos(0x0D));
    LOG("cmos alarm: seconds %02x minutes %02x hours %02x\n", cmos(0x01), cmos(0x03),
        cmos(0x05));
    LOG("cmos 00 02 04 06-09: time and date, not printed (time-dependent)\n");
    for (int row = 0x0E; row < 0x80; row = (row + 16) & ~15) {
        LOG("cmos %02x:", row);
        for (int i = row; i < ((row + 16) & ~15); i++)
            LOG(" %02x", cmos((uint8_t)i));
        LOG("\n");
    }
}

/* ------------------------------------------------------------------ 6. i8042 */
static int kbd_wait_output(void) {
    for (int i = 0; i < 100000; i++)
        if (inb(0x64) & 1)
            return 1;
    return 0;
}

static void kbd_wait_input(void) {
    for (int i = 0; i < 100000 && (inb(0x64) & 2); i++)
        ;
}

static void kbd_command(const char *what, uint8_t command) {
    kbd_wait_input();
    outb(0x64, command);
    if (kbd_wait_output())
        LOG("i8042 %s (command %02x): %02x\n", what, command, inb(0x60));
    else
        LOG("i8042 %s (command %02x): no reply\n", what, command);
}

static void kbd_registers(void) {
    LOG("step 6: i8042\n");
    if (kbd_status & 1)
        LOG("i8042 output buffer: %02x (read from 0x60; status bit 5 = %d)\n", inb(0x60),
            (kbd_status >> 5) & 1);
    else
        LOG("i8042 output buffer: empty\n");
    kbd_command("command byte", 0x20);
    kbd_command("output port", 0xD0);
    kbd_command("input port", 0xC0);
    LOG("i8042 status after: %02x\n", inb(0x64));
}

/* ------------------------------------------------------------------ 7. UART divisors */
static void com_divisors(void) {
    LOG("step 7: UART divisor latches (LCR | 0x80, DLL, DLM, LCR restored)\n");
    for (int i = 0; i < 4; i++) {
        uint16_t b = com_base[i];
        if (com_lcr[i] == 0xFF && com_lsr[i] == 0xFF) {
            LOG("com%d %03x: no UART (LCR and LSR read ff), divisor not read\n", i + 1, b);
            continue;
        }
        outb(b + 3, com_lcr[i] | 0x80);
        uint8_t dll = inb(b), dlm = inb(b + 1);
        outb(b + 3, com_lcr[i]);
        LOG("com%d %03x: divisor %04x\n", i + 1, b, dll | (dlm << 8));
    }
}

/* ------------------------------------------------------------------ 8. VGA */
static void vga_indexed(const char *name, uint16_t index_port, int count, uint8_t restore) {
    LOG("vga %s:", name);
    for (int i = 0; i < count; i++) {
        outb(index_port, (uint8_t)i);
        LOG(" %02x", inb(index_port + 1));
    }
    outb(index_port, restore);
    LOG("\n");
}

static void vga_registers(void) {
    LOG("step 8: VGA indexed registers (each index restored), attribute controller, DAC\n");
    uint16_t crtc = (vga_misc & 1) ? 0x3D4 : 0x3B4;
    vga_indexed("sequencer 00-04", 0x3C4, 5, vga_seq_index);
    vga_indexed("crtc 00-18", crtc, 0x19, vga_crtc_index);
    outb(crtc, 0x0A);
    uint8_t cursor_start = inb(crtc + 1);
    outb(crtc, 0x0B);
    uint8_t cursor_end = inb(crtc + 1);
    outb(crtc, 0x0C);
    uint32_t start = (uint32_t)inb(crtc + 1) << 8;
    outb(crtc, 0x0D);
    start |= inb(crtc + 1);
    outb(crtc, 0x0E);
    uint32_t cursor = (uint32_t)inb(crtc + 1) << 8;
    outb(crtc, 0x0F);
    cursor |= inb(crtc + 1);
    outb(crtc, vga_crtc_index);
    LOG("vga cursor: start line %02x end line %02x location %04x (row %u column %u), "
        "start address %04x\n",
        cursor_start, cursor_end, cursor, cursor / 80, cursor % 80, start);
    vga_indexed("graphics 00-08", 0x3CE, 9, vga_gc_index);
    /* input status 1 (0x3DA) resets the attribute flip-flop; its value follows the retrace
     * and is not printed. Indexes are written with bit 5 (PAS) set, so the screen stays on. */
    (void)inb(crtc + 6);
    LOG("vga attribute 00-14:");
    for (int i = 0; i < 0x15; i++) {
        outb(0x3C0, (uint8_t)(0x20 | i));
        LOG(" %02x", inb(0x3C1));
        (void)inb(crtc + 6);
    }
    outb(0x3C0, vga_attr_index);
    (void)inb(crtc + 6);
    LOG("\n");
    outb(0x3C7, 0);
    for (int i = 0; i < 256; i += 16) {
        LOG("vga dac %02x:", i);
        for (int j = 0; j < 16; j++) {
            uint8_t r = inb(0x3C9), g = inb(0x3C9), bl = inb(0x3C9);
            LOG(" %02x%02x%02x", r, g, bl);
        }
        LOG("\n");
    }
    outb(0x3C8, vga_dac_write_index);
}

/* ------------------------------------------------------------------ 9. the IRQ 8 vector */
static void irq8_vector(void) {
    LOG("step 9: IRQ 8 (EOI to pic1, IMR fb/fe, CMOS B |= PIE, STI, wait)\n");
    uint8_t imr1 = inb(0x21), imr2 = inb(0xA1);
    outb(0x20, 0x20); /* end the IRQ 0 of step 4, if it is in service */
    outb(0x21, 0xFB);
    outb(0xA1, 0xFE);
    uint8_t b = cmos(0x0B);
    (void)cmos(0x0C);
    outb(0x70, 0x8B);
    outb(0x71, b | 0x40);
    int vector = wait_irq(1000, 4);
    log_vector("rtc interrupt", vector);
    outb(0x70, 0x8B);
    outb(0x71, b);
    (void)cmos(0x0C);
    outb(0xA0, 0x20);
    outb(0x20, 0x20);
    outb(0xA1, imr2);
    outb(0x21, imr1);
}

void kmain(uint32_t magic, uint32_t info) {
    (void)info;
    plain_reads();
    pic_registers();
    pit_registers();
    irq0_vector();
    cmos_registers();
    kbd_registers();
    com_divisors();
    vga_registers();
    irq8_vector();
    serial_init();
    kprintf("probe-devices: the chips as the kernel finds them (magic %08x)\n", magic);
    for (uint32_t i = 0; i < loglen; i++) {
        if (logbuf[i] == '\n')
            serial_putc('\r');
        serial_putc(logbuf[i]);
    }
    kprintf("end\n");
    qemu_exit(0);
}
