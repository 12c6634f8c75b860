/* COM1 driver: the OSDev initialisation sequence with a loopback self-test, LSR polling. */
#include "serial.h"
#include "io.h"

#define COM1 0x3F8

/* Returns 1 when the chip passed the loopback test, 0 when it is missing or broken. */
int serial_init(void) {
    outb(COM1 + 1, 0x00); /* IER: no interrupts */
    outb(COM1 + 3, 0x80); /* LCR: DLAB on */
    outb(COM1 + 0, 0x03); /* DLL: divisor 3 = 38400 baud */
    outb(COM1 + 1, 0x00); /* DLM */
    outb(COM1 + 3, 0x03); /* LCR: 8 data bits, no parity, 1 stop bit, DLAB off */
    outb(COM1 + 2, 0xC7); /* FCR: enable and clear FIFOs, 14-byte trigger */
    outb(COM1 + 4, 0x0B); /* MCR: DTR, RTS, OUT2 */
    outb(COM1 + 4, 0x1E); /* MCR: loopback, to test the chip */
    outb(COM1 + 0, 0xAE);
    if (inb(COM1 + 0) != 0xAE)
        return 0;
    outb(COM1 + 4, 0x0F); /* MCR: normal operation, DTR, RTS, OUT1, OUT2 */
    return 1;
}

void serial_putc(char c) {
    while (!(inb(COM1 + 5) & 0x20)) /* LSR.THRE: wait until the holding register is free */
        ;
    outb(COM1, (uint8_t)c);
}

void serial_puts(const char *s) {
    while (*s) {
        if (*s == '\n')
            serial_putc('\r');
        serial_putc(*s++);
    }
}
