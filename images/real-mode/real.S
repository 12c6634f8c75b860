/* real-mode: from GRUB's 32-bit protected mode into a 16-bit protected-mode code segment and
 * back (a 32-bit far call answered by a 16-bit LRETL), then down to real mode through a
 * trampoline at 0x8000 run with CS=0x0800 (a segment base that is not 0), where interrupts and
 * exceptions go through the IVT: INT n, INT3, #DE, #UD, a fault inside a handler, #GP for a
 * vector beyond IDTR.limit, and the PIT's IRQ0 through the 8259. Every handler records what
 * the CPU gave it (the frame it pushed, FLAGS inside the handler) in RESULTS; the C side
 * prints them after the trampoline has come back to 32-bit protected mode.
 * real_mode_triple_fault() goes down again and takes an interrupt with IDTR.limit 0. */
#define TRAMP 0x8000
#define SEG 0x0800                /* TRAMP >> 4: the trampoline's real-mode code segment */
#define RESULTS 0x7E00            /* 256 bytes the C side reads (struct results in probe.c) */
#define STACK 0x7C00
#define AT(x) ((x) - tramp)       /* an offset in the trampoline, for CS=SEG */
#define ABS(x) (TRAMP + (x) - tramp)  /* its linear address, for DS=0 */

    .section .text
    .code32
    .globl run_real_mode, real_mode_triple_fault
real_mode_triple_fault:
    movl $1, triple
run_real_mode:
    pushal
    movl %esp, saved_esp
    cld
    movl $tramp, %esi
    movl $TRAMP, %edi
    movl $(tramp_end - tramp), %ecx
    rep movsb
    lgdt gdt_desc
    ljmp $0x18, $1f               /* our own flat 32-bit code segment */
1:  movw $0x20, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    /* a 32-bit far call into 16-bit protected-mode code, which returns with LRETL */
    movl $0, %eax
    lcall $0x08, $ABS(pm16)
    movl %eax, RESULTS + 0
    movl triple, %eax
    movw %ax, RESULTS + 4
    ljmp $0x08, $ABS(down)        /* 16-bit protected mode, then real mode */
back32:
    movw $0x20, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl saved_esp, %esp
    popal
    ret

    .section .data
    .align 8
gdt:
    .quad 0
    .quad 0x00009A000000FFFF      /* 0x08: 16-bit code, base 0, limit 64 KiB */
    .quad 0x000092000000FFFF      /* 0x10: 16-bit data, base 0 */
    .quad 0x00CF9A000000FFFF      /* 0x18: flat 32-bit code */
    .quad 0x00CF92000000FFFF      /* 0x20: flat 32-bit data */
gdt_end:
gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt
saved_esp:
    .long 0
triple:
    .long 0

    .section .text
tramp:
    .code16
pm16:                             /* CS=0x08: 16-bit protected mode */
    movl $0x16, %eax
    lretl                         /* pops a 32-bit EIP and CS */
down:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %ss
    movl %cr0, %eax
    andl $0xFFFFFFFE, %eax
    movl %eax, %cr0
    ljmp $SEG, $AT(real)
real:
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw $STACK, %sp
    lidt ABS(ivt_full)
    movw $AT(h_int80), 0x80 * 4
    movw $SEG, 0x80 * 4 + 2
    movw $AT(h_int81), 0x81 * 4
    movw $SEG, 0x81 * 4 + 2
    movw $AT(h_de), 0 * 4
    movw $SEG, 0 * 4 + 2
    movw $AT(h_bp), 3 * 4
    movw $SEG, 3 * 4 + 2
    movw $AT(h_ud), 6 * 4
    movw $SEG, 6 * 4 + 2
    movw $AT(h_gp), 13 * 4
    movw $SEG, 13 * 4 + 2
    movw $AT(h_irq0), 0x08 * 4
    movw $SEG, 0x08 * 4 + 2
    cmpw $0, RESULTS + 4
    jne triple_fault

    /* INT 0x80 with IF=1 and CF=1: the handler sees the frame and IF=0, AX comes back + 1 */
    movw $0x1234, %ax
    stc
    pushfw
    popw %bx
    orw $0x0200, %bx              /* IF=1 for the frame, with the 8259 masked (below) */
    movb $0xFF, %al
    outb %al, $0x21
    movw $0x1234, %ax
    pushw %bx
    popfw
int80:
    int $0x80
    cli
    movw %ax, RESULTS + 6
    pushfw
    popw RESULTS + 8              /* FLAGS after IRET: the caller's again */
    movw $AT(int80), RESULTS + 10

    /* INT3: a trap, the frame holds the next IP */
bp:
    int3
    movw $AT(bp), RESULTS + 12

    /* #DE: a fault, the frame holds the DIV itself; the handler skips it */
    movw $100, %ax
    xorb %cl, %cl
de:
    divb %cl
    movw $AT(de), RESULTS + 14

    /* #UD from UD2, skipped by the handler */
ud:
    ud2
    movw $AT(ud), RESULTS + 16

    /* a fault inside a handler: INT 0x81's handler divides by zero */
    int $0x81
    movw %dx, RESULTS + 18        /* 0x81 when the #DE inside it was handled and it returned */

    /* a vector beyond IDTR.limit: #GP (vector 13 is still inside), no error code pushed */
    lidt ABS(ivt_short)
    movw %sp, RESULTS + 20
gp:
    int $0x80
    lidt ABS(ivt_full)
    movw $AT(gp), RESULTS + 22

    /* IRQ0 from the PIT through the 8259 (vector 8 as SeaBIOS programs it), into HLT */
    movb $0x11, %al               /* ICW1: edge, cascade, ICW4 */
    outb %al, $0x20
    movb $0x08, %al               /* ICW2: vectors 0x08-0x0F */
    outb %al, $0x21
    movb $0x04, %al
    outb %al, $0x21
    movb $0x01, %al
    outb %al, $0x21
    movb $0xFE, %al               /* only IRQ0 */
    outb %al, $0x21
    movb $0x30, %al               /* PIT channel 0: mode 0, one shot, lobyte/hibyte */
    outb %al, $0x43
    movb $0x00, %al
    outb %al, $0x40
    movb $0x10, %al               /* 4096 ticks, about 3.4 ms */
    outb %al, $0x40
    movw $0, RESULTS + 24
    sti
irq_hlt:
    hlt
    cli
    movb $0xFF, %al
    outb %al, $0x21
    movw $AT(irq_hlt), RESULTS + 30

    /* back to 32-bit protected mode */
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    .byte 0x66, 0xEA              /* ljmpl $0x18, $back32 */
    .long back32
    .word 0x18

triple_fault:                     /* no vector table at all: INT -> #GP -> #DF -> shutdown */
    lidt ABS(ivt_none)
    int $0x80
    hlt

h_int80:
    pushfw
    popw RESULTS + 32             /* FLAGS inside the handler: IF=0 */
    movw %sp, %bp
    movw 0(%bp), %bx
    movw %bx, RESULTS + 34        /* IP */
    movw 2(%bp), %bx
    movw %bx, RESULTS + 36        /* CS */
    movw 4(%bp), %bx
    movw %bx, RESULTS + 38        /* FLAGS of the interrupted code */
    incw %ax
    iret
h_bp:
    movw %sp, %bp
    movw 0(%bp), %bx
    movw %bx, RESULTS + 40
    iret
h_de:
    movw %sp, %bp
    cmpw $0, RESULTS + 44
    jne 1f
    movw 0(%bp), %bx
    movw %bx, RESULTS + 42        /* the first one's IP */
1:  addw $2, 0(%bp)               /* DIV CL is two bytes */
    incw RESULTS + 44             /* how many #DE */
    iret
h_ud:
    movw %sp, %bp
    movw 0(%bp), %bx
    movw %bx, RESULTS + 46
    addw $2, 0(%bp)
    iret
h_int81:
    xorw %dx, %dx
    movw $1, %ax
    xorb %cl, %cl
    divb %cl                      /* #DE inside the handler */
    movw $0x81, %dx
    iret
h_gp:
    movw %sp, %bp
    movw %sp, RESULTS + 48        /* three words below the SP at the INT: nothing more */
    movw 0(%bp), %bx
    movw %bx, RESULTS + 50        /* the INT instruction: the fault is reported there */
    addw $2, 0(%bp)
    iret
h_irq0:
    pushw %ax
    incw RESULTS + 24
    movw %sp, %bp
    movw 2(%bp), %ax
    movw %ax, RESULTS + 26        /* IP: after the HLT */
    movw 6(%bp), %ax
    movw %ax, RESULTS + 28        /* FLAGS: IF=1 */
    movb $0x20, %al
    outb %al, $0x20               /* EOI */
    popw %ax
    iret

ivt_full:
    .word 0x3FF
    .long 0
ivt_short:
    .word 13 * 4 + 3              /* vectors 0-13 */
    .long 0
ivt_none:
    .word 0
    .long 0
tramp_end:
    .code32
