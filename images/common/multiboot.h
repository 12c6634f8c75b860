/* Multiboot2 (spec 2.0, section 3.6) and Multiboot (0.6.96) boot information layouts. */
#ifndef TF_MULTIBOOT_H
#define TF_MULTIBOOT_H
#include "types.h"

#define MB2_BOOTLOADER_MAGIC 0x36d76289
#define MB1_BOOTLOADER_MAGIC 0x2BADB002

struct mb2_tag {
    uint32_t type;
    uint32_t size;
};

struct mb2_mmap_entry {
    uint64_t base;
    uint64_t length;
    uint32_t type;
    uint32_t reserved;
};

struct mb1_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr, drives_length, drives_addr, config_table;
    uint32_t boot_loader_name, apm_table;
};

struct mb1_mmap_entry {
    uint32_t size;
    uint64_t base;
    uint64_t length;
    uint32_t type;
} __attribute__((packed));
#endif
