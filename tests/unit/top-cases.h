/* top-cases.h - hand-made sample sets for memctl top: test-top.c checks the
 * tables top.c prints for them, test-top-pprof.c checks the same sets
 * against go tool pprof -top. */
#ifndef MEMD_TEST_TOP_CASES_H
#define MEMD_TEST_TOP_CASES_H

#include <stddef.h>
#include <stdint.h>

#include "top.h"

/* F("name"): a frame; I("name"): one inlined into the next frame;
 * U("/path/lib.so"): no symbol, in that mapping; X: no symbol, no mapping. */
#define F(n) { .name = (n) }
#define I(n) { .name = (n), .inlined = true }
#define U(o) { .name = NULL, .objfile = (o) }
#define X { .name = NULL, .objfile = NULL }
/* One sample: values in pprof's order (alloc_objects, alloc_space,
 * inuse_objects, inuse_space), then frames leaf first. */
#define S(ao, as, io, is, ...) { \
        .frames = (const struct top_frame[]) { __VA_ARGS__ }, \
        .depth = sizeof((const struct top_frame[]) { __VA_ARGS__ }) / sizeof(struct top_frame), \
        .values = { (ao), (as), (io), (is) } }
#define S0(ao, as, io, is) { .frames = NULL, .depth = 0, .values = { (ao), (as), (io), (is) } }

#define KiB (INT64_C(1) << 10)
#define MiB (INT64_C(1) << 20)
#define GiB (INT64_C(1) << 30)

/* Ties everywhere: equal flat values sort by name, then by cum. */
static const struct top_sample case_ties[] = {
        S(1, 100, 1, 100, F("zeta"), F("main")),
        S(1, 100, 1, 100, F("alpha"), F("main")),
        S(1, 100, 1, 100, F("beta"), F("helper"), F("main")),
        S(2, 50, 2, 50, F("gamma"), F("helper"), F("main")),
        S(2, 50, 0, 0, F("delta"), F("main")),
};

/* A function twice in one stack counts once for cum (and its edges once). */
static const struct top_sample case_recursion[] = {
        S(3, 3000, 1, 1000, F("walk"), F("walk"), F("walk"), F("main")),
        S(1, 1000, 1, 1000, F("leaf"), F("walk"), F("visit"), F("walk"), F("main")),
        S(2, 2000, 2, 2000, F("main"), F("start"), F("main")),
        S(1, 500, 0, 0, F("visit"), F("walk"), F("visit"), F("main")),
};

/* Negative values (as in a diff), zeros, and a node whose values cancel out. */
static const struct top_sample case_negative[] = {
        S(-5, -4096, -2, -2048, F("shrink"), F("main")),
        S(3, 8192, 1, 1024, F("grow"), F("main")),
        S(0, 0, 0, 0, F("idle"), F("main")),
        S(2, 1000, 1, 512, F("cancel"), F("work"), F("main")),
        S(-2, -1000, -1, -512, F("cancel"), F("work"), F("main")),
        S(1, -300, 0, 300, F("mixed"), F("main")),
};

/* 16 small nodes under big ones: they and more fall under 0.5% of the total. */
#define SMALL(n) S(1, 10 + n, 1, 10 + n, F("small_" #n), F("spread"), F("main"))
static const struct top_sample case_dropping[] = {
        S(40, 40 * MiB, 30, 30 * MiB, F("big"), F("main")),
        S(20, 4 * MiB, 10, 3 * MiB, F("medium"), F("main")),
        S(1, 300 * KiB, 1, 200 * KiB, F("edge_case"), F("main")),
        S(1, 150 * KiB, 1, 100 * KiB, F("below"), F("main")),
        SMALL(0), SMALL(1), SMALL(2), SMALL(3), SMALL(4), SMALL(5), SMALL(6), SMALL(7),
        SMALL(8), SMALL(9), SMALL(10), SMALL(11), SMALL(12), SMALL(13), SMALL(14), SMALL(15),
};
#undef SMALL

/* Gigabytes and a few bytes in one profile. */
static const struct top_sample case_big[] = {
        S(1000000, 5 * GiB + 123456789, 900000, 3 * GiB + 7, F("arena_grow"), F("server_run"), F("main")),
        S(12, 1536 * MiB, 10, 1280 * MiB, F("cache_fill"), F("server_run"), F("main")),
        S(3, 24, 1, 8, F("tiny"), F("main")),
        S(INT64_C(4000000000), INT64_C(3) << 40, 7, INT64_C(5) << 40, F("huge"), F("main")),
};

/* Bytes and kilobytes only. */
static const struct top_sample case_small[] = {
        S(1, 1, 1, 1, F("one_byte"), F("main")),
        S(1, 1023, 1, 1000, F("almost_k"), F("main")),
        S(2, 1536, 1, 1024, F("one_and_half_k"), F("main")),
        S(1, 10, 1, 3, F("few"), F("other"), F("main")),
};

/* Percentages under 1% (pprof's %g) and one that rounds to 100%. */
static const struct top_sample case_percent[] = {
        S(1, 99899, 1, 99299, F("most"), F("main")),
        S(1, 600, 1, 600, F("more"), F("main")),
        S(1, 98, 1, 98, F("some"), F("main")),
        S(1, 3, 1, 3, F("least"), F("main")),
};

/* Inlined frames: a function only ever inlined is "(inline)", one both
 * inlined and called "(partial-inline)". */
static const struct top_sample case_inline[] = {
        S(1, 4096, 1, 4096, I("vec_push"), F("parse"), F("main")),
        S(1, 2048, 1, 2048, I("vec_push"), F("load"), F("main")),
        S(2, 8192, 1, 1024, F("str_dup"), F("load"), F("main")),
        S(1, 1024, 1, 1024, I("str_dup"), I("parse_name"), F("parse"), F("main")),
        S(1, 512, 0, 0, I("tiny_inline"), F("main")),
};

/* No symbols: "[base]" per mapping file (two files, one base name), and
 * "<unknown>" without one; ties between equal names (pprof's last resort,
 * its NodeInfo printed); pprof's Demangle simplifications for C++-looking
 * names.  The paths must not exist: pprof would read symbols from them. */
static const struct top_sample case_names[] = {
        S(1, 1000, 1, 1000, U("/nonexistent/lib/libfoo.so.1"), F("main")),
        S(1, 2000, 1, 2000, U("/nonexistent/lib/libfoo.so.1"), U("/nonexistent/lib/libfoo.so.1"), F("main")),
        S(1, 1000, 1, 1000, U("/nonexistent/opt/libfoo.so.1"), F("main")),
        S(1, 500, 1, 500, U("/nonexistent/b/libbar.so"), F("main")),
        S(1, 500, 1, 500, U("/nonexistent/a/libbar.so"), F("main")),
        S(1, 500, 1, 500, F("[libbar.so]"), F("main")),
        S(1, 700, 1, 700, X, X, F("main")),
        S(1, 600, 1, 600, F("ns::Vec<int>::push(int)"), F("ns::run()")),
        S(1, 600, 1, 600, F("ns::Vec<long>::push(long)"), F("ns::run()")),
        S(1, 300, 1, 300, F("operator new"), F("plain_c")),
        S(1, 100, 1, 100, F("Outer<Inner<int>>::method() const"), F("main")),
};

/* Samples without frames count in the total only. */
static const struct top_sample case_empty_stack[] = {
        S0(10, 10 * KiB, 5, 5 * KiB),
        S(1, 2 * KiB, 1, 1 * KiB, F("alloc"), F("main")),
};

static const struct top_sample case_all_zero[] = {
        S(0, 0, 0, 0, F("nothing"), F("main")),
};

struct top_case {
        const char *name;
        const struct top_sample *samples;
        size_t n;
};

#define CASE(c) { #c, c, sizeof(c) / sizeof(c[0]) }
static const struct top_case top_cases[] = {
        CASE(case_ties), CASE(case_recursion), CASE(case_negative), CASE(case_dropping),
        CASE(case_big), CASE(case_small), CASE(case_percent), CASE(case_inline), CASE(case_names),
        CASE(case_empty_stack), CASE(case_all_zero),
};
#undef CASE

#endif
