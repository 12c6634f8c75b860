/* hello: a Multiboot2 kernel that enters long mode itself, as every x86-64 kernel must:
 * GRUB hands over 32-bit protected mode with paging off (CR0=0x11, EFER=0, no IDT).
 *
 * Page tables: the first 1 GiB identity mapped. The first 2 MiB use 4 KiB pages so the kernel
 * can be mapped by section: page 0 not present (null pointers fault), .text read-only and
 * executable, .rodata read-only, everything else writable; with EFER.NXE (when CPUID reports
 * NX) every page but .text is also no-execute. The rest of the 1 GiB is 2 MiB pages, writable
 * and no-execute. CR0.WP makes read-only pages binding on the kernel too. */
#define MB2_MAGIC 0xE85250D6
#define PTE_P 0x1
#define PTE_RW 0x2
#define PTE_PS 0x80                          /* in a PD entry: a 2 MiB page */
#define PTE_NX_HI 0x80000000                 /* bit 63, in the entry's high dword */
#define CPUID_LM (1 << 29)                   /* CPUID 0x80000001 EDX */
#define CPUID_NX (1 << 20)
#define EFER_LME 0x100
#define EFER_NXE 0x800

    .section .multiboot2, "a"
    .align 8
mb2_header:
    .long MB2_MAGIC
    .long 0                                  /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header
    .long -(MB2_MAGIC + 0 + (mb2_header_end - mb2_header))
    .align 8
    .short 1, 0                              /* information request (required) */
    .long 24
    .long 1, 2, 4, 6                         /* cmdline, loader name, basic meminfo, mmap */
    .align 8
    .short 0, 0                              /* end tag */
    .long 8
mb2_header_end:

    .section .text.boot, "ax"
    .code32
    .globl _start
_start:
    cli
    cld
    movl $boot_stack_top, %esp
    movl %eax, boot_magic
    movl %ebx, boot_info

    /* Long mode needs CPUID 0x80000001 EDX.LM; NX is used when EDX.NX says it exists. */
    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb no_long_mode
    movl $0x80000001, %eax
    cpuid
    testl $CPUID_LM, %edx
    jz no_long_mode
    xorl %esi, %esi                          /* ESI: high dword of non-executable entries */
    testl $CPUID_NX, %edx
    jz 1f
    movl $PTE_NX_HI, %esi
1:
    /* PML4[0] -> PDPT, PDPT[0] -> PD, PD[0] -> PT (the first 2 MiB). */
    movl $boot_pdpt + PTE_P + PTE_RW, boot_pml4
    movl $boot_pd + PTE_P + PTE_RW, boot_pdpt
    movl $boot_pt + PTE_P + PTE_RW, boot_pd

    /* PD[1..511]: 2 MiB pages at 2 MiB..1 GiB. */
    movl $1, %ecx
2:  movl %ecx, %eax
    shll $21, %eax
    orl $PTE_P + PTE_RW + PTE_PS, %eax
    movl %eax, boot_pd(, %ecx, 8)
    movl %esi, boot_pd + 4(, %ecx, 8)
    incl %ecx
    cmpl $512, %ecx
    jne 2b

    /* PT[1..511]: 4 KiB pages by kernel section (PT[0] stays zero: not present). */
    movl $1, %ecx
3:  movl %ecx, %eax
    shll $12, %eax                           /* identity: physical = virtual */
    movl $PTE_P + PTE_RW, %ebx
    movl %esi, %edx
    cmpl $__text_start, %eax
    jb 5f
    cmpl $__text_end, %eax
    jae 4f
    movl $PTE_P, %ebx                        /* .text: read-only, executable */
    xorl %edx, %edx
    jmp 5f
4:  cmpl $__rodata_end, %eax
    jae 5f
    movl $PTE_P, %ebx                        /* .rodata: read-only */
5:  orl %ebx, %eax
    movl %eax, boot_pt(, %ecx, 8)
    movl %edx, boot_pt + 4(, %ecx, 8)
    incl %ecx
    cmpl $512, %ecx
    jne 3b

    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax                          /* CR4.PAE */
    movl %eax, %cr4
    movl $0xC0000080, %ecx                   /* IA32_EFER */
    rdmsr
    orl $EFER_LME, %eax
    testl %esi, %esi
    jz 6f
    orl $EFER_NXE, %eax                      /* before any NX bit is used, or it is reserved */
6:  wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax                    /* CR0.PG | CR0.WP | CR0.PE: long mode active */
    movl %eax, %cr0
    lgdt gdt64_pointer
    ljmp $0x08, $long_mode_entry

/* No long mode: say so on the screen (there is no serial driver yet) and stop. */
no_long_mode:
    movl $no_long_mode_msg, %esi
    movl $0xB8000, %edi
    movb $0x4F, %ah                          /* white on red */
7:  lodsb
    testb %al, %al
    jz 8f
    stosw
    jmp 7b
8:  cli
    hlt
    jmp 8b

    .code64
long_mode_entry:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq $boot_stack_top, %rsp
    movl boot_magic(%rip), %edi
    movl boot_info(%rip), %esi
    call kmain                               /* kmain(magic, info) */
9:  cli
    hlt
    jmp 9b

    .section .rodata
no_long_mode_msg:
    .asciz "hello: this CPU has no long mode (CPUID 0x80000001 EDX.LM=0)"
    .align 8
/* The accessed bits are preset: the GDT sits in a read-only page, and a CPU that had to set
 * the bit when loading a segment would write to it and page-fault. */
gdt64:
    .quad 0
    .quad 0x00AF9B000000FFFF                 /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00CF93000000FFFF                 /* 0x10: data */
gdt64_end:
gdt64_pointer:
    .short gdt64_end - gdt64 - 1
    .long gdt64

    .section .bss
    .align 4096
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4096
boot_pt:    .skip 4096
boot_stack:
    .skip 16384
boot_stack_top:
boot_magic: .skip 4
boot_info:  .skip 4
