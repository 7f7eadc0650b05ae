/* seed.c - the seed scenario: a 1 GiB cache of small entries, freed, and how fast and how far the memory goes back to the OS. */

/*
 * N threads fill a cache of ENTRIES entries of ENTRY_BYTES each; then either
 * the program frees them all (-m app, the default; -k keeps one entry alive,
 * which pins glibc's heap top) or it leaves them to a reclaimer registered
 * with memd_register_reclaimer (-m reclaimer), which the forced GC inside
 * memd_free_os_memory() runs.  The libmemd entry points are looked up with
 * dlsym so that the program also runs without the library; then it uses
 * malloc_trim(0) instead of memd_free_os_memory().
 *
 * Output on stdout, one "key=value ..." line per phase:
 *   seed threads=N entries=N entry_bytes=N keep=0|1 mode=app|reclaimer lib=memd|none
 *   fill rss_kib=N ms=F
 *   free rss_kib=N ms=F                        (mode=app)
 *   gc reclaimed_bytes=N ms=F                  (-g: memd_gc() first)
 *   free_os_memory via=memd|malloc_trim released_bytes=N ms=F rss_kib=N reclaimer_calls=N reclaimed_bytes=N
 */

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

typedef int (*register_fn)(const char *name, size_t (*fn)(void *ctx), void *ctx);
typedef size_t (*size_fn)(void);

struct cache {
        char **entries;
        size_t n_entries;
        size_t entry_bytes;
        size_t keep;            /* entries to leave alive (0 or 1) */
        bool filled;
};

static atomic_uint reclaimer_calls;
static atomic_size_t reclaimed_bytes;

struct filler {
        struct cache *cache;
        size_t from, to;
};

static double now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static long rss_kib(void) {
        long size, resident;
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f)
                return -1;
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
                resident = -1;
        fclose(f);
        return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void *fill_main(void *arg) {
        struct filler *f = arg;
        for (size_t i = f->from; i < f->to; i++) {
                char *p = malloc(f->cache->entry_bytes);
                if (!p) {
                        fprintf(stderr, "seed: out of memory at entry %zu\n", i);
                        exit(2);
                }
                memset(p, (int)(i & 0xff), f->cache->entry_bytes);
                f->cache->entries[i] = p;
        }
        return NULL;
}

/* Frees every entry but the last `keep`; returns the bytes freed. */
static size_t cache_drop(struct cache *c) {
        size_t freed = 0;
        if (!c->filled)
                return 0;
        for (size_t i = 0; i + c->keep < c->n_entries; i++) {
                free(c->entries[i]);
                c->entries[i] = NULL;
                freed += c->entry_bytes;
        }
        c->filled = false;
        return freed;
}

/* The forced GC's work for this program: evict the cache. */
static size_t cache_reclaim(void *ctx) {
        size_t freed = cache_drop(ctx);
        atomic_fetch_add(&reclaimer_calls, 1);
        atomic_fetch_add(&reclaimed_bytes, freed);
        return freed;
}

static void usage(void) {
        fprintf(stderr, "usage: seed [-t THREADS] [-n ENTRIES] [-b ENTRY_BYTES] [-k] [-m app|reclaimer] [-g]\n");
        exit(2);
}

int main(int argc, char **argv) {
        struct cache cache = { .n_entries = 1u << 20, .entry_bytes = 1024 };
        size_t nthreads = 1;
        bool reclaimer_mode = false, call_gc = false;
        int c;

        while ((c = getopt(argc, argv, "t:n:b:km:g")) != -1) {
                switch (c) {
                case 't': nthreads = strtoul(optarg, NULL, 10); break;
                case 'n': cache.n_entries = strtoul(optarg, NULL, 10); break;
                case 'b': cache.entry_bytes = strtoul(optarg, NULL, 10); break;
                case 'k': cache.keep = 1; break;
                case 'm':
                        if (strcmp(optarg, "app") == 0)
                                reclaimer_mode = false;
                        else if (strcmp(optarg, "reclaimer") == 0)
                                reclaimer_mode = true;
                        else
                                usage();
                        break;
                case 'g': call_gc = true; break;
                default: usage();
                }
        }
        if (nthreads == 0 || nthreads > 256 || cache.n_entries < nthreads || cache.entry_bytes == 0)
                usage();

        register_fn reg = (register_fn)dlsym(RTLD_DEFAULT, "memd_register_reclaimer");
        size_fn free_os_memory = (size_fn)dlsym(RTLD_DEFAULT, "memd_free_os_memory");
        size_fn gc = (size_fn)dlsym(RTLD_DEFAULT, "memd_gc");
        bool lib = reg && free_os_memory && gc;

        printf("seed threads=%zu entries=%zu entry_bytes=%zu keep=%zu mode=%s lib=%s\n",
               nthreads, cache.n_entries, cache.entry_bytes, cache.keep,
               reclaimer_mode ? "reclaimer" : "app", lib ? "memd" : "none");
        fflush(stdout);

        /* The index is not part of the cache's heap: keep it out of malloc. */
        cache.entries = mmap(NULL, cache.n_entries * sizeof(char *), PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (cache.entries == MAP_FAILED) {
                perror("seed: mmap");
                return 2;
        }
        if (lib) {
                int r = reg("seed-cache", cache_reclaim, &cache);
                if (r != 0) {
                        fprintf(stderr, "seed: memd_register_reclaimer: %s\n", strerror(-r));
                        return 1;
                }
        }

        double t0 = now_ms();
        pthread_t tids[256];
        struct filler fillers[256];
        for (size_t i = 0; i < nthreads; i++) {
                fillers[i] = (struct filler) { &cache, cache.n_entries * i / nthreads,
                                               cache.n_entries * (i + 1) / nthreads };
                int r = pthread_create(&tids[i], NULL, fill_main, &fillers[i]);
                if (r != 0) {
                        fprintf(stderr, "seed: pthread_create: %s\n", strerror(r));
                        return 2;
                }
        }
        for (size_t i = 0; i < nthreads; i++)
                pthread_join(tids[i], NULL);
        cache.filled = true;
        printf("fill rss_kib=%ld ms=%.1f\n", rss_kib(), now_ms() - t0);

        if (!reclaimer_mode || !lib) {
                t0 = now_ms();
                cache_drop(&cache);
                if (!reclaimer_mode)
                        printf("free rss_kib=%ld ms=%.1f\n", rss_kib(), now_ms() - t0);
        }
        fflush(stdout);

        if (call_gc && lib) {
                t0 = now_ms();
                size_t r = gc();
                printf("gc reclaimed_bytes=%zu ms=%.3f\n", r, now_ms() - t0);
                fflush(stdout);
        }

        size_t released = 0;
        t0 = now_ms();
        if (lib)
                released = free_os_memory();
        else
                malloc_trim(0);
        double ms = now_ms() - t0;
        printf("free_os_memory via=%s released_bytes=%zu ms=%.3f rss_kib=%ld reclaimer_calls=%u reclaimed_bytes=%zu\n",
               lib ? "memd" : "malloc_trim", released, ms, rss_kib(),
               atomic_load(&reclaimer_calls), atomic_load(&reclaimed_bytes));
        return 0;
}
