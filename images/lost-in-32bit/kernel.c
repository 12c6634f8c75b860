/* BareFlow-like kernel_main: serial first, then the allocator. */
#include "kernel.h"

void kernel_main(void) {
    serial_init();
    serial_puts("BareFlow kernel starting\n");
    serial_puts("serial: COM1 ready\n");
    if (malloc_get_heap_size() == 256 * 1024)
        serial_puts("heap: 256 KiB\n");
    serial_puts("malloc(64)...\n");
    char *p = malloc(64);
    if (!p) {
        serial_puts("malloc failed\n");
        return;
    }
    serial_puts("malloc returned ");
    serial_put_hex((uint64_t)p);
    serial_puts("\n");
    for (int i = 0; i < 64; i++)
        p[i] = (char)i;
    free(p);
    serial_puts("All tests passed\n");
    outb(0xF4, 0);
}
