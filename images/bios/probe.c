/* images/bios: a 64-bit kernel that asks the BIOS for what real kernels ask it from their 16-bit
 * trampolines, and prints every answer on COM1: all output registers and the flags, the
 * buffers the BIOS fills, and the BIOS data area and screen state the calls change.
 *
 * The trampoline (trampoline.S) drops from long mode to real mode and back for each call. The
 * default way to call is INT n; "how" 1 calls PUSHF + a far call through the IVT entry, as code
 * that chains to a BIOS handler does (both reach the same handler with the same frame).
 *
 * Values that depend on the host's clock are not printed raw: the tick count of INT 1Ah AH=00h
 * is compared with the BIOS data area's counter (the same under QEMU and here, whatever the
 * count), the RTC seconds are checked to be valid BCD; the hours and minutes are printed (the
 * clock starts at midnight and a run lasts seconds). docs/bios.md lists what each line means. */
#include "../common/cpu64.h"
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"

struct bios_regs {
    uint32_t eax, ebx, ecx, edx, esi, edi, ebp;
    uint16_t ds, es, flags;
    uint8_t vector, how;
} __attribute__((packed));

struct bios_out {
    uint32_t eax, ebx, ecx, edx, esi, edi, ebp;
    uint16_t ds, es, flags;
} __attribute__((packed));

/* the trampoline as assembled (in .data) and where it runs: its copy at TRAMP */
#define TRAMP 0x8000
extern char tramp_start[], tramp_end[], bios_call[], bios_in[], bios_out[];
static void *tramp_copy(char *symbol) { return (void *)(TRAMP + (symbol - tramp_start)); }
#define IN (*(struct bios_regs *)tramp_copy(bios_in))
#define OUT (*(struct bios_out *)tramp_copy(bios_out))

#define CF 0x0001
#define ZF 0x0040
#define FLAGS_SHOWN 0x0CD5 /* CF PF AF ZF SF DF OF */
#define BUF 0x6000         /* a buffer below the trampoline's stack, ES:DI = 0000:6000 */

/* physical memory below 1 MiB (identity-mapped), through a pointer the compiler cannot see is 0 */
static volatile uint8_t *phys(uint32_t a) {
    uintptr_t p = a;
    __asm__("" : "+r"(p));
    return (volatile uint8_t *)p;
}
#define low (phys(0))

static uint8_t peek8(uint32_t a) { return *phys(a); }
static uint16_t peek16(uint32_t a) { return low[a] | (uint16_t)low[a + 1] << 8; }
static uint32_t peek32(uint32_t a) { return peek16(a) | (uint32_t)peek16(a + 2) << 16; }
static uint32_t far_linear(uint32_t segoff) { return ((segoff >> 16) << 4) + (segoff & 0xFFFF); }

/* How the calls reach the BIOS: 0 INT n, 1 PUSHF + far call through the IVT entry (the output
 * is the same either way under QEMU). */
#define CALL_HOW 0

static void clear_in(void) {
    uint8_t *p = (uint8_t *)&IN;
    for (unsigned i = 0; i < sizeof IN; i++)
        p[i] = 0;
    IN.flags = 0x0002;
    IN.how = CALL_HOW;
}

static void call(uint8_t vector) {
    IN.vector = vector;
    ((void (*)(void))tramp_copy(bios_call))();
}

static void show(const char *what) {
    struct bios_out *o = &OUT;
    kprintf("%s: eax=%08x ebx=%08x ecx=%08x edx=%08x esi=%08x edi=%08x ebp=%08x ds=%04x es=%04x "
            "flags=%04x cf=%d\n",
            what, o->eax, o->ebx, o->ecx, o->edx, o->esi, o->edi, o->ebp, o->ds, o->es,
            o->flags & FLAGS_SHOWN, o->flags & CF);
}

static void fill(uint32_t at, uint8_t value, unsigned n) {
    for (unsigned i = 0; i < n; i++)
        low[at + i] = value;
}

static void print_string(const char *what, uint32_t segoff) {
    uint32_t at = far_linear(segoff);
    kprintf("%s %04x:%04x \"", what, segoff >> 16, segoff & 0xFFFF);
    for (int i = 0; i < 64 && peek8(at + i); i++)
        kprintf("%c", peek8(at + i));
    kprintf("\"\n");
}

static uint8_t crtc(uint8_t index) {
    outb(0x3D4, index);
    return inb(0x3D5);
}

