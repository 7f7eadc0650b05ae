/* test-trace.c - Check suite for trace.c: malloc-free number formatting (Go's fmtNSAsMS / itoaDiv), bounded buffers, warnings. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "capture.h"
#include "unit.h"

/* A buffer with guard bytes after its capacity: nothing may land there. */
struct guarded {
        char mem[128];
        struct buf b;
};

static void guarded_init(struct guarded *g, size_t cap) {
        ck_assert_uint_le(cap, sizeof(g->mem) - 16);
        memset(g->mem, '#', sizeof(g->mem));
        g->b = (struct buf) { g->mem, 0, cap };
}

/* The text so far, NUL-terminated in a static copy; checks the guard. */
static const char *guarded_str(struct guarded *g) {
        static char out[sizeof(g->mem) + 1];

        ck_assert_uint_le(g->b.len, g->b.cap);
        for (size_t i = g->b.cap; i < sizeof(g->mem); i++)
                ck_assert_msg(g->mem[i] == '#', "byte %zu past capacity %zu was written", i, g->b.cap);
        memcpy(out, g->mem, g->b.len);
        out[g->b.len] = 0;
        return out;
}

static void expect_ms(uint64_t ns, const char *want) {
        struct guarded g;

        guarded_init(&g, 64);
        buf_ms(&g.b, ns);
        ck_assert_msg(!strcmp(guarded_str(&g), want), "buf_ms(%llu) = \"%s\", want \"%s\"",
                      (unsigned long long) ns, guarded_str(&g), want);
}

static void expect_fixed(uint64_t v, int decimals, const char *want) {
        struct guarded g;

        guarded_init(&g, 64);
        buf_fixed(&g.b, v, decimals);
        ck_assert_msg(!strcmp(guarded_str(&g), want), "buf_fixed(%llu, %d) = \"%s\", want \"%s\"",
                      (unsigned long long) v, decimals, guarded_str(&g), want);
}

/* Expected values are what Go's runtime.fmtNSAsMS prints for the same ns. */
START_TEST(test_ms_go) {
        expect_ms(12000, "0.012");
        expect_ms(430000, "0.43");
        expect_ms(7800000, "7.8");
        expect_ms(59000000, "59");
        expect_ms(517000000, "517");
        expect_ms(0, "0");
        expect_ms(999, "0");
        expect_ms(1000, "0.001");
        expect_ms(1999, "0.001");
        expect_ms(10000, "0.010");
        expect_ms(99999, "0.099");
        expect_ms(100000, "0.10");
        expect_ms(460000, "0.46");
        expect_ms(999999, "0.99");
        expect_ms(1000000, "1.0");
        expect_ms(1500000, "1.5");
        expect_ms(9999999, "9.9");
        expect_ms(10000000, "10");
        expect_ms(10999999, "10");
        expect_ms(123456789012ULL, "123456");
        expect_ms(UINT64_MAX, "18446744073709");
}
END_TEST

START_TEST(test_fixed) {
        expect_fixed(25551, 3, "25.551");
        expect_fixed(12, 3, "0.012");
        expect_fixed(0, 3, "0.000");
        expect_fixed(1000, 3, "1.000");
        expect_fixed(7, 0, "7");
        expect_fixed(0, 0, "0");
        expect_fixed(78, 1, "7.8");
        expect_fixed(UINT64_MAX, 3, "18446744073709551.615");
        expect_fixed(UINT64_MAX, 20, "0.18446744073709551615");
}
END_TEST

START_TEST(test_u64_hex_puts) {
        struct guarded g;

        guarded_init(&g, 64);
        buf_u64(&g.b, 0);
        ck_assert_str_eq(guarded_str(&g), "0");

        guarded_init(&g, 64);
        buf_u64(&g.b, UINT64_MAX);
        ck_assert_str_eq(guarded_str(&g), "18446744073709551615");

        guarded_init(&g, 64);
        buf_u64(&g.b, 1234567890);
        ck_assert_str_eq(guarded_str(&g), "1234567890");

        guarded_init(&g, 64);
        buf_hex(&g.b, 0);
        ck_assert_str_eq(guarded_str(&g), "0x0");

        guarded_init(&g, 64);
        buf_hex(&g.b, 0xdeadbeefULL);
        ck_assert_str_eq(guarded_str(&g), "0xdeadbeef");

        guarded_init(&g, 64);
        buf_hex(&g.b, UINT64_MAX);
        ck_assert_str_eq(guarded_str(&g), "0xffffffffffffffff");

        guarded_init(&g, 64);
        buf_hex(&g.b, 0x7f0012345678ULL);
        ck_assert_str_eq(guarded_str(&g), "0x7f0012345678");

        /* Appends. */
        guarded_init(&g, 64);
        buf_puts(&g.b, "gc ");
        buf_u64(&g.b, 21);
        buf_puts(&g.b, " @");
        buf_fixed(&g.b, 25551, 3);
        buf_puts(&g.b, "s ");
        buf_hex(&g.b, 255);
        buf_puts(&g.b, "");
        ck_assert_str_eq(guarded_str(&g), "gc 21 @25.551s 0xff");
}
END_TEST

/* Every writer stops at the capacity, whatever it was asked to write. */
START_TEST(test_truncation) {
        struct guarded g;

        guarded_init(&g, 5);
        buf_puts(&g.b, "hello, world");
        ck_assert_str_eq(guarded_str(&g), "hello");
        buf_puts(&g.b, "more");
        buf_u64(&g.b, 42);
        buf_hex(&g.b, 42);
        buf_fixed(&g.b, 42, 3);
        buf_ms(&g.b, 5000000);
        ck_assert_str_eq(guarded_str(&g), "hello");

        guarded_init(&g, 7);
        buf_puts(&g.b, "ab");
        buf_u64(&g.b, UINT64_MAX);
        ck_assert_str_eq(guarded_str(&g), "ab18446");

        guarded_init(&g, 6);
        buf_puts(&g.b, "x");
        buf_hex(&g.b, UINT64_MAX);
        ck_assert_str_eq(guarded_str(&g), "x0xfff");

        guarded_init(&g, 4);
        buf_fixed(&g.b, 25551, 3);
        ck_assert_str_eq(guarded_str(&g), "25.5");

        guarded_init(&g, 3);
        buf_ms(&g.b, 7800000);
        buf_ms(&g.b, 7800000);
        ck_assert_str_eq(guarded_str(&g), "7.8");

        /* Capacity 0: nothing at all. */
        guarded_init(&g, 0);
        buf_puts(&g.b, "x");
        buf_u64(&g.b, 1);
        buf_hex(&g.b, 1);
        buf_fixed(&g.b, 1, 3);
        buf_ms(&g.b, 1000);
        ck_assert_str_eq(guarded_str(&g), "");

        /* Byte by byte up to every capacity, for every writer. */
        for (size_t cap = 0; cap < 30; cap++) {
                guarded_init(&g, cap);
                buf_u64(&g.b, UINT64_MAX);
                buf_hex(&g.b, UINT64_MAX);
                buf_fixed(&g.b, UINT64_MAX, 3);
                buf_ms(&g.b, 9999999);
                buf_puts(&g.b, "0123456789");
                guarded_str(&g);
                ck_assert_uint_eq(g.b.len, cap);
        }
}
END_TEST

START_TEST(test_trace_write) {
        int p[2];
        static char big[200000], got[sizeof(big)];

        ck_assert_int_eq(pipe(p), 0);
        for (size_t i = 0; i < sizeof(big); i++)
                big[i] = (char) ('a' + i % 26);

        /* More than a pipe holds: a child drains it while we write. */
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                close(p[1]);
                size_t total = 0;
                ssize_t r;
                while ((r = read(p[0], got + total, sizeof(got) - total)) > 0)
                        total += (size_t) r;
                _exit(total == sizeof(big) && !memcmp(got, big, sizeof(big)) ? 0 : 1);
        }
        close(p[0]);
        errno = 4321;
        trace_write(p[1], big, sizeof(big));
        ck_assert_int_eq(errno, 4321);
        close(p[1]);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status));
        ck_assert_msg(WEXITSTATUS(status) == 0, "reader did not get the %zu bytes intact", sizeof(big));

        /* A failing write gives up and keeps errno. */
        errno = 1234;
        trace_write(-1, "x", 1);
        ck_assert_int_eq(errno, 1234);
}
END_TEST

START_TEST(test_warn) {
        struct capture cap;
        char *err;

        capture_start(&cap);
        memd_warn("sample table full (65536 distinct stacks); sampling stopped");
        err = capture_end(&cap);
        ck_assert_str_eq(err, "libmemd: sample table full (65536 distinct stacks); sampling stopped\n");
        free(err);
}
END_TEST

/* A message too long for the line buffer is cut, but the line still ends. */
START_TEST(test_warn_long) {
        struct capture cap;
        char msg[2000], *err;

        memset(msg, 'x', sizeof(msg) - 1);
        msg[sizeof(msg) - 1] = 0;
        capture_start(&cap);
        memd_warn(msg);
        err = capture_end(&cap);
        ck_assert_uint_le(strlen(err), 512);
        ck_assert(!strncmp(err, "libmemd: xxx", 12));
        ck_assert_msg(count_lines(err) == 1 && err[strlen(err) - 1] == '\n',
                      "a %zu-byte warning is not one newline-terminated line (%zu bytes written, last byte '%c')",
                      strlen(msg), strlen(err), err[strlen(err) - 1]);
        free(err);
}
END_TEST

START_TEST(test_now_ns) {
        struct timespec ts;
        int64_t a, b, r;

        a = now_ns(CLOCK_MONOTONIC);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        b = now_ns(CLOCK_MONOTONIC);
        ck_assert_int_gt(a, 0);
        ck_assert_int_le(a, b);
        r = (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
        ck_assert_int_le(a, r);
        ck_assert_int_le(r, b);

        r = now_ns(CLOCK_REALTIME);
        ck_assert_int_gt(r, INT64_C(1600000000) * 1000000000); /* after 2020 */
        ck_assert_int_eq(now_ns(-12345), 0);
}
END_TEST

static Suite *trace_suite(void) {
        Suite *s = suite_create("trace");
        TCase *tc = tcase_create("buf");

        tcase_add_test(tc, test_ms_go);
        tcase_add_test(tc, test_fixed);
        tcase_add_test(tc, test_u64_hex_puts);
        tcase_add_test(tc, test_truncation);
        suite_add_tcase(s, tc);

        tc = tcase_create("write");
        tcase_add_test(tc, test_trace_write);
        tcase_add_test(tc, test_warn);
        tcase_add_test(tc, test_warn_long);
        tcase_add_test(tc, test_now_ns);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(trace_suite(), "test-trace", false);
}
