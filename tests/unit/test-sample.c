/* test-sample.c - Check suite for sample.c: exponential intervals, sample weights, unbiased byte estimates, stacks. */
#include <check.h>
#include <link.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "capture.h"
#include "unit.h"

/* Globals sample.c reads; the test owns them. */
struct memd_config memd_config;

#define DRAWS 1000000

static int cmp_i64(const void *a, const void *b) {
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
        return (x > y) - (x < y);
}

/* 10^6 draws at one rate: mean, the tail beyond the mean, deciles and the
 * Kolmogorov-Smirnov distance against Exp(rate). */
static void check_exponential(uint64_t rate, uint64_t seed) {
        int64_t *v = malloc(DRAWS * sizeof(*v));
        uint64_t rng = seed, above = 0;
        double sum = 0, mean, d = 0;
        int64_t lo = INT64_MAX;

        ck_assert_ptr_nonnull(v);
        for (int i = 0; i < DRAWS; i++) {
                v[i] = sample_next_interval(&rng, rate);
                sum += (double) v[i];
                above += (uint64_t) v[i] > rate;
                if (v[i] < lo)
                        lo = v[i];
        }
        ck_assert_int_ge(lo, 1);

        /* The standard error of the mean is rate/1000; 2% is 20 of them. */
        mean = sum / DRAWS;
        ck_assert_msg(fabs(mean - (double) rate) <= 0.02 * (double) rate,
                      "rate %llu: mean interval %.1f is %.2f%% off", (unsigned long long) rate, mean,
                      100 * (mean / (double) rate - 1));

        /* P(X > rate) = 1/e; its standard error here is 0.00048. */
        double frac = (double) above / DRAWS;
        ck_assert_msg(fabs(frac / exp(-1.0) - 1) <= 0.01, "rate %llu: P(X > rate) = %.5f, want %.5f",
                      (unsigned long long) rate, frac, exp(-1.0));

        qsort(v, DRAWS, sizeof(*v), cmp_i64);
        /* Deciles: the k/10 quantile of Exp(rate) is -rate ln(1 - k/10). */
        for (int k = 1; k <= 9; k++) {
                double want = -(double) rate * log(1 - k / 10.0);
                double got = (double) v[(size_t) DRAWS * k / 10];
                ck_assert_msg(fabs(got - want) <= 0.02 * want, "rate %llu: decile %d is %.0f, want %.0f",
                              (unsigned long long) rate, k, got, want);
        }
        /* KS: the intervals are whole bytes (floor), so compare the empirical
         * CDF just after each value with F(value + 1) and just before it with
         * F(value). */
        for (int i = 0; i < DRAWS; i++) {
                double f_lo = 1 - exp(-(double) v[i] / (double) rate);
                double f_hi = 1 - exp(-((double) v[i] + 1) / (double) rate);
                double e_hi = (double) (i + 1) / DRAWS, e_lo = (double) i / DRAWS;
                if (e_hi - f_hi > d)
                        d = e_hi - f_hi;
                if (f_lo - e_lo > d)
                        d = f_lo - e_lo;
        }
        /* 1.95/sqrt(n) is the 0.1% critical value. */
        fprintf(stderr, "rate %llu: mean %.1f (%+.3f%%), P(X>rate) %.5f, KS D = %.5f (critical %.5f)\n",
                (unsigned long long) rate, mean, 100 * (mean / (double) rate - 1), frac, d, 1.95 / sqrt(DRAWS));
        ck_assert_msg(d < 1.95 / sqrt(DRAWS), "rate %llu: KS distance %.5f", (unsigned long long) rate, d);
        free(v);
}

START_TEST(test_interval_512k) {
        check_exponential(512 * 1024, 0x9E3779B97F4A7C15ULL);
}
END_TEST

START_TEST(test_interval_16k) {
        check_exponential(16 * 1024, 12345);
}
END_TEST

START_TEST(test_interval_edges) {
        uint64_t rng = 42, before;
        int64_t lo = INT64_MAX, hi = 0;

        /* Rate 1 and 0: never below 1. */
        for (int i = 0; i < 100000; i++) {
                int64_t v = sample_next_interval(&rng, 1);
                if (v < lo)
                        lo = v;
                v = sample_next_interval(&rng, 0);
                if (v < lo)
                        lo = v;
        }
        ck_assert_int_eq(lo, 1);

        /* A huge rate is capped, never negative. */
        for (int i = 0; i < 100000; i++) {
                int64_t v = sample_next_interval(&rng, UINT64_MAX);
                ck_assert_int_ge(v, 1);
                if (v > hi)
                        hi = v;
        }
        ck_assert_int_eq(hi, INT64_C(1) << 62);

        /* The state advances, and two seeds give two sequences. */
        before = rng;
        sample_next_interval(&rng, 4096);
        ck_assert_uint_ne(before, rng);
        uint64_t a = 1, b = 2;
        int same = 0;
        for (int i = 0; i < 100; i++)
                same += sample_next_interval(&a, 524288) == sample_next_interval(&b, 524288);
        ck_assert_int_lt(same, 5);
}
END_TEST

