/* capture.h - test helper: collect what a piece of code writes to fd 2 (libmemd writes with write(2), not stdio). */
#ifndef MEMD_TEST_CAPTURE_H
#define MEMD_TEST_CAPTURE_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct capture {
        int saved_fd;
        int tmp_fd;
};

static inline void capture_start(struct capture *c) {
        char path[] = "/tmp/memd-unit-stderr-XXXXXX";

        fflush(stderr);
        c->tmp_fd = mkstemp(path);
        ck_assert_int_ge(c->tmp_fd, 0);
        unlink(path);
        c->saved_fd = dup(STDERR_FILENO);
        ck_assert_int_ge(c->saved_fd, 0);
        ck_assert_int_eq(dup2(c->tmp_fd, STDERR_FILENO), STDERR_FILENO);
}

/* Restores fd 2 and returns what was written, NUL-terminated; caller frees. */
static inline char *capture_end(struct capture *c) {
        off_t len;
        char *buf;

        fflush(stderr);
        ck_assert_int_eq(dup2(c->saved_fd, STDERR_FILENO), STDERR_FILENO);
        close(c->saved_fd);
        len = lseek(c->tmp_fd, 0, SEEK_END);
        ck_assert_int_ge(len, 0);
        buf = malloc((size_t) len + 1);
        ck_assert_ptr_nonnull(buf);
        ck_assert_int_eq(pread(c->tmp_fd, buf, (size_t) len, 0), len);
        buf[len] = 0;
        close(c->tmp_fd);
        return buf;
}

static inline int count_lines(const char *s) {
        int n = 0;

        for (; *s; s++)
                n += *s == '\n';
        return n;
}

#endif
