/* Boot information parsers: Multiboot2 spec 2.0 section 3.6, Multiboot 0.6.96 section 3.3. */
#include "bootinfo.h"
#include "multiboot.h"

#define MB2_TAG_END 0
#define MB2_TAG_CMDLINE 1
#define MB2_TAG_LOADER_NAME 2
#define MB2_TAG_BASIC_MEMINFO 4
#define MB2_TAG_MMAP 6

#define MB1_FLAG_MEM (1u << 0)
#define MB1_FLAG_CMDLINE (1u << 2)
#define MB1_FLAG_MMAP (1u << 6)
#define MB1_FLAG_LOADER_NAME (1u << 9)

/* Field by field: a struct assignment of this size would become a call to memset, which a
 * freestanding kernel does not have. mmap[] needs no clearing (mmap_count bounds it). */
static void clear(struct boot_info *bi) {
    bi->protocol = 0;
    bi->addr = 0;
    bi->size = bi->flags = 0;
    bi->cmdline = bi->loader_name = NULL;
    bi->has_meminfo = 0;
    bi->mem_lower_kib = bi->mem_upper_kib = 0;
    bi->has_mmap = 0;
    bi->mmap_count = bi->mmap_total = 0;
}

static void add_region(struct boot_info *bi, uint64_t base, uint64_t length, uint32_t type) {
    bi->has_mmap = 1;
    bi->mmap_total++;
    if (bi->mmap_count < BOOT_MMAP_MAX) {
        struct mem_region *r = &bi->mmap[bi->mmap_count++];
        r->base = base;
        r->length = length;
        r->type = type;
    }
}

int mb2_parse(uint32_t magic, uintptr_t addr, struct boot_info *bi) {
    clear(bi);
    if (magic != MB2_BOOTLOADER_MAGIC || addr & 7)
        return -1;
    bi->protocol = 2;
    bi->addr = addr;
    bi->size = *(const uint32_t *)addr; /* total_size, then a reserved word, then the tags */
    uintptr_t end = addr + bi->size;
    uintptr_t p = addr + 8;
    while (p + sizeof(struct mb2_tag) <= end) {
        const struct mb2_tag *tag = (const struct mb2_tag *)p;
        if (tag->type == MB2_TAG_END)
            return 0;
        if (tag->size < sizeof *tag || p + tag->size > end)
            return -1;
        const uint32_t *body = (const uint32_t *)(tag + 1);
        switch (tag->type) {
        case MB2_TAG_CMDLINE:
            bi->cmdline = (const char *)body;
            break;
        case MB2_TAG_LOADER_NAME:
            bi->loader_name = (const char *)body;
            break;
        case MB2_TAG_BASIC_MEMINFO:
            bi->has_meminfo = 1;
            bi->mem_lower_kib = body[0];
            bi->mem_upper_kib = body[1];
            break;
        case MB2_TAG_MMAP: {
            uint32_t entry_size = body[0]; /* body[1] is the entry version (0) */
            if (entry_size < sizeof(struct mb2_mmap_entry))
                return -1;
            for (uintptr_t e = (uintptr_t)(body + 2); e + entry_size <= p + tag->size;
                 e += entry_size) {
                const struct mb2_mmap_entry *m = (const struct mb2_mmap_entry *)e;
                add_region(bi, m->base, m->length, m->type);
            }
            break;
        }
        default:
            break; /* tags the hello kernels do not report */
        }
        p += (tag->size + 7) & ~7u; /* tags start 8-byte aligned */
    }
    return -1; /* ran off the end without an end tag */
}

int mb1_parse(uint32_t magic, uintptr_t addr, struct boot_info *bi) {
    clear(bi);
    if (magic != MB1_BOOTLOADER_MAGIC)
        return -1;
    const struct mb1_info *info = (const struct mb1_info *)addr;
    bi->protocol = 1;
    bi->addr = addr;
    bi->flags = info->flags;
    if (info->flags & MB1_FLAG_MEM) {
        bi->has_meminfo = 1;
        bi->mem_lower_kib = info->mem_lower;
        bi->mem_upper_kib = info->mem_upper;
    }
    if (info->flags & MB1_FLAG_CMDLINE)
        bi->cmdline = (const char *)(uintptr_t)info->cmdline;
    if (info->flags & MB1_FLAG_LOADER_NAME)
        bi->loader_name = (const char *)(uintptr_t)info->boot_loader_name;
    if (info->flags & MB1_FLAG_MMAP) {
        /* Each entry starts with its own size, which does not count the size field itself. */
        uintptr_t p = info->mmap_addr, end = (uintptr_t)info->mmap_addr + info->mmap_length;
        while (p + sizeof(struct mb1_mmap_entry) <= end) {
            const struct mb1_mmap_entry *m = (const struct mb1_mmap_entry *)p;
            if (m->size < sizeof *m - 4)
                return -1;
            add_region(bi, m->base, m->length, m->type);
            p += m->size + 4;
        }
    }
    return 0;
}

const char *mmap_type_name(uint32_t type) {
    switch (type) {
    case MMAP_AVAILABLE:
        return "available";
    case MMAP_RESERVED:
        return "reserved";
    case MMAP_ACPI_RECLAIMABLE:
        return "ACPI reclaimable";
    case MMAP_ACPI_NVS:
        return "ACPI NVS";
    case MMAP_BAD:
        return "bad memory";
    default:
        return "unknown";
    }
}

int mmap_covers(const struct boot_info *bi, uint64_t base, uint64_t length) {
    for (unsigned i = 0; i < bi->mmap_count; i++) {
        const struct mem_region *r = &bi->mmap[i];
        if (r->type == MMAP_AVAILABLE && base >= r->base && base + length <= r->base + r->length)
            return 1;
    }
    return 0;
}
