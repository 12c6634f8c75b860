/* Report lines to COM1 and to VGA text mode 3 (80x25 at 0xB8000). */
#include "console.h"
#include "vga.h"

#define ROWS 25
#define COLS 80
#define CELLS ((volatile uint16_t *)0xB8000)

char console_buf[CONSOLE_LINE_MAX];
static int row;
static int to_serial;
static uint8_t blank_attr;

void console_init(uint8_t attr, int serial) {
    blank_attr = attr;
    to_serial = serial;
    row = 0;
    vga_clear(attr);
}

/* Move every row up by one and blank the last: the screen keeps the newest lines. */
static void scroll(void) {
    for (int i = 0; i < (ROWS - 1) * COLS; i++)
        CELLS[i] = CELLS[i + COLS];
    for (int i = (ROWS - 1) * COLS; i < ROWS * COLS; i++)
        CELLS[i] = (uint16_t)(blank_attr << 8 | ' ');
    row = ROWS - 1;
}

void console_line(uint8_t attr, const char *text) {
    if (to_serial)
        kprintf("%s\n", text);
    if (row == ROWS)
        scroll();
    vga_write(row++, 0, text, attr);
}

void console_finish(void) {
    if (row == ROWS)
        scroll();
    vga_set_cursor(row, 0);
}
