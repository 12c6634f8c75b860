/* hello: a Multiboot2 kernel that enters long mode itself, as every x86-64 kernel must:
 * GRUB hands over 32-bit protected mode with paging off. */
#define MB2_MAGIC 0xE85250D6

    .section .multiboot2, "a"
    .align 8
mb2_header:
    .long MB2_MAGIC
    .long 0                                  /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header
    .long -(MB2_MAGIC + 0 + (mb2_header_end - mb2_header))
    .align 8
    .short 1, 0                              /* information request (required) */
    .long 20
    .long 1, 2, 6                            /* command line, boot loader name, memory map */
    .align 8
    .short 0, 0                              /* end tag */
    .long 8
mb2_header_end:

    .section .text.boot, "ax"
    .code32
    .globl _start
_start:
    cli
    movl $boot_stack_top, %esp
    movl %eax, boot_magic
    movl %ebx, boot_info

    /* Identity-map the first 1 GiB with 2 MiB pages: PML4[0] -> PDPT[0] -> PD. */
    movl $pdpt, %eax
    orl $0x3, %eax                           /* present, writable */
    movl %eax, pml4
    movl $pd, %eax
    orl $0x3, %eax
    movl %eax, pdpt
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax                          /* present, writable, 2 MiB page */
    movl %eax, pd(, %ecx, 8)
    incl %ecx
    cmpl $512, %ecx
    jne 1b

    movl $pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax                          /* CR4.PAE */
    movl %eax, %cr4
    movl $0xC0000080, %ecx                   /* IA32_EFER */
    rdmsr
    orl $0x100, %eax                         /* EFER.LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax                    /* CR0.PG | CR0.PE */
    movl %eax, %cr0
    lgdt gdt64_pointer
    ljmp $0x08, $long_mode_entry

    .code64
long_mode_entry:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movq $boot_stack_top, %rsp
    movl boot_magic(%rip), %edi
    movl boot_info(%rip), %esi
    call kmain
2:  cli
    hlt
    jmp 2b

    .section .rodata
    .align 8
gdt64:
    .quad 0
    .quad 0x00AF9A000000FFFF                 /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00CF92000000FFFF                 /* 0x10: data */
gdt64_end:
gdt64_pointer:
    .short gdt64_end - gdt64 - 1
    .long gdt64

    .section .bss
    .align 4096
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4096
boot_stack:
    .skip 16384
boot_stack_top:
boot_magic: .skip 4
boot_info:  .skip 4
