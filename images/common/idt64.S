/* Exception entry stubs: each pushes an error code (0 when the CPU pushes none) and its vector,
 * saves the general registers and calls isr_dispatch(struct frame *). */
    .code64
    .section .text

.macro STUB vector, has_error
    .globl isr_stub_\vector
isr_stub_\vector:
    .if \has_error == 0
    pushq $0
    .endif
    pushq $\vector
    jmp isr_common
.endm

STUB 0, 0
STUB 1, 0
STUB 2, 0
STUB 3, 0
STUB 4, 0
STUB 5, 0
STUB 6, 0
STUB 7, 0
STUB 8, 1
STUB 10, 1
STUB 11, 1
STUB 12, 1
STUB 13, 1
STUB 14, 1
STUB 16, 0
STUB 17, 1
STUB 18, 0
STUB 19, 0
STUB 128, 0
/* external interrupts, for a PIC remapped to 0x20-0x2F */
STUB 32, 0
STUB 33, 0
STUB 34, 0
STUB 35, 0
STUB 36, 0
STUB 37, 0
STUB 38, 0
STUB 39, 0
STUB 40, 0
STUB 41, 0
STUB 42, 0
STUB 43, 0
STUB 44, 0
STUB 45, 0
STUB 46, 0
STUB 47, 0

isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call isr_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq
