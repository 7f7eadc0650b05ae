/* malloc-bench.c - malloc/free pair cost: mixed small sizes with some large, a ring of live objects, N threads. */

/*
 * Each thread keeps RING live objects and, PAIRS times, frees a randomly
 * chosen one and allocates a replacement in its slot.  Sizes: 63 in 64 are
 * 8-512 bytes (uniform), 1 in 64 is 4-64 KiB (uniform; below glibc's mmap
 * threshold, so it stays in the heap).  Random slots make the frees neither
 * LIFO nor FIFO, so the allocator's bins and tcache see a realistic mix.
 *
 * The pointers are stored and every object is written on allocation and read
 * on free, and the reads feed a checksum that is printed: the compiler cannot
 * drop a pair.  Only the replace loop is timed (the ring is filled before the
 * start barrier and emptied after the stop).
 *
 * The allocator under test is whatever the process has: plain glibc, or
 * LD_PRELOAD=libmemd.so / libjemalloc.so.2.  Nothing here links libmemd.
 *
 * usage: malloc-bench [-t THREADS] [-n PAIRS_PER_THREAD] [-r RING] [-s SEED] [-C]
 * Output, one line on stdout:
 *   malloc-bench threads=T pairs=N ring=R warmup=W cold=0|1 ns_per_pair=F cpu_ns_per_pair=F sys_ns_per_pair=F wall_ms=F checksum=X
 * ns_per_pair is wall time of the timed phase divided by the pairs one thread
 * did (all threads run concurrently, so it is the per-thread pair latency);
 * cpu_ns_per_pair is the mean over threads of each thread's own CPU time per
 * pair (user + kernel), which does not count time spent descheduled - on a
 * shared machine the steadier figure.  sys_ns_per_pair is the kernel part
 * (glibc shrinking and regrowing a thread arena's heap: madvise, page
 * faults); the user/kernel split is tick-sampled, so it is approximate.
 */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define WARMUP_LAPS 4   /* untimed pairs per thread: WARMUP_LAPS x RING */

struct worker {
        pthread_t tid;
        unsigned index;
        uint64_t pairs;
        size_t ring_len;
        uint64_t seed;
        pthread_barrier_t *start, *stop;
        uint64_t cpu_ns;        /* this thread's CPU time in the timed phase */
        uint64_t sys_ns;        /* of which in the kernel (tick-sampled split) */
        uint64_t checksum;
        char **ring;
};

static uint64_t now_ns(clockid_t clock) {
        struct timespec ts;
        clock_gettime(clock, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: a handful of instructions, so the loop's own cost stays small
 * next to the ~240 instructions of a glibc pair. */
static inline uint64_t rng_next(uint64_t *s) {
        uint64_t x = *s;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        return x * UINT64_C(2685821657736338717);
}

/* 8..512 bytes, or 1 in 64 times 4096..65536 bytes.  Multiply-shift instead
 * of a modulo: no division on the hot path. */
static inline size_t pick_size_bytes(uint64_t r) {
        uint64_t hi = r >> 32;
        if ((r & 63) == 0)
                return 4096 + (size_t)((hi * (65536 - 4096 + 1)) >> 32);
        return 8 + (size_t)((hi * (512 - 8 + 1)) >> 32);
}

static inline size_t pick_slot(uint64_t r, size_t ring_len) {
        return (size_t)(((r & 0xffffffffu) * ring_len) >> 32);
}

static char *alloc_one(size_t size_bytes, uint64_t tag) {
        char *p = malloc(size_bytes);
        if (!p) {
                fprintf(stderr, "malloc-bench: malloc(%zu) failed\n", size_bytes);
                exit(2);
        }
        p[0] = (char)tag;
        p[size_bytes - 1] = (char)(tag >> 8);
        return p;
}

/* Kept out of line so a profiler can name it: callgrind
 * --toggle-collect=replace_loop counts the timed pairs plus the warm-up ones
 * (warmup= in the output) and nothing else. */
__attribute__((noinline)) static uint64_t replace_loop(char **ring, size_t ring_len, uint64_t pairs, uint64_t *rng) {
        uint64_t sum = 0;
        for (uint64_t i = 0; i < pairs; i++) {
                uint64_t r = rng_next(rng);
                size_t slot = pick_slot(r, ring_len);
                char *old = ring[slot];
                sum += (unsigned char)old[0];
                free(old);
                ring[slot] = alloc_one(pick_size_bytes(r), i);
        }
        return sum;
}

static uint64_t thread_sys_ns(void) {
        struct rusage ru;
        if (getrusage(RUSAGE_THREAD, &ru) < 0)
                return 0;
        return (uint64_t)ru.ru_stime.tv_sec * 1000000000u + (uint64_t)ru.ru_stime.tv_usec * 1000u;
}

static void *worker_main(void *arg) {
        struct worker *w = arg;
        uint64_t rng = w->seed * UINT64_C(0x9e3779b97f4a7c15) + w->index + 1;
        uint64_t cpu0, sys0;

        w->ring = malloc(w->ring_len * sizeof(char *));
        if (!w->ring) {
                fprintf(stderr, "malloc-bench: out of memory\n");
                exit(2);
        }
        for (size_t i = 0; i < w->ring_len; i++)
                w->ring[i] = alloc_one(pick_size_bytes(rng_next(&rng)), i);
        /* Warm-up laps so the heap has reached its steady shape. */
        w->checksum = replace_loop(w->ring, w->ring_len, w->ring_len * WARMUP_LAPS, &rng);

        pthread_barrier_wait(w->start);
        sys0 = thread_sys_ns();
        cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
        w->checksum += replace_loop(w->ring, w->ring_len, w->pairs, &rng);
        w->cpu_ns = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
        w->sys_ns = thread_sys_ns() - sys0;
        pthread_barrier_wait(w->stop);

        for (size_t i = 0; i < w->ring_len; i++)
                free(w->ring[i]);
        free(w->ring);
        return NULL;
}

static void usage(void) {
        fprintf(stderr, "usage: malloc-bench [-t THREADS] [-n PAIRS_PER_THREAD] [-r RING] [-s SEED] [-C]\n");
        exit(2);
}

static uint64_t parse_count(const char *s) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s)
                usage();
        /* 20M, 1K: decimal suffixes, these are counts */
        if (*end == 'K' || *end == 'k')
                v *= 1000, end++;
        else if (*end == 'M' || *end == 'm')
                v *= 1000000, end++;
        if (*end)
                usage();
        return v;
}

