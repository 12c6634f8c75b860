/* Multiboot2 and Multiboot (version 1) boot information, parsed into one summary so the hello
 * kernels can report both the same way. */
#ifndef TF_BOOTINFO_H
#define TF_BOOTINFO_H
#include "types.h"

#define BOOT_MMAP_MAX 32 /* entries kept; GRUB on a PC reports well under 20 */

/* memory map entry types, shared by both protocols */
#define MMAP_AVAILABLE 1
#define MMAP_RESERVED 2
#define MMAP_ACPI_RECLAIMABLE 3
#define MMAP_ACPI_NVS 4
#define MMAP_BAD 5

struct mem_region {
    uint64_t base;
    uint64_t length;
    uint32_t type;
};

struct boot_info {
    int protocol;            /* 1 or 2 */
    uintptr_t addr;          /* where the loader put the structure */
    uint32_t size;           /* Multiboot2 total_size; 0 for Multiboot1 */
    uint32_t flags;          /* Multiboot1 flags; 0 for Multiboot2 */
    const char *cmdline;     /* NULL when the loader gave none */
    const char *loader_name; /* NULL when the loader gave none */
    int has_meminfo;
    uint32_t mem_lower_kib, mem_upper_kib;
    int has_mmap;
    unsigned mmap_count;     /* entries in mmap[] */
    unsigned mmap_total;     /* entries the loader reported (more than mmap_count if clipped) */
    struct mem_region mmap[BOOT_MMAP_MAX];
};

/* Fill *bi from the structure at addr. Returns 0, or -1 when the magic number (EAX at entry)
 * is not the protocol's or the structure is malformed. */
int mb2_parse(uint32_t magic, uintptr_t addr, struct boot_info *bi);
int mb1_parse(uint32_t magic, uintptr_t addr, struct boot_info *bi);

/* "available", "reserved", ... */
const char *mmap_type_name(uint32_t type);

/* 1 when [base, base + length) lies inside one available region of the map */
int mmap_covers(const struct boot_info *bi, uint64_t base, uint64_t length);
#endif
