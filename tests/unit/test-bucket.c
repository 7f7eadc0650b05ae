/* test-bucket.c - Check suite for bucket.c: one bucket per stack, alloc/free figures, snapshots, the full table. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "capture.h"
#include "unit.h"

/* sample.c's memd_set_profile_rate, replaced by a recorder. */
static int set_rate_calls;
static uint64_t set_rate_last = UINT64_MAX;

uint64_t memd_set_profile_rate(uint64_t rate_bytes) {
        set_rate_calls++;
        set_rate_last = rate_bytes;
        return 524288;
}

static const uintptr_t stack_a[] = { 0x401000, 0x402000, 0x403000 };
static const uintptr_t stack_b[] = { 0x501000, 0x502000, 0x503000 };
static const uintptr_t stack_a_rev[] = { 0x403000, 0x402000, 0x401000 };

static const struct profile_record *find(const struct profile_record *r, size_t n, const uintptr_t *pcs, uint32_t depth) {
        for (size_t i = 0; i < n; i++)
                if (r[i].depth == depth && !memcmp(r[i].pcs, pcs, depth * sizeof(uintptr_t)))
                        return &r[i];
        return NULL;
}

START_TEST(test_same_and_different_stacks) {
        uint32_t a1 = 99, a2 = 99, b = 99, a_short = 99, a_rev = 99, empty = 99;

        ck_assert_uint_eq(bucket_sys_bytes(), 0); /* nothing mapped before first use */

        ck_assert_int_eq(bucket_record_alloc(stack_a, 3, 100, 5242.88, &a1), 0);
        ck_assert_int_eq(bucket_record_alloc(stack_a, 3, 300, 1748.0, &a2), 0);
        ck_assert_uint_eq(a1, a2);
        ck_assert_int_eq(bucket_record_alloc(stack_b, 3, 1 << 20, 1.0, &b), 0);
        ck_assert_uint_ne(b, a1);
        ck_assert_int_eq(bucket_record_alloc(stack_a, 2, 64, 8192.0, &a_short), 0);
        ck_assert_uint_ne(a_short, a1);
        ck_assert_uint_ne(a_short, b);
        ck_assert_int_eq(bucket_record_alloc(stack_a_rev, 3, 8, 1.0, &a_rev), 0);
        ck_assert_uint_ne(a_rev, a1);
        ck_assert_int_eq(bucket_record_alloc(stack_a, 0, 8, 1.0, &empty), 0);
        ck_assert_uint_ne(empty, a1);
        ck_assert_uint_ne(empty, a_short);

        ck_assert_uint_gt(bucket_sys_bytes(), 0);
        ck_assert_int_eq(set_rate_calls, 0);

        bucket_record_free(a1, 100, 5242.88);
        bucket_record_free(b, 1 << 20, 1.0);
        bucket_record_free(b, 1 << 20, 1.0);
        bucket_record_free(12345, 1, 1.0);      /* never allocated: ignored */
        bucket_record_free(UINT32_MAX, 1, 1.0); /* "no bucket" marker: ignored */

        struct profile_record *r;
        size_t n, len;
        ck_assert_int_eq(bucket_snapshot(&r, &n, &len), 0);
        ck_assert_uint_eq(n, 5);
        ck_assert_uint_ge(len, n * sizeof(*r));

        const struct profile_record *ra = find(r, n, stack_a, 3);
        ck_assert_ptr_nonnull(ra);
        ck_assert_ptr_eq(ra, &r[a1]); /* the index handed out is the record's position */
        ck_assert_uint_eq(ra->alloc_count, 2);
        ck_assert_uint_eq(ra->alloc_bytes, 400);
        ck_assert_double_eq_tol(ra->alloc_objects_est, 5242.88 + 1748.0, 1e-9);
        ck_assert_double_eq_tol(ra->alloc_bytes_est, 100 * 5242.88 + 300 * 1748.0, 1e-6);
        ck_assert_uint_eq(ra->free_count, 1);
        ck_assert_uint_eq(ra->free_bytes, 100);
        ck_assert_double_eq_tol(ra->free_objects_est, 5242.88, 1e-9);
        ck_assert_double_eq_tol(ra->free_bytes_est, 524288.0, 1e-6);

        const struct profile_record *rb = find(r, n, stack_b, 3);
        ck_assert_ptr_eq(rb, &r[b]);
        ck_assert_uint_eq(rb->alloc_count, 1);
        ck_assert_uint_eq(rb->alloc_bytes, 1 << 20);
        ck_assert_uint_eq(rb->free_count, 2); /* the table trusts its caller */
        ck_assert_uint_eq(rb->free_bytes, 2 << 20);
        ck_assert_double_eq_tol(rb->free_bytes_est, 2.0 * (1 << 20), 1e-6);

        const struct profile_record *rs = find(r, n, stack_a, 2);
        ck_assert_ptr_eq(rs, &r[a_short]);
        ck_assert_uint_eq(rs->alloc_count, 1);
        ck_assert_uint_eq(rs->alloc_bytes, 64);
        ck_assert_uint_eq(rs->free_count, 0);
        ck_assert(rs->free_bytes_est == 0);

        ck_assert_ptr_eq(find(r, n, stack_a_rev, 3), &r[a_rev]);
        ck_assert_uint_eq(r[empty].depth, 0);
        ck_assert_uint_eq(r[empty].alloc_count, 1);

        /* The snapshot is a copy: later records do not show in it. */
        ck_assert_int_eq(bucket_record_alloc(stack_a, 3, 1, 1.0, &a1), 0);
        ck_assert_uint_eq(ra->alloc_count, 2);
        ck_assert_int_eq(munmap(r, len), 0);

        ck_assert_int_eq(bucket_snapshot(&r, &n, &len), 0);
        ck_assert_uint_eq(r[a1].alloc_count, 3);
        ck_assert_int_eq(munmap(r, len), 0);
}
END_TEST

