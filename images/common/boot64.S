/* A Multiboot2 entry that enters long mode, shared by the 64-bit test kernels.
 * Identity-maps the first 1 GiB with 2 MiB pages, loads a GDT with kernel and user segments
 * and a TSS slot, then calls kmain(magic, info) on a 16 KiB stack. */
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
    .code32
    .globl _start
_start:
    cli
    movl $boot_stack_top, %esp
    movl %eax, boot_magic
    movl %ebx, boot_info
    movl $boot_pdpt, %eax
    orl $0x3, %eax
    movl %eax, boot_pml4
    movl $boot_pd, %eax
    orl $0x3, %eax
    movl %eax, boot_pdpt
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, boot_pd(, %ecx, 8)
    incl %ecx
    cmpl $512, %ecx
    jne 1b
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x901, %eax                         /* LME, NXE, SCE */
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax                    /* PG, WP, PE */
    movl %eax, %cr0
    lgdt gdt_pointer32
    ljmp $0x08, $1f
    .code64
1:  movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq $boot_stack_top, %rsp
    movl boot_magic(%rip), %edi
    movl boot_info(%rip), %esi
    call kmain
2:  cli
    hlt
    jmp 2b

    .section .data
    .align 16
    .globl gdt
gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF                 /* 0x08 kernel code (64-bit) */
    .quad 0x00CF92000000FFFF                 /* 0x10 kernel data */
    .quad 0x00CFF2000000FFFF                 /* 0x18 user data (DPL 3) */
    .quad 0x00AFFA000000FFFF                 /* 0x20 user code (64-bit, DPL 3) */
    .quad 0, 0                               /* 0x28 TSS, filled in by tss_install() */
gdt_end:
gdt_pointer32:
    .short gdt_end - gdt - 1
    .long gdt

    .section .bss
    .align 4096
    .globl boot_pml4, boot_pdpt, boot_pd
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4096
boot_stack: .skip 16384
boot_stack_top:
boot_magic: .skip 4
boot_info:  .skip 4