int main(int argc, char **argv) {
        unsigned nthreads = 1;
        uint64_t pairs = 20000000, seed = 1;
        size_t ring_len = 1024;
        bool cold = false;
        pthread_barrier_t start, stop;
        struct worker workers[MAX_THREADS];
        uint64_t t0, t1, cpu_sum = 0, sys_sum = 0, checksum = 0;
        int c;

        while ((c = getopt(argc, argv, "t:n:r:s:Ch")) != -1) {
                switch (c) {
                case 't': nthreads = (unsigned)parse_count(optarg); break;
                case 'n': pairs = parse_count(optarg); break;
                case 'r': ring_len = (size_t)parse_count(optarg); break;
                case 's': seed = parse_count(optarg); break;
                case 'C': cold = true; break;
                default: usage();
                }
        }
        if (optind != argc || nthreads < 1 || nthreads > MAX_THREADS || ring_len < 1)
                usage();

        /* Nearly every real program has freed a big buffer by the time it
         * runs its steady state; glibc then raises its mmap threshold to that
         * buffer's size and its trim threshold to twice that (here 2 MiB), so
         * it stops shrinking and regrowing the heap top for every free 64 KiB
         * hole.  Without this (-C, "cold"), that madvise/page-fault churn is
         * half of glibc's time here and dilutes every ratio towards 1. */
        if (!cold) {
                char *big = malloc(1 << 20);
                if (!big) {
                        fprintf(stderr, "malloc-bench: out of memory\n");
                        return 2;
                }
                big[0] = 1;
                free(big);
        }

        /* Workers are all spawned threads, also for -t 1: each then has an
         * arena of its own, and 1 and 2 threads run the same code. */
        pthread_barrier_init(&start, NULL, nthreads + 1);
        pthread_barrier_init(&stop, NULL, nthreads + 1);
        for (unsigned i = 0; i < nthreads; i++) {
                workers[i] = (struct worker) {
                        .index = i, .pairs = pairs, .ring_len = ring_len, .seed = seed,
                        .start = &start, .stop = &stop,
                };
                int r = pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]);
                if (r != 0) {
                        fprintf(stderr, "malloc-bench: pthread_create: %s\n", strerror(r));
                        return 2;
                }
        }
        pthread_barrier_wait(&start);
        t0 = now_ns(CLOCK_MONOTONIC);
        pthread_barrier_wait(&stop);
        t1 = now_ns(CLOCK_MONOTONIC);
        for (unsigned i = 0; i < nthreads; i++) {
                pthread_join(workers[i].tid, NULL);
                cpu_sum += workers[i].cpu_ns;
                sys_sum += workers[i].sys_ns;
                checksum += workers[i].checksum;
        }

        double per_thread = pairs ? (double)pairs : 1.0;
        printf("malloc-bench threads=%u pairs=%" PRIu64 " ring=%zu warmup=%zu cold=%d ns_per_pair=%.3f cpu_ns_per_pair=%.3f sys_ns_per_pair=%.3f wall_ms=%.1f checksum=%" PRIx64 "\n",
               nthreads, pairs, ring_len, ring_len * WARMUP_LAPS, cold, (double)(t1 - t0) / per_thread,
               (double)cpu_sum / nthreads / per_thread, (double)sys_sum / nthreads / per_thread,
               (double)(t1 - t0) / 1e6, checksum);
        return 0;
}
