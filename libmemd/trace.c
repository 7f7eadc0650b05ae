/* trace.c - building and writing gctrace, scvg and warning lines with no malloc and no stdio. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

void buf_puts(struct buf *b, const char *s) {
        size_t n = strlen(s);

        if (n > b->cap - b->len)
                n = b->cap - b->len;
        memcpy(b->p + b->len, s, n);
        b->len += n;
}

static void buf_putc(struct buf *b, char c) {
        if (b->len < b->cap)
                b->p[b->len++] = c;
}

void buf_u64(struct buf *b, uint64_t v) {
        char tmp[24];
        int i = sizeof(tmp);

        do {
                tmp[--i] = '0' + v % 10;
                v /= 10;
        } while (v);
        while (i < (int) sizeof(tmp))
                buf_putc(b, tmp[i++]);
}

/* v with a decimal point placed `decimals` digits from the right, as Go's
 * itoaDiv: buf_fixed(b, 12, 3) -> "0.012". */
void buf_fixed(struct buf *b, uint64_t v, int decimals) {
        char tmp[32];
        int i = sizeof(tmp);

        for (int d = 0; d < decimals; d++) {
                tmp[--i] = '0' + v % 10;
                v /= 10;
        }
        if (decimals > 0)
                tmp[--i] = '.';
        do {
                tmp[--i] = '0' + v % 10;
                v /= 10;
        } while (v);
        while (i < (int) sizeof(tmp))
                buf_putc(b, tmp[i++]);
}

/* Go's fmtNSAsMS: whole ms from 10 ms up, else two significant digits with at
 * most three decimals. */
void buf_ms(struct buf *b, uint64_t ns) {
        uint64_t x;
        int dec = 3;

        if (ns >= 10000000) {
                buf_u64(b, ns / 1000000);
                return;
        }
        x = ns / 1000;
        if (x == 0) {
                buf_putc(b, '0');
                return;
        }
        while (x >= 100) {
                x /= 10;
                dec--;
        }
        buf_fixed(b, x, dec);
}

void buf_hex(struct buf *b, uint64_t v) {
        static const char digits[] = "0123456789abcdef";
        char tmp[16];
        int i = sizeof(tmp);

        do {
                tmp[--i] = digits[v & 15];
                v >>= 4;
        } while (v);
        buf_puts(b, "0x");
        while (i < (int) sizeof(tmp))
                buf_putc(b, tmp[i++]);
}

void trace_write(int fd, const char *s, size_t len) {
        int saved = errno;

        while (len > 0) {
                ssize_t n = write(fd, s, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                s += n;
                len -= n;
        }
        errno = saved;
}

void memd_warn(const char *msg) {
        char line[512];
        struct buf b = { line, 0, sizeof(line) - 1 };

        buf_puts(&b, "libmemd: ");
        buf_puts(&b, msg);
        line[b.len++] = '\n'; /* the byte kept free above: a long message is cut, never its newline */
        trace_write(STDERR_FILENO, line, b.len);
}

int64_t now_ns(int clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                return 0;
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}