START_TEST(test_weight) {
        const double rate = 524288;

        ck_assert(sample_weight(100, 1) == 1.0);
        ck_assert(sample_weight(1 << 20, 1) == 1.0);
        ck_assert(sample_weight(0, 524288) == 1.0);
        ck_assert(sample_weight(123, 0) == 1.0);

        /* size << rate: about rate/size (+1/2). */
        for (uint64_t size = 1; size <= 1024; size *= 4) {
                double w = sample_weight(size, 524288);
                ck_assert_msg(fabs(w - rate / (double) size) <= 1.0, "weight(%llu) = %f",
                              (unsigned long long) size, w);
        }
        /* size >> rate: 1. */
        ck_assert(fabs(sample_weight(100ULL << 20, 524288) - 1.0) < 1e-12);
        ck_assert(sample_weight(UINT64_MAX, 524288) == 1.0);
        /* size = rate: 1/(1 - 1/e). */
        ck_assert(fabs(sample_weight(524288, 524288) - 1 / (1 - exp(-1.0))) < 1e-12);
        /* Always >= 1, and decreasing in size. */
        double prev = INFINITY;
        for (uint64_t size = 1; size < (64ULL << 20); size = size * 3 / 2 + 1) {
                double w = sample_weight(size, 16384);
                ck_assert(w >= 1.0);
                ck_assert(w <= prev);
                prev = w;
        }
}
END_TEST

/*
 * Unbiasedness by simulation: one call site allocating 100 B and 100000 B
 * alternately, sampled exactly as interpose.c does it (countdown minus the
 * size; at or below zero the allocation is sampled and a new countdown is
 * drawn).  Summing weight * size over the samples must estimate the true
 * bytes, overall and per size, within a few standard errors.  The standard
 * error comes from the same weights: Var = sum size^2 (w - 1).
 */
struct estimate {
        double true_bytes, est_bytes, var;
        uint64_t samples;
};

static void simulate(uint64_t rate, const uint64_t *sizes, int n_sizes, long n_allocs, uint64_t seed,
                     struct estimate *per_size, struct estimate *total) {
        uint64_t rng = seed;
        int64_t countdown = sample_next_interval(&rng, rate);

        memset(per_size, 0, sizeof(*per_size) * (size_t) n_sizes);
        memset(total, 0, sizeof(*total));
        for (long i = 0; i < n_allocs; i++) {
                int k = (int) (i % n_sizes);
                uint64_t size = sizes[k];
                double w = sample_weight(size, rate);

                per_size[k].true_bytes += (double) size;
                per_size[k].var += (double) size * (double) size * (w - 1);
                countdown = (int64_t) ((uint64_t) countdown - size);
                if (countdown <= 0) {
                        per_size[k].est_bytes += w * (double) size;
                        per_size[k].samples++;
                        countdown = sample_next_interval(&rng, rate);
                }
        }
        for (int k = 0; k < n_sizes; k++) {
                total->true_bytes += per_size[k].true_bytes;
                total->est_bytes += per_size[k].est_bytes;
                total->var += per_size[k].var;
                total->samples += per_size[k].samples;
        }
}

static double report(const char *what, uint64_t rate, const struct estimate *e) {
        double se = sqrt(e->var), z = (e->est_bytes - e->true_bytes) / se;

        fprintf(stderr, "rate %7llu %-10s: %8llu samples, estimate %.6g of %.6g bytes (%+.3f%%), %+.2f SE\n",
                (unsigned long long) rate, what, (unsigned long long) e->samples, e->est_bytes, e->true_bytes,
                100 * (e->est_bytes / e->true_bytes - 1), z);
        return z;
}

static void check_unbiased(uint64_t rate, long n_allocs, uint64_t seed) {
        static const uint64_t sizes[] = { 100, 100000 };
        struct estimate per[2], all;
        double z;

        simulate(rate, sizes, 2, n_allocs, seed, per, &all);
        z = report("100 B", rate, &per[0]);
        ck_assert_msg(fabs(z) < 4, "rate %llu: 100 B estimate off by %.2f standard errors", (unsigned long long) rate, z);
        z = report("100000 B", rate, &per[1]);
        ck_assert_msg(fabs(z) < 4, "rate %llu: 100000 B estimate off by %.2f standard errors", (unsigned long long) rate, z);
        z = report("site", rate, &all);
        ck_assert_msg(fabs(z) < 4, "rate %llu: site estimate off by %.2f standard errors", (unsigned long long) rate, z);
}

START_TEST(test_unbiased_512k) {
        check_unbiased(512 * 1024, 4000000, 0xC0FFEE);
}
END_TEST

