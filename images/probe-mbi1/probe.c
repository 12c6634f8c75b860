/* probe-mbi1: print on COM1 everything a Multiboot (version 1) loader hands over: the entry
 * state, the information structure as hex, every field its flags make valid, and the raw
 * bytes of the area the loader filled after the structure. The output holds no
 * time-dependent values. */
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"
#include "../common/types.h"

#define MB1_BOOTLOADER_MAGIC 0x2BADB002
#define INFO_SIZE 120 /* GRUB's struct multiboot_info: the spec's 116 bytes and padding */

extern uint32_t entry_regs[10];
extern uint16_t entry_segs[6];
extern uint8_t entry_gdtr[8], entry_idtr[8];
extern uint32_t entry_cr[2];

static uint32_t rd32(const uint8_t *p) {
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t rd16(const uint8_t *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint64_t rd64(const uint8_t *p) {
    return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}
static const uint8_t *at(uint32_t addr) {
    return (const uint8_t *)(uintptr_t)addr;
}

static void hexdump(const char *indent, uint32_t base, const uint8_t *p, uint32_t n) {
    for (uint32_t i = 0; i < n; i += 16) {
        kprintf("%s%08x:", indent, base + i);
        for (uint32_t j = i; j < n && j < i + 16; j++)
            kprintf(" %02x", p[j]);
        kprintf("\n");
    }
}

static void put_string(const uint8_t *s, uint32_t n) {
    kprintf("\"");
    for (uint32_t i = 0; i < n && s[i]; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\')
            kprintf("%c", s[i]);
        else
            kprintf("\\x%02x", s[i]);
    }
    kprintf("\"");
}

static void put_chars(const uint8_t *s, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        kprintf("%c", s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '.');
}

static uint32_t str_len(const uint8_t *s) {
    uint32_t n = 0;
    while (s[n] && n < 4096)
        n++;
    return n;
}

static void print_entry_state(void) {
    const uint32_t *r = entry_regs;
    kprintf("entry: eax 0x%x ebx 0x%x ecx 0x%x edx 0x%x\n", r[0], r[1], r[2], r[3]);
    kprintf("entry: esi 0x%x edi 0x%x ebp 0x%x esp 0x%x eflags 0x%x\n", r[4], r[5], r[6], r[7],
            r[8]);
    const uint16_t *s = entry_segs;
    kprintf("entry: cs 0x%x ds 0x%x es 0x%x fs 0x%x gs 0x%x ss 0x%x\n", s[0], s[1], s[2], s[3],
            s[4], s[5]);
    kprintf("entry: gdtr base 0x%x limit 0x%x, idtr base 0x%x limit 0x%x\n", rd32(entry_gdtr + 2),
            rd16(entry_gdtr), rd32(entry_idtr + 2), rd16(entry_idtr));
    kprintf("entry: cr0 0x%x cr4 0x%x\n", entry_cr[0], entry_cr[1]);
    const uint8_t *gdt = at(rd32(entry_gdtr + 2));
    uint32_t limit = rd16(entry_gdtr);
    for (uint32_t i = 0; i + 7 <= limit; i += 8)
        kprintf("entry: gdt[0x%02x] 0x%08x%08x\n", i, rd32(gdt + i + 4), rd32(gdt + i));
}

/* the end of the loader's area: the highest end of anything the structure points to near it */
static uint32_t area_end, area_base;
static void covers(uint32_t addr, uint32_t len) {
    if (addr >= area_base && addr < area_base + 0x10000 && addr + len > area_end)
        area_end = addr + len;
}

static const char *section_type(uint32_t t) {
    switch (t) {
    case 0: return "NULL";
    case 1: return "PROGBITS";
    case 2: return "SYMTAB";
    case 3: return "STRTAB";
    case 8: return "NOBITS";
    default: return "other";
    }
}

static void print_sections(uint32_t num, uint32_t entsize, uint32_t addr, uint32_t shndx) {
    const uint8_t *table = at(addr);
    if (entsize != 40 || !addr)
        return;
    const uint8_t *strtab = NULL;
    uint32_t strsize = 0;
    if (shndx < num) {
        strtab = at(rd32(table + shndx * 40 + 12));
        strsize = rd32(table + shndx * 40 + 20);
    }
    for (uint32_t i = 0; i < num; i++) {
        const uint8_t *sh = table + i * 40;
        uint32_t type = rd32(sh + 4), flags = rd32(sh + 8), saddr = rd32(sh + 12);
        uint32_t size = rd32(sh + 20);
        kprintf("  [%2u] %s flags 0x%x addr 0x%x offset 0x%x size 0x%x align %u ", i,
                section_type(type), flags, saddr, rd32(sh + 16), size, rd32(sh + 32));
        if (strtab && rd32(sh) < strsize)
            put_string(strtab + rd32(sh), strsize - rd32(sh));
        kprintf("\n");
        if (saddr && !(flags & 2) && size && type != 8) {
            kprintf("       first bytes:");
            for (uint32_t j = 0; j < size && j < 16; j++)
                kprintf(" %02x", at(saddr)[j]);
            kprintf("\n");
        }
    }
}

void kmain(void) {
    serial_init();
    uint32_t magic = entry_regs[0], addr = entry_regs[1];
    kprintf("probe-mbi1: Multiboot boot information\n");
    print_entry_state();
    if (magic != MB1_BOOTLOADER_MAGIC) {
        kprintf("bad magic 0x%x\n", magic);
        qemu_exit(1);
    }
    const uint8_t *mbi = at(addr);
    uint32_t flags = rd32(mbi);
    area_base = addr;
    area_end = addr + INFO_SIZE;
    kprintf("mbi: addr 0x%x flags 0x%x\n", addr, flags);
    hexdump("  ", addr, mbi, INFO_SIZE);
    if (flags & (1u << 0))
        kprintf("flag 0: mem_lower %u KiB mem_upper %u KiB\n", rd32(mbi + 4), rd32(mbi + 8));
    if (flags & (1u << 1)) {
        uint32_t d = rd32(mbi + 12);
        kprintf("flag 1: boot_device 0x%08x (drive 0x%x part1 0x%x part2 0x%x part3 0x%x)\n", d,
                d >> 24, (d >> 16) & 0xff, (d >> 8) & 0xff, d & 0xff);
    }
    if (flags & (1u << 2)) {
        uint32_t c = rd32(mbi + 16);
        kprintf("flag 2: cmdline 0x%x ", c);
        put_string(at(c), 4096);
        kprintf("\n");
        covers(c, str_len(at(c)) + 1);
    }
    if (flags & (1u << 3)) {
        uint32_t count = rd32(mbi + 20), list = rd32(mbi + 24);
        kprintf("flag 3: mods_count %u mods_addr 0x%x\n", count, list);
        covers(list, count * 16);
        for (uint32_t i = 0; i < count; i++) {
            const uint8_t *m = at(list + i * 16);
            uint32_t start = rd32(m), end = rd32(m + 4), string = rd32(m + 8);
            kprintf("  module %u: start 0x%x end 0x%x (%u bytes) string 0x%x ", i, start, end,
                    end - start, string);
            put_string(at(string), 4096);
            kprintf(" reserved 0x%x\n", rd32(m + 12));
            covers(string, str_len(at(string)) + 1);
            kprintf("  module %u first bytes:", i);
            for (uint32_t j = 0; j < end - start && j < 16; j++)
                kprintf(" %02x", at(start)[j]);
            kprintf("\n");
        }
    }
    if (flags & (1u << 4))
        kprintf("flag 4: a.out symbols tabsize 0x%x strsize 0x%x addr 0x%x\n", rd32(mbi + 28),
                rd32(mbi + 32), rd32(mbi + 36));
    if (flags & (1u << 5)) {
        uint32_t num = rd32(mbi + 28), size = rd32(mbi + 32), shaddr = rd32(mbi + 36);
        uint32_t shndx = rd32(mbi + 40);
        kprintf("flag 5: elf sections num %u size %u addr 0x%x shndx %u\n", num, size, shaddr,
                shndx);
        covers(shaddr, num * size);
        print_sections(num, size, shaddr, shndx);
    }
    if (flags & (1u << 6)) {
        uint32_t len = rd32(mbi + 44), maddr = rd32(mbi + 48);
        kprintf("flag 6: mmap_length %u mmap_addr 0x%x\n", len, maddr);
        covers(maddr, len);
        for (uint32_t off = 0, i = 0; off < len && i < 64; i++) {
            const uint8_t *e = at(maddr + off);
            kprintf("  [%u] size %u base 0x%016lx length 0x%016lx type %u\n", i, rd32(e),
                    rd64(e + 4), rd64(e + 12), rd32(e + 20));
            off += rd32(e) + 4;
        }
    }
    if (flags & (1u << 7)) {
        uint32_t len = rd32(mbi + 52), daddr = rd32(mbi + 56);
        kprintf("flag 7: drives_length %u drives_addr 0x%x\n", len, daddr);
        covers(daddr, len);
        hexdump("  ", daddr, at(daddr), len < 512 ? len : 512);
    }
    if (flags & (1u << 8)) {
        uint32_t t = rd32(mbi + 60);
        kprintf("flag 8: config_table 0x%x\n", t);
        hexdump("  ", t, at(t), 16);
    }
    if (flags & (1u << 9)) {
        uint32_t n = rd32(mbi + 64);
        kprintf("flag 9: boot_loader_name 0x%x ", n);
        put_string(at(n), 4096);
        kprintf("\n");
        covers(n, str_len(at(n)) + 1);
    }
    if (flags & (1u << 10)) {
        uint32_t t = rd32(mbi + 68);
        const uint8_t *a = at(t);
        kprintf("flag 10: apm_table 0x%x version 0x%x cseg 0x%x offset 0x%x cseg_16 0x%x dseg 0x%x "
                "flags 0x%x cseg_len 0x%x cseg_16_len 0x%x dseg_len 0x%x\n", t, rd16(a),
                rd16(a + 2), rd32(a + 4), rd16(a + 8), rd16(a + 10), rd16(a + 12), rd16(a + 14),
                rd16(a + 16), rd16(a + 18));
        covers(t, 20);
    }
    if (flags & (1u << 11)) {
        uint32_t ci = rd32(mbi + 72), mi = rd32(mbi + 76);
        kprintf("flag 11: vbe_control_info 0x%x vbe_mode_info 0x%x vbe_mode 0x%x interface seg "
                "0x%x off 0x%x len 0x%x\n", ci, mi, rd16(mbi + 80), rd16(mbi + 82), rd16(mbi + 84),
                rd16(mbi + 86));
        if (ci) {
            const uint8_t *c = at(ci);
            kprintf("  vbe control: signature ");
            put_chars(c, 4);
            kprintf(" version 0x%04x oem 0x%08x capabilities 0x%08x modes 0x%08x memory %u x "
                    "64 KiB\n", rd16(c + 4), rd32(c + 6), rd32(c + 10), rd32(c + 14), rd16(c + 18));
            covers(ci, 512);
        }
        if (mi) {
            const uint8_t *m = at(mi);
            kprintf("  vbe mode: attributes 0x%x memory model %u x_resolution %u y_resolution %u\n",
                    rd16(m), m[27], rd16(m + 18), rd16(m + 20));
            covers(mi, 256);
        }
    }
    if (flags & (1u << 12)) {
        kprintf("flag 12: framebuffer addr 0x%lx pitch %u width %u height %u bpp %u type %u\n",
                rd64(mbi + 88), rd32(mbi + 96), rd32(mbi + 100), rd32(mbi + 104), mbi[108],
                mbi[109]);
        kprintf("  colour info:");
        for (uint32_t i = 110; i < 116; i++)
            kprintf(" %02x", mbi[i]);
        kprintf("\n");
    }
    kprintf("area: 0x%x-0x%x (%u bytes after the structure)\n", addr, area_end,
            area_end - addr - INFO_SIZE);
    hexdump("  ", addr + INFO_SIZE, mbi + INFO_SIZE, area_end - addr - INFO_SIZE);
    kprintf("probe-mbi1: done\n");
    qemu_exit(0);
}
