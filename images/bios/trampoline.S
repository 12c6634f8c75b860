/* The real-mode trampoline of images/bios, kept in .data and copied to TRAMP (0x8000) by kmain:
 * every address in it is T(symbol), the symbol's address in the copy.
 *
 * bios_call (64-bit, called from C) saves the long-mode state, loads the trampoline's own GDT,
 * drops to compatibility mode through a 16-bit code segment, turns paging off (which leaves
 * long mode: EFER.LMA=0), clears CR0.PE, far-jumps to real mode and loads the real-mode IVT.
 * There it loads the registers from bios_in, calls the BIOS the way a kernel's trampoline does
 * (INT n, or PUSHF + a far call through the IVT entry when bios_in.how is 1), stores every
 * register and FLAGS in bios_out, and returns: CR0.PE, a 16-bit protected-mode segment, CR0.PG
 * (EFER.LME is still set, so long mode comes back), a far jump to 64-bit code, the kernel's
 * GDT and IDT, its stack. Interrupts stay disabled all the way. */
#define TRAMP 0x8000
#define TRAMP_STACK 0x7C00
#define T(symbol) ((symbol) - tramp_start + TRAMP)

    .section .data
    .align 16
    .globl tramp_start, tramp_end, bios_call
tramp_start:
    .code64
bios_call:
    pushq %rbx
    pushq %rbp
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, T(saved_rsp)
    sgdt T(saved_gdt)
    sidt T(saved_idt)
    /* the vector's INT instruction and its IVT entry, for the two ways of calling */
    movzbl T(bios_in_vector), %eax
    movb %al, T(int_insn) + 1
    movl (,%rax,4), %eax
    movl %eax, T(far_target)
    lgdt T(tramp_gdt_desc)
    pushq $0x18
    pushq $T(pm16)
    lretq

    .code16
pm16:
    movw $0x20, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl %cr0, %eax
    andl $0x7FFFFFFF, %eax                 /* paging off: out of long mode */
    movl %eax, %cr0
    andl $0xFFFFFFFE, %eax                 /* protection off: real mode */
    movl %eax, %cr0
    ljmp $0x0000, $T(rm)
rm:
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %ss
    movw $TRAMP_STACK, %sp
    lidt T(rm_idt_desc)
    movw T(bios_in_es), %ax
    movw %ax, %es
    movl T(bios_in_eax), %eax
    movl T(bios_in_ebx), %ebx
    movl T(bios_in_ecx), %ecx
    movl T(bios_in_edx), %edx
    movl T(bios_in_esi), %esi
    movl T(bios_in_edi), %edi
    movl T(bios_in_ebp), %ebp
    pushw T(bios_in_flags)
    cmpb $1, T(bios_in_how)
    movw T(bios_in_ds), %ds                   /* (mov leaves the flags of the cmp) */
    je 1f
    popfw
int_insn:
    int $0                                 /* the vector byte is patched above */
    jmp 2f
1:  popfw
    pushfw
    lcallw *%cs:T(far_target)
2:  pushfw
    popw %cs:T(bios_out_flags)
    movw %ds, %cs:T(bios_out_ds)
    movw %es, %cs:T(bios_out_es)
    movl %eax, %cs:T(bios_out_eax)
    movl %ebx, %cs:T(bios_out_ebx)
    movl %ecx, %cs:T(bios_out_ecx)
    movl %edx, %cs:T(bios_out_edx)
    movl %esi, %cs:T(bios_out_esi)
    movl %edi, %cs:T(bios_out_edi)
    movl %ebp, %cs:T(bios_out_ebp)
    cli
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl T(tramp_gdt_desc)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmp $0x18, $T(pm16_back)
pm16_back:
    movw $0x20, %ax
    movw %ax, %ds
    movw %ax, %ss
    movl %cr0, %eax
    orl $0x80000000, %eax                  /* paging on with EFER.LME: long mode again */
    movl %eax, %cr0
    ljmpl $0x08, $T(lm64)

    .code64
lm64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    lgdt T(saved_gdt)
    lidt T(saved_idt)
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq T(saved_rsp), %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    ret

    .align 16
tramp_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF               /* 0x08 64-bit code */
    .quad 0x00CF92000000FFFF               /* 0x10 flat data */
    .quad 0x00009A000000FFFF               /* 0x18 16-bit code, base 0 */
    .quad 0x000092000000FFFF               /* 0x20 16-bit data, base 0 */
tramp_gdt_end:
tramp_gdt_desc:                            /* 10 bytes for LGDT in long mode, 6 in real mode */
    .word tramp_gdt_end - tramp_gdt - 1
    .quad T(tramp_gdt)
rm_idt_desc:
    .word 0x3FF
    .long 0
    .align 8
saved_rsp: .quad 0
saved_gdt: .word 0
    .quad 0
saved_idt: .word 0
    .quad 0
far_target: .long 0

/* struct bios_regs (probe.c) */
    .align 8
    .globl bios_in, bios_out
bios_in:
bios_in_eax: .long 0
bios_in_ebx: .long 0
bios_in_ecx: .long 0
bios_in_edx: .long 0
bios_in_esi: .long 0
bios_in_edi: .long 0
bios_in_ebp: .long 0
bios_in_ds: .word 0
bios_in_es: .word 0
bios_in_flags: .word 0
bios_in_vector: .byte 0
bios_in_how: .byte 0
bios_out:
bios_out_eax: .long 0
bios_out_ebx: .long 0
bios_out_ecx: .long 0
bios_out_edx: .long 0
bios_out_esi: .long 0
bios_out_edi: .long 0
bios_out_ebp: .long 0
bios_out_ds: .word 0
bios_out_es: .word 0
bios_out_flags: .word 0
    .word 0
tramp_end:
