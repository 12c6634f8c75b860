/* probe-mbi1: a Multiboot (version 1) kernel that asks for memory information and EGA text
 * mode, and prints the whole information structure the loader gave it. 32-bit protected mode,
 * no paging (physical = linear).
 *
 * The entry state is saved before anything runs: the general registers, EFLAGS, the segment
 * selectors, GDTR and IDTR, CR0 and CR4. */
#define MB1_MAGIC 0x1BADB002
#define MB1_FLAGS 0x00000007                 /* page-align modules, memory info, video mode */

    .section .multiboot, "a"
    .align 4
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long -(MB1_MAGIC + MB1_FLAGS)
    .long 0, 0, 0, 0, 0                      /* a.out kludge fields (flag 16 clear: unused) */
    .long 1                                  /* mode_type 1: EGA text */
    .long 80, 25, 0                          /* width, height, depth */

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
