/* seed-scenario.c - the seed's cache (1 M entries of 1 KiB) filled, emptied, and the time and RSS of giving the memory back. */

/*
 * A hash-table cache of ENTRIES entries.  Each entry is three allocations,
 * as a C cache keyed by strings has them: a 40-byte node, its key string
 * (~20 bytes) and a 1 KiB value, 1M x (48 + 32 + 1040) bytes of chunks
 * = 1.04 GiB.  The two small chunks per entry are what glibc puts in its
 * fastbins on free; they sit between the values and keep them from
 * coalescing until a full consolidation walk (malloc_trim, or a large free).
 *
 * THREADS threads fill one shard of the table each (-t 1: the main thread
 * fills, everything is in the main arena; -t 4: four arenas besides the main
 * one).  The main thread then empties the cache in table order, as a cache
 * clear does, except -k: the entry allocated last stays alive and pins the
 * top of its heap.  Then the "give memory back" call is timed:
 *   -m memd   memd_free_os_memory(), looked up with dlsym (LD_PRELOAD libmemd)
 *   -m trim   malloc_trim(0)
 *   -m none   nothing
 *   -m auto   memd if libmemd is loaded, else trim (the default)
 *
 * Output, one line on stdout:
 *   seed-scenario threads=T entries=N value_bytes=B keep=0|1 via=memd|trim|none
 *     fill_ms=F rss_fill_kib=N free_ms=F rss_free_kib=N op_ms=F released_bytes=N rss_after_kib=N
 * released_bytes is memd_free_os_memory()'s return value (0 otherwise).
 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../progs/seedcache.h"

#define MAX_THREADS 64


static void *fill_main(void *arg) {
        struct shard *sh = arg;
        char key[32];

        for (size_t i = sh->from; i < sh->to; i++) {
                struct entry *e = xmalloc(sizeof(*e));
                snprintf(key, sizeof(key), "cache-key-%09zu", i);
                e->key = strdup(key);
                if (!e->key) {
                        fprintf(stderr, "seed-scenario: out of memory\n");
                        exit(2);
                }
                e->value = xmalloc(sh->value_bytes);
                memset(e->value, (int)(i & 0xff), sh->value_bytes);
                e->value_bytes = sh->value_bytes;
                e->hash = hash_str(key);
                size_t b = e->hash % sh->n_buckets;
                e->next = sh->buckets[b];
                sh->buckets[b] = e;
        }
        return NULL;
}

static void entry_free(struct entry *e) {
        free(e->value);
        free(e->key);
        free(e);
}

/* Frees every entry in table order except `keep` (or none); returns the
 * number of entries freed. */
static size_t shard_clear(struct shard *sh, const struct entry *keep) {
        size_t n = 0;
        for (size_t b = 0; b < sh->n_buckets; b++) {
                struct entry *e = sh->buckets[b], *next;
                sh->buckets[b] = NULL;
                for (; e; e = next) {
                        next = e->next;
                        if (e == keep) {
                                e->next = NULL;
                                continue;
                        }
                        entry_free(e);
                        n++;
                }
        }
        return n;
}

/* The entry with the highest entry number: the last one its thread
 * allocated, so (in the main arena) the chunk right below the top. */
static struct entry *find_last(struct shard *sh) {
        char key[32];
        snprintf(key, sizeof(key), "cache-key-%09zu", sh->to - 1);
        uint64_t h = hash_str(key);
        for (struct entry *e = sh->buckets[h % sh->n_buckets]; e; e = e->next)
                if (e->hash == h && strcmp(e->key, key) == 0)
                        return e;
        return NULL;
}

static void usage(void) {
        fprintf(stderr, "usage: seed-scenario [-t THREADS] [-n ENTRIES] [-b VALUE_BYTES] [-k] [-m auto|memd|trim|none|wait]\n");
        exit(2);
}

int main(int argc, char **argv) {
        size_t n_entries = 1u << 20, value_bytes = 1024;
        unsigned nthreads = 1;
        int keep = 0;
        const char *via = "auto";
        struct shard shards[MAX_THREADS];
        pthread_t tids[MAX_THREADS];
        int c;

        while ((c = getopt(argc, argv, "t:n:b:km:h")) != -1) {
                switch (c) {
                case 't': nthreads = (unsigned)strtoul(optarg, NULL, 10); break;
                case 'n': n_entries = strtoul(optarg, NULL, 10); break;
                case 'b': value_bytes = strtoul(optarg, NULL, 10); break;
                case 'k': keep = 1; break;
                case 'm': via = optarg; break;
                default: usage();
                }
        }
        if (optind != argc || nthreads < 1 || nthreads > MAX_THREADS || n_entries < nthreads || value_bytes == 0)
                usage();

        size_t (*memd_free_os_memory)(void) = (size_t (*)(void))dlsym(RTLD_DEFAULT, "memd_free_os_memory");
        if (strcmp(via, "auto") == 0)
                via = memd_free_os_memory ? "memd" : "trim";
        if (strcmp(via, "memd") == 0 && !memd_free_os_memory) {
                fprintf(stderr, "seed-scenario: -m memd: memd_free_os_memory not found (run with LD_PRELOAD=libmemd.so)\n");
                return 77;
        }
        if (strcmp(via, "memd") != 0 && strcmp(via, "trim") != 0 && strcmp(via, "none") != 0 &&
            strcmp(via, "wait") != 0)
                usage();

        /* Fill.  The bucket arrays are allocated here, on the main thread,
         * like a table created before the workers start. */
        double t0 = now_ms();
        for (unsigned i = 0; i < nthreads; i++) {
                shards[i] = (struct shard) {
                        .from = n_entries * i / nthreads,
                        .to = n_entries * (i + 1) / nthreads,
                        .value_bytes = value_bytes,
                };
                shards[i].n_buckets = shards[i].to - shards[i].from;
                shards[i].buckets = calloc(shards[i].n_buckets, sizeof(struct entry *));
                if (!shards[i].buckets) {
                        fprintf(stderr, "seed-scenario: out of memory\n");
                        return 2;
                }
        }
        if (nthreads == 1)
                fill_main(&shards[0]);
        else {
                for (unsigned i = 0; i < nthreads; i++) {
                        int r = pthread_create(&tids[i], NULL, fill_main, &shards[i]);
                        if (r != 0) {
                                fprintf(stderr, "seed-scenario: pthread_create: %s\n", strerror(r));
                                return 2;
                        }
                }
                for (unsigned i = 0; i < nthreads; i++)
                        pthread_join(tids[i], NULL);
        }
        double fill_ms = now_ms() - t0;
        long rss_fill = rss_kib();

        /* Empty the cache. */
        struct entry *kept = keep ? find_last(&shards[nthreads - 1]) : NULL;
        size_t freed = 0;
        t0 = now_ms();
        for (unsigned i = 0; i < nthreads; i++) {
                freed += shard_clear(&shards[i], kept);
                free(shards[i].buckets);
                shards[i].buckets = NULL;
        }
        double free_ms = now_ms() - t0;
        long rss_free = rss_kib();
        if (freed + (kept ? 1 : 0) != n_entries) {
                fprintf(stderr, "seed-scenario: freed %zu of %zu entries\n", freed, n_entries);
                return 1;
        }

        /* -m wait: someone outside (memctl free-os-memory) gives the memory
         * back; SIGTERM ends the wait and the line reports RSS then. */
        if (strcmp(via, "wait") == 0) {
                sigset_t set;
                int sig;

                sigemptyset(&set);
                sigaddset(&set, SIGTERM);
                pthread_sigmask(SIG_BLOCK, &set, NULL);
                printf("waiting pid=%d rss_free_kib=%ld\n", (int)getpid(), rss_free);
                fflush(stdout);
                sigwait(&set, &sig);
        }

        /* Give the memory back. */
        size_t released = 0;
        t0 = now_ms();
        if (strcmp(via, "memd") == 0)
                released = memd_free_os_memory();
        else if (strcmp(via, "trim") == 0)
                malloc_trim(0);
        double op_ms = now_ms() - t0;
        long rss_after = rss_kib();

        printf("seed-scenario threads=%u entries=%zu value_bytes=%zu keep=%d via=%s"
               " fill_ms=%.1f rss_fill_kib=%ld free_ms=%.1f rss_free_kib=%ld"
               " op_ms=%.3f released_bytes=%zu rss_after_kib=%ld\n",
               nthreads, n_entries, value_bytes, keep, via,
               fill_ms, rss_fill, free_ms, rss_free, op_ms, released, rss_after);
        if (kept)
                entry_free(kept);
        return 0;
}
