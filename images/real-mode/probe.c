/* real-mode: prints what the CPU gave the real-mode handlers of real.S, then takes a triple
 * fault in real mode. Every value is an offset or a flag word, the same on every run. */
#include "../common/io.h"
#include "../common/printf.h"
#include "../common/serial.h"

void run_real_mode(void);
void real_mode_triple_fault(void);

struct results {
    uint32_t pm16_eax;
    uint16_t triple, ax_after_int80, flags_after_iret, int80_at, bp_at, de_at, ud_at;
    uint16_t int81_dx, sp_before_gp, gp_at, irq_count, irq_ip, irq_flags, hlt_at;
    uint16_t int80_flags_in, int80_ip, int80_cs, int80_flags;
    uint16_t bp_ip, de_ip, de_count, ud_ip, gp_sp, gp_ip;
} __attribute__((packed));

void kmain(uint32_t magic, uint32_t info) {
    (void)info;
    serial_init();
    kprintf("real-mode probe (magic 0x%x)\n", magic);
    run_real_mode();
    volatile struct results *r = (volatile struct results *)0x7E00;
    kprintf("16-bit protected mode far call: eax=0x%x\n", r->pm16_eax);
    kprintf("INT 0x80 at 0800:%04x: handler got IP=%04x CS=%04x FLAGS=%04x, FLAGS inside %04x\n",
            r->int80_at, r->int80_ip, r->int80_cs, r->int80_flags, r->int80_flags_in);
    kprintf("  returned AX=%04x FLAGS=%04x\n", r->ax_after_int80, r->flags_after_iret);
    kprintf("INT3 at %04x: frame IP=%04x\n", r->bp_at, r->bp_ip);
    kprintf("#DE at %04x: frame IP=%04x\n", r->de_at, r->de_ip);
    kprintf("#UD at %04x: frame IP=%04x\n", r->ud_at, r->ud_ip);
    kprintf("#DE inside INT 0x81's handler: DX=%04x, #DE taken %u times\n", r->int81_dx,
            r->de_count);
    kprintf("INT 0x80 beyond IDTR.limit at %04x: #GP frame IP=%04x, SP %04x -> %04x\n", r->gp_at,
            r->gp_ip, r->sp_before_gp, r->gp_sp);
    kprintf("IRQ0 in HLT at %04x: %u interrupt(s), frame IP=%04x FLAGS=%04x\n", r->hlt_at,
            r->irq_count, r->irq_ip, r->irq_flags);
    kprintf("now a triple fault in real mode\n");
    real_mode_triple_fault();
    kprintf("still running: the triple fault did not happen\n");
    qemu_exit(1);
}
