#ifndef TF_VGA_H
#define TF_VGA_H
#include "types.h"
void vga_clear(uint8_t attr);
void vga_write(int row, int col, const char *s, uint8_t attr);
void vga_set_cursor(int row, int col);
#endif
