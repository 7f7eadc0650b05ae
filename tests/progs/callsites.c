/* callsites.c - allocations at known call sites, printing the true per-site figures for the profile checks. */

/*
 * Each site_* function allocates a known number of blocks of known sizes
 * straight from malloc/calloc (never through a helper), so the caller of the
 * allocator, i.e. the leaf of every sampled stack, is that function.  The
 * sites are noipa so that neither -O1 nor -O2 inlines, clones (.constprop,
 * .isra) or turns them into tail calls.  The bookkeeping arrays come from
 * mmap so that they do not show up in the profile.
 *
 * Output, one line per site (stdout, or the file given with -o):
 *   site name=NAME kept=0|1 caller=FUNC alloc_objects=N alloc_bytes=N
 *        inuse_objects=N inuse_bytes=N usable_bytes=N sizes=SIZExCOUNT[,...]
 * Bytes are requested sizes; usable_bytes is what malloc_usable_size said
 * (for a profile that reports usable sizes instead).  sizes lets the checker
 * compute the exact variance of a Poisson byte-rate estimate.
 *
 * -w: after printing, print "waiting pid=N" on stdout and wait for SIGTERM
 * (memd's view of the process is checked meanwhile); then exit as usual.
 */

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define _site_ __attribute__((noipa, used))

/* Keeps the compiler from proving an allocation dead (GCC removes unused
 * malloc/free pairs). */
#define escape(p) __asm__ volatile("" : : "r"(p) : "memory")

#define SIZE_64K 65536
#define SIZE_SMALL 256
#define SIZE_MIXED_A 100
#define SIZE_MIXED_B 100000
#define CALLOC_NMEMB 64
#define CALLOC_SIZE 64
#define SIZE_FREED 8192
#define SIZE_THREAD 1024
#define N_TINY 4096

struct truth {
        const char *name;
        const char *caller;
        int kept;
        size_t n_sizes;
        size_t sizes[2];
        size_t counts[2];
        size_t usable_bytes;
};

static void *table_new(size_t n) {
        void *p = mmap(NULL, n * sizeof(void *), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
                perror("callsites: mmap");
                exit(2);
        }
        return p;
}

static void oom(const char *site) {
        fprintf(stderr, "callsites: %s: out of memory\n", site);
        exit(2);
}

_site_ size_t site_keep_64k(void **keep, size_t n) {
        size_t usable = 0;
        for (size_t i = 0; i < n; i++) {
                char *p = malloc(SIZE_64K);
                if (!p)
                        oom(__func__);
                p[0] = 1;
                escape(p);
                keep[i] = p;
                usable += malloc_usable_size(p);
        }
        return usable;
}

_site_ size_t site_keep_small(void **keep, size_t n) {
        size_t usable = 0;
        for (size_t i = 0; i < n; i++) {
                char *p = malloc(SIZE_SMALL);
                if (!p)
                        oom(__func__);
                p[0] = 1;
                escape(p);
                keep[i] = p;
                usable += malloc_usable_size(p);
        }
        return usable;
}

/* Two very different sizes at one call site: the case where Go's per-bucket
 * average scaling is biased and per-sample weights are not. */
_site_ size_t site_keep_mixed(void **keep, size_t npairs) {
        size_t usable = 0;
        for (size_t i = 0; i < npairs; i++) {
                for (int j = 0; j < 2; j++) {
                        char *p = malloc(j == 0 ? SIZE_MIXED_A : SIZE_MIXED_B);
                        if (!p)
                                oom(__func__);
                        p[0] = 1;
                        escape(p);
                        keep[2 * i + j] = p;
                        usable += malloc_usable_size(p);
                }
        }
        return usable;
}

_site_ size_t site_calloc(void **keep, size_t n) {
        size_t usable = 0;
        for (size_t i = 0; i < n; i++) {
                char *p = calloc(CALLOC_NMEMB, CALLOC_SIZE);
                if (!p)
                        oom(__func__);
                if (p[CALLOC_NMEMB * CALLOC_SIZE - 1] != 0) {
                        fprintf(stderr, "callsites: calloc returned non-zero memory\n");
                        exit(1);
                }
                escape(p);
                keep[i] = p;
                usable += malloc_usable_size(p);
        }
        return usable;
}

_site_ size_t site_freed(size_t n) {
        size_t usable = 0;
        for (size_t i = 0; i < n; i++) {
                char *p = malloc(SIZE_FREED);
                if (!p)
                        oom(__func__);
                p[0] = 1;
                escape(p);
                usable += malloc_usable_size(p);
                free(p);
        }
        return usable;
}

/* 1-byte objects: at MEMD_PROFILE_RATE=1 every one must count exactly once
 * (Go does not scale at rate 1); a weight of 1/(1-e^-1) would show here. */
_site_ size_t site_tiny(void **keep, size_t n) {
        size_t usable = 0;
        for (size_t i = 0; i < n; i++) {
                char *p = malloc(1);
                if (!p)
                        oom(__func__);
                p[0] = 1;
                escape(p);
                keep[i] = p;
                usable += malloc_usable_size(p);
        }
        return usable;
}

struct thread_arg {
        void **keep;
        size_t n;
        size_t usable;
};

_site_ size_t thread_site(void **keep, size_t n) {
        size_t usable = 0;
        for (size_t i = 0; i < n; i++) {
                char *p = malloc(SIZE_THREAD);
                if (!p)
                        oom(__func__);
                p[0] = 1;
                escape(p);
                keep[i] = p;
                usable += malloc_usable_size(p);
        }
        return usable;
}

_site_ void *thread_main(void *arg) {
        struct thread_arg *a = arg;
        a->usable = thread_site(a->keep, a->n);
        escape(a);
        return NULL;
}

/* The caller of every main-thread site: an ordinary function in .text.
 * (main itself lands in .text.startup at -O2, where Go 1.19's DWARF line
 * reader cannot find it, so go tool pprof leaves it unnamed.) */
_site_ void run_sites(struct truth *t, size_t n_64k, size_t n_small, size_t n_pairs,
                      size_t n_calloc, size_t n_freed, size_t nthreads, size_t n_per_thread) {
        t[0].usable_bytes = site_keep_64k(table_new(n_64k), n_64k);
        t[1].usable_bytes = site_keep_small(table_new(n_small), n_small);
        t[2].usable_bytes = site_keep_mixed(table_new(2 * n_pairs), n_pairs);
        t[3].usable_bytes = site_calloc(table_new(n_calloc), n_calloc);
        t[4].usable_bytes = site_freed(n_freed);
        t[5].usable_bytes = site_tiny(table_new(N_TINY), N_TINY);

        pthread_t tids[64];
        struct thread_arg args[64];
        for (size_t i = 0; i < nthreads; i++) {
                args[i] = (struct thread_arg) { table_new(n_per_thread), n_per_thread, 0 };
                int r = pthread_create(&tids[i], NULL, thread_main, &args[i]);
                if (r != 0) {
                        fprintf(stderr, "callsites: pthread_create: %s\n", strerror(r));
                        exit(2);
                }
        }
        for (size_t i = 0; i < nthreads; i++) {
                pthread_join(tids[i], NULL);
                t[6].usable_bytes += args[i].usable;
        }
}

static void print_truth(FILE *f, const struct truth *t) {
        size_t objects = 0, bytes = 0;
        for (size_t i = 0; i < t->n_sizes; i++) {
                objects += t->counts[i];
                bytes += t->counts[i] * t->sizes[i];
        }
        fprintf(f, "site name=%s kept=%d caller=%s alloc_objects=%zu alloc_bytes=%zu "
                "inuse_objects=%zu inuse_bytes=%zu usable_bytes=%zu sizes=",
                t->name, t->kept, t->caller, objects, bytes,
                t->kept ? objects : 0, t->kept ? bytes : 0, t->usable_bytes);
        for (size_t i = 0; i < t->n_sizes; i++)
                fprintf(f, "%s%zux%zu", i ? "," : "", t->sizes[i], t->counts[i]);
        fputc('\n', f);
}

static void usage(void) {
        fprintf(stderr, "usage: callsites [-s MIB_PER_SITE] [-t THREADS] [-o TRUTH_FILE] [-w]\n");
        exit(2);
}

int main(int argc, char **argv) {
        size_t mib = 16, nthreads = 4;
        const char *out_path = NULL;
        bool wait_term = false;
        int c;

        while ((c = getopt(argc, argv, "s:t:o:w")) != -1) {
                switch (c) {
                case 'w': wait_term = true; break;
                case 's': mib = strtoul(optarg, NULL, 10); break;
                case 't': nthreads = strtoul(optarg, NULL, 10); break;
                case 'o': out_path = optarg; break;
                default: usage();
                }
        }
        if (mib == 0 || nthreads == 0 || nthreads > 64)
                usage();

        size_t site_bytes = mib << 20;
        size_t n_64k = site_bytes / SIZE_64K;
        size_t n_small = site_bytes / SIZE_SMALL;
        size_t n_pairs = (site_bytes + SIZE_MIXED_A + SIZE_MIXED_B - 1) / (SIZE_MIXED_A + SIZE_MIXED_B);
        size_t n_calloc = site_bytes / (CALLOC_NMEMB * CALLOC_SIZE);
        size_t n_freed = site_bytes / SIZE_FREED;
        size_t n_per_thread = site_bytes / SIZE_THREAD / nthreads;

        struct truth t[7] = {
                { "site_keep_64k", "run_sites", 1, 1, { SIZE_64K }, { n_64k }, 0 },
                { "site_keep_small", "run_sites", 1, 1, { SIZE_SMALL }, { n_small }, 0 },
                { "site_keep_mixed", "run_sites", 1, 2, { SIZE_MIXED_A, SIZE_MIXED_B }, { n_pairs, n_pairs }, 0 },
                { "site_calloc", "run_sites", 1, 1, { CALLOC_NMEMB * CALLOC_SIZE }, { n_calloc }, 0 },
                { "site_freed", "run_sites", 0, 1, { SIZE_FREED }, { n_freed }, 0 },
                { "site_tiny", "run_sites", 1, 1, { 1 }, { N_TINY }, 0 },
                { "thread_site", "thread_main", 1, 1, { SIZE_THREAD }, { n_per_thread * nthreads }, 0 },
        };

        run_sites(t, n_64k, n_small, n_pairs, n_calloc, n_freed, nthreads, n_per_thread);

        FILE *f = stdout;
        if (out_path) {
                f = fopen(out_path, "w");
                if (!f) {
                        fprintf(stderr, "callsites: %s: %s\n", out_path, strerror(errno));
                        return 2;
                }
        }
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
                print_truth(f, &t[i]);
        if (fflush(f) != 0 || (f != stdout && fclose(f) != 0)) {
                fprintf(stderr, "callsites: write failed: %s\n", strerror(errno));
                return 2;
        }
        if (wait_term) {
                sigset_t set;
                int sig;

                /* Blocked before saying we wait, so an early SIGTERM waits too. */
                sigemptyset(&set);
                sigaddset(&set, SIGTERM);
                sigprocmask(SIG_BLOCK, &set, NULL);
                printf("waiting pid=%d\n", (int) getpid());
                fflush(stdout);
                sigwait(&set, &sig);
        }
        /* Everything kept stays allocated: the at-exit profile sees it in use. */
        return 0;
}
