/* stacks-bench.c - N distinct allocation stacks kept alive, then the latency of every malloc/free pair while the profile is read (the application's pause). */

/*
 * Issue 4's benchmark: a process with 10,000 distinct stacks.  The program
 * allocates one block from each of N call stacks and keeps it, so that with
 * MEMD_PROFILE_RATE=1 (every allocation sampled) libmemd's sample table holds
 * N buckets.  A stack is a recursive descent through two noinline functions,
 * fa and fb, one level per bit of i (the bit picks which one is called, from
 * which call site), then 0-6 levels of a third one, pad, then the leaf that
 * calls malloc: every i < 2^LEVELS has a stack of its own, 17-23 frames below
 * main.
 *
 * Then the measuring phase: THREADS threads each run malloc(64)/free pairs
 * in a tight loop and time each pair with clock_gettime(CLOCK_MONOTONIC)
 * (vDSO) around it.  Under MEMD_PROFILE_RATE=1 every one of those mallocs is
 * sampled, so every pair takes libmemd's sample-table lock twice (the
 * allocation's stack is recorded, the free is matched): a pair waits for
 * whoever holds that lock, which is how the agent's copy of the table every
 * second (and anything else done under the lock) shows up here.  A histogram
 * of the latencies (log-linear, 32 steps per power of two: about 3%) gives
 * p50/p99/p99.9/p99.99; the max is exact.  Each pair over the stall
 * threshold (-s, 1 ms) is counted and the 16 longest per phase are listed
 * with their time from the phase start and the context switches the thread
 * made around them (getrusage(RUSAGE_THREAD), read every 4096 pairs and
 * after each stall): a voluntary switch means it blocked (the lock, I/O), an
 * involuntary one that it was preempted (another process wanted the CPU).
 * Stalls with a voluntary switch are counted apart (blocked, max_blocked_us):
 * on a shared machine preemptions set the max, and the blocked figure is the
 * pause caused by the locks the pairs take (libmemd's).  The switches are those of the window
 * since the last getrusage, so a short wait just before a preemption makes
 * it count as blocked: the figure errs high, never low.
 *
 * Modes:
 *   (default)  build, measure one phase of -d SECONDS, print, exit.
 *   -w         build, print "waiting pid=N stacks=N" and wait for SIGUSR1;
 *              measuring starts then.  Each SIGUSR1 ends the current phase
 *              (its figures are printed, then "phase-started name=NEXT") and
 *              starts the next; SIGTERM or SIGINT ends the last one and the
 *              program exits.  Phases are named by -l NAME,NAME,... (else
 *              phase0, phase1, ...).  A wait of more than 10 minutes for a
 *              signal ends the program (a runner that died leaves nothing).
 *
 * Nothing here links libmemd: run it with LD_PRELOAD=libmemd.so,
 * MEMD_PROFILE_RATE=1 and MEMD_SOCKET=... (tests/bench/run-heap-bench.sh),
 * or MEMD_SOCKET=off for the same program without the agent.
 *
 * usage: stacks-bench [-n STACKS] [-d SECONDS] [-t THREADS] [-b BLOCK_BYTES]
 *                     [-s STALL_US] [-w] [-l NAMES]
 * Output (stdout), key=value lines:
 *   built stacks=N levels=L frames_min=A frames_max=B ms=F
 *   waiting pid=N stacks=N                                   (-w)
 *   phase name=S threads=T seconds=F pairs=N mean_ns=F p50_us=F p90_us=F
 *         p99_us=F p999_us=F p9999_us=F max_us=F over_1ms=N over_5ms=N
 *         over_stall=N blocked=N max_blocked_us=F vcs=N ivcs=N
 *   stall phase=S thread=I at_ms=F us=F vcs=N ivcs=N         (up to 16, longest first)
 *   phase-started name=S                                      (-w)
 */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "latency.h"

#define MAX_THREADS 16
#define MAX_PHASES 8
#define MAX_STACKS 60000u       /* libmemd's table holds 65,536 stacks, some are the program's own */
#define MIN_LEVELS 14
#define PAD_MAX 6               /* 0-6 levels of pad: stacks of different depths */
#define TOP_STALLS 16
#define RUSAGE_EVERY 4096u      /* pairs between two getrusage: the switches seen around a stall */
#define WAIT_MAX_S 600

#if defined(__has_attribute)
#if __has_attribute(noipa)
#define NOIPA __attribute__((noipa))
#endif
#endif
#ifndef NOIPA
#define NOIPA __attribute__((noinline, noclone))
#endif
/* Keeps p live after the call: the call is not a tail call, so its frame
 * (and its return address) stays on the stack. */
#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

static size_t block_bytes = 256;
static volatile unsigned sink;  /* fa and fb differ in what they add: never folded into one */

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* ---- the N stacks ---- */

NOIPA static void *leaf(size_t i) {
        void *p = malloc(block_bytes);

        if (p)
                memset(p, (int) (i & 0xff), block_bytes);
        KEEP(p);
        return p;
}

NOIPA static void *pad(unsigned left, size_t i) {
        void *p = left ? pad(left - 1, i) : leaf(i);

        KEEP(p);
        return p;
}

NOIPA static void *fb(unsigned level, size_t i);

/* Level `level` of i's descent: bit level-1 of i picks the next function. */
NOIPA static void *fa(unsigned level, size_t i) {
        void *p;

        sink += 1;
        if (level == 0)
                p = pad((unsigned) (i % (PAD_MAX + 1)), i);
        else if ((i >> (level - 1)) & 1)
                p = fa(level - 1, i);
        else
                p = fb(level - 1, i);
        KEEP(p);
        return p;
}

NOIPA static void *fb(unsigned level, size_t i) {
        void *p;

        sink += 3;
        if (level == 0)
                p = pad((unsigned) (i % (PAD_MAX + 1)), i);
        else if ((i >> (level - 1)) & 1)
                p = fa(level - 1, i);
        else
                p = fb(level - 1, i);
        KEEP(p);
        return p;
}

/* ---- the measuring threads ---- */

struct phase_stats {
        uint64_t hist[HIST_N];
        uint64_t pairs, sum_ns, max_ns;
        uint64_t over_1ms, over_5ms, over_stall;
        uint64_t blocked, max_blocked_ns;       /* stalls with a voluntary switch: waits, not preemptions */
        long vcs0, ivcs0, vcs, ivcs;    /* the thread's switches at the phase start, then over it */
        struct stall {
                uint64_t at_ns, ns;
                long vcs, ivcs;
        } top[TOP_STALLS];
        unsigned n_top;
};

struct worker {
        pthread_t tid;
        unsigned index;
        _Atomic int seen;               /* the phase this thread records into; -2: stopped */
        struct phase_stats *ph;         /* [MAX_PHASES] */
};

static _Atomic int cur_phase = -1;      /* -2: stop */
static uint64_t phase_start_ns[MAX_PHASES];
static uint64_t stall_ns = 1000000;

static void thread_switches(long *vcs, long *ivcs) {
        struct rusage ru;

        if (getrusage(RUSAGE_THREAD, &ru) == 0) {
                *vcs = ru.ru_nvcsw;
                *ivcs = ru.ru_nivcsw;
        } else
                *vcs = *ivcs = 0;
}

static void keep_stall(struct phase_stats *s, uint64_t at, uint64_t ns, long vcs, long ivcs) {
        unsigned k;

        if (s->n_top < TOP_STALLS)
                k = s->n_top++;
        else if (s->top[TOP_STALLS - 1].ns >= ns)
                return;
        else
                k = TOP_STALLS - 1; /* the shortest kept one goes */
        /* Kept longest first: insert. */
        while (k > 0 && s->top[k - 1].ns < ns) {
                s->top[k] = s->top[k - 1];
                k--;
        }
        s->top[k] = (struct stall) { at, ns, vcs, ivcs };
}

static void *worker_main(void *arg) {
        struct worker *w = arg;
        struct phase_stats *s = NULL;
        uint64_t n = 0;
        long vcs_mark = 0, ivcs_mark = 0;
        int seen = -1;

        for (;;) {
                int ph = atomic_load_explicit(&cur_phase, memory_order_acquire);
                uint64_t t0, t1, d;
                volatile char *p;

                if (ph < 0)
                        break;
                if (ph != seen) {
                        long v, iv;

                        thread_switches(&v, &iv);
                        if (s) {
                                s->vcs = v - s->vcs0;
                                s->ivcs = iv - s->ivcs0;
                        }
                        seen = ph;
                        s = &w->ph[ph];
                        s->vcs0 = vcs_mark = v;
                        s->ivcs0 = ivcs_mark = iv;
                        atomic_store_explicit(&w->seen, ph, memory_order_release);
                }
                t0 = now_ns();
                p = malloc(64);
                if (!p) {
                        fprintf(stderr, "stacks-bench: out of memory\n");
                        exit(2);
                }
                p[0] = (char) n; /* volatile: the pair cannot be elided */
                free((void *) p);
                t1 = now_ns();
                d = t1 - t0;
                s->hist[hist_index(d)]++;
                s->pairs++;
                s->sum_ns += d;
                if (d > s->max_ns)
                        s->max_ns = d;
                if (d >= 1000000)
                        s->over_1ms++;
                if (d >= 5000000)
                        s->over_5ms++;
                if (d >= stall_ns) {
                        long v, iv;

                        thread_switches(&v, &iv);
                        s->over_stall++;
                        if (v > vcs_mark) {
                                s->blocked++;
                                if (d > s->max_blocked_ns)
                                        s->max_blocked_ns = d;
                        }
                        keep_stall(s, t0 - phase_start_ns[ph], d, v - vcs_mark, iv - ivcs_mark);
                        vcs_mark = v;
                        ivcs_mark = iv;
                } else if (++n % RUSAGE_EVERY == 0)
                        thread_switches(&vcs_mark, &ivcs_mark);
        }
        if (s) {
                long v, iv;

                thread_switches(&v, &iv);
                s->vcs = v - s->vcs0;
                s->ivcs = iv - s->ivcs0;
        }
        atomic_store_explicit(&w->seen, -2, memory_order_release);
        return NULL;
}

static const char *phase_name(char **names, unsigned n_names, int ph, char *buf, size_t size) {
        if ((unsigned) ph < n_names)
                return names[ph];
        snprintf(buf, size, "phase%d", ph);
        return buf;
}

/* Phase ph over all threads; its figures are no longer written. */
static void report(struct worker *ws, unsigned nthreads, int ph, const char *name, double seconds) {
        static uint64_t hist[HIST_N];
        struct { struct stall s; unsigned thread; } top[MAX_THREADS * TOP_STALLS];
        uint64_t pairs = 0, sum = 0, max = 0, o1 = 0, o5 = 0, os = 0, nb = 0, maxb = 0;
        long vcs = 0, ivcs = 0;
        unsigned n_top = 0;

        memset(hist, 0, sizeof(hist));
        for (unsigned t = 0; t < nthreads; t++) {
                const struct phase_stats *s = &ws[t].ph[ph];

                for (unsigned k = 0; k < HIST_N; k++)
                        hist[k] += s->hist[k];
                pairs += s->pairs;
                sum += s->sum_ns;
                if (s->max_ns > max)
                        max = s->max_ns;
                o1 += s->over_1ms;
                o5 += s->over_5ms;
                os += s->over_stall;
                nb += s->blocked;
                if (s->max_blocked_ns > maxb)
                        maxb = s->max_blocked_ns;
                vcs += s->vcs;
                ivcs += s->ivcs;
                for (unsigned i = 0; i < s->n_top; i++) {
                        unsigned k = n_top++;
                        while (k > 0 && top[k - 1].s.ns < s->top[i].ns) {
                                top[k] = top[k - 1];
                                k--;
                        }
                        top[k].s = s->top[i];
                        top[k].thread = t;
                }
        }
        if (!pairs) {
                printf("phase name=%s threads=%u seconds=%.3f pairs=0\n", name, nthreads, seconds);
                return;
        }
        printf("phase name=%s threads=%u seconds=%.3f pairs=%" PRIu64 " mean_ns=%.0f"
               " p50_us=%.2f p90_us=%.2f p99_us=%.2f p999_us=%.2f p9999_us=%.2f max_us=%.1f"
               " over_1ms=%" PRIu64 " over_5ms=%" PRIu64 " over_stall=%" PRIu64 " blocked=%" PRIu64
               " max_blocked_us=%.1f vcs=%ld ivcs=%ld\n",
               name, nthreads, seconds, pairs, (double) sum / (double) pairs,
               percentile(hist, pairs, 0.50) / 1e3, percentile(hist, pairs, 0.90) / 1e3,
               percentile(hist, pairs, 0.99) / 1e3, percentile(hist, pairs, 0.999) / 1e3,
               percentile(hist, pairs, 0.9999) / 1e3, (double) max / 1e3, o1, o5, os, nb, (double) maxb / 1e3,
               vcs, ivcs);
        for (unsigned i = 0; i < n_top && i < TOP_STALLS; i++)
                printf("stall phase=%s thread=%u at_ms=%.1f us=%.1f vcs=%ld ivcs=%ld\n", name, top[i].thread,
                       (double) top[i].s.at_ns / 1e6, (double) top[i].s.ns / 1e3, top[i].s.vcs, top[i].s.ivcs);
}

static void usage(void) {
        fprintf(stderr, "usage: stacks-bench [-n STACKS] [-d SECONDS] [-t THREADS] [-b BLOCK_BYTES] [-s STALL_US] [-w] [-l NAMES]\n");
        exit(2);
}

int main(int argc, char **argv) {
        size_t n_stacks = 10000;
        double seconds = 10;
        unsigned nthreads = 1, levels = MIN_LEVELS, n_names = 0;
        bool wait = false;
        char *names[MAX_PHASES], *list = NULL;
        struct worker ws[MAX_THREADS];
        void **blocks;
        sigset_t set;
        uint64_t t0;
        int c;

        while ((c = getopt(argc, argv, "n:d:t:b:s:wl:h")) != -1) {
                switch (c) {
                case 'n': n_stacks = strtoul(optarg, NULL, 10); break;
                case 'd': seconds = strtod(optarg, NULL); break;
                case 't': nthreads = (unsigned) strtoul(optarg, NULL, 10); break;
                case 'b': block_bytes = strtoul(optarg, NULL, 10); break;
                case 's': stall_ns = strtoull(optarg, NULL, 10) * 1000u; break;
                case 'w': wait = true; break;
                case 'l': list = optarg; break;
                default: usage();
                }
        }
        if (optind != argc || n_stacks < 1 || n_stacks > MAX_STACKS || nthreads < 1 || nthreads > MAX_THREADS ||
            !(seconds > 0) || block_bytes < 1 || stall_ns == 0)
                usage();
        for (char *save = NULL, *tok = list ? strtok_r(list, ",", &save) : NULL; tok && n_names < MAX_PHASES;
             tok = strtok_r(NULL, ",", &save))
                names[n_names++] = tok;
        while ((1ull << levels) < n_stacks)
                levels++;

        /* Signals are taken with sigwait by the main thread only: blocked
         * before any thread starts (libmemd's agent blocks all of its own). */
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, NULL);

        /* The N stacks, one block each, kept until exit. */
        blocks = calloc(n_stacks, sizeof(*blocks));
        if (!blocks) {
                fprintf(stderr, "stacks-bench: out of memory\n");
                return 2;
        }
        t0 = now_ns();
        for (size_t i = 0; i < n_stacks; i++) {
                blocks[i] = fa(levels, i);
                if (!blocks[i]) {
                        fprintf(stderr, "stacks-bench: out of memory\n");
                        return 2;
                }
        }
        /* fa x (levels + 1), pad x (1..PAD_MAX + 1), leaf. */
        printf("built stacks=%zu levels=%u frames_min=%u frames_max=%u ms=%.1f\n", n_stacks, levels,
               levels + 3, levels + 3 + (unsigned) (n_stacks > PAD_MAX ? PAD_MAX : n_stacks - 1),
               (double) (now_ns() - t0) / 1e6);
        fflush(stdout);

        if (wait) {
                struct timespec limit = { WAIT_MAX_S, 0 };
                int sig;

                printf("waiting pid=%d stacks=%zu\n", (int) getpid(), n_stacks);
                fflush(stdout);
                sig = sigtimedwait(&set, NULL, &limit);
                if (sig != SIGUSR1)
                        return sig < 0 ? 3 : 0;
        }

        memset(ws, 0, sizeof(ws));
        phase_start_ns[0] = now_ns();
        atomic_store(&cur_phase, 0);
        for (unsigned t = 0; t < nthreads; t++) {
                int r;

                ws[t].index = t;
                ws[t].seen = -1;
                ws[t].ph = calloc(MAX_PHASES, sizeof(struct phase_stats));
                if (!ws[t].ph) {
                        fprintf(stderr, "stacks-bench: out of memory\n");
                        return 2;
                }
                r = pthread_create(&ws[t].tid, NULL, worker_main, &ws[t]);
                if (r != 0) {
                        fprintf(stderr, "stacks-bench: pthread_create: %s\n", strerror(r));
                        return 2;
                }
        }
        if (wait) {
                char buf[32];

                printf("phase-started name=%s\n", phase_name(names, n_names, 0, buf, sizeof(buf)));
                fflush(stdout);
        }

        for (int ph = 0;;) {
                struct timespec limit;
                uint64_t end;
                int sig, next;
                char buf[32], nbuf[32];

                if (wait)
                        limit = (struct timespec) { WAIT_MAX_S, 0 };
                else
                        limit = (struct timespec) { (time_t) seconds,
                                                    (long) ((seconds - (double) (time_t) seconds) * 1e9) };
                do
                        sig = sigtimedwait(&set, NULL, &limit);
                while (sig < 0 && errno == EINTR);
                next = sig == SIGUSR1 && wait && ph + 1 < MAX_PHASES ? ph + 1 : -2;
                end = now_ns();
                if (next >= 0)
                        phase_start_ns[next] = end;
                atomic_store(&cur_phase, next);
                /* Every thread has left phase ph before it is read. */
                for (unsigned t = 0; t < nthreads; t++)
                        while (atomic_load_explicit(&ws[t].seen, memory_order_acquire) == ph)
                                usleep(100);
                report(ws, nthreads, ph, phase_name(names, n_names, ph, buf, sizeof(buf)),
                       (double) (end - phase_start_ns[ph]) / 1e9);
                if (next < 0)
                        break;
                printf("phase-started name=%s\n", phase_name(names, n_names, next, nbuf, sizeof(nbuf)));
                fflush(stdout);
                ph = next;
        }
        fflush(stdout);
        for (unsigned t = 0; t < nthreads; t++)
                pthread_join(ws[t].tid, NULL);
        return 0;
}
