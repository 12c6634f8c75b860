#ifndef BAREFLOW_KERNEL_H
#define BAREFLOW_KERNEL_H
typedef unsigned long size_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long uint64_t;

void serial_init(void);
void serial_putchar(char c);
void serial_puts(const char *s);
void serial_put_dec(uint64_t v);
void serial_put_hex(uint64_t v);

void *malloc(size_t size);
void free(void *ptr);
size_t malloc_get_heap_size(void);

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) {
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
#endif
