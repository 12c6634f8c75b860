/* probe-mbi: print on COM1 everything a Multiboot2 loader hands over: the entry state, then
 * every boot information tag (type, size, body as hex, padding, and a decoded line for the
 * known types). The output holds no time-dependent values. */
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"
#include "../common/types.h"

#define MB2_BOOTLOADER_MAGIC 0x36d76289

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

/* 16 bytes a line, each line prefixed with its offset */
static void hexdump(const char *indent, const uint8_t *p, uint32_t n) {
    for (uint32_t i = 0; i < n; i += 16) {
        kprintf("%s%04x:", indent, i);
        for (uint32_t j = i; j < n && j < i + 16; j++)
            kprintf(" %02x", p[j]);
        kprintf("\n");
    }
}

/* a string of at most n bytes, non-printable bytes as \xNN */
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
    /* the GDT as the loader left it (the probe never loads its own) */
    const uint8_t *gdt = (const uint8_t *)(uintptr_t)rd32(entry_gdtr + 2);
    uint32_t limit = rd16(entry_gdtr);
    for (uint32_t i = 0; i + 7 <= limit; i += 8)
        kprintf("entry: gdt[0x%02x] 0x%08x%08x\n", i, rd32(gdt + i + 4), rd32(gdt + i));
}

static const char *section_type(uint32_t t) {
    switch (t) {
    case 0: return "NULL";
    case 1: return "PROGBITS";
    case 2: return "SYMTAB";
    case 3: return "STRTAB";
    case 4: return "RELA";
    case 8: return "NOBITS";
    case 9: return "REL";
    default: return "other";
    }
}

static void print_sections(const uint8_t *b, uint32_t body_len) {
    uint32_t num = rd32(b), entsize = rd32(b + 4), shndx = rd32(b + 8);
    kprintf("  decoded: elf sections num %u entsize %u shndx %u\n", num, entsize, shndx);
    const uint8_t *table = b + 12;
    if (entsize != 40 && entsize != 64)
        return;
    if (12 + num * entsize > body_len) {
        kprintf("  the section table runs past the tag\n");
        return;
    }
    const uint8_t *strtab = NULL;
    uint32_t strsize = 0;
    if (shndx < num) {
        const uint8_t *sh = table + shndx * entsize;
        strtab = (const uint8_t *)(uintptr_t)(entsize == 64 ? rd64(sh + 24) : rd32(sh + 12));
        strsize = entsize == 64 ? (uint32_t)rd64(sh + 32) : rd32(sh + 20);
    }
    for (uint32_t i = 0; i < num; i++) {
        const uint8_t *sh = table + i * entsize;
        uint32_t name = rd32(sh), type = rd32(sh + 4);
        uint64_t flags, addr, offset, size, align;
        if (entsize == 64) {
            flags = rd64(sh + 8), addr = rd64(sh + 16), offset = rd64(sh + 24);
            size = rd64(sh + 32), align = rd64(sh + 48);
        } else {
            flags = rd32(sh + 8), addr = rd32(sh + 12), offset = rd32(sh + 16);
            size = rd32(sh + 20), align = rd32(sh + 32);
        }
        kprintf("  [%2u] %s flags 0x%lx addr 0x%lx offset 0x%lx size 0x%lx align %lu ", i,
                section_type(type), flags, addr, offset, size, align);
        if (strtab && name < strsize)
            put_string(strtab + name, strsize - name);
        kprintf("\n");
        /* the first bytes of a section the loader placed (not one the image loads) */
        if (addr && !(flags & 2) && size && type != 8) {
            const uint8_t *data = (const uint8_t *)(uintptr_t)addr;
            kprintf("       first bytes:");
            for (uint32_t j = 0; j < size && j < 16; j++)
                kprintf(" %02x", data[j]);
            kprintf("\n");
        }
    }
}

static void print_rsdp(const uint8_t *b, uint32_t n) {
    if (n < 20)
        return;
    kprintf("  decoded: rsdp signature ");
    put_chars(b, 8);
    kprintf(" checksum 0x%02x oem ", b[8]);
    put_chars(b + 9, 6);
    kprintf(" revision %u rsdt 0x%x\n", b[15], rd32(b + 16));
    if (n >= 36)
        kprintf("  decoded: rsdp length %u xsdt 0x%lx extended checksum 0x%02x\n", rd32(b + 20),
                rd64(b + 24), b[32]);
    uint8_t sum = 0;
    for (uint32_t i = 0; i < 20; i++)
        sum += b[i];
    kprintf("  decoded: rsdp sum of the first 20 bytes 0x%02x\n", sum);
}

static void print_vbe_control(const uint8_t *c) {
    kprintf("  decoded: vbe signature ");
    put_chars(c, 4);
    kprintf(" version 0x%04x oem 0x%08x capabilities 0x%08x modes 0x%08x memory %u x 64 KiB\n",
            rd16(c + 4), rd32(c + 6), rd32(c + 10), rd32(c + 14), rd16(c + 18));
    kprintf("  decoded: vbe oem software rev 0x%04x vendor 0x%08x product 0x%08x rev 0x%08x\n",
            rd16(c + 20), rd32(c + 22), rd32(c + 26), rd32(c + 30));
}

