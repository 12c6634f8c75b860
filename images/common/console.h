/* Report lines written to both outputs at once: COM1 and the VGA text screen. */
#ifndef TF_CONSOLE_H
#define TF_CONSOLE_H
#include "printf.h"
#include "types.h"

#define CONSOLE_LINE_MAX 128 /* COM1 gets the whole line, VGA the first 80 columns */

/* VGA attributes (background << 4 | foreground) */
#define ATTR_TEXT 0x07   /* light grey on black */
#define ATTR_BANNER 0x1F /* white on blue */
#define ATTR_INFO 0x0B   /* light cyan */
#define ATTR_LOADER 0x0A /* light green */
#define ATTR_PASS 0x2F   /* white on green */
#define ATTR_FAIL 0x4F   /* white on red */

extern char console_buf[CONSOLE_LINE_MAX];

/* Clear the screen to attr; serial=0 when COM1 failed its self-test (VGA only, then). */
void console_init(uint8_t attr, int serial);
/* One line: to COM1 with a line ending, and to the next screen row (scrolling when full). */
void console_line(uint8_t attr, const char *text);
/* Park the hardware cursor below the last line. */
void console_finish(void);

#define console_printf(attr, ...)                                                              \
    (ksnprintf(console_buf, CONSOLE_LINE_MAX, __VA_ARGS__), console_line((attr), console_buf))
#endif
