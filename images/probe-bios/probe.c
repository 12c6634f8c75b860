/* probe-bios: prints the firmware areas a kernel finds after GRUB hands over, one stable line
 * per item on COM1: the real-mode IVT, the BIOS data area, the EBDA, the ROM landmarks, whether
 * the low ROM window equals the top of the 4 GiB space, the option ROMs, the BIOS tables found
 * by signature, and whether writes to the ROM areas stick. 32-bit protected mode, paging off:
 * every address here is physical. docs/platform.md explains the output. */
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"

/* Reads and writes of physical memory through inline assembly, so that address 0 and the ROM
 * are ordinary addresses to the compiler. */
static inline uint8_t peek8(uint32_t address) {
    uint8_t v;
    __asm__ volatile("movb (%1), %0" : "=q"(v) : "r"(address) : "memory");
    return v;
}

static inline uint16_t peek16(uint32_t address) {
    uint16_t v;
    __asm__ volatile("movw (%1), %0" : "=r"(v) : "r"(address) : "memory");
    return v;
}

static inline void poke8(uint32_t address, uint8_t v) {
    __asm__ volatile("movb %0, (%1)" : : "q"(v), "r"(address) : "memory");
}

/* "<label> <address>: " then n bytes in hex */
static void dump(const char *label, uint32_t address, uint32_t n) {
    kprintf("%s %08x:", label, address);
    for (uint32_t i = 0; i < n; i++)
        kprintf(" %02x", peek8(address + i));
    kprintf("\n");
}

static uint32_t far_pointer_linear(uint32_t vector) {
    return ((uint32_t)peek16(vector * 4 + 2) << 4) + peek16(vector * 4);
}

static void print_ivt(void) {
    for (uint32_t v = 0; v < 256; v++)
        kprintf("ivt %02x %04x:%04x\n", v, peek16(v * 4 + 2), peek16(v * 4));
}

static void print_bda(void) {
    for (uint32_t a = 0x400; a < 0x500; a += 16)
        dump("bda", a, 16);
}

static void print_ebda(void) {
    uint32_t segment = peek16(0x40E), base = segment << 4;
    uint8_t size = peek8(base);
    kprintf("ebda segment %04x at %08x, size byte %02x (%u KiB)\n", segment, base, size, size);
    for (uint32_t a = base; a < base + 1024; a += 16)
        dump("ebda", a, 16);
}

static void print_rom_landmarks(void) {
    /* the reset vector, the date and the model byte; 0xFFFFF is the F-segment checksum byte,
     * printed as the sum below */
    dump("rom", 0xFFFF0, 15);
    dump("rom", 0xFFFFFFF0, 16);
    char date[9];
    for (int i = 0; i < 8; i++)
        date[i] = (char)peek8(0xFFFF5 + i);
    date[8] = 0;
    kprintf("rom date %08x: \"%s\"\n", 0xFFFF5, date);
    kprintf("rom model %08x: %02x\n", 0xFFFFE, peek8(0xFFFFE));
    /* the configuration table INT 15h AH=C0h returns (F000:E6F5) */
    dump("rom config-table", 0xFE6F5, 10);
    /* the diskette parameter table INT 1Eh points to */
    dump("rom int1e-table", far_pointer_linear(0x1E), 11);
    uint8_t sum = 0;
    for (uint32_t a = 0xF0000; a < 0x100000; a++)
        sum = (uint8_t)(sum + peek8(a));
    kprintf("rom checksum %08x-%08x: sum %02x\n", 0xF0000, 0xFFFFF, sum);
}

static void compare(uint32_t low, uint32_t high, uint32_t size) {
    uint32_t first = size;
    for (uint32_t i = 0; i < size; i++)
        if (peek8(low + i) != peek8(high + i)) {
            first = i;
            break;
        }
    kprintf("rom alias %08x-%08x vs %08x-%08x: ", low, low + size - 1, high, high + size - 1);
    if (first == size)
        kprintf("equal\n");
    else
        kprintf("differ, first at +%05x\n", first);
}

static void print_option_roms(void) {
    uint32_t int10 = far_pointer_linear(0x10);
    for (uint32_t a = 0xC0000; a < 0xF0000; a += 2048) {
        if (peek8(a) != 0x55 || peek8(a + 1) != 0xAA)
            continue;
        uint32_t size = peek8(a + 2) * 512u;
        uint8_t sum = 0;
        for (uint32_t i = 0; i < size; i++)
            sum = (uint8_t)(sum + peek8(a + i));
        kprintf("optionrom %08x: size byte %02x (%u bytes), checksum %s\n", a, peek8(a + 2), size,
                sum ? "invalid" : "valid");
        uint32_t pcir = a + peek16(a + 0x18);
        if (peek8(pcir) == 'P' && peek8(pcir + 1) == 'C' && peek8(pcir + 2) == 'I' &&
            peek8(pcir + 3) == 'R')
            dump("optionrom pcir", pcir, 24);
        if (int10 >= a && int10 < a + size)
            kprintf("optionrom %08x holds int10 %04x:%04x at +%04x\n", a, peek16(0x42),
                    peek16(0x40), int10 - a);
    }
}

/* the video save pointer table the BDA points to at 0x4A8, and the video parameter table
 * (64 bytes per mode) its first pointer names */
static void print_video_tables(void) {
    uint32_t save = ((uint32_t)peek16(0x4AA) << 4) + peek16(0x4A8);
    kprintf("video save-pointer-table %04x:%04x\n", peek16(0x4AA), peek16(0x4A8));
    dump("video save-pointer-table", save, 28);
    uint32_t params = ((uint32_t)peek16(save + 2) << 4) + peek16(save);
    if (!params)
        return;
    for (uint32_t i = 0; i < 29; i++) {
        char label[32];
        ksnprintf(label, sizeof label, "video parameters %02u", i);
        dump(label, params + i * 64, 64);
    }
}

static int match(uint32_t address, const char *signature) {
    for (; *signature; signature++, address++)
        if (peek8(address) != (uint8_t)*signature)
            return 0;
    return 1;
}

static int same(const char *a, const char *b) {
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

/* how many bytes of a table's header to print */
static uint32_t table_bytes(const char *signature, uint32_t address) {
    if (same(signature, "_SM_")) /* the length at +5 */
        return peek8(address + 5);
    if (same(signature, "_SM3_")) /* the length at +6 */
        return peek8(address + 6);
    if (same(signature, "RSD PTR ")) /* 20 bytes for revision 0, 36 from revision 2 */
        return peek8(address + 15) >= 2 ? 36 : 20;
    if (same(signature, "$PIR")) /* the 32-byte header */
        return 32;
    if (same(signature, "$PnP")) /* the length at +5 */
        return peek8(address + 5);
    return 16; /* _MP_ */
}

static void scan_tables(uint32_t start, uint32_t end) {
    static const char *const signatures[] = {"_MP_", "RSD PTR ", "_SM_", "_SM3_", "$PIR", "$PnP"};
    for (uint32_t s = 0; s < sizeof signatures / sizeof signatures[0]; s++) {
        int found = 0;
        for (uint32_t a = start; a < end; a += 16)
            if (match(a, signatures[s])) {
                uint32_t n = table_bytes(signatures[s], a);
                if (n > 36)
                    n = 36;
                char label[24];
                ksnprintf(label, sizeof label, "table \"%s\"", signatures[s]);
                dump(label, a, n);
                found = 1;
            }
        if (!found)
            kprintf("table \"%s\" %08x-%08x: none\n", signatures[s], start, end - 1);
    }
}

static void try_write(uint32_t address) {
    uint8_t before = peek8(address), pattern = (uint8_t)~before;
    poke8(address, pattern);
    uint8_t after = peek8(address);
    poke8(address, before);
    kprintf("write %08x: %s\n", address,
            after == pattern ? "sticks" : after == before ? "ignored" : "reads back neither value");
}

void kmain(uint32_t magic, uint32_t info) {
    (void)magic;
    (void)info;
    serial_init();
    kprintf("probe-bios: the firmware areas\n");
    print_ivt();
    print_bda();
    print_ebda();
    print_rom_landmarks();
    compare(0xF0000, 0xFFFF0000, 0x10000);
    compare(0xE0000, 0xFFFE0000, 0x20000);
    print_option_roms();
    print_video_tables();
    scan_tables(0xE0000, 0x100000);
    uint32_t ebda = (uint32_t)peek16(0x40E) << 4;
    scan_tables(ebda, ebda + 1024);
    try_write(0xF0000);
    try_write(0xE0000);
    try_write(0xC0000);
    try_write(0xCA000);
    try_write(0xE8000);
    kprintf("probe-bios: done\n");
    qemu_exit(0);
}