static void decode(uint32_t type, const uint8_t *b, uint32_t n) {
    switch (type) {
    case 1:
        kprintf("  decoded: cmdline ");
        put_string(b, n);
        kprintf("\n");
        break;
    case 2:
        kprintf("  decoded: boot loader name ");
        put_string(b, n);
        kprintf("\n");
        break;
    case 3: {
        uint32_t start = rd32(b), end = rd32(b + 4);
        kprintf("  decoded: module start 0x%x end 0x%x (%u bytes) string ", start, end, end - start);
        put_string(b + 8, n - 8);
        kprintf("\n  decoded: module first bytes:");
        const uint8_t *m = (const uint8_t *)(uintptr_t)start;
        for (uint32_t i = 0; i < end - start && i < 16; i++)
            kprintf(" %02x", m[i]);
        kprintf("\n");
        break;
    }
    case 4:
        kprintf("  decoded: basic meminfo mem_lower %u KiB mem_upper %u KiB\n", rd32(b), rd32(b + 4));
        break;
    case 5:
        kprintf("  decoded: bootdev biosdev 0x%x slice 0x%x part 0x%x\n", rd32(b), rd32(b + 4),
                n >= 12 ? rd32(b + 8) : 0);
        break;
    case 6: {
        uint32_t entry_size = rd32(b), version = rd32(b + 4);
        kprintf("  decoded: mmap entry_size %u entry_version %u\n", entry_size, version);
        if (entry_size < 24)
            break;
        for (uint32_t off = 8, i = 0; off + entry_size <= n; off += entry_size, i++)
            kprintf("  [%u] base 0x%016lx length 0x%016lx type %u reserved %u\n", i, rd64(b + off),
                    rd64(b + off + 8), rd32(b + off + 16), rd32(b + off + 20));
        break;
    }
    case 7:
        kprintf("  decoded: vbe mode 0x%x interface seg 0x%x off 0x%x len 0x%x\n", rd16(b),
                rd16(b + 2), rd16(b + 4), rd16(b + 6));
        if (n >= 8 + 512)
            print_vbe_control(b + 8);
        break;
    case 8: {
        kprintf("  decoded: framebuffer addr 0x%lx pitch %u width %u height %u bpp %u type %u "
                "reserved %u\n", rd64(b), rd32(b + 8), rd32(b + 12), rd32(b + 16), b[20], b[21],
                rd16(b + 22));
        if (b[21] == 1 && n >= 30)
            kprintf("  decoded: rgb red %u/%u green %u/%u blue %u/%u\n", b[24], b[25], b[26], b[27],
                    b[28], b[29]);
        else if (b[21] == 0 && n >= 26)
            kprintf("  decoded: palette %u colours\n", rd16(b + 24));
        break;
    }
    case 9:
        print_sections(b, n);
        break;
    case 10:
        kprintf("  decoded: apm version 0x%x cseg 0x%x offset 0x%x cseg_16 0x%x dseg 0x%x flags 0x%x "
                "cseg_len 0x%x cseg_16_len 0x%x dseg_len 0x%x\n", rd16(b), rd16(b + 2), rd32(b + 4),
                rd16(b + 8), rd16(b + 10), rd16(b + 12), rd16(b + 14), rd16(b + 16), rd16(b + 18));
        break;
    case 11:
    case 19:
        kprintf("  decoded: pointer 0x%x\n", rd32(b));
        break;
    case 12:
    case 20:
        kprintf("  decoded: pointer 0x%lx\n", rd64(b));
        break;
    case 13:
        kprintf("  decoded: smbios %u.%u\n", b[0], b[1]);
        break;
    case 14:
    case 15:
        print_rsdp(b, n);
        break;
    case 17:
        kprintf("  decoded: efi mmap descriptor size %u version %u\n", rd32(b), rd32(b + 4));
        break;
    case 21:
        kprintf("  decoded: load base addr 0x%x\n", rd32(b));
        break;
    default:
        break;
    }
}

void kmain(void) {
    serial_init();
    uint32_t magic = entry_regs[0], addr = entry_regs[1];
    kprintf("probe-mbi: Multiboot2 boot information\n");
    print_entry_state();
    if (magic != MB2_BOOTLOADER_MAGIC) {
        kprintf("bad magic 0x%x\n", magic);
        qemu_exit(1);
    }
    const uint8_t *mbi = (const uint8_t *)(uintptr_t)addr;
    uint32_t total = rd32(mbi);
    kprintf("mbi: addr 0x%x total_size %u (0x%x) reserved 0x%x\n", addr, total, total,
            rd32(mbi + 4));
    uint32_t p = 8, count = 0;
    while (p + 8 <= total) {
        uint32_t type = rd32(mbi + p), size = rd32(mbi + p + 4);
        kprintf("tag %u: offset 0x%x type %u size %u\n", count, p, type, size);
        if (size < 8 || p + size > total) {
            kprintf("bad tag size\n");
            qemu_exit(1);
        }
        hexdump("  ", mbi + p + 8, size - 8);
        uint32_t padded = (size + 7) & ~7u;
        if (padded > size && p + padded <= total) {
            kprintf("  padding:");
            for (uint32_t i = size; i < padded; i++)
                kprintf(" %02x", mbi[p + i]);
            kprintf("\n");
        }
        decode(type, mbi + p + 8, size - 8);
        count++;
        if (type == 0) {
            p += 8;
            break;
        }
        p += padded;
    }
    kprintf("mbi: %u tags, the end tag ends at offset 0x%x\n", count, p);
    kprintf("probe-mbi: done\n");
    qemu_exit(0);
}