START_TEST(test_empty_snapshot) {
        struct profile_record *r = NULL;
        size_t n = 99, len = 0;

        ck_assert_int_eq(bucket_snapshot(&r, &n, &len), 0);
        ck_assert_uint_eq(n, 0);
        ck_assert_ptr_nonnull(r);
        ck_assert_uint_gt(len, 0);
        ck_assert_int_eq(munmap(r, len), 0);
        ck_assert_uint_eq(bucket_sys_bytes(), 0);
}
END_TEST

START_TEST(test_full_depth) {
        uintptr_t deep[PROFILE_MAX_DEPTH], other[PROFILE_MAX_DEPTH];
        uint32_t i1, i2;
        struct profile_record *r;
        size_t n, len;

        for (int i = 0; i < PROFILE_MAX_DEPTH; i++)
                deep[i] = other[i] = 0x7f0000000000 + (uintptr_t) i * 16;
        other[PROFILE_MAX_DEPTH - 1]++; /* differs in the root only */
        ck_assert_int_eq(bucket_record_alloc(deep, PROFILE_MAX_DEPTH, 10, 1.0, &i1), 0);
        ck_assert_int_eq(bucket_record_alloc(other, PROFILE_MAX_DEPTH, 10, 1.0, &i2), 0);
        ck_assert_uint_ne(i1, i2);
        ck_assert_int_eq(bucket_snapshot(&r, &n, &len), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert(!memcmp(r[i1].pcs, deep, sizeof(deep)));
        ck_assert(!memcmp(r[i2].pcs, other, sizeof(other)));
        munmap(r, len);
}
END_TEST

/* 65536 distinct stacks fit; the next new one stops sampling, once. */
START_TEST(test_table_full) {
        struct capture cap;
        uint32_t idx, first_idx = UINT32_MAX, last_idx = UINT32_MAX;
        uintptr_t pcs[2];
        uint64_t sys_before;
        char *err;

        for (uint32_t i = 0; i < 65536; i++) {
                pcs[0] = 0x400000 + (uintptr_t) i * 8;
                pcs[1] = 0x10;
                ck_assert_msg(bucket_record_alloc(pcs, 2, 32, 1.0, &idx) == 0, "stack %u refused", i);
                ck_assert_uint_lt(idx, 65536);
                if (i == 0)
                        first_idx = idx;
        }
        ck_assert_int_eq(set_rate_calls, 0);
        sys_before = bucket_sys_bytes();
        ck_assert_uint_ge(sys_before, 65536 * sizeof(struct profile_record));

        capture_start(&cap);
        pcs[0] = 0x900000;
        idx = 777;
        ck_assert_int_eq(bucket_record_alloc(pcs, 2, 32, 1.0, &idx), -ENOSPC);
        ck_assert_uint_eq(idx, 777);
        pcs[0] = 0x900008;
        ck_assert_int_eq(bucket_record_alloc(pcs, 2, 32, 1.0, &idx), -ENOSPC);
        pcs[0] = 0x900010;
        ck_assert_int_eq(bucket_record_alloc(pcs, 1, 32, 1.0, &idx), -ENOSPC);
        err = capture_end(&cap);

        ck_assert_int_eq(set_rate_calls, 1);
        ck_assert_uint_eq(set_rate_last, 0);
        ck_assert_msg(count_lines(err) == 1, "want one warning, got \"%s\"", err);
        ck_assert(!strncmp(err, "libmemd: ", 9));
        ck_assert_ptr_nonnull(strstr(err, "sampling stopped"));
        free(err);

        /* Known stacks still count (frees must still find their bucket). */
        pcs[0] = 0x400000;
        pcs[1] = 0x10;
        ck_assert_int_eq(bucket_record_alloc(pcs, 2, 32, 1.0, &idx), 0);
        ck_assert_uint_eq(idx, first_idx);
        pcs[0] = 0x400000 + 65535 * 8;
        ck_assert_int_eq(bucket_record_alloc(pcs, 2, 32, 1.0, &last_idx), 0);
        bucket_record_free(last_idx, 32, 1.0);
        ck_assert_uint_eq(bucket_sys_bytes(), sys_before);

        struct profile_record *r;
        size_t n, len;
        ck_assert_int_eq(bucket_snapshot(&r, &n, &len), 0);
        ck_assert_uint_eq(n, 65536);
        ck_assert_uint_eq(r[first_idx].alloc_count, 2);
        ck_assert_uint_eq(r[last_idx].free_count, 1);
        ck_assert_uint_eq(r[last_idx].alloc_count, 2);
        ck_assert_uint_eq(r[last_idx].pcs[0], 0x400000 + 65535 * 8);
        munmap(r, len);
        ck_assert_int_eq(set_rate_calls, 1);
}
END_TEST

/* Counts from many threads on one stack and on their own stacks are exact. */
#define THREADS 4
#define PER_THREAD 100000

static void *hammer(void *arg) {
        uintptr_t own[2] = { 0x600000 + (uintptr_t) arg * 8, 0x20 };
        uint32_t idx;

        for (int i = 0; i < PER_THREAD; i++) {
                if (bucket_record_alloc(stack_a, 3, 16, 2.0, &idx) < 0)
                        return (void *) 1;
                bucket_record_free(idx, 16, 2.0);
                if (bucket_record_alloc(own, 2, 8, 1.0, &idx) < 0)
                        return (void *) 1;
        }
        return NULL;
}

START_TEST(test_threads) {
        pthread_t t[THREADS];
        struct profile_record *r;
        size_t n, len;
        void *ret;

        for (uintptr_t i = 0; i < THREADS; i++)
                ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, (void *) i), 0);
        for (int i = 0; i < THREADS; i++) {
                ck_assert_int_eq(pthread_join(t[i], &ret), 0);
                ck_assert_ptr_null(ret);
        }
        ck_assert_int_eq(bucket_snapshot(&r, &n, &len), 0);
        ck_assert_uint_eq(n, 1 + THREADS);
        const struct profile_record *ra = find(r, n, stack_a, 3);
        ck_assert_ptr_nonnull(ra);
        ck_assert_uint_eq(ra->alloc_count, THREADS * PER_THREAD);
        ck_assert_uint_eq(ra->free_count, THREADS * PER_THREAD);
        ck_assert_uint_eq(ra->alloc_bytes, 16ULL * THREADS * PER_THREAD);
        ck_assert_double_eq_tol(ra->alloc_objects_est, 2.0 * THREADS * PER_THREAD, 1e-6);
        for (uintptr_t i = 0; i < THREADS; i++) {
                uintptr_t own[2] = { 0x600000 + i * 8, 0x20 };
                const struct profile_record *ro = find(r, n, own, 2);
                ck_assert_ptr_nonnull(ro);
                ck_assert_uint_eq(ro->alloc_count, PER_THREAD);
        }
        munmap(r, len);
}
END_TEST

