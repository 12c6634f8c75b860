/* BareFlow-style print helpers, on top of the UART driver in serial.c. */
#include "kernel.h"

void serial_puts(const char *s) {
    for (size_t i = 0; s[i] != '\0'; i++)
        serial_putchar(s[i]);
}

void serial_put_dec(uint64_t v) {
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    serial_puts(&buf[i]);
}

void serial_put_hex(uint64_t v) {
    static const char digits[] = "0123456789abcdef";
    char buf[19];
    buf[18] = 0;
    for (int i = 17; i >= 2; i--) {
        buf[i] = digits[v & 0xF];
        v >>= 4;
    }
    buf[0] = '0';
    buf[1] = 'x';
    serial_puts(buf);
}