static void video(void) {
    clear_in();
    IN.eax = 0x0003;
    call(0x10);
    show("int10 ax=0003 set mode 3");
    const char *text = "BIOS\r\nok";
    for (int i = 0; text[i]; i++) {
        clear_in();
        IN.eax = 0x0E00 | (uint8_t)text[i];
        IN.ebx = 0x0007;
        call(0x10);
        if (i == 0)
            show("int10 ah=0e teletype 'B'");
    }
    kprintf("screen row 0:");
    for (int i = 0; i < 6; i++)
        kprintf(" %02x%02x", peek8(0xB8000 + 2 * i), peek8(0xB8001 + 2 * i));
    kprintf("\nscreen row 1:");
    for (int i = 0; i < 4; i++)
        kprintf(" %02x%02x", peek8(0xB80A0 + 2 * i), peek8(0xB80A1 + 2 * i));
    kprintf("\nbda cursor %04x crtc cursor %02x%02x shape %02x %02x\n", peek16(0x450), crtc(0x0E),
            crtc(0x0F), crtc(0x0A), crtc(0x0B));
    clear_in();
    IN.eax = 0x0300;
    call(0x10);
    show("int10 ah=03 get cursor");
    clear_in();
    IN.eax = 0x0200;
    IN.edx = 0x0205;
    call(0x10);
    show("int10 ah=02 set cursor 2,5");
    kprintf("bda cursor %04x crtc cursor %02x%02x\n", peek16(0x450), crtc(0x0E), crtc(0x0F));
    clear_in();
    IN.eax = 0x0100;
    IN.ecx = 0x0D0E;
    call(0x10);
    show("int10 ah=01 cursor shape 0d0e");
    kprintf("bda cursor type %04x crtc shape %02x %02x\n", peek16(0x460), crtc(0x0A), crtc(0x0B));
    clear_in();
    IN.eax = 0x0100;
    IN.ecx = 0x0607;
    call(0x10);
    show("int10 ah=01 cursor shape 0607");
    kprintf("bda cursor type %04x crtc shape %02x %02x\n", peek16(0x460), crtc(0x0A), crtc(0x0B));
    clear_in();
    IN.eax = 0x0300;
    call(0x10);
    show("int10 ah=03 get cursor");
    clear_in();
    IN.eax = 0x0F00;
    call(0x10);
    show("int10 ah=0f get mode");
    static const uint8_t fonts[] = {0, 1, 2, 3, 4, 6};
    for (unsigned i = 0; i < sizeof fonts; i++) {
        char what[40];
        ksnprintf(what, sizeof what, "int10 ax=1130 bh=%02x font", fonts[i]);
        clear_in();
        IN.eax = 0x1130;
        IN.ebx = (uint32_t)fonts[i] << 8;
        call(0x10);
        show(what);
    }
}

static void cells(const char *what, int row, int col, int n) {
    kprintf("%s row %d:", what, row);
    for (int i = 0; i < n; i++) {
        uint32_t at = 0xB8000 + 160 * row + 2 * (col + i);
        kprintf(" %02x%02x", peek8(at), peek8(at + 1));
    }
    kprintf("\n");
}

