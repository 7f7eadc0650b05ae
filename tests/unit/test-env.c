/* test-env.c - Check suite for env.c: size parsing and reading MEMD_* once, one warning per bad value. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "capture.h"
#include "unit.h"

/* ---- env_parse_size ------------------------------------------------------ */

static void expect_size(const char *s, uint64_t want) {
        uint64_t v = 12345;
        int r = env_parse_size(s, &v);

        ck_assert_msg(r == 0, "env_parse_size(\"%s\") = %d, want 0", s, r);
        ck_assert_msg(v == want, "env_parse_size(\"%s\") gave %llu, want %llu", s,
                      (unsigned long long) v, (unsigned long long) want);
}

static void expect_reject(const char *s, int want_errno) {
        uint64_t v = 12345;
        int r = env_parse_size(s, &v);

        ck_assert_msg(r < 0, "env_parse_size(\"%s\") accepted it as %llu", s, (unsigned long long) v);
        if (want_errno)
                ck_assert_msg(r == -want_errno, "env_parse_size(\"%s\") = %d, want %d", s, r, -want_errno);
}

START_TEST(test_parse_size_good) {
        expect_size("512K", 524288);
        expect_size("512k", 524288);
        expect_size("16M", 16ULL << 20);
        expect_size("1G", 1ULL << 30);
        expect_size("2T", 2ULL << 40);
        expect_size("1", 1);
        expect_size("0", 0);
        expect_size("1048576", 1048576);
        expect_size("64KiB", 65536);
        expect_size("1MB", 1ULL << 20);
        expect_size("3GiB", 3ULL << 30);
        expect_size("100B", 100);
        expect_size("18446744073709551615", UINT64_MAX);
        expect_size("16777215T", 16777215ULL << 40);
}
END_TEST

START_TEST(test_parse_size_bad) {
        expect_reject("", EINVAL);
        expect_reject(NULL, EINVAL);
        expect_reject("banana", EINVAL);
        expect_reject("-5", EINVAL);
        expect_reject("+5", EINVAL);
        expect_reject(" 5", EINVAL);
        expect_reject("5 ", EINVAL);
        expect_reject("12X", EINVAL);
        expect_reject("12KX", EINVAL);
        expect_reject("12iB", EINVAL);
        expect_reject("K", EINVAL);
        expect_reject("1.5M", EINVAL);
        expect_reject("0x10", EINVAL);
        expect_reject("99999999999999999999G", ERANGE);
        expect_reject("18446744073709551616", ERANGE);
        expect_reject("16777216T", ERANGE);  /* 2^64 */
        expect_reject("17179869184G", ERANGE);
}
END_TEST

/* strtoull skips any leading white space and then negates a '-' number
 * modulo 2^64; only ' ' is refused up front. */
START_TEST(test_parse_size_whitespace_sign) {
        expect_reject("\t-5", EINVAL);  /* accepted as 2^64 - 5 */
        expect_reject("\n-1", EINVAL);
        expect_reject("\t5", EINVAL);
}
END_TEST

/* ---- env_load -------------------------------------------------------------- */

static const char *const memd_vars[] = {
        "MEMD_PROFILE_RATE", "MEMD_MEMORY_LIMIT", "MEMD_GCPERCENT", "MEMD_DEBUG",
        "MEMD_MEMPROFILE", "MEMD_SOCKET",
};

static void clear_env(void) {
        for (size_t i = 0; i < sizeof(memd_vars) / sizeof(memd_vars[0]); i++)
                unsetenv(memd_vars[i]);
}

/* Runs env_load on a zeroed config (as the global is at load) with one
 * variable set, and returns what it wrote to stderr (caller frees). */
static char *load_with(struct memd_config *c, const char *name, const char *value) {
        struct capture cap;

        clear_env();
        if (name)
                ck_assert_int_eq(setenv(name, value, 1), 0);
        memset(c, 0, sizeof(*c));
        capture_start(&cap);
        env_load(c);
        return capture_end(&cap);
}

static void expect_no_warning(const char *err) {
        ck_assert_msg(err[0] == 0, "unexpected stderr: %s", err);
}

/* One line, starting with "libmemd: NAME=". */
static void expect_one_warning(const char *err, const char *name) {
        char prefix[128];

        ck_assert_msg(count_lines(err) == 1, "want exactly one warning line, got: \"%s\"", err);
        ck_assert_msg(err[strlen(err) - 1] == '\n', "warning not newline-terminated: \"%s\"", err);
        snprintf(prefix, sizeof(prefix), "libmemd: %s=", name);
        ck_assert_msg(!strncmp(err, prefix, strlen(prefix)), "warning \"%s\" does not start with \"%s\"", err, prefix);
}

static void expect_defaults(const struct memd_config *c) {
        ck_assert_uint_eq(c->profile_rate, 524288);
        ck_assert_uint_eq(c->memory_limit, 0);
        ck_assert_int_eq(c->gcpercent, -1);
        ck_assert(!c->gctrace);
        ck_assert(!c->scavtrace);
        ck_assert(!c->keep_fastbins);
        ck_assert_int_eq(c->unwinder, UNWIND_AUTO);
        ck_assert_str_eq(c->memprofile, "");
        ck_assert_str_eq(c->socket_path, "/run/memd/memd.sock");
}

START_TEST(test_load_defaults) {
        struct memd_config c;
        char *err = load_with(&c, NULL, NULL);

        expect_no_warning(err);
        expect_defaults(&c);
        free(err);
}
END_TEST

START_TEST(test_load_profile_rate) {
        struct memd_config c;
        char *err;

        err = load_with(&c, "MEMD_PROFILE_RATE", "16K");
        expect_no_warning(err);
        ck_assert_uint_eq(c.profile_rate, 16384);
        free(err);

        err = load_with(&c, "MEMD_PROFILE_RATE", "1");
        expect_no_warning(err);
        ck_assert_uint_eq(c.profile_rate, 1);
        free(err);

        err = load_with(&c, "MEMD_PROFILE_RATE", "0");
        expect_no_warning(err);
        ck_assert_uint_eq(c.profile_rate, 0);
        free(err);

        err = load_with(&c, "MEMD_PROFILE_RATE", "banana");
        expect_one_warning(err, "MEMD_PROFILE_RATE");
        ck_assert_ptr_nonnull(strstr(err, "banana"));
        expect_defaults(&c);
        free(err);

        err = load_with(&c, "MEMD_PROFILE_RATE", "-5");
        expect_one_warning(err, "MEMD_PROFILE_RATE");
        ck_assert_uint_eq(c.profile_rate, 524288);
        free(err);

        err = load_with(&c, "MEMD_PROFILE_RATE", "99999999999999999999G");
        expect_one_warning(err, "MEMD_PROFILE_RATE");
        ck_assert_uint_eq(c.profile_rate, 524288);
        free(err);
}
END_TEST

START_TEST(test_load_debug) {
        struct memd_config c;
        char *err;

        err = load_with(&c, "MEMD_DEBUG", "gctrace=1,scavtrace=1");
        expect_no_warning(err);
        ck_assert(c.gctrace);
        ck_assert(c.scavtrace);
        ck_assert(!c.keep_fastbins);
        free(err);

        err = load_with(&c, "MEMD_DEBUG", "gctrace=1");
        expect_no_warning(err);
        ck_assert(c.gctrace);
        ck_assert(!c.scavtrace);
        free(err);

        err = load_with(&c, "MEMD_DEBUG", "scavtrace=true,fastbins=1,unwind=backtrace");
        expect_no_warning(err);
        ck_assert(!c.gctrace);
        ck_assert(c.scavtrace);
        ck_assert(c.keep_fastbins);
        ck_assert_int_eq(c.unwinder, UNWIND_BACKTRACE);
        free(err);

        err = load_with(&c, "MEMD_DEBUG", "gctrace=1,gctrace=0");
        expect_no_warning(err);
        ck_assert(!c.gctrace);
        free(err);

        /* Unknown key: one warning, and nothing of the value is applied,
         * not even the good items before the bad one. */
        err = load_with(&c, "MEMD_DEBUG", "gctrace=1,frobnicate=1");
        expect_one_warning(err, "MEMD_DEBUG");
        ck_assert_ptr_nonnull(strstr(err, "unknown key"));
        expect_defaults(&c);
        free(err);

        err = load_with(&c, "MEMD_DEBUG", "gctrace=yesplease");
        expect_one_warning(err, "MEMD_DEBUG");
        expect_defaults(&c);
        free(err);

        err = load_with(&c, "MEMD_DEBUG", "gctrace");
        expect_one_warning(err, "MEMD_DEBUG");
        expect_defaults(&c);
        free(err);

        err = load_with(&c, "MEMD_DEBUG", "unwind=frames");
        expect_one_warning(err, "MEMD_DEBUG");
        expect_defaults(&c);
        free(err);

        /* Longer than parse_debug's copy: refused, not overflowed. */
        {
                char big[600];
                memset(big, 0, sizeof(big));
                strcpy(big, "gctrace=1");
                for (size_t n = strlen(big); n + 12 < sizeof(big); n = strlen(big))
                        strcat(big, ",gctrace=1");
                err = load_with(&c, "MEMD_DEBUG", big);
                expect_one_warning(err, "MEMD_DEBUG");
                expect_defaults(&c);
                free(err);
        }

        err = load_with(&c, "MEMD_DEBUG", "");
        expect_no_warning(err);
        expect_defaults(&c);
        free(err);
}
END_TEST

START_TEST(test_load_memory_limit) {
        struct memd_config c;
        char *err;

        err = load_with(&c, "MEMD_MEMORY_LIMIT", "256M");
        expect_no_warning(err);
        ck_assert_uint_eq(c.memory_limit, 256ULL << 20);
        free(err);

        err = load_with(&c, "MEMD_MEMORY_LIMIT", "-5");
        expect_one_warning(err, "MEMD_MEMORY_LIMIT");
        ck_assert_uint_eq(c.memory_limit, 0);
        free(err);

        err = load_with(&c, "MEMD_MEMORY_LIMIT", "off");
        expect_no_warning(err);
        ck_assert_uint_eq(c.memory_limit, 0);
        free(err);

        err = load_with(&c, "MEMD_MEMORY_LIMIT", "lots");
        expect_one_warning(err, "MEMD_MEMORY_LIMIT");
        ck_assert_uint_eq(c.memory_limit, 0);
        free(err);
}
END_TEST

START_TEST(test_load_gcpercent) {
        struct memd_config c;
        char *err;

        err = load_with(&c, "MEMD_GCPERCENT", "100");
        expect_no_warning(err);
        ck_assert_int_eq(c.gcpercent, 100);
        free(err);

        err = load_with(&c, "MEMD_GCPERCENT", "0");
        expect_no_warning(err);
        ck_assert_int_eq(c.gcpercent, 0);
        free(err);

        err = load_with(&c, "MEMD_GCPERCENT", "off");
        expect_no_warning(err);
        ck_assert_int_eq(c.gcpercent, -1);
        free(err);

        static const char *const bad[] = { "abc", "-1", "50%", "99999999999", "" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err = load_with(&c, "MEMD_GCPERCENT", bad[i]);
                expect_one_warning(err, "MEMD_GCPERCENT");
                ck_assert_int_eq(c.gcpercent, -1);
                free(err);
        }
}
END_TEST

