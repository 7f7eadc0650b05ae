/* test-top.c - Check suite for ctl/top.c alone: pprof's -top tables for hand-made sample sets.
 *
 * The expected tables are go tool pprof -top's for the same sets
 * (test-top-pprof.c runs pprof on them); here they are fixed text, so the
 * suite needs no Go and says what each rule gives. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "top-cases.h"
#include "top.h"
#include "unit.h"

static char *print(const struct top_sample *s, size_t n, const struct top_options *opt, int *ret) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);

        ck_assert_ptr_nonnull(m);
        *ret = top_print(m, s, n, opt);
        fclose(m);
        return buf;
}

static void check_table(const struct top_sample *s, size_t n, const struct top_options *opt, const char *want) {
        int r;
        char *got = print(s, n, opt, &r);

        ck_assert_int_eq(r, 0);
        ck_assert_msg(strcmp(got, want) == 0, "want:\n%s\ngot:\n%s", want, got);
        free(got);
}

#define G(c) c, sizeof(c) / sizeof(c[0])
#define FRACTIONS .node_fraction = 0.005, .edge_fraction = 0.001

static const struct golden {
        const struct top_sample *samples;
        size_t n;
        struct top_options opt;
        const char *want;
} goldens[] = {
        { G(case_ties), { .sample_index = TOP_INUSE_SPACE, .cum = false, .node_count = 0, FRACTIONS },
          "Type: inuse_space\n"
          "Showing nodes accounting for 350B, 100% of 350B total\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "      100B 28.57% 28.57%       100B 28.57%  alpha\n"
          "      100B 28.57% 57.14%       100B 28.57%  beta\n"
          "      100B 28.57% 85.71%       100B 28.57%  zeta\n"
          "       50B 14.29%   100%        50B 14.29%  gamma\n"
          "         0     0%   100%       150B 42.86%  helper\n"
          "         0     0%   100%       350B   100%  main\n"
        },
        { G(case_ties), { .sample_index = TOP_ALLOC_SPACE, .cum = true, .node_count = 0, FRACTIONS },
          "Type: alloc_space\n"
          "Showing nodes accounting for 400B, 100% of 400B total\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "         0     0%     0%       400B   100%  main\n"
          "         0     0%     0%       150B 37.50%  helper\n"
          "      100B 25.00% 25.00%       100B 25.00%  alpha\n"
          "      100B 25.00% 50.00%       100B 25.00%  beta\n"
          "      100B 25.00% 75.00%       100B 25.00%  zeta\n"
          "       50B 12.50% 87.50%        50B 12.50%  delta\n"
          "       50B 12.50%   100%        50B 12.50%  gamma\n"
        },
        { G(case_recursion), { .sample_index = TOP_ALLOC_OBJECTS, .cum = false, .node_count = 0, FRACTIONS },
          "Type: alloc_objects\n"
          "Showing nodes accounting for 7, 100% of 7 total\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "         3 42.86% 42.86%          5 71.43%  walk\n"
          "         2 28.57% 71.43%          7   100%  main\n"
          "         1 14.29% 85.71%          1 14.29%  leaf\n"
          "         1 14.29%   100%          2 28.57%  visit\n"
          "         0     0%   100%          2 28.57%  start\n"
        },
        { G(case_recursion), { .sample_index = TOP_INUSE_SPACE, .cum = true, .node_count = 0, FRACTIONS },
          "Type: inuse_space\n"
          "Showing nodes accounting for 4000B, 100% of 4000B total\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "     2000B 50.00% 50.00%      4000B   100%  main\n"
          "         0     0% 50.00%      2000B 50.00%  start\n"
          "     1000B 25.00% 75.00%      2000B 50.00%  walk\n"
          "     1000B 25.00%   100%      1000B 25.00%  leaf\n"
          "         0     0%   100%      1000B 25.00%  visit\n"
        },
        { G(case_negative), { .sample_index = TOP_INUSE_OBJECTS, .cum = false, .node_count = 0, FRACTIONS },
          "Type: inuse_objects\n"
          "Showing nodes accounting for -1, 20.00% of 5 total\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "        -2 40.00% 40.00%         -2 40.00%  shrink\n"
          "         1 20.00% 20.00%          1 20.00%  grow\n"
          "         0     0% 20.00%         -1 20.00%  main\n"
        },
        { G(case_negative), { .sample_index = TOP_ALLOC_SPACE, .cum = true, .node_count = 0, FRACTIONS },
          "Type: alloc_space\n"
          "Showing nodes accounting for 3796B, 26.02% of 14588B total\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "     8192B 56.16% 56.16%      8192B 56.16%  grow\n"
          "    -4096B 28.08% 28.08%     -4096B 28.08%  shrink\n"
          "         0     0% 28.08%      3796B 26.02%  main\n"
          "     -300B  2.06% 26.02%      -300B  2.06%  mixed\n"
        },
        { G(case_dropping), { .sample_index = TOP_INUSE_SPACE, .cum = false, .node_count = 0, FRACTIONS },
          "Type: inuse_space\n"
          "Showing nodes accounting for 33.20MB, 99.71% of 33.29MB total\n"
          "Dropped 18 nodes (cum <= 0.17MB)\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "      30MB 90.11% 90.11%       30MB 90.11%  big\n"
          "       3MB  9.01% 99.12%        3MB  9.01%  medium\n"
          "    0.20MB  0.59% 99.71%     0.20MB  0.59%  edge_case\n"
          "         0     0% 99.71%    33.29MB   100%  main\n"
        },
        { G(case_dropping), { .sample_index = TOP_ALLOC_SPACE, .cum = true, .node_count = 2, FRACTIONS },
          "Type: alloc_space\n"
          "Showing nodes accounting for 40MB, 90.01% of 44.44MB total\n"
          "Dropped 18 nodes (cum <= 0.22MB)\n"
          "Showing top 2 nodes out of 4\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "         0     0%     0%    44.44MB   100%  main\n"
          "      40MB 90.01% 90.01%       40MB 90.01%  big\n"
        },
        { G(case_big), { .sample_index = TOP_ALLOC_SPACE, .cum = false, .node_count = 0, FRACTIONS },
          "Type: alloc_space\n"
          "Showing nodes accounting for 3TB, 99.79% of 3.01TB total\n"
          "Dropped 4 nodes (cum <= 0.02TB)\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "       3TB 99.79% 99.79%        3TB 99.79%  huge\n"
          "         0     0% 99.79%     3.01TB   100%  main\n"
        },
        { G(case_big), { .sample_index = TOP_ALLOC_OBJECTS, .cum = false, .node_count = 0, FRACTIONS },
          "Type: alloc_objects\n"
          "Showing nodes accounting for 4000000000, 100% of 4001000015 total\n"
          "Dropped 4 nodes (cum <= 20005000)\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "4000000000   100%   100% 4000000000   100%  huge\n"
          "         0     0%   100% 4001000015   100%  main\n"
        },
        { G(case_big), { .sample_index = TOP_INUSE_SPACE, .cum = true, .node_count = 0, FRACTIONS },
          "Type: inuse_space\n"
          "Showing nodes accounting for 5TB, 99.92% of 5TB total\n"
          "Dropped 4 nodes (cum <= 0.03TB)\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "         0     0%     0%        5TB   100%  main\n"
          "       5TB 99.92% 99.92%        5TB 99.92%  huge\n"
        },
        { G(case_small), { .sample_index = TOP_INUSE_SPACE, .cum = false, .node_count = 0, FRACTIONS },
          "Type: inuse_space\n"
          "Showing nodes accounting for 2024B, 99.80% of 2028B total\n"
          "Dropped 3 nodes (cum <= 10B)\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "     1024B 50.49% 50.49%      1024B 50.49%  one_and_half_k\n"
          "     1000B 49.31% 99.80%      1000B 49.31%  almost_k\n"
          "         0     0% 99.80%      2028B   100%  main\n"
        },
        { G(case_small), { .sample_index = TOP_ALLOC_SPACE, .cum = false, .node_count = 0, FRACTIONS },
          "Type: alloc_space\n"
          "Showing nodes accounting for 2559B, 99.57% of 2570B total\n"
          "Dropped 3 nodes (cum <= 12B)\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "     1536B 59.77% 59.77%      1536B 59.77%  one_and_half_k\n"
          "     1023B 39.81% 99.57%      1023B 39.81%  almost_k\n"
          "         0     0% 99.57%      2570B   100%  main\n"
        },
        { G(case_inline), { .sample_index = TOP_ALLOC_SPACE, .cum = false, .node_count = 0, FRACTIONS },
          "Type: alloc_space\n"
          "Showing nodes accounting for 15872B, 100% of 15872B total\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "     9216B 58.06% 58.06%      9216B 58.06%  str_dup (partial-inline)\n"
          "     6144B 38.71% 96.77%      6144B 38.71%  vec_push (inline)\n"
          "      512B  3.23%   100%       512B  3.23%  tiny_inline (inline)\n"
          "         0     0%   100%     10240B 64.52%  load\n"
          "         0     0%   100%     15872B   100%  main\n"
          "         0     0%   100%      5120B 32.26%  parse\n"
          "         0     0%   100%      1024B  6.45%  parse_name (inline)\n"
        },
        { G(case_names), { .sample_index = TOP_INUSE_SPACE, .cum = false, .node_count = 0, FRACTIONS },
          "Type: inuse_space\n"
          "Showing nodes accounting for 7800B, 100% of 7800B total\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "     3000B 38.46% 38.46%      3000B 38.46%  [libfoo.so.1]\n"
          "     1200B 15.38% 53.85%      1200B 15.38%  ns::Vec::push\n"
          "     1000B 12.82% 66.67%      1000B 12.82%  [libfoo.so.1]\n"
          "      700B  8.97% 75.64%       700B  8.97%  <unknown>\n"
          "      500B  6.41% 82.05%       500B  6.41%  [libbar.so]\n"
          "      500B  6.41% 88.46%       500B  6.41%  [libbar.so]\n"
          "      500B  6.41% 94.87%       500B  6.41%  [libbar.so]\n"
          "      300B  3.85% 98.72%       300B  3.85%  operator new\n"
          "      100B  1.28%   100%       100B  1.28%  Outer::method const\n"
          "         0     0%   100%      6300B 80.77%  main\n"
          "         0     0%   100%      1200B 15.38%  ns::run\n"
          "         0     0%   100%       300B  3.85%  plain_c\n"
        },
        { G(case_empty_stack), { .sample_index = TOP_INUSE_SPACE, .cum = false, .node_count = 0, FRACTIONS },
          "Type: inuse_space\n"
          "Showing nodes accounting for 1kB, 16.67% of 6kB total\n"
          "      flat  flat%   sum%        cum   cum%\n"
          "       1kB 16.67% 16.67%        1kB 16.67%  alloc\n"
          "         0     0% 16.67%        1kB 16.67%  main\n"
        },
        { G(case_all_zero), { .sample_index = TOP_INUSE_SPACE, .cum = false, .node_count = 0, FRACTIONS },
          "Type: inuse_space\n"
          "Showing nodes accounting for 0, 0% of 0 total\n"
          "      flat  flat%   sum%        cum   cum%\n"
        },
};

/* Ties sort by name, recursion counts once, negative values count by their
 * absolute value in percentages, node dropping, -cum, -n, each sample index,
 * units from B to TB, (inline) labels, unsymbolized frames, C++ names. */
