/* The probe's first instructions: record CR0, CR4, EFER and EFLAGS exactly as the boot loader
 * left them, before the shared long-mode entry (common/boot64.S, _start) changes them. */
    .section .text.boot, "ax"
    .code32
    .globl probe_entry
probe_entry:
    movl $entry_stack_top, %esp              /* mov changes no flags */
    pushfl
    popl entry_eflags
    movl %eax, %esi                          /* the Multiboot2 magic, for _start */
    movl %cr0, %eax
    movl %eax, entry_cr0
    movl %cr4, %eax
    movl %eax, entry_cr4
    movl $0xC0000080, %ecx                   /* IA32_EFER */
    rdmsr
    movl %eax, entry_efer
    movl %edx, entry_efer + 4
    movl %esi, %eax
    jmp _start

    .section .data
    .align 8
    .globl entry_efer, entry_cr0, entry_cr4, entry_eflags
entry_efer:   .quad 0
entry_cr0:    .long 0
entry_cr4:    .long 0
entry_eflags: .long 0

    .section .bss
    .align 16
entry_stack:  .skip 64
entry_stack_top:
