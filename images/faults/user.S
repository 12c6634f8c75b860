/* Ring 3 code for the faults image, and the SYSCALL entry point. */
    .code64
    .section .text
    .globl user_entry
user_entry:
    movq $7, %rdi
    movq $42, %rax
    syscall                         /* -> syscall_entry in ring 0, back with SYSRETQ */
    movq %rax, %rdi                 /* 1007 */
    movq $1, %rax
    int $0x80                       /* a DPL 3 gate: rax = rdi * 2 */
    movq $0xE, %rax
    int $0x80                       /* exit back to the kernel */
1:  jmp 1b

    .globl syscall_entry
syscall_entry:
    /* RCX = user RIP, R11 = user RFLAGS; the stack is still the user's */
    pushq %rcx
    pushq %r11
    movq %rdi, %rsi
    movq %rax, %rdi
    call syscall_handler
    popq %r11
    popq %rcx
    sysretq
