/* x86 port I/O, the debug-exit port and MSR access. */
#ifndef TF_IO_H
#define TF_IO_H
#include "types.h"

static inline void outb(uint16_t port, uint8_t value) {
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline uint8_t inb(uint16_t port) {
    uint8_t value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
    return value;
}

static inline uint64_t rdmsr(uint32_t msr) {
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

/* QEMU isa-debug-exit (port 0xF4): the emulator exits with status (code << 1) | 1. */
static inline __attribute__((noreturn)) void qemu_exit(uint8_t code) {
    outb(0xF4, code);
    for (;;)
        __asm__ volatile("cli; hlt");
}
#endif
