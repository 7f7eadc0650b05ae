/* test-memd-policy.c - memd's policy decisions: MemoryLimit with backoff, idle memory with its decaying allowance, the order under pressure. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "unit.h"

/* main.c's, which the test does not link. */
int64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void notify_status(struct server *s) {
        (void) s;
}

#define MiB (1ULL << 20)
#define SEC 1000000000LL

static struct memd_memstats stats(uint64_t inuse, uint64_t idle, uint64_t released) {
        struct memd_memstats s = {};

        s.HeapInuse = inuse;
        s.HeapAlloc = inuse;
        s.HeapIdle = idle;
        s.HeapReleased = released;
        s.HeapSys = inuse + idle;
        return s;
}

static struct policy_values values(uint64_t limit) {
        struct policy_values v;

        policy_values_default(&v);
        v.memory_limit = limit;
        return v;
}

/* Over the limit: act at once, then no more often than the backoff, which
 * doubles while the actions leave the heap above 95% of the limit and is
 * back to 1 s once it went under. */
START_TEST(test_limit_backoff) {
        struct policy_track t;
        struct policy_values v = values(256 * MiB);
        struct memd_memstats over = stats(300 * MiB, 0, 0), under = stats(200 * MiB, 0, 0);
        int64_t now = 100 * SEC;
        char why[256];
        int acted[64] = {}, n = 0;

        policy_track_init(&t);
        ck_assert_int_eq(policy_decide(&t, &v, &over, now, why, sizeof why), POLICY_LIMIT);
        ck_assert_msg(strstr(why, "300.0 MiB over the limit 256.0 MiB"), "%s", why);
        /* Every 0.5 s for 65 s, always over: 1, 2, 4, 8, 16, 30 s apart. */
        for (int i = 1; i <= 130; i++)
                if (policy_decide(&t, &v, &over, now + i * SEC / 2, why, sizeof why) == POLICY_LIMIT)
                        acted[n++] = i;
        ck_assert_int_eq(n, 6);
        int want[] = { 2, 6, 14, 30, 62, 122 }; /* in half seconds */
        for (int i = 0; i < n; i++)
                ck_assert_int_eq(acted[i], want[i]);

        /* Under 95%: re-armed, the next crossing acts at once and 1 s later. */
        now += 66 * SEC;
        ck_assert_int_eq(policy_decide(&t, &v, &under, now, why, sizeof why), POLICY_NONE);
        ck_assert_int_eq(t.limit_backoff_ns, SEC);
        now += 20 * SEC;
        ck_assert_int_eq(policy_decide(&t, &v, &over, now, why, sizeof why), POLICY_LIMIT);
        ck_assert_int_eq(policy_decide(&t, &v, &over, now + SEC / 2, why, sizeof why), POLICY_NONE);
        ck_assert_int_eq(policy_decide(&t, &v, &over, now + SEC, why, sizeof why), POLICY_LIMIT);

        /* No limit: never. */
        v.memory_limit = 0;
        policy_track_init(&t);
        ck_assert_int_eq(policy_decide(&t, &v, &over, now, why, sizeof why), POLICY_NONE);
}
END_TEST

/* One request at a time; one lost is forgotten after POLICY_REQUEST_STALE_NS. */
START_TEST(test_in_flight) {
        struct policy_track t;
        struct policy_values v = values(256 * MiB);
        struct memd_memstats over = stats(300 * MiB, 0, 0);
        char why[256];

        policy_track_init(&t);
        t.in_flight_ns = 10 * SEC;
        ck_assert_int_eq(policy_decide(&t, &v, &over, 11 * SEC, why, sizeof why), POLICY_NONE);
        ck_assert_int_eq(policy_decide(&t, &v, &over, 10 * SEC + POLICY_REQUEST_STALE_NS - 1, why, sizeof why),
                         POLICY_NONE);
        ck_assert_int_eq(policy_decide(&t, &v, &over, 10 * SEC + POLICY_REQUEST_STALE_NS, why, sizeof why),
                         POLICY_LIMIT);
}
END_TEST

/* The seed's problem: a 1 GiB cache emptied at t = 0.  The idle heap goes
 * back within IdleTimeout plus one stats interval, as a scavenge alone. */
START_TEST(test_idle_after_spike) {
        struct policy_track t;
        struct policy_values v = values(0);
        struct memd_memstats full = stats(1024 * MiB, 10 * MiB, 0), empty = stats(10 * MiB, 1024 * MiB, 0);
        char why[256];
        int64_t acted = -1;

        policy_track_init(&t);
        for (int s = -5; s <= 0; s++)
                ck_assert_int_eq(policy_decide(&t, &v, &full, s * SEC, why, sizeof why), POLICY_NONE);
        for (int s = 1; s <= 60 && acted < 0; s++)
                if (policy_decide(&t, &v, &empty, s * SEC, why, sizeof why) == POLICY_IDLE)
                        acted = s;
        ck_assert_int_ge(acted, 30);
        ck_assert_int_le(acted, 31);
        ck_assert_msg(strstr(why, "idle heap 1024.0 MiB over 32.0 MiB + allowance 0.0 MiB"), "%s", why);
        /* Scavenged (released): idle resident 0, nothing more to do. */
        struct memd_memstats after = stats(10 * MiB, 1024 * MiB, 1024 * MiB);
        for (int s = 32; s <= 300; s++)
                ck_assert_int_eq(policy_decide(&t, &v, &after, s * SEC, why, sizeof why), POLICY_NONE);
}
END_TEST

/* A steady workload freeing and re-allocating 200 MiB every other second is
 * never scavenged: its peak keeps its allowance up. */
START_TEST(test_steady_not_scavenged) {
        struct policy_track t;
        struct policy_values v = values(0);
        struct memd_memstats busy = stats(210 * MiB, 5 * MiB, 0), quiet = stats(10 * MiB, 205 * MiB, 0);
        char why[256];

        policy_track_init(&t);
        for (int s = 0; s < 600; s++)
                ck_assert_msg(policy_decide(&t, &v, s % 2 ? &quiet : &busy, s * SEC, why, sizeof why) == POLICY_NONE,
                              "scavenged at %d s: %s", s, why);
        /* It stops for good: scavenged once, when the allowance decayed. */
        struct memd_memstats released = stats(10 * MiB, 205 * MiB, 205 * MiB);
        int acted = 0;
        for (int s = 600; s < 700; s++)
                acted += policy_decide(&t, &v, acted ? &released : &quiet, s * SEC, why, sizeof why) == POLICY_IDLE;
        ck_assert_int_eq(acted, 1);
}
END_TEST

/* The same churn as a real program shows it: each burst (64 MiB allocated
 * and freed within 50 ms) falls between two stats, so HeapInuse is always
 * near 0; TotalAlloc grows by 128 MiB a second.  Not scavenged either; and
 * scavenged once the bursts stop. */
START_TEST(test_bursts_not_scavenged) {
        struct policy_track t;
        struct policy_values v = values(0);
        struct memd_memstats st = stats(1 * MiB, 63 * MiB, 0);
        char why[256];
        int acted = 0, s;

        policy_track_init(&t);
        for (s = 0; s < 300; s++) {
                st.TotalAlloc += 128 * MiB;
                ck_assert_msg(policy_decide(&t, &v, &st, s * SEC, why, sizeof why) == POLICY_NONE,
                              "scavenged at %d s: %s", s, why);
        }
        for (; s < 400; s++) {
                acted += policy_decide(&t, &v, &st, s * SEC, why, sizeof why) == POLICY_IDLE;
                if (acted)
                        st.HeapReleased = st.HeapIdle;
        }
        ck_assert_int_eq(acted, 1);
}
END_TEST

/* The allowance: full at the peak, half at half the timeout (smoothstep),
 * none from the timeout on; never negative. */
START_TEST(test_allowance_decay) {
        struct policy_track t;
        struct policy_values v = values(0);
        struct memd_memstats peak = stats(500 * MiB, 0, 0);
        char why[256];
        uint64_t prev = UINT64_MAX;

        policy_track_init(&t);
        policy_decide(&t, &v, &peak, 0, why, sizeof why);
        ck_assert_uint_eq(policy_allowance(&t, &v, 100 * MiB, 0), 400 * MiB);
        ck_assert_uint_eq(policy_allowance(&t, &v, 0, v.idle_timeout_ns / 2), 250 * MiB);
        ck_assert_uint_eq(policy_allowance(&t, &v, 0, v.idle_timeout_ns), 0);
        ck_assert_uint_eq(policy_allowance(&t, &v, 600 * MiB, 0), 0);
        for (int64_t x = 0; x <= v.idle_timeout_ns; x += SEC) {
                uint64_t a = policy_allowance(&t, &v, 0, x);
                ck_assert_uint_le(a, prev);
                prev = a;
        }
}
END_TEST

/* Under pressure: the largest held heaps first, only the eligible, at most max. */
START_TEST(test_pressure_pick) {
        uint64_t held[] = { 10, 500, 0, 300, 800, 200 };
        bool ok[] = { true, true, true, true, false, true };
        size_t out[4], k;

        k = policy_pressure_pick(held, ok, 6, out, 3);
        ck_assert_uint_eq(k, 3);
        ck_assert_uint_eq(out[0], 1);
        ck_assert_uint_eq(out[1], 3);
        ck_assert_uint_eq(out[2], 5);
        k = policy_pressure_pick(held, ok, 6, out, 4);
        ck_assert_uint_eq(k, 4);
        ck_assert_uint_eq(out[3], 0); /* held 0 (index 2) is never picked */
        ck_assert_uint_eq(policy_pressure_pick(held, ok, 0, out, 4), 0);
}
END_TEST

int main(void) {
        Suite *s = suite_create("memd-policy");
        TCase *tc = tcase_create("decisions");

        tcase_add_test(tc, test_limit_backoff);
        tcase_add_test(tc, test_in_flight);
        tcase_add_test(tc, test_idle_after_spike);
        tcase_add_test(tc, test_steady_not_scavenged);
        tcase_add_test(tc, test_bursts_not_scavenged);
        tcase_add_test(tc, test_allowance_decay);
        tcase_add_test(tc, test_pressure_pick);
        suite_add_tcase(s, tc);
        return unit_main(s, "test-memd-policy", false);
}
