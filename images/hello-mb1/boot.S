/* hello-mb1: a Multiboot (version 1) kernel that stays in 32-bit protected mode.
 * The loader enters here with EAX = 0x2BADB002, EBX = the boot information, paging off. */
#define MB1_MAGIC 0x1BADB002
#define MB1_FLAGS 0x00000003                 /* page-align modules, memory information */

    .section .multiboot, "a"
    .align 4
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long -(MB1_MAGIC + MB1_FLAGS)

    .section .text.boot, "ax"
    .globl _start
_start:
    cli
    cld
    movl $boot_stack_top, %esp
    pushl %ebx                               /* kmain(magic, info) */
    pushl %eax
    call kmain
1:  cli
    hlt
    jmp 1b

    .section .bss
    .align 16
boot_stack:
    .skip 16384
boot_stack_top:
