/* A small printf for freestanding kernels. */
#include "printf.h"
#include "serial.h"

typedef __builtin_va_list va_list;
#define va_start(ap, last) __builtin_va_start(ap, last)
#define va_arg(ap, type) __builtin_va_arg(ap, type)
#define va_end(ap) __builtin_va_end(ap)

struct out {
    char *buf;
    size_t size;
    size_t len;
};

static void put(struct out *o, char c) {
    if (o->buf) {
        if (o->len + 1 < o->size)
            o->buf[o->len] = c;
    } else {
        if (c == '\n')
            serial_putc('\r');
        serial_putc(c);
    }
    o->len++;
}

/* *v /= base, returning the remainder, with 32-bit operations only (a 32-bit kernel has no
 * libgcc for 64-bit division). */
static unsigned divmod(uint64_t *v, unsigned base) {
    uint32_t hi = (uint32_t)(*v >> 32), lo = (uint32_t)*v;
    uint32_t qhi = hi / base, r = hi % base, qlo = 0;
    for (int i = 31; i >= 0; i--) {
        r = (r << 1) | ((lo >> i) & 1);
        qlo <<= 1;
        if (r >= base) {
            r -= base;
            qlo |= 1;
        }
    }
    *v = ((uint64_t)qhi << 32) | qlo;
    return r;
}

static void put_num(struct out *o, uint64_t v, unsigned base, int width, char pad, int neg) {
    char tmp[24];
    int n = 0;
    do {
        unsigned d = divmod(&v, base);
        tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    } while (v);
    if (neg)
        tmp[n++] = '-';
    while (n < width--)
        put(o, pad);
    while (n)
        put(o, tmp[--n]);
}

static void format(struct out *o, const char *fmt, va_list ap) {
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(o, *fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0, lng = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            lng = 1;
            fmt++;
        }
        switch (*fmt) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            while (*s)
                put(o, *s++);
            break;
        }
        case 'c':
            put(o, (char)va_arg(ap, int));
            break;
        case 'd': {
            int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
            put_num(o, (uint64_t)(v < 0 ? -v : v), 10, width, pad, v < 0);
            break;
        }
        case 'u':
            put_num(o, lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10, width, pad, 0);
            break;
        case 'x':
            put_num(o, lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16, width, pad, 0);
            break;
        case 'p':
            put(o, '0');
            put(o, 'x');
            put_num(o, (uintptr_t)va_arg(ap, void *), 16, width, pad, 0);
            break;
        case '%':
            put(o, '%');
            break;
        default:
            put(o, '%');
            put(o, *fmt);
        }
    }
}

void kprintf(const char *fmt, ...) {
    struct out o = {0, 0, 0};
    va_list ap;
    va_start(ap, fmt);
    format(&o, fmt, ap);
    va_end(ap);
}

int ksnprintf(char *buf, size_t size, const char *fmt, ...) {
    struct out o = {buf, size, 0};
    va_list ap;
    va_start(ap, fmt);
    format(&o, fmt, ap);
    va_end(ap);
    if (size)
        buf[o.len < size ? o.len : size - 1] = 0;
    return (int)o.len;
}
