/* The CPU's operating mode, read without CPUID: CR0, CR4, EFER and the CS descriptor.
 * Works in 32-bit protected mode and in long mode (register widths follow uintptr_t). */
#ifndef TF_CPUMODE_H
#define TF_CPUMODE_H
#include "types.h"

#define CR0_PE (1u << 0)
#define CR0_WP (1u << 16)
#define CR0_PG (1u << 31)
#define CR4_PAE (1u << 5)
#define MSR_EFER 0xC0000080
#define EFER_LME (1u << 8)
#define EFER_LMA (1u << 10)
#define EFER_NXE (1u << 11)
#define DESC_L (1ULL << 53)  /* code segment: 64-bit */
#define DESC_DB (1ULL << 54) /* code segment: 32-bit default operand size */

static inline uintptr_t read_cr0(void) {
    uintptr_t v;
    __asm__ volatile("mov %%cr0, %0" : "=r"(v));
    return v;
}

static inline uintptr_t read_cr4(void) {
    uintptr_t v;
    __asm__ volatile("mov %%cr4, %0" : "=r"(v));
    return v;
}

struct table_register {
    uint16_t limit;
    uintptr_t base;
} __attribute__((packed));

/* The GDT descriptor CS was loaded from (0 when CS points past the GDT limit or at the LDT). */
static inline uint64_t code_segment_descriptor(void) {
    struct table_register gdtr;
    uint16_t cs;
    __asm__ volatile("sgdt %0" : "=m"(gdtr));
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    if ((cs & 4) || (uint32_t)(cs | 7) > gdtr.limit)
        return 0;
    return ((const uint64_t *)gdtr.base)[cs >> 3];
}
#endif
