/* test-monitor.c - Check suite for monitor.c's decisions: when the memory limit, the GC goal and memory pressure start a cycle. */
#include <check.h>
#include <stdint.h>

#include "internal.h"
#include "unit.h"

#define MiB (1ULL << 20)
#define SEC 1000000000LL
#define MS 1000000LL

/* ---- fixtures: globals and the other modules' functions ------------------ */

struct memd_config memd_config;
__thread struct thread_state memd_thread;

/* The real goal (reclaim.c), as the pacer needs it. */
uint64_t reclaim_heap_goal(uint64_t live, int gcpercent, uint64_t limit) {
        uint64_t goal = 0;

        if (gcpercent >= 0) {
                goal = live * (100 + (uint64_t) gcpercent) / 100; /* test figures never overflow */
                if (goal < 4 * MiB)
                        goal = 4 * MiB;
        }
        if (limit && (!goal || limit < goal))
                goal = limit;
        return goal;
}
uint64_t reclaim_live_after(void) { return 0; }
size_t reclaim_run_unguarded(bool f, bool g, bool s, uint64_t *r, struct reclaim_report *p) { (void) f; (void) g; (void) s; (void) r; (void) p; return 0; }
void reclaim_wait_idle(unsigned ms) { (void) ms; }
void stats_counters(struct memd_memstats *s) { (void) s; }
int stats_read_heap(const char *m, struct memd_memstats *s) { (void) m; (void) s; return 0; }
int pressure_parse(struct pressure *p, const char *w, const char *b, const char **why) { (void) p; (void) w; (void) b; (void) why; return 0; }
int pressure_open(struct pressure *p, const char **why) { (void) p; (void) why; return -1; }
int pressure_handle(struct pressure *p, short r) { (void) p; (void) r; return 0; }
void pressure_close(struct pressure *p) { (void) p; }
bool ownfd_ok(const struct own_fd *o) { (void) o; return false; }
void memd_warn(const char *m) { (void) m; }
int thread_start(void *(*fn)(void *), void *arg) { (void) fn; (void) arg; return -1; }
void buf_puts(struct buf *b, const char *s) { (void) b; (void) s; }
int64_t now_ns(int c) { (void) c; return 0; }

/* ---- the memory limit ---------------------------------------------------- */

START_TEST(test_limit_off_and_under) {
        struct limit_pace p;

        monitor_limit_init(&p);
        ck_assert(!monitor_limit_due(&p, 10000 * MiB, 0, 0));            /* no limit */
        ck_assert(!monitor_limit_due(&p, 64 * MiB, 64 * MiB, 0));        /* at it is not over */
        ck_assert(monitor_limit_due(&p, 64 * MiB + 1, 64 * MiB, 0));     /* first crossing: at once */
}
END_TEST

START_TEST(test_limit_rate_and_rearm) {
        struct limit_pace p;
        int64_t t = 100 * SEC;

        monitor_limit_init(&p);
        ck_assert(monitor_limit_due(&p, 80 * MiB, 64 * MiB, t));
        /* The cycle got the heap to 50 MiB (under 95%): armed, but still at
         * most one cycle a second. */
        monitor_limit_done(&p, 50 * MiB, 64 * MiB, 30 * MiB, t);
        ck_assert(p.armed);
        ck_assert(!monitor_limit_due(&p, 70 * MiB, 64 * MiB, t + 500 * MS));
        ck_assert(monitor_limit_due(&p, 70 * MiB, 64 * MiB, t + SEC));
        /* Ended just under the limit, above 95%: not re-armed; freed 2 MiB
         * (> 1% of the limit): the next cycle after a second. */
        monitor_limit_done(&p, 63 * MiB, 64 * MiB, 2 * MiB, t + SEC);
        ck_assert(!p.armed);
        ck_assert(!monitor_limit_due(&p, 65 * MiB, 64 * MiB, t + 1500 * MS));
        ck_assert(monitor_limit_due(&p, 65 * MiB, 64 * MiB, t + 2 * SEC));
        /* Hovering between 95% and 100% never acts; dropping under 95% re-arms. */
        ck_assert(!monitor_limit_due(&p, 62 * MiB, 64 * MiB, t + 10 * SEC));
        ck_assert(!p.armed);
        ck_assert(!monitor_limit_due(&p, 60 * MiB, 64 * MiB, t + 10 * SEC));
        ck_assert(p.armed);
}
END_TEST

START_TEST(test_limit_backoff) {
        struct limit_pace p;
        int64_t t = 100 * SEC, want[] = { 2, 4, 8, 16, 30, 30 };

        monitor_limit_init(&p);
        /* Cycles that free nothing (less than 1% of the limit): 2, 4, 8,
         * 16, then 30 s at most. */
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
                ck_assert(monitor_limit_due(&p, 100 * MiB, 64 * MiB, t));
                monitor_limit_done(&p, 100 * MiB, 64 * MiB, 64 * MiB / 100 - 1, t);
                ck_assert_int_eq(p.interval_ns, want[i] * SEC);
                ck_assert(!monitor_limit_due(&p, 100 * MiB, 64 * MiB, t + want[i] * SEC - 1));
                t += want[i] * SEC;
        }
        /* Progress ends the backoff. */
        ck_assert(monitor_limit_due(&p, 100 * MiB, 64 * MiB, t));
        monitor_limit_done(&p, 90 * MiB, 64 * MiB, 10 * MiB, t);
        ck_assert_int_eq(p.interval_ns, SEC);
        /* So does going under 95%. */
        monitor_limit_done(&p, 100 * MiB, 64 * MiB, 0, t);
        ck_assert_int_eq(p.interval_ns, 2 * SEC);
        ck_assert(!monitor_limit_due(&p, 10 * MiB, 64 * MiB, t));
        ck_assert_int_eq(p.interval_ns, SEC);
        ck_assert(monitor_limit_due(&p, 100 * MiB, 64 * MiB, t + SEC));
}
END_TEST

START_TEST(test_limit_huge) {
        struct limit_pace p;

        /* No overflow in the 95% mark near UINT64_MAX. */
        monitor_limit_init(&p);
        ck_assert(!monitor_limit_due(&p, UINT64_MAX - 1, UINT64_MAX, 0));
        ck_assert(!monitor_limit_due(&p, UINT64_MAX / 100 * 95, UINT64_MAX, 0));
        ck_assert(p.armed);
}
END_TEST

/* ---- GOGC ---------------------------------------------------------------- */

START_TEST(test_gc_goal) {
        int64_t t = 100 * SEC;

        ck_assert(!monitor_gc_due(100 * MiB, 0, -1, 0, 0, t));           /* off */
        ck_assert(!monitor_gc_due(4 * MiB, 0, 100, 0, 0, t));            /* 4 MiB minimum */
        ck_assert(monitor_gc_due(4 * MiB + 1, 0, 100, 0, 0, t));
        ck_assert(!monitor_gc_due(20 * MiB, 10 * MiB, 100, 0, t, t));    /* goal 20 MiB: not over */
        ck_assert(monitor_gc_due(20 * MiB + 1, 10 * MiB, 100, 0, t, t)); /* over: at once, even right after one */
        ck_assert(monitor_gc_due(15 * MiB + 1, 10 * MiB, 50, 0, t, t));
        ck_assert(monitor_gc_due(10 * MiB + 1, 10 * MiB, 0, 0, t, t));   /* GOGC=0: any growth */
}
END_TEST

START_TEST(test_gc_goal_capped) {
        int64_t t = 100 * SEC;

        /* The limit (12 MiB) caps the goal (20 MiB): over it, once a second. */
        ck_assert(monitor_gc_due(13 * MiB, 10 * MiB, 100, 12 * MiB, t - SEC, t));
        ck_assert(!monitor_gc_due(13 * MiB, 10 * MiB, 100, 12 * MiB, t - 999 * MS, t));
        ck_assert(!monitor_gc_due(11 * MiB, 10 * MiB, 100, 12 * MiB, t - SEC, t));
        /* A limit above the goal changes nothing. */
        ck_assert(monitor_gc_due(21 * MiB, 10 * MiB, 100, 64 * MiB, t, t));
}
END_TEST

START_TEST(test_pressure_rate) {
        int64_t t = 100 * SEC;

        ck_assert(monitor_pressure_due(INT64_MIN / 2, t));
        ck_assert(!monitor_pressure_due(t, t + 999 * MS));
        ck_assert(monitor_pressure_due(t, t + SEC));
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("monitor");
        TCase *tc = tcase_create("limit");

        tcase_add_test(tc, test_limit_off_and_under);
        tcase_add_test(tc, test_limit_rate_and_rearm);
        tcase_add_test(tc, test_limit_backoff);
        tcase_add_test(tc, test_limit_huge);
        suite_add_tcase(s, tc);
        tc = tcase_create("gcpercent");
        tcase_add_test(tc, test_gc_goal);
        tcase_add_test(tc, test_gc_goal_capped);
        tcase_add_test(tc, test_pressure_rate);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(suite(), "monitor", false);
}