START_TEST(test_unbiased_16k) {
        check_unbiased(16 * 1024, 2000000, 0xBADC0DE);
}
END_TEST

/* Many independent runs at the default rate on a small site: the mean of
 * the estimates is unbiased well below one run's error. */
START_TEST(test_unbiased_many_runs) {
        static const uint64_t sizes[] = { 24, 1000, 70000 };
        struct estimate per[3], all;
        double sum_err = 0, sum_var = 0, z;
        const int runs = 400;

        for (int r = 0; r < runs; r++) {
                simulate(512 * 1024, sizes, 3, 3000, 1000 + (uint64_t) r * 7919, per, &all);
                sum_err += all.est_bytes - all.true_bytes;
                sum_var += all.var;
        }
        z = sum_err / sqrt(sum_var);
        fprintf(stderr, "400 runs of a %.3g-byte site at 512K: mean error %+.3f%% of the site, %+.2f SE\n",
                all.true_bytes, 100 * sum_err / runs / all.true_bytes, z);
        ck_assert_msg(fabs(z) < 4, "mean over %d runs off by %.2f standard errors", runs, z);
}
END_TEST

START_TEST(test_set_profile_rate) {
        uint64_t gen;

        memd_config.profile_rate = 524288;
        gen = memd_config.rate_gen;
        ck_assert_uint_eq(memd_set_profile_rate(1), 524288);
        ck_assert_uint_eq(memd_config.profile_rate, 1);
        ck_assert_uint_eq(memd_config.rate_gen, gen + 1);
        ck_assert_uint_eq(memd_set_profile_rate(0), 1);
        ck_assert_uint_eq(memd_config.profile_rate, 0);
        ck_assert_uint_eq(memd_config.rate_gen, gen + 2);
}
END_TEST

/* The executable segment of this test binary: sample_init takes the one
 * that holds sample.c as "libmemd" and skips it. */
static uintptr_t self_start, self_end;

static int find_self(struct dl_phdr_info *info, size_t size, void *data) {
        uintptr_t self = (uintptr_t) data;

        (void) size;
        for (int i = 0; i < info->dlpi_phnum; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                uintptr_t start = info->dlpi_addr + ph->p_vaddr;
                if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && self >= start && self < start + ph->p_memsz) {
                        self_start = start;
                        self_end = start + ph->p_memsz;
                        return 1;
                }
        }
        return 0;
}

static void check_stack(void) {
        uintptr_t pcs[PROFILE_MAX_DEPTH];
        int n;

        dl_iterate_phdr(find_self, (void *) (uintptr_t) sample_init);
        ck_assert_uint_ne(self_end, 0);

        n = sample_stack(pcs, PROFILE_MAX_DEPTH);
        ck_assert_int_ge(n, 1);
        ck_assert_int_le(n, PROFILE_MAX_DEPTH);
        /* The leaf is the first frame outside "libmemd". */
        ck_assert_msg(pcs[0] < self_start || pcs[0] >= self_end, "leaf %#lx lies in the skipped range",
                      (unsigned long) pcs[0]);
        for (int i = 0; i < n; i++)
                ck_assert_uint_ne(pcs[i], 0);

        ck_assert_int_le(sample_stack(pcs, 1), 1);
        ck_assert_int_eq(sample_stack(pcs, 0), 0);
}

START_TEST(test_stack_backtrace) {
        struct capture cap;
        char *err;

        memd_config.unwinder = UNWIND_BACKTRACE;
        capture_start(&cap);
        sample_init();
        err = capture_end(&cap);
        ck_assert_str_eq(err, "");
        free(err);
        check_stack();
}
END_TEST

START_TEST(test_stack_auto) {
        struct capture cap;
        char *err;

        memd_config.unwinder = UNWIND_AUTO;
        capture_start(&cap);
        sample_init();
        err = capture_end(&cap);
        ck_assert_str_eq(err, "");
        free(err);
        check_stack();
}
END_TEST

static Suite *sample_suite(void) {
        Suite *s = suite_create("sample");
        TCase *tc = tcase_create("interval");

        tcase_add_test(tc, test_interval_512k);
        tcase_add_test(tc, test_interval_16k);
        tcase_add_test(tc, test_interval_edges);
        tcase_set_timeout(tc, 60);
        suite_add_tcase(s, tc);

        tc = tcase_create("weight");
        tcase_add_test(tc, test_weight);
        tcase_add_test(tc, test_unbiased_512k);
        tcase_add_test(tc, test_unbiased_16k);
        tcase_add_test(tc, test_unbiased_many_runs);
        tcase_set_timeout(tc, 60);
        suite_add_tcase(s, tc);

        tc = tcase_create("misc");
        tcase_add_test(tc, test_set_profile_rate);
        tcase_add_test(tc, test_stack_backtrace);
        tcase_add_test(tc, test_stack_auto);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(sample_suite(), "test-sample", false);
}
