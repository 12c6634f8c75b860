/* Long-mode descriptor tables for the 64-bit test kernels: IDT, TSS with IST stacks. */
#ifndef TF_CPU64_H
#define TF_CPU64_H
#include "types.h"

struct frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};

/* installs gates for vectors 0-19 and 0x80 (DPL 3) pointing at isr_stubs */
void idt_install(void);
/* sets the gate's IST index (1-7) */
void idt_set_ist(int vector, int ist);
/* TSS with RSP0 and IST1 stacks, loaded with ltr */
void tss_install(void);
/* the kernel's handler, called for every exception */
void isr_handler(struct frame *f);

static inline uint64_t read_cr2(void) {
    uint64_t v;
    __asm__ volatile("mov %%cr2, %0" : "=r"(v));
    return v;
}
static inline uint64_t read_cr3(void) {
    uint64_t v;
    __asm__ volatile("mov %%cr3, %0" : "=r"(v));
    return v;
}
static inline void write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline void invlpg(const void *p) { __asm__ volatile("invlpg (%0)" : : "r"(p) : "memory"); }
static inline void wrmsr(uint32_t msr, uint64_t v) {
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}
#endif
