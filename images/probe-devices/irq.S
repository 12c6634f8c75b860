/* probe-devices: the 256 interrupt stubs and the bounded wait for the first interrupt (the
 * entry is common/entry32.S). */
/* One stub per vector, 16 bytes apart: push the vector number, go to the common handler.
 * Whatever arrives (an external interrupt, or an exception with or without an error code),
 * the handler only records the vector and abandons the frame: it returns from wait_irq. */
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
    popl %eax
    movl %eax, irq_vector
    movl irq_saved_esp, %esp
    jmp wait_done

/* int wait_irq(uint32_t max_unchanged, uint32_t reloads)
 *
 * STI, then poll PIT channel 0 (counter latch command, two byte reads) with 10000 NOPs
 * between reads. Returns the vector of the first interrupt taken, or -1 when none came:
 * after `reloads` reloads of channel 0 were seen (its count went up), or when the count read
 * the same `max_unchanged` times in a row (a timer that does not count). The bound is the
 * timer's own time, not a number of iterations: QEMU's TCG runs a NOP in next to no time.
 * Returns with IF=0. */
    .globl wait_irq
wait_irq:
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    movl %esp, irq_saved_esp
    movl 24(%esp), %edi
    movl $-1, irq_vector
    call read_ch0
    movl %eax, %ebx
    sti
1:  movl 20(%esp), %esi
2:
    .rept 10000
    nop
    .endr
    call read_ch0
    cmpl %ebx, %eax
    je 3f
    movl %eax, %ebx
    jb 1b
    decl %edi
    jnz 1b
    jmp 4f
3:  decl %esi
    jnz 2b
4:  cli
wait_done:
    movl irq_vector, %eax
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    ret

/* channel 0's count through the counter latch command, in %eax (clobbers %ecx) */
read_ch0:
    movb $0x00, %al
    outb %al, $0x43
    inb $0x40, %al
    movb %al, %cl
    inb $0x40, %al
    movb %al, %ch
    movzwl %cx, %eax
    ret

    .section .bss
    .align 16
    .globl irq_vector
irq_vector:
    .skip 4
irq_saved_esp:
    .skip 4
    .skip 16384
stack_top:
