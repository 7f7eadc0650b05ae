/* scavenge-stall.c - a 1 GiB cache filled by N threads and emptied, then the latency of every malloc/free pair while memd_free_os_memory() (or malloc_trim) gives the memory back. */

/*
 * Issue 5's benchmark: how long does the scavenge stall the application?
 *
 * FILL threads (-t, 4) fill -m MiB (1024) of cache entries between them, as
 * the seed's scenario does: each entry is a 48-byte node, a 16-40 byte key
 * and a value of mixed size (7 in 8 are 64 B - 2 KiB, 1 in 8 is 2-16 KiB;
 * about 1.6 KiB on average).  Then each thread frees its entries in a
 * scattered order (a stride coprime with their number: neither LIFO nor
 * FIFO), except the one it allocated last, which stays alive and pins the
 * top of its heap: the arena cannot give the memory back by shrinking its
 * top, only by the scavenge's madvise.  The threads do not exit (jemalloc
 * would purge an exiting thread's memory at once, glibc hand its arena to
 * the next new thread): the first TIMERS of them go on to time pairs from
 * their own arena, the one that holds the freed memory; the others wait.
 *
 * The TIMERS threads (-k, 2, at most FILL_THREADS) each keep a ring of 1024 live blocks and, in a tight
 * loop, free a pseudo-random slot and allocate a replacement (the same size
 * mix as the values, plus 16-256 B): every pair is timed with
 * clock_gettime(CLOCK_MONOTONIC).  Sizes above glibc's tcache (1 KiB) take
 * the arena's lock, so a pair waits for whoever holds it.  The pairs are
 * counted in phases:
 *   base      -w ms (1000) without any scavenge: the baseline of the ratios
 *   scavenge  from just before the scavenge call to its return
 *   after     -w / 4 ms after it: the refaults of memory given back
 * A log-linear histogram (latency.h) gives the percentiles, the max is exact.
 * Each pair over -s us (1000) has the thread's context switches read
 * (getrusage(RUSAGE_THREAD)): a voluntary switch means it blocked (waited
 * for a lock), an involuntary one that it was preempted.  max_blocked_us is
 * the longest pair with a voluntary switch: the stall the scavenge's locks
 * caused.  On a machine with fewer CPUs than TIMERS + 1 the plain max also
 * holds preemptions by the scavenging thread.
 *
 * The scavenge (-v):
 *   memd   memd_free_os_memory(), looked up with dlsym (LD_PRELOAD libmemd)
 *   trim   malloc_trim(0)
 *   none   nothing (the scavenge phase is then -w / 4 ms of nothing)
 *   auto   memd if libmemd is loaded, else trim (the default)
 *
 * Output (stdout), key=value lines:
 *   scavenge-stall fill_threads=N timers=K mib=M via=S entries=N fill_ms=F rss_fill_kib=N
 *     free_ms=F rss_free_kib=N scavenge_ms=F released_bytes=N rss_after_kib=N
 *   phase name=S seconds=F pairs=N p50_us=F p99_us=F p999_us=F max_us=F over_1ms=N
 *     over_10ms=N blocked=N max_blocked_us=F vcs=N ivcs=N
 */

#include <dlfcn.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../progs/seedcache.h"
#include "latency.h"

#define MAX_THREADS 32
#define RING 1024u
#define N_PHASES 3

static const char *const phase_names[N_PHASES] = { "base", "scavenge", "after" };

static uint64_t ns_now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* xorshift64: cheap, and each thread has its own. */
static uint64_t rnd(uint64_t *s) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

/* A value's size: 7 in 8 are 64 B - 2 KiB, 1 in 8 is 2-16 KiB. */
static size_t value_size(uint64_t *s) {
        uint64_t r = rnd(s);

        if ((r & 7) != 0)
                return 64 + (size_t) ((r >> 8) % (2048 - 64));
        return 2048 + (size_t) ((r >> 8) % (16384 - 2048));
}

/* ---- filling and emptying ---- */

struct fill_entry {
        char *key, *value;
        uint64_t pad[4];        /* a 48-byte chunk, as the seed's node */
};

struct filler {
        pthread_t tid;
        unsigned index;
        size_t bytes;           /* to allocate (usable sizes asked for) */
        size_t n;               /* entries made */
        struct fill_entry **entries; /* mmapped, out of malloc */
        size_t cap;
        double fill_ms;
        struct timer *timer;    /* this thread times pairs after emptying; NULL: it only waits */
};

static void *timer_main(void *arg);
static _Atomic int cur_phase;

static pthread_barrier_t filled;

static void *fill_main(void *arg) {
        struct filler *f = arg;
        uint64_t seed = 0x9e3779b97f4a7c15ull * (f->index + 1), t0 = ns_now();
        size_t done = 0, stride;
        char key[48];

        while (done < f->bytes && f->n < f->cap) {
                struct fill_entry *e = xmalloc(sizeof(*e));
                size_t vb = value_size(&seed);
                int kl = snprintf(key, sizeof(key), "cache-key-%u-%zu-%.*s", f->index, f->n,
                                  (int) (rnd(&seed) % 16), "xxxxxxxxxxxxxxxx");

                e->key = xmalloc((size_t) kl + 1);
                memcpy(e->key, key, (size_t) kl + 1);
                e->value = xmalloc(vb);
                memset(e->value, (int) (f->n & 0xff), vb);
                f->entries[f->n++] = e;
                done += sizeof(*e) + (size_t) kl + 1 + vb;
        }
        f->fill_ms = (double) (ns_now() - t0) / 1e6;
        /* The peak RSS is read by main while every thread holds its cache. */
        pthread_barrier_wait(&filled);
        pthread_barrier_wait(&filled);

        /* Empty it in a scattered order, but keep the last entry: it pins the
         * top of this thread's heap. */
        stride = 7919;
        while (f->n > 1 && (f->n - 1) % stride == 0)
                stride += 2;
        for (size_t i = 0, k = 0; i + 1 < f->n; i++, k = (k + stride) % (f->n - 1)) {
                struct fill_entry *e = f->entries[k];
                free(e->value);
                free(e->key);
                free(e);
        }
        /* Then it stays, so that its arena stays its own (jemalloc purges an
         * exiting thread's memory at once, glibc would hand the arena to
         * another thread): the first TIMERS threads time pairs from the
         * arena that holds the freed memory, the others wait. */
        if (f->timer)
                return timer_main(f->timer);
        while (atomic_load(&cur_phase) != -2)
                usleep(10000);
        return NULL;
}

/* ---- timing ---- */

struct phase_stats {
        uint64_t hist[HIST_N];
        uint64_t pairs, max_ns, over_1ms, over_10ms, blocked, max_blocked_ns;
        long vcs0, ivcs0, vcs, ivcs;
};

struct timer {
        unsigned index;
        _Atomic int seen;       /* the phase this thread records into; -2: stopped */
        struct phase_stats ph[N_PHASES];
};

static _Atomic int cur_phase = -1;      /* -1: emptying, warming up; -2: stop */
static _Atomic unsigned warm;           /* timers whose ring is full */
static uint64_t stall_ns = 1000000;

static void switches(long *vcs, long *ivcs) {
        struct rusage ru;

        if (getrusage(RUSAGE_THREAD, &ru) == 0) {
                *vcs = ru.ru_nvcsw;
                *ivcs = ru.ru_nivcsw;
        } else
                *vcs = *ivcs = 0;
}

static size_t pair_size(uint64_t *s) {
        return (rnd(s) & 3) == 0 ? 16 + (size_t) (rnd(s) % 240) : value_size(s);
}

static void *timer_main(void *arg) {
        struct timer *w = arg;
        struct phase_stats *s = NULL;
        void **ring = calloc(RING, sizeof(*ring));
        uint64_t seed = 0xda942042e4dd58b5ull * (w->index + 7), n = 0;
        long vmark = 0, ivmark = 0;
        int seen = -1;

        if (!ring)
                exit(2);
        for (unsigned i = 0; i < RING; i++)
                ring[i] = xmalloc(pair_size(&seed));
        atomic_fetch_add(&warm, 1);
        for (;;) {
                int ph = atomic_load_explicit(&cur_phase, memory_order_acquire);
                unsigned slot;
                uint64_t t0, d;
                size_t size;
                volatile char *p;

                if (ph == -2)
                        break;
                if (ph != seen) {
                        long v, iv;

                        switches(&v, &iv);
                        if (s) {
                                s->vcs = v - s->vcs0;
                                s->ivcs = iv - s->ivcs0;
                        }
                        seen = ph;
                        s = ph >= 0 ? &w->ph[ph] : NULL;
                        if (s) {
                                s->vcs0 = vmark = v;
                                s->ivcs0 = ivmark = iv;
                        }
                        atomic_store_explicit(&w->seen, ph, memory_order_release);
                }
                slot = (unsigned) (rnd(&seed) % RING);
                size = pair_size(&seed);
                t0 = ns_now();
                free(ring[slot]);
                p = malloc(size);
                if (!p) {
                        fprintf(stderr, "scavenge-stall: out of memory\n");
                        exit(2);
                }
                p[0] = (char) n;
                d = ns_now() - t0;
                ring[slot] = (void *) p;
                if (!s)
                        continue;
                s->hist[hist_index(d)]++;
                s->pairs++;
                if (d > s->max_ns)
                        s->max_ns = d;
                s->over_1ms += d >= 1000000;
                s->over_10ms += d >= 10000000;
                if (d >= stall_ns) {
                        long v, iv;

                        switches(&v, &iv);
                        if (v > vmark) {
                                s->blocked++;
                                if (d > s->max_blocked_ns)
                                        s->max_blocked_ns = d;
                        }
                        vmark = v;
                        ivmark = iv;
                } else if (++n % 4096 == 0)
                        switches(&vmark, &ivmark);
        }
        if (s) {
                long v, iv;

                switches(&v, &iv);
                s->vcs = v - s->vcs0;
                s->ivcs = iv - s->ivcs0;
        }
        (void) ivmark;
        for (unsigned i = 0; i < RING; i++)
                free(ring[i]);
        free(ring);
        atomic_store_explicit(&w->seen, -2, memory_order_release);
        return NULL;
}

/* Ends phase `ph` and starts `next` (-2: stop): returns once every timer
 * has left ph, so its figures are no longer written. */
static uint64_t switch_phase(struct timer *ts, unsigned k, int ph, int next) {
        uint64_t t = ns_now();

        atomic_store_explicit(&cur_phase, next, memory_order_release);
        for (unsigned i = 0; i < k; i++)
                while (atomic_load_explicit(&ts[i].seen, memory_order_acquire) == ph)
                        usleep(50);
        return t;
}

static void report(const struct timer *ts, unsigned k, int ph, double seconds) {
        static uint64_t hist[HIST_N];
        uint64_t pairs = 0, max = 0, o1 = 0, o10 = 0, nb = 0, maxb = 0;
        long vcs = 0, ivcs = 0;

        memset(hist, 0, sizeof(hist));
        for (unsigned t = 0; t < k; t++) {
                const struct phase_stats *s = &ts[t].ph[ph];

                for (unsigned i = 0; i < HIST_N; i++)
                        hist[i] += s->hist[i];
                pairs += s->pairs;
                max = s->max_ns > max ? s->max_ns : max;
                o1 += s->over_1ms;
                o10 += s->over_10ms;
                nb += s->blocked;
                maxb = s->max_blocked_ns > maxb ? s->max_blocked_ns : maxb;
                vcs += s->vcs;
                ivcs += s->ivcs;
        }
        printf("phase name=%s seconds=%.3f pairs=%" PRIu64 " p50_us=%.2f p99_us=%.2f p999_us=%.2f max_us=%.1f"
               " over_1ms=%" PRIu64 " over_10ms=%" PRIu64 " blocked=%" PRIu64 " max_blocked_us=%.1f vcs=%ld ivcs=%ld\n",
               phase_names[ph], seconds, pairs, percentile(hist, pairs, 0.5) / 1e3, percentile(hist, pairs, 0.99) / 1e3,
               percentile(hist, pairs, 0.999) / 1e3, (double) max / 1e3, o1, o10, nb, (double) maxb / 1e3, vcs, ivcs);
}

static void usage(void) {
        fprintf(stderr, "usage: scavenge-stall [-t FILL_THREADS] [-k TIMERS] [-m MIB] [-w WINDOW_MS] [-s STALL_US] [-v auto|memd|trim|none]\n");
        exit(2);
}

