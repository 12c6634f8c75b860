/* fb: finds the framebuffer in the Multiboot2 information and draws colour bars, a grey ramp,
 * a colour gradient and a white border; prints the mode on COM1 and exits through debug-exit. */
#include "../common/io.h"
#include "../common/multiboot.h"
#include "../common/printf.h"
#include "../common/serial.h"

struct fb_tag {
    uint32_t type, size;
    uint64_t addr;
    uint32_t pitch, width, height;
    uint8_t bpp, fb_type;
    uint16_t reserved;
    uint8_t red_pos, red_size, green_pos, green_size, blue_pos, blue_size;
} __attribute__((packed));

static const uint32_t bars[8] = {0xFFFFFF, 0xFFFF00, 0x00FFFF, 0x00FF00,
                                 0xFF00FF, 0xFF0000, 0x0000FF, 0x000000};

void kmain(uint32_t magic, uint32_t info) {
    serial_init();
    if (magic != MB2_BOOTLOADER_MAGIC)
        qemu_exit(3);
    struct fb_tag *fb = 0;
    for (struct mb2_tag *t = (struct mb2_tag *)(info + 8); t->type;
         t = (struct mb2_tag *)((uint8_t *)t + ((t->size + 7) & ~7u)))
        if (t->type == 8)
            fb = (struct fb_tag *)t;
    if (!fb || fb->fb_type != 1 || fb->bpp != 32) {
        kprintf("no 32-bit linear framebuffer\n");
        qemu_exit(1);
    }
    kprintf("framebuffer: %ux%u, %u bpp, pitch %u, at 0x%lx\n", fb->width, fb->height, fb->bpp,
            fb->pitch, fb->addr);
    kprintf("red %u/%u green %u/%u blue %u/%u\n", fb->red_pos, fb->red_size, fb->green_pos,
            fb->green_size, fb->blue_pos, fb->blue_size);
    uint8_t *base = (uint8_t *)(uint32_t)fb->addr;
    uint32_t w = fb->width, h = fb->height;
    for (uint32_t y = 0; y < h; y++) {
        uint32_t *line = (uint32_t *)(base + y * fb->pitch);
        for (uint32_t x = 0; x < w; x++) {
            uint32_t c;
            if (y < h / 2)
                c = bars[x * 8 / w];
            else if (y < h * 5 / 8) {
                uint32_t g = x * 255 / (w - 1);
                c = g << 16 | g << 8 | g;
            } else {
                uint32_t r = x * 255 / (w - 1), b = (y - h * 5 / 8) * 255 / (h - h * 5 / 8 - 1);
                c = r << 16 | (255 - r) << 8 | b;
            }
            if (x < 2 || y < 2 || x >= w - 2 || y >= h - 2)
                c = 0xFFFFFF;
            line[x] = c;
        }
    }
    kprintf("All tests passed\n");
    qemu_exit(0);
}