START_TEST(test_load_memprofile) {
        struct memd_config c;
        char *err, *big;

        err = load_with(&c, "MEMD_MEMPROFILE", "/tmp/heap.%p.pb.gz");
        expect_no_warning(err);
        ck_assert_str_eq(c.memprofile, "/tmp/heap.%p.pb.gz");
        free(err);

        big = malloc(5000);
        ck_assert_ptr_nonnull(big);
        memset(big, 'a', 4999);
        big[0] = '/';
        big[4999] = 0;
        err = load_with(&c, "MEMD_MEMPROFILE", big);
        expect_one_warning(err, "MEMD_MEMPROFILE");
        ck_assert_str_eq(c.memprofile, "");
        free(err);

        big[4096] = 0; /* 4096 characters: one too many for memprofile[4096] */
        err = load_with(&c, "MEMD_MEMPROFILE", big);
        expect_one_warning(err, "MEMD_MEMPROFILE");
        ck_assert_str_eq(c.memprofile, "");
        free(err);

        big[4095] = 0;  /* 4095 and the NUL: fits exactly */
        err = load_with(&c, "MEMD_MEMPROFILE", big);
        expect_no_warning(err);
        ck_assert_str_eq(c.memprofile, big);
        free(err);
        free(big);
}
END_TEST

START_TEST(test_load_socket) {
        struct memd_config c;
        char path[1100];
        char *err;

        err = load_with(&c, "MEMD_SOCKET", "/tmp/x/memd.sock");
        expect_no_warning(err);
        ck_assert_str_eq(c.socket_path, "/tmp/x/memd.sock");
        free(err);

        /* sun_path holds 107 characters and the NUL. */
        memset(path, 'a', sizeof(path));
        path[0] = '/';
        path[107] = 0;
        err = load_with(&c, "MEMD_SOCKET", path);
        expect_no_warning(err);
        ck_assert_str_eq(c.socket_path, path);
        free(err);

        path[107] = 'a';
        path[108] = 0;
        err = load_with(&c, "MEMD_SOCKET", path);
        expect_one_warning(err, "MEMD_SOCKET");
        ck_assert_str_eq(c.socket_path, "/run/memd/memd.sock");
        free(err);

        /* Far longer than the warning buffer: still one whole line. */
        path[108] = 'a';
        path[sizeof(path) - 1] = 0;
        err = load_with(&c, "MEMD_SOCKET", path);
        expect_one_warning(err, "MEMD_SOCKET");
        ck_assert_uint_le(strlen(err), 512);
        ck_assert_str_eq(c.socket_path, "/run/memd/memd.sock");
        free(err);
}
END_TEST

/* Several bad values at once: one line each, the good ones still applied. */
START_TEST(test_load_several) {
        struct memd_config c;
        struct capture cap;
        char *err;

        clear_env();
        setenv("MEMD_PROFILE_RATE", "lots", 1);
        setenv("MEMD_MEMORY_LIMIT", "1G", 1);
        setenv("MEMD_GCPERCENT", "x", 1);
        setenv("MEMD_DEBUG", "gctrace=1", 1);
        memset(&c, 0, sizeof(c));
        capture_start(&cap);
        env_load(&c);
        err = capture_end(&cap);
        ck_assert_int_eq(count_lines(err), 2);
        ck_assert_ptr_nonnull(strstr(err, "libmemd: MEMD_PROFILE_RATE=lots"));
        ck_assert_ptr_nonnull(strstr(err, "libmemd: MEMD_GCPERCENT=x"));
        ck_assert_uint_eq(c.profile_rate, 524288);
        ck_assert_uint_eq(c.memory_limit, 1ULL << 30);
        ck_assert_int_eq(c.gcpercent, -1);
        ck_assert(c.gctrace);
        free(err);
}
END_TEST

static Suite *env_suite(void) {
        Suite *s = suite_create("env");
        TCase *tc = tcase_create("parse_size");

        tcase_add_test(tc, test_parse_size_good);
        tcase_add_test(tc, test_parse_size_bad);
        tcase_add_test(tc, test_parse_size_whitespace_sign);
        suite_add_tcase(s, tc);

        tc = tcase_create("load");
        tcase_add_test(tc, test_load_defaults);
        tcase_add_test(tc, test_load_profile_rate);
        tcase_add_test(tc, test_load_debug);
        tcase_add_test(tc, test_load_memory_limit);
        tcase_add_test(tc, test_load_gcpercent);
        tcase_add_test(tc, test_load_memprofile);
        tcase_add_test(tc, test_load_socket);
        tcase_add_test(tc, test_load_several);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(env_suite(), "test-env", false);
}