/* the other text functions: write with attributes, read back, strings, scrolling, pages */
static void text(void) {
    clear_in();
    IN.eax = 0x1A00;
    call(0x10);
    show("int10 ax=1a00 display combination");
    clear_in();
    IN.eax = 0x1200;
    IN.ebx = 0x0010;
    call(0x10);
    show("int10 ah=12 bl=10 ega information");
    clear_in();
    IN.eax = 0x0200;
    IN.edx = 0x0203;
    call(0x10);
    clear_in();
    IN.eax = 0x0958;
    IN.ebx = 0x001E;
    IN.ecx = 3;
    call(0x10);
    show("int10 ah=09 write x3 attribute 1e");
    clear_in();
    IN.eax = 0x0A79;
    IN.ecx = 1;
    call(0x10);
    show("int10 ah=0a write");
    clear_in();
    IN.eax = 0x0800;
    call(0x10);
    show("int10 ah=08 read");
    cells("screen", 2, 0, 8);
    kprintf("bda cursor %04x\n", peek16(0x450));
    const char *str = "ab\rcd\n";
    for (int i = 0; str[i]; i++)
        low[BUF + i] = str[i];
    clear_in();
    IN.eax = 0x1301;
    IN.ebx = 0x002F;
    IN.ecx = 6;
    IN.edx = 0x0304;
    IN.ebp = BUF;
    call(0x10);
    show("int10 ax=1301 write string");
    cells("screen", 3, 0, 8);
    kprintf("bda cursor %04x\n", peek16(0x450));
    const char pairs[] = {'P', 0x4E, 'Q', 0x1F};
    for (int i = 0; i < 4; i++)
        low[BUF + i] = pairs[i];
    clear_in();
    IN.eax = 0x1302;
    IN.ecx = 2;
    IN.edx = 0x0500;
    IN.ebp = BUF;
    call(0x10);
    show("int10 ax=1302 write string with attributes");
    cells("screen", 5, 0, 4);
    kprintf("bda cursor %04x\n", peek16(0x450));
    clear_in();
    IN.eax = 0x0601;
    IN.ebx = 0x1700;
    IN.ecx = 0x0201;
    IN.edx = 0x0406;
    call(0x10);
    show("int10 ax=0601 scroll up");
    for (int row = 1; row <= 5; row++)
        cells("scrolled up", row, 0, 8);
    clear_in();
    IN.eax = 0x0702;
    IN.ebx = 0x7100;
    IN.ecx = 0x0100;
    IN.edx = 0x0503;
    call(0x10);
    show("int10 ax=0702 scroll down");
    for (int row = 0; row <= 6; row++)
        cells("scrolled down", row, 0, 8);
    clear_in();
    IN.eax = 0x0600;
    IN.ebx = 0x0700;
    IN.ecx = 0x0000;
    IN.edx = 0x184F;
    call(0x10);
    show("int10 ax=0600 clear");
    cells("cleared", 3, 0, 4);
    clear_in();
    IN.eax = 0x0501;
    call(0x10);
    show("int10 ax=0501 page 1");
    kprintf("page 1: crtc start %02x%02x cursor %02x%02x bda page %02x start %04x\n", crtc(0x0C),
            crtc(0x0D), crtc(0x0E), crtc(0x0F), peek8(0x462), peek16(0x44E));
    clear_in();
    IN.eax = 0x0F00;
    call(0x10);
    show("int10 ah=0f get mode on page 1");
    clear_in();
    IN.eax = 0x0500;
    call(0x10);
    kprintf("page 0: crtc start %02x%02x cursor %02x%02x bda page %02x start %04x\n", crtc(0x0C),
            crtc(0x0D), crtc(0x0E), crtc(0x0F), peek8(0x462), peek16(0x44E));
}

static void vbe(void) {
    fill(BUF, 0xAA, 512);
    low[BUF] = 'V', low[BUF + 1] = 'B', low[BUF + 2] = 'E', low[BUF + 3] = '2';
    clear_in();
    IN.eax = 0x4F00;
    IN.edi = BUF;
    call(0x10);
    show("int10 ax=4f00 vbe info");
    kprintf("vbe signature %c%c%c%c version %04x capabilities %08x memory %u x 64k\n",
            peek8(BUF), peek8(BUF + 1), peek8(BUF + 2), peek8(BUF + 3), peek16(BUF + 4),
            peek32(BUF + 10), peek16(BUF + 18));
    print_string("vbe oem", peek32(BUF + 6));
    print_string("vbe vendor", peek32(BUF + 22));
    print_string("vbe product", peek32(BUF + 26));
    print_string("vbe revision", peek32(BUF + 30));
    kprintf("vbe oem software revision %04x\n", peek16(BUF + 20));
    uint32_t modes = peek32(BUF + 14);
    kprintf("vbe modes at %04x:%04x:", modes >> 16, modes & 0xFFFF);
    uint32_t at = far_linear(modes);
    int n = 0;
    for (; n < 200 && peek16(at + 2 * n) != 0xFFFF; n++) {
        if (n % 16 == 0)
            kprintf("\nvbe modes:");
        kprintf(" %04x", peek16(at + 2 * n));
    }
    kprintf("\nvbe mode count %d\n", n);
    uint32_t sum = 0;
    for (int i = 0; i < 512; i++)
        sum = sum * 31 + peek8(BUF + i);
    kprintf("vbe info block hash %08x\n", sum);
    static const uint16_t asked[] = {0x0100, 0x0112, 0x0118, 0x4118, 0x0144, 0x0003, 0x0013, 0x0200};
    for (unsigned m = 0; m < sizeof asked / sizeof asked[0]; m++) {
        char what[40];
        fill(BUF, 0xAA, 256);
        clear_in();
        IN.eax = 0x4F01;
        IN.ecx = asked[m];
        IN.edi = BUF;
        call(0x10);
        ksnprintf(what, sizeof what, "int10 ax=4f01 cx=%04x vbe mode info", asked[m]);
        show(what);
        for (int i = 0; i < 256; i += 32) {
            kprintf("vbe mode %04x %02x:", asked[m], i);
            for (int j = 0; j < 32; j++)
                kprintf("%02x", peek8(BUF + i + j));
            kprintf("\n");
        }
    }
    clear_in();
    IN.eax = 0x4F03;
    call(0x10);
    show("int10 ax=4f03 vbe current mode");
    clear_in();
    IN.eax = 0x4F02;
    IN.ebx = 0x0003;
    call(0x10);
    show("int10 ax=4f02 bx=0003 vbe set mode 3");
    kprintf("bda mode %02x video control %02x vbe mode %04x\n", peek8(0x449), peek8(0x487),
            peek16(0x4BA));
    clear_in();
    IN.eax = 0x4F03;
    call(0x10);
    show("int10 ax=4f03 vbe current mode");
    clear_in();
    IN.eax = 0x4F02;
    IN.ebx = 0x0234;
    call(0x10);
    show("int10 ax=4f02 bx=0234 vbe set an unknown mode");
    clear_in();
    IN.eax = 0x4F15;
    call(0x10);
    show("int10 ax=4f15 bl=00 ddc capabilities");
    for (int block = 0; block < 3; block++) {
        char what[40];
        fill(BUF, 0xAA, 128);
        clear_in();
        IN.eax = 0x4F15;
        IN.ebx = 0x0001;
        IN.edx = block;
        IN.edi = BUF;
        call(0x10);
        ksnprintf(what, sizeof what, "int10 ax=4f15 bl=01 edid block %d", block);
        show(what);
        for (int i = 0; i < 128; i += 32) {
            kprintf("edid %d %02x:", block, i);
            for (int j = 0; j < 32; j++)
                kprintf("%02x", peek8(BUF + i + j));
            kprintf("\n");
        }
    }
}

