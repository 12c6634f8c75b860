/* probe-tables: finds the MP floating pointer and the ACPI RSDP in the BIOS area, then prints
 * the MP configuration table and every ACPI table reachable from the RSDT (and the XSDT, if
 * there is one), 16 bytes a line, each line led by the table's name and address, and checks
 * every checksum. The DSDT is shown by its header and its length only. 32-bit protected mode,
 * paging off: every address here is physical. docs/platform.md explains the output. */
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"

static inline uint8_t peek8(uint32_t address) {
    uint8_t v;
    __asm__ volatile("movb (%1), %0" : "=q"(v) : "r"(address) : "memory");
    return v;
}

static uint32_t peek16(uint32_t address) {
    return peek8(address) | ((uint32_t)peek8(address + 1) << 8);
}

static uint32_t peek32(uint32_t address) {
    return peek16(address) | (peek16(address + 2) << 16);
}

static uint8_t sum(uint32_t address, uint32_t n) {
    uint8_t s = 0;
    for (uint32_t i = 0; i < n; i++)
        s = (uint8_t)(s + peek8(address + i));
    return s;
}

static int matches(uint32_t address, const char *signature) {
    for (uint32_t i = 0; signature[i]; i++)
        if (peek8(address + i) != (uint8_t)signature[i])
            return 0;
    return 1;
}

/* "<name> <address>: " and up to 16 bytes, for n bytes */
static void dump(const char *name, uint32_t address, uint32_t n) {
    for (uint32_t line = 0; line < n; line += 16) {
        kprintf("%s %08x:", name, address + line);
        for (uint32_t i = line; i < n && i < line + 16; i++)
            kprintf(" %02x", peek8(address + i));
        kprintf("\n");
    }
}

static void report_sum(const char *name, uint32_t address, uint32_t n) {
    uint8_t s = sum(address, n);
    kprintf("%s %08x: checksum over %u bytes: sum %02x %s\n", name, address, n, s,
            s == 0 ? "ok" : "BAD");
}

static uint32_t find(const char *signature, uint32_t from, uint32_t to) {
    for (uint32_t a = from; a < to; a += 16)
        if (matches(a, signature))
            return a;
    return 0;
}

static void print_mp(void) {
    uint32_t fp = find("_MP_", 0xE0000, 0x100000);
    if (!fp) {
        kprintf("mp: no floating pointer in 0xE0000-0xFFFFF\n");
        return;
    }
    uint32_t length = peek8(fp + 8) * 16u;
    kprintf("mp floating pointer at %08x, %u bytes, spec 1.%u, table at %08x, features %02x %02x\n",
            fp, length, peek8(fp + 9), peek32(fp + 4), peek8(fp + 11), peek8(fp + 12));
    dump("_MP_", fp, length);
    report_sum("_MP_", fp, length);
    uint32_t table = peek32(fp + 4);
    if (!table || !matches(table, "PCMP")) {
        kprintf("mp: no PCMP table\n");
        return;
    }
    uint32_t base = peek16(table + 4), extended = peek16(table + 0x28);
    kprintf("mp configuration table at %08x, base %u bytes, %u entries, extended %u bytes, "
            "local APIC at %08x\n",
            table, base, peek16(table + 0x22), extended, peek32(table + 0x24));
    dump("PCMP", table, base + extended);
    report_sum("PCMP", table, base);
    if (extended) {
        uint8_t s = (uint8_t)(sum(table + base, extended) + peek8(table + 0x2A));
        kprintf("PCMP %08x: extended checksum over %u bytes: sum %02x %s\n", table + base,
                extended, s, s == 0 ? "ok" : "BAD");
    }
}

static void name_of(uint32_t address, char *name) {
    for (int i = 0; i < 4; i++) {
        uint8_t c = peek8(address + i);
        name[i] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
    }
    name[4] = 0;
}

static void print_sdt(uint32_t address, int whole);

static void print_facs(uint32_t address) {
    char name[5];
    name_of(address, name);
    uint32_t length = peek32(address + 4);
    kprintf("table %s at %08x, %u bytes (no checksum)\n", name, address, length);
    dump(name, address, length > 256 ? 256 : length);
}

/* the tables a FADT points to: the FACS (offset 36) and the DSDT (offset 40) */
static void print_fadt_children(uint32_t fadt) {
    uint32_t facs = peek32(fadt + 36), dsdt = peek32(fadt + 40);
    if (facs)
        print_facs(facs);
    if (dsdt)
        print_sdt(dsdt, 0);
}

static void print_sdt(uint32_t address, int whole) {
    char name[5];
    name_of(address, name);
    uint32_t length = peek32(address + 4);
    kprintf("table %s at %08x, %u bytes, revision %u\n", name, address, length,
            peek8(address + 8));
    if (length < 36 || length > 0x100000) {
        kprintf("%s: implausible length\n", name);
        return;
    }
    dump(name, address, whole ? length : 36);
    report_sum(name, address, length);
    if (matches(address, "FACP"))
        print_fadt_children(address);
}

static void print_acpi(void) {
    uint32_t rsdp = find("RSD PTR ", 0xE0000, 0x100000);
    if (!rsdp) {
        kprintf("acpi: no RSDP in 0xE0000-0xFFFFF\n");
        return;
    }
    uint8_t revision = peek8(rsdp + 15);
    kprintf("acpi RSDP at %08x, revision %u, RSDT at %08x\n", rsdp, revision, peek32(rsdp + 16));
    uint32_t length = revision >= 2 ? peek32(rsdp + 20) : 20;
    dump("RSDP", rsdp, length);
    report_sum("RSDP", rsdp, 20);
    if (revision >= 2)
        report_sum("RSDP", rsdp, length);
    uint32_t rsdt = peek32(rsdp + 16);
    print_sdt(rsdt, 1);
    uint32_t entries = (peek32(rsdt + 4) - 36) / 4;
    for (uint32_t i = 0; i < entries; i++)
        print_sdt(peek32(rsdt + 36 + 4 * i), 1);
    if (revision >= 2 && peek32(rsdp + 28) == 0 && peek32(rsdp + 24)) {
        uint32_t xsdt = peek32(rsdp + 24);
        print_sdt(xsdt, 1);
    }
}

void kmain(uint32_t magic, uint32_t info) {
    (void)magic;
    (void)info;
    serial_init();
    kprintf("probe-tables: the MP and ACPI tables\n");
    print_mp();
    print_acpi();
    kprintf("probe-tables: done\n");
    qemu_exit(0);
}
