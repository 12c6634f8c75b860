/* The entry of the 32-bit probes (probe-bios, probe-devices, probe-tables): a Multiboot2 header
 * and an entry in GRUB's 32-bit protected mode, paging off (physical = linear). It touches no
 * device: it sets a stack and calls kmain(magic, info), which looks before it changes anything. */
#define MB2_MAGIC 0xE85250D6

    .section .multiboot2, "a"
    .align 8
mb2_header:
    .long MB2_MAGIC, 0, mb2_header_end - mb2_header
    .long -(MB2_MAGIC + (mb2_header_end - mb2_header))
    .align 8
    .short 0, 0
    .long 8
mb2_header_end:

    .section .text.boot, "ax"
    .globl _start
_start:
    cli
    movl $stack_top, %esp
    pushl %ebx
    pushl %eax
    call kmain
1:  cli
    hlt
    jmp 1b

    .section .bss
    .align 16
    .skip 16384
stack_top:
