/* test-reclaim.c - Check suite for reclaim.c: reclaimers, GC history, the heap goal, gctrace/scvg lines. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "capture.h"
#include "unit.h"

#define MiB (1ULL << 20)

/* ---- fixtures: globals and the other modules' functions ------------------ */

struct memd_config memd_config;
enum alloc_kind memd_alloc_kind;
int64_t memd_start_ns;
__thread struct thread_state memd_thread;

/* HeapAlloc as stats_counters reports it; reclaimers in the tests lower it
 * to play "freed memory". */
static _Atomic uint64_t fake_heap_alloc;
/* What stats_read reports, call by call (the last entry repeats). */
static struct memd_memstats fake_reads[2];
static int n_stats_read;
static uint32_t fake_threads = 4;

void interpose_init(void) {
}

/* memd_set_memory_limit starts the enforcing thread: counted. */
static int monitor_starts;
void monitor_start(void) {
        monitor_starts++;
}

/* The agent's wake-up: counted, so the tests see every event announced. */
static _Atomic int notified;
void agent_notify(void) {
        notified++;
}

void stats_counters(struct memd_memstats *s) {
        s->HeapAlloc = s->Alloc = fake_heap_alloc;
}

int stats_read(struct memd_memstats *s) {
        *s = fake_reads[n_stats_read < 2 ? n_stats_read : 1];
        n_stats_read++;
        s->HeapAlloc = s->Alloc = fake_heap_alloc;
        return 0;
}

int stats_read_threads(const char *status, uint32_t *ret_threads) {
        (void) status;
        *ret_threads = fake_threads;
        return 0;
}

static void setup(void) {
        memset(&memd_config, 0, sizeof(memd_config));
        memd_config.gcpercent = -1;
        memd_alloc_kind = ALLOC_GLIBC;
        /* The process "started" 2.5 s ago. */
        memd_start_ns = now_ns(CLOCK_MONOTONIC) - 2500 * INT64_C(1000000);
        fake_heap_alloc = 0;
        memset(fake_reads, 0, sizeof(fake_reads));
        n_stats_read = 0;
        fake_threads = 4;
        notified = 0;
}

static void teardown(void) {
}

/* ---- reclaimers used by the tests ------------------------------------------- */

struct counter {
        int calls;
        size_t returns;
};

static size_t count_fn(void *ctx) {
        struct counter *c = ctx;

        c->calls++;
        return c->returns;
}

static size_t other_fn(void *ctx) {
        return count_fn(ctx);
}

static struct memd_memstats fill(void) {
        struct memd_memstats s;

        memset(&s, 0, sizeof(s));
        reclaim_fill_stats(&s);
        return s;
}

/* ---- registration --------------------------------------------------------- */

START_TEST(test_register) {
        struct counter c1 = { 0, 1 }, c2 = { 0, 2 };
        static struct counter many[64];

        ck_assert_int_eq(memd_register_reclaimer("x", NULL, &c1), -EINVAL);
        ck_assert_int_eq(memd_unregister_reclaimer("x", count_fn, &c1), -ENOENT);
        ck_assert_int_eq(memd_register_reclaimer("cache", count_fn, &c1), 0);
        ck_assert_int_eq(memd_register_reclaimer("cache", count_fn, &c1), -EEXIST);
        ck_assert_int_eq(memd_register_reclaimer("another name", count_fn, &c1), -EEXIST);
        ck_assert_int_eq(memd_register_reclaimer("cache", count_fn, &c2), 0);  /* other ctx */
        ck_assert_int_eq(memd_register_reclaimer(NULL, other_fn, &c1), 0);     /* other fn, no name */
        ck_assert_int_eq(memd_unregister_reclaimer("cache", count_fn, &c1), 0);
        ck_assert_int_eq(memd_unregister_reclaimer("cache", count_fn, &c1), -ENOENT);
        ck_assert_int_eq(memd_unregister_reclaimer(NULL, other_fn, &c2), -ENOENT);
        ck_assert_int_eq(memd_unregister_reclaimer(NULL, other_fn, &c1), 0);
        ck_assert_int_eq(memd_unregister_reclaimer(NULL, count_fn, &c2), 0);

        /* 64 fit, the 65th does not; one out makes room for one. */
        char name[100];
        memset(name, 'n', sizeof(name) - 1);
        name[sizeof(name) - 1] = 0; /* longer than the table keeps: cut, not overflowed */
        for (int i = 0; i < 64; i++) {
                many[i].returns = 1;
                ck_assert_int_eq(memd_register_reclaimer(name, count_fn, &many[i]), 0);
        }
        ck_assert_int_eq(memd_register_reclaimer("one more", count_fn, &c1), -ENOSPC);
        ck_assert_int_eq(memd_register_reclaimer("dup", count_fn, &many[10]), -EEXIST);
        ck_assert_int_eq(memd_unregister_reclaimer(NULL, count_fn, &many[10]), 0);
        ck_assert_int_eq(memd_register_reclaimer("one more", count_fn, &c1), 0);
        ck_assert_int_eq(memd_register_reclaimer("and another", count_fn, &c2), -ENOSPC);

        ck_assert_uint_eq(memd_gc(), 64);
        for (int i = 0; i < 64; i++)
                ck_assert_int_eq(many[i].calls, i == 10 ? 0 : 1);
        ck_assert_int_eq(c1.calls, 1);
        ck_assert_int_eq(c2.calls, 0);
}
END_TEST

START_TEST(test_gc_runs_each_once) {
        struct counter a = { 0, 10 }, b = { 0, 20 }, c = { 0, 30 };

        ck_assert_uint_eq(memd_gc(), 0);
        ck_assert_int_eq(memd_register_reclaimer("a", count_fn, &a), 0);
        ck_assert_int_eq(memd_register_reclaimer("b", count_fn, &b), 0);
        ck_assert_int_eq(memd_register_reclaimer("c", other_fn, &c), 0);
        ck_assert_uint_eq(memd_gc(), 60);
        ck_assert_int_eq(a.calls, 1);
        ck_assert_int_eq(b.calls, 1);
        ck_assert_int_eq(c.calls, 1);

        ck_assert_int_eq(memd_unregister_reclaimer("b", count_fn, &b), 0);
        ck_assert_uint_eq(memd_gc(), 40);
        ck_assert_int_eq(a.calls, 2);
        ck_assert_int_eq(b.calls, 1);
        ck_assert_int_eq(c.calls, 2);

        /* memd_free_os_memory runs them too (and returns released bytes,
         * not theirs). */
        memd_free_os_memory();
        ck_assert_int_eq(a.calls, 3);
        ck_assert_int_eq(c.calls, 3);
        ck_assert_uint_eq(fill().NumGC, 4);
}
END_TEST

/* A reclaimer may allocate and free: no libmemd lock it could need is held. */
static size_t allocating_fn(void *ctx) {
        size_t n = 0;

        (void) ctx;
        for (int i = 0; i < 1000; i++) {
                char *p = malloc(100 + (size_t) i);
                if (p) {
                        p[0] = 1;
                        n += 100 + (size_t) i;
                        free(p);
                }
        }
        return n;
}

START_TEST(test_allocating_reclaimer) {
        ck_assert_int_eq(memd_register_reclaimer("alloc", allocating_fn, NULL), 0);
        ck_assert_uint_eq(memd_gc(), 1000 * 100 + 999 * 1000 / 2);
}
END_TEST

static int self_calls;

static size_t self_unregistering_fn(void *ctx) {
        self_calls++;
        ck_assert_int_eq(memd_unregister_reclaimer("self", self_unregistering_fn, ctx), 0);
        return 5;
}

START_TEST(test_self_unregister) {
        struct counter other = { 0, 7 };

        ck_assert_int_eq(memd_register_reclaimer("self", self_unregistering_fn, NULL), 0);
        ck_assert_int_eq(memd_register_reclaimer("other", count_fn, &other), 0);
        ck_assert_uint_eq(memd_gc(), 12); /* both ran: the cycle works on a copy */
        ck_assert_uint_eq(memd_gc(), 7);
        ck_assert_int_eq(self_calls, 1);
        ck_assert_int_eq(other.calls, 2);
}
END_TEST

/* Unregistering from another thread waits out a cycle running it. */
static _Atomic int slow_started, slow_done;

static size_t slow_fn(void *ctx) {
        (void) ctx;
        slow_started = 1;
        usleep(300 * 1000);
        slow_done = 1;
        return 1;
}

static void *gc_thread(void *arg) {
        (void) arg;
        return (void *) memd_gc();
}

START_TEST(test_unregister_waits) {
        pthread_t t;
        void *ret;

        ck_assert_int_eq(memd_register_reclaimer("slow", slow_fn, NULL), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, gc_thread, NULL), 0);
        while (!slow_started)
                usleep(1000);
        ck_assert_int_eq(memd_unregister_reclaimer("slow", slow_fn, NULL), 0);
        ck_assert_msg(slow_done, "memd_unregister_reclaimer returned while the reclaimer was running");
        ck_assert_int_eq(pthread_join(t, &ret), 0);
        ck_assert_uint_eq((uintptr_t) ret, 1);
}
END_TEST

/* memd.h: a reclaimer runs "never with a libmemd lock held", so it may call
 * the API, e.g. memd_free_os_memory() after evicting a cache.  Run in a
 * thread so a deadlock is reported, not waited for. */
static _Atomic int nested_calls;

static size_t nested_fn(void *ctx) {
        (void) ctx;
        if (nested_calls++ == 0)
                memd_free_os_memory();
        return 1;
}

static void *free_os_thread(void *arg) {
        (void) arg;
        memd_free_os_memory();
        return NULL;
}

START_TEST(test_reclaimer_calls_api) {
        struct timespec deadline;
        pthread_t t;

        ck_assert_int_eq(memd_register_reclaimer("nested", nested_fn, NULL), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, free_os_thread, NULL), 0);
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 3;
        ck_assert_msg(pthread_timedjoin_np(t, NULL, &deadline) == 0,
                      "memd_free_os_memory() called from a reclaimer deadlocked (%d reclaimer calls)",
                      (int) nested_calls);
}
END_TEST

#define GC_THREADS 4
#define GC_PER_THREAD 50

static void *gc_many(void *arg) {
        (void) arg;
        for (int i = 0; i < GC_PER_THREAD; i++)
                memd_gc();
        return NULL;
}

static _Atomic int concurrent_calls;

static size_t concurrent_fn(void *ctx) {
        (void) ctx;
        concurrent_calls++;
        return 0;
}

START_TEST(test_concurrent_gc) {
        pthread_t t[GC_THREADS];

        ck_assert_int_eq(memd_register_reclaimer("c", concurrent_fn, NULL), 0);
        for (int i = 0; i < GC_THREADS; i++)
                ck_assert_int_eq(pthread_create(&t[i], NULL, gc_many, NULL), 0);
        for (int i = 0; i < GC_THREADS; i++)
                ck_assert_int_eq(pthread_join(t[i], NULL), 0);
        struct memd_memstats s = fill();
        ck_assert_uint_eq(s.NumGC, GC_THREADS * GC_PER_THREAD);
        ck_assert_uint_eq(s.NumForcedGC, GC_THREADS * GC_PER_THREAD);
        ck_assert_int_eq(concurrent_calls, GC_THREADS * GC_PER_THREAD);
}
END_TEST

/* ---- history ------------------------------------------------------------ */

START_TEST(test_history) {
        struct memd_memstats s;
        int64_t t0, t1;
        uint64_t sum = 0;

        s = fill();
        ck_assert_uint_eq(s.NumGC, 0);
        ck_assert_uint_eq(s.NumForcedGC, 0);
        ck_assert_uint_eq(s.LastGC, 0);
        ck_assert_uint_eq(s.PauseTotalNs, 0);
        ck_assert(s.GCCPUFraction == 0);

        t0 = now_ns(CLOCK_REALTIME);
        memd_gc();
        reclaim_cycle(false, false, NULL, NULL); /* an automatic one */
        memd_gc();
        t1 = now_ns(CLOCK_REALTIME);

        s = fill();
        ck_assert_uint_eq(s.NumGC, 3);
        ck_assert_uint_eq(s.NumForcedGC, 2);
        for (int i = 0; i < 3; i++) {
                ck_assert_uint_gt(s.PauseNs[i], 0);
                ck_assert_uint_lt(s.PauseNs[i], 1000000000);
                ck_assert_uint_ge(s.PauseEnd[i], (uint64_t) t0);
                ck_assert_uint_le(s.PauseEnd[i], (uint64_t) t1);
                if (i)
                        ck_assert_uint_ge(s.PauseEnd[i], s.PauseEnd[i - 1]);
                sum += s.PauseNs[i];
        }
        ck_assert_uint_eq(s.PauseNs[3], 0);
        ck_assert_uint_eq(s.PauseEnd[3], 0);
        ck_assert_uint_eq(s.PauseTotalNs, sum);
        ck_assert_uint_eq(s.LastGC, s.PauseEnd[(s.NumGC + 255) % 256]);
        ck_assert(s.GCCPUFraction >= 0 && s.GCCPUFraction < 1);
}
END_TEST

START_TEST(test_pause_ring) {
        struct memd_memstats s;
        uint64_t sum = 0;

        for (int i = 0; i < 300; i++)
                memd_gc();
        s = fill();
        ck_assert_uint_eq(s.NumGC, 300);
        for (int i = 0; i < 256; i++) {
                ck_assert_uint_gt(s.PauseNs[i], 0);
                ck_assert_uint_gt(s.PauseEnd[i], 0);
                sum += s.PauseNs[i];
        }
        /* Latest at [(NumGC+255)%256] = [43], the oldest kept right after. */
        ck_assert_uint_eq(s.LastGC, s.PauseEnd[43]);
        ck_assert_uint_ge(s.PauseEnd[43], s.PauseEnd[42]);
        ck_assert_uint_le(s.PauseEnd[44], s.PauseEnd[43]);
        ck_assert_uint_le(s.PauseEnd[44], s.PauseEnd[255]);
        ck_assert_uint_le(s.PauseEnd[255], s.PauseEnd[0]);
        ck_assert_uint_gt(s.PauseTotalNs, sum); /* 44 older pauses are only in the total */
}
END_TEST

/* ---- the heap goal ------------------------------------------------------- */

static uint64_t goal_after_gc(uint64_t live_bytes) {
        fake_heap_alloc = live_bytes;
        memd_gc();
        return fill().NextGC;
}

START_TEST(test_next_gc) {
        /* Neither GCPercent nor a limit: no goal. */
        ck_assert_uint_eq(goal_after_gc(100 * MiB), 0);

        memd_config.gcpercent = 100;
        ck_assert_uint_eq(goal_after_gc(100 * MiB), 200 * MiB);
        ck_assert_uint_eq(goal_after_gc(1 * MiB), 4 * MiB);       /* Go's 4 MiB floor */
        ck_assert_uint_eq(goal_after_gc(0), 4 * MiB);
        ck_assert_uint_eq(goal_after_gc(25 * MiB), 50 * MiB);

        memd_config.gcpercent = 50;
        ck_assert_uint_eq(goal_after_gc(100 * MiB), 150 * MiB);
        memd_config.gcpercent = 0;
        ck_assert_uint_eq(goal_after_gc(100 * MiB), 100 * MiB);

        /* The limit caps the goal, or is the goal alone. */
        memd_config.gcpercent = 100;
        ck_assert_uint_eq(memd_set_memory_limit(80 * MiB), 0);
        ck_assert_uint_eq(goal_after_gc(100 * MiB), 80 * MiB);
        ck_assert_uint_eq(goal_after_gc(25 * MiB), 50 * MiB);
        memd_config.gcpercent = -1;
        ck_assert_uint_eq(goal_after_gc(10 * MiB), 80 * MiB);
        ck_assert_uint_eq(memd_set_memory_limit(0), 80 * MiB);
        ck_assert_uint_eq(goal_after_gc(10 * MiB), 0);
}
END_TEST

/* Go: goal = live + live * GOGC / 100, exact for any live heap (the values
 * in test_next_gc are multiples of 100 bytes; these are not). */
START_TEST(test_next_gc_exact) {
        memd_config.gcpercent = 100;
        ck_assert_uint_eq(goal_after_gc(123456789), 2 * 123456789ULL);
        ck_assert_uint_eq(goal_after_gc(5 * MiB + 1), 2 * (5 * MiB + 1));
        memd_config.gcpercent = 150;
        ck_assert_uint_eq(goal_after_gc(10 * MiB + 1), (10 * MiB + 1) * 250 / 100);
}
END_TEST

/* ---- gctrace and scvg lines ------------------------------------------------- */

static const char gc_re[] =
        "^gc [0-9]+ @[0-9]+\\.[0-9]{3}s [0-9]+%: [0-9.]+\\+[0-9.]+\\+[0-9.]+ ms clock, "
        "[0-9.]+\\+[0-9.]+/[0-9.]+/[0-9.]+\\+[0-9.]+ ms cpu, [0-9]+->[0-9]+->[0-9]+ MB, "
        "[0-9]+ MB goal, [0-9]+ P \\(forced\\)$";
static const char gc_auto_re[] =
        "^gc [0-9]+ @[0-9]+\\.[0-9]{3}s [0-9]+%: [0-9.]+\\+[0-9.]+\\+[0-9.]+ ms clock, "
        "[0-9.]+\\+[0-9.]+/[0-9.]+/[0-9.]+\\+[0-9.]+ ms cpu, [0-9]+->[0-9]+->[0-9]+ MB, "
        "[0-9]+ MB goal, [0-9]+ P$";
static const char scvg1_re[] = "^scvg-1: [0-9]+ MB released$";
static const char scvg2_re[] =
        "^scvg-1: inuse: [0-9]+, idle: [0-9]+, sys: [0-9]+, released: [0-9]+, consumed: [0-9]+ \\(MB\\)$";

static void expect_match(const char *re, const char *line) {
        regex_t r;

        ck_assert_int_eq(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
        ck_assert_msg(regexec(&r, line, 0, NULL, 0) == 0, "line \"%s\" does not match %s", line, re);
        regfree(&r);
}

/* Splits captured output into at most max lines (modifies text). */
static int split_lines(char *text, char **lines, int max) {
        int n = 0;

        for (char *p = text; *p && n < max;) {
                char *nl = strchr(p, '\n');
                ck_assert_msg(nl != NULL, "unterminated line \"%s\"", p);
                *nl = 0;
                lines[n++] = p;
                p = nl + 1;
        }
        return n;
}

static size_t freeing_fn(void *ctx) {
        (void) ctx;
        fake_heap_alloc = 100 * MiB;
        return 200 * MiB;
}

START_TEST(test_gctrace_line) {
        struct capture cap;
        char *err, *lines[8];
        double at;
        int n;

        memd_config.gctrace = true;
        memd_config.gcpercent = 100;
        fake_heap_alloc = 300 * MiB;
        ck_assert_int_eq(memd_register_reclaimer("cache", freeing_fn, NULL), 0);

        capture_start(&cap);
        ck_assert_uint_eq(memd_gc(), 200 * MiB);
        err = capture_end(&cap);
        fprintf(stdout, "gctrace: %s", err);
        n = split_lines(err, lines, 8);
        ck_assert_int_eq(n, 1);
        expect_match(gc_re, lines[0]);
        ck_assert(!strncmp(lines[0], "gc 1 @", 6));
        ck_assert_ptr_nonnull(strstr(lines[0], " 300->100->100 MB, 200 MB goal, 4 P (forced)"));
        /* @ is seconds since the process started (2.5 s ago). */
        at = strtod(lines[0] + 6, NULL);
        ck_assert_msg(at >= 2.5 && at < 60, "@%.3fs, want about 2.5", at);
        free(err);

        /* An automatic cycle: numbered on, no "(forced)". */
        fake_threads = 9;
        capture_start(&cap);
        reclaim_cycle(false, false, NULL, NULL);
        err = capture_end(&cap);
        n = split_lines(err, lines, 8);
        ck_assert_int_eq(n, 1);
        expect_match(gc_auto_re, lines[0]);
        ck_assert(!strncmp(lines[0], "gc 2 @", 6));
        ck_assert_ptr_nonnull(strstr(lines[0], " 100->100->100 MB, 200 MB goal, 9 P"));
        free(err);
}
END_TEST

START_TEST(test_gctrace_off) {
        struct capture cap;
        char *err;

        fake_heap_alloc = 300 * MiB;
        capture_start(&cap);
        memd_gc();
        memd_free_os_memory();
        reclaim_cycle(false, true, NULL, NULL);
        err = capture_end(&cap);
        ck_assert_str_eq(err, "");
        free(err);
        ck_assert_uint_eq(fill().NumGC, 3);
}
END_TEST

/* The spec's example, numbers and all. */
START_TEST(test_free_os_memory_lines) {
        struct capture cap;
        char *err, *lines[8];
        size_t released;
        int n;

        memd_config.gctrace = true;
        fake_heap_alloc = 75 * MiB;
        fake_reads[0].HeapSys = 2815 * MiB;
        fake_reads[0].HeapInuse = 75 * MiB;
        fake_reads[0].HeapIdle = 2740 * MiB;
        fake_reads[0].HeapReleased = 0;
        fake_reads[1] = fake_reads[0];
        fake_reads[1].HeapReleased = 2740 * MiB;

        capture_start(&cap);
        released = memd_free_os_memory();
        err = capture_end(&cap);
        fprintf(stdout, "free_os_memory trace:\n%s", err);
        ck_assert_int_eq(n_stats_read, 2); /* before and after */
        ck_assert_uint_eq(released, 2740 * MiB);
        n = split_lines(err, lines, 8);
        ck_assert_int_eq(n, 3);
        expect_match(gc_re, lines[0]);
        expect_match(scvg1_re, lines[1]);
        expect_match(scvg2_re, lines[2]);
        ck_assert_str_eq(lines[1], "scvg-1: 2740 MB released");
        ck_assert_str_eq(lines[2], "scvg-1: inuse: 75, idle: 2740, sys: 2815, released: 2740, consumed: 75 (MB)");
        free(err);

        struct memd_memstats s = fill();
        ck_assert_uint_eq(s.NumGC, 1);
        ck_assert_uint_eq(s.NumForcedGC, 1);
}
END_TEST

/* Each cycle leaves events for the agent: the same lines gctrace prints
 * (gctrace off here: the events do not depend on it), with the figures. */
START_TEST(test_events) {
        struct reclaim_event ev[RECLAIM_EVENTS];
        struct reclaim_report rep;
        uint64_t released = 0, dropped = 1;
        size_t n;

        memd_config.gctrace = false;
        ck_assert_uint_eq(reclaim_events_last(), 0);
        fake_heap_alloc = 75 * MiB;
        fake_reads[0].HeapSys = 2815 * MiB;
        fake_reads[0].HeapInuse = 75 * MiB;
        fake_reads[0].HeapIdle = 2740 * MiB;
        fake_reads[1] = fake_reads[0];
        fake_reads[1].HeapReleased = 2740 * MiB;
        reclaim_cycle(true, true, &released, &rep);
        ck_assert_int_eq(notified, 2);
        ck_assert(rep.has_scvg);
        ck_assert_uint_eq(rep.scvg.released, 2740 * MiB);
        ck_assert_str_eq(rep.scvg.text, "scvg-1: 2740 MB released\n"
                                        "scvg-1: inuse: 75, idle: 2740, sys: 2815, released: 2740, consumed: 75 (MB)");
        expect_match(gc_re, rep.gc.text);
        ck_assert_ptr_null(strchr(rep.gc.text, '\n'));

        n = reclaim_events_since(0, ev, RECLAIM_EVENTS, &dropped);
        ck_assert_uint_eq(n, 2);
        ck_assert_uint_eq(dropped, 0);
        ck_assert_uint_eq(ev[0].kind, RECLAIM_EVENT_GC);
        ck_assert_uint_eq(ev[0].seq, 1);
        ck_assert(ev[0].forced);
        ck_assert_uint_eq(ev[0].num, 1);
        ck_assert_uint_eq(ev[0].heap_before, 75 * MiB);
        ck_assert_str_eq(ev[0].text, rep.gc.text);
        ck_assert_uint_eq(ev[1].kind, RECLAIM_EVENT_SCVG);
        ck_assert_uint_eq(ev[1].seq, 2);
        ck_assert_uint_eq(ev[1].num, 0); /* forced: scvg-1 */
        ck_assert_uint_eq(ev[1].heap_sys, 2815 * MiB);
        ck_assert_uint_eq(reclaim_events_since(1, ev, RECLAIM_EVENTS, NULL), 1);
        ck_assert_uint_eq(ev[0].seq, 2);
        ck_assert_uint_eq(reclaim_events_since(2, ev, RECLAIM_EVENTS, NULL), 0);

        /* An automatic one counts scvg 0, 1, ...; the ring keeps the last
         * RECLAIM_EVENTS and says how many a slow reader missed. */
        for (int i = 0; i < RECLAIM_EVENTS; i++)
                reclaim_cycle(false, false, NULL, NULL);
        ck_assert_uint_eq(reclaim_events_last(), RECLAIM_EVENTS + 2);
        n = reclaim_events_since(0, ev, RECLAIM_EVENTS, &dropped);
        ck_assert_uint_eq(n, RECLAIM_EVENTS);
        ck_assert_uint_eq(dropped, 2);
        ck_assert_uint_eq(ev[0].seq, 3);
        ck_assert(!ev[0].forced);
        ck_assert_uint_eq(ev[n - 1].num, RECLAIM_EVENTS + 1);
}
END_TEST

/* Nothing released, or more resident after than before: 0, never a wrap. */
START_TEST(test_free_os_memory_nothing) {
        memd_config.gctrace = false;
        fake_reads[0].HeapSys = 100 * MiB;
        fake_reads[0].HeapReleased = 10 * MiB;
        fake_reads[1].HeapSys = 120 * MiB;
        fake_reads[1].HeapReleased = 10 * MiB;
        ck_assert_uint_eq(memd_free_os_memory(), 0);
}
END_TEST

START_TEST(test_scvg_automatic) {
        struct capture cap;
        char *err, *lines[8];
        uint64_t released = 1;
        int n;

        memd_config.gctrace = true;
        fake_reads[0].HeapSys = 10 * MiB;
        fake_reads[1].HeapSys = 10 * MiB;
        fake_reads[1].HeapReleased = 3 * MiB;
        capture_start(&cap);
        ck_assert_uint_eq(reclaim_cycle(false, true, &released, NULL), 0);
        n_stats_read = 0;
        reclaim_cycle(false, true, NULL, NULL);
        err = capture_end(&cap);
        ck_assert_uint_eq(released, 3 * MiB);
        n = split_lines(err, lines, 8);
        ck_assert_int_eq(n, 6);
        expect_match(gc_auto_re, lines[0]);
        ck_assert_str_eq(lines[1], "scvg0: 3 MB released");
        expect_match("^scvg0: inuse: [0-9]+, idle: [0-9]+, sys: 10, released: 3, consumed: 7 \\(MB\\)$", lines[2]);
        ck_assert_str_eq(lines[4], "scvg1: 3 MB released");
        free(err);
        ck_assert_uint_eq(fill().NumForcedGC, 0);
}
END_TEST

/* memd's idle-memory policy: the trim alone.  No reclaimer runs, no GC is
 * counted or traced; one automatic scvg line and event. */
START_TEST(test_scavenge_only) {
        struct reclaim_event ev[4];
        struct reclaim_report rep;
        uint64_t released = 0;
        struct counter c = { .returns = 5 };

        memd_config.gctrace = false;
        ck_assert_int_eq(memd_register_reclaimer("count", count_fn, &c), 0);
        fake_reads[0].HeapSys = 10 * MiB;
        fake_reads[1].HeapSys = 10 * MiB;
        fake_reads[1].HeapReleased = 3 * MiB;
        reclaim_run(false, false, true, &released, &rep);
        ck_assert_int_eq(c.calls, 0);
        ck_assert_uint_eq(released, 3 * MiB);
        ck_assert(!rep.has_gc);
        ck_assert(rep.has_scvg);
        ck_assert_str_eq(strtok(rep.scvg.text, "\n"), "scvg0: 3 MB released");
        ck_assert_uint_eq(fill().NumGC, 0);
        ck_assert_uint_eq(reclaim_events_since(0, ev, 4, NULL), 1);
        ck_assert_uint_eq(ev[0].kind, RECLAIM_EVENT_SCVG);
        ck_assert(!ev[0].forced);
        /* A GC cycle still runs the reclaimer. */
        reclaim_cycle(false, false, NULL, NULL);
        ck_assert_int_eq(c.calls, 1);
        ck_assert_uint_eq(fill().NumGC, 1);
        memd_unregister_reclaimer("count", count_fn, &c);
}
END_TEST

START_TEST(test_scavtrace) {
        struct capture cap;
        char *err, *lines[8];

        memd_config.scavtrace = true;
        fake_reads[0].HeapSys = 10 * MiB;
        fake_reads[1].HeapSys = 10 * MiB;
        fake_reads[1].HeapReleased = 3 * MiB;
        capture_start(&cap);
        memd_gc(); /* no scavenge, no line */
        memd_free_os_memory();
        err = capture_end(&cap);
        ck_assert_int_eq(split_lines(err, lines, 8), 1);
        expect_match("^scav [0-9]+ [0-9]+ KiB work, [0-9]+ KiB total, [0-9]+% util( \\(forced\\))?$", lines[0]);
        /* Go 1.19's printScavTrace: generation, work, HeapReleased total. */
        ck_assert_str_eq(lines[0], "scav 2 3072 KiB work, 3072 KiB total, 0% util (forced)");
        free(err);
}
END_TEST

/* libmemd's threads run with the guard up; their cycles run the
 * application's reclaimers with it down, and restore it. */
static uint32_t guard_seen = 99;
static size_t guard_reclaimer(void *ctx) {
        (void) ctx;
        guard_seen = memd_thread.guard;
        return 0;
}

START_TEST(test_unguarded) {
        ck_assert_int_eq(memd_register_reclaimer("g", guard_reclaimer, NULL), 0);
        memd_thread.guard = 3;
        reclaim_run_unguarded(false, true, false, NULL, NULL);
        ck_assert_uint_eq(guard_seen, 0);
        ck_assert_uint_eq(memd_thread.guard, 3);
        memd_thread.guard = 0;
}
END_TEST

START_TEST(test_memory_limit) {
        ck_assert_uint_eq(memd_set_memory_limit(256 * MiB), 0);
        ck_assert_uint_eq(memd_config.memory_limit, 256 * MiB);
        ck_assert_uint_eq(memd_set_memory_limit(0), 256 * MiB);
        ck_assert_uint_eq(memd_config.memory_limit, 0);
        ck_assert_int_eq(monitor_starts, 1); /* a limit needs the thread; removing one does not */
}
END_TEST

static Suite *reclaim_suite(void) {
        Suite *s = suite_create("reclaim");
        TCase *tc = tcase_create("reclaimers");

        /* Fork mode: each test starts with no reclaimers and no history. */
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_register);
        tcase_add_test(tc, test_unguarded);
        tcase_add_test(tc, test_gc_runs_each_once);
        tcase_add_test(tc, test_allocating_reclaimer);
        tcase_add_test(tc, test_self_unregister);
        tcase_add_test(tc, test_unregister_waits);
        tcase_add_test(tc, test_reclaimer_calls_api);
        tcase_add_test(tc, test_concurrent_gc);
        tcase_set_timeout(tc, 30);
        suite_add_tcase(s, tc);

        tc = tcase_create("history");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_history);
        tcase_add_test(tc, test_pause_ring);
        tcase_add_test(tc, test_next_gc);
        tcase_add_test(tc, test_next_gc_exact);
        tcase_add_test(tc, test_memory_limit);
        tcase_set_timeout(tc, 30);
        suite_add_tcase(s, tc);

        tc = tcase_create("trace");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_gctrace_line);
        tcase_add_test(tc, test_gctrace_off);
        tcase_add_test(tc, test_free_os_memory_lines);
        tcase_add_test(tc, test_free_os_memory_nothing);
        tcase_add_test(tc, test_scvg_automatic);
        tcase_add_test(tc, test_scavenge_only);
        tcase_add_test(tc, test_scavtrace);
        tcase_add_test(tc, test_events);
        tcase_set_timeout(tc, 30);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(reclaim_suite(), "test-reclaim", true);
}