START_TEST(test_golden) {
        const struct golden *g = &goldens[_i];

        check_table(g->samples, g->n, &g->opt, g->want);
}
END_TEST

START_TEST(test_null_options_are_pprofs_defaults) {
        static const struct top_options defaults = TOP_OPTIONS_INIT;
        int r1, r2;
        char *a = print(G(case_dropping), NULL, &r1), *b = print(G(case_dropping), &defaults, &r2);

        ck_assert_int_eq(r1, 0);
        ck_assert_int_eq(r2, 0);
        ck_assert_str_eq(a, b);
        ck_assert_ptr_nonnull(strstr(a, "Type: inuse_space\n"));
        free(a);
        free(b);
}
END_TEST

/* Under 1%, pprof's %g: two significant digits, no trailing zeros; the
 * unit is the smallest value's (3B), not the total's. */
START_TEST(test_small_percentages) {
        struct top_options opt = TOP_OPTIONS_INIT;

        opt.node_fraction = 0;
        check_table(G(case_percent), &opt,
                    "Type: inuse_space\n"
                    "Showing nodes accounting for 100000B, 100% of 100000B total\n"
                    "      flat  flat%   sum%        cum   cum%\n"
                    "    99299B 99.30% 99.30%     99299B 99.30%  most\n"
                    "      600B   0.6% 99.90%       600B   0.6%  more\n"
                    "       98B 0.098%   100%        98B 0.098%  some\n"
                    "        3B 0.003%   100%         3B 0.003%  least\n"
                    "         0     0%   100%    100000B   100%  main\n");
}
END_TEST

/* Edges under edge_fraction of the total are gone before pprof reads the
 * (inline) labels: here only load -> str_dup's call is left. */
START_TEST(test_edge_fraction_drops_inline_labels) {
        struct top_options opt = TOP_OPTIONS_INIT;

        opt.sample_index = TOP_ALLOC_SPACE;
        opt.edge_fraction = 0.5;
        check_table(G(case_inline), &opt,
                    "Type: alloc_space\n"
                    "Showing nodes accounting for 15872B, 100% of 15872B total\n"
                    "      flat  flat%   sum%        cum   cum%\n"
                    "     9216B 58.06% 58.06%      9216B 58.06%  str_dup\n"
                    "     6144B 38.71% 96.77%      6144B 38.71%  vec_push\n"
                    "      512B  3.23%   100%       512B  3.23%  tiny_inline\n"
                    "         0     0%   100%     10240B 64.52%  load\n"
                    "         0     0%   100%     15872B   100%  main\n"
                    "         0     0%   100%      5120B 32.26%  parse\n"
                    "         0     0%   100%      1024B  6.45%  parse_name\n");
}
END_TEST

START_TEST(test_no_samples) {
        check_table(NULL, 0, NULL,
                    "Type: inuse_space\n"
                    "Showing nodes accounting for 0, 0% of 0 total\n"
                    "      flat  flat%   sum%        cum   cum%\n");
}
END_TEST

START_TEST(test_invalid_arguments) {
        static const struct top_frame f[] = { F("a") };
        const struct top_sample bad = { .frames = NULL, .depth = 1 }, good = { .frames = f, .depth = 1 };
        struct top_options opt = TOP_OPTIONS_INIT;
        int r;
        char *s;

        ck_assert_int_eq(top_print(NULL, &good, 1, NULL), -EINVAL);
        s = print(&bad, 1, NULL, &r);
        ck_assert_int_eq(r, -EINVAL);
        free(s);
        s = print(NULL, 1, NULL, &r);
        ck_assert_int_eq(r, -EINVAL);
        free(s);
        opt.sample_index = TOP_N_VALUES;
        s = print(&good, 1, &opt, &r);
        ck_assert_int_eq(r, -EINVAL);
        free(s);
        opt.sample_index = -1;
        s = print(&good, 1, &opt, &r);
        ck_assert_int_eq(r, -EINVAL);
        free(s);
        opt = (struct top_options) TOP_OPTIONS_INIT;
        opt.node_count = -1;
        s = print(&good, 1, &opt, &r);
        ck_assert_int_eq(r, -EINVAL);
        free(s);
}
END_TEST

START_TEST(test_write_error) {
        FILE *full = fopen("/dev/full", "w");

        if (!full)
                return;         /* no /dev/full in this sandbox */
        ck_assert_int_eq(top_print(full, G(case_names), NULL), -EIO);
        fclose(full);
}
END_TEST

START_TEST(test_sample_index_names) {
        ck_assert_int_eq(top_sample_index_parse("alloc_objects"), TOP_ALLOC_OBJECTS);
        ck_assert_int_eq(top_sample_index_parse("alloc_space"), TOP_ALLOC_SPACE);
        ck_assert_int_eq(top_sample_index_parse("inuse_objects"), TOP_INUSE_OBJECTS);
        ck_assert_int_eq(top_sample_index_parse("inuse_space"), TOP_INUSE_SPACE);
        ck_assert_int_eq(top_sample_index_parse("0"), 0);
        ck_assert_int_eq(top_sample_index_parse("3"), 3);
        ck_assert_int_eq(top_sample_index_parse("4"), -1);
        ck_assert_int_eq(top_sample_index_parse("03"), -1);
        ck_assert_int_eq(top_sample_index_parse("space"), -1);
        ck_assert_int_eq(top_sample_index_parse(""), -1);
        ck_assert_int_eq(top_sample_index_parse(NULL), -1);
        ck_assert_str_eq(top_sample_index_name(TOP_INUSE_OBJECTS), "inuse_objects");
        ck_assert_ptr_null(top_sample_index_name(4));
        ck_assert_ptr_null(top_sample_index_name(-1));
}
END_TEST

static Suite *top_suite(void) {
        Suite *s = suite_create("top");
        TCase *tc = tcase_create("top");

        tcase_add_loop_test(tc, test_golden, 0, (int) (sizeof(goldens) / sizeof(goldens[0])));
        tcase_add_test(tc, test_null_options_are_pprofs_defaults);
        tcase_add_test(tc, test_small_percentages);
        tcase_add_test(tc, test_edge_fraction_drops_inline_labels);
        tcase_add_test(tc, test_no_samples);
        tcase_add_test(tc, test_invalid_arguments);
        tcase_add_test(tc, test_write_error);
        tcase_add_test(tc, test_sample_index_names);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(top_suite(), "test-top", false);
}