static void disk(void) {
    clear_in();
    IN.eax = 0x0800;
    IN.edx = 0x0080;
    call(0x13);
    show("int13 ah=08 dl=80 parameters");
    kprintf("bda disk status %02x\n", peek8(0x474));
    clear_in();
    IN.eax = 0x4100;
    IN.ebx = 0x55AA;
    IN.edx = 0x0080;
    call(0x13);
    show("int13 ah=41 dl=80 edd check");
    clear_in();
    IN.eax = 0x4800;
    IN.edx = 0x0080;
    IN.esi = BUF;
    fill(BUF, 0, 0x4A);
    low[BUF] = 0x1E;
    call(0x13);
    show("int13 ah=48 dl=80 edd parameters");
    clear_in();
    IN.eax = 0x1500;
    IN.edx = 0x0080;
    call(0x13);
    show("int13 ah=15 dl=80 drive type");
    clear_in();
    IN.eax = 0x0800;
    IN.edx = 0x0000;
    call(0x13);
    show("int13 ah=08 dl=00 parameters");
    clear_in();
    IN.eax = 0x1500;
    IN.edx = 0x0000;
    call(0x13);
    show("int13 ah=15 dl=00 drive type");
    kprintf("bda diskette status %02x disk status %02x\n", peek8(0x441), peek8(0x474));
    /* the empty diskette drive: reset, read a sector, the status */
    clear_in();
    IN.eax = 0x0000;
    call(0x13);
    show("int13 ah=00 dl=00 reset");
    fill(BUF, 0xAA, 16);
    clear_in();
    IN.eax = 0x0201;
    IN.ecx = 0x0001;
    IN.ebx = BUF;
    call(0x13);
    show("int13 ah=02 dl=00 read");
    kprintf("read buffer %02x %02x, bda diskette status %02x\n", peek8(BUF), peek8(BUF + 15),
            peek8(0x441));
    clear_in();
    IN.eax = 0x0100;
    call(0x13);
    show("int13 ah=01 dl=00 status");
    clear_in();
    IN.eax = 0x1600;
    call(0x13);
    show("int13 ah=16 dl=00 change line");
    clear_in();
    IN.eax = 0x0800;
    IN.edx = 0x0001;
    call(0x13);
    show("int13 ah=08 dl=01 parameters");
}

