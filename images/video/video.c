/* video: print the video mode the boot loader set (Multiboot2 tags 7 and 8, or the Multiboot
 * VBE and framebuffer fields), draw a test pattern into the framebuffer, exit. boot.S says how
 * each variant asks. The output holds no time-dependent values. */
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"
#include "../common/types.h"

#define MB1_BOOTLOADER_MAGIC 0x2BADB002
#define MB2_BOOTLOADER_MAGIC 0x36D76289

#ifndef TAG_FLAGS
#define TAG_FLAGS -1
#endif
#ifndef CONSOLE_FLAGS
#define CONSOLE_FLAGS -1
#endif
#ifndef MODE_TYPE
#define MODE_TYPE 0
#endif

static uint32_t rd32(const uint8_t *p) {
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t rd16(const uint8_t *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

static void hexdump(const uint8_t *p, uint32_t n) {
    for (uint32_t i = 0; i < n; i += 16) {
        kprintf("  %04x:", i);
        for (uint32_t j = i; j < n && j < i + 16; j++)
            kprintf(" %02x", p[j]);
        kprintf("\n");
    }
}

static int contains(const char *s, const char *word) {
    for (; s && *s; s++) {
        const char *a = s, *b = word;
        while (*a && *b && *a == *b)
            a++, b++;
        if (!*b)
            return 1;
    }
    return 0;
}

/* What the kernel was told about its framebuffer. */
struct fb {
    uint32_t addr, pitch, width, height;
    uint8_t bpp, type;
    uint8_t pos[3], size[3]; /* red, green, blue (type 1) */
    uint32_t colours;        /* palette entries (type 0) */
};

static void print_fb(const struct fb *f) {
    kprintf("framebuffer: addr 0x%x pitch %u width %u height %u bpp %u type %u\n", f->addr,
            f->pitch, f->width, f->height, f->bpp, f->type);
    if (f->type == 1)
        kprintf("framebuffer: red %u/%u green %u/%u blue %u/%u\n", f->pos[0], f->size[0],
                f->pos[1], f->size[1], f->pos[2], f->size[2]);
}

static void print_palette(const uint8_t *p, uint32_t n) {
    kprintf("framebuffer: palette of %u colours\n", n);
    for (uint32_t i = 0; i < n; i++)
        kprintf("  %u: %02x %02x %02x\n", i, p[3 * i], p[3 * i + 1], p[3 * i + 2]);
}

static void print_vbe(uint32_t mode, uint16_t seg, uint16_t off, uint16_t len,
                      const uint8_t *control, const uint8_t *info) {
    kprintf("vbe: mode 0x%x interface seg 0x%x off 0x%x len 0x%x\n", mode, seg, off, len);
    kprintf("vbe: control info\n");
    hexdump(control, 512);
    kprintf("vbe: mode info\n");
    hexdump(info, 256);
}

/* A pattern that exercises every colour bit: red follows x, green y, blue a 32-pixel checker;
 * an indexed mode gets 32-pixel diagonal bands of the palette's colours. */
static void draw(const struct fb *f) {
    uint32_t bytes = (f->bpp + 7) / 8;
    for (uint32_t y = 0; y < f->height; y++) {
        volatile uint8_t *line = (volatile uint8_t *)(uintptr_t)(f->addr + y * f->pitch);
        for (uint32_t x = 0; x < f->width; x++) {
            uint32_t v;
            if (f->type == 0) {
                v = ((x >> 5) + (y >> 5)) % (f->colours ? f->colours : 16);
            } else {
                uint32_t c[3] = {x & 0xff, y & 0xff, ((x >> 5) ^ (y >> 5)) & 1 ? 0xff : 0x40};
                v = 0;
                for (int i = 0; i < 3; i++)
                    v |= (c[i] >> (8 - f->size[i])) << f->pos[i];
            }
            for (uint32_t b = 0; b < bytes; b++)
                line[x * bytes + b] = (uint8_t)(v >> (8 * b));
        }
    }
    kprintf("video: pattern drawn\n");
}

static void finish(const struct fb *f, int hold) {
    if (f && (f->type == 0 || f->type == 1) && f->bpp >= 8)
        draw(f);
    kprintf("video: done\n");
    if (hold)
        for (;;)
            __asm__ volatile("cli; hlt");
    qemu_exit(0);
}

static void multiboot2(const uint8_t *mbi) {
    uint32_t total = rd32(mbi);
    struct fb f = {0};
    int have_fb = 0, hold = 0;
    const uint8_t *palette = 0;
    for (uint32_t off = 8; off + 8 <= total;) {
        const uint8_t *tag = mbi + off;
        uint32_t type = rd32(tag), size = rd32(tag + 4);
        if (type == 0)
            break;
        if (type == 1)
            hold = contains((const char *)tag + 8, "hold");
        if (type == 7) {
            kprintf("mb2 tag 7 (VBE info): size %u\n", size);
            print_vbe(rd16(tag + 8), rd16(tag + 10), rd16(tag + 12), rd16(tag + 14), tag + 16,
                      tag + 16 + 512);
        }
        if (type == 8) {
            kprintf("mb2 tag 8 (framebuffer info): size %u\n", size);
            hexdump(tag + 8, size - 8);
            f.addr = rd32(tag + 8);
            if (rd32(tag + 12))
                kprintf("framebuffer: address above 4 GiB: 0x%x%08x\n", rd32(tag + 12), f.addr);
            f.pitch = rd32(tag + 16);
            f.width = rd32(tag + 20);
            f.height = rd32(tag + 24);
            f.bpp = tag[28];
            f.type = tag[29];
            if (f.type == 0) {
                f.colours = rd16(tag + 32);
                palette = tag + 34;
            } else if (f.type == 1) {
                for (int i = 0; i < 3; i++) {
                    f.pos[i] = tag[32 + 2 * i];
                    f.size[i] = tag[33 + 2 * i];
                }
            }
            have_fb = 1;
        }
        off += (size + 7) & ~7u;
    }
    if (!have_fb)
        kprintf("mb2: no framebuffer info tag\n");
    else {
        print_fb(&f);
        if (f.type == 0)
            print_palette(palette, f.colours);
    }
    finish(have_fb ? &f : 0, hold);
}

static void multiboot1(const uint8_t *mbi) {
    uint32_t flags = rd32(mbi);
    kprintf("mb1: flags 0x%x\n", flags);
    int hold = (flags & 4) && contains((const char *)(uintptr_t)rd32(mbi + 16), "hold");
    if (flags & (1 << 11)) {
        kprintf("mb1: vbe_control_info 0x%x vbe_mode_info 0x%x\n", rd32(mbi + 72), rd32(mbi + 76));
        print_vbe(rd16(mbi + 80), rd16(mbi + 82), rd16(mbi + 84), rd16(mbi + 86),
                  (const uint8_t *)(uintptr_t)rd32(mbi + 72),
                  (const uint8_t *)(uintptr_t)rd32(mbi + 76));
    }
    if (!(flags & (1 << 12))) {
        kprintf("mb1: no framebuffer information\n");
        finish(0, hold);
    }
    kprintf("mb1: framebuffer fields\n");
    hexdump(mbi + 88, 32);
    struct fb f = {0};
    f.addr = rd32(mbi + 88);
    if (rd32(mbi + 92))
        kprintf("framebuffer: address above 4 GiB: 0x%x%08x\n", rd32(mbi + 92), f.addr);
    f.pitch = rd32(mbi + 96);
    f.width = rd32(mbi + 100);
    f.height = rd32(mbi + 104);
    f.bpp = mbi[108];
    f.type = mbi[109];
    /* GRUB's struct multiboot_info aligns the colour information union to 4 bytes: it starts
     * at offset 112, not at the specification's 110 */
    if (f.type == 1) {
        for (int i = 0; i < 3; i++) {
            f.pos[i] = mbi[112 + 2 * i];
            f.size[i] = mbi[113 + 2 * i];
        }
    }
    print_fb(&f);
    if (f.type == 0) {
        f.colours = rd16(mbi + 116);
        kprintf("mb1: palette at 0x%x\n", rd32(mbi + 112));
        print_palette((const uint8_t *)(uintptr_t)rd32(mbi + 112), f.colours);
    }
    finish(&f, hold);
}

void kmain(uint32_t magic, const uint8_t *mbi) {
    serial_init();
#if PROTOCOL == 1
    kprintf("video: multiboot request mode type %u, %ux%ux%u\n", MODE_TYPE, WIDTH, HEIGHT, DEPTH);
#else
    kprintf("video: multiboot2 request framebuffer tag flags %d %ux%ux%u, console flags %d\n",
            TAG_FLAGS, WIDTH, HEIGHT, DEPTH, CONSOLE_FLAGS);
#endif
    if (magic == MB2_BOOTLOADER_MAGIC)
        multiboot2(mbi);
    else if (magic == MB1_BOOTLOADER_MAGIC)
        multiboot1(mbi);
    kprintf("video: unknown boot magic 0x%x\n", magic);
    qemu_exit(1);
}
