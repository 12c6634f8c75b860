/* lost-in-32bit: a 64-bit Multiboot2 kernel whose boot code never enters long mode.
 *
 * This is how the BareFlow unikernel booted: GRUB loads the ELF64 image and jumps here in
 * 32-bit protected mode with paging off. The code below zeroes BSS, sets a stack and calls the
 * C kernel, which was compiled for x86-64. Nothing builds page tables or sets EFER.LME and
 * CR0.PG, and nothing far-jumps to a 64-bit code segment: the 64-bit machine code of
 * kernel_main is decoded as 32-bit instructions. */
#define MB2_MAGIC 0xE85250D6

    .section .multiboot2, "a"
    .align 8
mb2_header:
    .long MB2_MAGIC
    .long 0
    .long mb2_header_end - mb2_header
    .long -(MB2_MAGIC + (mb2_header_end - mb2_header))
    .align 8
    .short 0, 0
    .long 8
mb2_header_end:

    .section .text.boot, "ax"
    .code32
    .globl _start
_start:
    cli
    movl $stack_top, %esp
    /* Zero BSS by hand (heap, free list): the loader already did, but BareFlow did not trust it. */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    cld
    rep stosb
    call kernel_main
1:  cli
    hlt
    jmp 1b

    .section .bss
    .align 16
stack_bottom:
    .skip 16384
stack_top:
