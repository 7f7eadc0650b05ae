/* stress.c - multi-threaded malloc-family stress with fork, checking libmemd's exact counters when present. */

/*
 * 8 threads run random operations over their own slots with every member of
 * the malloc family, check contents, alignment and malloc_usable_size, hand
 * blocks to each other (cross-thread free and realloc), and some of them
 * fork() while the others keep allocating; each child allocates, checks its
 * own counters, starts a thread, and exits 0.  With libmemd present (looked
 * up with dlsym, so the program runs without it too) the counters must be
 * exact: at a quiescent point HeapObjects and HeapAlloc over the baseline are
 * exactly the live blocks and their usable sizes, and after everything is
 * freed they are back to the baseline.
 *
 * usage: stress [-i ITERATIONS_PER_THREAD] [-s SEED] [-F FORKS] [-P]
 * -P: no pvalloc (jemalloc, for one, has none: glibc's would then hand out a
 * block jemalloc cannot free).
 * Exit 0 on success, 1 on a failed check, 2 on a usage/setup error.
 */

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "memd.h"

#define NTHREADS 8
#define SLOTS 512
#define MAILBOX 64
#define PATTERN_BYTES 64
#define MAX_SIZE (1u << 20)

typedef int (*read_memstats_fn)(struct memd_memstats *);
static read_memstats_fn read_memstats;

static atomic_int failures;
static size_t page_bytes;
static bool no_pvalloc;

/* Counts every failure, prints the first few. */
#define fail(...)                                                       \
        do {                                                            \
                if (atomic_fetch_add(&failures, 1) < 20) {              \
                        flockfile(stderr);                              \
                        fprintf(stderr, "stress: FAIL: " __VA_ARGS__);  \
                        fputc('\n', stderr);                            \
                        funlockfile(stderr);                            \
                }                                                       \
        } while (0)

struct blk {
        unsigned char *p;
        size_t req_bytes;       /* bytes we may use and whose pattern we check */
        uint8_t tag;
        bool zeroed;            /* came from calloc: contents not yet patterned */
};

struct mailbox {
        pthread_mutex_t lock;
        struct blk blks[MAILBOX];
        int n;
};

struct worker {
        int id;
        uint64_t rng;
        unsigned long iterations;
        unsigned long fork_at;          /* iteration to fork at, 0 = never */
        struct blk slots[SLOTS];
        struct mailbox inbox;
        unsigned long ops_alloc;        /* successful allocations (not counting realloc) */
        unsigned long ops_free;
        unsigned long forks;
};

static struct worker workers[NTHREADS];

static uint64_t rnd(uint64_t *s) {
        /* xorshift64* */
        uint64_t x = *s;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        return x * 0x2545F4914F6CDD1DULL;
}

/* 1 B .. 1 MiB, log-uniform so that small blocks dominate as in real programs. */
static size_t rnd_size(uint64_t *s) {
        unsigned bits = rnd(s) % 21;
        return 1 + (rnd(s) & ((1ul << bits) - 1)) % MAX_SIZE;
}

static size_t rnd_align(uint64_t *s) {
        /* sizeof(void *) .. 64 KiB, small alignments more often */
        unsigned shift = 3 + (rnd(s) % 14);
        if (rnd(s) % 4)
                shift = 3 + rnd(s) % 4;
        return (size_t)1 << shift;
}

/* A block's pattern byte depends only on its tag and the offset, so what
 * realloc preserves can be checked wherever it was written. */
static unsigned char pattern_byte(uint8_t tag, size_t i) {
        return (unsigned char)(tag + i * 31);
}

/* Writes the first and last PATTERN_BYTES bytes (they overlap for small blocks). */
static void pattern_fill(struct blk *b) {
        size_t head = b->req_bytes < PATTERN_BYTES ? b->req_bytes : PATTERN_BYTES;
        size_t tail = b->req_bytes > PATTERN_BYTES ? b->req_bytes - PATTERN_BYTES : 0;
        for (size_t i = 0; i < head; i++)
                b->p[i] = pattern_byte(b->tag, i);
        for (size_t i = tail; i < b->req_bytes; i++)
                b->p[i] = pattern_byte(b->tag, i);
        b->zeroed = false;
}

static bool is_zero(const unsigned char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

static void check_zeroed(const struct blk *b, const char *what) {
        size_t n = b->req_bytes < 4096 ? b->req_bytes : 4096;
        if (!is_zero(b->p, n) || !is_zero(b->p + b->req_bytes - n, n))
                fail("%s(%zu) returned memory that is not zero", what, b->req_bytes);
}

static void pattern_check(const struct blk *b, const char *when) {
        if (b->zeroed) {
                check_zeroed(b, when);
                return;
        }
        size_t head = b->req_bytes < PATTERN_BYTES ? b->req_bytes : PATTERN_BYTES;
        size_t tail = b->req_bytes > PATTERN_BYTES ? b->req_bytes - PATTERN_BYTES : 0;
        for (size_t i = 0; i < head; i++)
                if (b->p[i] != pattern_byte(b->tag, i)) {
                        fail("%s: head of block %p (%zu bytes) corrupted at %zu", when, (void *)b->p, b->req_bytes, i);
                        return;
                }
        for (size_t i = tail; i < b->req_bytes; i++)
                if (b->p[i] != pattern_byte(b->tag, i)) {
                        fail("%s: tail of block %p (%zu bytes) corrupted at %zu", when, (void *)b->p, b->req_bytes, i);
                        return;
                }
}

/* After realloc only min(old, new) bytes are preserved: check the head. */
static void pattern_check_head(const unsigned char *p, uint8_t tag, size_t n, bool zeroed) {
        if (n > PATTERN_BYTES)
                n = PATTERN_BYTES;
        for (size_t i = 0; i < n; i++)
                if (p[i] != (zeroed ? 0 : pattern_byte(tag, i))) {
                        fail("realloc lost the contents of a block at byte %zu", i);
                        return;
                }
}

static void check_usable(const void *p, size_t req_bytes, const char *what) {
        size_t u = malloc_usable_size((void *)p);
        if (u < req_bytes)
                fail("%s: malloc_usable_size %zu < requested %zu", what, u, req_bytes);
}

static void check_align(const void *p, size_t align, const char *what) {
        if ((uintptr_t)p % align)
                fail("%s: %p not aligned to %zu", what, p, align);
}

/* Allocates into an empty slot with a randomly chosen function. */
static void do_alloc(struct worker *w, struct blk *b) {
        size_t n = rnd_size(&w->rng), align;
        void *p = NULL;
        const char *what;
        bool zeroed = false;
        int r;

        switch (rnd(&w->rng) % 10) {
        case 0: case 1: case 2:
                what = "malloc";
                p = malloc(n);
                break;
        case 3: {
                what = "calloc";
                size_t nmemb = 1 + rnd(&w->rng) % 16;
                size_t each = (n + nmemb - 1) / nmemb;
                n = nmemb * each;
                p = calloc(nmemb, each);
                zeroed = true;
                break;
        }
        case 4:
                what = "posix_memalign";
                align = rnd_align(&w->rng);
                r = posix_memalign(&p, align, n);
                if (r != 0) {
                        fail("posix_memalign(%zu, %zu) = %d", align, n, r);
                        p = NULL;
                } else
                        check_align(p, align, what);
                break;
        case 5:
                what = "aligned_alloc";
                align = rnd_align(&w->rng);
                n = (n + align - 1) / align * align;   /* C11: size a multiple of the alignment */
                p = aligned_alloc(align, n);
                if (p)
                        check_align(p, align, what);
                break;
        case 6:
                what = "memalign";
                align = rnd_align(&w->rng);
                p = memalign(align, n);
                if (p)
                        check_align(p, align, what);
                break;
        case 7:
                what = "valloc";
                p = valloc(n);
                if (p)
                        check_align(p, page_bytes, what);
                break;
        case 8:
                if (no_pvalloc) {
                        what = "valloc";
                        p = valloc(n);
                        if (p)
                                check_align(p, page_bytes, what);
                        break;
                }
                what = "pvalloc";
                p = pvalloc(n);
                if (p) {
                        check_align(p, page_bytes, what);
                        n = (n + page_bytes - 1) / page_bytes * page_bytes; /* pvalloc rounds up */
                }
                break;
        default:
                what = "realloc(NULL)";
                p = realloc(NULL, n);
                break;
        }
        if (!p) {
                fail("%s(%zu) returned NULL", what, n);
                return;
        }
        check_usable(p, n, what);
        *b = (struct blk) { p, n, (uint8_t)rnd(&w->rng), zeroed };
        if (zeroed)
                check_zeroed(b, what);
        else
                pattern_fill(b);
        w->ops_alloc++;
}

static void do_free(struct worker *w, struct blk *b) {
        pattern_check(b, "free");
        free(b->p);
        b->p = NULL;
        w->ops_free++;
}

static void do_realloc(struct worker *w, struct blk *b) {
        size_t old = b->req_bytes, n;
        unsigned char *p;
        uint64_t k = rnd(&w->rng) % 10;

        pattern_check(b, "realloc");
        if (k == 0) {
                /* realloc(p, 0): glibc frees and returns NULL; others may return a block. */
                p = realloc(b->p, 0);
                if (!p) {
                        b->p = NULL;
                        w->ops_free++;
                } else {
                        b->p = p;
                        b->req_bytes = 0;
                        b->zeroed = false;
                }
                return;
        }
        if (k < 5 && old < 4 * MAX_SIZE)
                n = old + 1 + rnd(&w->rng) % (old ? old : 1);                    /* grow */
        else if (k < 8)
                n = old > 1 ? 1 + rnd(&w->rng) % old : 1;                        /* shrink */
        else
                n = rnd_size(&w->rng);
        if (k == 9) {
                size_t nmemb = 1 + rnd(&w->rng) % 8;
                size_t each = (n + nmemb - 1) / nmemb;
                n = nmemb * each;
                p = reallocarray(b->p, nmemb, each);
        } else
                p = realloc(b->p, n);
        if (!p) {
                fail("realloc(%p, %zu) returned NULL", (void *)b->p, n);
                return;
        }
        pattern_check_head(p, b->tag, old < n ? old : n, b->zeroed);
        check_usable(p, n, "realloc");
        b->p = p;
        b->req_bytes = n;
        b->tag = (uint8_t)rnd(&w->rng);
        pattern_fill(b);
}

/* Opaque to the compiler, which would otherwise warn about the sizes. */
static volatile size_t size_max = SIZE_MAX;

/* Requests that must fail cleanly and leave what they were given alone. */
static void do_edge_cases(struct worker *w) {
        const size_t huge = size_max;
        void *p;
        errno = 0;
        if ((p = malloc(huge)) != NULL || errno != ENOMEM)
                fail("malloc(SIZE_MAX) = %p, errno %d", p, errno);
        if ((p = malloc(huge - 4096)) != NULL)
                fail("malloc(huge - 4096) = %p", p);
        errno = 0;
        if ((p = calloc(huge / 2, 4)) != NULL || errno != ENOMEM)
                fail("calloc(SIZE_MAX/2, 4) = %p, errno %d", p, errno);
        if ((p = calloc(1, huge - 64)) != NULL)
                fail("calloc(1, huge - 64) = %p", p);
        if (posix_memalign(&p, 3, 64) != EINVAL)
                fail("posix_memalign(alignment 3) did not return EINVAL");
        if (posix_memalign(&p, 64, huge - 32) != ENOMEM)
                fail("posix_memalign(64, SIZE_MAX - 32) did not return ENOMEM");
        if ((p = memalign(4096, huge - 8192)) != NULL)
                fail("memalign(4096, huge - 8192) = %p", p);
        if (malloc_usable_size(NULL) != 0)
                fail("malloc_usable_size(NULL) != 0");
        free(NULL);

        struct blk b = { 0 };
        do_alloc(w, &b);
        if (!b.p)
                return;
        errno = 0;
        if ((p = reallocarray(b.p, huge / 2, 4)) != NULL || errno != ENOMEM)
                fail("reallocarray overflow = %p, errno %d", p, errno);
        if ((p = realloc(b.p, huge - 16)) != NULL)
                fail("realloc(p, SIZE_MAX - 16) = %p", p);
        pattern_check(&b, "after failed realloc");   /* the block must be intact */
        void *q = malloc(0);
        if (q) {
                w->ops_alloc++;
                free(q);
                w->ops_free++;
        }
        do_free(w, &b);
}

static void mailbox_give(struct worker *to, struct blk *b) {
        pthread_mutex_lock(&to->inbox.lock);
        if (to->inbox.n < MAILBOX) {
                to->inbox.blks[to->inbox.n++] = *b;
                b->p = NULL;
        }
        pthread_mutex_unlock(&to->inbox.lock);
}

/* Frees or reallocs blocks other threads allocated. */
static void mailbox_drain(struct worker *w) {
        struct blk got[MAILBOX];
        int n;
        pthread_mutex_lock(&w->inbox.lock);
        n = w->inbox.n;
        memcpy(got, w->inbox.blks, n * sizeof(got[0]));
        w->inbox.n = 0;
        pthread_mutex_unlock(&w->inbox.lock);
        for (int i = 0; i < n; i++) {
                struct blk *slot = &w->slots[rnd(&w->rng) % SLOTS];
                if (!slot->p && rnd(&w->rng) % 2) {
                        *slot = got[i];
                        do_realloc(w, slot);
                } else
                        do_free(w, &got[i]);
        }
}

static int wait_child(pid_t pid, const char *who) {
        int status;
        for (int waited_ms = 0; waited_ms < 30000; waited_ms += 10) {
                pid_t r = waitpid(pid, &status, WNOHANG);
                if (r == pid) {
                        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                                return 0;
                        if (WIFEXITED(status))
                                fail("%s: child exited %d", who, WEXITSTATUS(status));
                        else
                                fail("%s: child killed by signal %d", who, WTERMSIG(status));
                        return -1;
                }
                if (r < 0) {
                        fail("%s: waitpid: %s", who, strerror(errno));
                        return -1;
                }
                struct timespec ts = { 0, 10 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        fail("%s: child still running after 30 s (deadlock after fork?), killing it", who);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
}

static void *child_thread(void *arg) {
        for (int i = 0; i < 1000; i++) {
                void *p = malloc(1 + i * 37);
                __asm__ volatile("" : : "r"(p) : "memory");
                free(p);
        }
        return arg;
}

/* In the child: one thread of the parent's, the others gone mid-malloc.
 * Everything must still work, counters included. */
static void child_main(struct worker *w) {
        struct memd_memstats s0, s1;
        enum { N = 1000 };
        void *ps[N];
        size_t usable = 0;

        if (read_memstats)
                read_memstats(&s0);
        for (int i = 0; i < N; i++) {
                ps[i] = malloc(rnd_size(&w->rng));
                if (!ps[i])
                        _exit(4);
                usable += malloc_usable_size(ps[i]);
        }
        if (read_memstats) {
                read_memstats(&s1);
                if (s1.HeapObjects - s0.HeapObjects != N || s1.HeapAlloc - s0.HeapAlloc != usable) {
                        fprintf(stderr, "stress: FAIL: in fork child: HeapObjects +%" PRId64 " (want %d), HeapAlloc +%" PRId64 " (want %zu)\n",
                                (int64_t)(s1.HeapObjects - s0.HeapObjects), N,
                                (int64_t)(s1.HeapAlloc - s0.HeapAlloc), usable);
                        _exit(5);
                }
        }
        for (int i = 0; i < N; i++)
                free(ps[i]);
        if (read_memstats) {
                read_memstats(&s1);
                if (s1.HeapObjects != s0.HeapObjects || s1.HeapAlloc != s0.HeapAlloc) {
                        fprintf(stderr, "stress: FAIL: in fork child: HeapObjects %" PRIu64 " -> %" PRIu64 ", HeapAlloc %" PRIu64 " -> %" PRIu64 " after freeing all\n",
                                s0.HeapObjects, s1.HeapObjects, s0.HeapAlloc, s1.HeapAlloc);
                        _exit(7);
                }
        }
        /* Not counted: glibc frees the other threads' TLS when it reuses
         * their stacks, which are real frees of the parent's blocks. */
        pthread_t t;
        if (pthread_create(&t, NULL, child_thread, NULL) != 0 || pthread_join(t, NULL) != 0)
                _exit(6);
        exit(0);   /* exit(), not _exit(): libmemd's exit path must work in a child too */
}

static void *worker_main(void *arg) {
        struct worker *w = arg;

        do_edge_cases(w);
        for (unsigned long it = 1; it <= w->iterations; it++) {
                struct blk *b = &w->slots[rnd(&w->rng) % SLOTS];
                uint64_t k = rnd(&w->rng) % 16;

                if (w->fork_at && it == w->fork_at) {
                        pid_t pid = fork();
                        if (pid < 0)
                                fail("fork: %s", strerror(errno));
                        else if (pid == 0)
                                child_main(w);
                        else if (wait_child(pid, "fork") == 0)
                                w->forks++;
                }
                if (it % 256 == 0)
                        mailbox_drain(w);
                if (!b->p) {
                        do_alloc(w, b);
                } else if (k < 6) {
                        do_free(w, b);
                } else if (k < 11) {
                        do_realloc(w, b);
                } else if (k < 12) {
                        mailbox_give(&workers[(w->id + 1) % NTHREADS], b);
                } else {
                        pattern_check(b, "check");
                        check_usable(b->p, b->req_bytes, "check");
                }
        }
        return NULL;
}

static void *warmup_main(void *arg) {
        for (int i = 0; i < 100; i++) {
                void *p = malloc(16 + i);
                __asm__ volatile("" : : "r"(p) : "memory");
                free(p);
        }
        return arg;
}

static void run_threads(void *(*fn)(void *), bool real) {
        pthread_t t[NTHREADS];
        for (int i = 0; i < NTHREADS; i++) {
                int r = pthread_create(&t[i], NULL, fn, real ? (void *)&workers[i] : NULL);
                if (r != 0) {
                        fprintf(stderr, "stress: pthread_create: %s\n", strerror(r));
                        exit(2);
                }
        }
        for (int i = 0; i < NTHREADS; i++)
                pthread_join(t[i], NULL);
}

static void check_invariants(const struct memd_memstats *s, const char *when) {
        if (s->Alloc != s->HeapAlloc)
                fail("%s: Alloc %" PRIu64 " != HeapAlloc %" PRIu64, when, s->Alloc, s->HeapAlloc);
        if (s->HeapObjects != s->Mallocs - s->Frees)
                fail("%s: HeapObjects %" PRIu64 " != Mallocs %" PRIu64 " - Frees %" PRIu64, when, s->HeapObjects, s->Mallocs, s->Frees);
        if (s->TotalAlloc < s->HeapAlloc)
                fail("%s: TotalAlloc %" PRIu64 " < HeapAlloc %" PRIu64, when, s->TotalAlloc, s->HeapAlloc);
        if (s->HeapInuse < s->HeapAlloc)
                fail("%s: HeapInuse %" PRIu64 " < HeapAlloc %" PRIu64, when, s->HeapInuse, s->HeapAlloc);
        if (s->HeapSys < s->HeapInuse)
                fail("%s: HeapSys %" PRIu64 " < HeapInuse %" PRIu64, when, s->HeapSys, s->HeapInuse);
}

static void read_stats(struct memd_memstats *s, const char *when) {
        int r = read_memstats(s);
        if (r < 0)
                fprintf(stderr, "stress: note: memd_read_memstats (%s) = %d (only /proc figures may be missing)\n", when, r);
        check_invariants(s, when);
}

int main(int argc, char **argv) {
        unsigned long iterations = 100000, nforks = 3;
        uint64_t seed = 0x5eed;
        int c;

        while ((c = getopt(argc, argv, "i:s:F:P")) != -1) {
                switch (c) {
                case 'i': iterations = strtoul(optarg, NULL, 10); break;
                case 's': seed = strtoull(optarg, NULL, 0); break;
                case 'F': nforks = strtoul(optarg, NULL, 10); break;
                case 'P': no_pvalloc = true; break;
                default:
                        fprintf(stderr, "usage: stress [-i ITERATIONS_PER_THREAD] [-s SEED] [-F FORKS] [-P]\n");
                        return 2;
                }
        }
        if (iterations < 16 || nforks > NTHREADS) {
                fprintf(stderr, "stress: need -i >= 16 and -F <= %d\n", NTHREADS);
                return 2;
        }
        page_bytes = (size_t)sysconf(_SC_PAGESIZE);
        read_memstats = (read_memstats_fn)dlsym(RTLD_DEFAULT, "memd_read_memstats");
        printf("stress: %d threads x %lu iterations, %lu forks, seed %#" PRIx64 ", libmemd %s\n",
               NTHREADS, iterations, nforks, seed, read_memstats ? "present" : "absent");
        fflush(stdout);

        for (int i = 0; i < NTHREADS; i++) {
                workers[i].id = i;
                workers[i].rng = seed * 0x9E3779B97F4A7C15ULL + (uint64_t)i * 7919 + 1;
                workers[i].iterations = iterations;
                /* forks from different threads at different points, others still running */
                workers[i].fork_at = (unsigned long)i < nforks ? iterations / 2 + (unsigned long)i * iterations / 8 : 0;
                pthread_mutex_init(&workers[i].inbox.lock, NULL);
        }
        /* Thread creation allocates (the DTV) the first time; the second round
         * reuses the cached stacks, so the baseline taken here stays exact. */
        run_threads(warmup_main, false);

        struct memd_memstats base = { 0 }, mid = { 0 }, end = { 0 };
        if (read_memstats)
                read_stats(&base, "baseline");

        run_threads(worker_main, true);

        /* Quiescent: every live block is in a slot or a mailbox. */
        unsigned long live = 0, ops_alloc = 0, ops_free = 0, forks = 0;
        uint64_t live_usable = 0;
        for (int i = 0; i < NTHREADS; i++) {
                struct worker *w = &workers[i];
                for (int j = 0; j < SLOTS; j++)
                        if (w->slots[j].p) {
                                live++;
                                live_usable += malloc_usable_size(w->slots[j].p);
                        }
                for (int j = 0; j < w->inbox.n; j++) {
                        live++;
                        live_usable += malloc_usable_size(w->inbox.blks[j].p);
                }
                ops_alloc += w->ops_alloc;
                ops_free += w->ops_free;
                forks += w->forks;
        }
        if (read_memstats) {
                read_stats(&mid, "after join");
                int64_t d_objects = (int64_t)(mid.HeapObjects - base.HeapObjects);
                int64_t d_bytes = (int64_t)(mid.HeapAlloc - base.HeapAlloc);
                printf("stress: live %lu blocks, %" PRIu64 " usable bytes; HeapObjects +%" PRId64 ", HeapAlloc +%" PRId64 "\n",
                       live, live_usable, d_objects, d_bytes);
                if (d_objects != (int64_t)live)
                        fail("HeapObjects grew by %" PRId64 ", %lu blocks are live", d_objects, live);
                if (d_bytes != (int64_t)live_usable)
                        fail("HeapAlloc grew by %" PRId64 ", live blocks have %" PRIu64 " usable bytes", d_bytes, live_usable);
                if (mid.Mallocs - base.Mallocs < ops_alloc)
                        fail("Mallocs grew by %" PRIu64 ", we made %lu allocations (not counting realloc)",
                             mid.Mallocs - base.Mallocs, ops_alloc);
        }

        /* Free everything, from this thread: the owners have exited. */
        for (int i = 0; i < NTHREADS; i++) {
                struct worker *w = &workers[i];
                for (int j = 0; j < SLOTS; j++)
                        if (w->slots[j].p)
                                do_free(w, &w->slots[j]);
                for (int j = 0; j < w->inbox.n; j++)
                        do_free(w, &w->inbox.blks[j]);
                w->inbox.n = 0;
        }
        if (read_memstats) {
                read_stats(&end, "after free");
                printf("stress: after free: HeapObjects %" PRIu64 " (baseline %" PRIu64 "), HeapAlloc %" PRIu64 " (baseline %" PRIu64 "), Mallocs +%" PRIu64 ", Frees +%" PRIu64 "\n",
                       end.HeapObjects, base.HeapObjects, end.HeapAlloc, base.HeapAlloc,
                       end.Mallocs - base.Mallocs, end.Frees - base.Frees);
                if (end.HeapObjects != base.HeapObjects)
                        fail("HeapObjects %" PRIu64 " after freeing everything, baseline %" PRIu64, end.HeapObjects, base.HeapObjects);
                if (end.HeapAlloc != base.HeapAlloc)
                        fail("HeapAlloc %" PRIu64 " after freeing everything, baseline %" PRIu64, end.HeapAlloc, base.HeapAlloc);
        }
        if (forks != nforks)
                fail("%lu of %lu forks succeeded", forks, nforks);
        printf("stress: %lu allocations, %lu frees, %lu forks, %d failures\n",
               ops_alloc, ops_free, forks, atomic_load(&failures));
        return atomic_load(&failures) ? 1 : 0;
}