static void memory(void) {
    uint32_t next = 0;
    for (int i = 0; i < 32; i++) {
        char what[40];
        fill(BUF, 0xAA, 24);
        clear_in();
        IN.eax = 0xE820;
        IN.ebx = next;
        IN.ecx = 24;
        IN.edx = 0x534D4150;
        IN.edi = BUF;
        call(0x15);
        ksnprintf(what, sizeof what, "int15 eax=e820 ebx=%u", next);
        show(what);
        if (OUT.flags & CF)
            break;
        kprintf("e820 %08x%08x %08x%08x type %u (+20: %02x)\n", peek32(BUF + 4), peek32(BUF),
                peek32(BUF + 12), peek32(BUF + 8), peek32(BUF + 16), peek8(BUF + 20));
        next = OUT.ebx;
        if (!next)
            break;
    }
    clear_in();
    IN.eax = 0xE820;
    IN.ecx = 20;
    IN.edx = 0x12345678;
    IN.edi = BUF;
    call(0x15);
    show("int15 eax=e820 without 'SMAP'");
    clear_in();
    IN.eax = 0xE801;
    call(0x15);
    show("int15 ax=e801");
    clear_in();
    IN.eax = 0x8800;
    call(0x15);
    show("int15 ah=88");
    clear_in();
    IN.eax = 0x2402;
    call(0x15);
    show("int15 ax=2402 a20 status");
    clear_in();
    IN.eax = 0x2403;
    call(0x15);
    show("int15 ax=2403 a20 support");
    clear_in();
    IN.eax = 0x2401;
    call(0x15);
    show("int15 ax=2401 a20 on");
    clear_in();
    IN.eax = 0xC000;
    call(0x15);
    show("int15 ah=c0 configuration");
    kprintf("config table:");
    for (int i = 0; i < 10; i++)
        kprintf(" %02x", peek8(((uint32_t)OUT.es << 4) + (OUT.ebx & 0xFFFF) + i));
    kprintf("\n");
    clear_in();
    IN.eax = 0x5300;
    call(0x15);
    show("int15 ax=5300 apm check");
    clear_in();
    IN.eax = 0x9900;
    IN.flags = 0x0002;
    call(0x15);
    show("int15 ah=99 unsupported");
}

static int bcd(uint8_t v, uint8_t max) { return (v & 0xF) <= 9 && (v >> 4) <= 9 && v <= max; }

static void misc(void) {
    clear_in();
    call(0x11);
    show("int11 equipment");
    clear_in();
    call(0x12);
    show("int12 memory size");
    clear_in();
    IN.eax = 0x0100;
    IN.flags = 0x0002;
    call(0x16);
    show("int16 ah=01 key status");
    clear_in();
    IN.eax = 0x1100;
    call(0x16);
    show("int16 ah=11 key status");
    clear_in();
    IN.eax = 0x0200;
    call(0x16);
    show("int16 ah=02 shift flags");
    clear_in();
    IN.eax = 0x0000;
    call(0x1A);
    uint32_t ticks = (OUT.ecx & 0xFFFF) << 16 | (OUT.edx & 0xFFFF);
    kprintf("int1a ah=00 ticks: same as bda %d, below a day %d, al=%02x ah=%02x cf=%d\n",
            ticks == peek32(0x46C), ticks < 0x1800B0, OUT.eax & 0xFF,
            (OUT.eax >> 8) & 0xFF, OUT.flags & CF);
    clear_in();
    IN.eax = 0x0200;
    call(0x1A);
    kprintf("int1a ah=02 time: hours %02x minutes %02x seconds bcd %d dl=%02x al=%02x ah=%02x "
            "cf=%d\n",
            (OUT.ecx >> 8) & 0xFF, OUT.ecx & 0xFF, bcd((OUT.edx >> 8) & 0xFF, 0x59),
            OUT.edx & 0xFF, OUT.eax & 0xFF, (OUT.eax >> 8) & 0xFF,
            OUT.flags & CF);
    clear_in();
    IN.eax = 0x0400;
    call(0x1A);
    show("int1a ah=04 date");
}

void isr_handler(struct frame *f) {
    kprintf("unexpected exception %lu error 0x%lx at 0x%lx\n", f->vector, f->error, f->rip);
    qemu_exit(1);
}

void kmain(uint32_t magic, uint32_t info) {
    (void)magic, (void)info;
    if (!serial_init())
        qemu_exit(2);
    idt_install();
    kprintf("bios: BIOS services from a real-mode trampoline\n");
    char *dst = tramp_copy(tramp_start);
    for (long i = 0; i < tramp_end - tramp_start; i++)
        dst[i] = tramp_start[i];
    video();
    text();
    vbe();
    disk();
    memory();
    misc();
    /* two calls the other way (PUSHF + far call through the IVT entry): the same answers */
    clear_in();
    IN.how = !CALL_HOW;
    call(0x12);
    show("int12 again, the other way");
    clear_in();
    IN.how = !CALL_HOW;
    IN.eax = 0xE801;
    call(0x15);
    show("int15 ax=e801 again, the other way");
    kprintf("bios: done\n");
    qemu_exit(0);
}
