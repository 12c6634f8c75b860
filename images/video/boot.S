/* video: a kernel that asks its boot loader for a video mode, prints what it was given (the
 * framebuffer and VBE information) on COM1, draws a test pattern into the framebuffer and exits
 * through isa-debug-exit (or, with "hold" on its command line, halts so that the screen can be
 * captured). One source, many requests: the Makefile builds each variant with
 *   -DPROTOCOL=1 or 2 (Multiboot or Multiboot2), -DWIDTH, -DHEIGHT, -DDEPTH,
 *   -DTAG_FLAGS (Multiboot2: the framebuffer tag's flags, 1 = optional; -1 = no framebuffer tag),
 *   -DCONSOLE_FLAGS (Multiboot2: a console flags tag with these flags; -1 = none),
 *   -DMODE_TYPE (Multiboot: 0 graphics, 1 EGA text).
 * 32-bit protected mode without paging: the framebuffer is reached at its physical address. */
#ifndef TAG_FLAGS
#define TAG_FLAGS -1
#endif
#ifndef CONSOLE_FLAGS
#define CONSOLE_FLAGS -1
#endif
#ifndef MODE_TYPE
#define MODE_TYPE 0
#endif
#define MB1_MAGIC 0x1BADB002
#define MB2_MAGIC 0xE85250D6

#if PROTOCOL == 1
#define MB1_FLAGS 0x00000006                 /* memory information, video mode */
    .section .multiboot, "a"
    .align 4
    .long MB1_MAGIC, MB1_FLAGS, -(MB1_MAGIC + MB1_FLAGS)
    .long 0, 0, 0, 0, 0                      /* the a.out fields (flag 16 is clear) */
    .long MODE_TYPE, WIDTH, HEIGHT, DEPTH
#else
    .section .multiboot2, "a"
    .align 8
mb2_header:
    .long MB2_MAGIC, 0, mb2_header_end - mb2_header
    .long -(MB2_MAGIC + (mb2_header_end - mb2_header))
#if CONSOLE_FLAGS >= 0
    .align 8
    .short 4, 0                              /* console flags */
    .long 12
    .long CONSOLE_FLAGS
#endif
#if TAG_FLAGS >= 0
    .align 8
    .short 5, TAG_FLAGS                      /* framebuffer */
    .long 20
    .long WIDTH, HEIGHT, DEPTH
#endif
    .align 8
    .short 0, 0
    .long 8
mb2_header_end:
#endif

    .section .text.boot, "ax"
    .globl _start
_start:
    cli
    cld
    movl $stack_top, %esp
    pushl %ebx
    pushl %eax
    call kmain
1:  cli
    hlt
    jmp 1b

    .section .bss
    .align 16
    .skip 16384
stack_top:
