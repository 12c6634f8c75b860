/* VGA text mode 3: 80x25 cells at 0xB8000, cursor through the CRTC (ports 0x3D4/0x3D5). */
#include "vga.h"
#include "io.h"

#define VGA ((volatile uint16_t *)0xB8000)

void vga_clear(uint8_t attr) {
    for (int i = 0; i < 80 * 25; i++)
        VGA[i] = (uint16_t)(attr << 8 | ' ');
}

void vga_write(int row, int col, const char *s, uint8_t attr) {
    for (; *s && col < 80; s++, col++)
        VGA[row * 80 + col] = (uint16_t)(attr << 8 | (uint8_t)*s);
}

void vga_set_cursor(int row, int col) {
    uint16_t pos = (uint16_t)(row * 80 + col);
    outb(0x3D4, 0x0F);
    outb(0x3D5, (uint8_t)(pos & 0xFF));
    outb(0x3D4, 0x0E);
    outb(0x3D5, (uint8_t)(pos >> 8));
}
