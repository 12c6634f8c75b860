/* probe-mbi: a Multiboot2 kernel that asks for every boot information tag and prints what the
 * loader gave it. It stays in 32-bit protected mode without paging (physical = linear), so it
 * can read the boot information wherever it lies below 4 GiB.
 *
 * The entry state is saved before anything runs: the general registers, EFLAGS, the segment
 * selectors, GDTR and IDTR, CR0 and CR4. */
#define MB2_MAGIC 0xE85250D6

    .section .multiboot2, "a"
    .align 8
mb2_header:
    .long MB2_MAGIC
    .long 0                                  /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header
    .long -(MB2_MAGIC + 0 + (mb2_header_end - mb2_header))
    .align 8
request_required:                            /* information request (required): every type */
    .short 1, 0                              /* GRUB 2.06 accepts in a required request */
    .long request_required_end - request_required
    .long 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21
request_required_end:
    .align 8
request_optional:                            /* information request (optional): the rest */
    .short 1, 1
    .long request_optional_end - request_optional
    .long 13, 22
request_optional_end:
    .align 8
    .short 6, 0                              /* module alignment */
    .long 8
    .align 8
    .short 0, 0                              /* end tag */
    .long 8
mb2_header_end:

    .section .text.boot, "ax"
    .globl _start
_start:
    movl %eax, entry_regs + 0
    movl %ebx, entry_regs + 4
    movl %ecx, entry_regs + 8
    movl %edx, entry_regs + 12
    movl %esi, entry_regs + 16
    movl %edi, entry_regs + 20
    movl %ebp, entry_regs + 24
    movl %esp, entry_regs + 28
    movl $entry_regs + 36, %esp              /* a tiny stack of our own: EFLAGS, by push */
    pushfl
    popl entry_regs + 32
    movw %cs, entry_segs + 0
    movw %ds, entry_segs + 2
    movw %es, entry_segs + 4
    movw %fs, entry_segs + 6
    movw %gs, entry_segs + 8
    movw %ss, entry_segs + 10
    sgdt entry_gdtr
    sidt entry_idtr
    movl %cr0, %eax
    movl %eax, entry_cr + 0
    movl %cr4, %eax
    movl %eax, entry_cr + 4
    cli
    cld
    movl $boot_stack_top, %esp
    call kmain
1:  cli
    hlt
    jmp 1b

    .section .data
    .align 4
    .globl entry_regs, entry_segs, entry_gdtr, entry_idtr, entry_cr
entry_regs: .skip 40                         /* eax ebx ecx edx esi edi ebp esp eflags, spare */
entry_segs: .skip 12                         /* cs ds es fs gs ss */
entry_gdtr: .skip 8                          /* limit (16 bits), base (32 bits) */
entry_idtr: .skip 8
entry_cr:   .skip 8                          /* cr0 cr4 */

    .section .bss
    .align 16
boot_stack:
    .skip 16384
boot_stack_top:
