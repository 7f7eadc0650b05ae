/* test-pressure.c - Check suite for pressure.c: MEMORY_PRESSURE_WATCH/WRITE parsing, base64, a FIFO, a socket, files that are not PSI files. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"
#include "unit.h"

static char dir[] = "/tmp/test-pressure.XXXXXX";

static void setup(void) {
        strcpy(dir, "/tmp/test-pressure.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void) {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        ck_assert_int_eq(system(cmd), 0);
}

/* Polls p's descriptor for up to ms; the revents. */
static short wait_for(struct pressure *p, int ms) {
        struct pollfd f = { p->fd.fd, p->events, 0 };

        return poll(&f, 1, ms) > 0 ? f.revents : 0;
}

START_TEST(test_unbase64) {
        uint8_t out[32];
        size_t n;

        ck_assert_int_eq(pressure_unbase64("c29tZSAyMDAwMDAgMjAwMDAwMA==", out, sizeof(out), &n), 0);
        ck_assert_uint_eq(n, 19);
        ck_assert(!memcmp(out, "some 200000 2000000", 19));
        ck_assert_int_eq(pressure_unbase64("aGVsbG8K", out, sizeof(out), &n), 0);
        ck_assert_uint_eq(n, 6);
        ck_assert(!memcmp(out, "hello\n", 6));
        ck_assert_int_eq(pressure_unbase64("aGVs\nbG8K\n", out, sizeof(out), &n), 0); /* blanks skipped */
        ck_assert_uint_eq(n, 6);
        ck_assert_int_eq(pressure_unbase64("", out, sizeof(out), &n), 0);
        ck_assert_uint_eq(n, 0);
        ck_assert_int_eq(pressure_unbase64("!!!", out, sizeof(out), &n), -EINVAL);
        ck_assert_int_eq(pressure_unbase64("aGVsbG8K=x", out, sizeof(out), &n), -EINVAL); /* data after '=' */
        ck_assert_int_eq(pressure_unbase64("a", out, sizeof(out), &n), -EINVAL);          /* 6 bits */
        ck_assert_int_eq(pressure_unbase64("aGVsbG8K", out, 5, &n), -ENOBUFS);
}
END_TEST

START_TEST(test_parse) {
        struct pressure p;
        const char *why = NULL;

        ck_assert_int_eq(pressure_parse(&p, NULL, "aGVsbG8K", &why), 0);    /* unset: nothing */
        ck_assert_int_eq(pressure_parse(&p, "", NULL, &why), 0);            /* explicitly off */
        ck_assert_int_eq(pressure_parse(&p, "/dev/null", NULL, &why), 0);
        ck_assert_int_eq(p.fd.fd, -1);
        ck_assert_int_eq(pressure_parse(&p, "relative", NULL, &why), -EINVAL);
        ck_assert_ptr_nonnull(why);
        ck_assert_int_eq(pressure_parse(&p, "/x", "not base64!", &why), -EINVAL);
        ck_assert_int_eq(pressure_parse(&p, "/x", "aGVsbG8K", &why), 1);
        ck_assert_str_eq(p.path, "/x");
        ck_assert_uint_eq(p.write_len, 6);
}
END_TEST

START_TEST(test_fifo) {
        struct pressure p;
        const char *why = NULL;
        char path[128];
        int w;

        snprintf(path, sizeof(path), "%s/fifo", dir);
        ck_assert_int_eq(mkfifo(path, 0600), 0);
        ck_assert_int_eq(pressure_parse(&p, path, NULL, &why), 1);
        ck_assert_int_eq(pressure_open(&p, &why), 0);
        ck_assert_int_eq(p.events, POLLIN);
        ck_assert_int_eq(wait_for(&p, 50), 0);
        w = open(path, O_WRONLY | O_NONBLOCK);
        ck_assert_int_ge(w, 0);
        ck_assert_int_eq(write(w, "xyz", 3), 3);
        ck_assert_int_eq(pressure_handle(&p, wait_for(&p, 1000)), 1);
        /* Drained: quiet again; the writer closing is no event and no end. */
        close(w);
        ck_assert_int_eq(wait_for(&p, 50), 0);
        pressure_close(&p);
        ck_assert_int_eq(p.fd.fd, -1);
}
END_TEST

START_TEST(test_socket) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct pressure p;
        const char *why = NULL;
        char got[16] = "";
        int l, c;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", dir);
        l = socket(AF_UNIX, SOCK_STREAM, 0);
        ck_assert_int_ge(l, 0);
        ck_assert_int_eq(bind(l, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(l, 1), 0);
        /* The socket gets MEMORY_PRESSURE_WRITE as soon as we connect. */
        ck_assert_int_eq(pressure_parse(&p, sa.sun_path, "aGVsbG8K", &why), 1);
        ck_assert_int_eq(pressure_open(&p, &why), 0);
        c = accept(l, NULL, NULL);
        ck_assert_int_ge(c, 0);
        ck_assert_int_eq(read(c, got, sizeof(got)), 6);
        ck_assert(!memcmp(got, "hello\n", 6));
        ck_assert_int_eq(wait_for(&p, 50), 0);
        ck_assert_int_eq(write(c, "!", 1), 1);
        ck_assert_int_eq(pressure_handle(&p, wait_for(&p, 1000)), 1);
        /* The peer closing ends the watch. */
        close(c);
        ck_assert_int_lt(pressure_handle(&p, wait_for(&p, 1000)), 0);
        pressure_close(&p);
        close(l);
}
END_TEST

START_TEST(test_not_psi) {
        struct pressure p;
        const char *why = NULL;
        char path[128];
        int fd;

        /* A regular file outside /proc and cgroupfs is no PSI file. */
        snprintf(path, sizeof(path), "%s/regular", dir);
        fd = open(path, O_CREAT | O_WRONLY, 0600);
        ck_assert_int_ge(fd, 0);
        close(fd);
        ck_assert_int_eq(pressure_parse(&p, path, "c29tZSAyMDAwMDAgMjAwMDAwMA==", &why), 1);
        ck_assert_int_eq(pressure_open(&p, &why), -ENOTTY);
        ck_assert_int_eq(p.fd.fd, -1);
        /* Without a trigger, even a PSI file would never signal. */
        ck_assert_int_eq(pressure_parse(&p, path, NULL, &why), 1);
        ck_assert_int_eq(pressure_open(&p, &why), -EINVAL);
        /* A directory, a missing path. */
        ck_assert_int_eq(pressure_parse(&p, dir, NULL, &why), 1);
        ck_assert_int_eq(pressure_open(&p, &why), -EBADF);
        snprintf(path, sizeof(path), "%s/missing", dir);
        ck_assert_int_eq(pressure_parse(&p, path, NULL, &why), 1);
        ck_assert_int_eq(pressure_open(&p, &why), -ENOENT);
}
END_TEST

START_TEST(test_psi) {
        struct pressure p;
        const char *why = NULL;
        int r;

        ck_assert_int_eq(pressure_parse(&p, "/proc/pressure/memory", "c29tZSAyMDAwMDAgMjAwMDAwMA==", &why), 1);
        r = pressure_open(&p, &why);
        if (r == -ENOENT || r == -EINVAL || r == -EPERM || r == -EACCES || r == -EOPNOTSUPP) {
                fprintf(stderr, "test_psi: no PSI trigger on this kernel (%s: %s), only the refusal checked\n", why, strerror(-r));
                ck_assert_int_eq(p.fd.fd, -1);
                return;
        }
        ck_assert_int_eq(r, 0);
        ck_assert_int_eq(p.events, POLLPRI);
        pressure_close(&p);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("pressure");
        TCase *tc = tcase_create("pressure");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_unbase64);
        tcase_add_test(tc, test_parse);
        tcase_add_test(tc, test_fifo);
        tcase_add_test(tc, test_socket);
        tcase_add_test(tc, test_not_psi);
        tcase_add_test(tc, test_psi);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(suite(), "pressure", false);
}