int main(int argc, char **argv) {
        unsigned nfill = 4, k = 2;
        size_t mib = 1024;
        long window_ms = 1000;
        const char *via = "auto";
        size_t (*free_os)(void) = (size_t (*)(void)) dlsym(RTLD_DEFAULT, "memd_free_os_memory");
        static struct filler fs[MAX_THREADS];
        static struct timer ts[MAX_THREADS];
        struct timespec pause;
        uint64_t t0, t_phase[N_PHASES + 1], released = 0, scavenge_ns;
        long rss_fill, rss_free, rss_after;
        double fill_ms = 0;
        size_t entries = 0;
        int c;

        while ((c = getopt(argc, argv, "t:k:m:w:s:v:h")) != -1) {
                switch (c) {
                case 't': nfill = (unsigned) strtoul(optarg, NULL, 10); break;
                case 'k': k = (unsigned) strtoul(optarg, NULL, 10); break;
                case 'm': mib = strtoul(optarg, NULL, 10); break;
                case 'w': window_ms = strtol(optarg, NULL, 10); break;
                case 's': stall_ns = strtoull(optarg, NULL, 10) * 1000u; break;
                case 'v': via = optarg; break;
                default: usage();
                }
        }
        if (optind != argc || nfill < 1 || nfill > MAX_THREADS || k < 1 || k > nfill || mib < 1 ||
            window_ms < 4 || stall_ns == 0)
                usage();
        if (strcmp(via, "auto") == 0)
                via = free_os ? "memd" : "trim";
        if (strcmp(via, "memd") == 0 && !free_os) {
                fprintf(stderr, "scavenge-stall: -v memd: memd_free_os_memory not found (run with LD_PRELOAD=libmemd.so)\n");
                return 77;
        }
        if (strcmp(via, "memd") != 0 && strcmp(via, "trim") != 0 && strcmp(via, "none") != 0)
                usage();

        /* glibc raises its mmap and trim thresholds after the first free of
         * a large mmapped block, as nearly every real program has done: the
         * timers' 16 KiB blocks are then not mmapped, and free does not trim
         * the top of a heap for every hole (malloc-bench.c's reason). */
        free(xmalloc(1u << 20));

        pthread_barrier_init(&filled, NULL, nfill + 1);
        for (unsigned i = 0; i < nfill; i++) {
                fs[i].index = i;
                if (i < k) {
                        ts[i].index = i;
                        ts[i].seen = -1;
                        fs[i].timer = &ts[i];
                }
                fs[i].bytes = (mib << 20) / nfill;
                fs[i].cap = fs[i].bytes / 64 + 1;
                fs[i].entries = mmap(NULL, fs[i].cap * sizeof(void *), PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (fs[i].entries == MAP_FAILED || pthread_create(&fs[i].tid, NULL, fill_main, &fs[i]) != 0) {
                        fprintf(stderr, "scavenge-stall: cannot start a fill thread\n");
                        return 2;
                }
        }
        pthread_barrier_wait(&filled);
        rss_fill = rss_kib();
        t0 = ns_now();
        pthread_barrier_wait(&filled);
        while (atomic_load(&warm) < k)
                usleep(1000);
        for (unsigned i = 0; i < nfill; i++) {
                entries += fs[i].n;
                fill_ms = fs[i].fill_ms > fill_ms ? fs[i].fill_ms : fill_ms;
        }
        double free_ms = (double) (ns_now() - t0) / 1e6;
        rss_free = rss_kib();

        t_phase[0] = switch_phase(ts, k, -1, 0);
        pause = (struct timespec) { window_ms / 1000, (window_ms % 1000) * 1000000 };
        nanosleep(&pause, NULL);
        t_phase[1] = switch_phase(ts, k, 0, 1);
        t0 = ns_now();
        if (strcmp(via, "memd") == 0)
                released = free_os();
        else if (strcmp(via, "trim") == 0)
                malloc_trim(0);
        else {
                struct timespec q = { 0, (window_ms / 4) * 1000000 };
                nanosleep(&q, NULL);
        }
        scavenge_ns = ns_now() - t0;
        t_phase[2] = switch_phase(ts, k, 1, 2);
        rss_after = rss_kib();
        pause = (struct timespec) { (window_ms / 4) / 1000, ((window_ms / 4) % 1000) * 1000000 };
        nanosleep(&pause, NULL);
        t_phase[3] = switch_phase(ts, k, 2, -2);
        for (unsigned i = 0; i < nfill; i++)
                pthread_join(fs[i].tid, NULL);

        printf("scavenge-stall fill_threads=%u timers=%u mib=%zu via=%s entries=%zu fill_ms=%.1f rss_fill_kib=%ld"
               " free_ms=%.1f rss_free_kib=%ld scavenge_ms=%.2f released_bytes=%zu rss_after_kib=%ld\n",
               nfill, k, mib, via, entries, fill_ms, rss_fill, free_ms, rss_free,
               (double) scavenge_ns / 1e6, (size_t) released, rss_after);
        for (int ph = 0; ph < N_PHASES; ph++)
                report(ts, k, ph, (double) (t_phase[ph + 1] - t_phase[ph]) / 1e9);
        return 0;
}
