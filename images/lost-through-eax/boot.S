/* lost-through-eax: lost-in-32bit's kernel with an entry written as 64-bit code, as the other
 * builds of the BareFlow family had it (the ELF is x86-64, so its entry "is" 64-bit).
 *
 * GRUB enters it in 32-bit protected mode with paging off, EAX = 0x36d76289 (the Multiboot2
 * magic) and EBX = the boot information. The entry below, decoded as 32-bit code, becomes:
 *
 *   48          dec eax                   REX.W of "movq %rax, %rdi": EAX = 0x36d76288
 *   89 c7       mov edi, eax
 *   48          dec eax                   REX.W of "movq %rbx, %rsi": EAX = 0x36d76287
 *   89 de       mov esi, ebx
 *   89 30       mov [eax], esi            "movl %esi, (%rax)": a write to 0x36d76287,
 *                                         just below the magic, where no memory is
 *   48 8d 25 .. lea esp, [..]            "leaq stack_top(%rip), %rsp": ESP = the offset alone
 *   e8 ..       call kernel_main          relative: still lands on kernel_main
 *
 * A PC drops the write (nothing answers at that physical address) and goes on, as QEMU does:
 * kernel_main then runs its 64-bit code as 32-bit instructions until it triple-faults, like
 * lost-in-32bit. */
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
    .code64
    .globl _start
_start:
    movq %rax, %rdi                 /* the magic, as kernel_main's first argument */
    movq %rbx, %rsi                 /* the boot information, its second */
    movl %esi, (%rax)               /* "keep the boot information in the boot record" */
    leaq stack_top(%rip), %rsp
    call kernel_main
1:  cli
    hlt
    jmp 1b

    .section .bss
    .align 16
stack_bottom:
    .skip 16384
stack_top:
