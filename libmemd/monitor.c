/* monitor.c - the thread that enforces libmemd's in-process policies with no daemon: MEMD_MEMORY_LIMIT, MEMD_GCPERCENT and systemd's memory pressure. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/*
 * One thread, started by the library's constructor only when one of the
 * three is configured (or later by memd_set_memory_limit), restarted in a
 * forked child.  Nothing here runs in a malloc hook: the hooks only count,
 * and this thread looks at the counts every tick.  It runs with the
 * reentrancy guard up (its own allocations are counted, never sampled),
 * dropped while it runs a cycle so the reclaimers' frees of sampled blocks
 * are matched - as the agent does.  Cycles it starts are automatic: not
 * forced in NumForcedGC, gctrace, the event ring, and their scavenges are
 * numbered "scvgN" (docs/libmemd.md, "Policies").
 */

#define TICK_MS 100                     /* the limit and the GC goal are looked at this often */
#define SEC_NS 1000000000LL
#define LIMIT_REARM_PERCENT 95          /* under this share of the limit, the next crossing acts at once */
#define LIMIT_MIN_INTERVAL_NS SEC_NS    /* never more than one limit cycle a second */
#define LIMIT_MAX_INTERVAL_NS (30 * SEC_NS) /* backoff ceiling when cycles free nothing */
#define LIMIT_PROGRESS_DIVISOR 100      /* "freed something": at least 1% of the limit */
#define GC_CAPPED_INTERVAL_NS SEC_NS    /* a goal the limit caps below the live heap */
#define PRESSURE_INTERVAL_NS SEC_NS     /* events closer than this are coalesced */

static struct pressure pressure = { .fd = { -1, 0, 0 } };
static bool pressure_wanted;            /* configured and opened once: reopen after fork */
static _Atomic bool monitor_running;
static _Atomic bool monitor_exiting;

/* ---- decisions (pure: the unit tests drive them with made-up clocks) ---- */

void monitor_limit_init(struct limit_pace *p) {
        *p = (struct limit_pace) { .last_ns = INT64_MIN / 2, .interval_ns = LIMIT_MIN_INTERVAL_NS, .armed = true };
}

static bool under_rearm(uint64_t held, uint64_t limit) {
        return held <= limit / 100 * LIMIT_REARM_PERCENT + limit % 100 * LIMIT_REARM_PERCENT / 100;
}

/* The heap held from the OS is over the limit and the pace allows a cycle.
 * Dropping under the re-arm mark re-arms (and ends any backoff). */
bool monitor_limit_due(struct limit_pace *p, uint64_t held, uint64_t limit, int64_t now) {
        if (!limit)
                return false;
        if (under_rearm(held, limit)) {
                p->armed = true;
                p->interval_ns = LIMIT_MIN_INTERVAL_NS;
                return false;
        }
        if (held <= limit)
                return false;
        return now - p->last_ns >= (p->armed ? LIMIT_MIN_INTERVAL_NS : p->interval_ns);
}

/* After a limit cycle: progress is what the reclaimers freed plus what the
 * scavenge released.  A cycle that got under the re-arm mark leaves the
 * pace armed; one that freed nothing doubles the wait (up to 30 s). */
void monitor_limit_done(struct limit_pace *p, uint64_t held_after, uint64_t limit, uint64_t progress, int64_t now) {
        p->last_ns = now;
        if (limit && under_rearm(held_after, limit)) {
                p->armed = true;
                p->interval_ns = LIMIT_MIN_INTERVAL_NS;
                return;
        }
        p->armed = false;
        if (progress >= limit / LIMIT_PROGRESS_DIVISOR && progress > 0)
                p->interval_ns = LIMIT_MIN_INTERVAL_NS;
        else if ((p->interval_ns *= 2) > LIMIT_MAX_INTERVAL_NS)
                p->interval_ns = LIMIT_MAX_INTERVAL_NS;
}

/* GOGC: HeapAlloc is over the goal.  When the limit caps the goal (so it
 * may sit below the live heap and be over at every tick), at most once a
 * second. */
bool monitor_gc_due(uint64_t heap_alloc, uint64_t live_after, int gcpercent, uint64_t limit, int64_t last_gc_ns,
                    int64_t now) {
        uint64_t goal, uncapped;

        if (gcpercent < 0)
                return false;
        goal = reclaim_heap_goal(live_after, gcpercent, limit);
        if (heap_alloc <= goal)
                return false;
        uncapped = reclaim_heap_goal(live_after, gcpercent, 0);
        return goal >= uncapped || now - last_gc_ns >= GC_CAPPED_INTERVAL_NS;
}

bool monitor_pressure_due(int64_t last_ns, int64_t now) {
        return now - last_ns >= PRESSURE_INTERVAL_NS;
}

/* ---- the thread ---- */

static uint64_t heap_held(void) {
        struct memd_memstats s;

        memset(&s, 0, sizeof(s));
        stats_counters(&s);
        stats_read_heap("/proc/self/maps", &s);
        return s.HeapSys > s.HeapReleased ? s.HeapSys - s.HeapReleased : 0;
}

static size_t run_cycle(bool scavenge, uint64_t *ret_released) {
        return reclaim_run_unguarded(false, true, scavenge, ret_released, NULL);
}

static void *monitor_main(void *arg _unused_) {
        struct thread_state *t = &memd_thread;
        struct limit_pace lp;
        int64_t last_gc = INT64_MIN / 2, last_pressure = INT64_MIN / 2;
        bool pending = false;

        prctl(PR_SET_NAME, "memd-monitor", 0, 0, 0);
        t->guard++;
        monitor_limit_init(&lp);
        if (pressure_wanted && pressure.fd.fd < 0) {
                const char *why;
                /* A forked child watches with a descriptor of its own (its
                 * own trigger, its own connection); quietly off if that fails. */
                if (pressure_open(&pressure, &why) < 0)
                        pressure_wanted = false;
        }
        for (;;) {
                struct pollfd p = { -1, 0, 0 };
                uint64_t limit, released = 0;
                int64_t now;
                int gcpercent = memd_config.gcpercent;

                if (pressure.fd.fd >= 0 && ownfd_ok(&pressure.fd))
                        p = (struct pollfd) { pressure.fd.fd, pressure.events, 0 };
                if (poll(&p, p.fd >= 0 ? 1 : 0, TICK_MS) > 0 && p.revents) {
                        int r = pressure_handle(&pressure, p.revents);
                        if (r > 0)
                                pending = true;
                        else if (r < 0)
                                pressure_close(&pressure); /* the source went away: nothing more to watch */
                }
                if (atomic_load(&monitor_exiting))
                        continue;
                now = now_ns(CLOCK_MONOTONIC);

                if (pending && monitor_pressure_due(last_pressure, now)) {
                        run_cycle(true, NULL);
                        last_pressure = last_gc = now_ns(CLOCK_MONOTONIC);
                        pending = false;
                        continue;
                }

                limit = atomic_load(&memd_config.memory_limit);
                if (limit && monitor_limit_due(&lp, heap_held(), limit, now)) {
                        size_t freed = run_cycle(true, &released);
                        now = now_ns(CLOCK_MONOTONIC);
                        monitor_limit_done(&lp, heap_held(), limit, freed + released, now);
                        last_gc = now;
                        continue;
                }

                if (gcpercent >= 0) {
                        struct memd_memstats s;

                        memset(&s, 0, sizeof(s));
                        stats_counters(&s);
                        if (monitor_gc_due(s.HeapAlloc, reclaim_live_after(), gcpercent, limit, last_gc, now)) {
                                run_cycle(false, NULL);
                                last_gc = now_ns(CLOCK_MONOTONIC);
                        }
                }
        }
        return NULL;
}

static void spawn(void) {
        if (thread_start(monitor_main, NULL) != 0) {
                atomic_store(&monitor_running, false);
                memd_warn("cannot start the thread that enforces MEMD_MEMORY_LIMIT, MEMD_GCPERCENT and memory pressure");
        }
}

void monitor_start(void) {
        if (atomic_exchange(&monitor_running, true))
                return;
        spawn();
}

static void warn_pressure(const char *path, const char *why, int r) {
        char msg[400];
        struct buf b = { msg, 0, sizeof(msg) - 1 };

        buf_puts(&b, "MEMORY_PRESSURE_WATCH=");
        buf_puts(&b, path);
        buf_puts(&b, ": ");
        buf_puts(&b, why);
        /* Our own verdicts (-EINVAL, -EBADF, -ENOTTY) say it all; a system
         * call's error says why it failed. */
        if ((r != -EINVAL && r != -EBADF && r != -ENOTTY) || strstr(why, "refused")) {
                const char *e = strerrordesc_np(-r);
                buf_puts(&b, " (");
                buf_puts(&b, e ? e : "error");
                buf_puts(&b, ")");
        }
        buf_puts(&b, "; memory pressure not watched");
        msg[b.len] = 0;
        memd_warn(msg);
}

void monitor_init(void) {
        const char *watch = getenv("MEMORY_PRESSURE_WATCH"), *why = "";
        int r;

        r = pressure_parse(&pressure, watch, getenv("MEMORY_PRESSURE_WRITE"), &why);
        if (r > 0) {
                r = pressure_open(&pressure, &why);
                if (r >= 0)
                        pressure_wanted = true;
        }
        if (r < 0)
                warn_pressure(watch, why, r);
        if (pressure_wanted || atomic_load(&memd_config.memory_limit) || memd_config.gcpercent >= 0)
                monitor_start();
}

/* The child of a fork has no monitor thread.  The parent's pressure
 * descriptor is the parent's (a FIFO or a socket would be read by both, a
 * PSI trigger shared): the child's thread opens its own. */
void monitor_atfork_child(void) {
        if (!atomic_load(&monitor_running))
                return;
        pressure_close(&pressure);
        atomic_store(&monitor_running, false);
        monitor_start();
}

/* At exit: no new automatic cycle starts; a running one is waited for (up
 * to a second), so reclaimers never run while the application tears down. */
__attribute__((destructor)) static void monitor_exit(void) {
        if (!atomic_load(&monitor_running))
                return;
        atomic_store(&monitor_exiting, true);
        reclaim_wait_idle(1000);
}
