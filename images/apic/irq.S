/* apic: the 256 interrupt stubs (the entry is common/entry32.S). Each stub pushes its vector and
 * goes to the common handler, which saves the registers and calls interrupt(vector) in C. An
 * exception (vectors 0-31) never returns: interrupt() reports it and exits. */
    .text
    .align 16
    .globl isr_stubs
isr_stubs:
    .set vector, 0
    .rept 256
    .align 16
    pushl $vector
    jmp isr_common
    .set vector, vector + 1
    .endr

isr_common:
    pushal
    cld
    pushl 32(%esp)          /* the vector */
    call interrupt
    addl $4, %esp
    popal
    addl $4, %esp           /* the vector */
    iret
