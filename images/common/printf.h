#ifndef TF_PRINTF_H
#define TF_PRINTF_H
#include "types.h"
/* printf to COM1: %s %c %d %u %x %lx %lu %p %% (width and zero padding: %08x). */
void kprintf(const char *fmt, ...);
/* the same into a buffer (always NUL-terminated) */
int ksnprintf(char *buf, size_t size, const char *fmt, ...);
#endif