/* Holding the lock across fork and releasing it on both sides. */
START_TEST(test_fork) {
        uint32_t idx;
        int status;
        pid_t pid;

        ck_assert_int_eq(bucket_record_alloc(stack_a, 3, 16, 1.0, &idx), 0);
        bucket_atfork_prepare();
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                struct profile_record *r;
                size_t n, len;
                uint32_t j;

                bucket_atfork_child();
                alarm(5);
                if (bucket_record_alloc(stack_a, 3, 16, 1.0, &j) < 0 || j != idx)
                        _exit(1);
                if (bucket_snapshot(&r, &n, &len) < 0 || n != 1 || r[0].alloc_count != 2)
                        _exit(2);
                _exit(0);
        }
        bucket_atfork_parent();
        ck_assert_int_eq(bucket_record_alloc(stack_a, 3, 16, 1.0, &idx), 0);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);

        struct profile_record *r;
        size_t n, len;
        ck_assert_int_eq(bucket_snapshot(&r, &n, &len), 0);
        ck_assert_uint_eq(r[idx].alloc_count, 2); /* the child's record stayed in the child */
        munmap(r, len);
}
END_TEST

static Suite *bucket_suite(void) {
        Suite *s = suite_create("bucket");
        TCase *tc = tcase_create("table");

        /* Every test runs in its own process (Check's fork mode), so each
         * starts with an empty table. */
        tcase_add_test(tc, test_same_and_different_stacks);
        tcase_add_test(tc, test_empty_snapshot);
        tcase_add_test(tc, test_full_depth);
        tcase_add_test(tc, test_table_full);
        tcase_add_test(tc, test_threads);
        tcase_add_test(tc, test_fork);
        tcase_set_timeout(tc, 60);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(bucket_suite(), "test-bucket", true);
}
