#ifndef TF_SERIAL_H
#define TF_SERIAL_H
#include "types.h"
int serial_init(void);
void serial_putc(char c);
void serial_puts(const char *s);
#endif
