/* IDT and TSS setup for the 64-bit test kernels. */
#include "cpu64.h"

struct gate {
    uint16_t off_lo, selector;
    uint8_t ist, type_attr;
    uint16_t off_mid;
    uint32_t off_hi, zero;
} __attribute__((packed));

struct tss {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3, iomap_base;
} __attribute__((packed));

static struct gate idt[256];
static struct tss tss;
static uint8_t rsp0_stack[8192] __attribute__((aligned(16)));
static uint8_t ist1_stack[8192] __attribute__((aligned(16)));
extern uint64_t gdt[];

#define STUBS X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(10) X(11) X(12) X(13) X(14) \
    X(16) X(17) X(18) X(19) X(128) X(32) X(33) X(34) X(35) X(36) X(37) X(38) X(39) X(40) \
    X(41) X(42) X(43) X(44) X(45) X(46) X(47)
#define X(n) extern char isr_stub_##n[];
STUBS
#undef X

static void set_gate(int v, void *handler, int dpl) {
    uint64_t a = (uint64_t)handler;
    idt[v].off_lo = (uint16_t)a;
    idt[v].selector = 0x08;
    idt[v].ist = 0;
    idt[v].type_attr = (uint8_t)(0x8E | (dpl << 5)); /* present, 64-bit interrupt gate */
    idt[v].off_mid = (uint16_t)(a >> 16);
    idt[v].off_hi = (uint32_t)(a >> 32);
    idt[v].zero = 0;
}

void idt_install(void) {
#define X(n) set_gate(n, isr_stub_##n, n == 128 ? 3 : 0);
    STUBS
#undef X
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) p = {sizeof idt - 1, (uint64_t)idt};
    __asm__ volatile("lidt %0" : : "m"(p));
}

void idt_set_ist(int vector, int ist) { idt[vector].ist = (uint8_t)ist; }

void tss_install(void) {
    tss.rsp[0] = (uint64_t)(rsp0_stack + sizeof rsp0_stack);
    tss.ist[0] = (uint64_t)(ist1_stack + sizeof ist1_stack);
    tss.iomap_base = sizeof tss;
    uint64_t base = (uint64_t)&tss, limit = sizeof tss - 1;
    gdt[5] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89ULL << 40) |
             ((limit >> 16 & 0xF) << 48) | ((base >> 24 & 0xFF) << 56);
    gdt[6] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"(0x28));
}

void isr_dispatch(struct frame *f) { isr_handler(f); }
