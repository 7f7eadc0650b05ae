/* seed.c - the seed scenario: a 1 GiB cache of small entries, freed, and how fast and how far the memory goes back to the OS. */

/*
 * N threads fill a hash-table cache of ENTRIES entries; each entry is three
 * allocations, as a C cache keyed by strings has them (the layout of
 * tests/bench/seed-scenario.c): a 40-byte node, its key string (20 bytes)
 * and an ENTRY_BYTES value (1 KiB by default), 1M x (48 + 32 + 1040) bytes of
 * chunks = 1.04 GiB.  The two small chunks of every entry are what glibc puts
 * in its fastbins when they are freed: they sit between the values and keep
 * them from coalescing until a full consolidation walk (malloc_trim), so with
 * plain glibc RSS stays up after the free and malloc_trim(0) is slow.
 * libmemd turns fastbins off (mallopt(M_MXFAST, 0)).
 *
 * Each thread fills one shard of the table (its own arena with glibc).  Then
 * either the program empties the cache in table order, as a cache clear does
 * (-m app, the default; -k keeps the entry allocated last alive, which pins
 * the top of its heap), or it leaves it to a reclaimer registered with
 * memd_register_reclaimer (-m reclaimer), which the forced GC inside
 * memd_free_os_memory() runs; either way all three allocations of an entry
 * are freed.  The libmemd entry points are looked up with dlsym so that the
 * program also runs without the library; then it uses malloc_trim(0)
 * instead of memd_free_os_memory().
 *
 * Output on stdout, one "key=value ..." line per phase (entry_bytes is the
 * value's size, as -b sets it; reclaimed_bytes counts the bytes requested for
 * node, key and value):
 *   seed threads=N entries=N entry_bytes=N keep=0|1 mode=app|reclaimer lib=memd|none
 *   fill rss_kib=N ms=F
 *   free rss_kib=N ms=F                        (mode=app)
 *   gc reclaimed_bytes=N ms=F                  (-g: memd_gc() first)
 *   free_os_memory via=memd|malloc_trim released_bytes=N ms=F rss_kib=N reclaimer_calls=N reclaimed_bytes=N
 *
 * -w: after the fill (and the free, -m app) print "waiting pid=N" and wait
 * for SIGTERM or SIGINT instead of calling memd_free_os_memory(): memctl gc /
 * free-os-memory do it from outside.  At the signal it prints
 * "exit reclaimer_calls=N reclaimed_bytes=N rss_kib=N" and exits 0.
 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "seedcache.h"

typedef int (*register_fn)(const char *name, size_t (*fn)(void *ctx), void *ctx);
typedef size_t (*size_fn)(void);

#define MAX_THREADS 256

struct cache {
        struct shard shards[MAX_THREADS];
        size_t n_shards;
        size_t n_entries;
        size_t entry_bytes;     /* of each value */
        size_t keep;            /* entries to leave alive (0 or 1) */
        bool filled;
};

static atomic_uint reclaimer_calls;
static atomic_size_t reclaimed_bytes;

static void make_key(char *buf, size_t size, size_t i) {
        snprintf(buf, size, "cache-key-%09zu", i);
}

static void *fill_main(void *arg) {
        struct shard *sh = arg;
        char key[32];

        for (size_t i = sh->from; i < sh->to; i++) {
                struct entry *e = xmalloc(sizeof(*e));
                make_key(key, sizeof(key), i);
                e->key = xmalloc(strlen(key) + 1);
                strcpy(e->key, key);
                e->value = xmalloc(sh->value_bytes);
                memset(e->value, (int)(i & 0xff), sh->value_bytes);
                e->value_bytes = sh->value_bytes;
                e->hash = hash_str(key);
                struct entry **b = &sh->buckets[e->hash % sh->n_buckets];
                e->next = *b;
                *b = e;
        }
        return NULL;
}

/* The entry with the highest entry number: the last one its thread
 * allocated, so the chunks right below the top of its heap. */
static struct entry *find_last(const struct shard *sh) {
        char key[32];
        make_key(key, sizeof(key), sh->to - 1);
        uint64_t h = hash_str(key);
        for (struct entry *e = sh->buckets[h % sh->n_buckets]; e; e = e->next)
                if (e->hash == h && strcmp(e->key, key) == 0)
                        return e;
        return NULL;
}

/* Frees node, key and value; returns the bytes requested for them. */
static size_t entry_free(struct entry *e) {
        size_t bytes = sizeof(*e) + strlen(e->key) + 1 + e->value_bytes;
        free(e->value);
        free(e->key);
        free(e);
        return bytes;
}

/* Frees every entry in table order but the last allocated one if c->keep;
 * returns the bytes freed. */
static size_t cache_drop(struct cache *c) {
        size_t freed = 0;
        if (!c->filled)
                return 0;
        const struct entry *kept = c->keep ? find_last(&c->shards[c->n_shards - 1]) : NULL;
        for (size_t i = 0; i < c->n_shards; i++) {
                struct shard *sh = &c->shards[i];
                for (size_t b = 0; b < sh->n_buckets; b++) {
                        struct entry *e = sh->buckets[b], *next;
                        sh->buckets[b] = NULL;
                        for (; e; e = next) {
                                next = e->next;
                                if (e == kept) {
                                        e->next = NULL;
                                        sh->buckets[b] = e;
                                        continue;
                                }
                                freed += entry_free(e);
                        }
                }
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
        fprintf(stderr, "usage: seed [-t THREADS] [-n ENTRIES] [-b ENTRY_BYTES] [-k] [-m app|reclaimer] [-g] [-w]\n");
        exit(2);
}

int main(int argc, char **argv) {
        struct cache cache = { .n_entries = 1u << 20, .entry_bytes = 1024 };
        size_t nthreads = 1;
        bool reclaimer_mode = false, call_gc = false, wait_outside = false;
        int c;

        while ((c = getopt(argc, argv, "t:n:b:km:gw")) != -1) {
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
                case 'w': wait_outside = true; break;
                default: usage();
                }
        }
        if (nthreads == 0 || nthreads > MAX_THREADS || cache.n_entries < nthreads || cache.entry_bytes == 0)
                usage();

        register_fn reg = (register_fn)dlsym(RTLD_DEFAULT, "memd_register_reclaimer");
        size_fn free_os_memory = (size_fn)dlsym(RTLD_DEFAULT, "memd_free_os_memory");
        size_fn gc = (size_fn)dlsym(RTLD_DEFAULT, "memd_gc");
        bool lib = reg && free_os_memory && gc;

        printf("seed threads=%zu entries=%zu entry_bytes=%zu keep=%zu mode=%s lib=%s\n",
               nthreads, cache.n_entries, cache.entry_bytes, cache.keep,
               reclaimer_mode ? "reclaimer" : "app", lib ? "memd" : "none");
        fflush(stdout);

        /* The table: one shard per filling thread, its buckets mmapped. */
        cache.n_shards = nthreads;
        for (size_t i = 0; i < nthreads; i++) {
                struct shard *sh = &cache.shards[i];
                *sh = (struct shard) {
                        .from = cache.n_entries * i / nthreads,
                        .to = cache.n_entries * (i + 1) / nthreads,
                        .value_bytes = cache.entry_bytes,
                };
                sh->n_buckets = sh->to - sh->from;
                sh->buckets = mmap(NULL, sh->n_buckets * sizeof(*sh->buckets), PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (sh->buckets == MAP_FAILED) {
                        perror("seed: mmap");
                        return 2;
                }
        }
        if (lib) {
                int r = reg("seed-cache", cache_reclaim, &cache);
                if (r != 0) {
                        fprintf(stderr, "seed: memd_register_reclaimer: %s\n", strerror(-r));
                        return 1;
                }
        }

        double t0 = now_ms();
        pthread_t tids[MAX_THREADS];
        for (size_t i = 0; i < nthreads; i++) {
                int r = pthread_create(&tids[i], NULL, fill_main, &cache.shards[i]);
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

        if (wait_outside) {
                sigset_t set;
                int sig;

                sigemptyset(&set);
                sigaddset(&set, SIGTERM);
                sigaddset(&set, SIGINT);
                pthread_sigmask(SIG_BLOCK, &set, NULL);
                printf("waiting pid=%d\n", (int)getpid());
                fflush(stdout);
                sigwait(&set, &sig);
                printf("exit reclaimer_calls=%u reclaimed_bytes=%zu rss_kib=%ld\n",
                       atomic_load(&reclaimer_calls), atomic_load(&reclaimed_bytes), rss_kib());
                return 0;
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
